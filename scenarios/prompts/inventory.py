"""A small inventory service: the text the default scenario's prompts are made of.

Written for lmlab as benchmark input (the fixture models were trained on Python source, so Python gives
their routers realistic inputs). It is tokenized once and repeated to fill each context length.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections import defaultdict
from typing import Iterable, Iterator

log = logging.getLogger(__name__)


class InventoryError(Exception):
    """Raised when a request cannot be satisfied."""


@dataclasses.dataclass(frozen=True)
class Item:
    sku: str
    name: str
    price_cents: int
    weight_grams: int = 0

    def price(self) -> float:
        return self.price_cents / 100.0


@dataclasses.dataclass
class Stock:
    item: Item
    quantity: int = 0
    reserved: int = 0

    @property
    def available(self) -> int:
        return self.quantity - self.reserved


class Inventory:
    def __init__(self) -> None:
        self._stock: dict[str, Stock] = {}
        self._history: list[tuple[str, str, int]] = []

    def add(self, item: Item, quantity: int) -> None:
        if quantity <= 0:
            raise InventoryError(f"cannot add {quantity} of {item.sku}")
        stock = self._stock.setdefault(item.sku, Stock(item))
        stock.quantity += quantity
        self._history.append(("add", item.sku, quantity))
        log.debug("added %d x %s", quantity, item.sku)

    def reserve(self, sku: str, quantity: int) -> None:
        stock = self._find(sku)
        if stock.available < quantity:
            raise InventoryError(f"only {stock.available} of {sku} available, {quantity} requested")
        stock.reserved += quantity
        self._history.append(("reserve", sku, quantity))

    def release(self, sku: str, quantity: int) -> None:
        stock = self._find(sku)
        stock.reserved = max(0, stock.reserved - quantity)
        self._history.append(("release", sku, quantity))

    def ship(self, sku: str, quantity: int) -> None:
        stock = self._find(sku)
        if stock.reserved < quantity:
            raise InventoryError(f"ship {quantity} of {sku}: only {stock.reserved} reserved")
        stock.reserved -= quantity
        stock.quantity -= quantity
        self._history.append(("ship", sku, quantity))

    def _find(self, sku: str) -> Stock:
        try:
            return self._stock[sku]
        except KeyError:
            raise InventoryError(f"unknown sku {sku!r}") from None

    def __iter__(self) -> Iterator[Stock]:
        return iter(sorted(self._stock.values(), key=lambda s: s.item.sku))

    def total_value_cents(self) -> int:
        return sum(s.item.price_cents * s.quantity for s in self._stock.values())

    def low_stock(self, threshold: int = 5) -> list[Stock]:
        return [s for s in self if s.available < threshold]

    def history_by_sku(self) -> dict[str, list[tuple[str, int]]]:
        grouped: dict[str, list[tuple[str, int]]] = defaultdict(list)
        for action, sku, quantity in self._history:
            grouped[sku].append((action, quantity))
        return dict(grouped)

    def to_json(self) -> str:
        rows = [
            {"sku": s.item.sku, "name": s.item.name, "quantity": s.quantity, "reserved": s.reserved}
            for s in self
        ]
        return json.dumps(rows, indent=2)


def parse_order_lines(lines: Iterable[str]) -> list[tuple[str, int]]:
    """Parses lines like 'SKU-123 x 4' into (sku, quantity) pairs, skipping blanks and comments."""
    orders = []
    for number, line in enumerate(lines, start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        sku, sep, quantity = line.partition(" x ")
        if not sep:
            raise ValueError(f"line {number}: expected 'SKU x QUANTITY', got {line!r}")
        orders.append((sku.strip(), int(quantity)))
    return orders


def fulfil(inventory: Inventory, orders: list[tuple[str, int]]) -> tuple[int, list[str]]:
    shipped = 0
    problems = []
    for sku, quantity in orders:
        try:
            inventory.reserve(sku, quantity)
            inventory.ship(sku, quantity)
            shipped += quantity
        except InventoryError as exc:
            problems.append(str(exc))
    return shipped, problems


def main() -> None:
    logging.basicConfig(level=logging.INFO)
    inventory = Inventory()
    inventory.add(Item("SKU-1", "bolt", 25, 10), 100)
    inventory.add(Item("SKU-2", "nut", 10, 4), 250)
    inventory.add(Item("SKU-3", "washer", 5, 1), 3)
    orders = parse_order_lines(["SKU-1 x 10", "# restock later", "SKU-3 x 5", "SKU-2 x 40"])
    shipped, problems = fulfil(inventory, orders)
    print(f"shipped {shipped} items, value left {inventory.total_value_cents() / 100:.2f}")
    for problem in problems:
        print("problem:", problem)
    for stock in inventory.low_stock():
        print("low stock:", stock.item.name, stock.available)
    print(inventory.to_json())


if __name__ == "__main__":
    main()
