"""The course runner behind ``ftcourse run`` and ``make course``: many notebooks, one summary of time and peak memory."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import multiprocessing
import time
from dataclasses import asdict
from pathlib import Path

import ftcourse
from ftcourse import paths
from ftcourse.course.experiments import NotebookRun, run_notebook, validate_parameters
from ftcourse.errors import CourseError
from ftcourse.fileio import atomic_write_json, ensure_writable_dir

__all__ = ["course_notebooks", "current_runs", "find_notebooks", "run_many"]


def course_notebooks(folder: str | Path | None = None) -> list[Path]:
    """The lessons: ``notebooks/NN_*.ipynb``, and ``NNb_*.ipynb`` (a short lesson after lesson NN)."""
    return sorted(Path(folder or paths.notebooks_dir()).glob("[0-9][0-9]*_*.ipynb"))


def find_notebooks(targets: list[str | Path]) -> list[Path]:
    """Notebook files, and every notebook under each folder (recursively, checkpoints left out), in order."""
    found: list[Path] = []
    for target in map(Path, targets):
        if target.is_dir():
            found += sorted(p for p in target.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
        elif target.is_file() and target.suffix == ".ipynb":
            found.append(target)
        else:
            raise CourseError(f"Notebook {target} does not exist.", "name .ipynb files or folders that hold them (lessons are in notebooks/).")
    return found


def run_many(notebooks: list[Path], profile: str, output_dir: str | Path | None = None, params: dict | None = None,
             timeout: int | None = 1800, summary_name: str = "summary.json", jobs: int = 1, skip_current: bool = False) -> list[NotebookRun]:
    """Run notebooks, continuing past failures; write a JSON summary of time and peak memory after each one.

    Executed copies go flat into one folder, so two notebooks with the same file name are an error. ``jobs > 1``
    runs that many notebooks at once, each in its own worker process (CI does, with one thread per kernel); each
    notebook's time is then measured while it shares the CPU, and the summary says so. The summary is rewritten
    (atomically) as each notebook finishes, so an interrupted run keeps the finished ones. ``skip_current`` skips the
    notebooks whose executed copy is current (:func:`current_runs`); they stay in the summary, marked ``skipped``.
    """
    if not notebooks:
        raise CourseError("No notebooks to run.", "name notebooks or folders that hold them.")
    if jobs < 1:
        raise CourseError(f"jobs={jobs} runs nothing.", "pass jobs=1 (one notebook at a time) or more.")
    names = [nb.name for nb in notebooks]
    if clash := sorted({n for n in names if names.count(n) > 1}):
        raise CourseError(f"Several notebooks are named {', '.join(clash)}; their executed copies would overwrite each other.",
                          "rename one of them, or run them into different output_dir folders.")
    # every notebook's parameters are checked before the first one runs
    typed = {nb: _plain_json(validate_parameters(nb, {"profile": profile, **(params or {})})) for nb in notebooks}
    out_dir = ensure_writable_dir(Path(output_dir) if output_dir else paths.runs_dir() / profile, "output_dir")
    skipped = current_runs(notebooks, out_dir / summary_name, typed) if skip_current else {}
    done: dict[Path, NotebookRun] = dict(skipped)
    start = time.perf_counter()

    def write_summary() -> None:
        ran = [nb for nb in notebooks if nb in done]  # input order
        atomic_write_json(out_dir / summary_name, {
            "profile": profile, "jobs": jobs, "total_seconds": round(sum(done[nb].seconds for nb in ran), 1),
            "wall_seconds": round(time.perf_counter() - start, 1), "complete": len(ran) == len(notebooks),
            "runs": [{**asdict(done[nb]), "params": typed[nb], **({"skipped": True} if nb in skipped else {})} for nb in ran]})

    def finished(nb: Path, run: NotebookRun) -> None:
        done[nb] = run
        print(f"  {nb.name}: {run.status} in {run.seconds:.0f} s, peak {run.peak_rss_mb:.0f} MB" + (f" — {run.error}" if run.error else ""), flush=True)
        write_summary()

    for nb, run in skipped.items():
        print(f"  {nb.name}: skipped, its executed copy is current ({run.output})", flush=True)
    todo = [nb for nb in notebooks if nb not in skipped]
    if not todo:
        write_summary()
    elif jobs == 1:
        for nb in todo:
            print(f"▶ {nb.name} (profile {profile})", flush=True)
            finished(nb, run_notebook(nb, out_dir, profile, params, timeout))
    else:
        print(f"▶ {len(todo)} notebooks, {jobs} at a time (profile {profile})", flush=True)
        # each run sets environment variables for its kernel: separate processes keep them apart
        with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(run_notebook, nb, out_dir, profile, params, timeout, False): nb for nb in todo}
            for future in concurrent.futures.as_completed(futures):
                finished(futures[future], future.result())
    return [done[nb] for nb in notebooks]


def _plain_json(value):
    """``value`` as it reads back from JSON (tuples become lists), so that recorded and new parameters compare equal."""
    return json.loads(json.dumps(value, default=str))


def current_runs(notebooks: list[Path], summary: Path, typed: dict[Path, dict]) -> dict[Path, NotebookRun]:
    """The notebooks whose executed copy is current, with their recorded runs.

    Current means: ``summary`` (the last run into this folder) records the notebook as finished ``ok`` with the same
    parameters (profile included), its executed copy exists, and that copy is newer than the notebook and than every
    ``.py`` file of the ``ftcourse`` package. Data, saved runs and installed packages are not compared: run without
    skipping (or delete the executed copy) after changing them.
    """
    try:
        recorded = {Path(r["notebook"]).name: r for r in json.loads(summary.read_text())["runs"]}
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    code = max(p.stat().st_mtime for p in Path(ftcourse.__file__).parent.rglob("*.py"))
    fields = {f.name for f in dataclasses.fields(NotebookRun)}
    current = {}
    for nb in notebooks:
        entry, output = recorded.get(nb.name, {}), summary.parent / nb.name
        if (entry.get("status") == "ok" and entry.get("params") == typed[nb] and output.is_file()
                and output.stat().st_mtime > max(nb.stat().st_mtime, code)):
            current[nb] = NotebookRun(**{**{k: v for k, v in entry.items() if k in fields}, "output": str(output)})
    return current
