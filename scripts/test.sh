#!/usr/bin/env bash
# Sets up (scripts/setup.sh) and runs every test suite with ctest. Fixtures: ../shared/fixtures.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
ctest --test-dir build --output-on-failure -j "$(nproc)" --timeout 900
