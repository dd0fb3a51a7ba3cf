"""Read experiment-tracker logs back: TensorBoard event files and trackio's local database.

``fine_tune(report_to="tensorboard" | "trackio")`` writes them (TensorBoard under
``<checkpoints>/<run>/runs/``, trackio under ``$TRACKIO_DIR``, project ``ftcourse``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ftcourse.errors import CourseError

__all__ = ["tensorboard_scalars", "trackio_logs"]


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
