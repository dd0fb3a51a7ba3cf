"""Run the course's notebooks headless (papermill) with validated parameters, and keep them in shape.

Conventions every lesson follows (checked by :func:`lint_notebook`):
the first cell is the title with a Colab badge, the second the setup cell (:data:`SETUP_CELL`; its Colab
install and the reasons for each choice are in :mod:`ftcourse.colab`),
exactly one cell is tagged ``parameters`` and it sets ``profile``.
"""

from __future__ import annotations

import ast
import concurrent.futures
import difflib
import json
import multiprocessing
import os
import re
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
from ftcourse.fileio import atomic_write_json, ensure_writable_dir

KERNEL_NAME = "ftcourse"
SETUP_TAG = "colab-setup"
BADGE_MARK = "colab-badge"

SETUP_CELL = '''# Setup: on Google Colab this installs the course and its embedded model, keeping Colab's own torch, transformers,
# peft and ipywidgets (python -m ftcourse.colab: only what is missing or incompatible is installed); elsewhere it does nothing.
import os, subprocess, sys
if "google.colab" in sys.modules:
    if not os.path.isdir("/content/ftcourse"):
        subprocess.run(["git", "clone", "--depth", "1", "{repo}", "/content/ftcourse"], check=True)
        subprocess.run([sys.executable, "-m", "ftcourse.colab"], cwd="/content/ftcourse", check=True)
    sys.path.insert(0, "/content/ftcourse")  # the running kernel does not see the new editable install
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
    stamp(nb, path)
    after = nbformat.writes(nb)
    if after != before:
        path.write_text(after + ("" if after.endswith("\n") else "\n"), encoding="utf-8")
    return after != before


def stamp(nb: nbformat.NotebookNode, path: Path) -> None:
    """In memory: the badge of a notebook saved at ``path`` into the title cell, the setup cell second, no outputs."""
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
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    if len(tagged) != 1:
        problems.append(f"{path}: {len(tagged)} cells tagged 'parameters' (want exactly 1)")
    elif unread := [n for n in assigned_names(tagged[0].source) if n not in (known := parameters_of(path))]:
        problems.append(f"{path}: papermill cannot read the parameter(s) {', '.join(unread)} of the parameters cell "
                        "(write one `name = value` per line, with no '=' in the value or its comment)")
    elif "profile" not in known:
        problems.append(f"{path}: the parameters cell does not set `profile`")
    if colab_badge(path) not in nb.cells[0].source:
        problems.append(f"{path}: Colab badge missing or stale (run `ftcourse build`)")
    setup = [c for c in nb.cells if SETUP_TAG in c.metadata.get("tags", [])]
    if not setup or setup[0].source != setup_source() or nb.cells.index(setup[0]) != 1:
        problems.append(f"{path}: setup cell missing, moved or stale (run `ftcourse build`)")
    return problems


# ---------------------------------------------------------------- parameters


def assigned_names(source: str) -> list[str]:
    """Names a cell assigns at top level (``x = 1``, ``x: int = 1``)."""
    try:
        body = ast.parse(source).body
    except SyntaxError:
        return []
    targets = [t for node in body if isinstance(node, ast.Assign) for t in node.targets]
    targets += [node.target for node in body if isinstance(node, ast.AnnAssign)]
    return [t.id for t in targets if isinstance(t, ast.Name)]


class CommandLineValue(str):
    """A parameter value typed on the command line (``-p NAME VALUE``): text until the notebook says its type.

    :func:`validate_parameters` keeps it as text for a ``str`` parameter and parses it as YAML
    (``8`` → int, ``1e-3`` → float, ``[4, 8]`` → list, ``null`` → None) for the others.
    """


def parameters_of(notebook: str | Path) -> dict[str, dict[str, Any]]:
    """The notebook's parameters: name -> {default, type, help}, as papermill reads the ``parameters`` cell.

    ``type`` is the annotation when there is one, else the type of the default value
    (``"any"`` for a ``None`` default or an expression).
    """
    import papermill

    found = papermill.inspect_notebook(str(notebook))
    return {name: {"default": p["default"], "type": _declared_type(p), "help": p["help"]} for name, p in found.items()}


def _declared_type(param: dict[str, Any]) -> str:
    if param["inferred_type_name"] not in ("None", ""):
        return param["inferred_type_name"].split("[")[0].strip()
    try:
        default = ast.literal_eval(param["default"])
    except (ValueError, SyntaxError):
        return "any"
    return "any" if default is None else type(default).__name__


_TYPES = {"int": int, "float": (int, float), "str": str, "bool": bool, "list": (list, tuple), "tuple": (list, tuple), "dict": dict}


def shown(path: str | Path) -> str:
    """A path as messages show it: relative to the project when inside it (the same in every clone)."""
    try:
        return Path(path).resolve().relative_to(paths.project_root()).as_posix()
    except ValueError:
        return str(path)


def _describe(name: str, spec: dict[str, Any]) -> str:
    return f"{name} ({spec['type']}, default {spec['default']})"


def validate_parameters(notebook: str | Path, params: dict[str, Any]) -> dict[str, Any]:
    """Check ``params`` against the notebook's ``parameters`` cell and return them typed.

    An unknown name, a value of the wrong type or an unknown ``profile`` is a
    :class:`CourseError` (papermill itself only warns and runs anyway).
    """
    from ftcourse.hardware import PROFILES

    known, where = parameters_of(notebook), shown(notebook)
    listing = "; ".join(_describe(n, s) for n, s in known.items()) or "none"
    typed = {}
    for name, value in params.items():
        if name not in known:
            close = difflib.get_close_matches(name, list(known), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise CourseError(f"{where} has no parameter {name!r}.", f"{hint}Its parameters are: {listing}.")
        spec = known[name]
        if isinstance(value, CommandLineValue):
            value = str(value) if spec["type"] == "str" else parse_value(value)
        expected = _TYPES.get(spec["type"])
        if expected is not None and (not isinstance(value, expected) or (isinstance(value, bool) and spec["type"] != "bool")):
            raise CourseError(
                f"{where}: parameter {name!r} must be {spec['type']} (default {spec['default']}), "
                f"got {type(value).__name__} {value!r}.",
                f"pass a value of type {spec['type']}, e.g. -p {name} {spec['default']}.",
            )
        typed[name] = value
    profile = typed.get("profile")
    if profile is not None and profile not in (*PROFILES, "auto"):
        raise CourseError(f"{where}: unknown profile {profile!r}.", f"use one of: {', '.join([*PROFILES, 'auto'])}.")
    return typed


def load_yaml(text: str) -> Any:
    """YAML as people write it: ``1e-3`` is a float (PyYAML's YAML 1.1 rules would read it as a string)."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$"), list("-+0123456789."))
    return yaml.load(text, Loader=Loader)  # noqa: S506 - a SafeLoader subclass


def parse_value(text: str) -> Any:
    """Command-line value: a YAML scalar or list if it parses as one (``1e-3`` a float), else the string."""
    import yaml

    try:
        return load_yaml(text)
    except yaml.YAMLError:
        return text


def load_params_file(path: str | Path) -> dict[str, Any]:
    """A YAML file of ``name: value`` lines (``--params``)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise CourseError(f"Parameters file {path} does not exist.", "check the path.")
    try:
        loaded = load_yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise CourseError(f"{path} is not valid YAML: {exc}", "write one `name: value` per line.") from exc
    if not isinstance(loaded, dict):
        raise CourseError(f"{path} must hold a mapping of parameter names to values.", "write one `name: value` per line.")
    return loaded


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
    params = validate_parameters(notebook, {"profile": profile, **(params or {})})
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
                str(notebook.resolve()), str(output), parameters=params, kernel_name=kernel_name(), cwd=str(notebook.parent),
                progress_bar=progress, execution_timeout=timeout,
                extra_arguments=["--IPKernelApp.log_level=CRITICAL"],  # kernel start-up chatter, not the notebook's output
            )
    except Exception as exc:  # papermill raises PapermillExecutionError (the failing cell's ename/evalue)
        name, value = getattr(exc, "ename", type(exc).__name__), getattr(exc, "evalue", str(exc))
        error = " ".join(f"{name}: {value}".split())
    finally:
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    seconds = round(time.perf_counter() - start, 1)
    return NotebookRun(str(notebook), str(output), "failed" if error else "ok", seconds, round(peak.peak / 2**20, 1), error)


def course_notebooks(folder: str | Path | None = None) -> list[Path]:
    """The lessons: ``notebooks/NN_*.ipynb``."""
    return sorted(Path(folder or paths.notebooks_dir()).glob("[0-9][0-9]_*.ipynb"))


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
