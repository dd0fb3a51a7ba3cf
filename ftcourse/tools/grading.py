"""``ftcourse grade``: score submitted notebooks with the master's hidden tests.

Each submission runs in a fresh kernel, in its own temporary course folder (``FTCOURSE_ROOT``)
that holds copies of ``data/``, ``configs/`` and the base models (copies, not links: a submission
that writes into its base model folder changes only its own copy), with
secrets removed from the environment, the given profile injected, a time limit for the whole
notebook and a cap on the output kept. The student's own hidden-test cells are dropped; the
master's are inserted after the student's task cells (matched by ``metadata.ftcourse.task``),
each first reloading the checks (core, each exercise's module, then the package) and re-importing
the check functions so that redefining them has no effect. A task
scores its points when its hidden-test cell ran without error and the student's task cell
did not raise; execution continues past errors, so every task is scored.
"""

from __future__ import annotations

import copy
import csv
import io
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat

from ftcourse import paths
from ftcourse.course.experiments import kernel_name, validate_parameters
from ftcourse.errors import CourseError
from ftcourse.fileio import ensure_writable_dir, write_output
from ftcourse.tools.build import CHECK_NAME, Task, find_master, is_hidden, read_tasks, task_of
from ftcourse.tools.class_report import CHECKER_FAULT, summary_paths, write_class_summary
from ftcourse.tools.conventions import strip_outputs

__all__ = [
    "CHECK_MODULES", "csv_text", "DROPPED_ENV", "feedback_dir", "feedback_markdown", "Grade", "grade_folder",
    "grade_notebook", "GRADER_FAULT_NOTE", "hidden_cell", "KEPT_ENV", "kernel_env", "make_workspace", "MESSAGE_CAP",
    "MISSING_CELL", "NOT_ANSWERED", "OUTPUT_CAP", "PRELUDE", "prepare", "score", "SECRET_PATTERN", "STATUS_NOTES",
    "submissions", "TaskScore",
]

#: Environment variables never passed to a submission's kernel (besides SECRET_PATTERN matches).
DROPPED_ENV = ("FTCOURSE_METRICS_FILE", "JPY_SESSION_NAME")
KEPT_ENV = ("TOKENIZERS_PARALLELISM",)  # settings whose names only look like secrets
SECRET_PATTERN = re.compile(r"TOKEN|KEY|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH", re.IGNORECASE)
#: Characters of cell output kept per submission; the rest is dropped (a notebook may print megabytes).
OUTPUT_CAP = 200_000
MESSAGE_CAP = 600
NOT_ANSWERED = "not answered: the task still raises NotImplementedError (replace it with your code)"
MISSING_CELL = "passed, but the task's cell (metadata.ftcourse.task) was missing: its test ran in task order"
#: The checks' modules in the order a hidden test reloads them: core, then each exercise's module (each imports core),
#: then the package, which only re-exports them: reloading the package alone would re-bind the exercise modules' old objects.
CHECK_MODULES = ("ftcourse.course.checks.core", *sorted(f"ftcourse.course.checks.{p.stem}" for p in (Path(__file__).parent.parent / "course" / "checks").glob("ex*.py")),
                 "ftcourse.course.checks")
PRELUDE = ("import importlib as _ftc_importlib  # the grader re-binds the checks: core, each exercise's module, then the package\n"
           f"for _ftc_module in {CHECK_MODULES!r}:\n"
           "    _ftc_importlib.reload(_ftc_importlib.import_module(_ftc_module))\n")


@dataclass
class TaskScore:
    task: str
    points: float
    max_points: float
    message: str = ""  # why points were lost; empty when the task passed


@dataclass
class Grade:
    """One submission's result."""

    student: str
    notebook: str
    tasks: list[TaskScore]
    status: str  # "ok", "crashed", "timed out", "unreadable", "wrong assignment" or "grader error: ..."
    seconds: float
    executed: Any = field(default=None, repr=False)  # the executed notebook (outputs capped)

    @property
    def grader_fault(self) -> bool:
        """True when the grader itself failed: the submission has no score yet (not a 0)."""
        return self.status.startswith("grader error")

    @property
    def total(self) -> float:
        return sum(t.points for t in self.tasks)

    @property
    def max_points(self) -> float:
        return sum(t.max_points for t in self.tasks)

    @property
    def percent(self) -> float:
        return round(100 * self.total / self.max_points, 1) if self.max_points else 0.0


# ---------------------------------------------------------------- preparing a submission


def kernel_env(root: Path, profile: str) -> dict[str, str]:
    """The grader's environment without secrets, pointed at the submission's own course folder."""
    env = {k: v for k, v in os.environ.items() if k in KEPT_ENV or (k not in DROPPED_ENV and not SECRET_PATTERN.search(k))}
    env.update(FTCOURSE_ROOT=str(root), FTCOURSE_PROFILE=profile, HF_TOKEN_PATH=str(root / "no-hf-token"))
    return env


def make_workspace(folder: Path) -> None:
    """Copy in what a submission needs: ``data/``, ``configs/`` and ``models/base_models/``.

    Everything is copied (symbolic links followed): a hard link or a link to the folder would let a
    notebook that writes into its base model (``save_pretrained`` there, appending to a config)
    change the course's own files for every later student, and file permissions do not stop a
    kernel running as root. The embedded model's copy costs about 1 s and 517 MB of disk per
    submission, freed when it is graded.
    """
    root = paths.project_root()
    for source, target in ((root / "data", folder / "data"), (root / "configs", folder / "configs"),
                           (paths.base_models_dir(), folder / "models" / "base_models")):
        if source.is_dir():
            shutil.copytree(source, target)


def hidden_cell(task: Task) -> nbformat.NotebookNode:
    """The master's hidden-test cell, prefixed with a fresh import of the checks it calls."""
    cell = copy.deepcopy(task.test)
    names = sorted(set(CHECK_NAME.findall(cell.source)))
    rebind = f"from ftcourse.course.checks import {', '.join(names)}\n" if names else ""
    cell.source = PRELUDE + rebind + cell.source
    cell.outputs, cell.execution_count = [], None
    return cell


def _tagged(cell: nbformat.NotebookNode, tag: str) -> bool:
    tags = cell.metadata.get("tags")
    return isinstance(tags, list) and tag in tags


def prepare(submission: nbformat.NotebookNode, tasks: list[Task], params: dict[str, Any]) -> tuple[nbformat.NotebookNode, dict[str, int], dict[str, int]]:
    """The notebook to run: student cells (their hidden tests dropped), parameters injected, master tests inserted.

    Returns it with each task's test-cell index and student-cell index (absent when the
    student's cell with that task id is gone: its test then runs after the previous task's).
    """
    from papermill.translators import translate_parameters

    nb = copy.deepcopy(submission)
    nb.cells = [c for c in nb.cells if not is_hidden(c) and not _tagged(c, "injected-parameters")]
    strip_outputs(nb)
    injected = nbformat.v4.new_code_cell(translate_parameters(kernel_name(), "python", params, "Parameters (injected by the grader)"),
                                         metadata={"tags": ["injected-parameters"]})
    nb.cells.insert(next((i + 1 for i, c in enumerate(nb.cells) if _tagged(c, "parameters")), 0), injected)
    own = {task_of(c): i for i, c in enumerate(nb.cells) if c.cell_type == "code" and task_of(c)}
    keys: dict[str, tuple[int, int, int]] = {}
    for order, task in enumerate(tasks):
        if task.task in own:
            keys[task.task] = (own[task.task], 1, order)
        else:
            earlier = [keys[t.task] for t in tasks[:order] if t.task in own]
            later = [own[t.task] for t in tasks[order + 1 :] if t.task in own]
            keys[task.task] = (earlier[-1][0], 1, order) if earlier else ((later[0], 0, order) if later else (len(nb.cells), 0, order))
    cells: list[nbformat.NotebookNode] = []
    tests: dict[str, int] = {}
    students: dict[str, int] = {}
    placed = sorted(tasks, key=lambda t: keys[t.task])

    def add_tests(index: int, phase: int) -> None:
        for task in placed:
            if keys[task.task][:2] == (index, phase):
                tests[task.task] = len(cells)
                cells.append(hidden_cell(task))

    for index, cell in enumerate(nb.cells):
        add_tests(index, 0)
        if task_of(cell) and own.get(task_of(cell)) == index:
            students[task_of(cell)] = len(cells)
        cells.append(cell)
        add_tests(index, 1)
    add_tests(len(nb.cells), 0)
    nb.cells = cells
    return nb, tests, students


# ---------------------------------------------------------------- running


def _client_class():
    from nbclient import NotebookClient

    class GradingClient(NotebookClient):
        """Keeps at most ``OUTPUT_CAP`` characters of output; records every cell's execute reply."""

        def __init__(self, nb, **kwargs):
            super().__init__(nb, on_cell_executed=self._record, **kwargs)
            self.kept, self.replies, self.truncated = 0, {}, set()

        def _record(self, cell, cell_index, execute_reply):
            self.replies[cell_index] = execute_reply["content"]

        def output(self, outs, msg, display_id, cell_index):
            size = len(str(msg["content"]))
            if msg["msg_type"] != "error" and self.kept + size > OUTPUT_CAP:
                if cell_index not in self.truncated:
                    self.truncated.add(cell_index)
                    outs.append(nbformat.v4.new_output("stream", name="stderr", text="[output truncated by the grader]\n"))
                return None
            self.kept += size
            return super().output(outs, msg, display_id, cell_index)

    return GradingClient


def _short(text: str) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(text)).strip()
    return text if len(text) <= MESSAGE_CAP else text[:MESSAGE_CAP] + " …"


def _failure(reply: dict[str, Any]) -> str:
    name, value = reply.get("ename", "Error"), _short(reply.get("evalue", ""))
    if name == "CheckerError":
        return f"{CHECKER_FAULT} (not a verdict on your answer; your instructor will look at it): {value}"
    return value if name == "CheckFailed" else f"{name}: {value}"


def score(tasks: list[Task], tests: dict[str, int], students: dict[str, int], replies: dict[int, dict], stop: str | None) -> list[TaskScore]:
    """Points per task from the execute replies of its test cell and of the student's task cell."""
    scores = []
    for task in tasks:
        own = replies.get(students.get(task.task, -1))
        test = replies.get(tests[task.task])
        if own is not None and own.get("status") == "error":
            message = NOT_ANSWERED if own.get("ename") == "NotImplementedError" else f"your task cell raised {_failure(own)}"
        elif test is None:
            message = f"not reached: {stop or 'the notebook stopped before this task'}"
        elif test.get("status") != "ok":
            message = NOT_ANSWERED if test.get("ename") == "NotImplementedError" else _failure(test)
        else:
            scores.append(TaskScore(task.task, task.points, task.points, "" if task.task in students else MISSING_CELL))
            continue
        scores.append(TaskScore(task.task, 0, task.points, message))
    return scores


def _wrong_assignment(submission: nbformat.NotebookNode, master: Path) -> str | None:
    """Why the submission is another assignment's notebook (from ``metadata.ftcourse.generated_from``), or None."""
    source = submission.metadata.get("ftcourse", {}).get("generated_from")
    if source and source != master.name:
        return (f"this notebook was generated from {source}, not from {master.name}: "
                f"submit your copy of exercises/{master.name}")
    return None


def grade_notebook(path: Path, master: Path, student: str, profile: str = "smoke", timeout: int = 900,
                   params: dict[str, Any] | None = None) -> Grade:
    """Grade one submission in a fresh kernel and its own temporary course folder; never raises for the student's faults.

    When the grader itself fails (status ``grader error: ...``) the points are not a score: see :attr:`Grade.grader_fault`.
    """
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    tasks = read_tasks(master)
    start = time.monotonic()

    def zero(status: str, why: str) -> Grade:
        return Grade(student, str(path), [TaskScore(t.task, 0, t.points, why) for t in tasks], status, round(time.monotonic() - start, 1))

    try:
        submission = nbformat.read(path, as_version=4)
        nb, tests, students = prepare(submission, tasks, {"profile": profile, **(params or {})})
    except Exception as exc:  # not JSON, not a notebook, ...
        return zero("unreadable", f"the submission could not be read as a notebook ({type(exc).__name__}: {_short(exc)})")
    if wrong := _wrong_assignment(submission, master):
        return zero("wrong assignment", wrong)
    folder = Path(tempfile.mkdtemp(prefix="ftcourse-grade-"))
    stop, status, client = None, "ok", None
    try:
        make_workspace(folder)
        deadline = time.monotonic() + timeout
        client = _client_class()(nb, kernel_name=kernel_name(), allow_errors=True, interrupt_on_timeout=False,
                                 timeout_func=lambda cell: max(1, int(deadline - time.monotonic())),
                                 resources={"metadata": {"path": str(folder)}})
        client.execute(env=kernel_env(folder, profile), transport_encryption="auto")
    except CellTimeoutError:
        status, stop = "timed out", f"the notebook ran past the grader's limit of {timeout} s"
    except DeadKernelError:
        status, stop = "crashed", "the kernel died (the notebook crashed Python, exited, or ran out of memory)"
    except Exception as exc:
        status, stop = f"grader error: {type(exc).__name__}", f"the grader failed, not your notebook ({type(exc).__name__}: {_short(exc)}); it will be graded again"
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    replies = client.replies if client is not None else {}
    return Grade(student, str(path), score(tasks, tests, students, replies, stop), status,
                 round(time.monotonic() - start, 1), nb)


# ---------------------------------------------------------------- a batch


def submissions(folder: Path, assignment: str) -> dict[str, Path]:
    """Student name -> notebook: ``NAME.ipynb`` at the top, or ``NAME/<assignment>*.ipynb`` one folder down."""
    if not folder.is_dir():
        raise CourseError(f"Submissions folder {folder} does not exist.", "pass the folder that holds the students' notebooks.")
    found: dict[str, list[Path]] = {}
    for nb in sorted(folder.rglob("*.ipynb")):
        rel = nb.relative_to(folder)
        if ".ipynb_checkpoints" in rel.parts or len(rel.parts) > 2:
            continue
        if len(rel.parts) == 2 and not nb.name.startswith(assignment):
            continue
        found.setdefault(rel.parts[0] if len(rel.parts) == 2 else nb.stem, []).append(nb)
    clashes = {s: p for s, p in found.items() if len(p) > 1}
    if clashes:
        listing = "; ".join(f"{s}: {', '.join(map(str, p))}" for s, p in clashes.items())
        raise CourseError(f"Several submissions for one student ({listing}).", "keep one notebook per student.")
    if not found:
        raise CourseError(f"No submissions in {folder}.", f"put NAME.ipynb files there, or NAME/{assignment}*.ipynb folders.")
    return {s: p[0] for s, p in found.items()}


def csv_text(grades: list[Grade], tasks: list[Task]) -> str:
    """One row per student: points per task, total, maximum, percent and status."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["student", *(t.task for t in tasks), "total", "max_points", "percent", "status"])
    for g in grades:
        if g.grader_fault:  # no score: blank cells, not zeros
            writer.writerow([g.student, *("" for _ in g.tasks), "", _num(g.max_points), "", g.status])
        else:
            writer.writerow([g.student, *(_num(t.points) for t in g.tasks), _num(g.total), _num(g.max_points), g.percent, g.status])
    return buffer.getvalue()


def _num(value: float) -> str:
    return f"{value:g}"


#: The feedback's note per status (a grader error has its own).
STATUS_NOTES = {
    "crashed": "Your notebook crashed (the kernel died), so the tasks after the crash were not graded.",
    "timed out": "Your notebook ran past the grader's time limit; the tasks it did not reach score 0.",
    "unreadable": "Your submission could not be read as a notebook (.ipynb file); nothing was graded.",
    "wrong assignment": "You submitted the notebook of another assignment; nothing was graded.",
}
GRADER_FAULT_NOTE = ("The grader failed while running your notebook. This is not your mistake and not your score: "
                     "your notebook will be graded again.")


def feedback_markdown(grade: Grade, assignment: str) -> str:
    """The student's feedback: total, then per task the points and what went wrong (with the check's hint)."""
    lines = [f"# {assignment} — feedback for {grade.student}", ""]
    if grade.grader_fault:
        return "\n".join([*lines, f"**Not graded yet.** {GRADER_FAULT_NOTE}", "", f"({grade.status})", ""])
    lines += [f"**Total: {_num(grade.total)} / {_num(grade.max_points)} points ({grade.percent}%)**", ""]
    if grade.status in STATUS_NOTES:
        lines += [f"Note: {STATUS_NOTES[grade.status]}", ""]
    for t in grade.tasks:
        mark = "✓" if t.points == t.max_points else "✗"
        lines += [f"## {t.task}: {_num(t.points)} / {_num(t.max_points)} {mark}", "", t.message or "Passed.", ""]
    return "\n".join(lines)


def _safe_name(student: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", student)


def feedback_dir(out: Path) -> Path:
    return out.with_name(out.stem + "_feedback")


def grade_folder(folder: str | Path, assignment: str, out: str | Path, profile: str = "smoke", timeout: int = 900,
                 overwrite: bool = False, params: dict[str, Any] | None = None) -> list[Grade]:
    """Grade every submission in ``folder``; write ``out`` (CSV), ``<out>_feedback/<student>.md`` and the class summary."""
    master = find_master(assignment)
    tasks = read_tasks(master)
    assignment_id = master.name.split("_")[0]
    params = validate_parameters(master, {"profile": profile, **(params or {})})
    profile = params.pop("profile")
    found = submissions(Path(folder), assignment_id)
    out = Path(out)
    if out.is_dir():
        raise CourseError(f"out {out} is a folder; the grades go to a CSV file.", "pass a file path such as grades/ex02.csv.")
    feedback = {s: feedback_dir(out) / f"{_safe_name(s)}.md" for s in found}
    existing = [p for p in [out, *feedback.values(), *summary_paths(out)] if p.exists()]
    if existing and not overwrite:
        raise CourseError(f"{', '.join(map(str, existing[:3]))} already exist(s); not overwriting grades.",
                          "pass overwrite=True (--overwrite) to replace them, or choose another out (--out).")
    ensure_writable_dir(out.parent, "out's folder")  # before the first submission runs
    ensure_writable_dir(feedback_dir(out), "the feedback folder")
    grades = []
    for n, (student, path) in enumerate(found.items(), start=1):
        print(f"▶ [{n}/{len(found)}] {student}: {path}", flush=True)
        grade = grade_notebook(path, master, student, profile, timeout, params)
        shown = "not graded (grader fault)" if grade.grader_fault else f"{_num(grade.total)} / {_num(grade.max_points)} points ({grade.percent}%)"
        print(f"  {shown}, {grade.status}, {grade.seconds:.0f} s", flush=True)
        write_output(feedback[student], feedback_markdown(grade, assignment_id), overwrite=True)
        grades.append(grade)
    write_output(out, csv_text(grades, tasks), overwrite=True)
    write_class_summary(out, assignment_id, [g for g in grades if not g.grader_fault], tasks)  # no score is not a 0
    return grades
