"""Sweeps: every grid point runs, failures don't stop the sweep, an interrupted sweep resumes, one CSV and one chart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import matplotlib.image
import nbformat
import pandas as pd
import psutil
import pytest

from ftcourse.course.sweep import STATE, grid_points, load_grid, point_name, run_sweep
from ftcourse.errors import CourseError

PARAMETERS = '''
profile = "auto"
a = 1
b = "x"
log = ""  # file that gets one line per execution
block = ""  # while this file exists, the points with a 2 fail
hang = ""  # while this file exists, the point (1, "yy") hangs
'''
BODY = '''
import json, os, time
from ftcourse.course.experiments import record_metrics

with open(log, "a") as fh:
    fh.write(json.dumps([a, b]) + "\\n")
if block and os.path.exists(block) and a == 2:
    raise RuntimeError("blocked")
if hang and os.path.exists(hang) and (a, b) == (1, "yy"):
    time.sleep(600)
record_metrics(score=10 * a + len(b), a_squared=a * a)
'''
GRID = {"a": [1, 2], "b": ["x", "yy"]}


@pytest.fixture
def notebook(tmp_path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(PARAMETERS.strip(), metadata={"tags": ["parameters"]}), nbformat.v4.new_code_cell(BODY.strip())]
    path = tmp_path / "experiment.ipynb"
    nbformat.write(nb, path)
    return path


def executions(log: Path) -> list[list]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_grid_points_and_names():
    assert grid_points(GRID) == [{"a": 1, "b": "x"}, {"a": 1, "b": "yy"}, {"a": 2, "b": "x"}, {"a": 2, "b": "yy"}]
    assert point_name({"peft_method": "lora", "lora_r": 8, "learning_rate": 0.001}) == "peft_method=lora__lora_r=8__learning_rate=0.001"
    with pytest.raises(CourseError, match="needs a non-empty list"):
        grid_points({"a": []})


def test_grid_file_reads_scientific_notation_and_single_values(tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text("learning_rate: [1e-3, 5e-4]\nlora_r: 8\n")
    assert load_grid(grid) == {"learning_rate": [0.001, 0.0005], "lora_r": [8]}


def test_sweep_continues_past_failures_resumes_and_writes_one_csv_and_chart(notebook, tmp_path):
    log, block, out = tmp_path / "log.jsonl", tmp_path / "block", tmp_path / "sweep"
    block.touch()
    fixed = {"log": str(log), "block": str(block)}
    grid = {"a": [1, 2], "b": ["x"]}  # one point that succeeds, one that fails while `block` exists: three kernels in all
    first = run_sweep(notebook, grid, profile="smoke", output_dir=out, params=fixed, progress=False)
    assert first.ran == ["a=1__b=x"] and first.failed == ["a=2__b=x"]
    assert len(executions(log)) == 2
    assert first.table.loc[1, "error"] == "RuntimeError: blocked"

    block.unlink()
    second = run_sweep(notebook, grid, profile="smoke", output_dir=out, params=fixed, progress=False)
    assert second.skipped == ["a=1__b=x"] and second.ran == ["a=2__b=x"] and not second.failed
    assert executions(log)[2:] == [[2, "x"]]

    table = pd.read_csv(out / "results.csv")
    assert list(table["point"]) == ["a=1__b=x", "a=2__b=x"]
    assert list(table["status"]) == ["ok"] * 2 and list(table["score"]) == [11, 21] and list(table["a_squared"]) == [1, 4]
    assert {"a", "b", "seconds", "peak_rss_mb"} <= set(table.columns)
    image = matplotlib.image.imread(out / "results.png")
    assert image.shape[0] > 100 and image.shape[1] > 400  # two panels: score and a_squared
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["points", "results.csv", "results.png", STATE]
    assert (out / "points" / "a=2__b=x" / "experiment.metrics.json").is_file()

    third = run_sweep(notebook, grid, profile="smoke", output_dir=out, params=fixed, progress=False)
    assert len(third.skipped) == 2 and not third.ran and len(executions(log)) == 3


def test_killed_sweep_resumes_with_only_the_missing_points(notebook, tmp_path):
    log, hang, out, grid = tmp_path / "log.jsonl", tmp_path / "hang", tmp_path / "sweep", tmp_path / "grid.yaml"
    hang.touch()
    grid.write_text("b: [x, yy]\n")
    command = [sys.executable, "-m", "ftcourse.tools.cli", "sweep", str(notebook), "--grid", str(grid), "--profile", "smoke",
               "--output-dir", str(out), "-p", "log", str(log), "-p", "hang", str(hang)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 90
        while executions(log) != [[1, "x"], [1, "yy"]]:  # the second point has started (and hangs)
            assert time.time() < deadline and proc.poll() is None, "the sweep did not reach its second point"
            time.sleep(0.2)
    finally:
        family = [proc.pid, *(c.pid for c in psutil.Process(proc.pid).children(recursive=True))]
        for pid in family:  # the sweep and its kernel (which runs in a session of its own)
            os.kill(pid, signal.SIGKILL)
        proc.wait()
    state = json.loads((out / STATE).read_text())["points"]
    assert state["b=x"]["status"] == "ok" and state["b=yy"]["status"] == "running"
    assert not (out / "results.csv").exists()

    hang.unlink()
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert executions(log)[2:] == [[1, "yy"]]  # only the missing point ran; the finished one did not run again
    assert "1 ran, 1 skipped" in done.stdout
    assert list(pd.read_csv(out / "results.csv")["status"]) == ["ok", "ok"]


def test_bad_grids_fail_before_any_point_runs(notebook, tmp_path):
    log = tmp_path / "log.jsonl"
    with pytest.raises(CourseError, match="did you mean 'b'"):
        run_sweep(notebook, {"a": [1, 2], "bb": ["x"]}, profile="smoke", output_dir=tmp_path / "s1", params={"log": str(log)})
    with pytest.raises(CourseError, match="parameter 'a' must be int"):
        run_sweep(notebook, {"a": [1, "two"]}, profile="smoke", output_dir=tmp_path / "s2", params={"log": str(log)})
    with pytest.raises(CourseError, match="share a folder name"):
        run_sweep(notebook, {"a": [1, 1]}, profile="smoke", output_dir=tmp_path / "s3", params={"log": str(log)})
    with pytest.raises(CourseError, match="both swept and fixed"):
        run_sweep(notebook, {"a": [1]}, profile="smoke", output_dir=tmp_path / "s3", params={"a": 2})
    assert not log.exists()


def test_sweep_never_writes_into_a_folder_that_is_not_a_sweep(notebook, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    with pytest.raises(CourseError, match="not a sweep folder"):
        run_sweep(notebook, {"a": [1]}, profile="smoke", output_dir=folder, params={"log": str(tmp_path / "log")})
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == ["notes.txt"]


def test_a_code_change_reruns_the_points_and_a_prose_change_does_not(notebook, tmp_path):
    log, out = tmp_path / "log.jsonl", tmp_path / "sweep"
    sweep = dict(grid={"a": [1]}, profile="smoke", output_dir=out, params={"log": str(log)}, progress=False)
    assert run_sweep(notebook, **sweep).ran == ["a=1"]
    nb = nbformat.read(notebook, as_version=4)
    nb.cells.append(nbformat.v4.new_markdown_cell("A note."))
    nbformat.write(nb, notebook)
    assert run_sweep(notebook, **sweep).skipped == ["a=1"]
    nb.cells[1].source += "\nrecord_metrics(extra=1)"
    nbformat.write(nb, notebook)
    rerun = run_sweep(notebook, **sweep)
    assert rerun.ran == ["a=1"] and rerun.table.loc[0, "extra"] == 1 and len(executions(log)) == 2
