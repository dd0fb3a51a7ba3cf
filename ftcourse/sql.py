"""Run SQL that a model wrote, safely, and score it by what it returns.

:func:`run_readonly` opens the database read-only (a ``mode=ro`` URI), lets a statement only read (an authorizer
refuses writes, ATTACH, PRAGMA and transactions), stops it after ``timeout_s`` (a progress handler) and after
``max_rows`` rows, so a generated ``DROP TABLE`` or an endless recursive query changes nothing and stalls nothing.
:func:`same_result` compares result sets — as multisets of rows when the question asks for no order — which is what
execution accuracy counts; :func:`query_outcome` names what happened to one predicted query.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ftcourse.errors import CourseError

__all__ = [
    "ERROR_KINDS", "extract_sql", "normalize_sql", "OUTCOMES", "query_outcome", "QueryError", "run_readonly",
    "same_result", "schema_text",
]

#: Why a query did not run, as :class:`QueryError` names it.
ERROR_KINDS = ("empty", "syntax", "unknown table", "unknown column", "refused", "timeout", "too many rows", "other")
#: What :func:`query_outcome` returns: the query ran and matched, ran and did not, or one of :data:`ERROR_KINDS`.
OUTCOMES = ("correct", "wrong result", *ERROR_KINDS)
# authorizer actions a query may take: read columns, select, call functions, recurse (WITH RECURSIVE)
_ALLOWED = {sqlite3.SQLITE_READ, sqlite3.SQLITE_SELECT, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
_KINDS = (("syntax error", "syntax"), ("incomplete input", "syntax"), ("unrecognized token", "syntax"),
          ("no such table", "unknown table"), ("no such column", "unknown column"), ("not authorized", "refused"),
          ("readonly", "refused"), ("authorization denied", "refused"), ("one statement at a time", "other"))
_FIXES = {
    "empty": "the text holds no statement that returns rows: answer with one SELECT query.",
    "syntax": "the statement is not valid SQLite; compare it with the schema and SQLite's SELECT syntax.",
    "unknown table": "use only the tables of the schema in the prompt.",
    "unknown column": "use only the columns of the schema, qualified by their table (or alias) in a join.",
    "refused": "generated SQL may only read: one SELECT (or WITH ... SELECT); no writes, ATTACH, PRAGMA or transactions.",
    "timeout": "the query ran past its time limit and was stopped; look for a missing join condition or an endless recursion.",
    "too many rows": "the query returned more rows than allowed; look for a missing join condition or WHERE clause.",
    "other": "read SQLite's message above.",
}


class QueryError(CourseError):
    """A query that did not run to the end; ``kind`` is one of :data:`ERROR_KINDS`."""

    def __init__(self, kind: str, what: str):
        self.kind = kind
        super().__init__(what, _FIXES[kind])


def _open_readonly(db: str | Path) -> sqlite3.Connection:
    path = Path(db)
    if not path.is_file():
        raise CourseError(f"{path} is not a file.", "pass the path of a SQLite database, e.g. ftcourse.course.bundled.shop_database().")
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)


def _authorize(action: int, *_: Any) -> int:
    return sqlite3.SQLITE_OK if action in _ALLOWED else sqlite3.SQLITE_DENY


def _kind(message: str) -> str:
    return next((kind for text, kind in _KINDS if text in message), "other")


def run_readonly(db: str | Path, sql: str, timeout_s: float = 1.0, max_rows: int = 1000) -> list[tuple]:
    """The rows ``sql`` returns from the SQLite file ``db``, read-only and bounded; :class:`QueryError` when it does not run.

    Writes, ATTACH, PRAGMA and transactions are refused, the statement is interrupted after ``timeout_s`` seconds and
    refused past ``max_rows`` rows; the file is opened read-only, so its bytes never change.
    """
    conn = _open_readonly(db)
    deadline = time.monotonic() + timeout_s
    conn.set_authorizer(_authorize)
    conn.set_progress_handler(lambda: time.monotonic() > deadline, 1000)
    conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 1_000_000)  # no gigabyte strings or blobs
    try:
        cursor = conn.execute(sql)
        if cursor.description is None:
            raise QueryError("empty", f"{sql!r} returns no rows: it is empty, a comment, or not a query.")
        rows = cursor.fetchmany(max_rows + 1)
    except sqlite3.Error as exc:
        timed_out = time.monotonic() > deadline and "interrupted" in str(exc)
        kind = "timeout" if timed_out else _kind(str(exc))
        raise QueryError(kind, f"the query stopped after {timeout_s} s." if timed_out else f"SQLite: {exc}") from None
    finally:
        conn.close()
    if len(rows) > max_rows:
        raise QueryError("too many rows", f"the query returns more than {max_rows} rows.")
    return rows


def _comparable(row: Sequence[Any]) -> tuple:
    return tuple(round(v, 6) if isinstance(v, float) else v for v in row)


def same_result(predicted: Sequence[Sequence[Any]], gold: Sequence[Sequence[Any]], ordered: bool) -> bool:
    """Whether two result sets are equal: row by row when ``ordered`` (the question asks for an order), else as multisets.

    Columns count in their order; duplicates count (a missing DISTINCT is wrong); floats are compared to 6 decimals.
    """
    predicted, gold = [_comparable(r) for r in predicted], [_comparable(r) for r in gold]
    return predicted == gold if ordered else Counter(predicted) == Counter(gold)


def query_outcome(db: str | Path, predicted_sql: str, gold_rows: Sequence[Sequence[Any]], ordered: bool, timeout_s: float = 1.0) -> str:
    """What happened to one predicted query: ``"correct"``, ``"wrong result"``, or why it did not run (:data:`ERROR_KINDS`)."""
    try:
        rows = run_readonly(db, predicted_sql, timeout_s)
    except QueryError as exc:
        return exc.kind
    return "correct" if same_result(rows, gold_rows, ordered) else "wrong result"


_FENCE = re.compile(r"```(?:sql|sqlite)?\s*\n?(.*?)(?:```|$)", re.IGNORECASE | re.DOTALL)
_START = re.compile(r"\bSELECT\b|\bWITH\s+(?:RECURSIVE\s+)?\w+\s*(?:\([^)]*\)\s*)?AS\s*\(", re.IGNORECASE)  # a query, not the word "with"


def extract_sql(answer: str) -> str:
    """The query in a model's answer: the first code fence's content if any, from its first SELECT/WITH to the first
    ``;`` or blank line (what a chatty answer adds after the query is dropped)."""
    fence = _FENCE.search(answer)
    text = fence.group(1) if fence else answer
    start = _START.search(text)
    text = text[start.start():] if start else text
    return re.split(r";|\n\s*\n", text, maxsplit=1)[0].strip()


def normalize_sql(sql: str) -> str:
    """A query's text for exact match: white space collapsed, a trailing ``;`` dropped (case and aliases kept)."""
    return " ".join(sql.split()).rstrip(";").rstrip()


def schema_text(db: str | Path) -> str:
    """The tables of ``db``, one line each: ``name(column, column, ...)``."""
    conn = _open_readonly(db)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY rowid")]
        return "\n".join(f"{t}({', '.join(c[1] for c in conn.execute(f'PRAGMA table_info({t})'))})" for t in tables)
    finally:
        conn.close()
