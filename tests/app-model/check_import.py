#!/usr/bin/env python3
"""One case of the inbox property test (tests/tests/app_property.rs) in one process: an app
database with the given rows, then the app's `sync import` of each folder in turn, exactly as
`whiteballoon_app.py import` runs it (same functions, same transaction), with a dump of every
table before the first import and after each one. Python 3 standard library only.

stdin (JSON):  {"db": PATH, "rows": {TABLE: [{COLUMN: VALUE, ...}, ...], ...},
                "imports": [DIR, ...], "expect_key": B64 or null}
stdout (JSON): {"before": DUMP, "after": [DUMP, ...],
                "imports": [{"status": EXIT_STATUS, "error": TEXT}, ...]}
A DUMP is what `whiteballoon_app.py dump` prints. EXIT_STATUS is the status the app's import
command would exit with (an exception the model does not catch counts as 1, as it would).
"""
import contextlib
import io
import json
import sys
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import whiteballoon_app as app  # noqa: E402

TABLES = ["users", "help_requests", "request_comments", "invite_tokens"]


def dump(con) -> dict:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        app.dump(con)
    return json.loads(out.getvalue())


def insert(con, rows: dict) -> None:
    con.execute("BEGIN")
    for table in TABLES:
        for row in rows.get(table, []):
            cols = list(row)
            con.execute(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                        [row[c] for c in cols])
    con.execute("COMMIT")


def run_import(con, src: str, expect) -> dict:
    out, err = io.StringIO(), io.StringIO()
    status = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            app.do_import(con, Path(src), expect)
    except SystemExit as e:
        if isinstance(e.code, int):
            status = e.code
        elif e.code is not None:
            status = 1
            err.write(str(e.code))
    except Exception:  # the app's command would die with a traceback: exit status 1
        status = 1
        err.write(traceback.format_exc())
    if con.in_transaction:
        con.execute("ROLLBACK")
    return {"status": status, "error": err.getvalue().strip()}


def main() -> None:
    spec = json.load(sys.stdin)
    con = app.db(spec["db"])
    insert(con, spec.get("rows", {}))
    result = {"before": dump(con), "after": [], "imports": []}
    for src in spec.get("imports", []):
        result["imports"].append(run_import(con, src, spec.get("expect_key")))
        result["after"].append(dump(con))
    json.dump(result, sys.stdout, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
