"""The course's bundled datasets, split and sized by a profile, ready for training and evaluation.

Splits are the ones ``scripts/prepare_dataset.py`` writes (same seed, same function), so notebooks,
scripts and exercises all see the same test set.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ftcourse import paths
from ftcourse.data import CourseDataset, processed_records, read_dataset, split_dataset
from ftcourse.profiles import Profile

__all__ = [
    "domain_texts", "error_code_summaries", "instruction_records", "INTENT_LABELS", "intent_records", "intent_splits",
    "kb_qa_records", "LABEL_SETS", "preference_records", "raw_path", "SEED", "shop_database", "text_to_sql_records",
    "unseen_intent_records",
]

SEED = 42
#: The ten intents of the course's customer-support task, in the order prompts and tables list them.
INTENT_LABELS = (
    "order_status",
    "cancel_order",
    "return_refund",
    "damaged_item",
    "billing_issue",
    "payment_update",
    "account_access",
    "change_address",
    "product_info",
    "talk_to_human",
)
#: Label sets a script's ``--labels`` may name (:func:`ftcourse.data.resolve_labels`).
LABEL_SETS = {"intents": INTENT_LABELS}


def raw_path(name: str) -> Path:
    return paths.data_dir() / "raw" / name


def intent_splits(seed: int = SEED) -> dict[str, CourseDataset]:
    """Stratified train/validation/test split of ``support_intents.jsonl`` (80/10/10)."""
    return split_dataset(read_dataset(raw_path("support_intents.jsonl"), labels=INTENT_LABELS), seed=seed)


def _sized(records: list[dict[str, Any]], n: int | None) -> list[dict[str, Any]]:
    return records if n is None else records[:n]


def intent_records(profile: Profile, seed: int = SEED) -> dict[str, list[dict[str, Any]]]:
    """Processed chat records of the intent task per split, cut to the profile's ``n_train``/``n_eval``."""
    splits = intent_splits(seed)
    return {
        name: _sized(processed_records(part, INTENT_LABELS), profile.n_train if name == "train" else profile.n_eval)
        for name, part in splits.items()
    }


def unseen_intent_records(profile: Profile | None = None) -> list[dict[str, Any]]:
    """``support_intents_unseen.jsonl``: same labels, different writing style (never trained on)."""
    data = read_dataset(raw_path("support_intents_unseen.jsonl"), labels=INTENT_LABELS)
    return _sized(processed_records(data, INTENT_LABELS), profile.n_eval if profile else None)


def instruction_records(profile: Profile, tasks: tuple[str, ...] = ("classify", "extract", "reply"), seed: int = SEED) -> dict[str, list[dict[str, Any]]]:
    """Processed records of ``support_instructions.jsonl`` (Alpaca) per split, only the given tasks."""
    splits = split_dataset(read_dataset(raw_path("support_instructions.jsonl")), seed=seed)
    out = {}
    for name, part in splits.items():
        records = [r for r in processed_records(part) if r["task"] in tasks]
        out[name] = _sized(records, profile.n_train if name == "train" else profile.n_eval)
    return out


def preference_records(profile: Profile | None = None) -> dict[str, list[dict[str, Any]]]:
    """``ticket_preferences.jsonl`` (lesson 12) per split, in TRL's conversational preference format.

    Each pair has ``prompt`` (the extraction instruction as the system message, the customer message as the user
    message: the prompt lesson 02's instruction adapter was trained on), ``chosen`` and ``rejected`` (one assistant
    message each), plus ``defect`` and ``source_line``. Train is cut to the profile's ``n_train``, the others to ``n_eval``.
    """
    rows = [json.loads(line) for line in raw_path("ticket_preferences.jsonl").read_text(encoding="utf-8").splitlines()]
    out: dict[str, list[dict[str, Any]]] = {}
    for name in ("train", "validation", "test"):
        pairs = [{"prompt": [{"role": "system", "content": r["instruction"]}, {"role": "user", "content": r["input"]}],
                  "chosen": [{"role": "assistant", "content": r["chosen"]}], "rejected": [{"role": "assistant", "content": r["rejected"]}],
                  "defect": r["defect"], "source_line": r["source_line"]} for r in rows if r["split"] == name]
        out[name] = _sized(pairs, None if profile is None else profile.n_train if name == "train" else profile.n_eval)
    return out


def domain_texts() -> dict[str, list[str]]:
    """The fictional product's documentation (train / held-out) and general English text (for forgetting)."""
    corpus = raw_path("domain_corpus")
    return {
        "train": [r["text"] for r in read_dataset(corpus / "train").records],
        "heldout": [r["text"] for r in read_dataset(corpus / "heldout").records],
        "general": [r["text"] for r in read_dataset(raw_path("general_text")).records],
    }


def kb_qa_records() -> dict[str, list[dict[str, Any]]]:
    """``kb_qa.jsonl`` (questions about the product manuals, lesson 11) by its ``split`` field: train / test, split by fact."""
    records = read_dataset(raw_path("kb_qa.jsonl"), fmt="alpaca").records
    return {name: [r for r in records if r["split"] == name] for name in ("train", "test")}


def shop_database() -> Path:
    """The shop's SQLite database (lesson 13): customers, products, orders, order_items, tickets. Run queries on it with
    :func:`ftcourse.sql.run_readonly`, which never changes it."""
    return raw_path("shop.sqlite")


def text_to_sql_records() -> dict[str, list[dict[str, Any]]]:
    """``text_to_sql.jsonl`` (questions about :func:`shop_database` with a gold query, lesson 13) by its ``split``: train / test,
    split by template (phrasing); ``ordered`` says whether the question asks for an order, ``held_out`` why a test template is new."""
    records = read_dataset(raw_path("text_to_sql.jsonl"), fmt="alpaca").records
    return {name: [r for r in records if r["split"] == name] for name in ("train", "test")}


def error_code_summaries() -> list[dict[str, str]]:
    """The 23 error-code entries of the manual (chapter 8) with a reference summary each (lesson 11).

    ``text`` is the entry as written; ``reference`` is built from it: the code, its title and the
    first sentence after the ring colour (usually what to do) — a one-sentence summary of the entry.
    """
    text = (raw_path("domain_corpus") / "train" / "08_error_codes.md").read_text(encoding="utf-8")
    records = []
    for code, title, body in re.findall(r"^\*\*(E-\d{3}) — (.+?)\.\*\* (.+)$", text, flags=re.MULTILINE):
        after_ring = body.split("Ring:", 1)[-1].split(". ", 1)[-1]
        action = after_ring.split(". ")[0].rstrip(".").replace("**", "")
        records.append({"code": code, "text": f"{code} — {title}. {body}", "reference": f"{code}, {title}: {action}."})
    return records
