"""Checks of exercise 04, QLoRA and memory (``solutions/ex04_qlora_memory.ipynb``).

Every task follows the grading protocol (``core``'s docstring): a collect step that turns the learner's values, the
outputs of their functions and the files of their run into plain data, and a judge that decides, recomputing with its own
reference model (loaded in full precision and in 4-bit NF4). The practice cases are here; the hidden inputs the grader
uses are in ``solutions/hidden/ex04.json``.
"""

from __future__ import annotations

import json
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

from ftcourse.course.checks.core import (
    Case,
    collected_run,
    describe,
    describe_run,
    expect,
    expect_intent_record,
    forbid_source_helpers,
    graded_check,
    is_4bit,
    is_close,
    lora_targets,
    output_of,
    outputs_of,
    peft_trainable,
    probe_logits,
    run_learner,
)

__all__ = [
    "check_ex04_task1", "check_ex04_task2", "check_ex04_task3", "check_ex04_task4", "check_ex04_task5", "EX04_ANSWERS",
    "EX04_QLORA_QUESTIONS", "EX04_TEXT", "EX04_USABLE",
]

#: The prompt exercise 04 compares full-precision and 4-bit logits on.
EX04_TEXT = "Hello! I ordered a CrispAir air fryer last week and it still has not shipped. Can you check order 73654?"
#: A small Llama with its own (untied) output layer: the practice case's shape for tasks 2 and 4.
_EX04_SMALL = {"vocab_size": 512, "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
               "num_key_value_heads": 2, "tie_word_embeddings": False}


@graded_check({"inputs": {"cases": [[1_000_000, 32], [134_515_008, 16], [7_000_000_000, 4]]}, "expected": {}})
def check_ex04_task1(inputs, weight_megabytes) -> dict:
    """``weight_megabytes(n_params, bits)``: MiB that n_params weights of ``bits`` bits take."""
    return {"outputs": [run_learner(weight_megabytes, n, bits) for n, bits in inputs["cases"]]}


@check_ex04_task1.judge
def _judge_task1(data: dict, case: Case) -> str:
    cases = case.inputs["cases"]
    for (n, bits), (got, kind) in zip(cases, outputs_of(data, len(cases), "weight_megabytes", "define def weight_megabytes(n_params, bits): ...")):
        want = n * bits / 8 / 2**20
        expect(isinstance(got, (int, float)) and not isinstance(got, bool), f"weight_megabytes({n:,}, {bits}) returns a {kind}.", "return a number of MiB.")
        hint = "bytes = parameters × bits / 8, and a MiB is 2**20 = 1,048,576 bytes."
        if is_close(float(got), n * bits / 2**20, 1e-6):
            hint = "that counts bits, not bytes: divide by 8 (bits / 8 bytes per weight). " + hint
        elif is_close(float(got), n * bits / 8 / 1e6, 1e-6):
            hint = "that is megabytes of 10**6 bytes; a MiB is 2**20. " + hint
        expect(is_close(float(got), want, 1e-6), f"weight_megabytes({n:,}, {bits}) = {got} is not the MiB those weights take.", hint)
    return f"right on {len(cases)} {case.kind} cases, from 1M weights in fp32 to 7B in 4 bits."


def _ex04_shell(config: dict):
    """A Llama of ``config``'s shape on the meta device (shapes, no weights), in fp32."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(LlamaConfig(**config))


def _ex04_saved(config: dict, folder: Path) -> Path:
    """A Llama of ``config``'s shape with seeded random weights, saved in ``folder``."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(LlamaConfig(**config)).save_pretrained(folder)
    return folder


@cache
def _ex04_4bit(name: str):
    """The grader's own copy of a model loaded in 4-bit NF4 with double quantization (once per process)."""
    from ftcourse.models import load_model

    return load_model(name, quantization="4bit")


@cache
def _ex04_4bit_footprint(config_json: str) -> int:
    """get_memory_footprint() of a Llama of this shape (JSON) loaded in 4-bit NF4."""
    from ftcourse.models import load_model

    with tempfile.TemporaryDirectory() as folder:
        return load_model(str(_ex04_saved(json.loads(config_json), Path(folder))), quantization="4bit").get_memory_footprint()


def _reference_4bit(case: Case):
    """The 4-bit model a judge compares with: the learner's ``qmodel`` in their kernel, else the grader's own."""
    if "qmodel" in case.objects:
        return case.objects["qmodel"]
    return _ex04_4bit(case.reference("P").model)


def _ex04_footprint_hint(got, model) -> str:
    """The hint for a wrong 4-bit footprint prediction: the tempting rules, recognised by their value."""
    import torch

    params = {id(p): p for p in model.parameters()}
    linear = {id(m.weight) for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    head = model.get_output_embeddings()
    full = {k: p.numel() * p.element_size() for k, p in params.items()}
    wrongs = {
        "only the linear layers inside the transformer blocks are stored in 4 bits: embeddings and norms keep their dtype "
        "(bitsandbytes replaces nn.Linear modules only).": sum(p.numel() for p in params.values()) / 2,
        "bitsandbytes leaves the output layer (lm_head) in full precision, whether it is tied to the input embeddings or not.":
            sum(v / 8 if k in linear else v for k, v in full.items()),
        "the parameters that stay unquantized keep their own dtype (fp32 here, element_size() = 4), not 2 bytes.":
            sum(full[k] / 8 if k in linear and k != id(head.weight) else p.numel() * 2 for k, p in params.items()),
    }
    return " ".join(h for h, v in wrongs.items() if isinstance(got, (int, float)) and is_close(float(got), v, 0.02)) or (
        "4-bit linear weights take half a byte each (two per byte; their scales are kept outside the parameters); every "
        "other parameter keeps its bytes (p.numel() * p.element_size()), and the output layer is not quantized.")


def _loaded(model: Any) -> dict:
    """What task 2 checks of a loaded model, as plain data (its type only, when it is not a model)."""
    try:
        config = getattr(model.config, "quantization_config", None)
        config = config.to_dict() if hasattr(config, "to_dict") else dict(config or {})
        return {"type": type(model).__name__, "is_4bit": is_4bit(model), "quant_type": describe(config.get("bnb_4bit_quant_type")),
                "double_quant": describe(config.get("bnb_4bit_use_double_quant")), "footprint": int(model.get_memory_footprint())}
    except Exception:  # not a model: the judge names its type
        return {"type": type(model).__name__}


def _shell_of(model: Any):
    from ftcourse.models import weightless_copy

    try:
        return weightless_copy(model)
    except Exception:  # not a model: the learner's function gets it as it is
        return model


@graded_check({"inputs": {"model": _EX04_SMALL}, "expected": {}})
def check_ex04_task2(inputs, qmodel, model, predict_4bit_bytes) -> dict:
    """``qmodel``: the model loaded in 4-bit NF4 with double quantization; ``model``: the full-precision one;
    ``predict_4bit_bytes(model)``: the 4-bit model's get_memory_footprint(), predicted from the full-precision model."""
    return {"qmodel": _loaded(qmodel), "model": _loaded(model),
            "outputs": [run_learner(predict_4bit_bytes, _shell_of(model)), run_learner(predict_4bit_bytes, _ex04_shell(inputs["model"]))]}


@check_ex04_task2.judge
def _judge_task2(data: dict, case: Case) -> str:
    from ftcourse.models import weightless_copy

    q, full = (data.get(k) if isinstance(data.get(k), dict) else {} for k in ("qmodel", "model"))
    expect(q.get("is_4bit") is True, "`qmodel` has no 4-bit linear layers.", "qmodel = load_model(P.model, quantization='4bit').")
    quant_type, double = output_of(q.get("quant_type"), "quant_type")[0], output_of(q.get("double_quant"), "double_quant")[0]
    expect(quant_type == "nf4" and double is True, f"the 4-bit settings are quant_type={str(quant_type)[:20]!r}, double_quant={str(double)[:20]}.",
           "QLoRA uses NF4 with double quantization (the course's default QuantizationSettings).")
    expect(full.get("is_4bit") is False, "`model` should be the full-precision model, for comparison.", "model = load_model(P.model).")
    forbid_source_helpers(case, "predict_4bit_bytes", {"load_model": "ftcourse.models.load_model", "get_memory_footprint": "transformers.get_memory_footprint",
                                                       "from_pretrained": "transformers.from_pretrained", "footprint_bytes": "ftcourse.memory.footprint_bytes",
                                                       "footprint_breakdown": "ftcourse.memory.footprint_breakdown",
                                                       "training_memory": "ftcourse.memory.training_memory", "BitsAndBytesConfig": "transformers.BitsAndBytesConfig"},
                          "predict it from the full-precision model's parameters; loading (or measuring) the 4-bit model is the measurement.")
    reference = _reference_4bit(case)
    small = reference.get_memory_footprint()
    cases = (("this model", weightless_copy(case.reference("model")), small),
             (f"a {case.kind} model with its own output layer", _ex04_shell(case.inputs["model"]), _ex04_4bit_footprint(json.dumps(case.inputs["model"], sort_keys=True))))
    outputs = outputs_of(data, 2, "predict_4bit_bytes", "define def predict_4bit_bytes(model): ...")
    for (name, shell, want), (got, _) in zip(cases, outputs):
        expect(isinstance(got, (int, float)) and abs(float(got) - want) <= 0.02 * want,
               f"for {name} you predict {got!r} bytes; that is not what it takes loaded in 4-bit (within 2%).", _ex04_footprint_hint(got, shell))
    return (f"{small / 2**20:.0f} MB in 4-bit NF4, as predicted, and right on a {case.kind} model with its own output layer: linear "
            "layers at half a byte per weight, embeddings (and any output layer) and norms at their own dtype.")


@graded_check({"inputs": {}, "expected": {}})
def check_ex04_task3(inputs, logit_gap, top1_agreement, model, qmodel, tokenizer) -> dict:
    """``logit_gap``: max |logit difference| between model and qmodel on EX04_TEXT; ``top1_agreement``: share of equal argmax."""
    return {"logit_gap": describe(logit_gap), "top1_agreement": describe(top1_agreement)}


@check_ex04_task3.judge
def _judge_task3(data: dict, case: Case) -> str:
    tokenizer = case.reference("tokenizer")
    full, small = probe_logits(case.reference("model"), tokenizer, EX04_TEXT), probe_logits(_reference_4bit(case), tokenizer, EX04_TEXT)
    gap = float((full - small).abs().max())
    agree = float((full.argmax(-1) == small.argmax(-1)).float().mean())
    logit_gap, top1 = output_of(data.get("logit_gap"), "logit_gap")[0], output_of(data.get("top1_agreement"), "top1_agreement")[0]
    expect(isinstance(logit_gap, (int, float)) and is_close(float(logit_gap), gap, 0.02),
           f"logit_gap is {logit_gap}; the largest |difference| between the two models' logits on EX04_TEXT is {gap:.3f}.",
           "run both models on tokenizer(EX04_TEXT, return_tensors='pt') under torch.no_grad() and take (a - b).abs().max().")
    expect(isinstance(top1, (int, float)) and abs(float(top1) - agree) <= 1 / full.shape[1] + 1e-9,
           f"top1_agreement is {top1}; the models pick the same next token at {agree:.3f} of the positions.",
           "compare logits.argmax(-1) of both models position by position and take the mean of the matches.")
    return f"4-bit moves logits by up to {gap:.2f}; the top-1 next token agrees at {100 * agree:.0f}% of positions."


#: Exercise 04, task 4: what to predict about QLoRA compared with LoRA of the same settings, and the answers to choose from.
EX04_QLORA_QUESTIONS = {
    "trainable_parameters": "the number of trainable parameters",
    "adapter_file": "the bytes of the saved adapter's weights",
    "base_memory": "the memory the frozen base model's weights take",
}
EX04_ANSWERS = ("smaller", "same", "larger")
#: Why, for a wrong prediction: the mechanism, never the answer to pick.
_EX04_WHY = {
    "trainable_parameters": "the optimizer updates only the adapter's matrices A (r × in) and B (out × r) on the adapted layers. "
                            "Ask whether storing the frozen weight W in 4 bits changes r, the layers or their in and out features.",
    "adapter_file": "adapter_model.safetensors holds the adapter's tensors in the dtype they were trained in. The 4-bit layers "
                    "compute in bf16 (bnb_4bit_compute_dtype), but that is the dtype of the matmuls, not of the LoRA weights: "
                    "look at the dtype of a lora_A tensor in each folder.",
    "base_memory": "NF4 packs the linear weights of the blocks two per byte, where a full-precision base spends element_size() "
                   "bytes on each; embeddings and norms keep their dtype (task 2).",
}


def _ex04_facts(base: list, tensors: dict, file_size: int, full_shell) -> dict[str, Any]:
    """What a right ``measure`` returns and what the tempting ways to count give, from the base's parameters (the adapter's
    left out), the saved tensors, the saved file's size and the base in full precision (a meta-device copy)."""
    trainable = sum(t.numel() for t in tensors.values())
    adapter = sum(t.numel() * t.element_size() for t in tensors.values())
    base_bytes = sum(p.numel() * p.element_size() for p in base)
    return {"trainable_parameters": trainable, "adapter_file": adapter, "base_memory": base_bytes, "file_size": file_size,
            "all_parameters": trainable + sum(p.numel() for p in base), "base_fp32": 4 * sum(p.numel() for p in base),
            "with_adapter": base_bytes + adapter, "full_bytes": sum(p.numel() * p.element_size() for p in full_shell.parameters()),
            "dtypes": sorted({str(t.dtype).removeprefix("torch.") for t in tensors.values()})}


def _ex04_live_facts(model, folder: Path) -> dict[str, Any]:
    """:func:`_ex04_facts` of a PEFT model and the folder its adapter was saved in."""
    from safetensors.torch import load_file

    from ftcourse.models import weightless_copy

    path = Path(folder) / "adapter_model.safetensors"
    return _ex04_facts([p for n, p in model.named_parameters() if "lora_" not in n], load_file(path), path.stat().st_size, weightless_copy(model))


def _ex04_measure_hint(key: str, got, facts: dict) -> str:
    """The hint for a wrong measurement: the tempting ways to count, recognised by their value."""
    dtypes = facts["dtypes"]
    wrongs = {
        "trainable_parameters": {
            "count only the parameters the optimizer updates (requires_grad): the base is frozen.": facts["all_parameters"],
        },
        "adapter_file": {
            "the file starts with a JSON header: count the bytes of its tensors (numel × element_size), not the file's size.": facts["file_size"],
            f"this adapter was saved in {', '.join(dtypes)}: read each tensor's dtype from the file instead of assuming 4 bytes per parameter.":
                4 * facts["trainable_parameters"] if dtypes != ["float32"] else None,
            "the adapter is trained and saved in fp32 although the 4-bit layers compute in bf16: read the dtype from the file, "
            "do not assume it.": 2 * facts["trainable_parameters"] if dtypes != ["bfloat16"] else None,
        },
        "base_memory": {
            "use each parameter's own element_size(): a 4-bit weight is stored as packed uint8 (two weights per byte, element_size() = 1), "
            "a bf16 one takes 2 bytes, and only fp32 takes 4.": facts["base_fp32"],
            "leave out the adapter's parameters (names with 'lora_'): get_base_model() still holds the LoRA layers PEFT injected, "
            "and the question is about the frozen base.": facts["with_adapter"],
            "that is what the base takes in full precision (its config's shapes in fp32): measure the parameters this model "
            "really holds.": facts["full_bytes"],
        },
    }[key]
    generic = {"trainable_parameters": "sum numel() over the parameters with requires_grad.",
               "adapter_file": "load adapter_model.safetensors (safetensors.torch.load_file) and sum numel() × element_size() over its tensors.",
               "base_memory": "sum numel() × element_size() over the parameters that are not the adapter's (a tied tensor counts once, "
                              "as model.named_parameters() gives it)."}[key]
    return next((h for h, v in wrongs.items() if v is not None and isinstance(got, (int, float)) and is_close(float(got), v, 1e-3)), generic)


def _ex04_expect_measure(entry: tuple[Any, str], facts: dict, what: str, measured: Any = None) -> Any:
    """Fail unless the learner's ``measure`` gave (``entry``) every quantity of ``facts``; ``measured``: what it returned
    for the learner's own run, when this is another adapter."""
    got, _ = entry
    expect(isinstance(got, dict) and set(got) == set(EX04_QLORA_QUESTIONS), f"`measure` should return a dict with the keys {sorted(EX04_QLORA_QUESTIONS)}.",
           "one number per question of EX04_QLORA_QUESTIONS.")
    for key in EX04_QLORA_QUESTIONS:
        value = got[key]
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        close = number and is_close(float(value), facts[key], 0 if key == "trainable_parameters" else 1e-3)
        copied = measured is not None and value == measured[key]
        expect(close, f"on {what}, measure(...)[{key!r}] is {value!r}; that is not {EX04_QLORA_QUESTIONS[key]}.",
               "it is the number it gave for your run: measure the model and folder it is given instead of copying numbers from a "
               "printout (the check passes other adapters too)." if copied else _ex04_measure_hint(key, value, facts))
    return got


def _ex04_adapters(inputs: dict, folder: Path):
    """The task's other adapters, saved under ``folder``: (what, PEFT model, adapter folder) for LoRA of ``inputs["lora"]``
    on a bf16 Llama of ``inputs["model"]``'s shape (a bf16 adapter), then on that Llama loaded in 4-bit NF4 (QLoRA, fp32 adapter)."""
    import torch
    from peft import get_peft_model

    from ftcourse.configs import LoraSettings
    from ftcourse.models import load_model
    from ftcourse.peft_methods import build_peft_config

    settings = LoraSettings(**inputs["lora"])
    saved = _ex04_saved(inputs["model"], folder / "base")
    full = load_model(str(saved)).to(torch.bfloat16)
    for i, (what, base, fp32_adapter) in enumerate((("bf16 base with a bf16 LoRA adapter", full, False),
                                                    ("QLoRA model (4-bit base, fp32 adapter)", load_model(str(saved), quantization="4bit"), True))):
        model = get_peft_model(base, build_peft_config("lora", base, settings), autocast_adapter_dtype=fp32_adapter)
        model.save_pretrained(folder / f"adapter{i}")
        yield what, model, folder / f"adapter{i}"


@graded_check({"inputs": {"model": _EX04_SMALL, "lora": {"r": 2, "lora_alpha": 4, "target_modules": ["o_proj", "down_proj"]}}, "expected": {}})
def check_ex04_task4(inputs, result, predictions, measure) -> dict:
    """``result``: fine_tune(...) with method "qlora" on the intent data; ``predictions``: question -> one of EX04_ANSWERS,
    QLoRA compared with LoRA of the same settings, committed before training; ``measure(peft_model, adapter_dir)``: each
    question's quantity (trainable parameters, the saved adapter's tensor bytes, the frozen base's parameter bytes)."""
    run = describe_run(result)
    try:
        quantized = is_4bit(result.model)
    except Exception:  # not a RunResult: the judge says so
        quantized = None
    outputs = [run_learner(measure, result.model, result.run_dir) if run["type"] == "RunResult" else {"raised": "TypeError", "message": "no run"}]
    with tempfile.TemporaryDirectory() as folder:
        outputs += [run_learner(measure, model, adapter_dir) for _, model, adapter_dir in _ex04_adapters(inputs, Path(folder))]
    return {"run": run, "is_4bit": quantized, "predictions": describe(predictions), "outputs": outputs}


def _ex04_run_base(case: Case) -> tuple[Any, list]:
    """The run's architecture and its 4-bit base's parameters: the learner's trained model in their kernel, else the grader's
    reference model and its own 4-bit copy."""
    result = case.objects.get("result")
    if result is not None:
        return result.model, [p for n, p in result.model.named_parameters() if "lora_" not in n]
    return case.reference("model"), list(_ex04_4bit(case.reference("P").model).parameters())


@check_ex04_task4.judge
def _judge_task4(data: dict, case: Case) -> str:
    from ftcourse.configs import LoraSettings
    from ftcourse.models import weightless_copy

    config, tensors, losses, record = collected_run(data.get("run"), case, "qlora")
    expect(data.get("is_4bit") is True, "the trained model's base is not 4-bit.", "method='qlora' loads the base in 4 bits; pass the model name, not a loaded model.")
    expect_intent_record(record)
    predictions, _ = output_of(data.get("predictions"), "predictions")
    expect(isinstance(predictions, dict) and set(predictions) == set(EX04_QLORA_QUESTIONS),
           f"`predictions` should have the keys {sorted(EX04_QLORA_QUESTIONS)}.", "one answer per question of EX04_QLORA_QUESTIONS.")
    expect(all(v in EX04_ANSWERS for v in predictions.values()), "some answers are not one of EX04_ANSWERS.", f"answer with one of {EX04_ANSWERS}.")
    model, base = _ex04_run_base(case)
    size = case.file(f"{data['run']['folder']}/adapter_model.safetensors")
    mine = _ex04_facts(base, tensors, len(size or b""), weightless_copy(model))
    outputs = outputs_of(data, 3, "measure", "define def measure(peft_model, adapter_dir): ...")
    got = _ex04_expect_measure(outputs[0], mine, "your QLoRA run")
    with tempfile.TemporaryDirectory() as folder:
        for (what, other, adapter_dir), entry in zip(_ex04_adapters(case.inputs, Path(folder)), outputs[1:]):
            _ex04_expect_measure(entry, _ex04_live_facts(other, adapter_dir), f"a {case.kind} {what}", got)
    lora = peft_trainable(model, "lora", LoraSettings(r=config["r"], lora_alpha=config["lora_alpha"], target_modules=sorted(lora_targets(config))))

    def compare(a, b):
        return "same" if a == b else ("smaller" if a < b else "larger")

    measured = {"trainable_parameters": compare(mine["trainable_parameters"], lora), "adapter_file": compare(mine["adapter_file"], 4 * lora),
                "base_memory": compare(mine["base_memory"], mine["full_bytes"])}
    for key, want in measured.items():
        expect(predictions[key] == want, f"you predicted {predictions[key]!r} for {EX04_QLORA_QUESTIONS[key]} (QLoRA compared with LoRA); "
               "the measurements say otherwise (compare measure(...) of your run and of the LoRA twin).", _EX04_WHY[key])
    return (f"QLoRA r={config['r']}: loss {losses[0]:.2f} → {losses[-1]:.2f}, {mine['trainable_parameters']:,} trainable parameters "
            f"(as LoRA), {mine['adapter_file'] / 2**20:.2f} MiB of adapter, a {mine['base_memory'] / 2**20:.0f} MiB base; all three "
            f"predictions right, and measure() right on two {case.kind} adapters.")


EX04_USABLE = 0.8  # the share of GPU memory for weights and optimizer states; the rest for activations and the runtime


@cache
def _ex04_needs(shape: str) -> tuple[int, dict[str, float]]:
    """(parameters, GiB of weights, gradients and optimizer states per method) of a shape, from the course's memory model:
    bf16 weights, mixed-precision AdamW for full fine-tuning, fp32 LoRA r=16 on q_proj and v_proj, an NF4 base for QLoRA."""
    from transformers import AutoConfig, LlamaConfig

    from ftcourse.memory import MODEL_SHAPES, model_shape, training_memory
    from ftcourse.models import resolve_model

    shell = model_shape(LlamaConfig(**MODEL_SHAPES[shape]) if shape in MODEL_SHAPES else AutoConfig.from_pretrained(resolve_model(shape)))
    needs = {m: training_memory(shell, m, device="cuda").model_states / 2**30 for m in ("full", "lora", "qlora")}
    return sum(p.numel() for p in shell.parameters()), needs


def _ex04_choice(needs: dict[str, float], gpu_gib: float, usable: float = EX04_USABLE) -> str:
    return next((m for m in ("full", "lora", "qlora") if needs[m] <= usable * gpu_gib), "none")


#: Task 5's practice cases: (shape, GPU GiB), the embedded model's shape and MODEL_SHAPES'; the memory model says what fits.
#: Each tempting rule chooses wrong on at least one: weights only, no headroom, GB for GiB, 14 or 20 bytes for full fine-tuning.
_EX04_CASES = [["embedded", 8], ["embedded", 2.4], ["embedded", 3], ["SmolLM2-1.7B", 24], ["SmolLM2-1.7B", 33], ["Llama-2-7B", 24],
               ["Llama-2-7B", 17], ["Llama-2-7B", 16], ["Llama-2-7B", 14], ["Llama-2-70B", 80], ["Llama-2-70B", 24]]


@graded_check({"inputs": {"cases": _EX04_CASES}, "expected": {}})
def check_ex04_task5(inputs, choose_method) -> dict:
    """``choose_method(n_params, gpu_gib)``: "full", "lora", "qlora" or "none" — the least approximation that fits."""
    return {"outputs": [run_learner(choose_method, _ex04_needs(shape)[0], gib) for shape, gib in inputs["cases"]]}


_EX04_HOW = ("try each method in order full → lora → qlora and take the first whose weights and optimizer states "
             "(about n_params × bytes per parameter) fit in EX04_USABLE × gpu_gib GiB; 'none' if none fits.")
_EX04_FULL = ("full fine-tuning with mixed-precision AdamW keeps 16 bytes per parameter: 2 (16-bit weights) + 2 (16-bit gradients) "
              "+ 4 (fp32 master weights) + 4 + 4 (Adam's two fp32 states)")
#: The tempting rules: (bytes per parameter of full fine-tuning / 16, usable share, bytes in a "GiB") -> why it is wrong.
_EX04_RULES = {(2 / 16, EX04_USABLE, 2**30): _EX04_FULL + ", not just the 2 of the weights.",
               (4 / 16, EX04_USABLE, 2**30): _EX04_FULL + ", not just the 4 of fp32 weights.",
               (14 / 16, EX04_USABLE, 2**30): _EX04_FULL + ", not 14 (the fp32 master copy counts).",
               (20 / 16, EX04_USABLE, 2**30): _EX04_FULL + ", not 20.",
               (1.0, 1.0, 2**30): "keep 20% of the GPU free (EX04_USABLE = 0.8): activations, the CUDA context and fragmentation need it.",
               (1.0, EX04_USABLE, 1e9): "a GiB is 2**30 bytes (GPU memory is quoted in GiB), not 1e9."}


def _ex04_rule_choice(need: dict[str, float], gib: float, rule: tuple[float, float, float]) -> str:
    full, usable, unit = rule
    return _ex04_choice({m: v * (full if m == "full" else 1) * 2**30 / unit for m, v in need.items()}, gib, usable)


@check_ex04_task5.judge
def _judge_task5(data: dict, case: Case) -> str:
    forbid_source_helpers(case, "choose_method", {"training_memory": "ftcourse.memory.training_memory", "model_shape": "ftcourse.memory.model_shape"},
                          "decide from bytes per parameter yourself; the course's memory model is what the check compares with.")
    cases = case.inputs["cases"]
    got = [value for value, _ in outputs_of(data, len(cases), "choose_method", "define def choose_method(n_params, gpu_gib): ...")]
    needs = [_ex04_needs(shape) for shape, _ in cases]
    for (shape, gib), (n, need), choice in zip(cases, needs, got):
        want = _ex04_choice(need, gib)
        if choice == want:
            continue
        explained = {why: sum(_ex04_rule_choice(nd, g, rule) == c for (_, g), (_, nd), c in zip(cases, needs, got))
                     for rule, why in _EX04_RULES.items() if _ex04_rule_choice(need, gib, rule) == choice}  # the rule the learner follows
        rule = max(explained, key=explained.get, default="")
        shown = "" if case.hidden else (f" (full {need['full']:.1f}, LoRA {need['lora']:.1f}, QLoRA {need['qlora']:.1f} GiB by "
                                        f"ftcourse.memory.training_memory vs {EX04_USABLE * gib:.1f} GiB usable)")
        expect(False, f"choose_method({n:,}, {gib}) = {str(choice)[:20]!r} is not the method that fits{shown}.", f"{rule} {_EX04_HOW}".strip())
    return f"right on {len(cases)} {case.kind} (model, GPU) pairs, from a 135M model to 70B."
