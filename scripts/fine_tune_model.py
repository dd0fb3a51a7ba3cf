"""Fine-tune a model with LoRA (or any other method of the course) — the original course's second command.

    python scripts/fine_tune_model.py --model_name_or_path facebook/opt-350m --dataset_path data/processed/ \\
        --output_dir models/fine_tuned/ --peft_method lora --lora_r 16 --lora_alpha 32 --lora_dropout 0.05 \\
        --num_epochs 3 --batch_size 4 --gradient_accumulation_steps 4

Offline, use ``--model_name_or_path embedded``. ``--dataset_path`` is a folder written by
``scripts/prepare_dataset.py`` (``train.jsonl``, ``validation.jsonl``, ``dataset_info.json``) or one
JSONL/JSON/CSV file. Settings come from ``--profile`` (sizes), then ``--config`` / ``--lora_config``
(JSON files), then the flags — each overriding the one before. The run is saved to
``<output_dir>/<run_name>`` and its folder is printed at the end. Problems are reported as
``error: ...`` with exit code 2. Ctrl-C stops it with one line saying at which step and how to resume (exit code 130);
a run whose loss or weights turn NaN or infinite stops with an error and is not saved.

Across processes (one run, gradients averaged, only rank 0 writes; lesson 09)::

    torchrun --nproc_per_node 2 scripts/fine_tune_model.py --model_name_or_path embedded ...
    accelerate launch --config_file configs/accelerate/ddp.yaml scripts/fine_tune_model.py ...
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from transformers import TrainerCallback
from transformers.trainer_utils import get_last_checkpoint

from ftcourse import paths
from ftcourse.errors import CourseError
from ftcourse.fileio import slug

#: Flag name -> TrainingSettings field.
TRAINING_FLAGS = {
    "num_epochs": "num_epochs", "max_steps": "max_steps", "batch_size": "batch_size",
    "gradient_accumulation_steps": "gradient_accumulation_steps", "learning_rate": "learning_rate",
    "max_seq_length": "max_seq_length", "warmup_ratio": "warmup_ratio", "save_steps": "save_steps",
    "logging_steps": "logging_steps", "seed": "seed",
}
#: Flag name -> LoraSettings field.
LORA_FLAGS = {"lora_r": "r", "lora_alpha": "lora_alpha", "lora_dropout": "lora_dropout", "target_modules": "target_modules"}


def build_parser() -> argparse.ArgumentParser:
    from ftcourse.peft_methods import METHODS

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model_name_or_path", help="'embedded' (offline), a Hub id or a local folder (default: the profile's model, else embedded)")
    parser.add_argument("--dataset_path", default="data/processed/", help="folder from prepare_dataset.py, or one data file (default: data/processed/)")
    parser.add_argument("--output_dir", help="the run is saved to <output_dir>/<run_name> (default: the course's models/fine_tuned/)")
    parser.add_argument("--run_name", help="default: <peft_method>-<dataset name>")
    parser.add_argument("--peft_method", default="lora", choices=list(METHODS), help="(default: lora)")
    parser.add_argument("--profile", help="smoke, cpu, gpu or auto: sizes (steps, batch, sequence length, number of examples)")
    parser.add_argument("--config", help="training settings JSON, e.g. configs/training_config.json")
    parser.add_argument("--lora_config", help="LoRA settings JSON, e.g. configs/lora_config.json")
    lora = parser.add_argument_group("LoRA (also the rank of DoRA, rsLoRA, AdaLoRA, QLoRA)")
    lora.add_argument("--lora_r", type=int)
    lora.add_argument("--lora_alpha", type=int)
    lora.add_argument("--lora_dropout", type=float)
    lora.add_argument("--target_modules", nargs="+", help="layer names, 'all-linear', or 'auto' (the architecture's default)")
    train = parser.add_argument_group("training (default: configs' TrainingSettings, or the profile's sizes)")
    train.add_argument("--num_epochs", type=float)
    train.add_argument("--max_steps", type=int, help="optimizer steps; > 0 overrides --num_epochs")
    train.add_argument("--batch_size", type=int)
    train.add_argument("--gradient_accumulation_steps", type=int)
    train.add_argument("--learning_rate", type=float, help="default: the method's (see ftcourse.peft_methods)")
    train.add_argument("--max_seq_length", type=int)
    train.add_argument("--warmup_ratio", type=float)
    train.add_argument("--save_steps", type=int, help="checkpoint every N optimizer steps")
    train.add_argument("--logging_steps", type=int)
    train.add_argument("--seed", type=int)
    parser.add_argument("--checkpoint_dir", help="checkpoints go to <checkpoint_dir>/<run_name> (default: <output_dir>/checkpoints/ "
                                                 "when --output_dir is given, else the course's models/checkpoints/)")
    parser.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")
    parser.add_argument("--report_to", default="none", choices=["none", "tensorboard", "trackio", "wandb"], help="experiment tracking (default: none): tensorboard, trackio (local, $TRACKIO_DIR) or wandb (offline unless WANDB_MODE is set)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing run folder (a run with other settings, or a folder ftcourse did not write)")
    parser.add_argument("--no_progress", action="store_true", help="print log lines instead of a progress bar")
    return parser


def _file_values(cls, path: str) -> dict[str, Any]:
    """The settings a JSON config file sets (validated), without the defaults of the keys it leaves out."""
    from ftcourse.configs import load_settings

    settings = load_settings(cls, path)
    return {key: getattr(settings, key) for key in json.loads(Path(path).read_text(encoding="utf-8"))}


def _flag_values(args: argparse.Namespace, flags: dict[str, str]) -> dict[str, Any]:
    return {field: getattr(args, flag) for flag, field in flags.items() if getattr(args, flag) is not None}


def resolve_settings(args: argparse.Namespace):
    """Profile, then config files, then flags: (profile or None, TrainingSettings, LoraSettings)."""
    from ftcourse.configs import LoraSettings, TrainingSettings
    from ftcourse.profiles import get_profile
    from ftcourse.train import settings_from_profile

    profile = get_profile(args.profile) if args.profile else None
    training = settings_from_profile(profile) if profile else TrainingSettings()
    lora = LoraSettings()
    if args.config:
        training = training.replace(**_file_values(TrainingSettings, args.config))
    if args.lora_config:
        lora = lora.replace(**_file_values(LoraSettings, args.lora_config))
    training = training.replace(**_flag_values(args, TRAINING_FLAGS))
    flags = _flag_values(args, LORA_FLAGS)
    if "target_modules" in flags and len(flags["target_modules"]) == 1 and flags["target_modules"][0] in ("all-linear", "auto"):
        flags["target_modules"] = flags["target_modules"][0]
    return profile, training, lora.replace(**flags)


def load_training_data(path: str) -> tuple[list[dict], list[dict] | None, str, dict]:
    """(train records, validation records or None, dataset name, dataset info) from a prepared folder or one data file.

    The dataset info (``dataset_info.json`` of a prepared folder, else the file's format and labels) is saved with the
    run, so that ``scripts/evaluate_model.py`` knows the label set the adapter was trained on.
    """
    from ftcourse.course.bundled import LABEL_SETS
    from ftcourse.data import processed_records, read_dataset, read_jsonl, resolve_labels

    folder = Path(path)
    if folder.is_dir():
        train_file = folder / "train.jsonl"
        if not train_file.is_file():
            raise CourseError(
                f"{folder} has no train.jsonl.",
                f"prepare it first: python scripts/prepare_dataset.py --input_file data/raw/support_intents.jsonl --output_dir {path} --task_type classification",
            )
        validation_file = folder / "validation.jsonl"
        has_validation = validation_file.is_file() and validation_file.read_text(encoding="utf-8").strip()
        info_file = folder / "dataset_info.json"
        info = json.loads(info_file.read_text(encoding="utf-8")) if info_file.is_file() else {}
        name = Path(info["source"]).stem if info.get("source") else folder.resolve().name
        return read_jsonl(train_file), read_jsonl(validation_file) if has_validation else None, name, info
    data = read_dataset(path)
    labels = resolve_labels("auto", data, named=LABEL_SETS) if data.fmt == "classification" else None
    return processed_records(data, labels), None, folder.stem, {"source": path, "format": data.fmt, "labels": labels}


class StepTracker(TrainerCallback):
    """Remembers how far training got and where its checkpoints go, for the line printed on Ctrl-C."""

    def __init__(self):
        self.step, self.total, self.folder = 0, 0, None

    def on_train_begin(self, args, state, control, **kwargs):
        self.step, self.total, self.folder = state.global_step, state.max_steps, args.output_dir

    def on_step_end(self, args, state, control, **kwargs):
        self.step = state.global_step

    def interrupted(self, resumed: bool) -> str:
        """Where training stopped and how to go on, in one line."""
        if self.folder is None:
            return "Interrupted before training started; nothing was saved."
        again = "the same command" + ("" if resumed else " with --resume")
        last = get_last_checkpoint(self.folder) if Path(self.folder).is_dir() else None
        if last is None:
            return (f"Interrupted at step {self.step} of {self.total}, before the first checkpoint ({self.folder}): nothing to resume "
                    "from; run the same command again to start over.")
        return f"Interrupted at step {self.step} of {self.total}; the last checkpoint is {last}: run {again} to continue from it."


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    tracker = StepTracker()
    try:
        if args.no_progress:
            from ftcourse.models import disable_progress_bars

            disable_progress_bars()
        from ftcourse.models import resolve_model

        profile, training, lora = resolve_settings(args)
        model_name = args.model_name_or_path or (profile.model if profile else "embedded")
        resolve_model(model_name)  # fail fast (offline, typo) before reading data
        train, validation, dataset_name, dataset_info = load_training_data(args.dataset_path)
        if profile:
            train = train[: profile.n_train] if profile.n_train else train
            validation = validation[: profile.n_eval] if validation and profile.n_eval else validation
        run_name = args.run_name or slug(f"{args.peft_method}-{dataset_name}")
        from ftcourse.distributed import world_info
        from ftcourse.train import fine_tune

        main_process = world_info().is_main  # under torchrun / accelerate launch only rank 0 prints and writes
        output_root = Path(args.output_dir) if args.output_dir else paths.fine_tuned_dir()
        if main_process:
            print(f"Fine-tuning {model_name} with {args.peft_method} on {len(train)} examples ({args.dataset_path}) -> {output_root / run_name}")
        result = fine_tune(
            train, model=model_name, method=args.peft_method, lora=lora, settings=training, eval_records=validation,
            run_name=run_name, output_root=args.output_dir, checkpoint_root=args.checkpoint_dir, resume=args.resume, overwrite=args.overwrite,
            keep_both=False, report_to=args.report_to, progress=not args.no_progress, callbacks=[tracker],
        )
    except CourseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        from ftcourse.distributed import world_info

        if world_info().is_main:
            print(tracker.interrupted(args.resume), file=sys.stderr)
        return 130
    if not main_process:
        return 0
    if dataset_info:
        from ftcourse.fileio import atomic_write_json

        atomic_write_json(result.run_dir / "dataset_info.json", dataset_info)
    shown = {k: v for k, v in result.metrics.items() if k in ("train_loss", "eval_loss", "steps", "train_seconds", "trainable_parameters", "trainable_percent")}
    print("Metrics: " + ", ".join(f"{k}={v}" for k, v in shown.items()))
    print(f"Saved the fine-tuned run to: {result.run_dir}")
    print(f"Evaluate it with: python scripts/evaluate_model.py --model_path {result.run_dir} --test_dataset <test.jsonl>")
    return 0


if __name__ == "__main__":
    sys.exit(main())
