"""The data pipeline of ``scripts/prepare_dataset.py`` and lesson 01: read, validate, split, format, measure, write.

:func:`prepare_dataset` turns one raw file into model-ready ``train``/``validation``/``test`` JSONL files plus
``dataset_info.json`` (labels, sizes, label distribution, duplicates, leakage, token lengths), all or nothing.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ftcourse.data import (
    TASK_TYPES,
    CourseDataset,
    DataError,
    check_label_coverage,
    check_split_sizes,
    conflicting_duplicates,
    display_path,
    drop_duplicates,
    drop_lines,
    find_duplicates,
    find_leakage,
    processed_records,
    read_dataset,
    resolve_labels,
    split_dataset,
    stratify_key,
)
from ftcourse.errors import CourseError
from ftcourse.fileio import jsonl_text, write_outputs
from ftcourse.tokenization import DEFAULT_MAX_SEQ_LENGTH, token_lengths

__all__ = ["format_summary", "prepare_dataset"]


def prepare_dataset(
    input_file: str | Path,
    output_dir: str | Path,
    task_type: str,
    splits_dir: str | Path | None = None,
    labels: str | Sequence[str] | None = None,
    fmt: str | None = None,
    validation: float = 0.1,
    test: float = 0.1,
    seed: int = 42,
    drop_dupes: bool = False,
    overwrite: bool = False,
    test_file: str | Path | None = None,
    drop_leakage: bool = False,
    tokenizer=None,
    max_seq_length: int = DEFAULT_MAX_SEQ_LENGTH,
    packing: bool = False,
    label_sets: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, Any]:
    """Load, validate, de-duplicate, split and format a dataset; write splits and processed files.

    Writes ``{splits_dir}/{train,validation,test}.jsonl`` (raw records; default ``splits_dir`` is
    ``splits/`` next to ``output_dir``) and ``{output_dir}/{train,validation,test}.jsonl`` plus
    ``dataset_info.json``. ``labels``: see :func:`resolve_labels` (``label_sets``: the named sets it may take). ``test_file``: a separate test
    set (the input is then split into train/validation only). Nothing is written when any output
    would replace a different existing file, unless ``overwrite``. Returns the info dict (counts,
    label distribution, duplicates, leakage), plus ``token_lengths`` per split when a ``tokenizer``
    is given (not written: it depends on the model).
    """
    if task_type not in TASK_TYPES:
        raise CourseError(f"Unknown task type {task_type!r}.", f"use one of: {', '.join(TASK_TYPES)}.")
    explicit = resolve_labels(labels, named=label_sets)  # None for "auto": then the labels are the ones found in the data
    data = read_dataset(input_file, fmt=fmt, labels=explicit)
    if data.fmt not in TASK_TYPES[task_type]:
        raise DataError(
            f"{input_file} holds {data.fmt} records, which task type {task_type!r} cannot use.",
            f"for {data.fmt} data use task_type={next(t for t, f in TASK_TYPES.items() if data.fmt in f)!r}, or pass fmt=.",
        )
    known = resolve_labels(labels, data, named=label_sets) if data.fmt == "classification" else None
    duplicates = find_duplicates(data)
    conflicting = conflicting_duplicates(data, duplicates)
    if drop_dupes:
        data = drop_duplicates(data)
    parts = split_dataset(data, validation=validation, test=0.0 if test_file else test, seed=seed)
    check_split_sizes(data, parts, {"validation": validation, "test": 0.0 if test_file else test})
    if test_file:
        parts["test"] = read_dataset(test_file, fmt=data.fmt, labels=explicit)
    if data.fmt == "classification":
        for name in ("validation", "test"):
            check_label_coverage(parts["train"], parts[name])
    leakage = _leakage(parts, drop_leakage)
    output_dir = Path(output_dir)
    splits_dir = Path(splits_dir) if splits_dir else output_dir.parent / "splits"
    processed = {name: processed_records(part, known) for name, part in parts.items()}
    key = stratify_key(data)
    info = {
        "source": display_path(input_file), "test_file": display_path(test_file) if test_file else None, "task_type": task_type,
        "format": data.fmt, "labels": known, "seed": seed, "validation_size": validation, "test_size": None if test_file else test,
        "counts": {name: len(part) for name, part in parts.items()}, "stratified_by": key,
        "distribution": {name: dict(sorted(Counter(r.get(key) for r in part.records).items(), key=lambda kv: str(kv[0]))) for name, part in parts.items()} if key else {},
        "duplicates": [list(p) for p in duplicates], "conflicting_duplicates": [list(p) for p in conflicting], "duplicates_dropped": drop_dupes,
        "leakage_lines": leakage, "leakage_dropped": drop_leakage, "splits_dir": display_path(splits_dir),
        **({"notes": data.notes} if data.notes else {}),  # normalisations applied while reading (labels stripped)
    }
    files = {**{splits_dir / f"{name}.jsonl": jsonl_text(part.records) for name, part in parts.items()},
             **{output_dir / f"{name}.jsonl": jsonl_text(records) for name, records in processed.items()},
             output_dir / "dataset_info.json": json.dumps(info, indent=2, ensure_ascii=False) + "\n"}
    write_outputs(files, overwrite, inputs=[input_file, test_file])
    info["written"] = [display_path(p) for p in files]
    if tokenizer is not None:
        info["token_lengths"] = {name: token_lengths(tokenizer, recs, max_seq_length, packing) for name, recs in processed.items()}
        info["packing"] = packing
    return info


def _leakage(parts: dict[str, CourseDataset], drop: bool) -> dict[str, list[int]]:
    """Lines of validation and test that repeat a training input, and of test that repeat a validation input (model
    selection would see the test); with ``drop``, those lines are removed from ``parts`` (in place)."""
    leakage = {name: find_leakage(parts["train"], parts[name]) for name in ("validation", "test")}
    leakage["test_in_validation"] = find_leakage(parts["validation"], parts["test"])
    if drop:
        parts["validation"] = drop_lines(parts["validation"], leakage["validation"])
        parts["test"] = drop_lines(parts["test"], sorted({*leakage["test"], *leakage["test_in_validation"]}))
    return leakage


def _line_list(found: Sequence[int]) -> str:
    return ", ".join(map(str, found[:5])) + (" ..." if len(found) > 5 else "")


def format_summary(info: dict[str, Any]) -> str:
    """A readable report of :func:`prepare_dataset`'s result (what the script prints)."""
    counts = info["counts"]
    lines = [
        f"Prepared {info['source']} ({info['format']}, task type {info['task_type']}, seed {info['seed']})"
        + (f"; test set from {info['test_file']}" if info.get("test_file") else ""),
        "  records:    " + " · ".join(f"{name} {n}" for name, n in counts.items()) + f"  (total {sum(counts.values())})",
    ]
    if info.get("labels"):
        lines.append(f"  labels ({len(info['labels'])}): {', '.join(info['labels'])}")
    lines += [f"  normalised: {note}" for note in info.get("notes", [])]
    if info["distribution"]:
        values = sorted({v for dist in info["distribution"].values() for v in dist}, key=str)
        width = max(len(str(v)) for v in values)
        lines.append(f"  {info['stratified_by']} distribution (stratified):")
        lines.append(f"    {'':<{width}}  " + "  ".join(f"{name:>10}" for name in counts))
        for v in values:
            lines.append(f"    {v:<{width}}  " + "  ".join(f"{info['distribution'][name].get(v, 0):>10}" for name in counts))
        rare = [v for v in values if sum(d.get(v, 0) for d in info["distribution"].values()) < 3]
        if rare:
            lines.append(f"  ! rare: {', '.join(map(str, rare))} (< 3 examples): a typo? labels='intents' (or a list) rejects unknown labels")
    dupes, conflicts = info["duplicates"], info["conflicting_duplicates"]
    if dupes:
        shown = ", ".join(f"{b} (= {a})" for a, b in dupes[:5]) + (" ..." if len(dupes) > 5 else "")
        action = "dropped" if info["duplicates_dropped"] else "kept; drop_dupes=True removes them"
        lines.append(f"  duplicates: {len(dupes)}, {len(conflicts)} with a different answer; lines {shown} — {action}")
    else:
        lines.append("  duplicates: none")
    action = "dropped" if info["leakage_dropped"] else "kept; drop_leakage=True removes them"
    found_lines = info["leakage_lines"]
    leaks = {name: found for name, found in found_lines.items() if found and name != "test_in_validation"}
    if leaks:
        detail = "; ".join(f"{name} {len(found)} (lines {_line_list(found)})" for name, found in leaks.items())
        lines.append(f"  leakage (input also in train): {detail} — {action}")
    else:
        lines.append("  leakage (input also in train): none")
    if in_validation := found_lines.get("test_in_validation"):
        lines.append(f"  leakage (test input also in validation): {len(in_validation)} (test lines {_line_list(in_validation)}) — {action}")
    else:
        lines.append("  leakage (test input also in validation): none")
    if "token_lengths" in info:
        stats = info["token_lengths"]
        limit = next((s["max_length"] for s in stats.values() if "max_length" in s), None)
        last = "full" if info.get("packing") else "truncated"
        unit = "blocks" if info["format"] == "text" else "examples"
        lines.append(f"  token lengths (max_seq_length {limit}{', packed' if info.get('packing') else ''}):")
        lines.append(f"    {'split':<10} {unit:>8} {'mean':>7} {'p50':>5} {'p95':>5} {'max':>5} {last:>10}")
        for name, s in stats.items():
            if s["count"]:
                lines.append(f"    {name:<10} {s['count']:>8} {s['mean']:>7} {s['p50']:>5} {s['p95']:>5} {s['max']:>5} {s[last]:>10}")
    folders: dict[str, list[str]] = defaultdict(list)
    for written in info.get("written", []):
        folder, _, name = written.rpartition("/")
        folders[folder].append(name)
    lines += [f"  {'wrote:' if i == 0 else '':<6} {folder}/ {', '.join(names)}" for i, (folder, names) in enumerate(folders.items())]
    return "\n".join(lines)
