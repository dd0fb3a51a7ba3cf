"""Notebook hygiene for every notebook in notebooks/ and solutions/, and the CI's check of the checked cells' outputs."""

from __future__ import annotations

import json
import shutil

import checked_outputs
import nbformat
import pytest

from ftcourse import paths
from ftcourse.course.experiments import run_notebook
from ftcourse.tools.conventions import lint_notebook, stamp_notebook
from ftcourse.tools.runner import find_notebooks

ROOT = paths.project_root()
NOTEBOOKS = find_notebooks([d for d in (ROOT / "notebooks", ROOT / "solutions") if d.is_dir()])


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


def test_checked_outputs_of_a_papermill_run_are_recorded_and_compared(tmp_path, monkeypatch, capsys):
    """The CI's comparison (``make test-notebooks``) on a real papermill run: the recording passes a faithful copy (timings,
    addresses, stderr and unchecked cells aside) and fails one whose checked output changed. Other kinds of machine:
    tests/test_checked_outputs.py."""
    source = tmp_path / "src" / "check.ipynb"
    source.parent.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell('profile = "auto"\nseed = 1', metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell(CHECKED), nbformat.v4.new_code_cell("import time\nprint(time.time())")]
    nbformat.write(nb, source)
    monkeypatch.setattr(checked_outputs, "reference_path", lambda: tmp_path / "checked_outputs.json")
    out = tmp_path / "runs"
    run = run_notebook(source, out, "smoke", {"seed": 3}, progress=False)
    assert run.status == "ok", run.error
    executed = out / "check.ipynb"
    checked_outputs.record(out)
    recorded = json.loads((tmp_path / "checked_outputs.json").read_text())
    assert recorded["machine_kind"] == checked_outputs.machine_kind()
    assert "draw: 0." in recorded["notebooks"]["check.ipynb"][0]["output"] and "TIME at 0xADDRESS" in recorded["notebooks"]["check.ipynb"][0]["output"]
    assert checked_outputs.check(out) == 0  # same machine: compared with the recording

    tampered = nbformat.read(executed, as_version=4)
    checked = next(c for c in tampered.cells if c.source.startswith("# NBVAL_CHECK_OUTPUT"))
    stdout = next(o for o in checked.outputs if o.get("name") == "stdout")
    stdout.text = stdout.text.replace("draw: 0.", "draw: 1.")
    nbformat.write(tampered, executed)
    capsys.readouterr()
    assert checked_outputs.check(out) == 1  # the recording: this copy differs from it
    assert "checked cell 1 of 1" in capsys.readouterr().err


def test_the_recorded_checked_outputs_belong_to_the_notebooks_checked_cells():
    """tests/checked_outputs.json is recorded for the current checked cells of every notebook (else: make record-outputs)."""
    recorded = json.loads(checked_outputs.reference_path().read_text(encoding="utf-8"))["notebooks"]
    current = {nb.relative_to(ROOT).as_posix(): [checked_outputs.source_hash(c.source) for c in checked_outputs.checked_sources(nbformat.read(nb, as_version=4))]
               for nb in NOTEBOOKS}
    assert {name: [c["source_sha256"] for c in cells] for name, cells in recorded.items()} == {n: h for n, h in current.items() if h}


def test_checked_output_differences_name_the_notebook_and_the_cell():
    cell = {"source_sha256": "a", "output": "[stdout]\n1\n"}
    assert checked_outputs.differences({"x.ipynb": [cell]}, {"x.ipynb": [cell]}) == []
    changed = checked_outputs.differences({"x.ipynb": [cell]}, {"x.ipynb": [{**cell, "output": "[stdout]\n2\n"}]})
    assert len(changed) == 1 and changed[0].startswith("x.ipynb, checked cell 1 of 1") and "--- this run\n[stdout]\n2" in changed[0]
    assert "its checked cells changed" in checked_outputs.differences({"x.ipynb": [cell]}, {"x.ipynb": [{**cell, "source_sha256": "b"}]})[0]
    assert checked_outputs.differences({}, {"new.ipynb": [cell]}) == ["new.ipynb: has checked cells but no recorded outputs"]
    assert checked_outputs.differences({"old.ipynb": [cell]}, {}) == ["old.ipynb: recorded, but not in this run"]


def test_a_checked_cells_output_leaves_out_stderr_images_and_widgets_and_joins_stdout_chunks():
    cell = nbformat.v4.new_code_cell("# NBVAL_CHECK_OUTPUT\nprint(1)", outputs=[
        nbformat.v4.new_output("stream", name="stdout", text="a 1.5 s\n"), nbformat.v4.new_output("stream", name="stderr", text="warn\n"),
        nbformat.v4.new_output("stream", name="stdout", text="b\n"),
        nbformat.v4.new_output("display_data", data={"image/png": "x", "text/plain": "<Figure>"}),
        nbformat.v4.new_output("display_data", data={"application/vnd.jupyter.widget-view+json": {}, "text/plain": "w"}),
        nbformat.v4.new_output("execute_result", data={"text/plain": "42"}, execution_count=1)])
    assert checked_outputs.is_checked(cell.source) and not checked_outputs.is_checked("print('# NBVAL_CHECK_OUTPUT')")
    assert checked_outputs.cell_output(cell, checked_outputs.sanitizers()) == "[stdout]\na TIME\nb\n[text/plain]\n42\n"
