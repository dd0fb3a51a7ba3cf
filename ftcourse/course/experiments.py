"""Notebooks as parameterized experiments (lesson 08): read and validate a notebook's parameters, run it with papermill,
and record its headline numbers so that a sweep can collect them.
"""

from __future__ import annotations

import ast
import difflib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftcourse import paths
from ftcourse.errors import CourseError
from ftcourse.fileio import atomic_write_json
from ftcourse.memory import track_peak

__all__ = [
    "assigned_names", "CommandLineValue", "KERNEL_NAME", "kernel_name", "load_params_file", "load_yaml", "METRICS_ENV",
    "NotebookRun", "parameters_of", "parse_value", "record_metrics", "run_notebook", "shown", "validate_parameters",
]

KERNEL_NAME = "ftcourse"


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
    from ftcourse.profiles import PROFILES

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
        with track_peak(children=True) as peak:  # the kernel and what it launches
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
    return NotebookRun(str(notebook), str(output), "failed" if error else "ok", seconds, peak.peak_mb, error)


