"""Saved runs: where :func:`ftcourse.train.fine_tune` writes a run, its fingerprint, and the rules for reusing,
keeping, replacing, resuming and loading one.

A run folder (``models/fine_tuned/<run_name>``) holds the adapter (or full model), the tokenizer, ``metrics.json``, the
settings, and :data:`RUN_RECORD` (base model, method, fingerprint, loss history). Its checkpoints live apart, in
``models/checkpoints/<run_name>`` with :data:`CHECKPOINT_RECORD`, so that a finished run never mixes with them.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock
from transformers import AutoTokenizer, PreTrainedModel
from transformers.trainer_utils import get_last_checkpoint

from ftcourse import paths
from ftcourse.bottleneck import has_bottleneck_adapters, is_bottleneck_dir, load_bottleneck_adapters, save_bottleneck_adapters
from ftcourse.configs import LoraSettings, TrainingSettings, settings_dict
from ftcourse.distributed import world_info
from ftcourse.errors import CourseError
from ftcourse.fileio import atomic_directory, atomic_write_json, ensure_writable_dir, lock_holder, release_file_lock, try_file_lock
from ftcourse.models import check_adapter_folder, check_json_files, check_weight_files, load_model
from ftcourse.peft_methods import get_method
from ftcourse.preflight import Check

__all__ = [
    "ADDED_LATER", "checkpoint_folder", "CHECKPOINT_RECORD", "is_run_dir", "latest_run", "load_run", "plan_run", "read_json",
    "reusable_run", "run_fingerprint", "RUN_RECORD", "RunPlan", "RunResult", "save_run",
]


RUN_RECORD = "ftcourse_run.json"
CHECKPOINT_RECORD = "ftcourse_checkpoint.json"


@dataclass
class RunResult:
    """What :func:`ftcourse.train.fine_tune` returns: the trained model and everything measured about the run."""

    name: str
    method: str
    model: Any
    tokenizer: Any
    run_dir: Path
    metrics: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)

    @property
    def losses(self) -> list[tuple[int, float]]:
        return [(h["step"], h["loss"]) for h in self.history if "loss" in h]


@dataclass(frozen=True)
class RunPlan:
    """Where one run saves (``run_dir``) and checkpoints (``checkpoint_root / name``), and its fingerprint."""

    name: str
    run_dir: Path
    checkpoint_root: Path
    fingerprint: str

    @property
    def checkpoint_dir(self) -> Path:
        return self.checkpoint_root / self.name


#: Training settings added after runs were first saved, with their defaults: left out of the fingerprint at that
#: default, so that a run saved before the setting existed keeps its fingerprint (and is still reused).
ADDED_LATER = {"eval_steps": None}


def run_fingerprint(model_name: str, method: str, lora: LoraSettings, settings: TrainingSettings, records: Sequence[dict],
                    packing: bool, init_text: str | None, fast_loss: bool = True, group_by_length: bool = True) -> str:
    """A hash of everything that determines a run's result (and its logged history)."""
    training = {k: v for k, v in settings_dict(settings).items() if k not in ADDED_LATER or v != ADDED_LATER[k]}
    payload = json.dumps(
        [model_name, method, settings_dict(lora), training, list(records), packing, init_text, fast_loss, group_by_length],
        sort_keys=True, ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; ``{}`` when the file is missing or not JSON."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def plan_run(run_name: str, fingerprint: str, output_root: str | Path | None = None, checkpoint_root: str | Path | None = None,
             overwrite: bool = False, resume: bool = False, keep_both: bool = True) -> RunPlan:
    """Decide where a run goes, before anything loads.

    A folder not written by ftcourse is never touched. A saved run with another fingerprint is kept: this run becomes
    ``<run_name>-<fingerprint>`` (``keep_both=False``: a :class:`CourseError`), unless ``overwrite``.
    """
    run_dir = (Path(output_root) if output_root else paths.fine_tuned_dir()) / run_name
    ckpt_root = Path(checkpoint_root) if checkpoint_root else (Path(output_root) / "checkpoints" if output_root else paths.checkpoints_dir())
    if ckpt_root.resolve() in (run_dir.parent.resolve(), run_dir.resolve()):
        raise CourseError(f"Checkpoints and saved runs would share the folder {ckpt_root}.", "give checkpoint_root and output_root different folders, or choose another run_name.")
    ensure_writable_dir(run_dir.parent, "output_root")  # before the model loads, not after training
    lock = _lock_run(run_dir) if world_info().is_main else None  # the main process of a launch writes the run
    try:
        if run_dir.exists() and not overwrite and not (run_dir / RUN_RECORD).exists():
            raise CourseError(f"{run_dir} exists and was not written by ftcourse; not overwriting it.", "choose another run_name, or pass overwrite=True.")
        if not overwrite and read_json(run_dir / RUN_RECORD).get("fingerprint") not in (None, fingerprint):
            kept = f"{run_name}-{fingerprint}"
            if resume and not (ckpt_root / kept).is_dir():
                raise CourseError(f"The saved run in {run_dir} belongs to a run with different data or settings: nothing of this run to resume.",
                                  f"resume with that run's settings and data, start fresh with resume=False (saved as {kept}), or pass overwrite=True.")
            if not keep_both:
                raise CourseError(f"{run_dir} already holds a run trained with other settings or data; not replacing it.",
                                  "choose another run_name to keep both, or pass overwrite=True to replace it.")
            print(f"{run_dir} holds a run with other settings; keeping it and saving this run as {kept} (overwrite=True would replace it).")
            run_name, run_dir = kept, run_dir.with_name(kept)
        ensure_writable_dir(ckpt_root, "checkpoint_root")
    except BaseException:
        if lock:
            release_file_lock(_RUN_LOCKS.pop(lock)[0])
        raise
    if lock:
        _RUN_LOCKS[lock] = (_RUN_LOCKS[lock][0], run_dir.absolute())  # released when save_run has written run_dir
    return RunPlan(run_name, run_dir, ckpt_root, fingerprint)


#: The run-folder locks this process holds: lock file -> (lock, the run folder it will write).
_RUN_LOCKS: dict[Path, tuple[FileLock, Path]] = {}


def _lock_run(run_dir: Path) -> Path:
    """Hold the lock of ``run_dir`` (``.<name>.lock`` beside it) until :func:`save_run` has written the run.

    A second process that plans a run into the same folder is refused, not made to wait: the first may train for hours,
    and what it saves decides what the second should do (reuse it, keep both, replace it). The same process may plan
    again (a run that stopped, started again in the same notebook kernel).
    """
    path = (run_dir.parent / f".{run_dir.name}.lock").absolute()
    if path in _RUN_LOCKS:
        return path
    lock = try_file_lock(path)
    if lock is None:
        raise CourseError(
            f"{run_dir} is being trained right now by {lock_holder(path)}; two trainings into one run folder would replace each other.",
            "wait for that training to finish, then run again (reuse=True picks up its run), or choose another run_name "
            "(--run_name) or output folder. A notebook kernel whose training stopped holds its run folder until it trains "
            "again or is restarted.",
        )
    _RUN_LOCKS[path] = (lock, run_dir.absolute())
    return path


def reusable_run(run_name: str, fingerprint: str, output_root: str | Path | None = None) -> Path | None:
    """The saved run of ``run_name`` (or its kept twin ``<run_name>-<fingerprint>``) with this fingerprint, if any."""
    run_dir = (Path(output_root) if output_root else paths.fine_tuned_dir()) / run_name
    for saved in (run_dir, run_dir.with_name(f"{run_name}-{fingerprint}")):
        if read_json(saved / RUN_RECORD).get("fingerprint") == fingerprint:
            return saved
    return None


def checkpoint_folder(plan: RunPlan, resume: bool, main: bool = True) -> str | None:
    """Prepare the run's checkpoint folder; return the checkpoint to resume from (None: start fresh, old checkpoints removed).

    Only the ``main`` process removes and reports; the other ranks of a launch call this after it.
    """
    folder = plan.checkpoint_dir
    ours = (folder / CHECKPOINT_RECORD).is_file()
    if folder.is_dir() and not ours and any(folder.iterdir()):
        raise CourseError(f"{folder} exists and does not hold ftcourse checkpoints; not touching it.", "choose another run_name or checkpoint folder.")
    last = get_last_checkpoint(str(folder)) if resume and folder.is_dir() else None
    if not resume or last is None:
        if main and resume:
            print(f"No checkpoint in {folder} to resume from; starting fresh.")
        elif main and ours and get_last_checkpoint(str(folder)):
            print(f"Starting fresh: removing the earlier checkpoints in {folder} (resume=True would continue from them).")
        if main:
            shutil.rmtree(folder, ignore_errors=True)
            atomic_write_json(folder / CHECKPOINT_RECORD, {"fingerprint": plan.fingerprint})
        return None
    if read_json(folder / CHECKPOINT_RECORD).get("fingerprint") != plan.fingerprint:
        raise CourseError(f"The checkpoints in {folder} belong to a run with different data or settings.",
                          "resume with the same model, method, settings and data, or start fresh with resume=False.")
    if main:
        print(f"Resuming from {last}")
    return last


def is_run_dir(path: str | Path) -> bool:
    """True when ``path`` holds a run saved by :func:`ftcourse.train.fine_tune`."""
    return (Path(path) / RUN_RECORD).is_file()


def latest_run(folder: str | Path) -> Path:
    """``folder`` itself when it is a saved run, else the most recently finished run inside it."""
    folder = Path(folder)
    if is_run_dir(folder):
        return folder
    runs = [p for p in folder.iterdir() if is_run_dir(p)] if folder.is_dir() else []
    if not runs:
        raise CourseError(f"{folder} holds no fine-tuned run (no subfolder with {RUN_RECORD}).",
                          "train one first (scripts/fine_tune_model.py), or pass the run's folder.")
    return max(runs, key=lambda p: (read_json(p / RUN_RECORD).get("finished_at", 0), p.stat().st_mtime))


def load_run(run_dir: str | Path, model: PreTrainedModel | None = None) -> RunResult:
    """Load a saved run: its adapter on the base model (or the full model), tokenizer, metrics and history.

    ``model`` is the base model to put the adapter on (default: load the one the run names).
    """
    from peft import PeftModel

    run_dir = Path(run_dir)
    if not is_run_dir(run_dir):
        raise CourseError(f"{run_dir} is not a saved ftcourse run (no {RUN_RECORD}).", "train it first with fine_tune(), or pass the right folder.")
    check_json_files(run_dir)  # the run record, adapter config and tokenizer files parse, or the damaged one is named
    record = read_json(run_dir / RUN_RECORD)
    spec = get_method(record["method"])
    (check_weight_files if spec.name == "full" else check_adapter_folder)(run_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(run_dir))  # the tokenizer the run trained with
    tokenizer.padding_side = "right"
    if spec.name == "full":
        trained = load_model(str(run_dir))
    else:
        if model is None and not record["base_model"]:
            raise CourseError(f"{run_dir} was trained on a model without a name, so its base cannot be loaded.", "pass the base model: load_run(run_dir, model=...).")
        base = model if model is not None else load_model(record["base_model"], quantization=spec.quantization)
        trained = load_bottleneck_adapters(base, run_dir) if is_bottleneck_dir(run_dir) else PeftModel.from_pretrained(base, str(run_dir))
    trained.eval()
    metrics = read_json(run_dir / "metrics.json")
    return RunResult(run_dir.name, spec.name, trained, tokenizer, run_dir, metrics, record.get("history", []))


def save_run(run_dir: Path, model, tokenizer, model_name: str, metrics: dict, record: dict, state_dict: dict | None = None) -> None:
    """Write a finished run into ``run_dir`` at once (built in a temporary sibling, then renamed into place)."""
    if run_dir.exists():
        print(f"Replacing the earlier run in {run_dir}")
    with atomic_directory(run_dir) as tmp:
        if has_bottleneck_adapters(model):  # not a PeftModel: the adapters alone, not the whole model
            save_bottleneck_adapters(model, tmp, model_name, state_dict)
        else:
            model.save_pretrained(tmp, safe_serialization=True, **({"state_dict": state_dict} if state_dict is not None else {}))
        tokenizer.save_pretrained(tmp)
        adapter_config = tmp / "adapter_config.json"
        if adapter_config.exists():  # name the base the way the user did, so the folder is portable
            config = json.loads(adapter_config.read_text())
            config["base_model_name_or_path"] = model_name
            atomic_write_json(adapter_config, config)
        atomic_write_json(tmp / "metrics.json", metrics)
        atomic_write_json(tmp / "training_config.json", record["training"])  # reusable: --config / load_settings
        if get_method(record["method"]).low_rank:
            atomic_write_json(tmp / "lora_config.json", record["lora"])
        atomic_write_json(tmp / RUN_RECORD, record)
    for path, (lock, guarded) in list(_RUN_LOCKS.items()):
        if guarded == run_dir.absolute():
            release_file_lock(lock)
            del _RUN_LOCKS[path]
    print(f"Saved the run to {run_dir}")
