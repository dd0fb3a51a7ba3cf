"""Load, validate, split and format datasets; tokenize with completion-only labels.

Formats (auto-detected from the fields, or forced with ``fmt=``):

==================  ===========================================
``classification``  ``text`` + ``label``
``alpaca``          ``instruction`` + ``input`` + ``output``
``chat``            ``messages`` (list of ``role``/``content``)
``sharegpt``        ``conversations`` (list of ``from``/``value``)
``text``            ``text`` only (plain text for continued pre-training)
==================  ===========================================

Every record becomes chat ``messages``; the last assistant turn is the target.
"""

from __future__ import annotations

import csv
import json
import random
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftcourse.errors import CourseError
from ftcourse.fileio import jsonl_text, write_output

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

FORMATS = ("classification", "alpaca", "chat", "sharegpt", "text")
#: The original course's ``--task_type`` values and the formats each accepts.
TASK_TYPES = {
    "classification": ("classification",),
    "instruction": ("alpaca",),
    "chat": ("chat", "sharegpt", "alpaca"),
    "text": ("text",),
}
SPLITS = ("train", "validation", "test")
IGNORE_INDEX = -100
ALPACA_TEMPLATE = "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
ALPACA_TEMPLATE_NO_INPUT = "### Instruction:\n{instruction}\n\n### Response:\n"
_SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


class DataError(CourseError):
    """A dataset problem; the message names the file, line and field of each problem found."""


@dataclass
class Problem:
    line: int | None
    field: str | None
    message: str

    def render(self, source: str) -> str:
        where = source + (f", line {self.line}" if self.line is not None else "")
        return f"{where}: " + (f"field {self.field!r}: " if self.field else "") + self.message


@dataclass
class Dataset:
    """Records with the format they were read as and where they came from."""

    records: list[dict[str, Any]]
    fmt: str
    source: str
    lines: list[int] = field(default_factory=list)  # source line (or row) of each record

    def __len__(self) -> int:
        return len(self.records)

    def labels(self) -> list[str]:
        return [r["label"] for r in self.records]


# ---------------------------------------------------------------- reading


def _read_rows(path: Path) -> tuple[list[Any], list[int], list[Problem]]:
    """Rows of a JSONL/JSON/CSV/Parquet file, their line numbers, and JSON syntax problems."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        rows, lines, problems = [], [], []
        with open(path, encoding="utf-8") as fh:
            for number, raw in enumerate(fh, start=1):
                if not raw.strip():
                    continue
                try:
                    rows.append(json.loads(raw))
                    lines.append(number)
                except json.JSONDecodeError as exc:
                    problems.append(Problem(number, None, f"not valid JSON ({exc.msg} at column {exc.colno})"))
        return rows, lines, problems
    if suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            return [], [], [Problem(exc.lineno, None, f"not valid JSON ({exc.msg})")]
        if isinstance(data, dict) and len(data) == 1 and isinstance(next(iter(data.values())), list):
            data = next(iter(data.values()))  # {"data": [...]}
        if not isinstance(data, list):
            return [], [], [Problem(None, None, "expected a JSON list of records")]
        return data, list(range(1, len(data) + 1)), []
    if suffix == ".csv":
        with open(path, encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh))
        return rows, list(range(2, len(rows) + 2)), []
    if suffix == ".parquet":
        import pandas as pd

        rows = pd.read_parquet(path).to_dict(orient="records")
        return rows, list(range(1, len(rows) + 1)), []
    raise DataError(f"{path}: unsupported file type {suffix!r}.", "use .jsonl, .json, .csv or .parquet.")


def detect_format(record: dict[str, Any]) -> str:
    """Guess the format from a record's fields (see the module docstring)."""
    keys = set(record)
    if "messages" in keys:
        return "chat"
    if "conversations" in keys:
        return "sharegpt"
    if {"instruction", "output"} <= keys:
        return "alpaca"
    if "text" in keys and "label" in keys:
        return "classification"
    if "text" in keys:
        return "text"
    raise DataError(
        f"Cannot tell the format of a record with fields {sorted(keys)}.",
        "use text+label (classification), instruction+input+output (alpaca), messages (chat), "
        "conversations (sharegpt) or text (plain text), or pass fmt= / --format.",
    )


def _check_str(record: dict, key: str, line: int, problems: list[Problem], allow_empty: bool = False) -> None:
    if key not in record or record[key] is None:
        problems.append(Problem(line, key, "missing"))
    elif not isinstance(record[key], str):
        problems.append(Problem(line, key, f"must be a string, got {type(record[key]).__name__} {record[key]!r}"))
    elif not allow_empty and not record[key].strip():
        problems.append(Problem(line, key, "is empty"))


def _check_turns(record: dict, key: str, role_key: str, text_key: str, line: int, problems: list[Problem]) -> None:
    turns = record.get(key)
    if not isinstance(turns, list) or not turns:
        problems.append(Problem(line, key, "must be a non-empty list of turns"))
        return
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict) or not isinstance(turn.get(text_key), str) or role_key not in turn:
            problems.append(Problem(line, f"{key}[{i}]", f"each turn needs {role_key!r} and a string {text_key!r}"))
            return
    last_role = turns[-1][role_key]
    if _SHAREGPT_ROLES.get(last_role, last_role) != "assistant":
        problems.append(Problem(line, key, f"the last turn must be the assistant's (got {last_role!r}); it is the training target"))


def validate_record(record: Any, fmt: str, line: int, labels: Sequence[str] | None = None) -> list[Problem]:
    """Problems with one record of format ``fmt`` (empty when it is fine)."""
    if not isinstance(record, dict):
        return [Problem(line, None, f"expected a JSON object, got {type(record).__name__}")]
    problems: list[Problem] = []
    if fmt == "classification":
        _check_str(record, "text", line, problems)
        _check_str(record, "label", line, problems)
        if labels is not None and isinstance(record.get("label"), str) and record["label"] not in labels:
            problems.append(Problem(line, "label", f"unknown label {record['label']!r}; known labels: {', '.join(labels)}"))
    elif fmt == "alpaca":
        _check_str(record, "instruction", line, problems)
        if "input" in record:
            _check_str(record, "input", line, problems, allow_empty=True)
        _check_str(record, "output", line, problems)
    elif fmt == "chat":
        _check_turns(record, "messages", "role", "content", line, problems)
    elif fmt == "sharegpt":
        _check_turns(record, "conversations", "from", "value", line, problems)
    elif fmt == "text":
        _check_str(record, "text", line, problems)
    else:
        raise DataError(f"Unknown format {fmt!r}.", f"use one of: {', '.join(FORMATS)}.")
    return problems


def _raise_problems(source: str, problems: list[Problem], limit: int = 20) -> None:
    if not problems:
        return
    shown = "\n  ".join(p.render(source) for p in problems[:limit])
    more = f"\n  ... and {len(problems) - limit} more" if len(problems) > limit else ""
    raise DataError(
        f"{len(problems)} problem(s) in {source}:\n  {shown}{more}",
        "correct (or remove) the records at the lines named above, then load the file again.",
    )


def load_dataset(
    source: str | Path, fmt: str | None = None, labels: Sequence[str] | None = None, split: str = "train"
) -> Dataset:
    """Load and validate a dataset file (JSONL/JSON/CSV/Parquet), a folder of .txt/.md files, or a Hub id.

    All problems found are reported together in one :class:`DataError`, each with its line and field.
    """
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix in {".txt", ".md"} and p.name != "README.md")
        if not files:
            raise DataError(f"{path} holds no .txt or .md files.", "point to a data file or a folder of text files.")
        records = [{"text": p.read_text(encoding="utf-8"), "source": str(p.relative_to(path))} for p in files]
        return Dataset(records, "text", str(path), list(range(1, len(records) + 1)))
    if path.exists():
        rows, lines, problems = _read_rows(path)
    elif not path.suffix and "/" in str(source):
        rows, lines, problems = _load_hub(str(source), split), [], []
        lines = list(range(1, len(rows) + 1))
    else:
        raise DataError(f"{path} does not exist.", "check the path (bundled data lives in data/raw/).")
    if not rows and not problems:
        raise DataError(f"{path} is empty: no records.", "add at least one record, one JSON object per line.")
    if fmt is None:
        first = next((r for r in rows if isinstance(r, dict)), None)
        if first is None:
            _raise_problems(str(path), problems or [Problem(None, None, "no JSON object records found")])
        fmt = detect_format(first)
    if fmt not in FORMATS:
        raise DataError(f"Unknown format {fmt!r}.", f"use one of: {', '.join(FORMATS)}.")
    for row, line in zip(rows, lines):
        problems.extend(validate_record(row, fmt, line, labels))
    problems.sort(key=lambda p: p.line or 0)
    _raise_problems(str(path), problems)
    return Dataset(rows, fmt, str(path), lines)


def _load_hub(dataset_id: str, split: str) -> list[dict]:
    import datasets

    try:
        return list(datasets.load_dataset(dataset_id, split=split))
    except Exception as exc:  # offline, unknown id, ...
        raise DataError(
            f"Could not load the Hub dataset {dataset_id!r} ({type(exc).__name__}: {str(exc).splitlines()[0]}).",
            "check the id and your internet connection, or download it and pass a local file.",
        ) from None


# ---------------------------------------------------------------- checks


def normalize_text(text: str) -> str:
    """Lower-case and collapse white space: the key for duplicate and leakage checks."""
    return re.sub(r"\s+", " ", text).strip().lower()


def record_key(record: dict[str, Any], fmt: str) -> str:
    """The text that identifies a record's input, for duplicate and leakage checks."""
    if fmt in ("classification", "text"):
        return normalize_text(record["text"])
    if fmt == "alpaca":
        return normalize_text(record["instruction"] + "\n" + record.get("input", ""))
    turns = record["messages"] if fmt == "chat" else record["conversations"]
    text_key = "content" if fmt == "chat" else "value"
    return normalize_text("\n".join(t[text_key] for t in turns[:-1]))


def find_duplicates(data: Dataset) -> list[tuple[int, int]]:
    """(first line, duplicate line) pairs of records whose inputs are equal after normalising."""
    seen: dict[str, int] = {}
    pairs = []
    for record, line in zip(data.records, data.lines):
        key = record_key(record, data.fmt)
        if key in seen:
            pairs.append((seen[key], line))
        else:
            seen[key] = line
    return pairs


def drop_duplicates(data: Dataset) -> Dataset:
    dupes = {line for _, line in find_duplicates(data)}
    kept = [(r, n) for r, n in zip(data.records, data.lines) if n not in dupes]
    return Dataset([r for r, _ in kept], data.fmt, data.source, [n for _, n in kept])


def find_leakage(train: Dataset, other: Dataset) -> list[int]:
    """Lines of ``other`` whose input also occurs in ``train`` (train/test leakage)."""
    train_keys = {record_key(r, train.fmt) for r in train.records}
    return [n for r, n in zip(other.records, other.lines) if record_key(r, other.fmt) in train_keys]


def check_label_coverage(train: Dataset, test: Dataset) -> None:
    """Raise when the test split has labels the training split never shows."""
    missing = sorted(set(test.labels()) - set(train.labels()))
    if missing:
        raise DataError(
            f"{test.source}: labels {', '.join(missing)} occur in the test data but never in training ({train.source}).",
            "add training examples of those labels, or remove them from the test data.",
        )


# ---------------------------------------------------------------- splitting


def stratify_key(data: Dataset) -> str | None:
    if data.fmt == "classification":
        return "label"
    if data.records and "task" in data.records[0]:
        return "task"
    return None


def split_dataset(
    data: Dataset, validation: float = 0.1, test: float = 0.1, seed: int = 42
) -> dict[str, Dataset]:
    """Seeded train/validation/test split, stratified by ``label`` (or ``task``) when present."""
    if not 0 <= validation < 1 or not 0 <= test < 1 or validation + test >= 1:
        raise CourseError(f"Split fractions validation={validation}, test={test} are invalid.", "use fractions in [0, 1) that sum to less than 1.")
    key = stratify_key(data)
    groups: dict[Any, list[int]] = defaultdict(list)
    for i, record in enumerate(data.records):
        groups[record[key] if key else None].append(i)
    rng = random.Random(seed)
    chosen: dict[str, list[int]] = {s: [] for s in SPLITS}
    for group in sorted(groups, key=str):
        idx = groups[group][:]
        rng.shuffle(idx)
        n_test = round(len(idx) * test)
        n_val = round(len(idx) * validation)
        chosen["test"] += idx[:n_test]
        chosen["validation"] += idx[n_test : n_test + n_val]
        chosen["train"] += idx[n_test + n_val :]
    out = {}
    for name in SPLITS:
        idx = sorted(chosen[name])
        rng.shuffle(idx)
        out[name] = Dataset([data.records[i] for i in idx], data.fmt, f"{data.source}[{name}]", [data.lines[i] for i in idx])
    return out


# ---------------------------------------------------------------- formatting


def classification_instruction(labels: Sequence[str]) -> str:
    """The system prompt of the classification task (the same words as the instruction dataset)."""
    return (
        f"Classify the customer message into one of these intents: {', '.join(labels)}. "
        "Answer with the intent only."
    )


def to_messages(record: dict[str, Any], fmt: str, labels: Sequence[str] | None = None) -> list[dict[str, str]]:
    """Chat messages for a record; the last message is the assistant's target."""
    if fmt == "classification":
        if labels is None:
            raise CourseError("Formatting a classification record needs the label set.", "pass labels=[...].")
        return [
            {"role": "system", "content": classification_instruction(labels)},
            {"role": "user", "content": record["text"]},
            {"role": "assistant", "content": record["label"]},
        ]
    if fmt == "alpaca":
        if record.get("input", "").strip():
            head = [{"role": "system", "content": record["instruction"]}, {"role": "user", "content": record["input"]}]
        else:
            head = [{"role": "user", "content": record["instruction"]}]
        return [*head, {"role": "assistant", "content": record["output"]}]
    if fmt == "chat":
        return [{"role": t["role"], "content": t["content"]} for t in record["messages"]]
    if fmt == "sharegpt":
        return [{"role": _SHAREGPT_ROLES.get(t["from"], t["from"]), "content": t["value"]} for t in record["conversations"]]
    raise CourseError(f"Records of format {fmt!r} have no chat form.", "plain text is tokenized with tokenize_text().")


def uses_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def alpaca_prompt(messages: Sequence[dict[str, str]]) -> str:
    """The original course's Alpaca prompt for models without a chat template."""
    system = [m["content"] for m in messages if m["role"] == "system"]
    turns = [m for m in messages if m["role"] != "system"]
    if system:
        body = "\n".join(("" if m["role"] == "user" else "Assistant: ") + m["content"] for m in turns)
        return ALPACA_TEMPLATE.format(instruction="\n".join(system), input=body)
    *earlier, last = turns
    context = "\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in earlier)
    if context:
        return ALPACA_TEMPLATE.format(instruction=last["content"], input=context)
    return ALPACA_TEMPLATE_NO_INPUT.format(instruction=last["content"])


def prompt_ids(tokenizer, prompt_messages: Sequence[dict[str, str]]) -> list[int]:
    """Token ids of the prompt, exactly as generation sees it (chat template, or Alpaca prompt)."""
    if uses_chat_template(tokenizer):
        encoded = tokenizer.apply_chat_template(list(prompt_messages), add_generation_prompt=True, tokenize=True, return_dict=True)
        return list(encoded["input_ids"])
    ids = tokenizer(alpaca_prompt(prompt_messages), add_special_tokens=True)["input_ids"]
    return list(ids)


def prompt_text(tokenizer, prompt_messages: Sequence[dict[str, str]]) -> str:
    if uses_chat_template(tokenizer):
        return tokenizer.apply_chat_template(list(prompt_messages), add_generation_prompt=True, tokenize=False)
    return alpaca_prompt(prompt_messages)


def tokenize_messages(tokenizer, messages: Sequence[dict[str, str]], max_length: int | None = None) -> dict[str, Any]:
    """Token ids and labels for one conversation: only the final assistant turn (plus EOS) is trained.

    Returns ``input_ids``, ``labels`` (``-100`` on prompt tokens) and ``truncated``.
    """
    if not messages or messages[-1]["role"] != "assistant":
        raise CourseError("The last message must be the assistant's answer (the training target).", "end each example with a message of role 'assistant'.")
    prompt = prompt_ids(tokenizer, messages[:-1])
    target = tokenizer(messages[-1]["content"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    ids = prompt + list(target)
    labels = [IGNORE_INDEX] * len(prompt) + list(target)
    truncated = max_length is not None and len(ids) > max_length
    if truncated:
        ids, labels = ids[:max_length], labels[:max_length]
    return {"input_ids": ids, "labels": labels, "truncated": truncated}


def tokenize_text(tokenizer, texts: Sequence[str], max_length: int, packing: bool = False) -> list[dict[str, Any]]:
    """Plain text for continued pre-training: every token is trained.

    Each text is cut into blocks of ``max_length`` tokens; with ``packing`` the texts are
    first joined (EOS between them) so that blocks are full and no padding is needed.
    """
    docs = [tokenizer(t, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for t in texts]
    streams = [[tok for doc in docs for tok in doc]] if packing else docs
    blocks = []
    for stream in streams:
        for start in range(0, len(stream), max_length):
            block = stream[start : start + max_length]
            if len(block) > 1:
                blocks.append({"input_ids": block, "labels": list(block), "truncated": False})
    return blocks


def length_stats(examples: Sequence[dict[str, Any]], max_length: int | None = None) -> dict[str, float]:
    """Token-length statistics of tokenized examples, with the number and share truncated."""
    lengths = sorted(len(e["input_ids"]) for e in examples)
    n = len(lengths)
    if n == 0:
        return {"count": 0}
    truncated = sum(bool(e.get("truncated")) for e in examples)
    return {
        "count": n,
        "mean": round(sum(lengths) / n, 1),
        "p50": lengths[n // 2],
        "p95": lengths[min(n - 1, int(0.95 * n))],
        "max": lengths[-1],
        "trained_tokens": sum(sum(lbl != IGNORE_INDEX for lbl in e["labels"]) for e in examples),
        "truncated": truncated,
        "truncated_share": round(truncated / n, 4),
        **({"max_length": max_length} if max_length else {}),
    }


def show_masked(tokenizer, example: dict[str, Any]) -> str:
    """Render one tokenized example: trained tokens in ``[[...]]``, masked ones plain."""
    out = []
    for tok, lbl in zip(example["input_ids"], example["labels"]):
        piece = tokenizer.decode([tok])
        out.append(f"[[{piece}]]" if lbl != IGNORE_INDEX else piece)
    return "".join(out)


# ---------------------------------------------------------------- preparing (script / notebook)


def processed_records(data: Dataset, labels: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Model-ready records: chat ``messages`` (+ ``label``/``task`` kept for evaluation), or ``text``."""
    out = []
    for record in data.records:
        if data.fmt == "text":
            out.append({"text": record["text"]})
            continue
        item = {"messages": to_messages(record, data.fmt, labels)}
        for extra in ("label", "task"):
            if extra in record:
                item[extra] = record[extra]
        out.append(item)
    return out


def prepare_dataset(
    input_file: str | Path,
    output_dir: str | Path,
    task_type: str,
    splits_dir: str | Path | None = None,
    labels: Sequence[str] | None = None,
    fmt: str | None = None,
    validation: float = 0.1,
    test: float = 0.1,
    seed: int = 42,
    drop_dupes: bool = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Load, validate, de-duplicate, split and format a dataset; write splits and processed files.

    Writes ``{splits_dir}/{train,validation,test}.jsonl`` (raw records), and
    ``{output_dir}/{train,validation,test}.jsonl`` plus ``dataset_info.json``.
    Returns the info dict (counts, label distribution, duplicates, leakage).
    """
    if task_type not in TASK_TYPES:
        raise CourseError(f"Unknown task type {task_type!r}.", f"use one of: {', '.join(TASK_TYPES)}.")
    data = load_dataset(input_file, fmt=fmt, labels=labels)
    if data.fmt not in TASK_TYPES[task_type]:
        raise DataError(
            f"{input_file} holds {data.fmt} records, which task type {task_type!r} cannot use.",
            f"for {data.fmt} data use --task_type {next(t for t, f in TASK_TYPES.items() if data.fmt in f)}, or pass --format.",
        )
    duplicates = find_duplicates(data)
    if drop_dupes:
        data = drop_duplicates(data)
    parts = split_dataset(data, validation=validation, test=test, seed=seed)
    if data.fmt == "classification":
        labels = list(labels) if labels else sorted(set(data.labels()))
        check_label_coverage(parts["train"], parts["test"])
    leakage = {name: find_leakage(parts["train"], parts[name]) for name in ("validation", "test")}
    splits_dir = Path(splits_dir) if splits_dir else Path(output_dir).parent / "splits"
    for name, part in parts.items():
        write_output(Path(splits_dir) / f"{name}.jsonl", jsonl_text(part.records), overwrite)
        write_output(Path(output_dir) / f"{name}.jsonl", jsonl_text(processed_records(part, labels)), overwrite)
    info = {
        "source": str(input_file),
        "task_type": task_type,
        "format": data.fmt,
        "labels": labels,
        "seed": seed,
        "counts": {name: len(part) for name, part in parts.items()},
        "distribution": {
            name: dict(sorted(Counter(r[k] for r in part.records).items()))
            for name, part in parts.items()
            if (k := stratify_key(data))
        },
        "duplicates": [list(p) for p in duplicates],
        "duplicates_dropped": drop_dupes,
        "leakage_lines": leakage,
    }
    write_output(Path(output_dir) / "dataset_info.json", json.dumps(info, indent=2, ensure_ascii=False) + "\n", overwrite)
    return info


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Read a processed JSONL file (validated as chat or text records)."""
    return load_dataset(path).records
