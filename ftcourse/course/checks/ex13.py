"""Checks of exercise 13, text to SQL (``solutions/ex13_text_to_sql.ipynb``).

Every task follows the grading protocol (``core``'s docstring): a collect step runs the learner's function on the case's
inputs (query pairs, seeds of a leaky split) or turns their answers into plain data, and a judge recomputes the truth on
the grader's own copy of the shop database and names the tempting wrong answer the learner's matches (the SQL text
compared, the order always or never compared, row counts or sets, an exception escaping; ids or whole questions compared;
a verdict without a database that proves it). The practice cases are here; the hidden inputs and expected answers the
grader uses are in ``solutions/hidden/ex13.json``.
"""

from __future__ import annotations

import random
import re
import string
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ftcourse.course.checks.core import Case, describe, expect, forbid_source_helpers, graded_check, output_of, outputs_of, run_learner

__all__ = ["check_ex13_task1", "check_ex13_task2", "check_ex13_task3", "ex13_leaky_split", "EX13_VERDICT_CASES", "question_phrasing"]

#: The practice query pairs of task 1: (predicted SQL, gold SQL, ordered).
_MATCH_PRACTICE = [
    ["select c.name from customers as c where c.city = 'Leeds'", "SELECT name FROM customers WHERE city = 'Leeds'", False],
    ["SELECT name FROM customers WHERE city = 'Dublin' ORDER BY name DESC", "SELECT name FROM customers WHERE city = 'Dublin'", False],
    ["SELECT name FROM customers WHERE city = 'Leeds' ORDER BY joined", "SELECT name FROM customers WHERE city = 'Leeds' ORDER BY joined DESC", True],
    ["SELECT name FROM customers WHERE city = 'Galway'", "SELECT name FROM customers WHERE city = 'Leeds'", False],
    ["SELECT c.name FROM customers c JOIN orders o ON o.customer_id = c.id WHERE c.city = 'Portland'",
     "SELECT DISTINCT c.name FROM customers c JOIN orders o ON o.customer_id = c.id WHERE c.city = 'Portland'", False],
    ["SELECT customer_name FROM customers WHERE city = 'Leeds'", "SELECT name FROM customers WHERE city = 'Leeds'", False],
    ["DROP TABLE customers", "SELECT COUNT(*) FROM customers", False],
    ["SELECT COUNT(id) FROM orders WHERE status = 'cancelled'", "SELECT COUNT(*) FROM orders WHERE status = 'cancelled'", False],
]


def _rows(db, sql: str) -> list | None:
    """The rows of ``sql`` run read-only on ``db``, or None when it does not run."""
    from ftcourse.sql import QueryError, run_readonly

    try:
        return run_readonly(db, sql)
    except QueryError:
        return None


def _strategies(db) -> dict[str, tuple[Callable[[str, str, bool], bool], str]]:
    """The right comparison ("right") and what tempting wrong ``execution_match`` functions answer, with the hint each earns."""
    from collections import Counter

    from ftcourse.sql import normalize_sql, same_result

    def compared(how):
        return lambda p, g, ordered: (r := _rows(db, p)) is not None and how(r, _rows(db, g), ordered)

    return {
        "right": (compared(same_result), ""),
        "strings": (lambda p, g, ordered: normalize_sql(p).lower() == normalize_sql(g).lower(),
                    "you compare the SQL text. Two different queries can return the same rows (aliases, COUNT(id) for COUNT(*)): "
                    "run both with run_readonly and compare the rows."),
        "ordered": (compared(lambda r, g, o: r == g),
                    "you compare the rows in order even when the question asks for none: without ORDER BY in the gold query, "
                    "compare them as multisets (collections.Counter of the rows)."),
        "count": (compared(lambda r, g, o: len(r) == len(g)),
                  "you compare how many rows came back, not which: compare the rows themselves."),
        "set": (compared(lambda r, g, o: (r == g) if o else set(r) == set(g)),
                "a set forgets duplicates: a missing DISTINCT returns a name twice and is wrong. Compare multisets (Counter), not sets."),
        "unordered": (compared(lambda r, g, o: Counter(r) == Counter(g)),
                      "when the question asks for an order (ordered=True: the gold query has ORDER BY), the order is part of the answer: "
                      "compare the lists row by row."),
    }


@graded_check({"inputs": {"cases": _MATCH_PRACTICE}, "expected": {}})
def check_ex13_task1(inputs, execution_match) -> dict:
    """``execution_match(db, predicted_sql, gold_sql, ordered) -> bool``: whether the predicted query returns the gold rows."""
    from ftcourse.course.bundled import shop_database
    from ftcourse.fileio import sha256_file

    db = shop_database()
    before = sha256_file(db)
    outputs = [run_learner(execution_match, db, predicted, gold, bool(ordered)) for predicted, gold, ordered in inputs["cases"]]
    return {"outputs": outputs, "db_changed": sha256_file(db) != before}


@check_ex13_task1.judge
def _judge_task1(data: dict, case: Case) -> str:
    from ftcourse.course.bundled import shop_database

    forbid_source_helpers(case, "execution_match", {"same_result": "ftcourse.sql.same_result", "query_outcome": "ftcourse.sql.query_outcome"},
                          "compare the rows yourself; that is the exercise.")
    cases, outputs = case.inputs["cases"], data.get("outputs")
    expect(isinstance(outputs, list) and len(outputs) == len(cases), "no output of `execution_match` was collected.",
           "define def execution_match(db, predicted_sql, gold_sql, ordered): ... and run the task's cell.")
    expect(data.get("db_changed") is False, "the database file changed while your function ran.", "run every query with run_readonly(db, sql).")
    define = "define def execution_match(db, predicted_sql, gold_sql, ordered): ..."
    for (predicted, _, _), entry in zip(cases, outputs):
        expect(not (isinstance(entry, dict) and entry.get("raised") == "QueryError"),
               f"`execution_match` raised QueryError on a {case.kind} case (predicted: {predicted[:80]!r}).",
               "a predicted query that does not run is a wrong answer: catch QueryError and return False.")
    got = [output_of(entry, "execution_match", define)[0] for entry in outputs]
    expect(all(isinstance(g, bool) for g in got), "`execution_match` should return True or False for every case.",
           "return the comparison itself, e.g. `return predicted_rows == gold_rows` (a bool).")
    strategies = _strategies(shop_database())
    answers = {name: [how(p, g, bool(o)) for p, g, o in cases] for name, (how, _) in strategies.items()}
    truth = answers.pop("right")
    for name, wrong in answers.items():
        expect(got == truth or got != wrong, f"`execution_match` answers like a comparison of {name} would, on {len(got)} {case.kind} cases.",
               strategies[name][1])
    for (predicted, gold, ordered), answer, want in zip(cases, got, truth):
        expect(answer == want, f"`execution_match` is wrong on a {case.kind} case: predicted {predicted!r}, gold {gold!r}, ordered={bool(ordered)}.",
               "run both queries with run_readonly; a query that raises QueryError is wrong (False); compare the rows as a Counter, "
               "or as lists when ordered is True.")
    return f"right on {len(got)} {case.kind} cases: other spellings of the same query, order only when asked, duplicates, errors and writes refused."


def question_phrasing(pair: dict) -> str:
    """A question with its slot values masked (the literals of its gold query), lower-cased, without punctuation."""
    text = pair["instruction"]
    literals = re.findall(r"'([^']*)'|(?<![\w.])(\d+(?:\.\d+)?)(?![\w.])", pair["output"])
    for value in sorted({a or b for a, b in literals}, key=len, reverse=True):
        text = re.sub(rf"(?<!\w){re.escape(value)}(?!\w)", "<v>", text, flags=re.IGNORECASE)
    return " ".join(text.lower().translate(str.maketrans("", "", string.punctuation.replace("<", "").replace(">", ""))).split())


_SURFACE = (lambda q: q, lambda q: q[0].lower() + q[1:], lambda q: q.replace(" ", "  ", 1).rstrip("?.!") + " ?")


def ex13_leaky_split(seed: int = 0) -> tuple[list[dict], list[dict]]:
    """A colleague's train/test split of ``text_to_sql.jsonl`` that leaks: three training templates had a third of their
    questions moved to test under new template ids, two of them with another first letter's case or other punctuation
    and spacing. (train, test)."""
    from ftcourse.course.bundled import text_to_sql_records

    data = text_to_sql_records()
    rng = random.Random(seed)
    train, test = [dict(p) for p in data["train"]], [dict(p) for p in data["test"]]
    candidates = sorted({p["template"] for p in train if not re.search(r"month|status_year", p["template"])})
    for k, template in enumerate(rng.sample(candidates, 3)):
        family = template.split("/")[0]
        moved = [p for p in train if p["template"] == template][:2]
        for p in moved:
            train.remove(p)
            test.append({**p, "instruction": _SURFACE[k](p["instruction"]), "template": f"{family}/{4 + k}", "split": "test",
                         "held_out": "phrasing"})
    rng.shuffle(test)
    return train, test


def _leaked(train: list[dict], test: list[dict]) -> set[str]:
    seen = {question_phrasing(p) for p in train}
    return {p["template"] for p in test if question_phrasing(p) in seen}


def _sorted_call(func: Any, *args) -> dict:
    """:func:`run_learner` of ``func(*args)``, a set result sorted into a list (plain data)."""
    if not callable(func):
        return run_learner(func)

    def call():
        result = func(*args)
        return sorted(result, key=str) if isinstance(result, (set, frozenset)) else result

    return run_learner(call)


@graded_check({"inputs": {"seeds": [0, 11, 23]}, "expected": {}})
def check_ex13_task2(inputs, leaked_templates) -> dict:
    """``leaked_templates(train, test) -> set``: the test template ids whose phrasing (slot values masked) is a training phrasing."""
    return {"outputs": [_sorted_call(leaked_templates, *ex13_leaky_split(int(seed))) for seed in inputs["seeds"]]}


@check_ex13_task2.judge
def _judge_task2(data: dict, case: Case) -> str:
    forbid_source_helpers(case, "leaked_templates", {"question_phrasing": "ftcourse.course.checks.ex13.question_phrasing",
                                                     "_leaked": "ftcourse.course.checks.ex13._leaked"},
                          "mask and normalise the questions yourself; that is the exercise.")
    seeds = case.inputs["seeds"]
    for seed, (got, _) in zip(seeds, outputs_of(data, len(seeds), "leaked_templates", "define def leaked_templates(train, test): ...")):
        expect(isinstance(got, list) and all(isinstance(t, str) for t in got),
               "`leaked_templates` should return a set of template ids (strings).", "return e.g. {'count_customers_city/4', ...}.")
        want, got = _leaked(*ex13_leaky_split(int(seed))), set(got)
        if got == want:
            continue
        if not got:
            hint = ("nothing found: the leaked questions have new template ids and other slot values than the training questions, so "
                    "comparing ids or whole questions finds nothing. Mask each question's slot values (the literals of its gold query) "
                    "and compare what is left.")
        elif got < want:
            hint = "some leaks differ from their training phrasing only in case or punctuation: lower-case, drop punctuation, collapse spaces."
        elif got > want:
            hint = ("a new phrasing of a query shape seen in training is allowed (that is what the test measures); a leak is a test "
                    "question with the same phrasing as a training question. Compare phrasings, not query shapes or families.")
        else:
            hint = "compare each test question's masked, normalised phrasing with the set of the training questions' phrasings."
        expect(False, f"`leaked_templates` finds {len(got & want)} of the planted leaks and {len(got - want)} templates that do not leak "
                      f"({case.kind} split, seed {seed}).", hint)
    return f"finds the planted leaks in {len(seeds)} {case.kind} splits: masked slot values, normalised case and punctuation, and no false alarms."


#: The cases of task 3: (question, gold SQL, predicted SQL).
EX13_VERDICT_CASES = {
    "leeds_count": ("How many customers live in Leeds?", "SELECT COUNT(*) FROM customers WHERE city = 'Leeds'",
                    "SELECT COUNT(name) FROM customers WHERE city = 'Leeds'"),
    "austin_no_orders": ("Which customers in Austin have never placed an order?",
                         "SELECT name FROM customers WHERE city = 'Austin' AND id NOT IN (SELECT customer_id FROM orders)",
                         "SELECT name FROM customers WHERE city = 'Austin' AND id NOT IN (SELECT customer_id FROM tickets)"),
    "top3_prices": ("List the 3 most expensive products with their prices, most expensive first.",
                    "SELECT name, price FROM products ORDER BY price DESC LIMIT 3",
                    "SELECT name, price FROM products ORDER BY price LIMIT 3"),
    "march_orders": ("How many orders were placed in March 2025?",
                     "SELECT COUNT(*) FROM orders WHERE strftime('%Y-%m', order_date) = '2025-03'",
                     "SELECT COUNT(*) FROM orders WHERE order_date LIKE '2025-03%'"),
    "priciest_footwear": ("What is the most expensive footwear product?",
                          "SELECT name FROM products WHERE category = 'footwear' ORDER BY price DESC LIMIT 1",
                          "SELECT name FROM products ORDER BY price DESC LIMIT 1"),
}
_VERDICTS = ("right", "wrong, caught", "wrong, accepted")
_CHECK_BOTH = (" Run both queries with your execution_match, then ask whether the prediction answers the question on *any* "
               "database with this schema, not only on this one.")
_VERDICT_HINTS = {  # a hint per case that leads to its verdict without giving it
    "leeds_count": "can COUNT(name) ever differ from COUNT(*)? Look at the schema: can a customer's name be NULL?" + _CHECK_BOTH,
    "austin_no_orders": "read the subquery: which table does it look in?" + _CHECK_BOTH,
    "top3_prices": "which end of the price list does ORDER BY price without DESC start from?" + _CHECK_BOTH,
    "march_orders": "dates are 'YYYY-MM-DD' text: which dates does LIKE '2025-03%' select?" + _CHECK_BOTH,
    "priciest_footwear": "which condition of the question is missing from the prediction?" + _CHECK_BOTH,
}
_WITNESS_HINT = ("give, for each case you judge \"wrong, accepted\", rows to add to the shop database — witnesses[key] = "
                 "[(table, {column: value, ...}), ...] — on which the prediction and the gold query return different rows. The rows "
                 "must fit the schema: every NOT NULL column filled, ids that exist where a column references another table, a new "
                 "primary key, dates as 'YYYY-MM-DD'.")
_MAX_WITNESS_ROWS, _MAX_WITNESS_CELL = 20, 200


def _cell_fits(value: Any, declared: str) -> bool:
    """Whether ``value`` fits a column declared ``declared`` (None is left to the column's NOT NULL)."""
    import datetime

    if value is None:
        return True
    if declared == "DATE":
        try:
            return isinstance(value, str) and datetime.date.fromisoformat(value).isoformat() == value
        except ValueError:
            return False
    kinds = {"INTEGER": (int,), "REAL": (int, float), "TEXT": (str,)}.get(declared, (int, float, str))
    return isinstance(value, kinds) and not isinstance(value, bool) and len(str(value)) <= _MAX_WITNESS_CELL


def _witness_database(db, rows: Any, folder: str) -> tuple[Path | None, str]:
    """A copy of ``db`` in ``folder`` with the learner's ``rows`` added by parameterised INSERTs: (path, "") or (None, why not)."""
    import sqlite3

    if not (isinstance(rows, list) and 0 < len(rows) <= _MAX_WITNESS_ROWS
            and all(isinstance(r, list) and len(r) == 2 and isinstance(r[0], str) and isinstance(r[1], dict) for r in rows)):
        return None, f"it is not a list of 1 to {_MAX_WITNESS_ROWS} (table, {{column: value}}) rows"
    path = Path(folder) / "witness.sqlite"
    path.unlink(missing_ok=True)
    source, copy = sqlite3.connect(f"file:{db}?mode=ro", uri=True), sqlite3.connect(path)
    try:
        source.backup(copy)
        copy.execute("PRAGMA foreign_keys = ON")
        tables = [name for (name,) in copy.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        columns = {t: {c[1]: c[2].upper() for c in copy.execute(f'PRAGMA table_info("{t}")')} for t in tables}
        for table, row in rows:
            if table not in columns or not row or not set(row) <= set(columns[table]):
                return None, f"{table!r} with the columns {sorted(row)[:6]} is not a table of the schema with those columns"
            bad = [c for c, v in row.items() if not _cell_fits(v, columns[table][c])]
            if bad:
                return None, f"the value of {table}.{bad[0]} does not fit its column ({columns[table][bad[0]]})"
            names = ", ".join(f'"{n}"' for n in row)  # table and column names checked against the schema above
            copy.execute(f'INSERT INTO "{table}" ({names}) VALUES ({", ".join("?" * len(row))})', list(row.values()))
        copy.commit()
    except sqlite3.Error as exc:
        return None, f"a row breaks the schema ({exc})"
    finally:
        source.close()
        copy.close()
    return path, ""


def _witness_problem(db, rows: Any, gold: str, predicted: str) -> str:
    """Why ``rows`` do not show the prediction wrong ("" when, with them added, the two queries return different rows)."""
    from ftcourse.sql import same_result

    with tempfile.TemporaryDirectory() as folder:
        path, why = _witness_database(db, rows, folder)
        if path is None:
            return why
        got, want = _rows(path, predicted), _rows(path, gold)
        if want is not None and got is not None and same_result(got, want, "ORDER BY" in gold.upper()):
            return "with those rows added, the prediction still returns the gold rows"
    return ""


@graded_check({"inputs": {}, "expected": {"verdicts": {"leeds_count": "right", "austin_no_orders": "wrong, accepted",
                                                       "top3_prices": "wrong, caught", "march_orders": "right",
                                                       "priciest_footwear": "wrong, accepted"}}})
def check_ex13_task3(inputs, verdicts, witnesses) -> dict:
    """``verdicts``: for each key of :data:`EX13_VERDICT_CASES`, "right", "wrong, caught" or "wrong, accepted";
    ``witnesses``: for each case judged "wrong, accepted", rows that make the prediction's result differ from the gold's."""
    return {"verdicts": describe(verdicts), "witnesses": describe(witnesses)}


@check_ex13_task3.judge
def _judge_task3(data: dict, case: Case) -> str:
    from ftcourse.course.bundled import shop_database
    from ftcourse.sql import same_result

    verdicts, _ = output_of(data.get("verdicts"), "verdicts")
    expect(isinstance(verdicts, dict) and set(verdicts) == set(EX13_VERDICT_CASES),
           f"`verdicts` must be a dict with the keys {sorted(EX13_VERDICT_CASES)}.", "fill in one answer per case.")
    witnesses, _ = output_of(data.get("witnesses"), "witnesses")
    expect(isinstance(witnesses, dict), "`witnesses` must be a dict: case key -> rows.", _WITNESS_HINT)
    db, quoted = shop_database(), [f'"{v}"' for v in _VERDICTS]
    for key, (_, gold, predicted) in EX13_VERDICT_CASES.items():
        got = verdicts[key]
        expect(got in _VERDICTS, f"verdicts[{key!r}] is {got!r}.", f"answer {', '.join(quoted[:-1])} or {quoted[-1]}.")
        rows, want_rows = _rows(db, predicted), _rows(db, gold)
        accepted = rows is not None and want_rows is not None and same_result(rows, want_rows, "ORDER BY" in gold.upper())
        expect(accepted or got == "wrong, caught", f"verdicts[{key!r}] is {got!r}, but execution accuracy rejects this prediction "
               "on the shop database.", _VERDICT_HINTS[key])
        expect(not accepted or got != "wrong, caught", f"verdicts[{key!r}] is {got!r}, but execution accuracy accepts this prediction "
               "on the shop database.", _VERDICT_HINTS[key])
        if got == "wrong, accepted":
            problem = _witness_problem(db, witnesses.get(key), gold, predicted) if key in witnesses else "there is none"
            expect(not problem, f"your witness for {key!r} does not show the prediction wrong: {problem}.",
                   _WITNESS_HINT + " If no rows can make them differ, the prediction answers the question.")
        expect(got == case.expected["verdicts"][key], f"verdicts[{key!r}] is {got!r}.", _VERDICT_HINTS[key])
    return ("execution accuracy checks results on one database: a wrong query can match by chance, and your rows show it. "
            "Test suites of databases (Zhong et al., 2020) make that unlikely.")
