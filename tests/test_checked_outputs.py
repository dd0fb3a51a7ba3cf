"""The checked outputs on a kind of machine other than the recording's (tests/checked_outputs.py): only the cells whose
output is the same on both numeric paths are compared, a real change still fails, and comparing nothing fails."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import checked_outputs
import nbformat
import pytest

from ftcourse import paths

BF16_KIND = {"machine": "x86_64", "cpu_capability": "AVX512", "device": "cpu", "bf16": True, "omp_threads": "1"}
FP32_KIND = {**BF16_KIND, "cpu_capability": "AVX2", "bf16": False}
#: What a lesson's two checked cells print on the bf16 path: a seeded loss (path-dependent) and a dataset size.
BF16_OUTPUTS = ["loss after 4 steps: 2.5153", "32 training examples, 10 labels"]


def write_run(folder, outputs: list[str], name: str = "lesson.ipynb"):
    """An executed copy (as papermill leaves it) whose checked cells printed ``outputs``, one cell each."""
    folder.mkdir(exist_ok=True)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import torch")]
    nb.cells += [nbformat.v4.new_code_cell(f"# NBVAL_CHECK_OUTPUT\nprint(result_{i})",
                                           outputs=[nbformat.v4.new_output("stream", name="stdout", text=text + "\n")])
                 for i, text in enumerate(outputs)]
    nbformat.write(nb, folder / name)
    return folder


@pytest.fixture
def recorded(tmp_path, monkeypatch):
    """A recording made on the bf16 kind, then classified with a run of the fp32 kind whose loss differs; this machine
    is then of the fp32 kind. Returns a function that makes a run folder from its checked cells' outputs."""
    monkeypatch.setattr(checked_outputs, "reference_path", lambda: tmp_path / "checked_outputs.json")
    runs = iter(range(100))

    def run(outputs):
        return write_run(tmp_path / f"run{next(runs)}", outputs)

    monkeypatch.setattr(checked_outputs, "machine_kind", lambda: BF16_KIND)
    checked_outputs.record(run(BF16_OUTPUTS))
    monkeypatch.setattr(checked_outputs, "machine_kind", lambda: FP32_KIND)
    checked_outputs.classify(run(["loss after 4 steps: 2.5161", BF16_OUTPUTS[1]]))
    return run


def marks() -> list[str | None]:
    reference = checked_outputs.load_reference()
    return [c.get("numeric_path") for c in reference["notebooks"]["lesson.ipynb"]]


def test_classify_marks_the_cells_that_differ_on_the_other_numeric_path(recorded):
    assert marks() == ["dependent", "independent"]
    assert checked_outputs.load_reference()["machine_kind"] == BF16_KIND  # classifying does not change the recording


def test_another_kind_passes_when_only_a_path_dependent_cell_differs(recorded, capsys):
    assert checked_outputs.check(recorded(["loss after 4 steps: 2.4998", BF16_OUTPUTS[1]])) == 0
    out = capsys.readouterr().out
    assert "Comparing the 1 of 2 checked cells whose output is the same on both paths" in out
    assert "not comparing 1 path-dependent ones" in out and "not compared in lesson.ipynb: checked cells 1 (path-dependent)" in out
    assert "1 checked cells in 1 notebooks match" in out


@pytest.mark.parametrize("changed", ["32 training examples, 11 labels", "32 validation examples, 10 labels", ""])
def test_another_kind_fails_on_a_real_change_in_a_path_independent_cell(recorded, capsys, changed):
    assert checked_outputs.check(recorded(["loss after 4 steps: 2.4998", changed])) == 1
    assert "lesson.ipynb, checked cell 2 of 2" in capsys.readouterr().err


def test_another_kind_fails_when_the_checked_cells_changed_since_the_recording(recorded, capsys):
    assert checked_outputs.check(recorded(BF16_OUTPUTS + ["a third checked cell"])) == 1
    assert "its checked cells changed since the outputs were recorded" in capsys.readouterr().err


def test_comparing_no_cell_fails(recorded, tmp_path, capsys):
    reference = checked_outputs.load_reference()
    reference["notebooks"]["lesson.ipynb"][1]["numeric_path"] = "dependent"
    checked_outputs.reference_path().write_text(json.dumps(reference))
    assert checked_outputs.check(recorded(BF16_OUTPUTS)) == 1
    assert "no checked cell to compare on this kind of machine" in capsys.readouterr().err


def test_the_recordings_kind_compares_every_cell(recorded, monkeypatch, capsys):
    monkeypatch.setattr(checked_outputs, "machine_kind", lambda: BF16_KIND)
    assert checked_outputs.check(recorded(BF16_OUTPUTS)) == 0
    assert "2 checked cells in 1 notebooks match" in capsys.readouterr().out
    assert checked_outputs.check(recorded(["loss after 4 steps: 2.5161", BF16_OUTPUTS[1]])) == 1  # its own seeded loss
    with pytest.raises(SystemExit, match="the recording's kind"):
        checked_outputs.classify(recorded(BF16_OUTPUTS))


def test_recording_again_keeps_the_marks_of_unchanged_cells_only(recorded, monkeypatch, capsys):
    monkeypatch.setattr(checked_outputs, "machine_kind", lambda: BF16_KIND)
    checked_outputs.record(recorded(["loss after 4 steps: 2.5153", "32 training examples, 12 labels"]))
    assert marks() == ["dependent", None]
    monkeypatch.setattr(checked_outputs, "machine_kind", lambda: FP32_KIND)
    capsys.readouterr()
    assert checked_outputs.check(recorded(["loss after 4 steps: 2.4998", "32 training examples, 12 labels"])) == 1  # none left
    assert "checked cells 1 (path-dependent); 2 (not classified since recorded)" in capsys.readouterr().out
    checked_outputs.classify(recorded(["loss after 4 steps: 2.5153", "32 training examples, 12 labels"]))
    assert marks() == ["dependent", "independent"]  # once path-dependent, it stays so (until its output is recorded anew)


def test_the_committed_recording_lets_another_kind_compare_its_path_independent_cells():
    """tests/checked_outputs.json marks its cells; another kind of machine has cells to compare (else: classify)."""
    cells = [c for cs in checked_outputs.load_reference()["notebooks"].values() for c in cs]
    assert {c.get("numeric_path") for c in cells} <= {"independent", "dependent", None}
    assert any(c.get("numeric_path") == "independent" for c in cells)


def test_the_emulated_kind_is_another_kind_on_the_fp32_path():
    """FTCOURSE_CPU_BF16=0 with torch's AVX2 kernels: another machine kind, and the course's fp32 path (no autocast)."""
    code = ("import sys; sys.path.insert(0, 'tests'); import json, checked_outputs; from ftcourse.device import device_policy; "
            "print(json.dumps([checked_outputs.machine_kind(), str(device_policy().autocast_dtype)]))")
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "avx2", "FTCOURSE_CPU_BF16": "0", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", code], cwd=paths.project_root(), env=env, capture_output=True, text=True, timeout=300)
    kind, autocast = json.loads(done.stdout.splitlines()[-1])
    assert (kind["cpu_capability"], kind["bf16"], autocast) == ("AVX2", False, "None")
