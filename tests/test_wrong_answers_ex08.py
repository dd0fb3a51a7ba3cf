"""Planted wrong answers of exercise 08: each tempting mistake fails its check with a hint that says why
(the rules: ``tests/test_wrong_answers.py``'s docstring; ``tests/planted.py`` runs a check on both cases).

Task 5 runs real (two-cell) notebooks through papermill and ``run_sweep``; everything else is pure Python.
"""

from __future__ import annotations

import difflib
import math
import shutil
import tempfile
from pathlib import Path

import nbformat
import pytest

from ftcourse import paths
from ftcourse.course import checks
from ftcourse.course.checks import EX08_SEED_TABLE, EX08_SPEC, EX08_T95, Case, describe
from ftcourse.course.experiments import validate_parameters
from ftcourse.course.sweep import run_sweep
from ftcourse.metrics import mean_interval
from ftcourse.tools.grading import grading_case
from tests.planted import fails, passes


def test_ex08_the_spec_is_lesson_08s_experiment_notebook():
    from ftcourse.course.experiments import parameters_of

    assert EX08_SPEC == parameters_of(paths.notebooks_dir() / "experiments" / "lora_experiment.ipynb")


# ---------------------------------------------------------------- task 1 · parameter problems

TYPES = {"int": int, "float": (int, float), "str": str, "bool": bool, "list": list}


def problems(params, spec, *, types=TYPES, bool_is_int=False, suggest=True, first_only=False):
    found = []
    for name, value in params.items():
        if name not in spec:
            close = difflib.get_close_matches(name, list(spec), n=1) if suggest else []
            found.append(f"unknown {name!r}" + (f"; did you mean {close[0]!r}?" if close else ""))
        elif (kind := spec[name]["type"]) in types and (not isinstance(value, types[kind]) or (not bool_is_int and isinstance(value, bool) and kind != "bool")):
            found.append(f"{name!r} must be {kind}")
    return found[:1] if first_only else found


def test_ex08_task1_helpers_names_only_bools_no_suggestion_first_only_exact_floats_and_fixed_names_fail():
    assert "12 practice cases" in passes(checks.check_ex08_task1, problems)

    def helper(params, spec):
        try:
            validate_parameters(paths.notebooks_dir() / "experiments" / "lora_experiment.ipynb", params)
        except Exception as exc:
            return [str(exc)]
        return []

    def names_only(params, spec):
        return problems(params, spec, types={})

    def exact_float(params, spec):
        return problems(params, spec, types={**TYPES, "float": float})

    def this_notebooks_names(params, spec):  # the names copied from the printed spec, not read from `spec`
        return problems(params, EX08_SPEC)

    def bool_is_int(params, spec):
        return problems(params, spec, bool_is_int=True)

    def no_suggestion(params, spec):
        return problems(params, spec, suggest=False)

    def first_only(params, spec):
        return problems(params, spec, first_only=True)

    def fine(params, spec):
        return "fine"

    for wrong, hint in ((helper, "calls `validate_parameters`"), (names_only, "is a str, not an int"), (bool_is_int, "bool is a subclass of int"),
                        (no_suggestion, "get_close_matches"), (first_only, "report every problem"), (exact_float, "an int is a fine float"),
                        (this_notebooks_names, "read the types from `spec`")):
        fails(checks.check_ex08_task1, wrong, hint=hint)
    message = fails(checks.check_ex08_task1, fine, hint="list of strings")
    assert "there is" not in message and "there are" not in message  # no expected count of a case


# ---------------------------------------------------------------- task 2 · the t interval of a mean


def t_interval(values, quantile=None, ddof=1, root=True):
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - ddof))
    q = EX08_T95.get(n - 1, 1.96) if quantile is None else quantile(n)
    return mean - q * std / (math.sqrt(n) if root else n), mean + q * std / (math.sqrt(n) if root else n)


def test_ex08_task2_exact_t_quantiles_pass_and_z_population_std_wrong_df_s_over_n_and_helpers_fail():
    from scipy import stats

    assert "t = 4.303" in passes(checks.check_ex08_task2, t_interval)
    assert t_interval([0.70, 0.74, 0.72]) == pytest.approx(tuple(mean_interval([0.70, 0.74, 0.72])[k] for k in ("low", "high")))

    def exact(values):  # scipy's quantile (4.3027 for 2 df) instead of the table's 4.303: a right answer
        return t_interval(values, quantile=lambda n: stats.t.ppf(0.975, n - 1))

    passes(checks.check_ex08_task2, exact)

    def helper(values):
        found = mean_interval(values)
        return found["low"], found["high"]

    def scipy_helper(values):
        mean = sum(values) / len(values)
        return stats.t.interval(0.95, len(values) - 1, loc=mean, scale=stats.sem(values))

    fails(checks.check_ex08_task2, helper, hint="calls `mean_interval`")
    fails(checks.check_ex08_task2, scipy_helper, hint="calls `interval`")
    fails(checks.check_ex08_task2, lambda v: t_interval(v, quantile=lambda n: 1.96), hint="1.96 is the normal distribution's quantile")
    fails(checks.check_ex08_task2, lambda v: t_interval(v, ddof=0), hint="sample standard deviation")
    fails(checks.check_ex08_task2, lambda v: t_interval(v, quantile=lambda n: EX08_T95[n]), hint="n - 1 degrees of freedom")
    fails(checks.check_ex08_task2, lambda v: t_interval(v, root=False), hint="s / sqrt(n), not s / n")
    message = fails(checks.check_ex08_task2, lambda v: (0.0, 1.0), hint="not the 95% t interval")
    assert "want" not in message
    fails(checks.check_ex08_task2, lambda v: sum(v) / len(v), hint="(low, high)")


# ---------------------------------------------------------------- task 3 · seeds needed


def seeds(std, half, quantile=lambda n: EX08_T95.get(n - 1, 1.96)):
    n = 2
    while quantile(n) * std / math.sqrt(n) > half:
        n += 1
    return n


def test_ex08_task3_the_normal_approximation_wrong_df_and_one_run_fail_exact_t_passes():
    from scipy import stats

    assert "7 runs" in passes(checks.check_ex08_task3, seeds)
    passes(checks.check_ex08_task3, lambda s, h: seeds(s, h, quantile=lambda n: stats.t.ppf(0.975, n - 1)))
    fails(checks.check_ex08_task3, lambda s, h: max(2, math.ceil((1.96 * s / h) ** 2)), hint="normal approximation")
    fails(checks.check_ex08_task3, lambda s, h: seeds(s, h, quantile=lambda n: 1.96), hint="normal approximation")
    fails(checks.check_ex08_task3, lambda s, h: seeds(s, h, quantile=lambda n: EX08_T95.get(n, 1.96)), hint="n - 1 degrees of freedom")
    message = fails(checks.check_ex08_task3, lambda s, h: 1, hint="at least 2")
    assert "fewest runs is" not in message


# ---------------------------------------------------------------- task 4 · choose a setting


def choose(rows, key="validation", pick=lambda runs: sum(runs.values()) / len(runs), quantile=None, paired=True, against="runner-up"):
    runs = {}
    for row in rows:
        runs.setdefault(row["setting"], {})[row["seed"]] = row[key]
    score = {name: pick(r) for name, r in runs.items()}
    order = sorted(score, key=score.get, reverse=True)
    best, other = order[0], order[1] if against == "runner-up" else order[-1]
    if paired:
        diffs = [runs[best][s] - runs[other][s] for s in runs[best]]
        return best, t_interval(diffs, quantile)[0] > 0
    return best, t_interval(list(runs[best].values()), quantile)[0] > t_interval(list(runs[other].values()), quantile)[1]


def test_ex08_task4_test_split_best_run_z_unpaired_worst_and_the_printed_answer_fail():
    assert passes(checks.check_ex08_task4, choose).startswith("right on 6 practice tables; on the table above lora r=16")
    fails(checks.check_ex08_task4, lambda rows: choose(rows, key="test"), hint="choose on validation")
    fails(checks.check_ex08_task4, lambda rows: choose(rows, pick=lambda r: max(r.values())), hint="best single run")
    fails(checks.check_ex08_task4, lambda rows: choose(rows, quantile=lambda n: 1.96), hint="not 1.96")
    fails(checks.check_ex08_task4, lambda rows: choose(rows, paired=False), hint="pair the runs by seed")
    fails(checks.check_ex08_task4, lambda rows: choose(rows, against="worst"), hint="runner-up")
    message = fails(checks.check_ex08_task4, lambda rows: ("lora r=16", False), hint="take the highest mean")  # the printed answer, whatever the table
    assert "'B'" not in message and "'Y'" not in message  # the failure does not name the setting to pick
    fails(checks.check_ex08_task4, lambda rows: ("lora r=16", 0), hint="shown True or False")


def test_ex08_the_visible_table_has_the_test_trap_and_no_shown_lead():
    assert choose(EX08_SEED_TABLE) == ("lora r=16", False) and choose(EX08_SEED_TABLE, key="test")[0] == "dora r=16"


# ---------------------------------------------------------------- task 5 · the sweep whose rows are all the same


def _write_fixed(classmate, path, parameters_source, body_prefix="lora_alpha = 2 * lora_r\n"):
    nb = nbformat.read(classmate, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    body = nb.cells[nb.cells.index(cell) + 1]
    cell.source, body.source = parameters_source, body_prefix + body.source
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="module")
def ex08():
    """The task's files inside the course folder (the judge reads what the learner wrote there, as the grader does)."""
    paths.runs_dir().mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="test-ex08-", dir=paths.runs_dir()))
    classmate = checks.ex08_classmate_notebook(folder / "classmate.ipynb")
    fixed = _write_fixed(classmate, folder / "fixed.ipynb", 'profile = "smoke"\nlora_r = 8')
    sweep = run_sweep(fixed, {"lora_r": [4, 8, 16]}, profile="smoke", output_dir=folder / "sweep", progress=False)
    yield folder, classmate, fixed, sweep
    shutil.rmtree(folder, ignore_errors=True)


RIGHT = {"unknown_parameter": "rank", "derived_parameter": "lora_alpha"}


def test_ex08_task5_the_classmates_sweep_shows_the_symptom(ex08):
    folder, classmate, _, _ = ex08
    rows = checks.ex08_classmate_sweep(classmate, [4, 16], folder / "classmate-sweep")
    assert [(r["rank"], r["lora_r"], r["lora_alpha"]) for r in rows] == [(4, 8, 16), (16, 8, 16)]


def test_ex08_task5_half_diagnoses_guessed_causes_and_half_fixes_fail(ex08, tmp_path):
    folder, classmate, fixed, sweep = ex08
    assert "both faults named and fixed" in passes(checks.check_ex08_task5, RIGHT, fixed, sweep)
    check = checks.check_ex08_task5
    for hidden, case in ((False, check.practice), (True, grading_case(check))):  # each run once; the diagnosis judged on its data
        data = check.collected(case["inputs"], RIGHT, fixed, sweep)
        for causes, hint in (({"unknown_parameter": "rank"}, "not what broke this sweep"), ({"derived_parameter": "lora_alpha"}, "not what broke"),
                             ({**RIGHT, "same_seed": "seed"}, "not what broke"), ({**RIGHT, "unknown_parameter": "lora_r"}, "not what broke"),
                             ({**RIGHT, "derived_parameter": "lora_r"}, "not what broke"), (set(RIGHT), "should be a dict"),
                             ({"rank": "lora_r"}, "pick names from")):
            with pytest.raises(checks.CheckFailed, match=hint) as info:
                check.judged({**data, "causes": describe(causes)}, Case(case["inputs"], case["expected"], hidden=hidden, workspace=paths.project_root()))
            assert "not what broke" not in hint or ("unknown_parameter" not in str(info.value) and "derived_parameter" not in str(info.value))  # never names a cause
    fails(checks.check_ex08_task5, RIGHT, classmate, sweep, hint="still computes 'lora_alpha'")  # diagnosed, not fixed
    constant = _write_fixed(classmate, folder / "constant.ipynb", 'profile = "smoke"\nlora_r = 8\nlora_alpha = 16', body_prefix="")
    fails(checks.check_ex08_task5, RIGHT, constant, sweep, hint="alpha must follow the rank")
    practice_only = _write_fixed(classmate, folder / "practice_only.ipynb", 'profile = "smoke"\nlora_r = 8', body_prefix="lora_alpha = 4\n")
    with pytest.raises(checks.CheckFailed, match="alpha must follow the rank"):  # right at the practice rank only: the grader's rank shows it
        checks.check_ex08_task5.verify_case(grading_case(checks.check_ex08_task5), RIGHT, practice_only, sweep, hidden=True)
    no_profile = _write_fixed(classmate, folder / "no_profile.ipynb", "lora_r = 8")
    fails(checks.check_ex08_task5, RIGHT, no_profile, sweep, hint="cannot be run with lora_r=")
    own_loop = checks.ex08_classmate_sweep(fixed, [4, 8, 16], folder / "own-loop")  # papermill directly: no validation
    fails(checks.check_ex08_task5, RIGHT, fixed, own_loop, hint="what ftcourse.course.sweep.run_sweep returns")
    other = _write_fixed(classmate, folder / "other.ipynb", 'profile = "smoke"\nlora_r = 8')
    fails(checks.check_ex08_task5, RIGHT, other, sweep, hint="ran another notebook")
    outside = _write_fixed(classmate, tmp_path / "fixed.ipynb", 'profile = "smoke"\nlora_r = 8')
    fails(checks.check_ex08_task5, RIGHT, outside, sweep, hint="not a file in your course folder")
    one_point = run_sweep(fixed, {"lora_r": [8]}, profile="smoke", output_dir=folder / "one-point", progress=False)
    fails(checks.check_ex08_task5, RIGHT, fixed, one_point, hint="at least 3 values")

