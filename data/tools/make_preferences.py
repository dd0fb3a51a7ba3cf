#!/usr/bin/env python3
"""Generate data/raw/ticket_preferences.jsonl: preference pairs for the ticket-extraction task (lesson 12).

Source: the 250 ``extract`` records of ``support_instructions.jsonl`` (a customer message and its JSON ticket
``{"intent", "order_id", "product"}``). The rule: **chosen** is the record's own ticket, exactly as written;
**rejected** is the same ticket with one plausible defect, a different one for each of the record's two pairs. When
the message gives an order number or a product, the first pair's defect is ``dropped_field`` — the error lesson 02's
instruction adapter makes most often (most of its wrong tickets answer ``null`` for a field the message gives); the
other defects are drawn from :data:`DEFECTS` with a fixed seed:

* ``dropped_field``: an order number or product the message gives, answered ``null``;
* ``wrong_intent``: the intent replaced by a confusable one (:data:`CONFUSABLE`, e.g. damaged_item → return_refund);
* ``invented_order_id``: an order number the message does not contain (a changed one, or one made up for ``null``);
* ``wrong_product``: a catalogue product whose name the message does not mention (instead of the right one or ``null``);
* ``malformed_json``: the right ticket with a syntax fault (single quotes, a trailing comma, unquoted keys, no ``}``);
* ``chatty``: the right ticket wrapped in a sentence of prose, so the answer is no longer a JSON object.

Split by source message: each pair inherits the split its message has in ``ftcourse.course.bundled.instruction_records``
(seed 42), so no message of the test pairs was ever trained on, by lesson 02's instruction adapter or by lesson 12.
The checks (also run with ``--check``) verify the rule for every pair.

Usage:
    python3 data/tools/make_preferences.py          # write + check
    python3 data/tools/make_preferences.py --check  # check the committed file only
"""
from __future__ import annotations

import argparse
import json
import random
import re
import sys
from collections import Counter
from pathlib import Path

from ftcourse.course.bundled import INTENT_LABELS, SEED, raw_path
from ftcourse.data import read_dataset, split_dataset
from ftcourse.fileio import atomic_write_text, jsonl_text

GENERATOR_SEED = 20261207
PAIRS_PER_MESSAGE = 2
DEFECTS = ("wrong_intent", "invented_order_id", "wrong_product", "malformed_json", "chatty")
FIELD_OF = {"wrong_intent": "intent", "invented_order_id": "order_id", "wrong_product": "product"}
DROPPABLE = ("order_id", "product")
#: For each intent, the ones a careless reader confuses it with (same topic, different action).
CONFUSABLE = {
    "order_status": ("change_address", "cancel_order"),
    "cancel_order": ("return_refund", "order_status"),
    "return_refund": ("damaged_item", "cancel_order"),
    "damaged_item": ("return_refund", "product_info"),
    "billing_issue": ("payment_update", "return_refund"),
    "payment_update": ("billing_issue", "account_access"),
    "account_access": ("payment_update", "talk_to_human"),
    "change_address": ("order_status", "cancel_order"),
    "product_info": ("order_status", "damaged_item"),
    "talk_to_human": ("account_access", "billing_issue"),
}
CHATTY = ("Sure! Here is the support ticket: {}", "Here's the JSON you asked for:\n{}", "{}\nLet me know if you need anything else!",
          "The ticket for this message is {}")
SOURCE = raw_path("support_instructions.jsonl")
OUT_PATH = raw_path("ticket_preferences.jsonl")


def ticket(fields: dict) -> str:
    """A ticket written as the source data writes it: compact JSON, keys in order."""
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=False)


def family(product: str) -> str:
    return product.split()[0].lower()


def invent_order_id(rng: random.Random, message: str, like: str | None) -> str:
    """A number of the same length as ``like`` (5-7 digits for none) that the message does not contain."""
    taken = set(re.findall(r"\d+", message))
    while True:
        digits = len(like) if like else rng.randint(5, 7)
        candidate = str(rng.randint(10 ** (digits - 1), 10**digits - 1))
        if candidate not in taken and candidate != like:
            return candidate


def malformed(rng: random.Random, fields: dict) -> str:
    text = ticket(fields)
    fault = rng.choice(("single_quotes", "trailing_comma", "unquoted_keys", "unclosed"))
    if fault == "single_quotes":
        return text.replace('"', "'")
    if fault == "trailing_comma":
        return text[:-1] + ",}"
    if fault == "unquoted_keys":
        return re.sub(r'"(intent|order_id|product)":', r"\1:", text)
    return text[:-1]


def rejected_answer(rng: random.Random, defect: str, fields: dict, message: str, catalogue: list[str]) -> str:
    """The source ticket with one defect of kind ``defect``."""
    wrong = dict(fields)
    if defect == "dropped_field":
        wrong[rng.choice([k for k in DROPPABLE if fields[k] is not None])] = None
    elif defect == "wrong_intent":
        wrong["intent"] = rng.choice(CONFUSABLE[fields["intent"]])
    elif defect == "invented_order_id":
        wrong["order_id"] = invent_order_id(rng, message, fields["order_id"])
    elif defect == "wrong_product":
        text = message.lower()
        wrong["product"] = rng.choice([p for p in catalogue if family(p) not in text])
    elif defect == "malformed_json":
        return malformed(rng, fields)
    else:
        return rng.choice(CHATTY).format(ticket(fields))
    return ticket(wrong)


def sources() -> list[tuple[int, dict, str]]:
    """(line, record, split) of every ``extract`` record; the split is the one ``instruction_records`` uses."""
    data = read_dataset(SOURCE)
    split_of = {id(r): name for name, part in split_dataset(data, seed=SEED).items() for r in part.records}
    return [(line, r, split_of[id(r)]) for line, r in zip(data.lines, data.records) if r["task"] == "extract"]


def build() -> list[dict]:
    rng = random.Random(GENERATOR_SEED)
    found = sources()
    products = {json.loads(r["output"])["product"] for _, r, _ in found} - {None}
    catalogue = sorted({family(p): p for p in sorted(products)}.values())  # one spelling per product family
    pairs = []
    for line, record, split in found:
        fields = json.loads(record["output"])
        droppable = any(fields[k] is not None for k in DROPPABLE)
        defects = ["dropped_field", rng.choice(DEFECTS)] if droppable else rng.sample(DEFECTS, PAIRS_PER_MESSAGE)
        for defect in defects:
            pairs.append({"instruction": record["instruction"], "input": record["input"], "chosen": record["output"],
                          "rejected": rejected_answer(rng, defect, fields, record["input"], catalogue), "defect": defect,
                          "source_line": line, "split": split})
    return pairs


def parses(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except json.JSONDecodeError:
        return False


def check_pair(pair: dict) -> list[str]:
    """Problems with one pair: the rule of its defect does not hold."""
    chosen, rejected, defect, message = pair["chosen"], pair["rejected"], pair["defect"], pair["input"]
    where = f"line {pair['source_line']} ({defect})"
    if chosen == rejected:
        return [f"{where}: chosen equals rejected"]
    if defect in ("malformed_json", "chatty"):
        ok = not parses(rejected) and (defect == "malformed_json" or chosen in rejected)
        return [] if ok else [f"{where}: {rejected!r} breaks the rule of its defect"]
    good, bad = json.loads(chosen), json.loads(rejected) if parses(rejected) else None
    changed = [k for k in good if bad is not None and set(bad) == set(good) and good[k] != bad[k]]
    if defect == "dropped_field":
        ok = len(changed) == 1 and changed[0] in DROPPABLE and bad[changed[0]] is None
        return [] if ok else [f"{where}: {rejected!r} must set one given order_id or product to null, nothing else"]
    if changed != [FIELD_OF[defect]]:
        return [f"{where}: {rejected!r} must differ from the chosen ticket in {FIELD_OF[defect]} only"]
    value = str(bad[FIELD_OF[defect]])
    if defect == "wrong_intent" and value not in INTENT_LABELS:
        return [f"{where}: {value!r} is not an intent"]
    if defect == "invented_order_id" and value in re.findall(r"\d+", message):
        return [f"{where}: the message contains {value}"]
    if defect == "wrong_product" and family(value) in message.lower():
        return [f"{where}: the message mentions {value!r}"]
    return []


def check(pairs: list[dict]) -> list[str]:
    """Every rule: two pairs with different defects per message (``dropped_field`` first when a field can be dropped),
    chosen = the source ticket, one split per message, and each defect's rule."""
    problems = [p for pair in pairs for p in check_pair(pair)]
    by_source: dict[int, list[dict]] = {}
    for pair in pairs:
        by_source.setdefault(pair["source_line"], []).append(pair)
    expected = {line: (record, split) for line, record, split in sources()}
    if set(by_source) != set(expected):
        problems.append(f"{len(by_source)} source messages, expected the {len(expected)} extract records")
    for line, group in by_source.items():
        record, split = expected.get(line, ({}, None))
        droppable = any(json.loads(record.get("output", "{}")).get(k) is not None for k in DROPPABLE)
        if len(group) != PAIRS_PER_MESSAGE or len({p["defect"] for p in group}) != PAIRS_PER_MESSAGE:
            problems.append(f"line {line}: {len(group)} pairs, expected {PAIRS_PER_MESSAGE} with different defects")
        elif droppable != (group[0]["defect"] == "dropped_field"):
            problems.append(f"line {line}: the first pair must drop a given field exactly when the message gives one")
        if any(p["chosen"] != record.get("output") or p["split"] != split for p in group):
            problems.append(f"line {line}: chosen is not the source ticket, or the split is not the source's ({split})")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that the committed file is up to date and keeps the rules")
    args = parser.parse_args()
    pairs = build()
    committed = OUT_PATH.read_text(encoding="utf-8") if OUT_PATH.exists() else None
    if args.check and committed != jsonl_text(pairs):
        print(f"{OUT_PATH} is out of date; run {Path(__file__).name} without --check", file=sys.stderr)
        return 1
    problems = check([json.loads(line) for line in committed.splitlines()] if args.check else pairs)
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    if not args.check:
        atomic_write_text(OUT_PATH, jsonl_text(pairs))
    counts = dict(Counter(p["split"] for p in pairs))
    print(f"{len(pairs)} pairs from {len(pairs) // PAIRS_PER_MESSAGE} messages {counts}: {OUT_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
