"""Notebook hygiene for every notebook in notebooks/ and solutions/, and the CI's papermill → nbval pipeline."""

from __future__ import annotations

import shutil
import subprocess
import sys

import nbformat
import pytest

from ftcourse import paths
from ftcourse.notebooks import find_notebooks, lint_notebook, run_notebook, stamp_notebook

ROOT = paths.project_root()
NOTEBOOKS = find_notebooks([d for d in (ROOT / "notebooks", ROOT / "solutions") if d.is_dir()])
SANITIZE = ROOT / "tests" / "nbval_sanitize.cfg"


def test_the_course_has_notebooks():
    assert ROOT / "notebooks" / "00_setup.ipynb" in NOTEBOOKS


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_notebook_is_committed_clean(notebook):
    """No outputs, exactly one readable ``parameters`` cell that sets ``profile``, current badge and setup cell."""
    assert lint_notebook(notebook) == []


def test_every_notebook_is_listed_in_the_readme():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [rel for rel in (nb.relative_to(ROOT).as_posix() for nb in NOTEBOOKS) if f"({rel})" not in readme]
    assert not missing, f"link these notebooks from README.md, e.g. | [name]({missing[0]}) | … |: {missing}"


def test_notebook_file_names_are_unique():
    """Executed copies go flat into runs/<profile>/, so two notebooks must not share a file name."""
    names = [nb.name for nb in NOTEBOOKS]
    assert len(names) == len(set(names))


def test_lint_catches_outputs_parameter_cells_and_unreadable_parameters(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "project_root", lambda: tmp_path)
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    path = tmp_path / "notebooks" / "01_x.ipynb"
    path.parent.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell("# 01 · X"),
                nbformat.v4.new_code_cell('profile = "auto"\nlora_r = 8', metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("print(lora_r)")]
    nbformat.write(nb, path)
    stamp_notebook(path)
    assert lint_notebook(path) == []

    def broken(change) -> list[str]:
        copy = nbformat.read(path, as_version=4)
        change(copy)
        nbformat.write(copy, tmp_path / "notebooks" / "02_y.ipynb")
        return lint_notebook(tmp_path / "notebooks" / "02_y.ipynb")

    assert any("committed with outputs" in p for p in broken(lambda n: setattr(n.cells[-1], "execution_count", 3)))
    assert any("2 cells tagged 'parameters'" in p for p in broken(lambda n: n.cells[-1].metadata.update(tags=["parameters"])))
    assert any("cannot read the parameter(s) lora_r" in p
               for p in broken(lambda n: setattr(n.cells[2], "source", 'profile = "auto"\nlora_r = 8  # alpha = 2 * r')))
    assert any("does not set `profile`" in p for p in broken(lambda n: setattr(n.cells[2], "source", "lora_r = 8")))


CHECKED = '''# NBVAL_CHECK_OUTPUT
import os, random, sys, time
random.seed(seed)
print("draw:", random.random())
print("cwd:", os.getcwd())
print(f"took {time.perf_counter() % 7:.2f} s at 0x{id(object()):x}")
print(random.random(), file=sys.stderr)
'''


def nbval(*notebooks) -> subprocess.CompletedProcess:
    """The CI's validation command (see the Makefile's test-notebooks)."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env", "--nbval-sanitize-with", str(SANITIZE),
         "-p", "no:cacheprovider", *map(str, notebooks)], cwd=ROOT, capture_output=True, text=True)


def test_nbval_replays_the_executed_copy_and_fails_when_a_checked_output_changes(tmp_path):
    source = tmp_path / "src" / "check.ipynb"
    source.parent.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell('profile = "auto"\nseed = 1', metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell(CHECKED), nbformat.v4.new_code_cell("import time\nprint(time.time())")]
    nbformat.write(nb, source)
    out = paths.runs_dir() / f"test-nbval-{tmp_path.name}"  # under the project, where its conftest.py applies
    try:
        run = run_notebook(source, out, "smoke", {"seed": 3}, progress=False)
        assert run.status == "ok", run.error
        executed = out / "check.ipynb"
        # same injected seed, same working folder, timings/addresses sanitized, stderr and unchecked cells ignored
        passed = nbval(executed)
        assert passed.returncode == 0, passed.stdout[-3000:]

        tampered = nbformat.read(executed, as_version=4)
        checked = next(c for c in tampered.cells if c.source.startswith("# NBVAL_CHECK_OUTPUT"))
        stdout = next(o for o in checked.outputs if o.get("name") == "stdout")
        stdout.text = stdout.text.replace("draw: 0.", "draw: 1.")
        nbformat.write(tampered, executed)
        failed = nbval(executed)
        assert failed.returncode == 1 and "Cell outputs differ" in failed.stdout
    finally:
        shutil.rmtree(out, ignore_errors=True)
