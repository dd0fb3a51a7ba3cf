"""Checks of exercise 08, experiments (``solutions/ex08_experiments.ipynb``).

Parameter validation by hand, the t interval of a mean over seeds, how many seeds a comparison needs, choosing a
setting from a seed table, and a sweep that silently ran one setting. Every task follows the grading protocol
(``core``'s docstring): the practice cases are here; the hidden inputs and expected answers the grader uses are in
``solutions/hidden/ex08.json``.
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ftcourse.course.checks.core import Case, CheckFailed, describe, expect, forbid_source_helpers, graded_check, output_of, outputs_of, run_learner
from ftcourse.metrics import T95_QUANTILES

__all__ = [
    "check_ex08_task1", "check_ex08_task2", "check_ex08_task3", "check_ex08_task4", "check_ex08_task5", "EX08_CAUSES",
    "ex08_classmate_notebook", "ex08_classmate_sweep", "EX08_SEED_TABLE", "EX08_SPEC", "EX08_T95",
]

def _ex08_spec(*rows: tuple[str, str, str, str]) -> dict[str, dict[str, str]]:
    """A spec as ftcourse.course.experiments.parameters_of returns it, from (name, default's source, type, help) rows."""
    return {name: {"default": default, "type": kind, "help": text} for name, default, kind, text in rows}


#: The parameters of notebooks/experiments/lora_experiment.ipynb as ftcourse.course.experiments.parameters_of reads them (task 1).
EX08_SPEC = _ex08_spec(
    ("profile", '"auto"', "str", "smoke | cpu | gpu | auto (gpu when CUDA is present, else cpu)"),
    ("model_name", "None", "any", "None: the profile's model (embedded; gpu: SmolLM2-360M-Instruct when cached or online); or any Hub id / local folder"),
    ("peft_method", '"lora"', "str", "any method of ftcourse.peft_methods: lora, dora, rslora, qlora, ia3, prompt_tuning, ..."),
    ("lora_r", "16", "int", "LoRA rank"),
    ("learning_rate", "None", "any", "None: the method's default"),
    ("max_steps", "None", "any", "None: the profile's"),
    ("seed", "42", "int", ""),
)
_EX08_OTHER_SPEC = _ex08_spec(("profile", '"smoke"', "str", ""), ("learning_rate", "0.001", "float", ""), ("use_bf16", "False", "bool", ""),
                              ("target_modules", '["q_proj", "v_proj"]', "list", ""), ("epochs", "3", "int", ""))
_EX08_ANY_VALUE = "a parameter whose default is None has type 'any': every value is fine."
#: Task 1's practice cases: (spec, params, number of problems, a name one problem must mention, the rule the case tests).
_EX08_PARAM_CASES = [
    (EX08_SPEC, {"peft_method": "dora", "lora_r": 8}, 0, None, "known names with values of their default's type are fine."),
    (EX08_SPEC, {"lora_rank": 8}, 1, "lora_r", "a name the notebook does not have is a problem: papermill would only warn and train the default."),
    (EX08_SPEC, {"lora_r": "8"}, 1, None, "compare the value's type with spec[name]['type']: '8' is a str, not an int."),
    (EX08_SPEC, {"lora_r": True}, 1, None,
     "True is not a rank: bool is a subclass of int in Python (isinstance(True, int) is True), so reject a bool unless the type is 'bool'."),
    (EX08_SPEC, {"learning_rate": 3e-4, "max_steps": 10, "model_name": "HuggingFaceTB/SmolLM2-135M"}, 0, None, _EX08_ANY_VALUE),
    (EX08_SPEC, {"lora_rank": 8, "seed": "1", "lora_r": 4}, 2, "lora_r", "report every problem, not only the first one."),
    (_EX08_OTHER_SPEC, {"learning_rate": 1, "use_bf16": True, "target_modules": ["q_proj"], "epochs": 2}, 0, None,
     "an int is a fine float (1 == 1.0): accept an int where the type is 'float'; read the types from `spec`, not from a list of names."),
    (_EX08_OTHER_SPEC, {"learning_rate": "1e-3"}, 1, None, "'1e-3' is a str: a float parameter needs a number."),
    (_EX08_OTHER_SPEC, {"use_bf16": 1}, 1, None, "1 is an int, not a bool: a 'bool' parameter needs True or False."),
    (_EX08_OTHER_SPEC, {"epochs": 2.5}, 1, None, "2.5 is a float, not an int."),
    (_EX08_OTHER_SPEC, {"target_modules": "q_proj"}, 1, None, "a 'list' parameter needs a list, not a str."),
    (_EX08_OTHER_SPEC, {"lerning_rate": 1e-3}, 1, "learning_rate", "check the names against the given `spec` (here another notebook's)."),
]


@graded_check({"inputs": {"cases": [[spec, params] for spec, params, *_ in _EX08_PARAM_CASES]},
               "expected": {"cases": [{"count": count, "name": name, "rule": rule} for _, _, count, name, rule in _EX08_PARAM_CASES]}})
def check_ex08_task1(inputs, parameter_problems) -> dict:
    """``parameter_problems(params, spec)``: one message per unknown name or wrong-typed value; [] when all is fine."""
    return {"outputs": [run_learner(parameter_problems, dict(params), {k: dict(v) for k, v in spec.items()}) for spec, params in inputs["cases"]]}


@check_ex08_task1.judge
def _judge_task1(data: dict, case: Case) -> str:
    forbid_source_helpers(case, "parameter_problems", {"validate_parameters": "ftcourse.course.experiments.validate_parameters",
                                                       "inspect_notebook": "papermill.inspect_notebook"},
                          "write the checks yourself from `spec` (names and types): that is the exercise.")
    cases = case.inputs["cases"]
    outputs = outputs_of(data, len(cases), "parameter_problems", "define def parameter_problems(params, spec): ...")
    for (_, params), want, (got, _) in zip(cases, case.expected["cases"], outputs):
        expect(isinstance(got, list) and all(isinstance(p, str) for p in got), f"parameter_problems returns {got!r:.80}, not a list of messages.",
               "return a list of strings, one per problem ([] when every parameter is fine).")
        expect(len(got) == want["count"], f"parameter_problems({params}, spec) reports {len(got)} problem(s) on a {case.kind} case: "
               "not the number of problems these parameters have.", want["rule"])
        expect(want["name"] is None or any(re.search(rf"\b{re.escape(want['name'])}\b", p) for p in got),
               f"for {params} no message names the parameter of `spec` that was meant.",
               "name the closest parameter of `spec` in the message: difflib.get_close_matches(name, list(spec), n=1).")
    return (f"right on {len(cases)} {case.kind} cases: typos (with a suggestion), wrong types, bools posing as ints, ints as floats"
            + (" (the grader runs more cases)." if not case.hidden else "."))


#: Two-sided 95% quantiles of Student's t: degrees of freedom -> t (beyond 30 degrees of freedom use 1.96).
EX08_T95 = dict(enumerate(T95_QUANTILES, start=1))


def _t95(df: int) -> float:
    return EX08_T95.get(df, 1.96)


def _ex08_interval(values, quantile: float, ddof: int = 1, root: bool = True) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - ddof))
    half = quantile * std / (math.sqrt(n) if root else n)
    return mean - half, mean + half


def _same_interval(got: tuple[float, float], want: tuple[float, float]) -> bool:
    """Same centre, and half-widths within 0.1% (a t quantile from scipy, 4.3027, and the table's 4.303 are both right)."""
    half = (want[1] - want[0]) / 2
    return abs((got[0] + got[1]) / 2 - (want[0] + want[1]) / 2) <= 1e-9 + 1e-6 * abs(half) and abs((got[1] - got[0]) / 2 - half) <= 1e-3 * abs(half) + 1e-12


@graded_check({"inputs": {"cases": [[0.70, 0.74, 0.72], [0.61, 0.65], [0.80, 0.82, 0.79, 0.85, 0.81], [0.5 + 0.01 * (i % 5) for i in range(12)]]},
               "expected": {}})
def check_ex08_task2(inputs, mean_ci) -> dict:
    """``mean_ci(values)``: the 95% confidence interval (low, high) of the mean of repeated runs (Student's t, n - 1 df)."""
    return {"outputs": [run_learner(mean_ci, list(values)) for values in inputs["cases"]]}


@check_ex08_task2.judge
def _judge_task2(data: dict, case: Case) -> str:
    forbid_source_helpers(case, "mean_ci", {"mean_interval": "ftcourse.metrics.mean_interval", "interval": "scipy.stats.t.interval",
                                            "tconfint_mean": "statsmodels.stats.weightstats.DescrStatsW.tconfint_mean"},
                          "compute the mean, the sample standard deviation and t yourself (a quantile from EX08_T95 or scipy.stats.t.ppf is fine).")
    cases = case.inputs["cases"]
    for values, (got, _) in zip(cases, outputs_of(data, len(cases), "mean_ci", "define def mean_ci(values): ... returning (low, high)")):
        n = len(values)
        expect(isinstance(got, list) and len(got) == 2 and all(isinstance(v, (int, float)) for v in got),
               f"mean_ci returns {got!r:.80}, not (low, high).", "return a tuple (low, high).")
        got = (float(got[0]), float(got[1]))
        if _same_interval(got, _ex08_interval(values, _t95(n - 1))):
            continue
        wrongs = {"z": _ex08_interval(values, 1.96), "population": _ex08_interval(values, _t95(n - 1), ddof=0),
                  "df": _ex08_interval(values, _t95(n)), "n": _ex08_interval(values, _t95(n - 1), root=False)}
        which = next((k for k, v in wrongs.items() if _same_interval(got, v)), None)
        hint = {"z": f"1.96 is the normal distribution's quantile; with {n} runs the mean's spread is estimated from the runs themselves, "
                     f"so use Student's t with n - 1 = {n - 1} degrees of freedom: EX08_T95[{n - 1}].",
                "population": "use the sample standard deviation (divide the squared deviations by n - 1, not n): the mean was estimated from the same runs.",
                "df": f"Student's t has n - 1 degrees of freedom: EX08_T95[{n - 1}], not EX08_T95[{n}].",
                "n": "the standard error of a mean is s / sqrt(n), not s / n.",
                None: "mean ± t · s / sqrt(n), with s the sample standard deviation (n - 1) and t = EX08_T95[n - 1]."}[which]
        expect(False, f"mean_ci({values}) = ({got[0]:.4f}, {got[1]:.4f}) on a {case.kind} case: not the 95% t interval of the mean.", hint)
    return f"equals the t interval on {len(cases)} {case.kind} cases ({min(map(len, cases))} to {max(map(len, cases))} runs): with 3 seeds t = {_t95(2)}, not 1.96" + (
        "." if case.hidden else "; the grader runs more cases.")


def _ex08_seeds(std: float, half_width: float, quantile=lambda n: _t95(n - 1)) -> int:
    n = 2
    while quantile(n) * std / math.sqrt(n) > half_width:
        n += 1
    return n


@graded_check({"inputs": {"cases": [[0.02, 0.02], [0.01, 0.02], [0.015, 0.01], [0.03, 0.015], [0.001, 0.02]]}, "expected": {}})
def check_ex08_task3(inputs, seeds_needed) -> dict:
    """``seeds_needed(std, half_width)``: the fewest runs (at least 2) whose 95% t interval is at most ± half_width."""
    return {"outputs": [run_learner(seeds_needed, std, half) for std, half in inputs["cases"]]}


@check_ex08_task3.judge
def _judge_task3(data: dict, case: Case) -> str:
    cases = case.inputs["cases"]
    for (std, half), (got, _) in zip(cases, outputs_of(data, len(cases), "seeds_needed", "define def seeds_needed(std, half_width): ...")):
        if got == _ex08_seeds(std, half):
            continue
        if got == max(2, math.ceil((1.96 * std / half) ** 2)) or got == _ex08_seeds(std, half, lambda n: 1.96):
            hint = ("that is the normal approximation n = (1.96 · s / h)². With few runs the interval uses t with n - 1 degrees of "
                    "freedom, which is much larger than 1.96 (4.30 for 3 runs): try n = 2, 3, … until EX08_T95[n - 1] · s / sqrt(n) <= h.")
        elif got == _ex08_seeds(std, half, lambda n: _t95(n)):
            hint = "n runs give n - 1 degrees of freedom: use EX08_T95[n - 1]."
        elif isinstance(got, int) and got < 2:
            hint = "one run has no spread to estimate: at least 2."
        else:
            hint = "try n = 2, 3, … and return the first n with EX08_T95[n - 1] · std / sqrt(n) <= half_width (1.96 beyond 30 df)."
        expect(False, f"seeds_needed(std={std}, half_width={half}) = {got!r} on a {case.kind} case: not the fewest runs.", hint)
    return (f"right on {len(cases)} {case.kind} cases: seeds with a spread of 0.02 pin the mean to ±0.02 with "
            f"{_ex08_seeds(0.02, 0.02)} runs, not the {math.ceil(1.96 ** 2)} the normal approximation promises" + ("." if case.hidden else "; the grader runs more cases."))


def _ex08_table(settings: dict[str, tuple[list[float], list[float]]]) -> list[dict]:
    """Rows {setting, seed, validation, test} from setting -> (validation accuracies, test accuracies) by seed 1, 2, …"""
    return [{"setting": name, "seed": seed, "validation": v, "test": t}
            for name, (val, test) in settings.items() for seed, (v, t) in enumerate(zip(val, test), start=1)]


#: Task 4's table: validation and test accuracy of three settings trained with seeds 1-3.
EX08_SEED_TABLE = _ex08_table({
    "lora r=4": ([0.800, 0.815, 0.790], [0.805, 0.830, 0.800]),
    "lora r=16": ([0.830, 0.845, 0.815], [0.815, 0.820, 0.805]),
    "dora r=16": ([0.825, 0.850, 0.805], [0.840, 0.855, 0.830]),
})
#: Practice tables of task 4 besides EX08_SEED_TABLE, each with a trap: the best on test is another setting; one lucky seed;
#: 3 seeds where 1.96 would call the lead shown; settings whose separate intervals overlap while every seed favours one; three settings.
_EX08_PRACTICE_TABLES = [
    _ex08_table({"A": ([0.80, 0.81, 0.79, 0.80], [0.88, 0.87, 0.89, 0.88]), "B": ([0.84, 0.85, 0.83, 0.86], [0.82, 0.81, 0.83, 0.82])}),
    _ex08_table({"A": ([0.95, 0.70, 0.72], [0.90, 0.70, 0.71]), "B": ([0.83, 0.84, 0.82], [0.82, 0.83, 0.82])}),
    _ex08_table({"A": ([0.80, 0.78, 0.82], [0.80, 0.79, 0.81]), "B": ([0.81, 0.81, 0.84], [0.81, 0.80, 0.83])}),
    _ex08_table({"A": ([0.70, 0.80, 0.75, 0.85, 0.72], [0.70, 0.80, 0.75, 0.85, 0.72]),
                 "B": ([0.73, 0.84, 0.78, 0.90, 0.76], [0.73, 0.84, 0.78, 0.90, 0.76])}),
    _ex08_table({"A": ([0.80, 0.82, 0.81], [0.80, 0.82, 0.81]), "B": ([0.85, 0.86, 0.84], [0.85, 0.86, 0.84]),
                 "C": ([0.84, 0.86, 0.83], [0.84, 0.86, 0.83])}),
]
#: What a wrong answer did (the rule that reproduces it) -> the hint.
_EX08_CHOICE_HINTS = {
    "test": "choose on validation accuracy; the test split is for reporting the chosen setting once (choosing on it overstates its result).",
    "max": "compare the mean over seeds: the best single run is partly luck (a lucky seed).",
    "z": "with n seeds the interval of the mean difference uses t with n - 1 degrees of freedom (4.30 for 3 seeds), not 1.96: your mean_ci of task 2.",
    "worst": "the question is whether the best setting beats the runner-up (the second-best mean), not the worst one.",
    "unpaired": "the settings were trained with the same seeds: pair the runs by seed and take the interval of the differences. "
                "Two separate intervals that overlap do not show that there is no difference.",
}


def _ex08_choice(rows: list[dict], key: str = "validation", pick=None, quantile=None, paired: bool = True, against: int = 1) -> tuple[str, bool]:
    """The setting with the best mean ``key`` accuracy, and whether its paired 95% t interval over the runner-up excludes 0.

    The other arguments give the tempting wrong rules: ``pick`` scores a setting's runs (default: their mean), ``quantile``
    replaces t, ``paired=False`` compares the two settings' separate intervals, ``against=-1`` compares with the worst setting.
    """
    by: dict[str, dict] = {}
    for row in rows:
        by.setdefault(row["setting"], {})[row["seed"]] = row[key]
    score = {name: (pick or (lambda runs: sum(runs) / len(runs)))(list(runs.values())) for name, runs in by.items()}
    ranked = sorted(score, key=score.get, reverse=True)
    best, other = ranked[0], ranked[against]

    def ci(values):
        return _ex08_interval(values, _t95(len(values) - 1) if quantile is None else quantile)

    if not paired:
        return best, ci(list(by[best].values()))[0] > ci(list(by[other].values()))[1]
    return best, ci([by[best][seed] - by[other][seed] for seed in by[best] if seed in by[other]])[0] > 0


def _ex08_practice_choices() -> dict:
    tables = [EX08_SEED_TABLE, *_EX08_PRACTICE_TABLES]
    return {"inputs": {"tables": tables}, "expected": {"choices": [list(_ex08_choice(rows)) for rows in tables]}}


@graded_check(_ex08_practice_choices)
def check_ex08_task4(inputs, choose_setting) -> dict:
    """``choose_setting(rows)`` -> (the setting with the best mean validation accuracy, whether its lead over the runner-up is shown)."""
    return {"outputs": [run_learner(choose_setting, [dict(r) for r in rows]) for rows in inputs["tables"]]}


@check_ex08_task4.judge
def _judge_task4(data: dict, case: Case) -> str:
    tables = case.inputs["tables"]
    outputs = outputs_of(data, len(tables), "choose_setting", "define def choose_setting(rows): ... returning (setting, shown)")
    for number, (rows, (best, lead), (got, _)) in enumerate(zip(tables, case.expected["choices"], outputs), start=1):
        expect(isinstance(got, list) and len(got) == 2 and isinstance(got[1], bool),
               f"choose_setting returns {got!r:.80}.", "return (setting, shown) with shown True or False.")
        setting, shown = got
        where = f"on {case.kind} table {number} of {len(tables)}"
        rules = {"test": _ex08_choice(rows, key="test")[0], "max": _ex08_choice(rows, pick=max)[0]}
        traps = " ".join(_EX08_CHOICE_HINTS[k] for k, v in rules.items() if v == setting != best)
        expect(setting == best, f"{where} you choose {setting!r}: not the setting to pick.",
               traps or "average each setting's validation accuracy over its seeds and take the highest mean.")
        rules = {"z": _ex08_choice(rows, quantile=1.96)[1], "worst": _ex08_choice(rows, against=-1)[1], "unpaired": _ex08_choice(rows, paired=False)[1]}
        traps = " ".join(_EX08_CHOICE_HINTS[k] for k, v in rules.items() if v == shown != lead)
        expect(shown == lead, f"{where} you say the lead of {setting!r} over the runner-up is {'' if shown else 'not '}shown; it is the other way round.",
               traps or "differences per seed (best − runner-up, same seed), then your mean_ci: shown when the low end is above 0.")
    best, shown = _ex08_choice(EX08_SEED_TABLE)
    return (f"right on {len(tables)} {case.kind} tables" + ("" if case.hidden else f"; on the table above {best} has the best validation mean, and "
            f"its lead is {'' if shown else 'not '}shown (the grader runs other tables)") + ".")


#: Exercise 08, task 5: what may have broken the classmate's sweep.
EX08_CAUSES = {
    "unknown_parameter": "the sweep passed a parameter name the notebook does not have",
    "derived_parameter": "the parameters cell computes a value from another parameter",
    "same_seed": "every point used the same seed",
    "skipped_points": "the sweep skipped points that had already run",
    "kernel": "the points ran in the wrong Jupyter kernel",
}
_EX08_DERIVED = ("papermill injects the new values in a cell AFTER the parameters cell, so a value computed from a parameter "
                 "inside that cell keeps the default's value: move the computation to the next cell.")
_EX08_BODY = '''from ftcourse.course.experiments import record_metrics

# LoRA on q_proj (576 -> 576) and v_proj (576 -> 192) in each of the embedded model's 30 blocks: r * (d_in + d_out) per layer
trainable = lora_r * ((576 + 576) + (576 + 192)) * 30
record_metrics(lora_r=lora_r, lora_alpha=lora_alpha, scale=lora_alpha / lora_r, trainable=trainable)'''


def ex08_classmate_notebook(path: str | Path) -> Path:
    """Write the classmate's experiment notebook (one point: LoRA's size and scale at a rank) to ``path``. Do not fix it here."""
    import nbformat

    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nb.cells = [nbformat.v4.new_markdown_cell("# LoRA size and scale at one rank"),
                nbformat.v4.new_code_cell('profile = "smoke"\nlora_r = 8  # LoRA rank\nlora_alpha = 2 * lora_r  # twice the rank, as the course does',
                                          metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell(_EX08_BODY)]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def ex08_classmate_sweep(notebook: str | Path, ranks, folder: str | Path) -> list[dict]:
    """The classmate's sweep: papermill directly, one run per rank into ``folder``, each run's recorded metrics. Do not fix it here."""
    import os

    import papermill

    from ftcourse.course.experiments import METRICS_ENV, kernel_name

    rows, saved = [], os.environ.get(METRICS_ENV)
    try:
        for rank in ranks:
            out = Path(folder) / f"rank-{rank}"
            out.mkdir(parents=True, exist_ok=True)
            metrics = out / "metrics.json"
            metrics.unlink(missing_ok=True)
            os.environ[METRICS_ENV] = str(metrics)
            papermill.execute_notebook(str(notebook), str(out / Path(notebook).name), parameters={"rank": rank},
                                       kernel_name=kernel_name(), progress_bar=False)
            rows.append({"rank": rank, **json.loads(metrics.read_text())})
    finally:
        if saved is None:
            os.environ.pop(METRICS_ENV, None)
        else:
            os.environ[METRICS_ENV] = saved
    return rows


def _ex08_point(rank: int) -> dict:
    return {"lora_r": rank, "lora_alpha": 2 * rank, "scale": 2.0, "trainable": rank * 57_600}


def _is_literal(text: str) -> bool:
    try:
        ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return False
    return True


def _in_workspace(path: Any, root: Path) -> str | None:
    """``path`` relative to the workspace ``root`` (as the judge's ``case.file`` reads it), or None when it is outside."""
    try:
        return Path(path).resolve().relative_to(root).as_posix()
    except (TypeError, ValueError, OSError):
        return None


def _run_fixed(notebook: Path, rank: int) -> dict:
    """Run the learner's fixed notebook at ``rank`` (in their sandbox): its error or refusal, and the metrics it recorded."""
    import tempfile

    from ftcourse.course.experiments import run_notebook
    from ftcourse.errors import CourseError

    with tempfile.TemporaryDirectory() as folder:
        try:
            run = run_notebook(notebook, folder, "smoke", {"lora_r": rank}, timeout=300, progress=False)
        except CourseError as exc:
            return {"refused": str(exc.what)}
        metrics = Path(folder) / f"{notebook.stem}.metrics.json"
        return {"error": None if run.error is None else str(run.error), "metrics": json.loads(metrics.read_text()) if metrics.is_file() else None}


@graded_check({"inputs": {"rank": 2}, "expected": {"faults": {"unknown_parameter": "rank", "derived_parameter": "lora_alpha"}}})
def check_ex08_task5(inputs, causes, notebook, sweep) -> dict:
    """``causes``: name from EX08_CAUSES -> the parameter that shows it; ``notebook``: the fixed experiment; ``sweep``: run_sweep of it over lora_r."""
    from ftcourse import paths
    from ftcourse.course.sweep import SweepResult

    root = paths.project_root()
    data = {"causes": describe(causes), "root": str(root), "notebook": _in_workspace(notebook, root),
            "sweep": {"type": type(sweep).__name__, "folder": _in_workspace(sweep.folder, root) if isinstance(sweep, SweepResult) else None}}
    if data["notebook"] is not None and Path(notebook).is_file():
        data["run"] = _run_fixed(Path(notebook), int(inputs["rank"]))
    return data


def _judge_causes(data: dict, faults: Mapping[str, str]) -> None:
    entry = data.get("causes")
    shape = ("`causes` should be a dict: each name from EX08_CAUSES that broke the sweep -> the parameter (a str) that shows it.",
             f"pick names from {sorted(EX08_CAUSES)}; for each, the parameter in whose handling you saw the fault.")
    expect(not (isinstance(entry, dict) and entry.get("opaque")), *shape)
    causes, _ = output_of(entry, "causes")
    expect(isinstance(causes, dict) and set(causes) <= set(EX08_CAUSES) and all(isinstance(v, str) for v in causes.values()), *shape)
    expect(causes == dict(faults), f"`causes` names {len(causes)} cause(s) with their parameters: not what broke this sweep (a wrong name, "
           "a missing one, or the wrong parameter for one).",
           "read papermill's warnings in the sweep's output (what did it do with the value it was given?) and the classmate's parameters "
           "cell (where does papermill put the new values, and what was computed before they arrived?). Name every cause, nothing else.")


def _judge_notebook(data: dict, case: Case) -> int:
    """Judge the fixed notebook's file and its run at the case's rank; the rank."""
    import tempfile

    import nbformat

    from ftcourse.course.experiments import parameters_of

    where = data.get("notebook")
    raw = case.file(where, cap=2**22) if isinstance(where, str) else None
    expect(raw is not None, "the fixed notebook is not a file in your course folder.",
           "write the fixed notebook with nbformat.write(nb, fixed), fixed = folder / 'fixed.ipynb', and pass that path.")
    try:
        nb = nbformat.reads(raw.decode("utf-8"), as_version=4)
    except Exception:  # not JSON, not a notebook, not UTF-8: the learner's file
        raise CheckFailed("the fixed notebook cannot be read as a notebook.", "write it with nbformat.write(nb, path).") from None
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    expect(len(tagged) == 1, f"the fixed notebook has {len(tagged)} cells tagged 'parameters'.", "keep exactly one: papermill injects its values after it.")
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / "fixed.ipynb"
        copy.write_bytes(raw)
        spec = parameters_of(copy)
    derived = [name for name, s in spec.items() if s["type"] == "any" and not _is_literal(s["default"])]
    expect(not derived, f"the parameters cell still computes {derived[0]!r} from another parameter." if derived else "", _EX08_DERIVED)
    expect("lora_r" in spec, "the fixed notebook has no parameter 'lora_r'.", "keep the notebook's own parameter names; fix the sweep's name instead.")
    rank, run = int(case.inputs["rank"]), data.get("run")
    expect(isinstance(run, dict), "the fixed notebook was not run by the check.", "pass the path of the fixed notebook you wrote.")
    expect("refused" not in run, f"the fixed notebook cannot be run with lora_r={rank}: {str(run.get('refused'))[:300]}",
           "keep the parameters cell's lines `profile = \"smoke\"` and `lora_r = 8`; only the derived value moves.")
    expect(run.get("error") is None, f"the fixed notebook fails at lora_r={rank}: {str(run.get('error'))[:300]}", "run it yourself with another rank.")
    recorded = run.get("metrics") if isinstance(run.get("metrics"), dict) else {}
    want = _ex08_point(rank)
    expect({k: recorded.get(k) for k in want} == want, f"run at lora_r={rank} the fixed notebook records lora_alpha={recorded.get('lora_alpha')!r}, "
           f"scale={recorded.get('scale')!r}: not twice the rank.", _EX08_DERIVED + " A fixed lora_alpha is no better: alpha must follow the rank.")
    return rank


def _same_notebook(recorded: Any, where: str, root: Any) -> bool:
    path = Path(str(recorded))
    if not path.is_absolute():
        return where.endswith(path.as_posix())
    try:
        return path.relative_to(str(root)).as_posix() == where
    except ValueError:
        return False


@check_ex08_task5.judge
def _judge_task5(data: dict, case: Case) -> str:
    from ftcourse.course.sweep import STATE

    _judge_causes(data, case.expected["faults"])
    rank = _judge_notebook(data, case)
    sweep = data.get("sweep") if isinstance(data.get("sweep"), dict) else {}
    expect(sweep.get("type") == "SweepResult", f"`sweep` is a {str(sweep.get('type'))[:80]}, not what ftcourse.course.sweep.run_sweep returns.",
           "sweep = run_sweep(fixed, {'lora_r': [...]}, profile=P.name, output_dir=...): it checks the parameter names first.")
    raw = case.file(f"{sweep.get('folder')}/{STATE}", cap=2**22) if isinstance(sweep.get("folder"), str) else None
    expect(raw is not None, f"the sweep's folder in your course folder holds no {STATE}.", "give run_sweep an output_dir inside the course folder (folder / 'fixed-sweep').")
    try:
        state = json.loads(raw)
        points = [(p["params"]["lora_r"], p["status"], p.get("metrics") or {}) for p in state["points"].values()]
    except (ValueError, KeyError, TypeError, AttributeError):
        raise CheckFailed(f"the sweep's {STATE} is not a sweep's state.", "let run_sweep write its folder; do not edit it.") from None
    expect(_same_notebook(state.get("notebook"), data["notebook"], data.get("root")), "the sweep ran another notebook, not your fixed one.", "sweep the fixed notebook.")
    expect(len({r for r, _, _ in points}) >= 3 and all(status == "ok" for _, status, _ in points),
           "the sweep should vary lora_r over at least 3 values, every point ok.", "grid = {'lora_r': [4, 8, 16]}.")
    bad = [(r, m.get("lora_alpha")) for r, _, m in points if m.get("lora_alpha") != 2 * r or m.get("scale") != 2.0]
    expect(not bad, f"the sweep's point lora_r={bad[0][0]} recorded lora_alpha={bad[0][1]}." if bad else "", _EX08_DERIVED)
    return f"both faults named and fixed: {len(points)} points with lora_alpha = 2 · lora_r (scale 2), and at lora_r={rank} too" + ("." if case.hidden else " (the grader runs it at another rank).")
