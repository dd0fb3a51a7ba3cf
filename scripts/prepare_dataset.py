"""Validate, split and format a dataset for fine-tuning (the original course's first command).

    python scripts/prepare_dataset.py --input_file data/raw/train.jsonl --output_dir data/processed/ --task_type classification

Writes the raw splits to ``data/splits/`` and model-ready chat (or text) records to ``--output_dir``
(``train/validation/test.jsonl`` + ``dataset_info.json``), and prints a summary: counts, label
distribution, duplicates, train/test leakage and token lengths. A different existing output is
never replaced without ``--overwrite``, and an input file never at all; problems are reported as ``error: ...`` with exit
code 2, Ctrl-C with one line and exit code 130.
"""

from __future__ import annotations

import argparse
import os
import sys

from ftcourse.course.bundled import LABEL_SETS
from ftcourse.data import FORMATS, TASK_TYPES
from ftcourse.errors import CourseError
from ftcourse.preparation import format_summary, prepare_dataset
from ftcourse.tokenization import DEFAULT_MAX_SEQ_LENGTH


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--input_file", required=True, help="JSONL/JSON/CSV/Parquet file, a folder of .md/.txt (text), or a Hub dataset id (online)")
    parser.add_argument("--output_dir", default="data/processed/", help="where the model-ready files go (default: data/processed/)")
    parser.add_argument("--task_type", required=True, choices=list(TASK_TYPES))
    parser.add_argument("--format", choices=list(FORMATS), help="force the record format instead of detecting it")
    parser.add_argument("--labels", default="auto",
                        help="known labels (classification): 'auto' (those in the data), 'intents' (the course's 10), or a comma list; unknown labels are errors")
    parser.add_argument("--validation_size", type=float, default=0.1, help="fraction for validation (default 0.1)")
    parser.add_argument("--test_size", type=float, default=0.1, help="fraction for test (default 0.1)")
    parser.add_argument("--test_file", help="a separate test set (then the input is split into train/validation only)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--drop_duplicates", action="store_true", help="drop records whose input repeats an earlier one")
    parser.add_argument("--drop_leakage", action="store_true", help="drop validation/test records whose input is also in train")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs that differ")
    parser.add_argument("--splits_dir", help="where the raw splits go (default: splits/ next to --output_dir)")
    parser.add_argument("--model_name_or_path", default="embedded", help="tokenizer for token-length statistics (default: embedded); 'none' skips them")
    parser.add_argument("--max_seq_length", type=int, default=DEFAULT_MAX_SEQ_LENGTH, help=f"for truncation counts and text blocks (default {DEFAULT_MAX_SEQ_LENGTH})")
    parser.add_argument("--packing", action="store_true", help="text: join documents into full blocks of --max_seq_length tokens")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        tokenizer = None
        if args.model_name_or_path.lower() != "none":
            from ftcourse.models import load_tokenizer

            tokenizer = load_tokenizer(args.model_name_or_path)
        info = prepare_dataset(
            args.input_file, args.output_dir, args.task_type, splits_dir=args.splits_dir, labels=args.labels, label_sets=LABEL_SETS,
            fmt=args.format, validation=args.validation_size, test=args.test_size, seed=args.seed,
            drop_dupes=args.drop_duplicates, overwrite=args.overwrite, test_file=args.test_file,
            drop_leakage=args.drop_leakage, tokenizer=tokenizer, max_seq_length=args.max_seq_length, packing=args.packing,
        )
    except CourseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("Interrupted; the outputs are written together at the end, each file whole or not at all: run the same command again.",
              file=sys.stderr)
        return 130
    print(format_summary(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
