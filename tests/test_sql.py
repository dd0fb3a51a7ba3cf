"""Lesson 13's data and SQL runner: the shop database and its question → SQL pairs (data/tools/make_shop_sql.py), split by
template, and ftcourse.sql — generated SQL runs read-only and bounded, and result sets compare as execution accuracy needs."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections import Counter

import pytest

from ftcourse import paths
from ftcourse.course.bundled import shop_database, text_to_sql_records
from ftcourse.course.text_to_sql import shop_schema, sql_prompt, sql_records
from ftcourse.errors import CourseError
from ftcourse.fileio import sha256_file
from ftcourse.sql import (
    ERROR_KINDS,
    QueryError,
    extract_sql,
    normalize_sql,
    query_outcome,
    run_readonly,
    same_result,
    schema_text,
)


@pytest.fixture()
def db_copy(tmp_path):
    """A copy of the shop database, so that a test which tried to change it could not harm the committed file."""
    copy = tmp_path / "shop.sqlite"
    shutil.copy(shop_database(), copy)
    return copy


# ---------------------------------------------------------------- the data tool and its files


def test_the_generator_reproduces_the_committed_database_and_pairs():
    tool = paths.data_dir() / "tools" / "make_shop_sql.py"
    done = subprocess.run([sys.executable, str(tool), "--check"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "every gold query executes" in done.stdout


def test_the_database_holds_the_shop_of_the_intent_data():
    db = shop_database()
    counts = {t: run_readonly(db, f"SELECT COUNT(*) FROM {t}")[0][0] for t in ("customers", "products", "orders", "order_items", "tickets")}
    assert counts == {"customers": 80, "products": 42, "orders": 320, "order_items": 642, "tickets": 220}
    assert run_readonly(db, "SELECT name FROM products WHERE id = 1") == [("Pulse Buds 3 earbuds",)]  # make_support_intents' catalogue
    assert all(i.startswith("ORD-") and len(i) == 10 for (i,) in run_readonly(db, "SELECT id FROM orders"))
    from ftcourse.course.bundled import INTENT_LABELS
    assert {i for (i,) in run_readonly(db, "SELECT DISTINCT intent FROM tickets")} == set(INTENT_LABELS)
    # every order's total is the sum of its items
    assert run_readonly(db, "SELECT COUNT(*) FROM orders o WHERE abs(o.total - (SELECT SUM(i.quantity * p.price) FROM order_items i "
                            "JOIN products p ON i.product_id = p.id WHERE i.order_id = o.id)) > 0.005") == [(0,)]


def test_every_gold_query_executes_and_returns_rows():
    data = text_to_sql_records()
    pairs = data["train"] + data["test"]
    assert len(pairs) >= 300
    for p in pairs:
        rows = run_readonly(shop_database(), p["output"])
        assert rows and any(v is not None for row in rows for v in row), p
        assert p["ordered"] == ("ORDER BY" in p["output"])


def test_the_split_is_by_template_and_no_test_query_was_seen_in_training():
    data = text_to_sql_records()
    train, test = data["train"], data["test"]
    assert {p["split"] for p in train} == {"train"} and {p["split"] for p in test} == {"test"}
    for field in ("template", "instruction", "output"):
        assert not {p[field] for p in train} & {p[field] for p in test}, field
    assert {p["held_out"] for p in train} == {None} and {p["held_out"] for p in test} == {"phrasing", "query shape"}
    families = lambda part: {p["template"].split("/")[0] for p in part}  # noqa: E731
    new_shapes = {p["template"].split("/")[0] for p in test if p["held_out"] == "query shape"}
    assert new_shapes and not new_shapes & families(train)  # a new query shape: no phrasing of it in training
    assert families([p for p in test if p["held_out"] == "phrasing"]) <= families(train)  # a new phrasing of a shape trained on
    assert Counter(p["held_out"] for p in test)["phrasing"] > 0


def test_the_prompt_shows_the_schema_and_the_values_read_from_the_database():
    schema = shop_schema()
    assert schema.startswith(schema_text(shop_database()))
    assert "orders(id, customer_id, order_date, status, total)" in schema
    assert "orders.status: cancelled, delivered, processing, returned, shipped" in schema
    messages = sql_prompt("How many customers live in Leeds?", schema)
    assert [m["role"] for m in messages] == ["system", "user"] and schema in messages[0]["content"]
    record = sql_records(text_to_sql_records()["test"][:1], schema)[0]
    assert record["messages"][-1] == {"role": "assistant", "content": text_to_sql_records()["test"][0]["output"]}
    assert set(record) == {"messages", "template", "ordered", "held_out"}


# ---------------------------------------------------------------- read-only and bounded


@pytest.mark.parametrize("sql", [
    "DROP TABLE customers",
    "DELETE FROM orders",
    "INSERT INTO customers VALUES (999, 'Eve Mallory', 'Leeds', 'UK', '2025-01-01')",
    "UPDATE products SET price = 0",
    "ATTACH DATABASE ':memory:' AS scratch",
    "PRAGMA user_version = 7",
    "PRAGMA journal_mode = WAL",
    "CREATE TEMP TABLE t (x)",
    "BEGIN IMMEDIATE",
    "VACUUM",
])
def test_writes_attach_and_pragma_are_refused_and_the_file_is_unchanged(db_copy, sql):
    before = sha256_file(db_copy)
    with pytest.raises(QueryError) as caught:
        run_readonly(db_copy, sql)
    assert caught.value.kind == "refused", caught.value
    assert "may only read" in str(caught.value)
    assert sha256_file(db_copy) == before
    assert run_readonly(db_copy, "SELECT COUNT(*) FROM customers") == [(80,)]


def test_attach_cannot_create_a_file(db_copy, tmp_path):
    """A mode=ro connection alone would attach (and create) a new database file; the authorizer refuses it first."""
    with pytest.raises(QueryError) as caught:
        run_readonly(db_copy, f"ATTACH DATABASE '{tmp_path / 'new.db'}' AS elsewhere")
    assert caught.value.kind == "refused"
    assert not (tmp_path / "new.db").exists()


def test_an_endless_recursive_query_is_stopped_in_time(db_copy):
    endless = "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT COUNT(*) FROM n"
    before = sha256_file(db_copy)
    start = time.monotonic()
    with pytest.raises(QueryError) as caught:
        run_readonly(db_copy, endless, timeout_s=0.3)
    assert caught.value.kind == "timeout"
    assert time.monotonic() - start < 10  # stopped (by the 0.3 s limit), not left running
    assert sha256_file(db_copy) == before


def test_a_huge_result_is_refused_and_a_huge_value_too(db_copy):
    with pytest.raises(QueryError) as caught:
        run_readonly(db_copy, "SELECT a.id, b.id FROM customers a, customers b", max_rows=1000)  # 6,400 rows
    assert caught.value.kind == "too many rows"
    with pytest.raises(QueryError, match="too big"):
        run_readonly(db_copy, "SELECT randomblob(100000000)")


@pytest.mark.parametrize(("sql", "kind"), [
    ("", "empty"), ("-- only a comment", "empty"), ("SELEC name FROM customers", "syntax"), ("SELECT name FROM customers WHERE", "syntax"),
    ("SELECT * FROM clients", "unknown table"), ("SELECT customer_name FROM customers", "unknown column"),
    ("SELECT 1; SELECT 2", "other"),
])
def test_errors_are_named_by_kind(sql, kind):
    with pytest.raises(QueryError) as caught:
        run_readonly(shop_database(), sql)
    assert caught.value.kind == kind and kind in ERROR_KINDS
    assert caught.value.fix


def test_a_missing_database_is_a_course_error(tmp_path):
    with pytest.raises(CourseError, match="is not a file"):
        run_readonly(tmp_path / "nothing.sqlite", "SELECT 1")
    assert not (tmp_path / "nothing.sqlite").exists()  # read-only: nothing was created


# ---------------------------------------------------------------- comparing results


def test_same_result_ignores_order_only_when_the_question_asks_for_none():
    gold = [("Ann",), ("Bob",), ("Cid",)]
    assert same_result([("Cid",), ("Ann",), ("Bob",)], gold, ordered=False)
    assert not same_result([("Cid",), ("Ann",), ("Bob",)], gold, ordered=True)
    assert same_result(gold, gold, ordered=True)
    assert not same_result([("Ann",), ("Ann",), ("Bob",), ("Cid",)], gold, ordered=False)  # a duplicate counts (missing DISTINCT)
    assert not same_result([("Ann",), ("Bob",), ("Dan",)], gold, ordered=False)  # same count, other rows
    assert not same_result([("Ann", 1)], [("Ann",)], ordered=False)  # an extra column
    assert same_result([(1 / 3,)], [(0.3333333333,)], ordered=False) and same_result([(3,)], [(3.0,)], ordered=False)


def test_query_outcome_names_what_happened():
    db = shop_database()
    gold_sql = "SELECT name FROM customers WHERE city = 'Leeds'"
    gold = run_readonly(db, gold_sql)
    assert query_outcome(db, gold_sql, gold, ordered=False) == "correct"
    assert query_outcome(db, "SELECT c.name FROM customers AS c WHERE c.city = 'Leeds' ORDER BY c.name DESC", gold, ordered=False) == "correct"
    assert query_outcome(db, "SELECT name FROM customers WHERE city = 'leeds'", gold, ordered=False) == "wrong result"
    assert query_outcome(db, "SELECT name FROM customer WHERE city = 'Leeds'", gold, ordered=False) == "unknown table"
    assert query_outcome(db, "DROP TABLE customers", gold, ordered=False) == "refused"


def test_extract_sql_takes_the_query_out_of_a_chatty_answer():
    assert extract_sql("SELECT COUNT(*) FROM orders") == "SELECT COUNT(*) FROM orders"
    assert extract_sql("Here is the query:\n```sql\nSELECT name FROM customers;\n```\nIt lists names.") == "SELECT name FROM customers"
    assert extract_sql("To answer, run SELECT id FROM orders WHERE total > 100; then read the ids.") == "SELECT id FROM orders WHERE total > 100"
    assert extract_sql("SELECT 1\n\nThis query returns one.") == "SELECT 1"
    assert extract_sql("```\nWITH x AS (SELECT 1) SELECT * FROM x\n```") == "WITH x AS (SELECT 1) SELECT * FROM x"
    assert extract_sql("I cannot help with that.") == "I cannot help with that."
    assert extract_sql("A query with a join: SELECT 1") == "SELECT 1"
    assert extract_sql("with recursive n(x) as (select 1) select x from n") == "with recursive n(x) as (select 1) select x from n"
    assert normalize_sql("SELECT  name\nFROM customers ;") == "SELECT name FROM customers"
