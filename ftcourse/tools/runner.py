"""The course runner behind ``ftcourse run`` and ``make course``: many notebooks, one summary of time and peak memory."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import time
from dataclasses import asdict
from pathlib import Path

from ftcourse import paths
from ftcourse.course.experiments import NotebookRun, run_notebook, validate_parameters
from ftcourse.errors import CourseError
from ftcourse.fileio import atomic_write_json, ensure_writable_dir

__all__ = ["course_notebooks", "find_notebooks", "run_many"]


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
             timeout: int | None = 1800, summary_name: str = "summary.json", jobs: int = 1) -> list[NotebookRun]:
    """Run notebooks, continuing past failures; write a JSON summary of time and peak memory.

    Executed copies go flat into one folder, so two notebooks with the same file name are an error. ``jobs > 1``
    runs that many notebooks at once, each in its own worker process (CI does, with one thread per kernel); each
    notebook's time is then measured while it shares the CPU, and the summary says so.
    """
    if not notebooks:
        raise CourseError("No notebooks to run.", "name notebooks or folders that hold them.")
    if jobs < 1:
        raise CourseError(f"jobs={jobs} runs nothing.", "pass jobs=1 (one notebook at a time) or more.")
    names = [nb.name for nb in notebooks]
    if clash := sorted({n for n in names if names.count(n) > 1}):
        raise CourseError(f"Several notebooks are named {', '.join(clash)}; their executed copies would overwrite each other.",
                          "rename one of them, or run them into different output_dir folders.")
    for nb in notebooks:  # every notebook's parameters are checked before the first one runs
        validate_parameters(nb, {"profile": profile, **(params or {})})
    out_dir = ensure_writable_dir(Path(output_dir) if output_dir else paths.runs_dir() / profile, "output_dir")
    start = time.perf_counter()

    def report(nb: Path, run: NotebookRun) -> NotebookRun:
        print(f"  {nb.name}: {run.status} in {run.seconds:.0f} s, peak {run.peak_rss_mb:.0f} MB" + (f" — {run.error}" if run.error else ""), flush=True)
        return run

    if jobs == 1:
        results = []
        for nb in notebooks:
            print(f"▶ {nb.name} (profile {profile})", flush=True)
            results.append(report(nb, run_notebook(nb, out_dir, profile, params, timeout)))
    else:
        print(f"▶ {len(notebooks)} notebooks, {jobs} at a time (profile {profile})", flush=True)
        # each run sets environment variables for its kernel: separate processes keep them apart
        with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(run_notebook, nb, out_dir, profile, params, timeout, False): nb for nb in notebooks}
            done = {futures[f]: report(futures[f], f.result()) for f in concurrent.futures.as_completed(futures)}
        results = [done[nb] for nb in notebooks]
    summary = {"profile": profile, "jobs": jobs, "total_seconds": round(sum(r.seconds for r in results), 1),
               "wall_seconds": round(time.perf_counter() - start, 1), "runs": [asdict(r) for r in results]}
    atomic_write_json(out_dir / summary_name, summary)
    return results
