"""Where the course keeps models, data and executed notebooks.

The project root is, in order: ``$FTCOURSE_ROOT``; the checkout this package was
installed from (editable install); the nearest folder above the working directory
that holds the course's ``pyproject.toml``; else ``~/.cache/ftcourse``.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

__all__ = [
    "base_models_dir", "checkpoints_dir", "configs_dir", "data_dir", "fine_tuned_dir", "models_dir", "notebooks_dir",
    "project_root", "runs_dir",
]


def _is_course_root(path: Path) -> bool:
    toml = path / "pyproject.toml"
    return toml.is_file() and 'name = "ftcourse"' in toml.read_text(encoding="utf-8")


@cache
def project_root() -> Path:
    """The folder that holds ``models/``, ``data/``, ``notebooks/`` and ``runs/``."""
    if env := os.environ.get("FTCOURSE_ROOT"):
        return Path(env).expanduser().resolve()
    checkout = Path(__file__).resolve().parent.parent
    if _is_course_root(checkout):
        return checkout
    for folder in [Path.cwd(), *Path.cwd().parents]:
        if _is_course_root(folder):
            return folder
    return Path.home() / ".cache" / "ftcourse"


def models_dir() -> Path:
    return project_root() / "models"


def base_models_dir() -> Path:
    return models_dir() / "base_models"


def fine_tuned_dir() -> Path:
    return models_dir() / "fine_tuned"


def checkpoints_dir() -> Path:
    return models_dir() / "checkpoints"


def data_dir() -> Path:
    return project_root() / "data"


def runs_dir() -> Path:
    return project_root() / "runs"


def configs_dir() -> Path:
    return project_root() / "configs"


def notebooks_dir() -> Path:
    return project_root() / "notebooks"
