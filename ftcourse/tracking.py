"""Experiment trackers: TensorBoard event files, trackio's local database and wandb's offline run files, read back.

``fine_tune(report_to="tensorboard" | "trackio" | "wandb")`` writes them: TensorBoard under ``<checkpoints>/<run>/runs/``,
trackio under ``$TRACKIO_DIR`` (read once, when trackio is first imported: TRL's trainers import it; project ``ftcourse``), wandb under ``$WANDB_DIR/wandb/offline-run-*`` (default: the working
folder) — offline unless ``WANDB_MODE`` says otherwise (:func:`prepare_wandb`), one wandb run per ``fine_tune``
(:func:`finish_wandb`).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from ftcourse.errors import CourseError

__all__ = ["finish_wandb", "prepare_wandb", "tensorboard_scalars", "trackio_logs", "wandb_logs"]


def tensorboard_scalars(log_dir: str | Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar under ``log_dir`` (all event files, recursively) as ``{tag: [(step, value), ...]}``, sorted by step."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = sorted(Path(log_dir).rglob("events.out.tfevents.*"))
    if not files:
        raise CourseError(f"No TensorBoard event files under {log_dir}.", "train with report_to='tensorboard' and pass its runs/ folder.")
    scalars: dict[str, list[tuple[int, float]]] = {}
    for folder in sorted({f.parent for f in files}):
        events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
        events.Reload()
        for tag in events.Tags()["scalars"]:
            scalars.setdefault(tag, []).extend((e.step, e.value) for e in events.Scalars(tag))
    return {tag: sorted(values) for tag, values in scalars.items()}


def trackio_logs(run_name: str, project: str = "ftcourse") -> dict[str, Any]:
    """A trackio run's logged rows and its config, read from the local database under ``$TRACKIO_DIR``."""
    from trackio.sqlite_storage import SQLiteStorage

    config = SQLiteStorage.get_run_config(project, run_name)
    if config is None:
        raise CourseError(f"No trackio run {run_name!r} in project {project!r}.", "check run_name= and that TRACKIO_DIR is the folder the run wrote to.")
    return {"logs": SQLiteStorage.get_logs(project, run_name), "config": config}


def prepare_wandb() -> None:
    """wandb's settings for a run: offline unless ``WANDB_MODE`` is set (then, unless set, no error reports to Sentry
    either: nothing leaves the machine), and project ``ftcourse`` unless ``WANDB_PROJECT`` is set."""
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_PROJECT", "ftcourse")
    if os.environ["WANDB_MODE"] in ("offline", "disabled"):
        os.environ.setdefault("WANDB_ERROR_REPORTING", "false")


def finish_wandb() -> None:
    """Close the wandb run the Trainer opened (it leaves it open): its run file is complete, and the next run gets its own."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish()


def _wandb_records(run_file: Path):
    """The records of a ``.wandb`` run file, in order (wandb's own reader and record format)."""
    from wandb.proto import wandb_internal_pb2
    from wandb.sdk.internal.datastore import DataStore

    store = DataStore()
    store.open_for_scan(str(run_file))
    while (data := store.scan_data()) is not None:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(data)
        yield record


def _items(items) -> dict[str, Any]:
    """wandb's key/JSON-value items as a dict (nested keys joined with ``/``)."""
    return {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in items}


def wandb_logs(run_name: str, wandb_dir: str | Path | None = None) -> dict[str, Any]:
    """The latest wandb run named ``run_name`` under ``wandb_dir`` (default ``$WANDB_DIR``, else the working folder), read
    from its offline run file: ``logs`` (one dict per logged step), ``config``, ``summary`` and its ``folder``."""
    root = Path(wandb_dir or os.environ.get("WANDB_DIR") or Path.cwd()) / "wandb"
    for folder in sorted(root.glob("offline-run-*"), reverse=True):  # named by start time: the latest first
        run_file = next(folder.glob("run-*.wandb"), None)
        records = list(_wandb_records(run_file)) if run_file else []
        if any(r.WhichOneof("record_type") == "run" and r.run.display_name == run_name for r in records):
            run: dict[str, Any] = {"logs": [], "config": {}, "summary": {}, "folder": folder}
            for record in records:
                kind = record.WhichOneof("record_type")
                if kind == "history":
                    run["logs"].append(_items(record.history.item))
                elif kind == "config":
                    run["config"].update(_items(record.config.update))
                elif kind == "summary":
                    run["summary"].update(_items(record.summary.update))
            return run
    raise CourseError(f"No offline wandb run {run_name!r} under {root}.",
                      "check run_name= and that wandb_dir (or WANDB_DIR) is the folder the run wrote to; online runs are read with wandb.Api().")
