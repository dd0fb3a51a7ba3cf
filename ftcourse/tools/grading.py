"""``ftcourse grade``: score submitted notebooks with the master's hidden tests, each submission in a sandbox.

Each submission runs in a fresh sandbox (:mod:`ftcourse.tools.sandbox`): a kernel and the notebook runner
(:mod:`ftcourse.tools.submission_run`) on a prepared copy of the notebook, with the course's data, configs and base
models read-only, a workspace that is its only writable folder, an explicit minimal environment (none of the grader's
variables), resource limits, no network, and every process it starts ended when its grading ends. The student's own
hidden-test cells are dropped; the master's are inserted after the student's task cells (matched by
``metadata.ftcourse.task``).

A task is graded on one of two paths, named in the feedback and the class summary:

* **by the grader** (tasks converted to the grading protocol, ``ftcourse.course.checks.core``): the master's hidden-test
  cell only *collects* plain data in the sandbox (the values the task defined, the outputs of the student's functions on
  the hidden inputs); this process reads that data from the workspace (no link followed, size capped) and the *judge*
  decides, with the expected answers, which never enter the sandbox, and with the submitted source for "write it
  yourself" rules. A hostile notebook can only report data it could have computed.
* **in the kernel** (checks not yet converted): the hidden-test cell's own success or failure, as the sandboxed runner
  reports it. The sandbox keeps such a notebook from harming the machine or other students, but it can fake its verdict.

A task scores its points when its test passes and the student's task cell did not raise; execution continues past
errors, so every task is scored. ``SIGTERM`` and ``SIGINT`` stop the batch: the running sandbox is killed and the grades
so far are written.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import dataclasses
import io
import json
import os
import re
import shutil
import signal
import stat
import sys
import tempfile
import threading
import time
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat

from ftcourse import paths
from ftcourse.course import checks
from ftcourse.course.checks import CheckerError, CheckFailed, GradedCheck
from ftcourse.course.checks.core import GRADING_DIR_ENV, INPUTS_FILE, Case, collected_path, read_inside
from ftcourse.course.experiments import kernel_name, validate_parameters
from ftcourse.errors import CourseError
from ftcourse.fileio import ensure_writable_dir, write_output
from ftcourse.profiles import get_profile
from ftcourse.tools import sandbox as isolation
from ftcourse.tools import submission_run as runner
from ftcourse.tools.build import CHECK_NAME, Task, find_master, is_hidden, read_tasks, solutions_dir, task_of
from ftcourse.tools.class_report import CHECKER_FAULT, summary_paths, write_class_summary
from ftcourse.tools.conventions import strip_outputs

__all__ = [
    "CHECK_MODULES", "csv_text", "GRACE", "LIMITS", "feedback_dir", "feedback_markdown", "Grade", "grade_folder", "grade_notebook",
    "GRADED_BY", "GRADER_FAULT_NOTE", "grading_case", "GradingStopped", "hidden_cases", "hidden_cell", "kernel_env",
    "make_sandbox", "make_workspace", "MESSAGE_CAP", "MISSING_CELL", "NOT_ANSWERED", "PASSED_ENV", "PRELUDE", "prepare",
    "protocol_check", "read_submission", "score", "STATUS_NOTES", "submissions", "TaskScore",
]

#: The only variables of the grader's environment a submission gets (thread counts and locale); the rest is set explicitly.
PASSED_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TOKENIZERS_PARALLELISM", "LANG", "LC_ALL", "TZ")
MESSAGE_CAP = 600
NOT_ANSWERED = "not answered: the task still raises NotImplementedError (replace it with your code)"
MISSING_CELL = "passed, but the task's cell (metadata.ftcourse.task) was missing: its test ran in task order"
#: Seconds the sandbox gets beyond the notebook's limit (kernel start and shutdown) before it is killed.
GRACE = 120
#: What one submission may use besides time (``seconds`` is set from the notebook's limit).
LIMITS = isolation.Limits()
#: Bytes read back from a workspace at most: a submission file, the runner's replies and notebook, one task's collected data.
SUBMISSION_CAP, REPLIES_CAP, EXECUTED_CAP, COLLECTED_CAP = 50 * 2**20, 5 * 2**20, 50 * 2**20, 5 * 2**20
#: Which path graded a task (see the module's docstring), as the feedback and the summary say it.
GRADED_BY = {"grader": "judged by the grader from the data your notebook produced",
             "kernel": "checked inside your notebook's kernel (a check not yet converted to the grading protocol)"}
#: The checks' modules in the order a hidden test reloads them: core, then each exercise's module (each imports core),
#: then the package, which only re-exports them: reloading the package alone would re-bind the exercise modules' old objects.
CHECK_MODULES = ("ftcourse.course.checks.core", *sorted(f"ftcourse.course.checks.{p.stem}" for p in (Path(__file__).parent.parent / "course" / "checks").glob("ex*.py")),
                 "ftcourse.course.checks")
PRELUDE = ("import importlib as _ftc_importlib  # the grader re-binds the checks: core, each exercise's module, then the package\n"
           f"for _ftc_module in {CHECK_MODULES!r}:\n"
           "    _ftc_importlib.reload(_ftc_importlib.import_module(_ftc_module))\n")
_COLLECT_CALL = re.compile(r"\s*(check_ex\d+_task\d+)\.collect\(.*\)\s*", re.DOTALL)


@dataclass
class TaskScore:
    task: str
    points: float
    max_points: float
    message: str = ""  # why points were lost; empty when the task passed
    graded_by: str = "kernel"  # a key of GRADED_BY


@dataclass
class Grade:
    """One submission's result."""

    student: str
    notebook: str
    tasks: list[TaskScore]
    status: str  # "ok", "crashed", "timed out", "unreadable", "refused", "wrong assignment" or "grader error: ..."
    seconds: float
    executed: Any = field(default=None, repr=False)  # the executed notebook as the sandbox returned it (outputs capped)

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


class GradingStopped(BaseException):
    """``ftcourse grade`` was stopped by a signal (SIGTERM, SIGINT); ``grades`` holds the submissions graded before."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum, self.grades = signum, []


# ---------------------------------------------------------------- the master's side: converted checks and hidden cases


def protocol_check(task: Task) -> GradedCheck | None:
    """The task's check when its hidden-test cell is a grading-protocol call ``check_exNN_taskK.collect(...)``, else None."""
    match = _COLLECT_CALL.fullmatch(task.test.source)
    check = getattr(checks, match.group(1), None) if match else None
    return check if isinstance(check, GradedCheck) else None


def hidden_cases(exercise: str) -> dict[str, dict]:
    """The hidden inputs and expected answers of exercise ``exNN``'s converted checks (``solutions/hidden/exNN.json``):
    check name -> ``{"inputs", "expected"}``; empty when the file is absent."""
    path = solutions_dir() / "hidden" / f"{exercise}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def grading_case(check: GradedCheck) -> dict:
    """The case the grader judges ``check`` on: its hidden case (``"hidden": True``), or its practice case when it has none."""
    hidden = hidden_cases(check.__name__.split("_")[1]).get(check.__name__)
    return {**hidden, "hidden": True} if hidden else {**check.practice, "hidden": False}


# ---------------------------------------------------------------- preparing a submission


def read_submission(path: Path) -> nbformat.NotebookNode:
    """The submitted notebook: a regular file, read without following a link (OSError otherwise), at most SUBMISSION_CAP bytes."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise IsADirectoryError(f"{path} is not a regular file")
        data = fh.read(SUBMISSION_CAP + 1)
    if len(data) > SUBMISSION_CAP:
        raise ValueError(f"larger than {SUBMISSION_CAP // 2**20} MB")
    return nbformat.reads(data.decode("utf-8"), as_version=4)


def kernel_env(root: str, profile: str, package: str) -> dict[str, str]:
    """The submission's whole environment: a few settings of the grader's (PASSED_ENV), the rest explicit; ``root`` is
    the workspace and ``package`` the folder that holds ``ftcourse`` as the submission sees them."""
    env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
    env.update(PATH=f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin", HOME=f"{root}/.home", TMPDIR=f"{root}/.tmp",
               PYTHONPATH=package, PYTHONNOUSERSITE="1", PYTHONDONTWRITEBYTECODE="1", MPLBACKEND="Agg",
               FTCOURSE_ROOT=root, FTCOURSE_PROFILE=profile, HF_HOME=f"{root}/.home/.cache/huggingface",
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1", **{GRADING_DIR_ENV: f"{root}/.grading"})
    return env


def _course_sources() -> dict[Path, str]:
    """What a submission reads of the course, host path -> path in the workspace: data/, configs/, each base model."""
    root, base = paths.project_root(), paths.base_models_dir()
    sources = {(root / "data").resolve(): "data", (root / "configs").resolve(): "configs"}
    if base.is_dir():
        sources.update({p.resolve(): f"models/base_models/{p.name}" for p in sorted(base.iterdir()) if not p.name.startswith(".")})
    return {source: target for source, target in sources.items() if source.exists()}


def make_sandbox(trusted: bool = False) -> isolation.Sandbox:
    """The sandbox submissions run in; with ``trusted``, none (a loud warning). Raises CourseError when none can be made."""
    mounts = {source: f"{isolation.INSIDE}/{target}" for source, target in _course_sources().items()}
    if trusted:
        print("⚠ --trusted: the submissions run NOT SANDBOXED, as your user, with access to your files and network. "
              "Grade only notebooks you trust.", file=sys.stderr, flush=True)
        return isolation.Sandbox(mounts, trusted=True)
    if why := isolation.unavailable():
        raise CourseError(f"Cannot sandbox the submissions: {why}.",
                          f"install bubblewrap: {isolation.INSTALL}. Only for notebooks you trust: pass --trusted (unsandboxed).")
    return isolation.Sandbox(mounts)


def make_workspace(folder: Path, sandbox: isolation.Sandbox) -> None:
    """Lay out a submission's workspace: its writable folders, and (trusted, unsandboxed) copies of the course's files.

    Sandboxed, the course's data, configs and base models are mounted read-only instead: nothing is copied.
    """
    sandbox.prepare(folder, [folder, *(folder / name for name in (".grading/out", ".grading/collected", ".home", ".tmp", "models/fine_tuned",
                                                          "models/checkpoints", "models/base_models", "runs", "data", "configs"))])
    if sandbox.trusted:  # copies (links followed): a notebook that writes into them changes only its own
        for source, target in _course_sources().items():
            if source.is_dir():
                shutil.copytree(source, folder / target, dirs_exist_ok=True)
            else:
                shutil.copy2(source, folder / target)


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


# ---------------------------------------------------------------- running and reading back


def _wrong_assignment(submission: nbformat.NotebookNode, master: Path) -> str | None:
    """Why the submission is another assignment's notebook (from ``metadata.ftcourse.generated_from``), or None."""
    source = submission.metadata.get("ftcourse", {}).get("generated_from")
    if source and source != master.name:
        return (f"this notebook was generated from {source}, not from {master.name}: "
                f"submit your copy of exercises/{master.name}")
    return None


def _short(text: str) -> str:
    """A message for the feedback: terminal colours dropped, other control characters replaced, capped at MESSAGE_CAP."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(text))
    text = "".join(ch if ch in "\n\t" or unicodedata.category(ch)[0] != "C" else "?" for ch in text).strip()
    return text if len(text) <= MESSAGE_CAP else text[:MESSAGE_CAP] + " …"


def _failure(reply: dict[str, str]) -> str:
    name, value = reply.get("ename", "Error"), _short(reply.get("evalue", ""))
    if name == "CheckerError":
        return f"{CHECKER_FAULT} (not a verdict on your answer; your instructor will look at it): {value}"
    return value if name == "CheckFailed" else f"{name}: {value}"


def _replies(raw: bytes | None) -> dict[int, dict[str, str]]:
    """Cell index -> execute reply (status, ename, evalue) from the runner's replies.jsonl; malformed lines are skipped."""
    replies: dict[int, dict[str, str]] = {}
    for line in (raw or b"").decode("utf-8", "replace").splitlines():
        try:
            reply = json.loads(line)
            replies[int(reply["cell"])] = {k: str(reply.get(k, ""))[:2000] for k in ("status", "ename", "evalue")}
        except (ValueError, TypeError, KeyError, RecursionError):
            continue
    return replies


def _outcome(folder: Path, run: isolation.Run, timeout: int) -> tuple[str, str | None]:
    """(status, why the notebook stopped) from how the sandbox ended and what its runner wrote (untrusted, so only the
    runner's own statuses are taken from it)."""
    out = ".grading/out/"
    if run.first_line != runner.STARTED:
        raise RuntimeError(f"the sandbox did not start: {_short(run.errors) or f'exit status {run.returncode}'}")
    if run.timed_out:
        return "timed out", f"the notebook ran past the grader's limit of {timeout} s"
    try:
        reported = json.loads(read_inside(folder, out + runner.STATUS, 10_000) or b"")
        if reported.get("status") in ("ok", "timed out", "crashed"):
            return reported["status"], (_short(reported.get("stop", "")) or None) if reported["status"] != "ok" else None
    except (ValueError, AttributeError, RecursionError):
        pass
    return "crashed", f"the notebook stopped the grader's runner (exit status {run.returncode})"


def _executed(folder: Path) -> nbformat.NotebookNode | None:
    raw = read_inside(folder, f".grading/out/{runner.EXECUTED}", EXECUTED_CAP)
    try:
        return nbformat.reads(raw.decode("utf-8"), as_version=4) if raw else None
    except Exception:  # whatever the sandbox left there
        return None


def _verdict(check: GradedCheck, raw: bytes | None, case: Case, test: dict[str, str] | None, stop: str | None) -> str:
    """The judge's verdict on a task's collected data: "" when it passed, else why not."""
    if raw is None:
        if test is None:
            return f"not reached: {stop or 'the notebook stopped before this task'}"
        if test.get("status") != "ok":
            return NOT_ANSWERED if test.get("ename") == "NotImplementedError" else _failure(test)
        return "the hidden test collected nothing to judge: your notebook removed or replaced what it writes"
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return "the data collected for this task is unreadable: the check was changed or bypassed. Hint: run the task's cell and its check as given."
    try:
        check.judged(data, case)
    except CheckFailed as exc:
        return _short(str(exc))
    except NotImplementedError:
        return NOT_ANSWERED
    except CheckerError as exc:
        return f"{CHECKER_FAULT} (not a verdict on your answer; your instructor will look at it): {_short(str(exc))}"
    return ""


def score(tasks: list[Task], tests: dict[str, int], students: dict[str, int], replies: dict[int, dict], stop: str | None,
          verdicts: dict[str, str] | None = None) -> list[TaskScore]:
    """Points per task: from the judge's verdict (``verdicts``: task -> "" or why not; the converted tasks), else from the
    execute replies of its test cell; always 0 when the student's own task cell raised."""
    verdicts = verdicts or {}
    scores = []
    for task in tasks:
        own = replies.get(students.get(task.task, -1))
        test = replies.get(tests[task.task])
        by = "grader" if task.task in verdicts else "kernel"
        if own is not None and own.get("status") == "error":
            message = NOT_ANSWERED if own.get("ename") == "NotImplementedError" else f"your task cell raised {_failure(own)}"
        elif task.task in verdicts:
            message = verdicts[task.task]
        elif test is None:
            message = f"not reached: {stop or 'the notebook stopped before this task'}"
        elif test.get("status") != "ok":
            message = NOT_ANSWERED if test.get("ename") == "NotImplementedError" else _failure(test)
        else:
            message = ""
        passed = not message
        scores.append(TaskScore(task.task, task.points if passed else 0, task.points,
                                (MISSING_CELL if task.task not in students else "") if passed else message, by))
    return scores


def _run_in_sandbox(folder: Path, nb: nbformat.NotebookNode, inputs: dict, sandbox: isolation.Sandbox, profile: str,
                    timeout: int) -> isolation.Run:
    """Lay out the workspace, write the prepared notebook and the tasks' inputs, and run the notebook in the sandbox."""
    make_workspace(folder, sandbox)
    grading = folder / ".grading"
    nbformat.write(nb, grading / "notebook.ipynb")
    (grading / INPUTS_FILE).write_text(json.dumps(inputs), encoding="utf-8")
    root = sandbox.inside(folder)
    argv = [sys.executable, "-m", "ftcourse.tools.submission_run", "--notebook", f"{root}/.grading/notebook.ipynb",
            "--out", f"{root}/.grading/out", "--timeout", str(timeout), "--kernel", kernel_name(), "--cwd", root]
    return sandbox.run(argv, folder, kernel_env(root, profile, sandbox.package_path), dataclasses.replace(LIMITS, seconds=timeout + GRACE))


def grade_notebook(path: Path, master: Path, student: str, profile: str = "smoke", timeout: int = 900,
                   params: dict[str, Any] | None = None, sandbox: isolation.Sandbox | None = None) -> Grade:
    """Grade one submission in a fresh sandbox (``sandbox``; default :func:`make_sandbox`); never raises for the student's faults.

    When the grader itself fails (status ``grader error: ...``) the points are not a score: see :attr:`Grade.grader_fault`.
    """
    tasks = read_tasks(master)
    start = time.monotonic()

    def zero(status: str, why: str) -> Grade:
        return Grade(student, str(path), [TaskScore(t.task, 0, t.points, why) for t in tasks], status, round(time.monotonic() - start, 1))

    try:
        submission = read_submission(Path(path))
        nb, tests, students = prepare(submission, tasks, {"profile": profile, **(params or {})})
    except OSError as exc:
        if Path(path).is_symlink() or not Path(path).is_file():
            return zero("refused", f"refused: {_refusal(Path(path))}")
        return zero("unreadable", f"the submission could not be read ({type(exc).__name__})")
    except Exception as exc:  # not JSON, not a notebook, ...: the message names the place, never the file's content
        detail = f": {_short(exc)}" if isinstance(exc, (json.JSONDecodeError, UnicodeDecodeError)) else ""
        return zero("unreadable", f"the submission could not be read as a notebook ({type(exc).__name__}{detail})")
    if wrong := _wrong_assignment(submission, master):
        return zero("wrong assignment", wrong)
    sandbox = sandbox or make_sandbox()
    converted = {t.task: c for t in tasks if (c := protocol_check(t))}
    cases = {name: grading_case(c) for name, c in converted.items()}
    source = tuple(c.source for c in submission.cells if c.cell_type == "code" and not is_hidden(c))
    P = get_profile(profile, model=(params or {}).get("model_name"))
    folder = Path(tempfile.mkdtemp(prefix="ftcourse-grade-"))
    status, stop, replies, verdicts, executed = "ok", None, {}, {}, None
    try:
        run = _run_in_sandbox(folder, nb, {c.__name__: cases[t]["inputs"] for t, c in converted.items()}, sandbox, profile, timeout)
        status, stop = _outcome(folder, run, timeout)
        replies = _replies(read_inside(folder, f".grading/out/{runner.REPLIES}", REPLIES_CAP))
        executed = _executed(folder)
        for t, c in converted.items():  # judged while the workspace (files the notebook wrote) is still there
            case = Case(cases[t]["inputs"], cases[t].get("expected", {}), source, cases[t]["hidden"], P, workspace=folder)
            raw = read_inside(folder, str(collected_path(".grading", c.__name__)), COLLECTED_CAP)
            verdicts[t] = _verdict(c, raw, case, replies.get(tests[t]), stop)
    except Exception as exc:
        status, stop = f"grader error: {type(exc).__name__}", f"the grader failed, not your notebook ({type(exc).__name__}: {_short(exc)}); it will be graded again"
        replies, verdicts = {}, {}
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return Grade(student, str(path), score(tasks, tests, students, replies, stop, verdicts), status,
                 round(time.monotonic() - start, 1), executed)


# ---------------------------------------------------------------- a batch


def _printable(name: str) -> str:
    """``name`` with control and format characters (terminal escapes, bidi overrides, newlines) replaced by "?"."""
    return "".join("?" if unicodedata.category(ch)[0] == "C" else ch for ch in name)


def _csv_safe(name: str) -> str:
    """A student name a spreadsheet shows as text: printable, and never starting like a formula (= + - @ tab CR)."""
    name = _printable(name)
    return "'" + name if name[:1] in ("=", "+", "-", "@", "\t", "\r") else name


def _refusal(path: Path) -> str:
    kind = "a symbolic link" if path.is_symlink() else "not a regular file"
    return f"{path.name}{'/' if path.is_dir() else ''} is {kind}; only files inside the submissions folder are graded"


def submissions(folder: Path, assignment: str) -> tuple[dict[str, Path], dict[str, Path]]:
    """``(found, refused)``, student name -> path: the notebooks to grade (``NAME.ipynb`` at the top, any case of the
    extension, or ``NAME/<assignment>*.ipynb`` one folder down), and the candidates refused because they are links or
    not regular files (only regular files inside the folder are graded)."""
    if not folder.is_dir():
        raise CourseError(f"Submissions folder {folder} does not exist.", "pass the folder that holds the students' notebooks.")
    found: dict[str, list[Path]] = {}
    refused: dict[str, Path] = {}

    def consider(entry: os.DirEntry, student: str) -> None:
        if entry.is_file(follow_symlinks=False):
            found.setdefault(student, []).append(Path(entry.path))
        else:
            refused[student] = Path(entry.path)

    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.name.startswith("."):
            continue
        if entry.name.lower().endswith(".ipynb"):
            consider(entry, entry.name[: -len(".ipynb")])
        elif entry.is_symlink() and entry.is_dir():
            refused[entry.name] = Path(entry.path)
        elif entry.is_dir(follow_symlinks=False):
            for child in sorted(os.scandir(entry.path), key=lambda e: e.name):
                if child.name.lower().endswith(".ipynb") and child.name.lower().startswith(assignment.lower()):
                    consider(child, entry.name)
    clashes = {s: p for s, p in found.items() if len(p) > 1}
    if clashes:
        listing = "; ".join(f"{s}: {', '.join(map(str, p))}" for s, p in clashes.items())
        raise CourseError(f"Several submissions for one student ({listing}).", "keep one notebook per student.")
    if not found and not refused:
        raise CourseError(f"No submissions in {folder}.", f"put NAME.ipynb files there, or NAME/{assignment}*.ipynb folders.")
    return {s: p[0] for s, p in found.items()}, refused


def csv_text(grades: list[Grade], tasks: list[Task]) -> str:
    """One row per student: points per task, total, maximum, percent and status (names safe for a spreadsheet)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["student", *(t.task for t in tasks), "total", "max_points", "percent", "status"])
    for g in grades:
        if g.grader_fault:  # no score: blank cells, not zeros
            writer.writerow([_csv_safe(g.student), *("" for _ in g.tasks), "", _num(g.max_points), "", g.status])
        else:
            writer.writerow([_csv_safe(g.student), *(_num(t.points) for t in g.tasks), _num(g.total), _num(g.max_points), g.percent, g.status])
    return buffer.getvalue()


def _num(value: float) -> str:
    return f"{value:g}"


#: The feedback's note per status (a grader error has its own).
STATUS_NOTES = {
    "crashed": "Your notebook crashed (the kernel died), so the tasks after the crash were not graded.",
    "timed out": "Your notebook ran past the grader's time limit; the tasks it did not reach score 0.",
    "unreadable": "Your submission could not be read as a notebook (.ipynb file); nothing was graded.",
    "refused": "Your submission was refused (a link, or not a regular file); nothing was graded.",
    "wrong assignment": "You submitted the notebook of another assignment; nothing was graded.",
}
GRADER_FAULT_NOTE = ("The grader failed while running your notebook. This is not your mistake and not your score: "
                     "your notebook will be graded again.")


def feedback_markdown(grade: Grade, assignment: str) -> str:
    """The student's feedback: total, then per task the points, what went wrong (with the check's hint) and how it was graded."""
    lines = [f"# {assignment} — feedback for {_printable(grade.student)}", ""]
    if grade.grader_fault:
        return "\n".join([*lines, f"**Not graded yet.** {GRADER_FAULT_NOTE}", "", f"({grade.status})", ""])
    lines += [f"**Total: {_num(grade.total)} / {_num(grade.max_points)} points ({grade.percent}%)**", ""]
    if grade.status in STATUS_NOTES:
        lines += [f"Note: {STATUS_NOTES[grade.status]}", ""]
    for t in grade.tasks:
        mark = "✓" if t.points == t.max_points else "✗"
        lines += [f"## {t.task}: {_num(t.points)} / {_num(t.max_points)} {mark}", "", t.message or "Passed.", "",
                  f"*Graded: {GRADED_BY[t.graded_by]}.*", ""]
    return "\n".join(lines)


def _feedback_names(students: list[str]) -> dict[str, str]:
    """A distinct, safe file name (no path, no leading dot or dash, no control character) for each student's feedback."""
    names: dict[str, str] = {}
    for student in students:
        base = re.sub(r"[^A-Za-z0-9._-]", "_", student)
        base = "_" + base if base[:1] in (".", "-", "") else base
        name, n = base, 1
        while name.lower() in {v.lower() for v in names.values()}:
            n += 1
            name = f"{base}-{n}"
        names[student] = name
    return names


def feedback_dir(out: Path) -> Path:
    return out.with_name(out.stem + "_feedback")


@contextlib.contextmanager
def _stopped_by_signals() -> Iterator[None]:
    """SIGTERM and SIGINT raise :class:`GradingStopped` (once; cleaning up is not interrupted again), in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)
        raise GradingStopped(signum)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _summary_notes(tasks: list[Task], grades: list[Grade], trusted: bool, stopped: GradingStopped | None) -> list[str]:
    graded = {by: [t.task for t in tasks if ("grader" if protocol_check(t) else "kernel") == by] for by in GRADED_BY}
    notes = [f"Graded by the grader from collected data: {', '.join(graded['grader']) or 'none'}; inside the student's kernel "
             f"(checks not yet converted; a hostile notebook can fake these): {', '.join(graded['kernel']) or 'none'}."]
    refused = [g for g in grades if g.status == "refused"]
    if refused:
        notes.append("Refused, not graded: " + "; ".join(f"{_printable(g.student)} ({_printable(g.tasks[0].message)})" for g in refused) + ".")
    if trusted:
        notes.append("Graded with --trusted: NOT SANDBOXED.")
    if stopped is not None:
        notes.append(f"Incomplete: grading was {stopped} after {len(grades)} submission(s).")
    return notes


def grade_folder(folder: str | Path, assignment: str, out: str | Path, profile: str = "smoke", timeout: int = 900,
                 overwrite: bool = False, params: dict[str, Any] | None = None, trusted: bool = False) -> list[Grade]:
    """Grade every submission in ``folder``, each in a sandbox (``trusted``: unsandboxed); write ``out`` (CSV),
    ``<out>_feedback/<student>.md`` and the class summary. Stopped by SIGTERM or SIGINT, it writes the grades so far and
    raises :class:`GradingStopped`."""
    master = find_master(assignment)
    tasks = read_tasks(master)
    assignment_id = master.name.split("_")[0]
    params = validate_parameters(master, {"profile": profile, **(params or {})})
    profile = params.pop("profile")
    found, refused = submissions(Path(folder), assignment_id)
    out = Path(out)
    if out.is_dir():
        raise CourseError(f"out {out} is a folder; the grades go to a CSV file.", "pass a file path such as grades/ex02.csv.")
    names = _feedback_names(sorted({*found, *refused}))
    feedback = {s: feedback_dir(out) / f"{names[s]}.md" for s in names}
    existing = [p for p in [out, *feedback.values(), *summary_paths(out)] if p.exists()]
    if existing and not overwrite:
        raise CourseError(f"{', '.join(map(str, existing[:3]))} already exist(s); not overwriting grades.",
                          "pass overwrite=True (--overwrite) to replace them, or choose another out (--out).")
    ensure_writable_dir(out.parent, "out's folder")  # before the first submission runs
    ensure_writable_dir(feedback_dir(out), "the feedback folder")
    sandbox = make_sandbox(trusted)
    grades: list[Grade] = []

    def record(grade: Grade) -> None:  # feedback and CSV after every submission (atomic writes): a stop keeps what was graded
        grades.append(grade)
        write_output(feedback[grade.student], feedback_markdown(grade, assignment_id), overwrite=True)
        write_output(out, csv_text(grades, tasks), overwrite=True)

    stopped = None
    with _stopped_by_signals():
        try:
            for student, path in refused.items():
                why = f"refused: {_refusal(path)}"
                record(Grade(student, str(path), [TaskScore(t.task, 0, t.points, why) for t in tasks], "refused", 0.0))
            for n, (student, path) in enumerate(found.items(), start=1):
                print(f"▶ [{n}/{len(found)}] {_printable(student)}: {_printable(str(path))}", flush=True)
                grade = grade_notebook(path, master, student, profile, timeout, params, sandbox)
                shown = "not graded (grader fault)" if grade.grader_fault else f"{_num(grade.total)} / {_num(grade.max_points)} points ({grade.percent}%)"
                print(f"  {shown}, {grade.status}, {grade.seconds:.0f} s", flush=True)
                record(grade)
        except GradingStopped as exc:
            stopped = exc
        write_output(out, csv_text(grades, tasks), overwrite=True)
        write_class_summary(out, assignment_id, [g for g in grades if not g.grader_fault], tasks,  # no score is not a 0
                            _summary_notes(tasks, grades, trusted, stopped))
    if stopped is not None:
        stopped.grades = grades
        raise stopped
    return grades
