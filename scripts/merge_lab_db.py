#!/usr/bin/env python3
"""Appends every run of one lmlab results database to another: merge_lab_db.py SRC DST.

A sweep on the GPU machine spans several device calls, each bringing back its own lmlab.db; this puts their runs
in one database so that `lmlab report --runs A,B,... [--supersede]` can render them as one report.

SRC's runs become new runs of DST, numbered after DST's largest run id in SRC's id order, with every other column
copied as is. Rows of every table holding a run_id column (samples, evaluations, regression_checks, runtimes) are
copied with run_id pointed at the new run; their own integer `id` key is left to SQLite. Columns are read from
the schema (PRAGMA table_info), so a later schema's columns are copied without changes here.

Refused, with nothing written (one transaction): a file that is not an lmlab database, SRC and DST being one file,
and schemas whose tables or column sets differ (open both with the same lmlab first: it migrates them). Prints
"old id -> new id" for each run. Python 3 standard library only.
"""
import os
import pathlib
import sqlite3
import sys

LMLAB_APPLICATION_ID = 0x6C6D6C62  # "lmlb", PRAGMA application_id of every lmlab results database


class Refused(Exception):
    pass


def q(name):
    """An identifier quoted for SQL (table and column names come from the files' schemas)."""
    return '"' + name.replace('"', '""') + '"'


def column_list(names):
    return ", ".join(q(c) for c in names)


def open_lab_db(path, mode):
    if not os.path.isfile(path):
        raise Refused(f"{path}: no such file")
    uri = pathlib.Path(path).absolute().as_uri() + "?mode=" + mode  # as_uri: '?', '#', '%' in names escaped
    db = sqlite3.connect(uri, uri=True, isolation_level=None)
    try:
        app_id = db.execute("PRAGMA application_id").fetchone()[0]
    except sqlite3.DatabaseError as e:
        raise Refused(f"{path}: not an SQLite database ({e})")
    if app_id != LMLAB_APPLICATION_ID:
        raise Refused(f"{path}: not an lmlab results database (application_id {app_id:#x})")
    return db


def schema(db):
    """{table: [(column, is_sole_integer_key), ...]} in the tables' column order (sqlite_* tables left out)."""
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                       "AND name NOT LIKE 'sqlite_%' ORDER BY name")]
    out = {}
    for t in tables:
        info = db.execute(f"PRAGMA table_info({q(t)})").fetchall()  # cid, name, type, notnull, default, pk
        sole_key = [c for c in info if c[5] > 0]
        out[t] = [(c[1], len(sole_key) == 1 and c[5] == 1 and c[2].upper() == "INTEGER") for c in info]
    return out


def schema_differences(src, dst):
    lines = []
    for t in sorted(set(src) | set(dst)):
        if t not in dst:
            lines.append(f"table {t}: only in SRC")
        elif t not in src:
            lines.append(f"table {t}: only in DST")
        else:
            a, b = {c for c, _ in src[t]}, {c for c, _ in dst[t]}
            if a - b:
                lines.append(f"table {t}: columns only in SRC: {', '.join(sorted(a - b))}")
            if b - a:
                lines.append(f"table {t}: columns only in DST: {', '.join(sorted(b - a))}")
    return lines


def merge(src_path, dst_path):
    if os.path.isfile(src_path) and os.path.isfile(dst_path) and os.path.samefile(src_path, dst_path):
        raise Refused(f"{src_path} and {dst_path} are one file")
    src = open_lab_db(src_path, "ro")
    dst = open_lab_db(dst_path, "rw")
    tables = schema(src)
    if "runs" not in tables:
        raise Refused(f"{src_path}: no runs table")
    differences = schema_differences(tables, schema(dst))
    if differences:
        raise Refused("the two databases' schemas differ (open both with one lmlab, which migrates them):\n  " +
                      "\n  ".join(differences))

    dst.execute("BEGIN IMMEDIATE")  # all or nothing; also keeps another writer out until the commit
    try:
        next_id = dst.execute("SELECT coalesce(max(id), 0) FROM runs").fetchone()[0] + 1
        run_columns = [c for c, _ in tables["runs"]]
        new_ids = {}
        for row in src.execute(f"SELECT {column_list(run_columns)} FROM runs ORDER BY id"):
            values = dict(zip(run_columns, row))
            new_ids[values["id"]] = next_id
            values["id"] = next_id
            dst.execute(f"INSERT INTO runs ({column_list(run_columns)}) VALUES ({', '.join('?' * len(run_columns))})",
                        [values[c] for c in run_columns])
            next_id += 1

        copied = {}
        for t, columns in sorted(tables.items()):
            names = [c for c, _ in columns]
            if t == "runs" or "run_id" not in names:
                continue
            kept = [c for c, sole_integer_key in columns if not sole_integer_key]  # a rowid alias: SQLite numbers it
            insert = f"INSERT INTO {q(t)} ({column_list(kept)}) VALUES ({', '.join('?' * len(kept))})"
            n = 0
            for row in src.execute(f"SELECT {column_list(kept)} FROM {q(t)} ORDER BY rowid"):  # keeps insertion order
                values = dict(zip(kept, row))
                if values["run_id"] not in new_ids:
                    raise Refused(f"{src_path}: a row of {t} names run {values['run_id']}, which is not in its runs table")
                values["run_id"] = new_ids[values["run_id"]]
                dst.execute(insert, [values[c] for c in kept])
                n += 1
            copied[t] = n
        dst.execute("COMMIT")
    except BaseException:
        dst.execute("ROLLBACK")
        raise
    finally:
        src.close()
        dst.close()
    return new_ids, copied


def main(argv):
    if len(argv) != 3 or argv[1] in ("-h", "--help"):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    try:
        new_ids, copied = merge(argv[1], argv[2])
    except (Refused, sqlite3.Error) as e:
        print(f"merge_lab_db: refused, {argv[2]} left unchanged: {e}", file=sys.stderr)
        return 1
    for old, new in new_ids.items():
        print(f"{old} -> {new}")
    print(f"merge_lab_db: {len(new_ids)} run{'' if len(new_ids) == 1 else 's'} of {argv[1]} appended to {argv[2]} (" +
          ", ".join(f"{n} {t}" for t, n in copied.items()) + ")", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
