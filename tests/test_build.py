"""`ftcourse build`: exercises generated from the masters, kept in sync, hand edits caught, notebooks linted."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from ftcourse import paths
from ftcourse.errors import CourseError
from ftcourse.tools.build import BEGIN, END, HIDDEN_TAG, build, exercise_notebook, is_hidden, make_exercise, masters, read_tasks, strip_solutions, task_of

FIXTURE = Path(__file__).parent / "fixtures" / "grading" / "ex00_tiny.ipynb"


def test_solution_blocks_become_placeholders_at_their_indent():
    source = f"x = 1\n{BEGIN}\ny = 2\n{END}\ndef f():\n    {BEGIN}\n    return 3\n    {END}\nprint(x)"
    assert strip_solutions(source) == ("x = 1\n# YOUR CODE HERE\nraise NotImplementedError()\ndef f():\n"
                                       "    # YOUR CODE HERE\n    raise NotImplementedError()\nprint(x)")


@pytest.mark.parametrize("source, message", [
    (f"{BEGIN}\nx = 1", "without a matching"),
    (f"x = 1\n{END}", "without a '### BEGIN"),
    (f"{BEGIN}\n{BEGIN}\n{END}", "inside another"),
])
def test_unbalanced_markers_name_the_cell(source, message):
    with pytest.raises(CourseError, match=message):
        strip_solutions(source, "master.ipynb, cell 4")


def _broken_master(tmp_path: Path, change) -> Path:
    nb = nbformat.read(FIXTURE, as_version=4)
    change(nb)
    path = tmp_path / "ex00_broken.ipynb"
    nbformat.write(nb, path)
    return path


def _cell(nb, task, hidden):
    return next(c for c in nb.cells if task_of(c) == task and is_hidden(c) == hidden)


@pytest.mark.parametrize("change, message", [
    (lambda nb: nb.cells.remove(_cell(nb, "task2", True)), r"tasks without hidden tests: \['task2'\]"),
    (lambda nb: _cell(nb, "task2", True).metadata["ftcourse"].pop("points"), "positive points"),
    (lambda nb: _cell(nb, "task2", False).metadata.pop("ftcourse"), "without metadata.ftcourse.task"),
    (lambda nb: setattr(_cell(nb, "task3", True), "source", "check_ex99_task1.verify(x)"), "check_ex99_task1"),
    (lambda nb: nb.cells.append(nbformat.v4.new_code_cell("pass", metadata={"tags": [HIDDEN_TAG], "ftcourse": {"task": "task1", "points": 1}})),
     "a second hidden-test cell"),
])
def test_a_malformed_master_is_an_error_that_names_the_problem(tmp_path, change, message):
    with pytest.raises(CourseError, match=message):
        read_tasks(_broken_master(tmp_path, change))


def test_exercise_has_placeholders_no_hidden_tests_no_outputs_and_keeps_task_ids():
    exercise = exercise_notebook(FIXTURE)
    master = nbformat.read(FIXTURE, as_version=4)
    assert not any(is_hidden(c) for c in exercise.cells)
    assert all(BEGIN not in c.source and "classification_metrics(predictions" not in c.source for c in exercise.cells)
    assert [task_of(c) for c in exercise.cells if task_of(c)] == ["task1", "task2", "task3"]
    assert len(exercise.cells) == len(master.cells) - 3
    assert sum("raise NotImplementedError()" in c.source for c in exercise.cells) == 3


def test_every_master_generates_a_deterministic_exercise_with_3_to_6_tasks():
    found = masters()
    names = [m.name[:4] for m in found]
    assert names == sorted(names) and {f"ex0{n}" for n in range(1, 8)} <= set(names)  # later lessons add theirs
    for master in found:
        assert 3 <= len(read_tasks(master)) <= 6, master
        target = paths.project_root() / "exercises" / master.name
        assert make_exercise(master, target) == make_exercise(master, target)


def test_the_repository_is_in_sync():
    """What CI runs: `ftcourse build --check` on this checkout."""
    assert build(check=True) == []


def _ftcourse(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "FTCOURSE_ROOT": str(root)}
    return subprocess.run([sys.executable, "-m", "ftcourse.tools.cli", *args], capture_output=True, text=True, env=env, cwd=root)


def test_check_fails_on_stale_or_hand_edited_exercises_and_build_repairs_them(tmp_path):
    root = tmp_path / "course"
    (root / "solutions").mkdir(parents=True)
    (root / "notebooks").mkdir()
    shutil.copy(paths.project_root() / "pyproject.toml", root)
    master = root / "solutions" / masters()[0].name
    shutil.copy(masters()[0], master)
    exercise = root / "exercises" / master.name

    missing = _ftcourse(root, "build", "--check")
    assert missing.returncode == 1 and f"{exercise}: missing (run `ftcourse build`)" in missing.stderr
    assert _ftcourse(root, "build").returncode == 0 and exercise.is_file()
    assert _ftcourse(root, "build", "--check").returncode == 0

    nb = nbformat.read(exercise, as_version=4)
    nb.cells[-1].source += "\nA hand edit."
    nbformat.write(nb, exercise)
    edited = _ftcourse(root, "build", "--check")
    assert edited.returncode == 1 and f"{exercise}: edited by hand" in edited.stderr and "ftcourse build" in edited.stderr
    refused = _ftcourse(root, "build")
    assert refused.returncode == 1 and "A hand edit." in exercise.read_text()  # not overwritten silently
    assert _ftcourse(root, "build", "--overwrite").returncode == 0 and "A hand edit." not in exercise.read_text()

    nb = nbformat.read(master, as_version=4)
    nb.cells[-1].source += "\nA new closing remark."
    nbformat.write(nb, master)
    stale = _ftcourse(root, "build", "--check")
    assert stale.returncode == 1 and f"{exercise}: out of date with its master (run `ftcourse build`)" in stale.stderr
    assert _ftcourse(root, "build").returncode == 0 and "A new closing remark." in exercise.read_text()

    master.unlink()
    orphan = _ftcourse(root, "build", "--check")
    assert orphan.returncode == 1 and "no master" in orphan.stderr
    assert _ftcourse(root, "build").returncode == 0 and not exercise.exists()
