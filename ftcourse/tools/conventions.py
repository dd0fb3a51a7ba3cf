"""The conventions every course notebook follows, and the stamping that keeps them.

The first cell is the title with a Colab badge, the second the setup cell (:data:`SETUP_CELL`; it runs
``scripts/colab_install.py`` on Colab), exactly one cell is tagged ``parameters`` and it sets ``profile``;
committed notebooks carry no outputs. :func:`lint_notebook` checks them, :func:`stamp_notebook` fixes the badge and setup cell.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import nbformat

from ftcourse import paths
from ftcourse.course.experiments import assigned_names, parameters_of

__all__ = [
    "BADGE_MARK", "colab_badge", "lint_notebook", "repository_url", "SETUP_CELL", "setup_source", "SETUP_TAG", "stamp",
    "stamp_notebook", "strip_outputs",
]

SETUP_TAG = "colab-setup"
BADGE_MARK = "colab-badge"

SETUP_CELL = '''# Setup: on Google Colab this installs the course and its embedded model, keeping Colab's own torch, transformers,
# peft and ipywidgets (scripts/colab_install.py: only what is missing or incompatible is installed); elsewhere it does nothing.
import os, subprocess, sys
if "google.colab" in sys.modules:
    if not os.path.isdir("/content/ftcourse"):
        subprocess.run(["git", "clone", "--depth", "1", "{repo}", "/content/ftcourse"], check=True)
        subprocess.run([sys.executable, "scripts/colab_install.py"], cwd="/content/ftcourse", check=True)
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


