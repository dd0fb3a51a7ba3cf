#!/usr/bin/env python3
"""Generate the shop's SQLite database and its question → SQL pairs (lesson 13).

Writes (relative to the repository root):
  data/raw/shop.sqlite        the invented shop of the intent data: customers, products, orders, order_items, tickets
  data/raw/text_to_sql.jsonl  questions about it with a gold SQLite query each (Alpaca-style), split by template

The database is built from a fixed seed: the catalogue and first names are those of ``make_support_intents.py``
(products with their categories, the customers' first names, the cities of its addresses), order ids have the
intent data's ``ORD-`` shape, and tickets carry the course's ten intents.

Questions come from *families* (one SQL shape each, with slots such as a city or a product) asked with three
hand-written *phrasings* (templates ``<family>/<k>``). The split is by template: for most families one phrasing
(seeded) is held out for test (``held_out: "phrasing"``); a few families, whose SQL combines constructs the training
families teach, are test-only (``held_out: "query shape"``). A test question's slot values never occur in that
family's training questions, so no test gold query is a training gold query.

Checks: every gold query executes on the committed database (opened read-only) and returns at least one row that is
not all NULL; the sort keys of every ORDER BY ... LIMIT query are unique (no ties at the cut); no template, question
or gold query is in both splits.

Run:  python3 data/tools/make_shop_sql.py          (writes + checks)
      python3 data/tools/make_shop_sql.py --check  (checks the committed files only)
"""
from __future__ import annotations

import argparse
import json
import random
import sqlite3
import sys
import tempfile
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_support_intents import LABELS as INTENTS  # noqa: E402
from make_support_intents import NAMES, PRODUCTS  # noqa: E402

SEED = 20261207
ROOT = Path(__file__).resolve().parents[2]
DB_PATH = ROOT / "data" / "raw" / "shop.sqlite"
PAIRS_PATH = ROOT / "data" / "raw" / "text_to_sql.jsonl"

# ---------------------------------------------------------------------------------------------- the database

CATEGORY = {"device": "electronics", "appliance": "appliances", "hardgoods": "home", "textile": "textiles",
            "apparel": "clothing", "footwear": "footwear", "bag": "bags", "furniture": "furniture"}
# the cities of make_support_intents.ADDRESSES
CITIES = [("Boston", "USA"), ("Springfield", "USA"), ("Bristol", "UK"), ("Portland", "USA"), ("Leeds", "UK"),
          ("San Francisco", "USA"), ("Cambridge", "UK"), ("Austin", "USA"), ("Norwich", "UK"), ("Chicago", "USA"),
          ("Galway", "Ireland"), ("Reading", "UK"), ("New York", "USA"), ("Dublin", "Ireland")]
SURNAMES = ["Shah", "Reed", "Kowalski", "Costa", "Byrne", "Haddad", "Novak", "Park", "Adeyemi", "Frost", "Lindqvist",
            "Chen", "Ortega", "Rahman", "Walsh", "Murphy", "Bell", "Petrova", "Rossi", "Tanaka"]
ORDER_STATUSES = ["processing", "shipped", "delivered", "cancelled", "returned"]
TICKET_STATUSES = ["open", "closed"]
N_CUSTOMERS, N_ORDERS, N_TICKETS = 80, 320, 220
ORDER_INTENTS = {"order_status", "cancel_order", "return_refund", "damaged_item", "billing_issue", "change_address"}

SCHEMA = """
CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, city TEXT NOT NULL, country TEXT NOT NULL, joined DATE NOT NULL);
CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT NOT NULL, category TEXT NOT NULL, price REAL NOT NULL);
CREATE TABLE orders (id TEXT PRIMARY KEY, customer_id INTEGER NOT NULL REFERENCES customers(id), order_date DATE NOT NULL,
                     status TEXT NOT NULL, total REAL NOT NULL);
CREATE TABLE order_items (order_id TEXT NOT NULL REFERENCES orders(id), product_id INTEGER NOT NULL REFERENCES products(id),
                          quantity INTEGER NOT NULL, PRIMARY KEY (order_id, product_id));
CREATE TABLE tickets (id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL REFERENCES customers(id),
                      order_id TEXT REFERENCES orders(id), intent TEXT NOT NULL, opened DATE NOT NULL, status TEXT NOT NULL);
"""


def _day(rng: random.Random, start: date, end: date) -> date:
    return start + timedelta(days=rng.randrange((end - start).days + 1))


def _unique_prices(rng: random.Random, n: int) -> list[float]:
    prices: set[float] = set()
    while len(prices) < n:
        prices.add(float(f"{rng.randint(9, 449)}.{rng.choice(['99', '49', '00', '95'])}"))
    out = sorted(prices)
    rng.shuffle(out)
    return out


def build_database(conn: sqlite3.Connection) -> None:
    """Fill an empty database with the seeded shop."""
    rng = random.Random(SEED)
    conn.executescript(SCHEMA)
    firsts = [n.split()[0] for n in NAMES]
    names = rng.sample([f"{f} {s}" for f in firsts for s in SURNAMES], N_CUSTOMERS)
    joined_days = rng.sample(range((date(2025, 6, 30) - date(2022, 1, 1)).days), N_CUSTOMERS)
    customers = []
    for i, name in enumerate(names, 1):
        city, country = CITIES[(i - 1) % len(CITIES)] if i <= len(CITIES) else rng.choice(CITIES)
        customers.append((i, name, city, country, (date(2022, 1, 1) + timedelta(days=joined_days[i - 1])).isoformat()))
    conn.executemany("INSERT INTO customers VALUES (?, ?, ?, ?, ?)", customers)
    prices = _unique_prices(rng, len(PRODUCTS))
    products = [(i, p[0], CATEGORY[p[1]], prices[i - 1]) for i, p in enumerate(PRODUCTS, 1)]
    conn.executemany("INSERT INTO products VALUES (?, ?, ?, ?)", products)
    price = {p[0]: p[3] for p in products}
    buyers = rng.sample(range(1, N_CUSTOMERS + 1), 64)  # 16 customers never order
    ids, totals, orders, items = set(), set(), [], []
    while len(orders) < N_ORDERS:
        oid = f"ORD-{rng.randint(100000, 999999)}"
        lines = {pid: rng.choice([1, 1, 1, 2, 2, 3]) for pid in rng.sample(sorted(price), rng.choice([1, 1, 2, 2, 3]))}
        total = round(sum(q * price[pid] for pid, q in lines.items()), 2)
        if oid in ids or total in totals:
            continue
        ids.add(oid)
        totals.add(total)
        status = rng.choices(ORDER_STATUSES, weights=[10, 15, 55, 10, 10])[0]
        when = _day(rng, date(2024, 1, 1), date(2025, 11, 30)).isoformat()
        orders.append((oid, rng.choice(buyers), when, status, total))
        items += [(oid, pid, q) for pid, q in sorted(lines.items())]
    orders.sort()
    conn.executemany("INSERT INTO orders VALUES (?, ?, ?, ?, ?)", orders)
    conn.executemany("INSERT INTO order_items VALUES (?, ?, ?)", sorted(items))
    by_customer: dict[int, list[tuple]] = {}
    for o in orders:
        by_customer.setdefault(o[1], []).append(o)
    tickets = []
    for tid in range(1, N_TICKETS + 1):
        intent = rng.choice(INTENTS)
        customer = rng.choice(buyers if intent in ORDER_INTENTS else range(1, N_CUSTOMERS + 1))
        order = rng.choice(by_customer[customer]) if intent in ORDER_INTENTS else None
        start = date.fromisoformat(order[2]) if order else date(2024, 1, 1)
        opened = _day(rng, start, min(start + timedelta(days=40), date(2025, 12, 5))).isoformat()
        status = rng.choices(TICKET_STATUSES, weights=[3, 7])[0]
        tickets.append((tid, customer, order[0] if order else None, intent, opened, status))
    conn.executemany("INSERT INTO tickets VALUES (?, ?, ?, ?, ?, ?)", tickets)
    conn.commit()


# ---------------------------------------------------------------------------------------------- the questions

MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November",
          "December"]


def _column(conn: sqlite3.Connection, sql: str) -> list:
    return [row[0] for row in conn.execute(sql)]


def slot_values(conn: sqlite3.Connection) -> dict[str, list[dict]]:
    """Every combination of slot values a family can be asked with, by slot kind."""
    months = [{"month": MONTHS[m - 1], "mm": f"{m:02d}", "year": y} for y in (2024, 2025) for m in range(1, 13)]
    return {
        "city": [{"city": c} for c in _column(conn, "SELECT DISTINCT city FROM customers ORDER BY city")],
        "category": [{"category": c} for c in _column(conn, "SELECT DISTINCT category FROM products ORDER BY category")],
        "product": [{"product": p} for p in _column(conn, "SELECT name FROM products ORDER BY id")],
        "name": [{"name": n} for n in _column(conn, "SELECT name FROM customers ORDER BY id")],
        "order": [{"order": o} for o in _column(conn, "SELECT id FROM orders ORDER BY id")],
        "ticket_order": [{"order": o} for o in _column(conn, "SELECT DISTINCT order_id FROM tickets WHERE order_id IS NOT NULL ORDER BY order_id")],
        "price": [{"x": x} for x in range(20, 301, 10)],
        "total": [{"x": x} for x in range(100, 1001, 50)],
        "n": [{"n": n} for n in range(2, 11)],
        "month": months,
        "status_year": [{"status": s, "year": y} for s in ORDER_STATUSES for y in (2024, 2025)],
        "intent_status": [{"intent": i, "status": s} for i in INTENTS for s in TICKET_STATUSES],
    }


# (family, slot kind, gold SQL, phrasings); a family is test-only when listed in HELD_OUT_FAMILIES
FAMILIES = [
    ("count_customers_city", "city", "SELECT COUNT(*) FROM customers WHERE city = '{city}'", [
        "How many customers live in {city}?", "Count the customers from {city}.",
        "What is the number of customers based in {city}?"]),
    ("list_customers_city", "city", "SELECT name FROM customers WHERE city = '{city}'", [
        "List the names of the customers in {city}.", "Which customers are from {city}?",
        "Show me every customer who lives in {city}."]),
    ("customer_city", "name", "SELECT city FROM customers WHERE name = '{name}'", [
        "Which city does {name} live in?", "Where is the customer {name} based?", "What city is {name} from?"]),
    ("products_in_category", "category", "SELECT name FROM products WHERE category = '{category}'", [
        "Which products are in the {category} category?", "List all {category} products.",
        "Name the products we sell in {category}."]),
    ("count_products_category", "category", "SELECT COUNT(*) FROM products WHERE category = '{category}'", [
        "How many products are in the {category} category?", "Count the {category} products.",
        "What is the number of products we sell in {category}?"]),
    ("price_of_product", "product", "SELECT price FROM products WHERE name = '{product}'", [
        "What does the {product} cost?", "How much is the {product}?", "Give me the price of the {product}."]),
    ("products_cheaper", "price", "SELECT name FROM products WHERE price < {x}", [
        "Which products cost less than ${x}?", "List the products priced under {x} dollars.",
        "Show the names of products cheaper than {x}."]),
    ("avg_price_category", "category", "SELECT AVG(price) FROM products WHERE category = '{category}'", [
        "What is the average price of {category} products?", "On average, how much does a {category} product cost?",
        "Give the mean price in the {category} category."]),
    ("most_expensive_in_category", "category",
     "SELECT name FROM products WHERE category = '{category}' ORDER BY price DESC LIMIT 1", [
         "What is the most expensive {category} product?", "Which {category} product has the highest price?",
         "Name the priciest item in {category}."]),
    ("top_n_expensive", "n", "SELECT name, price FROM products ORDER BY price DESC LIMIT {n}", [
        "List the {n} most expensive products with their prices, most expensive first.",
        "Show the top {n} products by price (name and price), highest first.",
        "Give me the names and prices of the {n} priciest products, in descending order of price."]),
    ("order_status", "order", "SELECT status FROM orders WHERE id = '{order}'", [
        "What is the status of order {order}?", "Tell me where order {order} stands.",
        "Has order {order} been delivered, shipped or something else?"]),
    ("order_date", "order", "SELECT order_date FROM orders WHERE id = '{order}'", [
        "When was order {order} placed?", "On what date did the customer place {order}?",
        "Give me the order date of {order}."]),
    ("count_orders_status_year", "status_year",
     "SELECT COUNT(*) FROM orders WHERE status = '{status}' AND strftime('%Y', order_date) = '{year}'", [
         "How many orders placed in {year} are {status}?", "Count the {status} orders from {year}.",
         "What is the number of {year} orders with status {status}?"]),
    ("orders_in_month", "month", "SELECT COUNT(*) FROM orders WHERE strftime('%Y-%m', order_date) = '{year}-{mm}'", [
        "How many orders were placed in {month} {year}?", "Count the orders from {month} {year}.",
        "What was the number of orders in {month} {year}?"]),
    ("status_counts_month", "month",
     "SELECT status, COUNT(*) FROM orders WHERE strftime('%Y-%m', order_date) = '{year}-{mm}' GROUP BY status", [
         "For each status, how many orders were placed in {month} {year}?",
         "Break down the {month} {year} orders by status, with a count for each.",
         "How many orders of each status are from {month} {year}?"]),
    ("orders_above_total", "total", "SELECT id FROM orders WHERE total > {x}", [
        "Which orders are worth more than ${x}?", "List the ids of orders with a total above {x} dollars.",
        "Show the orders whose total exceeds {x}."]),
    ("orders_of_customer", "name",
     "SELECT o.id FROM orders o JOIN customers c ON o.customer_id = c.id WHERE c.name = '{name}'", [
         "Which orders did {name} place?", "List the order ids of {name}.", "Show all orders made by {name}."]),
    ("total_spent_customer", "name",
     "SELECT SUM(o.total) FROM orders o JOIN customers c ON o.customer_id = c.id WHERE c.name = '{name}'", [
         "How much has {name} spent in total?", "What is the total value of {name}'s orders?",
         "Add up the order totals of {name}."]),
    ("most_expensive_order_customer", "name",
     "SELECT o.id FROM orders o JOIN customers c ON o.customer_id = c.id WHERE c.name = '{name}' ORDER BY o.total DESC LIMIT 1", [
         "What is the most expensive order {name} has placed?", "Which of {name}'s orders has the highest total?",
         "Find the biggest order by {name}."]),
    ("avg_order_value_city", "city",
     "SELECT AVG(o.total) FROM orders o JOIN customers c ON o.customer_id = c.id WHERE c.city = '{city}'", [
         "What is the average order total of customers in {city}?", "On average, how much is an order from {city}?",
         "Give the mean order value for {city} customers."]),
    ("orders_per_customer_city", "city",
     "SELECT c.name, COUNT(o.id) FROM customers c JOIN orders o ON o.customer_id = c.id WHERE c.city = '{city}' GROUP BY c.name", [
         "How many orders has each customer in {city} placed?", "For every customer from {city} who ordered, count their orders.",
         "List the {city} customers with their number of orders."]),
    ("customers_without_orders_city", "city",
     "SELECT name FROM customers WHERE city = '{city}' AND id NOT IN (SELECT customer_id FROM orders)", [
         "Which customers in {city} have never placed an order?", "List the {city} customers with no orders.",
         "Who in {city} has not ordered anything yet?"]),
    ("top_customers_spend", "n",
     "SELECT c.name FROM customers c JOIN orders o ON o.customer_id = c.id GROUP BY c.id ORDER BY SUM(o.total) DESC LIMIT {n}", [
         "Who are the {n} customers who spent the most, biggest spender first?",
         "List the names of the top {n} customers by total order value, highest first.",
         "Rank the customers by how much they spent and give the first {n} names."]),
    ("newest_customers", "n", "SELECT name FROM customers ORDER BY joined DESC LIMIT {n}", [
        "Who are the {n} customers who joined most recently, newest first?", "List the {n} newest customers, latest first.",
        "Give the names of the last {n} customers to sign up, most recent first."]),
    ("products_in_order", "order",
     "SELECT p.name FROM order_items i JOIN products p ON i.product_id = p.id WHERE i.order_id = '{order}'", [
         "Which products are in order {order}?", "What did order {order} contain?", "List the items of order {order}."]),
    ("units_sold_product", "product",
     "SELECT SUM(i.quantity) FROM order_items i JOIN products p ON i.product_id = p.id WHERE p.name = '{product}'", [
         "How many units of the {product} have been sold?", "What is the total quantity ordered of the {product}?",
         "Count the {product} units across all orders."]),
    ("customers_bought_product", "product",
     "SELECT DISTINCT c.name FROM customers c JOIN orders o ON o.customer_id = c.id JOIN order_items i ON i.order_id = o.id "
     "JOIN products p ON i.product_id = p.id WHERE p.name = '{product}'", [
         "Which customers bought the {product}?", "List everyone who has ordered the {product}.",
         "Who has purchased the {product}? Give each name once."]),
    ("count_tickets_intent_status", "intent_status",
     "SELECT COUNT(*) FROM tickets WHERE intent = '{intent}' AND status = '{status}'", [
         "How many {status} tickets have the intent {intent}?", "Count the {intent} tickets that are {status}.",
         "What is the number of {status} support tickets about {intent}?"]),
    ("open_tickets_customer", "name",
     "SELECT COUNT(*) FROM tickets t JOIN customers c ON t.customer_id = c.id WHERE c.name = '{name}' AND t.status = 'open'", [
         "How many open tickets does {name} have?", "Count the support tickets of {name} that are still open.",
         "What is the number of unresolved tickets for {name}?"]),
    ("tickets_for_order", "ticket_order", "SELECT id, intent FROM tickets WHERE order_id = '{order}'", [
        "Which tickets were opened about order {order}? Give their ids and intents.",
        "List the id and intent of every support ticket for order {order}.",
        "Show the tickets (id, intent) linked to {order}."]),
]
#: Test-only families: each combines constructs that training families teach (a count by another column, a comparison
#: on another table, a join with an average, a lookup of another column).
HELD_OUT_FAMILIES = ("count_products_category", "orders_above_total", "avg_order_value_city", "customer_city")
TRAIN_PER_TEMPLATE, TEST_PER_TEMPLATE = 6, 2


def _answerable(conn: sqlite3.Connection, sql: str) -> bool:
    rows = conn.execute(sql).fetchall()
    return bool(rows) and any(v is not None for row in rows for v in row)


def build_pairs(conn: sqlite3.Connection) -> list[dict]:
    """All question → SQL pairs, split by template (see the module docstring)."""
    rng = random.Random(SEED + 1)
    values = slot_values(conn)
    pairs = []
    for family, kind, sql, phrasings in FAMILIES:
        combos = [v for v in values[kind] if _answerable(conn, sql.format(**v))]
        rng.shuffle(combos)
        ordered = "ORDER BY" in sql
        if family in HELD_OUT_FAMILIES:
            test_k, test_combos, train_combos = set(range(len(phrasings))), combos[:TEST_PER_TEMPLATE * len(phrasings)], []
        else:
            test_k, test_combos, train_combos = {rng.randrange(len(phrasings))}, combos[:TEST_PER_TEMPLATE], combos[TEST_PER_TEMPLATE:][:2 * TRAIN_PER_TEMPLATE]
        for k, phrasing in enumerate(phrasings):
            test = k in test_k
            if test:
                chosen = test_combos[:TEST_PER_TEMPLATE] if family not in HELD_OUT_FAMILIES else test_combos[k * TEST_PER_TEMPLATE:(k + 1) * TEST_PER_TEMPLATE]
            else:
                chosen = rng.sample(train_combos, min(TRAIN_PER_TEMPLATE, len(train_combos)))
            for v in chosen:
                pairs.append({"instruction": phrasing.format(**v), "input": "", "output": sql.format(**v),
                              "template": f"{family}/{k + 1}", "ordered": ordered, "split": "test" if test else "train",
                              "held_out": ("query shape" if family in HELD_OUT_FAMILIES else "phrasing") if test else None})
    random.Random(SEED + 2).shuffle(pairs)  # so that the first n of a split (a small profile) mix the families
    return pairs


# ---------------------------------------------------------------------------------------------- checks and files


def _tie_at_limit(conn: sqlite3.Connection, sql: str) -> bool:
    """Whether the sort key of ``SELECT ... FROM rest ORDER BY key DESC LIMIT n`` has equal values at rows n and n + 1."""
    head, n = sql.rsplit(" LIMIT ", 1)
    rest, key = head.split(" FROM ", 1)[1].rsplit(" ORDER BY ", 1)
    key = key.removesuffix(" DESC")
    keys = [row[0] for row in conn.execute(f"SELECT {key} FROM {rest} ORDER BY {key} DESC LIMIT {int(n) + 1}")]
    return len(keys) > int(n) and keys[int(n) - 1] == keys[int(n)]


def check_pairs(conn: sqlite3.Connection, pairs: list[dict]) -> list[str]:
    """What is wrong with the pairs on this database (empty when all is well)."""
    problems = []
    for p in pairs:
        try:
            if not _answerable(conn, p["output"]):
                problems.append(f"{p['template']}: {p['output']!r} returns no row (or only NULL)")
        except sqlite3.Error as exc:
            problems.append(f"{p['template']}: {p['output']!r} fails: {exc}")
        if p["ordered"] and " LIMIT " in p["output"] and _tie_at_limit(conn, p["output"]):
            problems.append(f"{p['template']}: a tie at the LIMIT of {p['output']!r}")
    splits = {s: [p for p in pairs if p["split"] == s] for s in ("train", "test")}
    for field in ("template", "instruction", "output"):
        both = {p[field] for p in splits["train"]} & {p[field] for p in splits["test"]}
        if both:
            problems.append(f"{len(both)} {field}(s) in both splits, e.g. {sorted(both)[0]!r}")
    dups = [q for q, c in Counter(p["instruction"] for p in pairs).items() if c > 1 and len({x["output"] for x in pairs if x["instruction"] == q}) > 1]
    if dups:
        problems.append(f"the same question with different gold queries: {dups[0]!r}")
    return problems


def render(pairs: list[dict]) -> str:
    return "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs)


def dump(conn: sqlite3.Connection) -> list[str]:
    return list(conn.iterdump())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that the committed files are up to date")
    args = parser.parse_args()
    memory = sqlite3.connect(":memory:")
    build_database(memory)
    pairs = build_pairs(memory)
    text = render(pairs)
    if args.check:
        if not DB_PATH.exists() or not PAIRS_PATH.exists():
            print(f"{DB_PATH.name} or {PAIRS_PATH.name} is missing; run {Path(__file__).name} without --check", file=sys.stderr)
            return 1
        committed = sqlite3.connect(f"file:{DB_PATH}?mode=ro", uri=True)
        if dump(committed) != dump(memory) or PAIRS_PATH.read_text(encoding="utf-8") != text:
            print(f"{DB_PATH.name} or {PAIRS_PATH.name} is out of date; run {Path(__file__).name} without --check", file=sys.stderr)
            return 1
    else:
        with tempfile.TemporaryDirectory(dir=DB_PATH.parent) as tmp:
            built = sqlite3.connect(Path(tmp) / DB_PATH.name)
            memory.backup(built)
            built.execute("VACUUM")
            built.close()
            (Path(tmp) / DB_PATH.name).replace(DB_PATH)
        tmp_pairs = PAIRS_PATH.with_suffix(".tmp")
        tmp_pairs.write_text(text, encoding="utf-8")
        tmp_pairs.replace(PAIRS_PATH)
        committed = sqlite3.connect(f"file:{DB_PATH}?mode=ro", uri=True)
    problems = check_pairs(committed, pairs)
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    counts = Counter((p["split"], p["held_out"]) for p in pairs)
    templates = Counter(p["split"] for p in {(p["template"], p["split"]): p for p in pairs}.values())
    tables = {t: committed.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
              for t in ("customers", "products", "orders", "order_items", "tickets")}
    print(f"{DB_PATH.relative_to(ROOT)}: {tables}")
    print(f"{PAIRS_PATH.relative_to(ROOT)}: {len(pairs)} pairs, {len(FAMILIES)} families; train {counts[('train', None)]} "
          f"({templates['train']} templates), test {counts[('test', 'phrasing')] + counts[('test', 'query shape')]} "
          f"({templates['test']} templates: {counts[('test', 'phrasing')]} new phrasing, {counts[('test', 'query shape')]} new query shape)")
    print("every gold query executes and returns rows; no ties at a LIMIT; no template, question or query in both splits")
    return 0


if __name__ == "__main__":
    sys.exit(main())
