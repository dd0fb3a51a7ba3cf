"""``ftcourse build``: generate ``exercises/`` from the master notebooks in ``solutions/``, keep every notebook stamped.

A master ``solutions/exNN_*.ipynb`` marks each task with ``metadata.ftcourse.task`` on the
student's cell, whose answer sits between ``### BEGIN SOLUTION`` and ``### END SOLUTION``,
and grades it in one cell tagged ``hidden-tests`` with ``metadata.ftcourse = {task, points}``.
The exercise is the master with each answer replaced by ``# YOUR CODE HERE`` +
``raise NotImplementedError()``, the hidden tests and ``# NBVAL_…`` markers removed and no outputs. It records a hash
of its cells, so that a hand-edited exercise is told apart from a stale one and never
overwritten silently.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import nbformat

from ftcourse import paths
from ftcourse.errors import CourseError
from ftcourse.fileio import atomic_write_text
from ftcourse.tools.conventions import lint_notebook, stamp, stamp_notebook
from ftcourse.tools.runner import find_notebooks

__all__ = [
    "BEGIN", "build", "CHECK_NAME", "END", "exercise_notebook", "exercise_path", "exercises_dir", "find_master",
    "HIDDEN_TAG", "is_hidden", "make_exercise", "masters", "NBVAL_MARK", "PLACEHOLDER", "read_tasks", "solutions_dir",
    "strip_solutions", "Task", "task_of",
]

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
HIDDEN_TAG = "hidden-tests"
PLACEHOLDER = ("# YOUR CODE HERE", "raise NotImplementedError()")
NBVAL_MARK = "# NBVAL_"
CHECK_NAME = re.compile(r"\bcheck_ex\w+")


def solutions_dir() -> Path:
    return paths.project_root() / "solutions"


def exercises_dir() -> Path:
    return paths.project_root() / "exercises"


def masters(folder: Path | None = None) -> list[Path]:
    """The master notebooks: ``solutions/exNN_*.ipynb``."""
    return sorted((folder or solutions_dir()).glob("ex[0-9][0-9]_*.ipynb"))


def find_master(assignment: str | Path) -> Path:
    """A master by id (``ex02``) or path."""
    path = Path(assignment)
    if path.suffix == ".ipynb":
        if not path.is_file():
            raise CourseError(f"Master notebook {path} does not exist.", "check the path, or pass an id such as ex02.")
        return path
    found = [m for m in masters() if m.name.startswith(f"{assignment}_")]
    if len(found) != 1:
        known = ", ".join(m.name.split("_")[0] for m in masters()) or "none"
        raise CourseError(f"No single master solutions/{assignment}_*.ipynb (found {len(found)}).",
                          f"pass one of: {known}, or the path of a master notebook.")
    return found[0]


# ---------------------------------------------------------------- reading a master


def task_of(cell: nbformat.NotebookNode) -> str | None:
    meta = cell.metadata.get("ftcourse")
    return meta.get("task") if isinstance(meta, dict) else None


def is_hidden(cell: nbformat.NotebookNode) -> bool:
    tags = cell.metadata.get("tags")
    return isinstance(tags, list) and HIDDEN_TAG in tags


@dataclass(frozen=True)
class Task:
    """One graded task of a master: its id, points and hidden-test cell."""

    task: str
    points: float
    test: nbformat.NotebookNode


def read_tasks(master: Path, nb: nbformat.NotebookNode | None = None) -> list[Task]:
    """The master's tasks in order, validated: every solution cell has a task with exactly one hidden test."""
    nb = nb if nb is not None else nbformat.read(master, as_version=4)
    from ftcourse.course import checks

    solved: list[str] = []
    tests: dict[str, Task] = {}
    for number, cell in enumerate(nb.cells, start=1):
        where = f"{master}, cell {number} (id {cell.get('id', '?')})"
        marked = BEGIN in cell.source or END in cell.source
        if marked and (cell.cell_type != "code" or is_hidden(cell)):
            raise CourseError(f"{where}: solution markers outside a student code cell.", "put BEGIN/END SOLUTION only in code cells that are not hidden tests.")
        if marked:
            strip_solutions(cell.source, where)  # validates the markers
            if not task_of(cell):
                raise CourseError(f"{where}: a solution cell without metadata.ftcourse.task.", 'add "ftcourse": {"task": "taskN"} to the cell metadata.')
            solved.append(task_of(cell))
        if not is_hidden(cell):
            continue
        meta = cell.metadata.get("ftcourse", {})
        points = meta.get("points")
        if not meta.get("task") or not isinstance(points, (int, float)) or isinstance(points, bool) or points <= 0:
            raise CourseError(f"{where}: a hidden-test cell needs metadata.ftcourse.task and positive points.",
                              'set "ftcourse": {"task": "taskN", "points": 1} in the cell metadata.')
        if meta["task"] in tests:
            raise CourseError(f"{where}: a second hidden-test cell for {meta['task']}.", "merge the hidden tests of a task into one cell.")
        unknown = sorted(n for n in set(CHECK_NAME.findall(cell.source)) if not hasattr(checks, n))
        if unknown:
            raise CourseError(f"{where}: uses {', '.join(unknown)}, which ftcourse.course.checks does not define.", "define the check in its exercise's module, ftcourse/checks/exNN.py, and list it in that module's __all__; or fix the name.")
        tests[meta["task"]] = Task(meta["task"], points, cell)
    missing = sorted(set(solved) - set(tests))
    orphans = sorted(set(tests) - set(solved))
    if missing or orphans:
        raise CourseError(f"{master}: tasks without hidden tests: {missing or 'none'}; hidden tests without a solution cell: {orphans or 'none'}.",
                          "give every task one solution cell and one hidden-test cell with the same metadata.ftcourse.task.")
    if not tests:
        raise CourseError(f"{master} has no tasks.", "mark solution cells with metadata.ftcourse.task and add hidden-test cells.")
    return sorted(tests.values(), key=lambda t: solved.index(t.task))


def strip_solutions(source: str, where: str = "cell") -> str:
    """Replace each BEGIN/END SOLUTION block by the placeholder, indented like its BEGIN line."""
    out: list[str] = []
    inside = False
    for line in source.splitlines():
        marker = line.strip()
        if marker == BEGIN:
            if inside:
                raise CourseError(f"{where}: '{BEGIN}' inside another solution block.", f"close the first block with '{END}'.")
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            out += [indent + p for p in PLACEHOLDER]
        elif marker == END:
            if not inside:
                raise CourseError(f"{where}: '{END}' without a '{BEGIN}' before it.", "pair every END with a BEGIN line.")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise CourseError(f"{where}: '{BEGIN}' without a matching '{END}'.", f"end the block with a line '{END}'.")
    return "\n".join(out)


# ---------------------------------------------------------------- generating an exercise


def exercise_path(master: Path, exercises: Path | None = None) -> Path:
    return (exercises or exercises_dir()) / master.name


def _cells_hash(nb: nbformat.NotebookNode) -> str:
    return hashlib.sha256(json.dumps(nb.cells, sort_keys=True).encode()).hexdigest()[:16]


def exercise_notebook(master: Path) -> nbformat.NotebookNode:
    """The master (validated) without its hidden tests and with every solution block replaced by the placeholder."""
    exercise = nbformat.read(master, as_version=4)
    read_tasks(master, exercise)
    exercise.cells = [c for c in exercise.cells if not is_hidden(c)]
    for number, cell in enumerate(exercise.cells, start=1):
        if cell.cell_type == "code" and BEGIN in cell.source:
            cell.source = strip_solutions(cell.source, f"{master}, cell {number}")
        if cell.cell_type == "code":  # nbval markers validate the solutions in CI; students need not see them
            cell.source = "\n".join(ln for ln in cell.source.splitlines() if not ln.startswith(NBVAL_MARK))
    return exercise


def make_exercise(master: Path, target: Path) -> str:
    """The exercise file's text generated from ``master`` for the path ``target``: stamped, outputs stripped, hashed."""
    exercise = exercise_notebook(master)
    stamp(exercise, target)
    exercise.metadata["ftcourse"] = {"generated_from": master.name, "cells_sha256": _cells_hash(exercise)}
    return nbformat.writes(exercise) + "\n"


def _hand_edited(path: Path) -> bool:
    """True when a generated exercise's cells no longer match the hash it was generated with."""
    nb = nbformat.read(path, as_version=4)
    return nb.metadata.get("ftcourse", {}).get("cells_sha256") != _cells_hash(nb)


def _edited_problem(path: Path, master: str) -> str:
    return (f"{path}: edited by hand (exercises/ is generated from solutions/{master}); put the change into the master, "
            "then run `ftcourse build --overwrite` to regenerate it")


# ---------------------------------------------------------------- build / check


def build(check: bool = False, overwrite: bool = False) -> list[str]:
    """Stamp every notebook under ``notebooks/`` and the masters, regenerate exercises; with ``check``, change nothing and return the problems.

    Without ``check``, a hand-edited exercise is only replaced with ``overwrite``; problems
    that remain (hand edits, lint) are returned.
    """
    root = paths.project_root()
    solutions, exercises = solutions_dir(), exercises_dir()
    lessons = paths.notebooks_dir()
    sources = [*(find_notebooks([lessons]) if lessons.is_dir() else []), *masters(solutions)]
    problems: list[str] = []
    if not check:
        changed = [nb for nb in sources if stamp_notebook(nb)]
        for nb in changed:
            print(f"stamped {nb.relative_to(root)}")
    expected = {exercise_path(m, exercises): make_exercise(m, exercise_path(m, exercises)) for m in masters(solutions)}
    for target, text in expected.items():
        current = target.read_text(encoding="utf-8") if target.exists() else None
        if current == text:
            continue
        edited = current is not None and _hand_edited(target)
        if check or (edited and not overwrite):
            problems.append(_edited_problem(target, target.name) if edited else
                            f"{target}: {'missing' if current is None else 'out of date with its master'} (run `ftcourse build`)")
            continue
        atomic_write_text(target, text)
        print(f"generated {target.relative_to(root)}")
    for orphan in sorted(set(exercises.glob("*.ipynb")) - set(expected)):
        if check or (_hand_edited(orphan) and not overwrite):
            problems.append(f"{orphan}: no master solutions/{orphan.name} (delete it, or run `ftcourse build` to remove it)")
        else:
            orphan.unlink()
            print(f"removed {orphan.relative_to(root)} (its master is gone)")
    for nb in [*sources, *sorted(exercises.glob("*.ipynb"))]:
        problems += lint_notebook(nb)
    return problems
