"""Evaluate a model on a test file — the original course's third command.

    python scripts/evaluate_model.py --model_path models/fine_tuned/ --test_dataset data/processed/test.jsonl --metrics accuracy f1

``--model_path`` is an adapter (run) folder, a merged model folder, ``embedded`` or a Hub id; a folder of
runs (like ``models/fine_tuned/``) means its most recently written run. ``--test_dataset`` is any file in
the course's formats: raw classification (``text``/``label``), Alpaca, chat, or processed records. The
report is written as JSON and Markdown to the run folder (or ``--report_dir``). Problems are reported
as ``error: ...`` with exit code 2.
"""

from __future__ import annotations

import argparse
import os
import sys

from ftcourse.errors import CourseError


def build_parser() -> argparse.ArgumentParser:
    from ftcourse.evaluate import METRICS

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
        from ftcourse.evaluate import evaluate_file

        if args.batch_size < 1 or (args.max_examples is not None and args.max_examples < 1):
            raise CourseError("--batch_size and --max_examples must be at least 1.", "pass positive numbers.")
        evaluate_file(args.model_path, args.test_dataset, args.metrics, args.compare_base, args.report_dir,
                      args.batch_size, args.max_examples, args.classify_by, progress=not args.no_progress)
    except CourseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
