"""Evaluate a model on a test file — the original course's third command.

    python scripts/evaluate_model.py --model_path models/fine_tuned/ --test_dataset data/processed/test.jsonl --metrics accuracy f1

``--model_path`` is an adapter (run) folder, a merged model folder, ``embedded`` or a Hub id; a folder of
runs (like ``models/fine_tuned/``) means its most recently finished run. ``--test_dataset`` is any file in
the course's formats: raw classification (``text``/``label``), Alpaca, chat, or processed records. The
report is written as JSON and Markdown to the run folder (or ``--report_dir``). Problems are reported
as ``error: ...`` with exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ftcourse import paths
from ftcourse.course.bundled import LABEL_SETS
from ftcourse.data import CourseDataset, infer_labels, processed_records, read_dataset
from ftcourse.deploy import EXPORT_RECORD, exported_base
from ftcourse.errors import CourseError
from ftcourse.evaluation import METRICS, Comparison, Evaluation, check_metrics, compare, evaluate_model, group_tasks
from ftcourse.fileio import slug
from ftcourse.models import disable_progress_bars, load_model, load_tokenizer
from ftcourse.reports import write_report
from ftcourse.runs import RUN_RECORD, is_run_dir, latest_run


def resolve_model_path(path: str | Path) -> tuple[str, str | None]:
    """What to load for ``--model_path``, and a note when it was chosen from a folder of runs.

    A model or adapter folder, ``embedded`` or a Hub id is used as given; a folder of runs
    (subfolders with ``ftcourse_run.json``, like ``models/fine_tuned/``) gives its most recently finished run
    (:func:`ftcourse.runs.latest_run`).
    """
    folder = Path(path).expanduser()
    if not folder.is_dir() or (folder / "config.json").is_file() or (folder / "adapter_config.json").is_file():
        return str(path), None
    if not any(is_run_dir(p) for p in folder.iterdir()):
        raise CourseError(f"{folder} holds no model, adapter or saved runs.",
                          "pass a run folder (with adapter_config.json), a model folder, a folder of runs, or 'embedded'; train one with scripts/fine_tune_model.py.")
    run = latest_run(folder)
    count = sum(is_run_dir(p) for p in folder.iterdir())
    others = f" (of {count} runs there)" if count > 1 else ""
    return str(run), f"Using the most recently finished run in {folder}: {run.name}{others}"


def _info_labels(info: Path) -> list[str] | None:
    try:
        return json.loads(info.read_text(encoding="utf-8")).get("labels")
    except (OSError, ValueError):
        return None


def classification_labels(data: CourseDataset, search: Sequence[Path], trained: Path | None = None) -> tuple[list[str], str]:
    """The label set of a classification file, and where it came from.

    ``trained`` (the run's ``dataset_info.json``), when it names labels, is the label set: a test
    label outside it is a :class:`CourseError` (the model never saw it). Else the first
    ``dataset_info.json`` in ``search`` whose labels cover the file's, else the file's own labels
    (:func:`infer_labels`).
    """
    found = {r["label"] for r in data.records}
    if trained is not None and (labels := _info_labels(trained)):
        if unseen := sorted(found - set(labels)):
            raise CourseError(
                f"{data.source} has labels the model never saw in training: {', '.join(unseen)} "
                f"(its labels, from {trained}: {', '.join(labels)}); accuracy would not mean what it says.",
                "evaluate on test data with the run's labels (remove or relabel those records), or train on data that has them.",
            )
        return list(labels), str(trained)
    for info in search:
        labels = _info_labels(info)
        if labels and found <= set(labels):
            return list(labels), str(info)
    return infer_labels(sorted(found), LABEL_SETS.values()), "the test file"


def load_eval_records(test_dataset: str | Path, run_dir: str | Path | None = None) -> tuple[list[dict[str, Any]], list[str] | None, str]:
    """Processed records of any course-format file, its label set (classification) and where the labels came from.

    Labels are the run's (its ``dataset_info.json``; test labels it lacks are an error), else looked up
    next to the test file, then in ``data/processed/`` (where the original course's pipeline prepares the training data).
    """
    test_dataset = Path(test_dataset)
    data = read_dataset(test_dataset)
    labelled = data.fmt == "classification" or all("label" in r for r in data.records)
    if not labelled:
        return processed_records(data), None, ""
    search = [test_dataset.parent / "dataset_info.json", paths.data_dir() / "processed" / "dataset_info.json"]
    labels, source = classification_labels(data, search, Path(run_dir) / "dataset_info.json" if run_dir else None)
    return processed_records(data, labels), labels, source


def evaluate_file(
    model_path: str,
    test_dataset: str,
    metrics: Sequence[str] | None = None,
    compare_base: bool = False,
    report_dir: str | None = None,
    batch_size: int = 16,
    max_examples: int | None = None,
    classify_by: str = "generation",
    progress: bool = True,
) -> tuple[Evaluation | Comparison, list[Path]]:
    """What ``scripts/evaluate_model.py`` does: load, evaluate (against the base when asked), print, write the report.

    The report goes to ``report_dir``, else the model's folder when ftcourse wrote it (a run or an
    export), else ``runs/evaluations/<model name>/``.
    """
    path, note = resolve_model_path(model_path)
    if note:
        print(note)
    folder = Path(path)
    records, labels, label_source = load_eval_records(test_dataset, folder if folder.is_dir() else None)
    if max_examples is not None:
        records = records[:max_examples]
    check_metrics(group_tasks(records, labels), metrics)  # before the (slow) model load
    print(f"Model: {path}")
    print(f"Test data: {test_dataset} ({len(records)} records)" + (f"; {len(labels)} labels, from {label_source}" if labels else ""))
    model, tokenizer = load_model(path), load_tokenizer(path)
    kwargs = dict(metrics=metrics, labels=labels, batch_size=batch_size, classify_by=classify_by, progress=progress, dataset=str(test_dataset))
    if compare_base:
        base = None if hasattr(model, "disable_adapter") else load_model(exported_base(folder))
        result: Evaluation | Comparison = compare(model, tokenizer, records, base_model=base, name=folder.name or path, **kwargs)
    else:
        result = evaluate_model(model, tokenizer, records, name=folder.name or path, **kwargs)
    print(result.summary())
    ours = folder.is_dir() and ((folder / RUN_RECORD).is_file() or (folder / EXPORT_RECORD).is_file())
    target = Path(report_dir) if report_dir else folder if ours else paths.runs_dir() / "evaluations" / slug(path)
    written = write_report(result, target, f"evaluation_{Path(test_dataset).stem}")
    print("Report: " + ", ".join(map(str, written)))
    return result, written


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model_path", required=True, help="adapter/run folder, merged model folder, folder of runs, 'embedded' or a Hub id")
    parser.add_argument("--test_dataset", required=True, help="JSONL/JSON/CSV file: raw classification, Alpaca, chat or processed records")
    parser.add_argument("--metrics", nargs="+", help=f"default: every metric that applies to the data; from: {', '.join(METRICS)}")
    parser.add_argument("--compare_base", action="store_true", help="also evaluate the base model (the adapter switched off) and compare")
    parser.add_argument("--report_dir", help="where evaluation_<test file>.json/.md go (default: the run folder)")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--max_examples", type=int, help="evaluate only the first N records")
    parser.add_argument("--classify_by", default="generation", choices=["generation", "likelihood"],
                        help="classification: constrained generation, or the label with the highest likelihood")
    parser.add_argument("--no_progress", action="store_true", help="no progress bars")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        if args.no_progress:
            disable_progress_bars()
        if args.batch_size < 1 or (args.max_examples is not None and args.max_examples < 1):
            raise CourseError("--batch_size and --max_examples must be at least 1.", "pass positive numbers.")
        evaluate_file(args.model_path, args.test_dataset, args.metrics, args.compare_base, args.report_dir,
                      args.batch_size, args.max_examples, args.classify_by, progress=not args.no_progress)
    except CourseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("Interrupted; no report was written (it is written at the end): run the same command again.", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
