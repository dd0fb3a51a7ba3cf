"""Load, validate, split and format datasets; tokenize with completion-only labels.

Formats (auto-detected from the fields, or forced with ``fmt=``):

==================  ===========================================
``classification``  ``text`` + ``label``
``alpaca``          ``instruction`` + ``input`` + ``output``
``chat``            ``messages`` (list of ``role``/``content``)
``sharegpt``        ``conversations`` (list of ``from``/``value``)
``text``            ``text`` only (plain text for continued pre-training)
==================  ===========================================

Every record becomes chat ``messages``; every assistant turn is a target (ftcourse.tokenization.tokenize_messages).
"""

from __future__ import annotations

import codecs
import csv
import errno
import io
import json
import math
import os
import random
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftcourse import paths
from ftcourse.errors import CourseError
from ftcourse.metrics import normalize_text

__all__ = [
    "check_label_coverage", "check_split_sizes", "classification_instruction", "conflicting_duplicates", "CourseDataset", "DataError",
    "detect_format", "display_path", "drop_duplicates", "drop_lines", "find_duplicates", "find_leakage", "FORMATS",
    "infer_labels", "Problem", "processed_records", "read_dataset", "read_jsonl", "read_utf8", "record_key",
    "record_target", "resolve_labels", "split_dataset", "SPLITS", "stratify_key", "TASK_TYPES", "to_messages",
    "validate_record",
]

FORMATS = ("classification", "alpaca", "chat", "sharegpt", "text")
#: The original course's ``--task_type`` values and the formats each accepts.
TASK_TYPES = {
    "classification": ("classification",),
    "instruction": ("alpaca",),
    "chat": ("chat", "sharegpt", "alpaca"),
    "text": ("text",),
}
SPLITS = ("train", "validation", "test")
_SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
_TEXT_SUFFIXES = {".txt", ".md"}
_TURN_FIELDS = ("messages", "conversations")


class DataError(CourseError):
    """A dataset problem; the message names the file, line and field of each problem found."""


@dataclass
class Problem:
    line: int | None
    field: str | None
    message: str

    def render(self, source: str, unit: str = "line") -> str:
        where = source + (f", {unit} {self.line}" if self.line is not None else "")
        return f"{where}: " + (f"field {self.field!r}: " if self.field else "") + self.message


@dataclass
class CourseDataset:
    """Records with the format they were read as and where they came from."""

    records: list[dict[str, Any]]
    fmt: str
    source: str
    lines: list[int] = field(default_factory=list)  # source line (or record number) of each record
    unit: str = "line"  # what ``lines`` count: "line" (JSONL, CSV) or "record" (JSON list, Parquet, Hub)
    notes: list[str] = field(default_factory=list)  # normalisations applied while reading (e.g. labels stripped)

    def __len__(self) -> int:
        return len(self.records)

    def labels(self) -> list[str]:
        return [r["label"] for r in self.records]

    def subset(self, keep: Sequence[int], source: str | None = None) -> CourseDataset:
        """The records at positions ``keep`` (in that order), with their line numbers."""
        return CourseDataset([self.records[i] for i in keep], self.fmt, source or self.source, [self.lines[i] for i in keep], self.unit,
                             self.notes)


# ---------------------------------------------------------------- reading


def _plain(value: Any) -> Any:
    """Python lists/dicts/scalars from what pandas and pyarrow hand back (numpy arrays and scalars)."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _decode_turns(row: dict[str, Any]) -> dict[str, Any]:
    """CSV cells are strings: a ``messages``/``conversations`` cell holding JSON is decoded."""
    for key in _TURN_FIELDS:
        if isinstance(row.get(key), str):
            try:
                row[key] = json.loads(row[key])
            except json.JSONDecodeError:
                pass  # left as a string: validation reports the field
    return row


def _unreadable(path: Path, exc: OSError) -> DataError:
    """The error for a path that cannot be opened, naming a symbolic link that loops or points nowhere as such."""
    if exc.errno == errno.ELOOP:
        return DataError(f"{path} is a symbolic link that loops back on itself (it, or a link it points to, leads to {path} again).",
                         f"point the link at the real file (ln -sfn TARGET {path}), or pass the real file instead.")
    if path.is_symlink():
        return DataError(f"{path} is a symbolic link to {os.readlink(path)}, which does not exist.",
                         f"point the link at the real file (ln -sfn TARGET {path}), or pass the real file instead.")
    return DataError(f"Cannot read {path} ({exc.strerror or exc}).", "check the path and its permissions.")


def _utf16_or_32(raw: bytes) -> str | None:
    """``"UTF-16"`` or ``"UTF-32"`` when the bytes are text in that encoding (a byte-order mark, or NUL bytes between ASCII letters)."""
    if raw.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        return "UTF-32"
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "UTF-16"
    head = raw[:200]
    if len(head) >= 4 and head.count(0) >= len(head) // 4:
        return "UTF-32" if head.count(0) >= len(head) // 2 + len(head) // 4 else "UTF-16"
    return None


def read_utf8(path: Path) -> str:
    """A text file's contents (a UTF-8 byte-order mark is dropped); bytes that are not UTF-8 are a :class:`DataError`
    naming the byte offset and line, or the file's encoding when it is UTF-16 or UTF-32."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise _unreadable(path, exc) from None
    if encoding := _utf16_or_32(raw):
        raise DataError(
            f"{path} is {encoding} text, not UTF-8.",
            f"convert it to UTF-8, e.g. iconv -f {encoding} -t UTF-8 {path.name} > fixed.{path.name.rpartition('.')[2]} "
            f"(or in Python: path.write_text(path.read_text(encoding='{encoding.lower()}'), encoding='utf-8')).",
        )
    skip = len(codecs.BOM_UTF8) if raw.startswith(codecs.BOM_UTF8) else 0
    try:
        return raw[skip:].decode("utf-8")
    except UnicodeDecodeError as exc:
        start = skip + exc.start  # in the file, byte-order mark included
        line = raw.count(b"\n", 0, start) + 1
        raise DataError(
            f"{path} is not UTF-8 text: byte {start} (line {line}) is {raw[start:start + 1]!r}.",
            f"re-encode the file as UTF-8, e.g. iconv -f latin1 -t utf-8 {path.name} > fixed.{path.name.rpartition('.')[2]} "
            "(or open it with its encoding in Python and write it back with encoding='utf-8').",
        ) from None


def _read_rows(path: Path) -> tuple[list[Any], list[int], list[Problem], str]:
    """Rows of a JSONL/JSON/CSV/Parquet file, their line (or record) numbers, syntax problems, and the unit."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        rows, lines, problems = [], [], []
        text = read_utf8(path)
        if text.lstrip().startswith("["):
            raise DataError(f"{path} holds a JSON array, but a .jsonl file is JSON Lines: one JSON object per line.",
                            f"rename it to {path.stem}.json (a JSON list of records), or write one record per line.")
        for number, raw in enumerate(text.split("\n"), start=1):
            if not raw.strip():
                continue
            try:
                rows.append(json.loads(raw))
                lines.append(number)
            except json.JSONDecodeError as exc:
                problems.append(Problem(number, None, f"not valid JSON ({exc.msg} at column {exc.colno})"))
        return rows, lines, problems, "line"
    if suffix == ".json":
        text = read_utf8(path)
        if not text.strip():
            return [], [], [], "record"
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            return [], [], [Problem(exc.lineno, None, f"not valid JSON ({exc.msg} at column {exc.colno})")], "line"
        if isinstance(data, dict) and len(data) == 1 and isinstance(next(iter(data.values())), list):
            data = next(iter(data.values()))  # {"data": [...]}
        if not isinstance(data, list):
            return [], [], [Problem(None, None, "expected a JSON list of records (or {\"data\": [...]})")], "record"
        return data, list(range(1, len(data) + 1)), [], "record"
    if suffix == ".csv":
        rows, lines = [], []
        reader = csv.DictReader(io.StringIO(read_utf8(path), newline=""))
        start = 2  # line 1 is the header
        for row in reader:
            rows.append(_decode_turns(dict(row)))
            lines.append(start)
            start = reader.line_num + 1
        return rows, lines, [], "line"
    if suffix == ".parquet":
        import pandas as pd

        rows = [_plain(r) for r in pd.read_parquet(path).to_dict(orient="records")]
        return rows, list(range(1, len(rows) + 1)), [], "record"
    raise DataError(f"{path}: unsupported file type {suffix!r}.", "use .jsonl, .json, .csv or .parquet (or a folder of .txt/.md files).")


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
        "conversations (sharegpt) or text (plain text), or pass fmt=.",
    )


def _blank(text: str) -> str | None:
    """Why ``text`` shows nothing: ``"is empty"``, or the invisible characters it is made of; ``None`` when it shows something."""
    if not text.strip():
        return "is empty"
    if any(not unicodedata.category(ch).startswith(("C", "Z")) for ch in text if not ch.isspace()):
        return None
    names = sorted({f"U+{ord(ch):04X} {unicodedata.name(ch, 'unnamed')}" for ch in text if not ch.isspace()})
    return f"has no visible characters (only {', '.join(names[:3])}{' ...' if len(names) > 3 else ''})"


def _check_str(record: dict, key: str, line: int, problems: list[Problem], allow_empty: bool = False) -> None:
    if key not in record or record[key] is None:
        problems.append(Problem(line, key, "missing"))
    elif not isinstance(record[key], str):
        problems.append(Problem(line, key, f"must be a string, got {type(record[key]).__name__} {record[key]!r}"))
    elif not allow_empty and (blank := _blank(record[key])):
        problems.append(Problem(line, key, blank))


def _non_finite(value: Any, name: str) -> Iterator[tuple[str, str]]:
    """(field name, ``NaN``/``Infinity``/``-Infinity``) for each field under ``name`` (``a.b``, ``a[2]``) that JSON does not allow."""
    if isinstance(value, float) and not math.isfinite(value):
        yield name, "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _non_finite(item, f"{name}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _non_finite(item, f"{name}[{i}]")


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
    reported = {p.field for p in problems}
    problems += [Problem(line, name, f"is {value}, which is not a JSON value: use null or a number, or drop the field")
                 for key in record if key not in reported for name, value in _non_finite(record[key], key)]
    return problems


def _raise_problems(source: str, problems: list[Problem], unit: str = "line", limit: int = 20) -> None:
    if not problems:
        return
    shown = "\n  ".join(p.render(source, unit) for p in problems[:limit])
    more = f"\n  ... and {len(problems) - limit} more" if len(problems) > limit else ""
    raise DataError(
        f"{len(problems)} problem(s) in {source}:\n  {shown}{more}",
        f"correct (or remove) the records at the {unit}s named above, then load the file again.",
    )


def _is_hub_id(source: str) -> bool:
    """``owner/name`` with no file suffix, e.g. ``tatsu-lab/alpaca``."""
    return re.fullmatch(r"[\w.-]+/[\w.-]+", source) is not None and not Path(source).suffix


def _text_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.suffix.lower() in _TEXT_SUFFIXES and p.name != "README.md")


def read_dataset(
    source: str | Path, fmt: str | None = None, labels: Sequence[str] | None = None, split: str = "train"
) -> CourseDataset:
    """Load and validate a dataset file (JSONL/JSON/CSV/Parquet), .txt/.md text (a file or a folder), or a Hub id.

    ``fmt`` forces a format (else it is detected from the first record); ``labels`` is the known
    label set of classification data (unknown labels are errors). All problems found are reported
    together in one :class:`DataError`, each with its file, line and field.
    """
    path = Path(source)
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP or path.is_symlink():  # a link that loops or points nowhere, not a missing file
            raise _unreadable(path, exc) from None
    if path.is_dir() or (path.is_file() and path.suffix.lower() in _TEXT_SUFFIXES):
        files = _text_files(path)
        if not files:
            raise DataError(f"{path} holds no .txt or .md files.", "point to a data file or a folder of text files.")
        root = path if path.is_dir() else path.parent
        records = [{"text": read_utf8(p), "source": str(p.relative_to(root))} for p in files]
        problems = [Problem(i, "text", f"{blank} ({r['source']})") for i, r in enumerate(records, 1) if (blank := _blank(r["text"]))]
        _raise_problems(str(path), problems, "file")
        return CourseDataset(records, "text", str(path), list(range(1, len(records) + 1)), "file")
    if path.exists():
        rows, lines, problems, unit = _read_rows(path)
    elif _is_hub_id(str(source)):
        rows, problems, unit = _load_hub(str(source), split), [], "record"
        lines = list(range(1, len(rows) + 1))
    else:
        raise DataError(f"{path} does not exist.", "check the path (bundled data lives in data/raw/).")
    if not rows and not problems:
        raise DataError(f"{path} is empty: no records.", "add at least one record (JSONL: one JSON object per line).")
    if fmt is None:
        first = next((r for r in rows if isinstance(r, dict)), None)
        if first is None:
            _raise_problems(str(path), problems or [Problem(None, None, "no JSON object records found")], unit)
        fmt = detect_format(first)
    if fmt not in FORMATS:
        raise DataError(f"Unknown format {fmt!r}.", f"use one of: {', '.join(FORMATS)}.")
    notes = _strip_labels(rows, lines, unit) if fmt == "classification" else []
    for row, line in zip(rows, lines):
        problems.extend(validate_record(row, fmt, line, labels))
    if fmt == "classification" and labels is None:  # a known label set already rejects every other spelling
        problems += _case_variants(rows, lines)
    problems.sort(key=lambda p: p.line or 0)
    _raise_problems(str(path), problems, unit)
    return CourseDataset(rows, fmt, str(path), lines, unit, notes)


def _labelled(rows: Sequence[Any], lines: Sequence[int]) -> Iterator[tuple[dict[str, Any], int]]:
    return ((row, line) for row, line in zip(rows, lines) if isinstance(row, dict) and isinstance(row.get("label"), str))


def _strip_labels(rows: Sequence[Any], lines: Sequence[int], unit: str) -> list[str]:
    """Remove spaces around labels (in place: ``" billing "`` is ``"billing"``); the note that says so, if any were."""
    changed = [line for row, line in _labelled(rows, lines) if row["label"] != row["label"].strip()]
    for row, _ in _labelled(rows, lines):
        row["label"] = row["label"].strip()
    shown = ", ".join(map(str, changed[:5])) + (" ..." if len(changed) > 5 else "")
    return [f"{len(changed)} label(s) had spaces around them, removed ({unit}s {shown})"] if changed else []


def _case_variants(rows: Sequence[Any], lines: Sequence[int]) -> list[Problem]:
    """A problem for each label also written in another case (``Billing`` beside ``billing``): one class counted twice."""
    spellings: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for row, line in _labelled(rows, lines):
        spellings[row["label"].casefold()][row["label"]].append(line)
    problems = []
    for found in spellings.values():
        common, *others = sorted(found, key=lambda spelling: (-len(found[spelling]), spelling))
        problems += [Problem(found[other][0], "label", f"{other!r} ({len(found[other])} records) differs from {common!r} "
                             f"({len(found[common])} records) only in case: one label written two ways? Write it one way, or pass "
                             "labels=[...] naming both if they are different classes") for other in others]
    return problems


def _load_hub(dataset_id: str, split: str) -> list[dict]:
    from ftcourse.hardware import hub_offline

    if hub_offline():
        raise DataError(
            f"{dataset_id!r} is not a local file, and the Hugging Face Hub is off (HF_HUB_OFFLINE=1).",
            "check the path if you meant a local file; for a Hub dataset go online (unset HF_HUB_OFFLINE).",
        )
    import datasets

    try:
        return [_plain(dict(r)) for r in datasets.load_dataset(dataset_id, split=split)]
    except Exception as exc:  # no connection, unknown id, unknown split, ...
        raise DataError(
            f"Could not load the Hub dataset {dataset_id!r}, split {split!r} ({type(exc).__name__}: {str(exc).splitlines()[0]}).",
            "check the id, the split and your internet connection, or download it and pass a local file.",
        ) from None


# ---------------------------------------------------------------- checks


def _turns(record: dict[str, Any], fmt: str) -> list[str]:
    turns = record["messages"] if fmt == "chat" else record["conversations"]
    return [t["content" if fmt == "chat" else "value"] for t in turns]


def record_key(record: dict[str, Any], fmt: str) -> str:
    """The text that identifies a record's input, for duplicate and leakage checks."""
    if fmt in ("classification", "text"):
        return normalize_text(record["text"])
    if fmt == "alpaca":
        return normalize_text(record["instruction"] + "\n" + record.get("input", ""))
    return normalize_text("\n".join(_turns(record, fmt)[:-1]))


def record_target(record: dict[str, Any], fmt: str) -> str:
    """What a record teaches the model to answer (label, output or last turn); ``""`` for plain text."""
    if fmt == "classification":
        return record["label"]
    if fmt == "alpaca":
        return record["output"]
    return "" if fmt == "text" else _turns(record, fmt)[-1]


def find_duplicates(data: CourseDataset) -> list[tuple[int, int]]:
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


def conflicting_duplicates(data: CourseDataset, pairs: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """The duplicate pairs whose targets differ (the same input taught two answers: label noise)."""
    by_line = dict(zip(data.lines, data.records))
    return [(a, b) for a, b in pairs if record_target(by_line[a], data.fmt) != record_target(by_line[b], data.fmt)]


def drop_lines(data: CourseDataset, lines: Sequence[int]) -> CourseDataset:
    """``data`` without the records at the given source lines."""
    drop = set(lines)
    return data.subset([i for i, n in enumerate(data.lines) if n not in drop])


def drop_duplicates(data: CourseDataset) -> CourseDataset:
    """Keep the first of each group of duplicates (see :func:`find_duplicates`)."""
    return drop_lines(data, [line for _, line in find_duplicates(data)])


def find_leakage(train: CourseDataset, other: CourseDataset) -> list[int]:
    """Lines of ``other`` whose input also occurs in ``train`` (train/test leakage)."""
    train_keys = {record_key(r, train.fmt) for r in train.records}
    return [n for r, n in zip(other.records, other.lines) if record_key(r, other.fmt) in train_keys]


def check_label_coverage(train: CourseDataset, test: CourseDataset) -> None:
    """Raise when the test split has labels the training split never shows."""
    missing = sorted(set(test.labels()) - set(train.labels()))
    if missing:
        raise DataError(
            f"{test.source}: labels {', '.join(missing)} occur in the test data but never in training ({train.source}).",
            "add training examples of those labels, or remove them from the test data.",
        )


def resolve_labels(spec: str | Sequence[str] | None, data: CourseDataset | None = None,
                   named: Mapping[str, Sequence[str]] | None = None) -> list[str] | None:
    """The known label set from a ``--labels`` value.

    A key of ``named`` (the course passes ``{"intents": INTENT_LABELS}``) is that set; ``"a,b,c"`` or a sequence is
    that list; ``None``/``"auto"`` takes the labels found in ``data`` (:func:`infer_labels` over the ``named`` sets),
    or ``None`` without data (nothing to check against).
    """
    named = dict(named or {})
    if isinstance(spec, str):
        if spec in named:
            return list(named[spec])
        if spec != "auto":
            labels = [s.strip() for s in spec.split(",") if s.strip()]
            if not labels:
                choices = ", ".join([*map(repr, named), "'auto'"])
                raise CourseError(f"labels={spec!r} names no label.", f"pass labels separated by commas, or one of {choices}.")
            return labels
        spec = None
    if spec is not None:
        return list(spec)
    if data is None:
        return None
    return infer_labels(data.labels(), named.values())


def infer_labels(found: Iterable[str], known: Iterable[Sequence[str]] = ()) -> list[str]:
    """A label set from the labels seen: the first ``known`` set that holds them all (in its order), else sorted.

    The one rule for training data and test references alike, so that a test set that lacks a label is still
    scored (and prompted) with the label set its model was trained with.
    """
    found = set(found)
    return next((list(labels) for labels in known if found <= set(labels)), sorted(found))


# ---------------------------------------------------------------- splitting


def stratify_key(data: CourseDataset) -> str | None:
    if data.fmt == "classification":
        return "label"
    if data.records and all("task" in r for r in data.records):
        return "task"
    return None


def split_dataset(
    data: CourseDataset, validation: float = 0.1, test: float = 0.1, seed: int = 42
) -> dict[str, CourseDataset]:
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
        out[name] = data.subset(idx, f"{data.source}[{name}]")
    return out


def check_split_sizes(data: CourseDataset, parts: Mapping[str, CourseDataset], fractions: Mapping[str, float]) -> None:
    """Raise a :class:`DataError` when classification ``data`` has fewer than two labels, when no record is left for
    training, or when a split asked for (its fraction in ``fractions`` > 0) came out of :func:`split_dataset` empty."""
    if data.fmt == "classification" and len(found := set(data.labels())) < 2:
        raise DataError(f"{data.source} has a single label, {', '.join(map(repr, found))}, in all its {len(data)} record(s): "
                        "a classifier trained on it answers that label to everything.", "add records of at least one other label.")
    if not parts["train"]:
        raise DataError(f"No record of {data.source} is left for training ({len(data)} in all).", "add records, or lower the validation and test fractions.")
    key = stratify_key(data)
    for name, fraction in fractions.items():
        if fraction > 0 and not parts[name]:
            largest = max(Counter(r[key] for r in data.records).values()) if key else len(data)
            of = f"the records of each {key} (stratified; the largest {key} has {largest})" if key else f"{len(data)} record(s)"
            raise DataError(f"The {name} split came out empty: {fraction:.0%} of {of} rounds to 0 records.",
                            f"add records, raise the {name} fraction ({name}=, --{name}_size), or set it to 0 to go without a {name} split.")


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


# ---------------------------------------------------------------- preparing (script / notebook)


def processed_records(data: CourseDataset, labels: Sequence[str] | None = None) -> list[dict[str, Any]]:
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


def display_path(path: str | Path) -> str:
    """``path`` relative to the project root when inside it (symlinks kept as named), else absolute."""
    full = Path(os.path.abspath(path))
    try:
        return full.relative_to(paths.project_root()).as_posix()
    except ValueError:
        return full.as_posix()


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Read a processed JSONL file (validated as chat or text records)."""
    return read_dataset(path).records
