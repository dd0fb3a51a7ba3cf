"""Parameter sweeps: run a notebook at every point of a grid, resume a half-done sweep, collect one table and chart.

A sweep folder (default ``runs/<profile>/sweeps/<notebook>/``) holds::

    sweep.json          the state, rewritten atomically after every point
    points/<point>/     one folder per point: the executed notebook and its <stem>.metrics.json
    results.csv         one row per point: parameters, status, seconds, peak memory, recorded metrics
    results.png         each recorded metric against the first varying parameter

Each point is an ordinary :func:`ftcourse.course.experiments.run_notebook` run; the notebook reports its numbers with
:func:`ftcourse.course.experiments.record_metrics`. A point that fails is recorded and the sweep goes on. Running the
same sweep again skips every point that succeeded with the same notebook code, profile and parameters.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pandas as pd

from ftcourse import paths
from ftcourse.course.experiments import load_params_file, run_notebook, validate_parameters
from ftcourse.errors import CourseError
from ftcourse.fileio import atomic_write_bytes, atomic_write_json, atomic_write_text, file_lock

__all__ = [
    "CHART", "chart_axes", "check_grid", "code_fingerprint", "default_folder", "grid_points", "load_grid",
    "metric_columns", "point_name", "results_table", "RUN_COLUMNS", "run_sweep", "STATE", "SweepResult", "TABLE",
]

STATE = "sweep.json"
TABLE = "results.csv"
CHART = "results.png"
RUN_COLUMNS = ["point", "status", "seconds", "peak_rss_mb", "error"]


def load_grid(path: str | Path) -> dict[str, list[Any]]:
    """A grid file: YAML ``name: [value, ...]`` lines; a single value is an axis of one."""
    loaded = load_params_file(path)
    return check_grid({name: values if isinstance(values, list) else [values] for name, values in loaded.items()}, str(path))


def check_grid(grid: Mapping[str, Sequence[Any]], source: str = "grid") -> dict[str, list[Any]]:
    """The grid as lists, or a :class:`CourseError` naming an empty axis."""
    if not grid:
        raise CourseError(f"{source} has no parameters to sweep.", "give at least one `name: [value, ...]` line.")
    for name, values in grid.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
            raise CourseError(f"{source}: parameter {name!r} needs a non-empty list of values, got {values!r}.", f"write `{name}: [value1, value2]`.")
    return {name: list(values) for name, values in grid.items()}


def grid_points(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid's values, the first axis varying slowest."""
    grid = check_grid(grid)
    return [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())]


def point_name(point: Mapping[str, Any]) -> str:
    """A readable folder name for a point: ``lora_r=8__peft_method=lora``."""
    text = "__".join(f"{k}={json.dumps(v) if isinstance(v, (list, dict)) else v}" for k, v in point.items())
    return re.sub(r"[^\w.=+-]+", "_", text)


def default_folder(notebook: str | Path, profile: str) -> Path:
    """``runs/<profile>/sweeps/<notebook>/``."""
    return paths.runs_dir() / profile / "sweeps" / Path(notebook).stem


def code_fingerprint(notebook: str | Path) -> str:
    """Hash of the notebook's code cells: a point re-runs when the code changes, not when prose or outputs do."""
    nb = nbformat.read(notebook, as_version=4)
    code = "\n\0".join(c.source for c in nb.cells if c.cell_type == "code")
    return hashlib.sha256(code.encode()).hexdigest()[:16]


@dataclass
class SweepResult:
    """What :func:`run_sweep` did and where it wrote the table and chart."""

    folder: Path
    table: pd.DataFrame
    ran: list[str]
    skipped: list[str]
    failed: list[str]

    @property
    def csv(self) -> Path:
        return self.folder / TABLE

    @property
    def chart(self) -> Path:
        return self.folder / CHART


def _load_state(folder: Path, notebook: Path) -> dict[str, Any]:
    state_file = folder / STATE
    if not state_file.exists():
        if any(not p.name.startswith(".") for p in folder.iterdir()):
            raise CourseError(f"{folder} exists and is not a sweep folder (no {STATE}); not writing into it.", "choose another output_dir.")
        return {"notebook": str(notebook), "points": {}}
    state = json.loads(state_file.read_text(encoding="utf-8"))
    if Path(state["notebook"]).name != notebook.name:
        raise CourseError(f"{folder} holds a sweep of {state['notebook']}, not of {notebook}.", "choose another output_dir for this notebook.")
    return state


def _done(folder: Path, entry: dict[str, Any] | None, signature: str) -> bool:
    return (
        entry is not None and entry.get("status") == "ok" and entry.get("signature") == signature
        and (folder / entry["output"]).is_file() and (folder / entry["metrics_file"]).is_file()
    )


def run_sweep(
    notebook: str | Path,
    grid: Mapping[str, Sequence[Any]],
    profile: str = "auto",
    output_dir: str | Path | None = None,
    params: Mapping[str, Any] | None = None,
    timeout: int | None = 1800,
    progress: bool = True,
    metrics: Sequence[str] | None = None,
) -> SweepResult:
    """Run ``notebook`` at every point of ``grid`` (plus the fixed ``params``) under ``profile``.

    Every point is validated before the first one runs. Points that already succeeded with the same
    code, profile and parameters are skipped; failed ones are recorded and the sweep continues.
    Writes ``results.csv`` and ``results.png`` (``metrics``: the recorded numbers to chart, default all).
    """
    from tqdm.auto import tqdm

    notebook = Path(notebook)
    if not notebook.is_file():
        raise CourseError(f"Notebook {notebook} does not exist.", "check the path (the course's experiment is notebooks/experiments/lora_experiment.ipynb).")
    params = dict(params or {})
    grid = check_grid(grid)
    if overlap := sorted(set(grid) & set(params)):
        raise CourseError(f"{', '.join(overlap)} is both swept and fixed.", "remove it from the grid or from the fixed parameters.")
    points = [validate_parameters(notebook, {"profile": profile, **params, **point}) for point in grid_points(grid)]
    names = [point_name({k: p[k] for k in grid}) for p in points]
    if len(set(names)) < len(names):
        raise CourseError(f"The grid has points that share a folder name: {sorted({n for n in names if names.count(n) > 1})}.",
                          "list each value once per parameter.")
    folder = Path(output_dir) if output_dir else default_folder(notebook, profile)
    code = code_fingerprint(notebook)
    ran, skipped, failed = [], [], []
    folder.mkdir(parents=True, exist_ok=True)
    with file_lock(folder / ".lock"):
        state = _load_state(folder, notebook)
        bar = tqdm(list(zip(names, points)), desc="Sweep", unit="point", disable=not progress)
        for name, point in bar:
            signature = hashlib.sha256(json.dumps([code, point], sort_keys=True, default=str).encode()).hexdigest()[:16]
            if _done(folder, state["points"].get(name), signature):
                skipped.append(name)
                continue
            bar.set_postfix_str(name)
            state["points"][name] = {"params": point, "signature": signature, "status": "running"}
            atomic_write_json(folder / STATE, state)
            run = run_notebook(notebook, folder / "points" / name, profile, point, timeout, progress=False)
            metrics_file = Path(run.output).with_name(f"{notebook.stem}.metrics.json")
            recorded = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
            error = run.error or (None if recorded else "the notebook recorded no metrics (call ftcourse.course.experiments.record_metrics)")
            state["points"][name] = {
                "params": point, "signature": signature, "status": "failed" if error else "ok",
                "seconds": run.seconds, "peak_rss_mb": run.peak_rss_mb, "error": error,
                "output": Path(run.output).relative_to(folder).as_posix(),
                "metrics_file": metrics_file.relative_to(folder).as_posix(), "metrics": recorded,
            }
            atomic_write_json(folder / STATE, state)
            (failed if error else ran).append(name)
            tqdm.write(f"{name}: {'failed — ' + error if error else 'ok'} ({run.seconds:.0f} s)")
        table = results_table(state, names, list(grid))
        atomic_write_text(folder / TABLE, table.to_csv(index=False))
        _write_chart(folder / CHART, table, list(grid), metrics)
    if skipped:
        print(f"{len(skipped)} of {len(names)} points already done (skipped).")
    return SweepResult(folder, table, ran, skipped, failed)


def results_table(state: Mapping[str, Any], names: Sequence[str], axes: Sequence[str]) -> pd.DataFrame:
    """One row per point, in grid order: the point, its swept parameters, run status and recorded metrics."""
    rows = []
    for name in names:
        entry = state["points"][name]
        rows.append({
            **entry.get("metrics", {}), "point": name, **{a: entry["params"][a] for a in axes},
            **{c: entry.get(c) for c in RUN_COLUMNS[1:]},
        })
    table = pd.DataFrame(rows)
    return table[["point", *axes, *RUN_COLUMNS[1:], *[c for c in table.columns if c not in ("point", *axes, *RUN_COLUMNS)]]]


def metric_columns(table: pd.DataFrame, axes: Sequence[str]) -> list[str]:
    """The numeric recorded metrics of a results table."""
    return [c for c in table.columns if c not in (*axes, *RUN_COLUMNS) and pd.api.types.is_numeric_dtype(table[c])
            and not pd.api.types.is_bool_dtype(table[c])]


def chart_axes(table: pd.DataFrame, axes: Sequence[str]) -> tuple[str, list[str]]:
    """The x axis (the first swept parameter with more than one value, numeric ones first) and the parameters that tell lines apart."""
    varying = [a for a in axes if table[a].astype(str).nunique() > 1] or list(axes[:1])
    x = next((a for a in varying if table[a].dtype.kind in "iuf"), varying[0])
    return x, [a for a in varying if a != x]


def _write_chart(path: Path, table: pd.DataFrame, axes: Sequence[str], metrics: Sequence[str] | None) -> None:
    import matplotlib.pyplot as plt

    from ftcourse.course.plots import sweep_chart

    chosen = list(metrics) if metrics else metric_columns(table, axes) or ["seconds"]
    if missing := [m for m in chosen if m not in table.columns]:
        raise CourseError(f"No point recorded {', '.join(missing)}.", f"chart one of: {', '.join(metric_columns(table, axes))}.")
    x, group = chart_axes(table, axes)
    fig = sweep_chart(table, x, chosen, group)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
