"""Checks of exercise 02, LoRA configuration and training (``solutions/ex02_lora_training.ipynb``).

Every task follows the grading protocol (``core``'s docstring): a collect step that turns the learner's values and the
outputs of their functions into plain data, and a judge that decides; the hidden inputs the grader uses are in
``solutions/hidden/ex02.json``. Tasks 4 and 5 (a trained run, a reloaded adapter) name the run folder the learner's code
wrote in the workspace; the judge reads its files (``saved_run``) and recomputes with its own reference model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ftcourse.course.checks.core import (
    Case,
    CheckFailed,
    describe,
    expect,
    expect_intent_record,
    expect_saved_adapter,
    forbid_source_helpers,
    graded_check,
    is_close,
    lora_targets,
    output_of,
    peft_trainable,
    probe_logits,
    run_learner,
    saved_run,
    workspace_path,
)

__all__ = [
    "check_ex02_task1", "check_ex02_task2", "check_ex02_task3", "check_ex02_task4", "check_ex02_task5",
    "check_ex02_task6", "EX02_BROKEN_LORA", "EX02_BROKEN_TRAINING", "ex02_classmate_lora", "ex02_classmate_reload",
    "EX02_SETTINGS",
]

_EX02_LORA = {"r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"]}


def ex02_classmate_lora(model):
    """Exercise 02, task 1: a classmate's LoRA model (r=8, alpha=16 on q_proj and v_proj), then every weight made
    trainable "to be sure it learns". Do not fix it here."""
    from peft import get_peft_model

    from ftcourse.configs import LoraSettings
    from ftcourse.peft_methods import build_peft_config

    lora_model = get_peft_model(model, build_peft_config("lora", model, LoraSettings(**_EX02_LORA)))
    lora_model.requires_grad_(True)
    return lora_model


def _small_model(dims: dict):
    """A small model with a frozen embedding, built from ``dims`` (``{"embedding": [n, d], "linears": [[in, out], ...]}``)."""
    import torch

    small = torch.nn.Sequential(torch.nn.Embedding(*dims["embedding"]), *(torch.nn.Linear(i, o) for i, o in dims["linears"]))
    small[0].requires_grad_(False)
    return small


def _counts(model: Any) -> dict:
    """A model's trainable and total parameter counts (an empty dict when it has no parameters to count)."""
    try:
        params = list(model.parameters())
        return {"trainable": sum(p.numel() for p in params if p.requires_grad), "total": sum(p.numel() for p in params)}
    except Exception:  # not a model: the judge names its type
        return {}


def _peft_lora(model: Any) -> dict:
    """A PEFT model's first adapter as plain data: its type, r, lora_alpha, targets, counts and the base tensors that train."""
    from peft import PeftModel

    if not isinstance(model, PeftModel):
        return {"type": type(model).__name__}
    config = model.peft_config["default"]
    extra = [n for n, p in model.named_parameters() if p.requires_grad and "lora_" not in n]
    return {"type": "PeftModel", "peft_type": str(config.peft_type.value), "r": config.r, "lora_alpha": config.lora_alpha,
            "target_modules": sorted(lora_targets(config)), "extra": extra[:1], "n_extra": len(extra), **_counts(model)}


@graded_check({"inputs": {"small": {"embedding": [1000, 24], "linears": [[24, 48], [48, 10]]}}, "expected": {}})
def check_ex02_task1(inputs, lora_model, adam_state_mib) -> dict:
    """``lora_model``: the classmate's LoRA model (r=8, alpha=16 on q_proj and v_proj) fixed so that only the adapter trains;
    ``adam_state_mib(model)``: MiB of AdamW's states for a model's trainable parameters."""
    from ftcourse.models import weightless_copy

    model = _peft_lora(lora_model)
    models = [lora_model, _small_model(inputs["small"])]
    if model["type"] == "PeftModel":
        models.insert(1, ex02_classmate_lora(weightless_copy(lora_model)))
    return {"lora_model": model, "models": [_counts(m) for m in models], "adam_state_mib": [run_learner(adam_state_mib, m) for m in models]}


def _judge_adam(data: dict, case: Case) -> float:
    """AdamW's MiB for each collected model (the learner's, the classmate's, the small one built from the case's dims)."""
    dims = case.inputs["small"]
    small = {"trainable": sum(i * o + o for i, o in dims["linears"]), "total": dims["embedding"][0] * dims["embedding"][1]}
    small["total"] += small["trainable"]
    counts, outputs = data.get("models"), data.get("adam_state_mib")
    expect(isinstance(counts, list) and isinstance(outputs, list) and len(counts) == len(outputs) == 3,
           "no output of `adam_state_mib` was collected.", "define def adam_state_mib(model): ... and run the task's cell.")
    names = ("your fixed lora_model", "the classmate's model", f"a {case.kind} model with a frozen embedding")
    for name, count, entry in zip(names, [*counts[:2], small], outputs):
        expect(isinstance(count, dict) and all(isinstance(count.get(k), int) for k in ("trainable", "total")),
               "the data collected for this task is malformed: the check was changed or bypassed.", "run the task's cell and its check as given.")
        got, _ = output_of(entry, "adam_state_mib", "define def adam_state_mib(model): ...")
        trainable, want = count["trainable"], 8 * count["trainable"] / 2**20
        if isinstance(got, (int, float)) and not isinstance(got, bool) and is_close(float(got), want, 1e-6):
            continue
        wrongs = {"only the trainable parameters have optimizer states (p.requires_grad): frozen weights get no gradient and no AdamW state.":
                  8 * count["total"] / 2**20,
                  "AdamW keeps two states per trainable parameter (the running means of the gradient and of its square), each fp32 "
                  "(4 bytes) like the trainable weights here: 8 bytes per parameter.": 4 * trainable / 2**20,
                  "count AdamW's states only: the weights and gradients are not optimizer states.": 16 * trainable / 2**20,
                  "a MiB is 2**20 bytes, not 10**6.": 8 * trainable / 1e6}
        hint = next((h for h, v in wrongs.items() if isinstance(got, (int, float)) and is_close(float(got), v, 1e-6)),
                    "2 states × 4 bytes (fp32) × the number of trainable parameters, in MiB (2**20 bytes).")
        expect(False, f"adam_state_mib({name}) = {got!r}: not the MiB of AdamW's states for its {trainable:,} trainable parameters.", hint)
    return 8 * counts[0]["trainable"] / 2**20


def _model_of(case: Case, argument: str):
    """The model a judge counts on: the check's own argument in the learner's kernel, else the grader's reference model."""
    return case.objects[argument] if argument in case.objects else case.reference("model")


@check_ex02_task1.judge
def _judge_task1(data: dict, case: Case) -> str:
    from ftcourse.configs import LoraSettings

    got = data.get("lora_model") if isinstance(data.get("lora_model"), dict) else {}
    expect(got.get("type") == "PeftModel", f"`lora_model` is a {got.get('type')}, not a PeftModel.",
           "keep the classmate's PEFT model (or build the same one again with get_peft_model).")
    expect(got.get("peft_type") == "LORA", f"the adapter is {got.get('peft_type')}, not LoRA.", "build the config with method 'lora'.")
    targets = set(got["target_modules"]) if isinstance(got.get("target_modules"), list) else None
    expect((got.get("r"), got.get("lora_alpha"), targets) == (8, 16, {"q_proj", "v_proj"}),
           f"the adapter has r={got.get('r')}, lora_alpha={got.get('lora_alpha')} on {sorted(targets or [])}; the task asks for r=8, lora_alpha=16 on q_proj and v_proj.",
           "LoraSettings(r=8, lora_alpha=16, target_modules=['q_proj', 'v_proj']): the settings were right, the trainable weights were not.")
    trainable, total = got.get("trainable"), got.get("total")
    expect(all(isinstance(v, int) for v in (trainable, total, got.get("n_extra"))),
           "the data collected for this task is malformed: the check was changed or bypassed.", "run the task's cell and its check as given.")
    want = peft_trainable(_model_of(case, "lora_model"), "lora", LoraSettings(**_EX02_LORA))
    expect(not got["n_extra"], f"{got['n_extra']} base-model tensors still train (e.g. {str((got.get('extra') or ['?'])[0])[:120]}): "
           f"{trainable:,} trainable parameters where the adapter has {want:,}." if got["n_extra"] else "",
           "LoRA freezes the base model: set requires_grad = False on every parameter that is not a lora_A / lora_B matrix. "
           "(The classmate's base weights changed during training, and PEFT's save_pretrained saves only the adapter: "
           "what the base learned was lost.)")
    expect(trainable == want, f"{trainable:,} parameters are trainable; LoRA r=8 on q_proj/v_proj trains {want:,}.",
           "keep every lora_A and lora_B matrix trainable: without them nothing learns.")
    fixed = _judge_adam(data, case)
    return (f"{want:,} trainable of {total:,} parameters ({100 * want / total:.2f}%); AdamW's states: "
            f"{fixed:.1f} MiB instead of {8 * total / 2**20:,.0f} MiB.")


#: The course's helpers that would do task 2's job (bare name -> qualified name).
_EX02_COUNT_HELPERS = {"get_peft_model": "peft.get_peft_model", "inject_adapter_in_model": "peft.inject_adapter_in_model",
                       "LoraConfig": "peft.LoraConfig", "build_peft_config": "ftcourse.peft_methods.build_peft_config",
                       "count_parameters": "ftcourse.models.count_parameters"}


@graded_check({"inputs": {"cases": [[8, ["q_proj", "v_proj"]], [4, ["q_proj", "k_proj", "v_proj", "o_proj"]],
                                    [2, ["gate_proj", "up_proj", "down_proj"]]]}, "expected": {}})
def check_ex02_task2(inputs, lora_parameter_count, model) -> dict:
    """``lora_parameter_count(model, r, target_modules)``: LoRA's trainable parameters, computed from the layer shapes."""
    from ftcourse.models import weightless_copy

    return {"outputs": [run_learner(lora_parameter_count, weightless_copy(model), r, list(targets)) for r, targets in inputs["cases"]]}


@check_ex02_task2.judge
def _judge_task2(data: dict, case: Case) -> str:
    from ftcourse.configs import LoraSettings
    from ftcourse.models import weightless_copy
    from ftcourse.peft_methods import linear_layer_names

    forbid_source_helpers(case, "lora_parameter_count", _EX02_COUNT_HELPERS,
                          "predict the count from the layer shapes alone (in_features, out_features, r): building the adapter and counting is what the check does.")
    cases, outputs = case.inputs["cases"], data.get("outputs")
    expect(isinstance(outputs, list) and len(outputs) == len(cases), "no output of `lora_parameter_count` was collected.",
           "define def lora_parameter_count(model, r, target_modules): ... and run the task's cell.")
    model = _model_of(case, "model")
    layers, checked = set(linear_layer_names(weightless_copy(model))), 0
    for (r, targets), entry in zip(cases, outputs):
        if not set(targets) <= layers:  # a model without these layers (a tiny test model)
            continue
        want = peft_trainable(model, "lora", LoraSettings(r=r, target_modules=targets))
        got, _ = output_of(entry, "lora_parameter_count", "define def lora_parameter_count(model, r, target_modules): ...")
        expect(got == want, f"lora_parameter_count(model, r={r}, {targets}) = {got!r}: not what PEFT trains for this {case.kind} configuration.",
               "for every nn.Linear whose name ends with a target: A is r x in_features and B is out_features x r, "
               "so it adds r * (in_features + out_features); sum over all layers (every block has its own).")
        checked += 1
    return f"matches PEFT on {checked} {case.kind} configurations."


def _lora_settings(value: Any) -> dict:
    """LoraSettings as plain data: its type, r, lora_alpha and target modules."""
    try:
        return {"type": type(value).__name__, "r": describe(value.r), "lora_alpha": describe(value.lora_alpha),
                "target_modules": describe(sorted(lora_targets(value)))}
    except Exception:  # not settings: the judge names its type
        return {"type": type(value).__name__}


def _rebuilt(got: dict, name: str, hint: str):
    """The LoraSettings a collected ``_lora_settings`` describes, validated again here."""
    from ftcourse.configs import LoraSettings
    from ftcourse.errors import CourseError

    expect(got.get("type") == "LoraSettings", f"`{name}` is a {got.get('type')}, not LoraSettings.", hint)
    try:
        return LoraSettings(r=output_of(got.get("r"), "r")[0], lora_alpha=output_of(got.get("lora_alpha"), "lora_alpha")[0],
                            target_modules=output_of(got.get("target_modules"), "target_modules")[0])
    except (CourseError, ValueError, TypeError) as exc:
        raise CheckFailed(f"`{name}` is not valid LoraSettings: {exc}", hint) from None


@graded_check({"inputs": {}, "expected": {}})
def check_ex02_task3(inputs, budget_settings, model) -> dict:
    """``budget_settings``: LoraSettings on q/k/v/o_proj with the largest r under 1,000,000 trainable parameters."""
    return {"budget_settings": _lora_settings(budget_settings)}


@check_ex02_task3.judge
def _judge_task3(data: dict, case: Case) -> str:
    budget_settings = _rebuilt(data.get("budget_settings") if isinstance(data.get("budget_settings"), dict) else {}, "budget_settings",
                               "budget_settings = LoraSettings(r=..., lora_alpha=2 * r, target_modules=[...]).")
    targets, r = lora_targets(budget_settings), budget_settings.r
    expect(targets == {"q_proj", "k_proj", "v_proj", "o_proj"}, f"the adapter targets {sorted(targets)}.",
           "target all four attention projections: q_proj, k_proj, v_proj and o_proj.")
    model = _model_of(case, "model")
    n = peft_trainable(model, "lora", budget_settings)
    expect(n < 1_000_000, f"r={r} gives {n / 1e6:.2f}M trainable parameters; the task asks for under 1M.", "lower r (the count grows linearly with r).")
    bigger = peft_trainable(model, "lora", budget_settings.replace(r=r + 1))
    expect(bigger >= 1_000_000, f"r={r + 1} still fits the budget ({bigger:,} parameters).",
           "use the largest r under the budget: your lora_parameter_count from task 2 tells you quickly.")
    return f"r={r} on the four attention projections trains {n:,} parameters (r={r + 1} would train {bigger:,})."


#: The course's helpers that would predict task 4's size by building the adapter (bare name -> qualified name).
_EX02_SIZE_HELPERS = {**_EX02_COUNT_HELPERS, "peft_parameter_count": "ftcourse.course.comparison.peft_parameter_count",
                      "peft_trainable": "ftcourse.course.checks.core.peft_trainable",
                      "safetensors_bytes": "ftcourse.course.checks.core.safetensors_bytes"}


@graded_check({"inputs": {"settings": [[3, ["o_proj", "gate_proj", "up_proj", "down_proj"]]]}, "expected": {}})
def check_ex02_task4(inputs, result, budget_settings, adapter_mib, model) -> dict:
    """``result``: fine_tune(...) of LoRA with ``budget_settings``; ``adapter_mib(model, settings)``: the saved adapter's MiB, predicted."""
    from ftcourse.configs import LoraSettings
    from ftcourse.models import weightless_copy
    from ftcourse.runs import RunResult

    settings = [budget_settings, *(LoraSettings(r=r, lora_alpha=2 * r, target_modules=list(t)) for r, t in inputs["settings"])]
    run = workspace_path(result.run_dir) if isinstance(result, RunResult) else None
    return {"result": type(result).__name__, "run": run, "budget_settings": _lora_settings(budget_settings),
            "adapter_mib": [run_learner(adapter_mib, weightless_copy(model), s) for s in settings]}


def _predicted_mib(entry: Any, want: float, model, settings, where: str) -> None:
    """Fail unless a collected ``adapter_mib`` output is ``want`` MiB; the hint names the tempting formula it matches."""
    from ftcourse.models import count_parameters, weightless_copy

    got, kind = output_of(entry, "adapter_mib", "define def adapter_mib(model, settings): ...")
    number = isinstance(got, (int, float)) and not isinstance(got, bool)
    if number and is_close(float(got), want, 1e-6):
        return
    trainable = peft_trainable(model, "lora", settings)
    wrongs = {"fine_tune computes in bf16 under autocast, but autocast only changes the dtype of the computation: the adapter's "
              "weights stay fp32 (4 bytes each) and are saved so.": 2 * trainable / 2**20,
              "the run folder holds only the adapter (lora_A and lora_B), not the base model's weights.":
              4 * (trainable + count_parameters(weightless_copy(model))["total"]) / 2**20,
              "a MiB is 2**20 bytes, not 10**6.": 4 * trainable / 1e6}
    hint = next((h for h, v in wrongs.items() if number and is_close(float(got), v, 0.02)),
                "the adapter's parameters (r · (in + out) per adapted layer, your lora_parameter_count) × 4 bytes (fp32), in MiB.")
    expect(False, f"{where} you predict {got!r} MiB ({kind}), not the size of the weights that adapter saves.", hint)


@check_ex02_task4.judge
def _judge_task4(data: dict, case: Case) -> str:
    from ftcourse.configs import LoraSettings

    expect(data.get("result") == "RunResult", f"`result` is a {str(data.get('result'))[:80]}, not what fine_tune returns.",
           "result = fine_tune(data['train'], model=P.model, method='lora', lora=budget_settings, settings=settings_from_profile(P), run_name=...).")
    record, metrics, config, tensors = saved_run(case, data.get("run"))
    history = record.get("history") if isinstance(record.get("history"), list) else []
    losses = [h["loss"] for h in history if isinstance(h, dict) and isinstance(h.get("loss"), (int, float))]
    expect_saved_adapter(record.get("method"), "lora", losses, tensors)
    expect_intent_record(record)
    budget = _rebuilt(data.get("budget_settings") if isinstance(data.get("budget_settings"), dict) else {}, "budget_settings",
                      "pass your task-3 budget_settings.")
    expect((config.get("r"), lora_targets(config) if config.get("target_modules") else set()) == (budget.r, lora_targets(budget)),
           f"the saved adapter has r={config.get('r')} on {sorted(lora_targets(config)) if config.get('target_modules') else []}, "
           "not your budget_settings.", "pass lora=budget_settings.")
    model = _model_of(case, "model")
    want = peft_trainable(model, "lora", LoraSettings(r=budget.r, target_modules=sorted(lora_targets(budget))))
    expect(metrics.get("trainable_parameters") == want, f"{metrics.get('trainable_parameters')} parameters were trained; the adapter has {want:,}.",
           "train only the adapter.")
    forbid_source_helpers(case, "adapter_mib", _EX02_SIZE_HELPERS,
                          "predict the size from the shapes (your lora_parameter_count) and the dtype the adapter is saved in, without building it.")
    outputs, others = data.get("adapter_mib"), [LoraSettings(r=r, lora_alpha=2 * r, target_modules=list(t)) for r, t in case.inputs["settings"]]
    expect(isinstance(outputs, list) and len(outputs) == 1 + len(others), "no output of `adapter_mib` was collected.",
           "define def adapter_mib(model, settings): ... and run the task's cell.")
    measured = sum(t.numel() * t.element_size() for t in tensors.values()) / 2**20  # the file adds a header of a few KB
    _predicted_mib(outputs[0], measured, model, budget, "for your budget_settings")
    for settings, entry in zip(others, outputs[1:]):
        _predicted_mib(entry, 4 * peft_trainable(model, "lora", settings) / 2**20, model, settings,
                       f"for r={settings.r} on {sorted(lora_targets(settings))} (a {case.kind} case)")
    return (f"{metrics.get('steps')} steps, loss {losses[0]:.2f} → {losses[-1]:.2f}; the {want:,}-parameter adapter's weights "
            f"take {measured:.2f} MiB on disk (fp32), as predicted (and on {len(others)} {case.kind} settings).")


def ex02_classmate_reload(run_dir):
    """Exercise 02, task 5: a classmate's code that loads a saved adapter for evaluation. Do not fix it here."""
    from peft import LoraConfig, get_peft_model

    from ftcourse.models import load_model

    config = LoraConfig.from_pretrained(str(run_dir))
    return get_peft_model(load_model(config.base_model_name_or_path), config)


def _ex02_other_adapter(run_dir, folder: Path, scale: float) -> None:
    """Save another adapter in ``folder``: the run's, with every lora_B multiplied by ``scale``."""
    import shutil

    from safetensors.torch import load_file, save_file

    shutil.copy(Path(run_dir) / "adapter_config.json", folder)
    save_file(_scaled(load_file(Path(run_dir) / "adapter_model.safetensors"), scale), folder / "adapter_model.safetensors")


def _scaled(tensors: dict, scale: float) -> dict:
    return {k: t * scale if "lora_B" in k else t for k, t in tensors.items()}


def _digests(tensors: dict) -> dict[str, str]:
    """Each tensor's name -> a hash of its values as fp32: equal hashes, equal weights (the judge hashes the saved file)."""
    import hashlib

    return {k: hashlib.sha256(t.detach().float().cpu().contiguous().numpy().tobytes()).hexdigest()[:24] for k, t in tensors.items()}


def _reloaded(model, result, tokenizer, effect: bool) -> dict:
    """What a model ``load_adapter`` returned is, as plain data: its adapter's weights (hashed as the file names them), whether it
    is or shares the trained object, and (``effect``) how much the adapter moves the logits."""
    from peft import PeftModel, get_peft_model_state_dict

    if not isinstance(model, PeftModel):
        return {"type": type(model).__name__}
    state = get_peft_model_state_dict(model)
    trained = {id(p) for p in getattr(result, "model", None).parameters()} if hasattr(getattr(result, "model", None), "parameters") else set()
    out = {"type": "PeftModel", "digests": _digests(state), "fresh": all(not float(t.abs().sum()) for k, t in state.items() if "lora_B" in k),
           "trained_object": model is getattr(result, "model", None), "shares": any(id(p) in trained for p in model.get_base_model().parameters())}
    if effect:
        import torch

        with_adapter = probe_logits(model, tokenizer)
        with model.disable_adapter():
            base = probe_logits(model, tokenizer)
        out.update(effect=float((with_adapter - base).abs().max()), finite=bool(torch.isfinite(with_adapter).all()))
    return out


@graded_check({"inputs": {"scale": -1.0}, "expected": {}})
def check_ex02_task5(inputs, load_adapter, result, tokenizer) -> dict:
    """``load_adapter(run_dir)``: the adapter saved in ``run_dir`` loaded onto a fresh base model, ready to evaluate."""
    import tempfile

    loaded: list = []

    def load(folder, effect: bool) -> dict:
        loaded.append(load_adapter(folder))
        return _reloaded(loaded[-1], result, tokenizer, effect)

    run_dir = Path(result.run_dir)
    with tempfile.TemporaryDirectory() as folder:
        _ex02_other_adapter(run_dir, Path(folder), float(inputs["scale"]))
        first, other = run_learner(load, run_dir, True), run_learner(load, Path(folder), False)
    after = _reloaded(loaded[0], result, tokenizer, False) if len(loaded) == 2 else {}
    return {"run": workspace_path(run_dir), "first": first, "other": other, "first_after": after.get("digests")}


@check_ex02_task5.judge
def _judge_task5(data: dict, case: Case) -> str:
    forbid_source_helpers(case, "load_adapter", {"load_run": "ftcourse.runs.load_run", "load_adapters": "ftcourse.deploy.load_adapters"},
                          "load it with PEFT yourself: the point of this task is which PEFT function reads saved weights.")
    tensors = saved_run(case, data.get("run"))[3]
    want = _digests(tensors)
    define = "define def load_adapter(run_dir): ... returning the reloaded PeftModel."
    got, _ = output_of(data.get("first"), "load_adapter", define)
    expect(isinstance(got, dict) and got.get("type") == "PeftModel" and not got.get("trained_object"),
           "`load_adapter` should return a PeftModel loaded from the run folder (not the trained object itself).",
           "load a fresh base model and put the saved adapter on it.")
    expect(not got.get("shares"), "the reloaded model shares its base weights with the trained model.",
           "load a fresh base model (load_model(P.model)) and put the saved adapter on it.")
    digests = got.get("digests") if isinstance(got.get("digests"), dict) else {}
    expect(set(digests) == set(want), "the reloaded adapter has other layers than the trained one.", "load the folder you are given.")
    fresh = bool(got.get("fresh"))
    expect(digests == want, "the reloaded adapter's weights differ from the saved ones" + ("; every lora_B is zero: a new, untrained adapter." if fresh else "."),
           "get_peft_model(model, config) builds a NEW adapter from a config (lora_B = 0: it changes nothing); the saved weights "
           "are read by PeftModel.from_pretrained(base_model, run_dir)." if fresh else "load the saved weights, unchanged.")
    effect = got.get("effect")
    expect(isinstance(effect, (int, float)) and effect > 1e-4 and got.get("finite") is True,
           "the reloaded adapter does not change the base model's output.", "load the adapter onto the base model and leave it enabled.")
    other, _ = output_of(data.get("other"), "load_adapter", define)
    expect(isinstance(other, dict) and other.get("digests") == _digests(_scaled(tensors, float(case.inputs["scale"]))),
           "on another adapter folder, load_adapter does not return that folder's weights.", "load the folder passed as `run_dir`, not task 4's run.")
    expect(data.get("first_after") == want, "loading a second adapter changed the first model you returned: both share one base model, "
           "and PEFT put the second adapter's weights into the same layers.",
           "load a fresh base model inside load_adapter, on every call: each evaluated adapter needs its own base.")
    return (f"{len(want)} adapter tensors reloaded exactly (from a {case.kind} second folder too, each on its own base); "
            f"the adapter moves the base model's logits by up to {effect:.2f}.")


#: Exercise 02, task 6: the settings of a LoRA run on the intent data that did not learn.
EX02_BROKEN_LORA = {"r": 8, "lora_alpha": 16, "target_modules": ["lm_head"]}
EX02_BROKEN_TRAINING = {"learning_rate": 2e-5, "max_seq_length": 32}
#: What the learner may name as causes in exercise 02, task 6.
EX02_SETTINGS = ("r", "lora_alpha", "target_modules", "learning_rate", "max_seq_length", "batch_size", "max_steps")
_EX02_CAUSES = {"target_modules", "learning_rate", "max_seq_length"}
_EX02_WHY = {
    "learning_rate": "2e-5 is a full fine-tuning rate (and TRL's SFTConfig default); LoRA's B starts at zero and a short LoRA run "
                     "needs a much higher rate: look up the one lesson 02 trains with (the method's default, learning_rate=None).",
    "max_seq_length": "32 tokens cut every example before its answer: all labels are -100, nothing is trained (the loss is 0 or NaN).",
    "target_modules": "lm_head is the output layer: LoRA there cannot change how the model reads the message, and the embedded model "
                      "ties it to the input embeddings. Adapt the attention (and MLP) projections inside the blocks.",
}


@graded_check({"inputs": {}, "expected": {}})
def check_ex02_task6(inputs, causes, fixed_lora, fixed_training, model, tokenizer, P) -> dict:
    """``causes``: the settings that broke the run; ``fixed_lora``/``fixed_training``: LoraSettings/TrainingSettings that learn."""
    training = {"type": type(fixed_training).__name__}
    if training["type"] == "TrainingSettings":
        training.update(learning_rate=describe(fixed_training.learning_rate), max_seq_length=describe(fixed_training.max_seq_length))
    named = sorted(causes, key=str) if isinstance(causes, (set, frozenset)) else causes
    return {"causes": describe(named), "fixed_lora": _lora_settings(fixed_lora), "fixed_training": training}


@check_ex02_task6.judge
def _judge_task6(data: dict, case: Case) -> str:
    from ftcourse.course.bundled import intent_records
    from ftcourse.models import weightless_copy
    from ftcourse.peft_methods import get_method, linear_layer_names
    from ftcourse.tokenization import tokenize_messages

    causes, kind = output_of(data.get("causes"), "causes")
    expect(kind in ("set", "frozenset", "list", "tuple") and all(isinstance(c, str) and c in EX02_SETTINGS for c in causes),
           f"`causes` should be a set of names from EX02_SETTINGS; got a {kind}.", f"pick from {list(EX02_SETTINGS)}.")
    missed, blamed = _EX02_CAUSES - set(causes), set(causes) - _EX02_CAUSES
    expect(not missed, "`causes` leaves out a setting that breaks the run.",
           "for each setting of EX02_BROKEN_LORA and EX02_BROKEN_TRAINING, ask what it does to this run and measure it where you can "
           "(the cell measures two things); more than one setting is broken.")
    expect(not blamed, "`causes` names a setting that is fine in this run.",
           "name only what breaks it: a value that differs from lesson 02's is not a fault by itself — say what it would break.")
    hint = "fixed_lora = LoraSettings(...); fixed_training = settings_from_profile(P, learning_rate=..., max_seq_length=...)."
    training = data.get("fixed_training") if isinstance(data.get("fixed_training"), dict) else {}
    expect(training.get("type") == "TrainingSettings", "`fixed_training` must be a TrainingSettings.", hint)
    rate, max_seq_length = output_of(training.get("learning_rate"), "learning_rate")[0], output_of(training.get("max_seq_length"), "max_seq_length")[0]
    expect((rate is None or isinstance(rate, (int, float))) and isinstance(max_seq_length, int),
           "the data collected for this task is malformed: the check was changed or bypassed.", "run the task's cell and its check as given.")
    fixed_lora = _rebuilt(data.get("fixed_lora") if isinstance(data.get("fixed_lora"), dict) else {}, "fixed_lora", hint)
    targets = lora_targets(fixed_lora)
    blocks = {n for n in linear_layer_names(weightless_copy(_model_of(case, "model"))) if n != "lm_head"}
    expect(targets == {"all-linear"} or (targets and targets <= blocks),
           f"fixed_lora targets {sorted(targets)}.", _EX02_WHY["target_modules"] + f" Names here: {sorted(blocks)}.")
    expect((fixed_lora.r, fixed_lora.lora_alpha) == (EX02_BROKEN_LORA["r"], EX02_BROKEN_LORA["lora_alpha"]),
           f"fixed_lora changed r/lora_alpha to {fixed_lora.r}/{fixed_lora.lora_alpha}.", "keep r=8, lora_alpha=16: they were not the problem.")
    rate = get_method("lora").learning_rate if rate is None else rate
    expect(1e-4 <= rate <= 5e-3, f"with learning rate {rate:g} LoRA does not learn well in a short run (too {'low' if rate < 1e-4 else 'high'}).",
           _EX02_WHY["learning_rate"])
    tokenizer = case.reference("tokenizer")
    longest = max(len(tokenize_messages(tokenizer, r["messages"])["input_ids"]) for r in intent_records(case.reference("P"))["train"])
    expect(max_seq_length >= longest, f"max_seq_length={max_seq_length} still cuts at least one training example — and with it the answer.", _EX02_WHY["max_seq_length"] + " Measure the longest example (exercise 01, task 5).")
    return f"all three faults named and fixed: LoRA on {sorted(targets)}, learning rate {rate:g}, max_seq_length {max_seq_length} ≥ {longest}."
