"""The setup cell's Colab install (scripts/colab_install.py) without Colab.

- which pins it passes to pip (unit test);
- every package it may pull has a wheel for Colab's CPython 3.13 on manylinux x86_64, or is pure Python published
  only as source (:data:`SOURCE_ONLY`) (asks the registry for metadata only, with ``pip install --dry-run``;
  skipped when the registry is unreachable);
- in a fresh virtual environment that already holds another torch version and ipywidgets 7.7.1 (as Colab does),
  the install keeps both, installs the course and the embedded model, lesson 00 runs under ``smoke`` and the
  playground's tests pass with ipywidgets 7.7 (needs the registry for the course's other dependencies).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from script_modules import load_script

from ftcourse import paths

colab_install = load_script("colab_install")
MODEL_PACKAGE, missing_pins, normalized = colab_install.MODEL_PACKAGE, colab_install.missing_pins, colab_install.normalized

ROOT = paths.project_root()
COLAB_PYTHON = "3.13"
#: Colab's environment markers: CPython 3.13 on x86_64 Linux.
COLAB_MARKERS = {"python_version": COLAB_PYTHON, "python_full_version": f"{COLAB_PYTHON}.0", "sys_platform": "linux",
                 "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
                 "implementation_name": "cpython", "platform_python_implementation": "CPython"}
#: manylinux_2_17 (manylinux2014) up to Colab's glibc 2.35 (Ubuntu 22.04).
MANYLINUX = [f"manylinux_2_{minor}_x86_64" for minor in range(17, 36)]
#: Never pulled on Colab, so neither are its dependencies: Colab's own CUDA build stays (the last test shows it).
KEPT = {"torch"}
#: Pure-Python packages published only as source: pip builds them on Colab in seconds (no compiler needed).
SOURCE_ONLY = {"rouge-score", "sqlitedict", "word2number"}  # the last two: lm-eval's
#: What a stand-in "Colab" torch reports: another version than the course's pin.
COLAB_TORCH = "2.11.0"
NETWORK_ERRORS = ("NewConnectionError", "Failed to establish a new connection", "Temporary failure in name resolution",
                  "Network is unreachable", "ConnectionError", "Max retries exceeded", "Read timed out")


def pins() -> dict[str, str]:
    """constraints.txt as {normalized name: version}."""
    lines = (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines()
    return {normalized(name): version for name, version in (line.split("#")[0].strip().split("==") for line in lines if "==" in line)}


def colab_closure() -> set[str]:
    """Normalized names of every distribution the Colab install needs: the course with its course and quantization extras
    (pyproject.toml), their dependencies under Colab's markers (from the installed metadata), and the model wheel;
    torch and its dependencies left out (:data:`KEPT`)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    todo = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["course"] + project["optional-dependencies"]["quantization"]]
    found = {normalized(MODEL_PACKAGE)}
    while todo:
        requirement = todo.pop()
        name = normalized(requirement.name)
        if name in found or name in KEPT or (requirement.marker and not requirement.marker.evaluate({**COLAB_MARKERS, "extra": ""})):
            continue
        found.add(name)
        todo += [Requirement(r) for r in importlib.metadata.requires(requirement.name) or []]
    return found


def run_or_skip(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    """Run a command that needs the package registry; skip the test when the registry cannot be reached."""
    done = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if done.returncode != 0 and any(sign in done.stdout + done.stderr for sign in NETWORK_ERRORS):
        pytest.skip(f"the package registry is unreachable: {done.stderr.strip().splitlines()[-1]}")
    assert done.returncode == 0, f"{' '.join(map(str, command[:6]))} … failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def test_only_missing_packages_get_pins():
    constraints = "# comment\ntorch==2.13.0\nipywidgets==8.1.9\nTyping_Extensions==4.16.0  # note\ntrl==1.16.0\n"
    installed = {"torch", "ipywidgets", "typing-extensions"}  # what Colab already has (normalized names)
    assert missing_pins(constraints, installed) == ["trl==1.16.0"]
    assert missing_pins(constraints, set()) == ["torch==2.13.0", "ipywidgets==8.1.9", "Typing_Extensions==4.16.0", "trl==1.16.0"]


def test_every_colab_package_has_a_python_313_wheel(tmp_path):
    pinned, needed = pins(), colab_closure()
    unpinned = sorted(needed - set(pinned))
    assert not unpinned, f"pin these in constraints.txt (the Colab install gives them the tested versions): {unpinned}"
    command = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--no-deps", "--only-binary=:all:",
               *[f"--no-binary={name}" for name in sorted(SOURCE_ONLY & needed)],
               "--python-version", COLAB_PYTHON, *[arg for p in MANYLINUX for arg in ("--platform", p)],
               "--target", str(tmp_path / "target"), "--report", str(tmp_path / "report.json"), "-q",
               *sorted(f"{name}=={pinned[name]}" for name in needed)]
    run_or_skip(command)
    report = json.loads((tmp_path / "report.json").read_text())
    resolved = {normalized(item["metadata"]["name"]) for item in report["install"]}
    assert resolved == needed
    sources = {normalized(item["metadata"]["name"]) for item in report["install"] if not item["download_info"]["url"].endswith(".whl")}
    assert sources <= SOURCE_ONLY, f"no CPython {COLAB_PYTHON} manylinux wheel: {sorted(sources - SOURCE_ONLY)}"


@pytest.fixture
def colab_like(tmp_path):
    """A fresh venv holding this environment's torch under another version number, and ipywidgets 7.7.1.

    The torch files are this environment's (reached through a .pth file, not copied); its metadata says
    :data:`COLAB_TORCH`, so any attempt of the install to replace or "fix" that torch shows.
    """
    import torch

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.check_output([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], text=True).strip())
    preinstalled = tmp_path / "colab-dist-packages"
    preinstalled.mkdir()
    dist = importlib.metadata.distribution("torch")
    site_of_torch = Path(torch.__file__).parent.parent
    for top in {f.parts[0] for f in dist.files or []} - {".."}:  # torch, torchgen, functorch (not the dist-info)
        if not top.endswith(".dist-info") and (site_of_torch / top).exists():
            (preinstalled / top).symlink_to(site_of_torch / top)
    info = preinstalled / f"torch-{COLAB_TORCH}.dist-info"
    info.mkdir()
    metadata = dist.read_text("METADATA").replace(f"Version: {dist.version}", f"Version: {COLAB_TORCH}", 1)
    (info / "METADATA").write_text(metadata, encoding="utf-8")
    (info / "INSTALLER").write_text("colab\n", encoding="utf-8")
    (site / "colab.pth").write_text(f"{preinstalled}\n", encoding="utf-8")
    run_or_skip([python, "-m", "pip", "install", "-q", "ipywidgets==7.7.1"])
    return python


def test_colab_install_keeps_torch_and_ipywidgets_and_lesson_00_runs(colab_like, tmp_path):
    python, course = colab_like, tmp_path / "course"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True, text=True)
    if files.returncode != 0:
        pytest.skip("the course is not a git checkout (the test copies the tracked files)")
    for rel in filter(None, files.stdout.split("\0")):
        if (ROOT / rel).is_file() and not (ROOT / rel).is_symlink():  # models/base_models/* links are not copied: Colab converts the model
            (course / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, course / rel)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "FTCOURSE_ROOT", "VIRTUAL_ENV")}
    run_or_skip([python, "scripts/colab_install.py"], cwd=course, env=env)  # what the setup cell runs on Colab

    def installed(name: str) -> str:
        return subprocess.check_output([python, "-c", f"import importlib.metadata as m; print(m.version({name!r}))"], text=True, env=env).strip()

    assert installed("torch") == COLAB_TORCH
    assert installed("ipywidgets") == "7.7.1"
    assert installed(MODEL_PACKAGE) == pins()[normalized(MODEL_PACKAGE)]
    assert installed("trl") == pins()["trl"]  # missing before: installed at the tested version
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    lesson = subprocess.run([python, "-m", "ftcourse.tools.cli", "run", "notebooks/00_setup.ipynb", "--profile", "smoke",
                             "--output-dir", str(tmp_path / "runs")], cwd=course, env=env, capture_output=True, text=True)
    assert lesson.returncode == 0, lesson.stdout[-3000:] + lesson.stderr[-3000:]
    assert json.loads((tmp_path / "runs" / "summary.json").read_text())["runs"][0]["status"] == "ok"
    run_or_skip([python, "-m", "pip", "install", "-q", f"pytest=={pins()['pytest']}"], env=env)
    widgets = subprocess.run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_widgets.py"],
                             cwd=course, env=env, capture_output=True, text=True)
    assert widgets.returncode == 0, f"the playground fails with ipywidgets 7.7:\n{widgets.stdout[-3000:]}"
