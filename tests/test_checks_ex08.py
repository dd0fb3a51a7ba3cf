"""Exercise 08's checks accept the right answers and reject the tempting wrong ones with a hint that teaches.

Task 5 runs real (two-cell) notebooks through papermill and ``run_sweep``; everything else is pure Python.
"""

from __future__ import annotations

import difflib
import math

import nbformat
import pytest

from ftcourse import paths
from ftcourse.course import checks
from ftcourse.course.checks import EX08_SEED_TABLE, EX08_SPEC, EX08_T95, CheckFailed
from ftcourse.course.experiments import parameters_of, validate_parameters
from ftcourse.course.sweep import run_sweep
from ftcourse.metrics import mean_interval


def _fails(check, *args, hint: str) -> None:
    with pytest.raises(CheckFailed) as info:
        check.verify(*args)
    assert hint in str(info.value), str(info.value)


def test_the_spec_is_lesson_08s_experiment_notebook():
    real = parameters_of(paths.notebooks_dir() / "experiments" / "lora_experiment.ipynb")
    assert EX08_SPEC == real


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


def test_task1_accepts_the_rules_and_rejects_each_tempting_shortcut():
    assert "12 hidden cases" in checks.check_ex08_task1.verify(problems)

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

    _fails(checks.check_ex08_task1, helper, hint="calls `validate_parameters`")
    _fails(checks.check_ex08_task1, names_only, hint="'8' is a str")
    _fails(checks.check_ex08_task1, lambda p, s: problems(p, s, bool_is_int=True), hint="bool is a subclass of int")
    _fails(checks.check_ex08_task1, lambda p, s: problems(p, s, suggest=False), hint="get_close_matches")
    _fails(checks.check_ex08_task1, lambda p, s: problems(p, s, first_only=True), hint="report every problem")
    _fails(checks.check_ex08_task1, exact_float, hint="an int is a fine float")
    _fails(checks.check_ex08_task1, this_notebooks_names, hint="read the types from `spec`")
    _fails(checks.check_ex08_task1, lambda p, s: "fine", hint="list of strings")


# ---------------------------------------------------------------- task 2 · the t interval of a mean


def interval(values, quantile=None, ddof=1, root=True):
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - ddof))
    q = EX08_T95.get(n - 1, 1.96) if quantile is None else quantile(n)
    return mean - q * std / (math.sqrt(n) if root else n), mean + q * std / (math.sqrt(n) if root else n)


def test_task2_accepts_students_t_and_rejects_z_population_std_and_wrong_degrees_of_freedom():
    assert "t = 4.303" in checks.check_ex08_task2.verify(interval)
    assert interval([0.70, 0.74, 0.72]) == pytest.approx(tuple(mean_interval([0.70, 0.74, 0.72])[k] for k in ("low", "high")))

    def helper(values):
        found = mean_interval(values)
        return found["low"], found["high"]

    _fails(checks.check_ex08_task2, helper, hint="calls `mean_interval`")
    _fails(checks.check_ex08_task2, lambda v: interval(v, quantile=lambda n: 1.96), hint="1.96 is the normal distribution's quantile")
    _fails(checks.check_ex08_task2, lambda v: interval(v, ddof=0), hint="sample standard deviation")
    _fails(checks.check_ex08_task2, lambda v: interval(v, quantile=lambda n: EX08_T95[n]), hint="n - 1 degrees of freedom")
    _fails(checks.check_ex08_task2, lambda v: interval(v, root=False), hint="s / sqrt(n), not s / n")
    _fails(checks.check_ex08_task2, lambda v: sum(v) / len(v), hint="(low, high)")


# ---------------------------------------------------------------- task 3 · seeds needed


def seeds(std, half, quantile=lambda n: EX08_T95.get(n - 1, 1.96)):
    n = 2
    while quantile(n) * std / math.sqrt(n) > half:
        n += 1
    return n


def test_task3_accepts_the_t_plan_and_rejects_the_normal_approximation():
    assert "7 runs" in checks.check_ex08_task3.verify(seeds)
    _fails(checks.check_ex08_task3, lambda s, h: max(2, math.ceil((1.96 * s / h) ** 2)), hint="normal approximation")
    _fails(checks.check_ex08_task3, lambda s, h: seeds(s, h, quantile=lambda n: 1.96), hint="normal approximation")
    _fails(checks.check_ex08_task3, lambda s, h: seeds(s, h, quantile=lambda n: EX08_T95.get(n, 1.96)), hint="n - 1 degrees of freedom")
    _fails(checks.check_ex08_task3, lambda s, h: 1, hint="at least 2")


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
        return best, interval(diffs, quantile)[0] > 0
    return best, interval(list(runs[best].values()), quantile)[0] > interval(list(runs[other].values()), quantile)[1]


def test_task4_accepts_the_paired_choice_on_validation_and_rejects_each_trap():
    assert checks.check_ex08_task4.verify(choose).startswith("right on 6 tables; here lora r=16")
    _fails(checks.check_ex08_task4, lambda rows: choose(rows, key="test"), hint="choose on validation")
    _fails(checks.check_ex08_task4, lambda rows: choose(rows, pick=lambda r: max(r.values())), hint="best single run")
    _fails(checks.check_ex08_task4, lambda rows: choose(rows, quantile=lambda n: 1.96), hint="not 1.96")
    _fails(checks.check_ex08_task4, lambda rows: choose(rows, paired=False), hint="pair the runs by seed")
    _fails(checks.check_ex08_task4, lambda rows: choose(rows, against="worst"), hint="runner-up")
    _fails(checks.check_ex08_task4, lambda rows: ("lora r=16", False), hint="hidden table")  # the printed answer, whatever the table
    _fails(checks.check_ex08_task4, lambda rows: ("lora r=16", 0), hint="shown True or False")


def test_the_visible_table_has_the_test_trap_and_no_shown_lead():
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
def ex08(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ex08")
    classmate = checks.ex08_classmate_notebook(folder / "classmate.ipynb")
    fixed = _write_fixed(classmate, folder / "fixed.ipynb", 'profile = "smoke"\nlora_r = 8')
    sweep = run_sweep(fixed, {"lora_r": [4, 8, 16]}, profile="smoke", output_dir=folder / "sweep", progress=False)
    return folder, classmate, fixed, sweep


RIGHT = {"unknown_parameter", "derived_parameter"}


def test_task5_the_classmates_sweep_shows_the_symptom(ex08):
    folder, classmate, _, _ = ex08
    rows = checks.ex08_classmate_sweep(classmate, [4, 16], folder / "classmate-sweep")
    assert [(r["rank"], r["lora_r"], r["lora_alpha"]) for r in rows] == [(4, 8, 16), (16, 8, 16)]


def test_task5_accepts_the_fix_and_rejects_half_diagnoses_and_half_fixes(ex08):
    folder, classmate, fixed, sweep = ex08
    assert "both faults named and fixed" in checks.check_ex08_task5.verify(RIGHT, fixed, sweep)
    _fails(checks.check_ex08_task5, {"unknown_parameter"}, fixed, sweep, hint="injects the new values in a cell AFTER")
    _fails(checks.check_ex08_task5, {"derived_parameter"}, fixed, sweep, hint="papermill only warns")
    _fails(checks.check_ex08_task5, RIGHT | {"same_seed"}, fixed, sweep, hint="nothing was skipped")
    _fails(checks.check_ex08_task5, {"rank"}, fixed, sweep, hint="pick from")
    _fails(checks.check_ex08_task5, RIGHT, classmate, sweep, hint="still computes 'lora_alpha'")  # diagnosed, not fixed
    constant = _write_fixed(classmate, folder / "constant.ipynb", 'profile = "smoke"\nlora_r = 8\nlora_alpha = 16', body_prefix="")
    _fails(checks.check_ex08_task5, RIGHT, constant, sweep, hint="alpha must follow the rank")
    no_profile = _write_fixed(classmate, folder / "no_profile.ipynb", "lora_r = 8")
    _fails(checks.check_ex08_task5, RIGHT, no_profile, sweep, hint="cannot be run with lora_r=2")
    own_loop = checks.ex08_classmate_sweep(fixed, [4, 8, 16], folder / "own-loop")  # papermill directly: no validation
    _fails(checks.check_ex08_task5, RIGHT, fixed, own_loop, hint="what ftcourse.course.sweep.run_sweep returns")
    other = _write_fixed(classmate, folder / "other.ipynb", 'profile = "smoke"\nlora_r = 8')
    _fails(checks.check_ex08_task5, RIGHT, other, sweep, hint="not your fixed notebook")
    one_point = run_sweep(fixed, {"lora_r": [8]}, profile="smoke", output_dir=folder / "one-point", progress=False)
    _fails(checks.check_ex08_task5, RIGHT, fixed, one_point, hint="at least 3 values")
