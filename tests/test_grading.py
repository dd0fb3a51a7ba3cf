"""The grader: honest scores for solutions, blanks, wrong answers, crashes, hangs, floods of output — and hostile notebooks.

The batch cases use the tiny assignment in ``tests/fixtures/grading/`` (real checks of exercises 01 and 03, which follow
the grading protocol, and cheap tasks); the real exercises are graded here for "every blank scores 0%" and, for the
converted exercises 01 and 03, "the solution scores 100%, judged by the grader". Each hostile notebook is the blank
assignment plus the attack, graded in one batch with a honest solution after them; the sandbox tests are skipped, with
the reason, where bubblewrap cannot run (the other tests then grade with --trusted).
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from ftcourse import paths
from ftcourse.course import checks
from ftcourse.course.checks import read_inside
from ftcourse.errors import CourseError
from ftcourse.tools import grading
from ftcourse.tools import sandbox as isolation
from ftcourse.tools.build import exercise_notebook, exercise_path, find_master, is_hidden, masters, read_tasks, solutions_dir, task_of
from ftcourse.tools.cli import main
from ftcourse.tools.grading import feedback_markdown, grade_folder, grade_notebook, kernel_env, prepare, submissions

FIXTURE = Path(__file__).parent / "fixtures" / "grading" / "ex00_tiny.ipynb"
POINTS = {"task1": 1, "task2": 2, "task3": 3}
SECRET = "hf_not_for_students_123"
API_KEY = "sk-planted-grader-key-9f3a"
SANDBOX = isolation.unavailable() is None
TRUSTED = [] if SANDBOX else ["--trusted"]
needs_sandbox = pytest.mark.skipif(not SANDBOX, reason=f"no sandbox on this machine: {isolation.unavailable()}")


def _sandbox() -> isolation.Sandbox:
    return grading.make_sandbox(trusted=not SANDBOX)


def _master() -> nbformat.NotebookNode:
    return nbformat.read(FIXTURE, as_version=4)


def _answer(nb: nbformat.NotebookNode, task: str, source: str) -> nbformat.NotebookNode:
    """A copy of ``nb`` whose student cell of ``task`` holds ``source``."""
    nb = copy.deepcopy(nb)
    next(c for c in nb.cells if task_of(c) == task and not is_hidden(c)).source = source
    return nb


def _student_source(task: str) -> str:
    return next(c.source for c in _master().cells if task_of(c) == task and not is_hidden(c))


def _tampered() -> nbformat.NotebookNode:
    """Right task 1; wrong tasks 2 and 3 hidden behind redefined checks, emptied test cells and a fake test cell."""
    nb = _answer(_master(), "task2", "splits = split_dataset(data, validation=0.1, test=0.1, seed=7)\ncheck_ex01_task3(splits)")
    nb = _answer(nb, "task3", "def macro_f1(predictions, references, labels):\n    return 1.0\ncheck_ex03_task1(macro_f1)")
    for cell in nb.cells:
        if is_hidden(cell):
            cell.source = "pass"
            cell.metadata["ftcourse"]["points"] = 100
    patch = nbformat.v4.new_code_cell(
        "import ftcourse.course.checks as c, ftcourse.course.checks.ex01 as ex01\n"
        "ex01.expect = lambda *a, **k: None\n"
        "c.check_ex01_task3.verify = lambda *a, **k: 'ok'\n"
        "c.check_ex03_task1.func = lambda *a, **k: 'ok'\n"
        "c.CheckFailed = Exception\n"
        "check_ex01_task3 = check_ex03_task1 = lambda *a, **k: None")
    fake = nbformat.v4.new_code_cell("pass", metadata={"tags": ["hidden-tests"], "ftcourse": {"task": "task2", "points": 100}})
    nb.cells[3:3] = [patch]
    nb.cells.append(fake)
    return nb


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """One `ftcourse grade` over six submissions: (CSV rows by student, feedback folder)."""
    folder = tmp_path_factory.mktemp("submissions")
    master = _master()
    cases = {
        "bob": exercise_notebook(FIXTURE),
        "carol": _answer(master, "task2", _student_source("task2").replace("seed=42", "seed=1")),
        "dave": _answer(master, "task1", "import os, shutil\nfor p in os.listdir('.'):\n    shutil.rmtree(p, ignore_errors=True)\n"
                                         "print('x' * 3_000_000)\nos._exit(1)"),
        "eve": _tampered(),
        "frank": master,
        "gina": _answer(_answer(master, "task1", _student_source("task1") + "\nimport os\nraise ValueError('token=' + os.environ.get('HF_TOKEN', 'absent'))"),
                        "task3", "print('y' * 3_000_000)\n" + _student_source("task3")),
    }
    for name, nb in cases.items():
        nbformat.write(nb, folder / f"{name}.ipynb")
    out = tmp_path_factory.mktemp("grades") / "tiny.csv"
    mp = pytest.MonkeyPatch()
    mp.setenv("HF_TOKEN", SECRET)
    try:
        assert main(["grade", str(folder), "--assignment", str(FIXTURE), "--out", str(out), "--timeout", "300", *TRUSTED]) == 0
    finally:
        mp.undo()
    rows = {r["student"]: r for r in csv.DictReader(out.open())}
    return rows, out.with_name("tiny_feedback")


def test_solution_scores_full_points_and_a_blank_none(batch):
    rows, feedback = batch
    assert (rows["frank"]["total"], rows["frank"]["percent"], rows["frank"]["status"]) == ("6", "100.0", "ok")
    assert [rows["bob"][t] for t in POINTS] == ["0", "0", "0"]
    assert "not answered" in (feedback / "bob.md").read_text()


def test_a_wrong_answer_loses_exactly_its_tasks_points(batch):
    rows, feedback = batch
    assert [rows["carol"][t] for t in POINTS] == ["1", "0", "3"] and rows["carol"]["total"] == "4"
    text = (feedback / "carol.md").read_text()
    assert "seed=42" in text  # the check's hint reaches the student
    assert text.count("*Graded: judged by the grader") == 3  # every task of the fixture follows the grading protocol


def test_a_crash_that_wipes_its_folder_scores_zero_and_spares_the_batch(batch):
    rows, feedback = batch
    assert (rows["dave"]["total"], rows["dave"]["status"]) == ("0", "crashed")
    assert "kernel died" in (feedback / "dave.md").read_text()
    assert rows["frank"]["total"] == "6"  # graded after dave, in a folder of its own
    assert (paths.data_dir() / "raw" / "support_intents.jsonl").is_file()


def test_tampering_scores_only_what_the_masters_tests_confirm(batch):
    rows, _ = batch
    assert [rows["eve"][t] for t in POINTS] == ["1", "0", "0"]


def test_errors_do_not_stop_later_tasks_and_secrets_and_floods_stay_out(batch):
    rows, feedback = batch
    assert [rows["gina"][t] for t in POINTS] == ["0", "2", "3"]
    text = (feedback / "gina.md").read_text()
    assert "your task cell raised ValueError: token=absent" in text and SECRET not in text
    assert len(text) < 5_000


def test_a_hanging_notebook_times_out_after_scoring_what_it_reached(tmp_path):
    """The limit covers the whole notebook, kernel start included; 90 s reaches task 2 even when other jobs slow the
    kernel's start (the fixture's solution takes a few seconds on an idle machine)."""
    path = tmp_path / "hal.ipynb"
    nbformat.write(_answer(_master(), "task2", "import time\ntime.sleep(3600)"), path)
    grade = grade_notebook(path, FIXTURE, "hal", timeout=90, sandbox=_sandbox())
    assert grade.status == "timed out"
    assert [t.points for t in grade.tasks] == [1, 0, 0]
    assert "limit of 90 s" in grade.tasks[1].message


def test_prepare_uses_the_masters_tests_right_after_each_task_cell():
    tasks = read_tasks(FIXTURE)
    student = _tampered()
    del student.cells[[i for i, c in enumerate(student.cells) if task_of(c) == "task2" and not is_hidden(c)][0]]
    nb, tests, own = prepare(student, tasks, {"profile": "smoke"})
    assert sorted(tests) == ["task1", "task2", "task3"] and "task2" not in own
    assert tests["task1"] == own["task1"] + 1 and tests["task3"] == own["task3"] + 1
    assert tests["task1"] < tests["task2"] < own["task3"]  # a missing task cell: its test runs in task order
    for task in tasks:
        body = nb.cells[tests[task.task]].source
        assert "importlib.reload" in body and body.endswith(task.test.source) and body != "pass"
    assert sum(is_hidden(c) for c in nb.cells) == 3  # the student's own "hidden tests" are gone
    injected = next(i for i, c in enumerate(nb.cells) if "injected-parameters" in c.metadata.get("tags", []))
    assert "parameters" in nb.cells[injected - 1].metadata["tags"] and 'profile = "smoke"' in nb.cells[injected].source


#: Checks patched inside their own modules: core's `expect` (what a re-imported exercise module would pick up again) and
#: exercise 03's `expect` and the check object itself (which the package only re-exports).
_SUBMODULE_TAMPERING = ("import ftcourse.course.checks.core as core, ftcourse.course.checks.ex03 as ex03\n"
                        "core.expect = ex03.expect = lambda *a, **k: None\n"
                        "ex03.check_ex03_task1.verify = lambda *a, **k: 'ok'\n")
_WRONG_F1 = ("from ftcourse.course.checks import CheckFailed, check_ex03_task1\n"
             "try:\n    check_ex03_task1.verify(lambda predictions, references: 0.5)\n"
             "except CheckFailed:\n    print('rejected')\nelse:\n    print('accepted')\n")


def _after_tampering(reload: str) -> str:
    """What a kernel whose checks were patched in their modules makes of a wrong macro F1 after running ``reload``."""
    code = _SUBMODULE_TAMPERING + reload + _WRONG_F1
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=paths.project_root()).stdout.strip()


def test_hidden_tests_reload_the_checks_core_first_then_each_exercise_then_the_package():
    """The prefix prepare() puts before a hidden test undoes checks patched inside ftcourse.course.checks' modules (what
    still matters for the checks not yet converted); reloading only the package, or core after the exercise modules, would not."""
    tasks = read_tasks(FIXTURE)
    nb, tests, _ = prepare(_master(), tasks, {"profile": "smoke"})
    task3 = next(t for t in tasks if t.task == "task3")
    prefix = nb.cells[tests["task3"]].source.removesuffix(task3.test.source)
    assert "check_ex03_task1" in prefix
    assert _after_tampering("") == "accepted"  # the tampering works
    assert _after_tampering(prefix) == "rejected"
    assert _after_tampering("import importlib, ftcourse.course.checks\nimportlib.reload(ftcourse.course.checks)\n") == "accepted"
    wrong_order = "".join(f"importlib.reload(ftcourse.course.checks.{m})\n" for m in ("ex03", "core"))
    assert _after_tampering(f"import importlib, ftcourse.course.checks\n{wrong_order}importlib.reload(ftcourse.course.checks)\n") == "accepted"


def test_the_submissions_environment_is_explicit(monkeypatch):
    for key in ("HF_TOKEN", "WANDB_API_KEY", "MY_SECRET", "DB_PASSWORD", "AWS_ACCESS_KEY_ID", "GITHUB_ACTIONS", "HOME"):
        monkeypatch.setenv(key, "x")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    env = kernel_env("/workspace", "smoke", "/opt/ftcourse")
    assert not {k for k, v in env.items() if v == "x"}  # nothing of the grader's environment but the thread and locale settings
    assert env["OMP_NUM_THREADS"] == "1" and env["FTCOURSE_ROOT"] == "/workspace" and env["FTCOURSE_PROFILE"] == "smoke"
    assert env["HOME"].startswith("/workspace/") and env["PYTHONPATH"] == "/opt/ftcourse" and env["HF_HUB_OFFLINE"] == "1"


def test_submissions_are_found_flat_or_per_student_folder_and_links_are_refused(tmp_path):
    (tmp_path / "ann.ipynb").write_text("{}")
    (tmp_path / "LOUD.IPYNB").write_text("{}")
    (tmp_path / "ben").mkdir()
    (tmp_path / "ben" / "ex00_tiny.ipynb").write_text("{}")
    (tmp_path / "ben" / "notes.ipynb").write_text("{}")
    (tmp_path / "cal.ipynb").symlink_to(FIXTURE)
    (tmp_path / "dee").symlink_to(tmp_path / "ben")
    os.mkfifo(tmp_path / "eli.ipynb")
    found, refused = submissions(tmp_path, "ex00")
    assert found == {"ann": tmp_path / "ann.ipynb", "LOUD": tmp_path / "LOUD.IPYNB", "ben": tmp_path / "ben" / "ex00_tiny.ipynb"}
    assert refused == {"cal": tmp_path / "cal.ipynb", "dee": tmp_path / "dee", "eli": tmp_path / "eli.ipynb"}
    (tmp_path / "ben.ipynb").write_text("{}")
    with pytest.raises(CourseError, match="Several submissions"):
        submissions(tmp_path, "ex00")


def test_existing_grades_are_not_overwritten(tmp_path):
    (tmp_path / "subs").mkdir()
    nbformat.write(_master(), tmp_path / "subs" / "ann.ipynb")
    (tmp_path / "grades.csv").write_text("mine\n")
    with pytest.raises(CourseError, match="not overwriting"):
        grade_folder(tmp_path / "subs", str(FIXTURE), tmp_path / "grades.csv")
    assert (tmp_path / "grades.csv").read_text() == "mine\n"


def test_an_unreadable_submission_scores_zero_without_quoting_it(tmp_path):
    (tmp_path / "x.ipynb").write_text("not json")
    grade = grade_notebook(tmp_path / "x.ipynb", FIXTURE, "x")
    assert grade.status == "unreadable" and grade.total == 0 and len(grade.tasks) == 3
    note = feedback_markdown(grade, "ex00")
    assert "Your submission could not be read as a notebook" in note and "your notebook unreadable" not in note
    (tmp_path / "y.ipynb").write_text(json.dumps({"cells": "s3cret-content", "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    assert "s3cret-content" not in grade_notebook(tmp_path / "y.ipynb", FIXTURE, "y").tasks[0].message


def test_reading_a_workspace_never_follows_a_link(tmp_path):
    (tmp_path / "inside").mkdir()
    (tmp_path / "inside" / "ok.json").write_text("{}")
    (tmp_path / "inside" / "big.json").write_text("x" * 100)
    (tmp_path / "secret").write_text("root:x:0:0")
    (tmp_path / "inside" / "link.json").symlink_to(tmp_path / "secret")
    (tmp_path / "inside" / "sub").symlink_to(tmp_path)
    assert read_inside(tmp_path / "inside", "ok.json", 10) == b"{}"
    assert read_inside(tmp_path / "inside", "big.json", 10) is None  # over the cap
    assert read_inside(tmp_path / "inside", "link.json", 100) is None
    assert read_inside(tmp_path / "inside", "sub/secret", 100) is None  # a link on the way
    assert read_inside(tmp_path / "inside", "../secret", 100) is None


def test_a_submission_that_writes_into_its_base_model_cannot_change_the_course(tmp_path, monkeypatch):
    """Sandboxed, the base models are read-only; unsandboxed (--trusted), the submission writes into its own copy."""
    model = tmp_path / "course" / "tiny-model"
    model.mkdir(parents=True)
    files = {"generation_config.json": '{"do_sample": false}\n', "model.safetensors": "weights", "tokenizer_config.json": "{}\n"}
    for name, text in files.items():
        (model / name).write_text(text)
    monkeypatch.setattr(paths, "base_models_dir", lambda: model.parent)
    attack = ("from ftcourse import paths\n"
              "folder = paths.base_models_dir() / 'tiny-model'\n"
              "for name, mode in (('generation_config.json', 'a'), ('model.safetensors', 'r+b'), ('tokenizer_config.json', 'w'), ('added.json', 'w')):\n"
              "    try:\n        with open(folder / name, mode) as fh:\n            fh.write(b'XX' if 'b' in mode else 'changed')\n"
              "    except OSError:\n        pass\n")
    nbformat.write(_answer(_master(), "task1", attack + _student_source("task1")), tmp_path / "mallory.ipynb")
    grade = grade_notebook(tmp_path / "mallory.ipynb", FIXTURE, "mallory", timeout=300, sandbox=_sandbox())
    assert grade.status == "ok" and [t.points for t in grade.tasks] == [1, 2, 3], [t.message for t in grade.tasks]
    assert {p.name: p.read_text() for p in model.iterdir()} == files


def test_another_assignments_notebook_is_graded_wrong_assignment(tmp_path):
    other = exercise_notebook(FIXTURE)
    other.metadata["ftcourse"] = {"generated_from": "ex02_lora_training.ipynb"}
    nbformat.write(other, tmp_path / "x.ipynb")
    grade = grade_notebook(tmp_path / "x.ipynb", FIXTURE, "x")
    assert grade.status == "wrong assignment" and grade.total == 0
    assert "generated from ex02_lora_training.ipynb, not from ex00_tiny.ipynb" in grade.tasks[0].message
    assert "another assignment" in feedback_markdown(grade, "ex00")


def test_a_grader_fault_is_reported_as_a_fault_not_as_a_zero(tmp_path, monkeypatch, capsys):
    def full_disk(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(grading, "make_workspace", full_disk)
    (tmp_path / "subs").mkdir()
    nbformat.write(_master(), tmp_path / "subs" / "ann.ipynb")
    out = tmp_path / "grades.csv"
    assert main(["grade", str(tmp_path / "subs"), "--assignment", str(FIXTURE), "--out", str(out), *TRUSTED]) == 1
    assert "the grader failed on 1 submission(s), left ungraded: ann" in capsys.readouterr().err
    row = next(csv.DictReader(out.open()))
    assert (row["task1"], row["total"], row["percent"], row["status"]) == ("", "", "", "grader error: OSError")
    note = (tmp_path / "grades_feedback" / "ann.md").read_text()
    assert "not your mistake" in note and "Total" not in note
    assert "0 submissions" in (tmp_path / "grades_summary.md").read_text()  # the class mean leaves it out


@pytest.mark.parametrize("bad", ["folder", "under_a_file"])
def test_an_unusable_grades_path_fails_before_any_submission_runs(tmp_path, capsys, bad):
    (tmp_path / "subs").mkdir()
    nbformat.write(_master(), tmp_path / "subs" / "ann.ipynb")
    (tmp_path / "a_file").write_text("mine\n")
    out = tmp_path / "grades.csv" if bad == "folder" else tmp_path / "a_file" / "grades.csv"
    if bad == "folder":
        out.mkdir()
    assert main(["grade", str(tmp_path / "subs"), "--assignment", str(FIXTURE), "--out", str(out)]) == 2
    err = capsys.readouterr()
    assert "error:" in err.err and "▶" not in err.out and "Traceback" not in err.err
    assert (tmp_path / "a_file").read_text() == "mine\n"


def test_without_a_sandbox_grading_refuses_unless_trusted(monkeypatch):
    monkeypatch.setattr(isolation, "unavailable", lambda: "bwrap not installed")
    with pytest.raises(CourseError, match="Cannot sandbox the submissions: bwrap not installed") as info:
        grading.make_sandbox()
    assert "apt-get install -y bubblewrap" in info.value.fix and "--trusted" in info.value.fix
    assert grading.make_sandbox(trusted=True).trusted


@pytest.mark.parametrize("master", masters(), ids=lambda p: p.stem)
def test_every_blank_scores_0(master, tmp_path):
    """A blank exercise earns nothing. (Every solution scoring 100% is checked where the solutions already run: papermill
    executes each master with its hidden-test cells in `make test-notebooks`, and a failing hidden test fails that run;
    the solutions of the exercises graded by the grader are graded below.)"""
    blank = grade_notebook(exercise_path(master), master, "blank", timeout=1800, sandbox=_sandbox())
    assert blank.status == "ok" and [t.points for t in blank.tasks] == [0] * len(blank.tasks), [(t.task, t.message) for t in blank.tasks]


def _converted() -> list[str]:
    """The exercises whose every task follows the grading protocol."""
    return [m.stem.split("_")[0] for m in masters() if all(grading.protocol_check(t) for t in read_tasks(m))]


def test_exercises_01_02_and_03_are_converted():
    assert {"ex01", "ex02", "ex03"} <= set(_converted())


@needs_sandbox
@pytest.mark.parametrize("exercise", _converted())
def test_the_converted_solutions_score_100_percent_judged_by_the_grader(exercise, tmp_path):
    master = find_master(exercise)
    hidden = grading.hidden_cases(exercise)
    assert {grading.protocol_check(t).__name__ for t in read_tasks(master)} >= set(hidden)  # every hidden case used
    grade = grade_notebook(master, master, "solution", timeout=1800, sandbox=_sandbox())
    assert grade.status == "ok" and grade.percent == 100.0, [(t.task, t.message) for t in grade.tasks]
    assert {t.graded_by for t in grade.tasks} == {"grader"}


def test_exercise_02_is_converted_task_by_task_and_its_hidden_cases_belong_to_converted_tasks():
    """Every task collects for the grader; 4 and 5 (a trained run, a reloaded adapter) name the run folder their code wrote."""
    converted = {t.task for t in read_tasks(find_master("ex02")) if grading.protocol_check(t)}
    assert converted == {"task1", "task2", "task3", "task4", "task5", "task6"}
    assert set(grading.hidden_cases("ex02")) == {"check_ex02_task1", "check_ex02_task2", "check_ex02_task4", "check_ex02_task5"}


# ---------------------------------------------------------------- hostile submissions (one sandboxed batch)


def _hash_tree(*roots: Path) -> str:
    digest = hashlib.sha256()
    for root in roots:
        for path in sorted(p for p in (root.rglob("*") if root.is_dir() else [root]) if p.is_file() and "__pycache__" not in p.parts):
            digest.update(str(path).encode() + path.read_bytes())
    return digest.hexdigest()


def _marker_processes(marker: str) -> list[str]:
    """The processes whose command line or environment holds ``marker``."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if any(marker.encode() in Path(f"/proc/{pid}/{part}").read_bytes() for part in ("cmdline", "environ")):
                found.append(pid)
        except OSError:
            continue
    return found


def _attacks(canary: Path, marker: str, submissions: Path) -> dict[str, str]:
    """Hostile cells by student name, each added to the blank assignment (which scores 0 by itself)."""
    hidden, master, course = solutions_dir() / "hidden" / "ex01.json", find_master("ex01").resolve(), paths.project_root()
    return {
        # every later cell, the hidden tests included, runs as `pass`
        "a_transformer": 'get_ipython().input_transformers_cleanup.append(lambda lines: ["pass\\n"])',
        # importlib.reload and every check replaced in memory
        "b_patcher": ("import importlib, ftcourse.course.checks as c\nimportlib.reload = lambda module: module\n"
                      "for name in dir(c):\n    obj = getattr(c, name)\n    if hasattr(obj, 'verify'):\n"
                      "        obj.verify = obj.collect = lambda *a, **k: 'ok'\n        obj.decide = lambda data, case: 'ok'"),
        # the master's hidden tests, the checks and the hidden cases rewritten on disk, found through the package or by path
        "c_rewriter": ("import pathlib, ftcourse\n"
                       f"targets = [{str(hidden)!r}, {str(master)!r}, {str(FIXTURE)!r}, {str(Path(checks.__file__).parent / 'ex01.py')!r}]\n"
                       "package = pathlib.Path(ftcourse.__file__).parent\n"
                       "targets += [package / 'course/checks/ex01.py', package / 'course/checks/core.py', package.parent / 'solutions/hidden/ex01.json']\n"
                       "for env in pathlib.Path('/proc').glob('*/environ'):\n    try:\n        names = env.read_bytes().decode(errors='replace').split('\\0')\n"
                       "    except OSError:\n        continue\n"
                       "    targets += [pathlib.Path(v.split('=', 1)[1], 'solutions/hidden/ex01.json') for v in names if v.startswith('FTCOURSE_ROOT=')]\n"
                       "for target in targets:\n    try:\n        pathlib.Path(target).write_text('pass')\n    except OSError:\n        pass"),
        # the grader's environment, the hidden cases and the master read and put into the feedback; files written outside
        # the workspace; a process left running in a session of its own; memory and file size beyond the limits
        "d_prober": ("import glob, json, os, socket, subprocess, sys\nev = {'uid': os.getuid(), 'pids': sum(p.isdigit() for p in os.listdir('/proc'))}\n"
                     "leak = []\nfor env in glob.glob('/proc/*/environ'):\n    try:\n        leak.append(open(env, 'rb').read().decode(errors='replace'))\n"
                     "    except OSError:\n        pass\n"
                     f"for path in ({str(hidden)!r}, {str(master)!r}, {str(FIXTURE)!r}, '/etc/shadow', {str(course / 'pyproject.toml')!r}, "
                     f"{str(canary.parent)!r}, {str(submissions)!r}):\n"
                     "    ev.setdefault('seen', []).append(os.path.exists(path))\n"
                     "    try:\n        leak.append(open(path).read())\n    except OSError:\n        pass\n"
                     f"os.system('echo pwned > {canary}; echo pwned > /tmp/ftcourse-pwned-{marker}')\n"
                     f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(900)', '{marker}'], start_new_session=True)\n"
                     "try:\n    socket.create_connection(('10.1.2.3', 80), timeout=3)\n    ev['net'] = 'open'\nexcept OSError as exc:\n"
                     "    ev['net'] = exc.__class__.__name__\n"
                     "try:\n    bytearray(64 * 2**30)\n    ev['memory'] = 'allocated'\nexcept MemoryError:\n    ev['memory'] = 'limited'\n"
                     "try:\n    open('big.bin', 'wb').write(b'0' * (100 * 2**20))\n    ev['file'] = 'written'\nexcept OSError as exc:\n"
                     "    ev['file'] = exc.errno\nprint('\\n'.join(leak))\nraise ValueError('EVIDENCE' + json.dumps(ev) + ' '.join(leak)[:200])"),
        # many processes at once (the limit is lowered for this batch)
        "e_forker": (f"import subprocess, sys\nstarted = []\nfor _ in range(400):\n    try:\n"
                     f"        started.append(subprocess.Popen(['sleep', '900'], env={{'MARKER': '{marker}'}}))\n    except OSError:\n        break\n"
                     "raise ValueError(f'STARTED {len(started)}')"),
        # the grader's runner killed from inside: a crash, never "not graded"
        "f_killer": "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)",
        # collected data forged before the hidden tests run: a link out of the workspace, a JSON bomb
        "g_forger": ("import os, pathlib\nfolder = pathlib.Path(os.environ['FTCOURSE_GRADING_DIR'], 'collected')\n"
                     "os.symlink('/etc/passwd', folder / 'check_ex01_task1.json')\n"
                     "(folder / 'check_ex01_task3.json').write_text('[' * 100000 + ']' * 100000)\n"
                     "(folder / 'check_ex03_task1.json').write_text('{\"outputs\": [' + ', '.join(['{\"type\": \"float\", \"value\": 0.0}'] * 4) + ']}')\n"
                     "get_ipython().input_transformers_cleanup.append(lambda lines: ['pass\\n'])"),
    }


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """One sandboxed `ftcourse grade` over the attacks, an honest solution after them, a formula name, an upper-case
    extension and links; with an API key planted in the grader's environment and a canary file outside the workspaces."""
    if not SANDBOX:
        pytest.skip(f"no sandbox on this machine: {isolation.unavailable()}")
    folder, outside = tmp_path_factory.mktemp("hostile"), tmp_path_factory.mktemp("outside")
    canary, marker = outside / "canary.txt", f"ftcourse-marker-{os.getpid()}-{time.time_ns()}"
    canary.write_text("untouched")
    blank = exercise_notebook(FIXTURE)
    for name, attack in _attacks(canary, marker, folder).items():  # in the task-1 cell, so that what it raises reaches the feedback
        nbformat.write(_answer(blank, "task1", attack), folder / f"{name}.ipynb")
    nbformat.write(_master(), folder / "z_solution.ipynb")
    nbformat.write(_master(), folder / "LOUD.IPYNB")
    nbformat.write(blank, folder / '=HYPERLINK("https:evil.example","click").ipynb')
    (folder / "h_link_to_master.ipynb").symlink_to(FIXTURE)
    (folder / "i_link_to_passwd.ipynb").symlink_to("/etc/passwd")
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    (elsewhere / "ex00_tiny.ipynb").write_text(FIXTURE.read_text())
    (folder / "j_folder_link").symlink_to(elsewhere)
    course = [solutions_dir(), FIXTURE, Path(checks.__file__).parent]
    before = _hash_tree(*course)
    out = tmp_path_factory.mktemp("grades") / "hostile.csv"
    mp = pytest.MonkeyPatch()
    mp.setenv("FTCOURSE_TEST_API_KEY", API_KEY)
    mp.setenv("HF_TOKEN", SECRET)
    mp.setattr(grading, "LIMITS", dataclasses.replace(grading.LIMITS, processes=160, file_bytes=64 * 2**20))
    try:
        assert main(["grade", str(folder), "--assignment", str(FIXTURE), "--out", str(out), "--timeout", "300"]) == 0
    finally:
        mp.undo()
    rows = {r["student"]: r for r in csv.DictReader(out.open(encoding="utf-8"))}
    texts = {p.stem: p.read_text(encoding="utf-8") for p in out.with_name("hostile_feedback").glob("*.md")}
    outputs = "\n".join([out.read_text(encoding="utf-8"), *texts.values(), out.with_name("hostile_summary.md").read_text(encoding="utf-8")])
    return {"rows": rows, "feedback": texts, "outputs": outputs, "canary": canary, "marker": marker,
            "course_unchanged": _hash_tree(*course) == before}


@needs_sandbox
def test_every_hostile_submission_scores_zero_and_the_honest_one_after_them_full_points(hostile):
    rows = hostile["rows"]
    for name in ("a_transformer", "b_patcher", "c_rewriter", "d_prober", "e_forker", "f_killer", "g_forger"):
        assert rows[name]["total"] == "0", (name, hostile["feedback"][name])
    assert rows["f_killer"]["status"] == "crashed"  # killing the runner is a crash, not "not graded"
    assert "collected nothing to judge" in hostile["feedback"]["a_transformer"]
    assert (rows["z_solution"]["total"], rows["LOUD"]["total"]) == ("6", "6")  # graded after them, against unchanged tests


@needs_sandbox
def test_hostile_submissions_change_nothing_outside_their_workspace_and_leave_no_process(hostile):
    assert hostile["course_unchanged"]  # solutions/, the hidden cases, the checks and the fixture master
    assert hostile["canary"].read_text() == "untouched" and not Path(f"/tmp/ftcourse-pwned-{hostile['marker']}").exists()
    assert _marker_processes(hostile["marker"]) == []  # the process started in a session of its own, and the forks, are gone


@needs_sandbox
def test_a_hostile_submission_sees_no_secret_no_course_file_no_network_and_hits_its_limits(hostile):
    message = hostile["feedback"]["d_prober"]
    evidence = json.loads(message.split("EVIDENCE", 1)[1].split("}", 1)[0] + "}")
    assert evidence["seen"] == [False] * 7  # hidden cases, masters, /etc/shadow, the course, the canary's folder, the submissions
    assert evidence["pids"] <= 8 and evidence["net"] != "open"
    assert (evidence["memory"], evidence["file"]) == ("limited", 27)  # EFBIG
    if os.geteuid() == 0:
        assert evidence["uid"] == isolation.NOBODY
    started = int(hostile["feedback"]["e_forker"].split("STARTED ", 1)[1].split()[0])
    assert started < 400  # the process limit stopped it
    for secret in (API_KEY, SECRET, "BEGIN SOLUTION", "root:x:0:0", '"expected"'):
        assert secret not in hostile["outputs"], secret


@needs_sandbox
def test_links_are_refused_and_names_are_safe_in_the_csv_and_the_feedback_files(hostile):
    rows, feedback = hostile["rows"], hostile["feedback"]
    assert rows["h_link_to_master"]["status"] == rows["i_link_to_passwd"]["status"] == rows["j_folder_link"]["status"] == "refused"
    assert rows["h_link_to_master"]["total"] == "0" and "h_link_to_master" in hostile["outputs"].split("Refused, not graded:")[1]
    formula = next(name for name in rows if "HYPERLINK" in name)
    assert formula.startswith("'=") and rows[formula]["total"] == "0"
    assert all(not name.startswith(("=", "-", ".")) and "/" not in name for name in feedback)


@needs_sandbox
def test_sigterm_stops_grading_its_sandbox_and_keeps_the_grades_so_far(tmp_path):
    marker = f"ftcourse-marker-{os.getpid()}-{time.time_ns()}"
    (tmp_path / "subs").mkdir()
    nbformat.write(_master(), tmp_path / "subs" / "a_first.ipynb")
    hang = f"import subprocess, time\nsubprocess.Popen(['sleep', '900'], env={{'MARKER': '{marker}'}}, start_new_session=True)\ntime.sleep(900)"
    nbformat.write(_answer(_master(), "task2", hang), tmp_path / "subs" / "b_hangs.ipynb")
    out = tmp_path / "grades.csv"
    env = {**os.environ, "PYTHONPATH": str(Path(grading.__file__).parents[2])}
    process = subprocess.Popen([sys.executable, "-m", "ftcourse.tools.cli", "grade", str(tmp_path / "subs"), "--assignment", str(FIXTURE),
                                "--out", str(out)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 600
        while not _marker_processes(marker) and time.monotonic() < deadline and process.poll() is None:
            time.sleep(1)
        assert _marker_processes(marker), "the hanging notebook never started its process"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        if process.poll() is None:
            process.kill()
    assert "stopped by SIGTERM: 1 submission(s) graded" in process.stderr.read()
    rows = {r["student"]: r for r in csv.DictReader(out.open())}
    assert list(rows) == ["a_first"] and rows["a_first"]["total"] == "6"
    assert "Incomplete: grading was stopped by SIGTERM" in out.with_name("grades_summary.md").read_text()
    assert _marker_processes(marker) == []


def test_the_class_summary_shows_per_task_means_passes_and_the_most_common_failure(batch):
    rows, feedback = batch
    summary = feedback.with_name("tiny_summary.md").read_text()
    chart = feedback.with_name("tiny_summary.png").read_bytes()
    assert chart.startswith(b"\x89PNG") and len(chart) > 5_000
    assert "# ex00 — class summary" in summary and f"{len(rows)} submissions" in summary
    assert "Graded by the grader from collected data: task1, task2, task3; inside the student's kernel" in summary
    table = {line.split(" | ")[0].strip("| "): line for line in summary.splitlines() if line.startswith("| task") and not line.startswith("| task |")}
    assert set(table) == set(POINTS)
    # task2 (the course's split): bob blank, carol seed 1, dave crashed, eve tampered -> 2 of 6 passed (frank, gina)
    passed = sum(rows[s]["task2"] == "2" for s in rows)
    assert f"| {100 * passed / len(rows):.0f}% |" in table["task2"]
    assert "seed=42" in summary or "not answered" in table["task2"]  # the most common reason is named, by its hint


def test_summary_groups_failures_by_hint_and_counts_checker_faults_apart():
    from ftcourse.tools.build import Task
    from ftcourse.tools.class_report import summarize, summary_markdown
    from ftcourse.tools.grading import Grade, TaskScore

    tasks = [Task("task1", 2, None), Task("task2", 1, None)]

    def grade(student, p1, m1, p2, m2):
        return Grade(student, f"{student}.ipynb", [TaskScore("task1", p1, 2, m1), TaskScore("task2", p2, 1, m2)], "ok", 1.0)

    grades = [grade("a", 2, "", 0, "checker fault (not a verdict on your answer; your instructor will look at it): KeyError"),
              grade("b", 0, "macro_f1([1]) = 0.5; want 0.25. Hint: average over references ∪ predictions.", 1, ""),
              grade("c", 0, "macro_f1([2]) = 0.7; want 0.3. Hint: average over references ∪ predictions.", 1, ""),
              grade("d", 0, "not answered: the task still raises NotImplementedError (replace it with your code)", 1, "")]
    rows = summarize(grades, tasks)
    assert (rows[0].mean_points, rows[0].passed, rows[0].common_count) == (0.5, 0.25, 2)
    assert rows[0].common_failure == "average over references ∪ predictions."
    assert (rows[1].passed, rows[1].checker_faults) == (0.75, 1)
    text = summary_markdown("ex03", grades, rows)
    assert "| task1 | 2 | 0.50 | 25% | average over references ∪ predictions. (2) | 0 |" in text
    assert "checker fault is an error in the check itself" in text
