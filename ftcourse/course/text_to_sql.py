"""Lesson 13's prompts: a question about the shop's database, with its schema, asking for one SQLite query."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ftcourse.course.bundled import shop_database
from ftcourse.sql import run_readonly, schema_text

__all__ = ["shop_schema", "SQL_INSTRUCTION", "sql_prompt", "sql_records"]

SQL_INSTRUCTION = "Write one SQLite query that answers the question about this shop database. Answer with the query only."
# columns whose few values a query must spell exactly (WHERE status = 'cancelled')
_VALUE_COLUMNS = (("orders", "status"), ("tickets", "status"), ("tickets", "intent"), ("products", "category"))


def shop_schema(db: str | Path | None = None) -> str:
    """The tables of the shop's database (:func:`~ftcourse.course.bundled.shop_database`), then the values of its
    categorical columns and the date format — all read from the database."""
    db = db or shop_database()
    lines = [schema_text(db)]
    for table, column in _VALUE_COLUMNS:
        values = [r[0] for r in run_readonly(db, f"SELECT DISTINCT {column} FROM {table} ORDER BY {column}")]
        lines.append(f"{table}.{column}: {', '.join(values)}")
    lines.append("Dates are text: 'YYYY-MM-DD'.")
    return "\n".join(lines)


def sql_prompt(question: str, schema: str) -> list[dict[str, str]]:
    """Chat messages asking for the query: the instruction and the schema as the system message, the question as the user's."""
    return [{"role": "system", "content": f"{SQL_INSTRUCTION}\n\n{schema}"}, {"role": "user", "content": question}]


def sql_records(pairs: Sequence[dict[str, Any]], schema: str) -> list[dict[str, Any]]:
    """Chat training/evaluation records of question → SQL pairs (``instruction`` → ``output``), keeping ``template``,
    ``ordered`` and ``held_out``."""
    return [{"messages": sql_prompt(p["instruction"], schema) + [{"role": "assistant", "content": p["output"]}],
             **{k: p[k] for k in ("template", "ordered", "held_out")}} for p in pairs]
