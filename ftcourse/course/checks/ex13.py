"""Checks of exercise 13, text to SQL (``solutions/ex13_text_to_sql.ipynb``)."""

from __future__ import annotations

import random
import re
import string
from collections.abc import Callable

from ftcourse.course.checks.core import call_learner, expect, expect_choices, forbid_helpers, self_check

__all__ = ["check_ex13_task1", "check_ex13_task2", "check_ex13_task3", "ex13_leaky_split", "EX13_VERDICT_CASES", "question_phrasing"]

# (what the case is, predicted SQL, gold SQL, ordered, whether execution accuracy counts it correct)
_EX13_MATCH_CASES = (
    ("the same query written differently (alias, spacing, lower case)", "select c.name from customers as c where c.city = 'Leeds'",
     "SELECT name FROM customers WHERE city = 'Leeds'", False, True),
    ("the same rows in another order, and the question asks for no order",
     "SELECT name FROM customers WHERE city = 'Dublin' ORDER BY name DESC", "SELECT name FROM customers WHERE city = 'Dublin'", False, True),
    ("the right rows in the wrong order (DESC forgotten), and the question asks for an order",
     "SELECT name FROM customers WHERE city = 'Leeds' ORDER BY joined", "SELECT name FROM customers WHERE city = 'Leeds' ORDER BY joined DESC",
     True, False),
    ("as many rows as the gold query, but other rows", "SELECT name FROM customers WHERE city = 'Galway'",
     "SELECT name FROM customers WHERE city = 'Leeds'", False, False),
    ("the right names, but one of them twice (DISTINCT missing)",
     "SELECT c.name FROM customers c JOIN orders o ON o.customer_id = c.id WHERE c.city = 'Portland'",
     "SELECT DISTINCT c.name FROM customers c JOIN orders o ON o.customer_id = c.id WHERE c.city = 'Portland'", False, False),
    ("a query that does not run (unknown column)", "SELECT customer_name FROM customers WHERE city = 'Leeds'",
     "SELECT name FROM customers WHERE city = 'Leeds'", False, False),
    ("a query that tries to drop a table", "DROP TABLE customers", "SELECT COUNT(*) FROM customers", False, False),
    ("a count written as COUNT(id) instead of COUNT(*)", "SELECT COUNT(id) FROM orders WHERE status = 'cancelled'",
     "SELECT COUNT(*) FROM orders WHERE status = 'cancelled'", False, True),
)


def _wrong_strategies(db) -> dict[str, tuple[Callable[[str, str, bool], bool], str]]:
    """What tempting wrong ``execution_match`` functions answer, with the hint each earns."""
    from collections import Counter

    from ftcourse.sql import QueryError, normalize_sql, run_readonly

    def rows(sql):
        try:
            return run_readonly(db, sql)
        except QueryError:
            return None

    def compared(how):
        return lambda p, g, ordered: (r := rows(p)) is not None and how(r, rows(g), ordered)

    return {
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


@self_check
def check_ex13_task1(execution_match) -> str:
    """``execution_match(db, predicted_sql, gold_sql, ordered) -> bool``: whether the predicted query returns the gold rows."""
    from ftcourse.course.bundled import shop_database
    from ftcourse.fileio import sha256_file
    from ftcourse.sql import QueryError, query_outcome, same_result

    expect(callable(execution_match), "`execution_match` is not a function.", "define def execution_match(db, predicted_sql, gold_sql, ordered): ...")
    forbid_helpers(execution_match, "execution_match", {"same_result": same_result, "query_outcome": query_outcome},
                   "compare the rows yourself; that is the exercise.")
    db = shop_database()
    before = sha256_file(db)
    got = []
    for what, pred, gold, ordered, _ in _EX13_MATCH_CASES:
        try:
            got.append(execution_match(db, pred, gold, ordered))
        except QueryError:
            expect(False, f"`execution_match` raised QueryError on a hidden case: {what}.",
                   "a predicted query that does not run is a wrong answer: catch QueryError and return False.")
        except Exception:  # any other error is the learner's bug: call_learner reports it
            call_learner(execution_match, db, pred, gold, ordered, name="execution_match")
    expect(sha256_file(db) == before, "the database file changed while your function ran.", "run every query with run_readonly(db, sql).")
    expect(all(isinstance(g, bool) for g in got), "`execution_match` should return True or False for every case.",
           "return the comparison itself, e.g. `return predicted_rows == gold_rows` (a bool).")
    for strategy, (wrong, hint) in _wrong_strategies(db).items():
        if got == [wrong(pred, gold, ordered) for _, pred, gold, ordered, _ in _EX13_MATCH_CASES]:
            expect(False, f"`execution_match` answers like a comparison of {strategy} would, on {len(got)} hidden cases.", hint)
    for (what, *_, want), answer in zip(_EX13_MATCH_CASES, got):
        expect(answer == want, f"`execution_match` is wrong on a hidden case: {what}.",
               "run both queries with run_readonly; a query that raises QueryError is wrong (False); compare the rows as a Counter, "
               "or as lists when ordered is True.")
    return f"right on {len(got)} hidden cases: other spellings of the same query, order only when asked, duplicates, errors and a DROP TABLE."


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


@self_check
def check_ex13_task2(leaked_templates) -> str:
    """``leaked_templates(train, test) -> set``: the test template ids whose phrasing (slot values masked) is a training phrasing."""
    expect(callable(leaked_templates), "`leaked_templates` is not a function.", "define def leaked_templates(train, test): ...")
    forbid_helpers(leaked_templates, "leaked_templates", {"question_phrasing": question_phrasing},
                   "mask and normalise the questions yourself; that is the exercise.")
    for seed in (0, 11, 23):
        train, test = ex13_leaky_split(seed)
        want = _leaked(train, test)
        got = call_learner(leaked_templates, [dict(p) for p in train], [dict(p) for p in test], name="leaked_templates")
        expect(isinstance(got, (set, frozenset, list, tuple)) and all(isinstance(t, str) for t in got),
               "`leaked_templates` should return a set of template ids (strings).", "return e.g. {'count_customers_city/4', ...}.")
        got = set(got)
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
                      f"(hidden split, seed {seed}).", hint)
    return "finds the planted leaks in 3 hidden splits: masked slot values, normalised case and punctuation, and no false alarms."


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
_EX13_CHECK_BOTH = (" Run both queries with your execution_match, then ask whether the prediction answers the question on *any* "
                    "database with this schema, not only on this one.")
_EX13_VERDICTS = {  # the verdict, and a hint that leads to it without giving it
    "leeds_count": ("right", "can COUNT(name) ever differ from COUNT(*)? Look at the schema: can a customer's name be NULL?" + _EX13_CHECK_BOTH),
    "austin_no_orders": ("wrong, accepted", "read the subquery: which table does it look in?" + _EX13_CHECK_BOTH),
    "top3_prices": ("wrong, caught", "which end of the price list does ORDER BY price without DESC start from?" + _EX13_CHECK_BOTH),
    "march_orders": ("right", "dates are 'YYYY-MM-DD' text: which dates does LIKE '2025-03%' select?" + _EX13_CHECK_BOTH),
    "priciest_footwear": ("wrong, accepted", "which condition of the question is missing from the prediction?" + _EX13_CHECK_BOTH),
}


@self_check
def check_ex13_task3(verdicts) -> str:
    """``verdicts``: for each key of :data:`EX13_VERDICT_CASES`, "right", "wrong, caught" or "wrong, accepted"."""
    expect_choices(verdicts, _EX13_VERDICTS, ("right", "wrong, caught", "wrong, accepted"), name="verdicts", unit="case")
    return ("execution accuracy checks results on one database: a wrong query can match by chance. Test suites of databases "
            "(Zhong et al., 2020) make that unlikely.")
