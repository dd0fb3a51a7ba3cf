"""Checks of exercise 08, experiments (``solutions/ex08_experiments.ipynb``).

Parameter validation by hand, the t interval of a mean over seeds, how many seeds a comparison needs, choosing a
setting from a seed table, and a sweep that silently ran one setting.
"""

from __future__ import annotations

import ast
import json
import math
import re
from pathlib import Path

from ftcourse.course.checks.core import CheckFailed, call_learner, expect, forbid_helpers, self_check
from ftcourse.errors import CourseError
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
#: Task 1's hidden cases: (spec, params, number of problems, a name one problem must mention, the rule the case tests).
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


@self_check
def check_ex08_task1(parameter_problems) -> str:
    """``parameter_problems(params, spec)``: one message per unknown name or wrong-typed value; [] when all is fine."""
    from ftcourse.course.experiments import validate_parameters

    expect(callable(parameter_problems), "`parameter_problems` is not a function.", "define def parameter_problems(params, spec): ...")
    forbid_helpers(parameter_problems, "parameter_problems", {"validate_parameters": validate_parameters},
                   "write the checks yourself from `spec` (names and types): that is the exercise.")
    for spec, params, count, names, rule in _EX08_PARAM_CASES:
        got = call_learner(parameter_problems, dict(params), {k: dict(v) for k, v in spec.items()}, name="parameter_problems")
        expect(isinstance(got, list) and all(isinstance(p, str) for p in got), f"parameter_problems returns {got!r:.80}, not a list of messages.",
               "return a list of strings, one per problem ([] when every parameter is fine).")
        expect(len(got) == count, f"parameter_problems({params}) finds {len(got)} problem(s); there {'is' if count == 1 else 'are'} {count}.", rule)
        expect(names is None or any(re.search(rf"\b{names}\b", p) for p in got), f"for {params} no message names {names!r}, the parameter that was meant.",
               "name the closest parameter of `spec` in the message: difflib.get_close_matches(name, list(spec), n=1).")
    return f"right on {len(_EX08_PARAM_CASES)} hidden cases: typos (with a suggestion), wrong types, bools posing as ints, ints as floats."


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


_EX08_CI_CASES = ([0.70, 0.74, 0.72], [0.61, 0.65], [0.80, 0.82, 0.79, 0.85, 0.81], [0.5 + 0.01 * (i % 5) for i in range(12)])


@self_check
def check_ex08_task2(mean_ci) -> str:
    """``mean_ci(values)``: the 95% confidence interval (low, high) of the mean of repeated runs (Student's t, n - 1 df)."""
    from ftcourse.metrics import mean_interval

    expect(callable(mean_ci), "`mean_ci` is not a function.", "define def mean_ci(values): ... returning (low, high).")
    forbid_helpers(mean_ci, "mean_ci", {"mean_interval": mean_interval}, "compute the mean, the sample standard deviation and t yourself.")
    for values in _EX08_CI_CASES:
        n = len(values)
        want = _ex08_interval(values, _t95(n - 1))
        got = call_learner(mean_ci, list(values), name="mean_ci")
        expect(isinstance(got, (tuple, list)) and len(got) == 2, f"mean_ci returns {got!r:.80}, not (low, high).", "return a tuple (low, high).")
        got = (float(got[0]), float(got[1]))
        if all(abs(a - b) < 1e-9 for a, b in zip(got, want)):
            continue
        wrongs = {"z": _ex08_interval(values, 1.96), "population": _ex08_interval(values, _t95(n - 1), ddof=0),
                  "df": _ex08_interval(values, _t95(n)), "n": _ex08_interval(values, _t95(n - 1), root=False)}
        which = next((k for k, v in wrongs.items() if all(abs(a - b) < 1e-9 for a, b in zip(got, v))), None)
        hint = {"z": f"1.96 is the normal distribution's quantile; with {n} runs the mean's spread is estimated from the runs themselves, "
                     f"so use Student's t with n - 1 = {n - 1} degrees of freedom: EX08_T95[{n - 1}] = {_t95(n - 1)}.",
                "population": "use the sample standard deviation (divide the squared deviations by n - 1, not n): the mean was estimated from the same runs.",
                "df": f"Student's t has n - 1 degrees of freedom: EX08_T95[{n - 1}], not EX08_T95[{n}].",
                "n": "the standard error of a mean is s / sqrt(n), not s / n.",
                None: "mean ± t · s / sqrt(n), with s the sample standard deviation (n - 1) and t = EX08_T95[n - 1]."}[which]
        expect(False, f"mean_ci({values}) = ({got[0]:.4f}, {got[1]:.4f}); want ({want[0]:.4f}, {want[1]:.4f}).", hint)
    return f"equals the t interval on {len(_EX08_CI_CASES)} hidden cases (2 to 12 runs): with 3 seeds t = {_t95(2)}, not 1.96."


def _ex08_seeds(std: float, half_width: float, quantile=lambda n: _t95(n - 1)) -> int:
    n = 2
    while quantile(n) * std / math.sqrt(n) > half_width:
        n += 1
    return n


_EX08_SEED_CASES = ((0.02, 0.02), (0.01, 0.02), (0.015, 0.01), (0.05, 0.015), (0.001, 0.02))


@self_check
def check_ex08_task3(seeds_needed) -> str:
    """``seeds_needed(std, half_width)``: the fewest runs (at least 2) whose 95% t interval is at most ± half_width."""
    expect(callable(seeds_needed), "`seeds_needed` is not a function.", "define def seeds_needed(std, half_width): ...")
    for std, half in _EX08_SEED_CASES:
        want = _ex08_seeds(std, half)
        got = call_learner(seeds_needed, std, half, name="seeds_needed")
        if got == want:
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
        expect(False, f"seeds_needed(std={std}, half_width={half}) = {got!r}; the fewest runs is {want}.", hint)
    return (f"right on {len(_EX08_SEED_CASES)} hidden cases: seeds with a spread of 0.02 pin the mean to ±0.02 with "
            f"{_ex08_seeds(0.02, 0.02)} runs, not the {math.ceil(1.96 ** 2)} the normal approximation promises.")


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
#: Tables of task 4 besides EX08_SEED_TABLE, each with a trap: the best on test is another setting; one lucky seed; 3 seeds
#: where 1.96 would call the lead shown; settings whose separate intervals overlap while every seed favours one; three settings.
_EX08_HIDDEN_TABLES = [
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


@self_check
def check_ex08_task4(choose_setting) -> str:
    """``choose_setting(rows)`` -> (the setting with the best mean validation accuracy, whether its lead over the runner-up is shown)."""
    expect(callable(choose_setting), "`choose_setting` is not a function.", "define def choose_setting(rows): ... returning (setting, shown).")
    for rows in (EX08_SEED_TABLE, *_EX08_HIDDEN_TABLES):
        want = _ex08_choice(rows)
        got = call_learner(choose_setting, [dict(r) for r in rows], name="choose_setting")
        expect(isinstance(got, (tuple, list)) and len(got) == 2 and isinstance(got[1], bool),
               f"choose_setting returns {got!r:.80}.", "return (setting, shown) with shown True or False.")
        setting, shown = got
        where = "on the table above" if rows is EX08_SEED_TABLE else "on a hidden table"
        rules = {"test": _ex08_choice(rows, key="test")[0], "max": _ex08_choice(rows, pick=max)[0]}
        traps = " ".join(_EX08_CHOICE_HINTS[k] for k, v in rules.items() if v == setting != want[0])
        expect(setting == want[0], f"{where} you choose {setting!r}; the best mean validation accuracy is {want[0]!r}'s.",
               traps or "average each setting's validation accuracy over its seeds and take the highest mean.")
        rules = {"z": _ex08_choice(rows, quantile=1.96)[1], "worst": _ex08_choice(rows, against=-1)[1], "unpaired": _ex08_choice(rows, paired=False)[1]}
        traps = " ".join(_EX08_CHOICE_HINTS[k] for k, v in rules.items() if v == shown != want[1])
        expect(shown == want[1], f"{where} you say the lead of {want[0]!r} is {'' if shown else 'not '}shown; the paired 95% t interval "
               f"of its differences to the runner-up {'excludes' if want[1] else 'contains'} 0.",
               traps or "differences per seed (best − runner-up, same seed), then your mean_ci: shown when the low end is above 0.")
    best, shown = _ex08_choice(EX08_SEED_TABLE)
    return (f"right on {1 + len(_EX08_HIDDEN_TABLES)} tables; here {best} has the best validation mean, and its lead is "
            f"{'' if shown else 'not '}shown.")


#: Exercise 08, task 5: what may have broken the classmate's sweep.
EX08_CAUSES = {
    "unknown_parameter": "the sweep passed a parameter name the notebook does not have",
    "derived_parameter": "the parameters cell computes a value from another parameter",
    "same_seed": "every point used the same seed",
    "skipped_points": "the sweep skipped points that had already run",
    "kernel": "the points ran in the wrong Jupyter kernel",
}
_EX08_FAULTS = {"unknown_parameter", "derived_parameter"}
_EX08_WHY = {
    "unknown_parameter": "papermill only warns about a parameter the notebook does not have (`rank` here; the notebook's is `lora_r`) and "
                         "runs the defaults: every row is the same point. run_sweep validates names and types before anything runs.",
    "derived_parameter": "papermill injects the new values in a cell AFTER the parameters cell, so `lora_alpha = 2 * lora_r` there was "
                         "computed from the default rank and never recomputed: move it to the next cell.",
}
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


@self_check
def check_ex08_task5(causes, notebook, sweep) -> str:
    """``causes``: names from EX08_CAUSES; ``notebook``: the fixed experiment; ``sweep``: run_sweep of it over lora_r."""
    import tempfile

    import nbformat

    from ftcourse.course.experiments import parameters_of, run_notebook
    from ftcourse.course.sweep import STATE, SweepResult

    expect(isinstance(causes, (set, list, tuple)) and set(causes) <= set(EX08_CAUSES),
           f"`causes` should be a set of names from EX08_CAUSES; got {causes!r}.", f"pick from {sorted(EX08_CAUSES)}.")
    missed, blamed = sorted(_EX08_FAULTS - set(causes)), sorted(set(causes) - _EX08_FAULTS)
    expect(not missed, f"the sweep has {len(_EX08_FAULTS)} faults; you did not name {missed[0]!r}." if missed else "", _EX08_WHY[missed[0]] if missed else "")
    expect(not blamed, f"{blamed[0]!r} did not break this sweep." if blamed else "",
           "the classmate called papermill once per rank (nothing was skipped), with the course's kernel; the seed does not change a parameter count.")
    path = Path(notebook)
    expect(path.is_file(), f"{path} does not exist.", "write the fixed notebook with nbformat.write(nb, path) and pass that path.")
    tagged = [c for c in nbformat.read(path, as_version=4).cells if "parameters" in c.metadata.get("tags", [])]
    expect(len(tagged) == 1, f"{path.name} has {len(tagged)} cells tagged 'parameters'.", "keep exactly one: papermill injects its values after it.")
    spec = parameters_of(path)
    derived = [name for name, s in spec.items() if s["type"] == "any" and not _is_literal(s["default"])]
    expect(not derived, f"the parameters cell still computes {derived[0]!r} from another parameter ({spec[derived[0]]['default'] if derived else ''})."
           if derived else "", _EX08_WHY["derived_parameter"])
    expect("lora_r" in spec, f"{path.name} has no parameter 'lora_r'.", "keep the notebook's own parameter names; fix the sweep's name instead.")
    with tempfile.TemporaryDirectory() as folder:
        try:
            run = run_notebook(path, folder, "smoke", {"lora_r": 2}, timeout=300, progress=False)
        except CourseError as exc:
            raise CheckFailed(f"the fixed notebook cannot be run with lora_r=2: {exc.what}", "keep the parameters cell's lines "
                              "`profile = \"smoke\"` and `lora_r = 8`; only the derived value moves.") from None
        expect(run.error is None, f"the fixed notebook fails at lora_r=2: {run.error}", "run it yourself with another rank.")
        recorded = json.loads((Path(folder) / f"{path.stem}.metrics.json").read_text())
    want = _ex08_point(2)
    expect({k: recorded.get(k) for k in want} == want, f"run at lora_r=2 the fixed notebook records {recorded}; want {want}.",
           _EX08_WHY["derived_parameter"] + " A fixed lora_alpha = 16 is no better: alpha must follow the rank.")
    expect(isinstance(sweep, SweepResult), f"`sweep` is a {type(sweep).__name__}, not what ftcourse.course.sweep.run_sweep returns.",
           "sweep = run_sweep(fixed_path, {'lora_r': [...]}, profile='smoke', output_dir=...): it checks the parameter names first.")
    state = json.loads((sweep.folder / STATE).read_text())
    expect(Path(state["notebook"]).resolve() == path.resolve(), f"the sweep ran {Path(state['notebook']).name}, not your fixed notebook {path}.",
           "sweep the fixed notebook.")
    table = sweep.table
    expect("lora_r" in table.columns and table["lora_r"].nunique() >= 3 and (table["status"] == "ok").all(),
           "the sweep should vary lora_r over at least 3 values, every point ok.", "grid = {'lora_r': [4, 8, 16]}.")
    bad = [row for row in table.to_dict("records") if row.get("lora_alpha") != 2 * row["lora_r"] or row.get("scale") != 2.0]
    expect(not bad, f"the sweep's row lora_r={bad[0]['lora_r']} recorded lora_alpha={bad[0].get('lora_alpha')}." if bad else "", _EX08_WHY["derived_parameter"])
    return f"both faults named and fixed: {len(table)} points with lora_alpha = 2 · lora_r (scale 2), and a hidden rank too."
