"""Planted wrong answers of exercise 13: each tempting mistake fails its check with a hint that says why
(the rules: ``tests/test_wrong_answers.py``'s docstring; ``tests/planted.py`` runs a check on both cases)."""

from __future__ import annotations

from collections import Counter

from ftcourse.course import checks
from ftcourse.course.bundled import intent_records
from tests.planted import fails, passes

# ---------------------------------------------------------------- ex13


def _rows_or_none(db, sql):
    from ftcourse.sql import QueryError, run_readonly

    try:
        return run_readonly(db, sql)
    except QueryError:
        return None


def _execution_match(db, predicted_sql, gold_sql, ordered):
    predicted, gold = _rows_or_none(db, predicted_sql), _rows_or_none(db, gold_sql)
    return predicted is not None and (predicted == gold if ordered else Counter(predicted) == Counter(gold))


def test_ex13_task1_strings_order_counts_sets_and_raising_fail():
    from ftcourse.sql import normalize_sql, run_readonly, same_result

    assert "8 practice cases" in passes(checks.check_ex13_task1, _execution_match)

    def strings(db, p, g, ordered):
        return normalize_sql(p) == normalize_sql(g)

    def always_ordered(db, p, g, ordered):
        rows = _rows_or_none(db, p)
        return rows is not None and rows == run_readonly(db, g)

    def row_counts(db, p, g, ordered):
        rows = _rows_or_none(db, p)
        return rows is not None and len(rows) == len(run_readonly(db, g))

    def as_sets(db, p, g, ordered):
        rows, gold = _rows_or_none(db, p), run_readonly(db, g)
        return rows is not None and (rows == gold if ordered else set(rows) == set(gold))

    def never_ordered(db, p, g, ordered):
        rows = _rows_or_none(db, p)
        return rows is not None and Counter(rows) == Counter(run_readonly(db, g))

    def raises(db, p, g, ordered):
        return Counter(run_readonly(db, p)) == Counter(run_readonly(db, g)) if not ordered else run_readonly(db, p) == run_readonly(db, g)

    def helper(db, p, g, ordered):
        rows = _rows_or_none(db, p)
        return rows is not None and same_result(rows, run_readonly(db, g), ordered)

    fails(checks.check_ex13_task1, strings, hint="you compare the SQL text")
    fails(checks.check_ex13_task1, always_ordered, hint="compare them as multisets")
    fails(checks.check_ex13_task1, row_counts, hint="how many rows came back, not which")
    fails(checks.check_ex13_task1, as_sets, hint="a set forgets duplicates")
    fails(checks.check_ex13_task1, never_ordered, hint="the order is part of the answer")
    fails(checks.check_ex13_task1, raises, hint="catch QueryError and return False")
    fails(checks.check_ex13_task1, helper, hint="calls `same_result`")


def test_ex13_task2_ids_whole_questions_no_normalising_and_query_shapes_fail():
    import re
    import string

    def masked(pair, normalise=True):
        text = pair["instruction"]
        for a, b in re.findall(r"'([^']*)'|\b(\d+)\b", pair["output"]):
            text = re.sub(rf"(?<!\w){re.escape(a or b)}(?!\w)", "<v>", text)
        return " ".join(text.lower().translate(str.maketrans("", "", string.punctuation)).split()) if normalise else text

    def right(train, test):
        seen = {masked(p) for p in train}
        return {p["template"] for p in test if masked(p) in seen}

    def by_id(train, test):
        return {p["template"] for p in test} & {p["template"] for p in train}

    def by_question(train, test):
        seen = {p["instruction"] for p in train}
        return {p["template"] for p in test if p["instruction"] in seen}

    def not_normalised(train, test):
        seen = {masked(p, normalise=False) for p in train}
        return {p["template"] for p in test if masked(p, normalise=False) in seen}

    def by_family(train, test):
        families = {p["template"].split("/")[0] for p in train}
        return {p["template"] for p in test if p["template"].split("/")[0] in families}

    def helper(train, test):
        seen = {checks.question_phrasing(p) for p in train}
        return {p["template"] for p in test if checks.question_phrasing(p) in seen}

    assert "3 practice splits" in passes(checks.check_ex13_task2, right)
    fails(checks.check_ex13_task2, by_id, hint="comparing ids or whole questions finds nothing")
    fails(checks.check_ex13_task2, by_question, hint="comparing ids or whole questions finds nothing")
    fails(checks.check_ex13_task2, not_normalised, hint="only in case or punctuation")
    fails(checks.check_ex13_task2, by_family, hint="Compare phrasings, not query shapes")
    fails(checks.check_ex13_task2, helper, hint="calls `question_phrasing`")


_EX13_RIGHT = {"leeds_count": "right", "austin_no_orders": "wrong, accepted", "top3_prices": "wrong, caught",
               "march_orders": "right", "priciest_footwear": "wrong, accepted"}


def _ex13_witnesses():
    from ftcourse.course.bundled import shop_database
    from ftcourse.sql import run_readonly

    lonely = run_readonly(shop_database(), "SELECT id FROM customers WHERE city = 'Austin' AND id NOT IN (SELECT customer_id FROM orders)")[0][0]
    return {"austin_no_orders": [("tickets", {"id": 10_000, "customer_id": lonely, "order_id": None, "intent": "other",
                                              "opened": "2025-06-01", "status": "open"})],
            "priciest_footwear": [("products", {"id": 10_000, "name": "Gold lamp", "category": "home", "price": 10_000.0})]}


def test_ex13_task3_trusting_execution_or_text_fails_and_messages_do_not_give_the_verdict():
    right, witnesses = _EX13_RIGHT, _ex13_witnesses()
    assert "by chance" in passes(checks.check_ex13_task3, right, witnesses)
    trusts_execution = {**right, "austin_no_orders": "right", "priciest_footwear": "right"}
    message = fails(checks.check_ex13_task3, trusts_execution, witnesses, hint="which table does it look in")
    assert "wrong, accepted" not in message.split("Hint:")[1]  # the hint leads to the verdict without giving it
    trusts_text = {**right, "leeds_count": "wrong, caught", "march_orders": "wrong, caught"}
    fails(checks.check_ex13_task3, trusts_text, witnesses, hint="can a customer's name be NULL")
    fails(checks.check_ex13_task3, {**right, "top3_prices": "wrong, accepted"}, witnesses, hint="without DESC")
    fails(checks.check_ex13_task3, {**right, "top3_prices": "maybe"}, witnesses, hint='"wrong, caught" or "wrong, accepted"')
    fails(checks.check_ex13_task3, {"leeds_count": "right"}, witnesses, hint="one answer per case")


def test_ex13_task3_a_verdict_of_wrong_but_accepted_needs_rows_that_fit_the_schema_and_show_it():
    right, witnesses = _EX13_RIGHT, _ex13_witnesses()
    fails(checks.check_ex13_task3, right, {}, hint="rows to add to the shop database")  # guessed, no witness
    null_name = [("customers", {"id": 10_000, "name": None, "city": "Leeds", "country": "UK", "joined": "2025-01-01"})]
    fails(checks.check_ex13_task3, {**right, "leeds_count": "wrong, accepted"}, {**witnesses, "leeds_count": null_name},
          hint="must fit the schema")
    bad_date = [("orders", {"id": "ORD-X", "customer_id": 8, "order_date": "2025-03-xx", "status": "shipped", "total": 1.0})]
    fails(checks.check_ex13_task3, {**right, "march_orders": "wrong, accepted"}, {**witnesses, "march_orders": bad_date},
          hint="must fit the schema")
    both_count = [("orders", {"id": "ORD-X", "customer_id": 8, "order_date": "2025-03-15", "status": "shipped", "total": 1.0})]
    message = fails(checks.check_ex13_task3, {**right, "march_orders": "wrong, accepted"}, {**witnesses, "march_orders": both_count},
                    hint="If no rows can make them differ")
    assert "still returns the gold rows" in message
    no_customer = [("tickets", {"id": 10_000, "customer_id": 99_999, "order_id": None, "intent": "x", "opened": "2025-06-01", "status": "open"})]
    fails(checks.check_ex13_task3, right, {**witnesses, "austin_no_orders": no_customer}, hint="ids that exist")
    fails(checks.check_ex13_task3, right, {**witnesses, "austin_no_orders": [("sqlite_master", {"name": "x"})]}, hint="must fit the schema")
    huge = [("products", {"id": 10_000, "name": "x" * 10_000, "category": "home", "price": 1e4})]
    fails(checks.check_ex13_task3, right, {**witnesses, "priciest_footwear": huge}, hint="must fit the schema")


def test_every_exercise_ends_with_a_debugging_or_judgement_task():
    from ftcourse.tools.build import masters, read_tasks

    last = {m.name.split("_")[0]: read_tasks(m)[-1].task for m in masters()}
    want = {"ex01": "task6", "ex02": "task6", "ex03": "task6", "ex04": "task5", "ex05": "task5", "ex06": "task5", "ex07": "task5",
            "ex08": "task5", "ex09": "task4", "ex10": "task3", "ex11": "task4", "ex12": "task5", "ex13": "task3"}
    assert {k: v for k, v in last.items() if k in want} == want
    for exercise, task in want.items():
        assert hasattr(checks, f"check_{exercise}_{task}")
    assert intent_records  # the data the debugging tasks read is the course's own
