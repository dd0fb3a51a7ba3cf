"""The grader: honest scores for solutions, blanks, wrong answers, crashes, hangs, floods of output and tampering.

The batch cases use the tiny assignment in ``tests/fixtures/grading/`` (real checks, cheap tasks);
the real exercises are graded here for "every blank scores 0%"; their solutions run (hidden tests included) under papermill.
"""

from __future__ import annotations

import copy
import csv
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from ftcourse import paths
from ftcourse.errors import CourseError
from ftcourse.tools import grading
from ftcourse.tools.build import exercise_notebook, exercise_path, is_hidden, masters, read_tasks, task_of
from ftcourse.tools.cli import main
from ftcourse.tools.grading import feedback_markdown, grade_folder, grade_notebook, kernel_env, prepare, submissions

FIXTURE = Path(__file__).parent / "fixtures" / "grading" / "ex00_tiny.ipynb"
POINTS = {"task1": 1, "task2": 2, "task3": 3}
SECRET = "hf_not_for_students_123"


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
        "carol": _answer(master, "task2", "splits = split_dataset(data, validation=0.1, test=0.1, seed=1)\ncheck_ex01_task3(splits)"),
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
        assert main(["grade", str(folder), "--assignment", str(FIXTURE), "--out", str(out), "--timeout", "300"]) == 0
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
    assert "seed=42" in (feedback / "carol.md").read_text()  # the check's hint reaches the student


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
    """The limit covers the whole notebook; the fixture's solution takes about 2 s (kernel start included) on an idle machine,
    so 20 s reaches task 2 even with other jobs slowing the kernel's start several times over."""
    path = tmp_path / "hal.ipynb"
    nbformat.write(_answer(_master(), "task2", "import time\ntime.sleep(3600)"), path)
    grade = grade_notebook(path, FIXTURE, "hal", timeout=20)
    assert grade.status == "timed out"
    assert [t.points for t in grade.tasks] == [1, 0, 0]
    assert "limit of 20 s" in grade.tasks[1].message


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
    """The prefix prepare() puts before a hidden test undoes checks patched inside ftcourse.course.checks' modules; reloading only the
    package (it re-exports the exercise modules' objects), or core after the exercise modules, would not."""
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


def test_kernel_environment_drops_secrets(monkeypatch, tmp_path):
    for key in ("HF_TOKEN", "WANDB_API_KEY", "MY_SECRET", "DB_PASSWORD"):
        monkeypatch.setenv(key, "x")
    env = kernel_env(tmp_path, "smoke")
    assert not {"HF_TOKEN", "WANDB_API_KEY", "MY_SECRET", "DB_PASSWORD"} & set(env)
    assert env["FTCOURSE_ROOT"] == str(tmp_path) and env["FTCOURSE_PROFILE"] == "smoke"


def test_submissions_are_found_flat_or_per_student_folder(tmp_path):
    (tmp_path / "ann.ipynb").write_text("{}")
    (tmp_path / "ben").mkdir()
    (tmp_path / "ben" / "ex00_tiny.ipynb").write_text("{}")
    (tmp_path / "ben" / "notes.ipynb").write_text("{}")
    assert submissions(tmp_path, "ex00") == {"ann": tmp_path / "ann.ipynb", "ben": tmp_path / "ben" / "ex00_tiny.ipynb"}
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


def test_an_unreadable_submission_scores_zero(tmp_path):
    (tmp_path / "x.ipynb").write_text("not json")
    grade = grade_notebook(tmp_path / "x.ipynb", FIXTURE, "x")
    assert grade.status == "unreadable" and grade.total == 0 and len(grade.tasks) == 3
    note = feedback_markdown(grade, "ex00")
    assert "Your submission could not be read as a notebook" in note and "your notebook unreadable" not in note


def test_a_submission_that_writes_into_its_base_model_changes_only_its_own_copy(tmp_path, monkeypatch):
    model = tmp_path / "course" / "tiny-model"
    model.mkdir(parents=True)
    files = {"generation_config.json": '{"do_sample": false}\n', "model.safetensors": "weights", "tokenizer_config.json": "{}\n"}
    for name, text in files.items():
        (model / name).write_text(text)
    monkeypatch.setattr(paths, "base_models_dir", lambda: model.parent)
    attack = ("from ftcourse import paths\n"
              "folder = paths.base_models_dir() / 'tiny-model'\n"
              "with open(folder / 'generation_config.json', 'a') as fh:\n    fh.write('changed')\n"
              "with open(folder / 'model.safetensors', 'r+b') as fh:\n    fh.write(b'XX')\n"
              "(folder / 'tokenizer_config.json').write_text('changed')\n"
              "(folder / 'added.json').write_text('{}')\n"
              "assert (folder / 'model.safetensors').read_bytes() == b'XXights'  # the writes happened (in its copy)\n")
    nbformat.write(_answer(_master(), "task1", attack + _student_source("task1")), tmp_path / "mallory.ipynb")
    grade = grade_notebook(tmp_path / "mallory.ipynb", FIXTURE, "mallory", timeout=300)
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
    def full_disk(folder):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(grading, "make_workspace", full_disk)
    (tmp_path / "subs").mkdir()
    nbformat.write(_master(), tmp_path / "subs" / "ann.ipynb")
    out = tmp_path / "grades.csv"
    assert main(["grade", str(tmp_path / "subs"), "--assignment", str(FIXTURE), "--out", str(out)]) == 1
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


@pytest.mark.parametrize("master", masters(), ids=lambda p: p.stem)
def test_every_blank_scores_0(master, tmp_path):
    """A blank exercise earns nothing. (Every solution scoring 100% is checked where the solutions already run: papermill
    executes each master with its hidden-test cells in `make test-notebooks`, and a failing hidden test fails that run;
    the grader's own placement of those tests is covered by the fixture assignment above.)"""
    blank = grade_notebook(exercise_path(master), master, "blank", timeout=1800)
    assert blank.status == "ok" and [t.points for t in blank.tasks] == [0] * len(blank.tasks), [(t.task, t.message) for t in blank.tasks]


def test_the_class_summary_shows_per_task_means_passes_and_the_most_common_failure(batch):
    rows, feedback = batch
    summary = feedback.with_name("tiny_summary.md").read_text()
    chart = feedback.with_name("tiny_summary.png").read_bytes()
    assert chart.startswith(b"\x89PNG") and len(chart) > 5_000
    assert "# ex00 — class summary" in summary and f"{len(rows)} submissions" in summary
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
