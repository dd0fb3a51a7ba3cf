"""Load a file of ``scripts/`` as a module, the way its tests call its functions."""

from __future__ import annotations

import importlib.util
from types import ModuleType

from ftcourse import paths


def load_script(name: str) -> ModuleType:
    """``scripts/<name>.py`` as a module (run as a library: its ``__main__`` block does not run)."""
    spec = importlib.util.spec_from_file_location(name, paths.project_root() / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
