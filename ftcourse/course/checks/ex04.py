"""Checks of exercise 04, QLoRA and memory (``solutions/ex04_qlora_memory.ipynb``)."""

from __future__ import annotations

import json
import tempfile
from functools import cache
from pathlib import Path

from ftcourse.course.checks.core import (
    call_learner,
    expect,
    expect_intent_train,
    forbid_helpers,
    is_4bit,
    is_close,
    lora_targets,
    peft_trainable,
    probe_logits,
    safetensors_bytes,
    self_check,
    trained_adapter,
)

__all__ = [
    "check_ex04_task1", "check_ex04_task2", "check_ex04_task3", "check_ex04_task4", "check_ex04_task5", "EX04_ANSWERS",
    "EX04_QLORA_QUESTIONS", "EX04_TEXT", "EX04_USABLE",
]

_SIZE_CASES = [((1_000_000, 32), 3.814697265625), ((134_515_008, 16), 256.5670166015625), ((7_000_000_000, 4), 3337.860107421875)]
#: The prompt exercise 04 compares full-precision and 4-bit logits on.
EX04_TEXT = "Hello! I ordered a CrispAir air fryer last week and it still has not shipped. Can you check order 73654?"


@self_check
def check_ex04_task1(weight_megabytes) -> str:
    """``weight_megabytes(n_params, bits)``: MiB that n_params weights of ``bits`` bits take."""
    expect(callable(weight_megabytes), "`weight_megabytes` is not a function.", "define def weight_megabytes(n_params, bits): ...")
    for (n, bits), want in _SIZE_CASES:
        got = weight_megabytes(n, bits)
        expect(isinstance(got, (int, float)) and is_close(float(got), want, 1e-9), f"weight_megabytes({n:,}, {bits}) = {got}; want {want:,.2f}.",
               "bytes = parameters × bits / 8, and a MiB is 2**20 = 1,048,576 bytes.")
    return f"right on {len(_SIZE_CASES)} hidden cases (a 7B model in 4 bits: {_SIZE_CASES[-1][1]:,.0f} MiB)."


def _ex04_hidden_models(folder: Path):
    """A small Llama with its own (untied) output layer, saved in ``folder``: (full precision, loaded from there in 4-bit NF4)."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    from ftcourse.models import load_model

    config = LlamaConfig(vocab_size=512, hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, tie_word_embeddings=False)
    torch.manual_seed(0)
    full = AutoModelForCausalLM.from_config(config)
    full.save_pretrained(folder)
    return full, load_model(str(folder), quantization="4bit")


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
        "bitsandbytes leaves the output layer (lm_head) in full precision; here it is the input embedding matrix itself (tied).":
            sum(v / 8 if k in linear else v for k, v in full.items()),
        "the parameters that stay unquantized keep their own dtype (fp32 here, element_size() = 4), not 2 bytes.":
            sum(full[k] / 8 if k in linear and k != id(head.weight) else p.numel() * 2 for k, p in params.items()),
    }
    return " ".join(h for h, v in wrongs.items() if isinstance(got, (int, float)) and is_close(float(got), v, 0.02)) or (
        "4-bit linear weights take half a byte each (two per byte; their scales are kept outside the parameters); every "
        "other parameter keeps its bytes (p.numel() * p.element_size()), and the output layer is not quantized.")


@self_check
def check_ex04_task2(qmodel, model, predict_4bit_bytes) -> str:
    """``qmodel``: the model loaded in 4-bit NF4 with double quantization; ``model``: the full-precision one;
    ``predict_4bit_bytes(model)``: the 4-bit model's get_memory_footprint(), predicted from the full-precision model."""
    from ftcourse.models import load_model, weightless_copy

    expect(is_4bit(qmodel), "`qmodel` has no 4-bit linear layers.", "qmodel = load_model(P.model, quantization='4bit').")
    config = getattr(qmodel.config, "quantization_config", None)
    config = config.to_dict() if hasattr(config, "to_dict") else dict(config or {})
    expect(config.get("bnb_4bit_quant_type") == "nf4" and config.get("bnb_4bit_use_double_quant"),
           f"the 4-bit settings are quant_type={config.get('bnb_4bit_quant_type')!r}, double_quant={config.get('bnb_4bit_use_double_quant')}.",
           "QLoRA uses NF4 with double quantization (the course's default QuantizationSettings).")
    expect(not is_4bit(model), "`model` should be the full-precision model, for comparison.", "model = load_model(P.model).")
    small, full = qmodel.get_memory_footprint(), model.get_memory_footprint()
    expect(small < 0.45 * full, f"the 4-bit model takes {small / 2**20:.0f} MB, {100 * small / full:.0f}% of {full / 2**20:.0f} MB.",
           "load it with quantization='4bit' (8-bit or a cast to bf16 saves less).")
    expect(callable(predict_4bit_bytes), "`predict_4bit_bytes` is not a function.", "define def predict_4bit_bytes(model): ...")
    forbid_helpers(predict_4bit_bytes, "predict_4bit_bytes", {"load_model": load_model, "get_memory_footprint": None, "from_pretrained": None},
                   "predict it from the full-precision model's parameters; loading the 4-bit model is the measurement.")
    with tempfile.TemporaryDirectory() as folder:
        hidden, hidden_4bit = _ex04_hidden_models(Path(folder))
    hidden_bytes = hidden_4bit.get_memory_footprint()
    for name, shell, want in (("this model", weightless_copy(model), small), ("a hidden model with its own output layer", hidden, hidden_bytes)):
        got = call_learner(predict_4bit_bytes, shell, name="predict_4bit_bytes")
        expect(isinstance(got, (int, float)) and abs(float(got) - want) <= 0.02 * want,
               f"for {name} you predict {got!r} bytes; loaded in 4-bit it takes {want:,} bytes.", _ex04_footprint_hint(got, shell))
    return (f"{small / 2**20:.0f} MB in 4-bit NF4 vs {full / 2**20:.0f} MB ({100 * small / full:.0f}%), as predicted: linear layers at "
            "half a byte per weight, embeddings (tied to the output layer) and norms in fp32.")


@self_check
def check_ex04_task3(logit_gap, top1_agreement, model, qmodel, tokenizer) -> str:
    """``logit_gap``: max |logit difference| between model and qmodel on EX04_TEXT; ``top1_agreement``: share of equal argmax."""
    full, small = probe_logits(model, tokenizer, EX04_TEXT), probe_logits(qmodel, tokenizer, EX04_TEXT)
    gap = float((full - small).abs().max())
    agree = float((full.argmax(-1) == small.argmax(-1)).float().mean())
    expect(isinstance(logit_gap, (int, float)) and is_close(float(logit_gap), gap, 0.02),
           f"logit_gap is {logit_gap}; the largest |difference| between the two models' logits on EX04_TEXT is {gap:.3f}.",
           "run both models on tokenizer(EX04_TEXT, return_tensors='pt') under torch.no_grad() and take (a - b).abs().max().")
    expect(isinstance(top1_agreement, (int, float)) and abs(float(top1_agreement) - agree) <= 1 / full.shape[1] + 1e-9,
           f"top1_agreement is {top1_agreement}; the models pick the same next token at {agree:.3f} of the positions.",
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


def _ex04_quantities(model, adapter_dir) -> dict[str, int]:
    """EX04_QLORA_QUESTIONS measured on a PEFT model and the folder its adapter was saved in."""
    return {"trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "adapter_file": safetensors_bytes(adapter_dir),
            "base_memory": sum(p.numel() * p.element_size() for n, p in model.named_parameters() if "lora_" not in n)}


def _ex04_measured(result) -> dict[str, str]:
    """Each question of EX04_QLORA_QUESTIONS answered from the QLoRA run and the same adapter on the full-precision base."""
    from ftcourse.configs import LoraSettings
    from ftcourse.models import weightless_copy

    config = json.loads((Path(result.run_dir) / "adapter_config.json").read_text())
    lora = peft_trainable(result.model, "lora", LoraSettings(r=config["r"], lora_alpha=config["lora_alpha"], target_modules=sorted(lora_targets(config))))
    qlora = _ex04_quantities(result.model, result.run_dir)
    full_bytes = sum(p.numel() * p.element_size() for p in weightless_copy(result.model).parameters())

    def compare(a, b):
        return "same" if a == b else ("smaller" if a < b else "larger")

    return {"trainable_parameters": compare(result.metrics["trainable_parameters"], lora), "adapter_file": compare(qlora["adapter_file"], 4 * lora),
            "base_memory": compare(qlora["base_memory"], full_bytes)}


def _ex04_measure_hint(key: str, got, model, adapter_dir) -> str:
    """The hint for a wrong measurement: the tempting ways to count, recognised by their value."""
    from safetensors.torch import load_file

    from ftcourse.models import weightless_copy

    params = dict(model.named_parameters())
    trainable = sum(p.numel() for p in params.values() if p.requires_grad)
    saved = load_file(Path(adapter_dir) / "adapter_model.safetensors")
    dtypes = sorted({str(t.dtype).removeprefix("torch.") for t in saved.values()})
    base = [p for n, p in params.items() if "lora_" not in n]
    wrongs = {
        "trainable_parameters": {
            "count only the parameters the optimizer updates (requires_grad): the base is frozen.": sum(p.numel() for p in params.values()),
        },
        "adapter_file": {
            "the file starts with a JSON header: count the bytes of its tensors (numel × element_size), not the file's size.":
                (Path(adapter_dir) / "adapter_model.safetensors").stat().st_size,
            f"this adapter was saved in {', '.join(dtypes)}: read each tensor's dtype from the file instead of assuming 4 bytes per parameter.":
                4 * trainable if dtypes != ["float32"] else None,
            "the adapter is trained and saved in fp32 although the 4-bit layers compute in bf16: read the dtype from the file, "
            "do not assume it.": 2 * trainable if dtypes != ["bfloat16"] else None,
        },
        "base_memory": {
            "use each parameter's own element_size(): a 4-bit weight is stored as packed uint8 (two weights per byte, element_size() = 1), "
            "a bf16 one takes 2 bytes, and only fp32 takes 4.": 4 * sum(p.numel() for p in base),
            "leave out the adapter's parameters (names with 'lora_'): get_base_model() still holds the LoRA layers PEFT injected, "
            "and the question is about the frozen base.": sum(p.numel() * p.element_size() for p in params.values()),
            "that is what the base takes in full precision (its config's shapes in fp32): measure the parameters this model "
            "really holds.": sum(p.numel() * p.element_size() for p in weightless_copy(model).parameters()),
        },
    }[key]
    generic = {"trainable_parameters": "sum numel() over the parameters with requires_grad.",
               "adapter_file": "load adapter_model.safetensors (safetensors.torch.load_file) and sum numel() × element_size() over its tensors.",
               "base_memory": "sum numel() × element_size() over the parameters that are not the adapter's (a tied tensor counts once, "
                              "as model.named_parameters() gives it)."}[key]
    return next((h for h, v in wrongs.items() if v is not None and isinstance(got, (int, float)) and is_close(float(got), v, 1e-3)), generic)


def _ex04_expect_measure(measure, model, adapter_dir, what: str, measured: dict | None = None) -> dict:
    """Run the learner's ``measure`` on a PEFT model and its saved adapter; fail unless every quantity is the check's own.

    ``measured``: what it returned for the learner's own run, when it ran on that first.
    """
    want = _ex04_quantities(model, adapter_dir)
    got = call_learner(measure, model, adapter_dir, name="measure")
    expect(isinstance(got, dict) and set(got) == set(EX04_QLORA_QUESTIONS), f"`measure` should return a dict with the keys {sorted(EX04_QLORA_QUESTIONS)}.",
           "one number per question of EX04_QLORA_QUESTIONS.")
    for key, value in want.items():
        close = is_close(float(got[key]), value, 0 if key == "trainable_parameters" else 1e-3) if isinstance(got[key], (int, float)) else False
        copied = measured is not None and got[key] == measured[key]
        expect(close, f"on {what}, measure(...)[{key!r}] is {got[key]!r}; that is not {EX04_QLORA_QUESTIONS[key]}.",
               "it is the number it gave for your run: measure the model and folder it is given instead of copying numbers from a "
               "printout (the check passes other adapters too)." if copied else _ex04_measure_hint(key, got[key], model, adapter_dir))
    return got


def _ex04_hidden_adapters(measure, measured: dict) -> None:
    """Run ``measure`` on a hidden tiny Llama with LoRA r=2 on o_proj and down_proj: a bf16 adapter on its bf16 base, and QLoRA."""
    import torch
    from peft import get_peft_model

    from ftcourse.configs import LoraSettings
    from ftcourse.peft_methods import build_peft_config

    settings = LoraSettings(r=2, lora_alpha=4, target_modules=["o_proj", "down_proj"])
    with tempfile.TemporaryDirectory() as folder:
        full, quantized = _ex04_hidden_models(Path(folder) / "base")
        for what, base, fp32_adapter in (("a hidden bf16 base with a bf16 LoRA adapter", full.to(torch.bfloat16), False),
                                         ("a hidden QLoRA model (4-bit base, fp32 adapter)", quantized, True)):
            model = get_peft_model(base, build_peft_config("lora", base, settings), autocast_adapter_dtype=fp32_adapter)
            model.save_pretrained(Path(folder) / "adapter")
            _ex04_expect_measure(measure, model, Path(folder) / "adapter", what, measured)


@self_check
def check_ex04_task4(result, predictions, measure) -> str:
    """``result``: fine_tune(...) with method "qlora" on the intent data; ``predictions``: question -> one of EX04_ANSWERS,
    QLoRA compared with LoRA of the same settings, committed before training; ``measure(peft_model, adapter_dir)``: each
    question's quantity (trainable parameters, the saved adapter's tensor bytes, the frozen base's parameter bytes)."""
    config, losses = trained_adapter(result, "qlora")
    expect(is_4bit(result.model), "the trained model's base is not 4-bit.", "method='qlora' loads the base in 4 bits; pass the model name, not a loaded model.")
    expect_intent_train(result)
    expect(isinstance(predictions, dict) and set(predictions) == set(EX04_QLORA_QUESTIONS),
           f"`predictions` should have the keys {sorted(EX04_QLORA_QUESTIONS)}.", "one answer per question of EX04_QLORA_QUESTIONS.")
    expect(all(v in EX04_ANSWERS for v in predictions.values()), f"the answers are {sorted(set(predictions.values()))}.", f"answer with one of {EX04_ANSWERS}.")
    expect(callable(measure), "`measure` is not a function.", "define def measure(peft_model, adapter_dir): ...")
    mine = _ex04_expect_measure(measure, result.model, result.run_dir, "your QLoRA run")
    _ex04_hidden_adapters(measure, mine)
    for key, want in _ex04_measured(result).items():
        expect(predictions[key] == want, f"you predicted {predictions[key]!r} for {EX04_QLORA_QUESTIONS[key]} (QLoRA compared with LoRA); "
               "the measurements say otherwise (compare measure(...) of your run and of the LoRA twin).", _EX04_WHY[key])
    return (f"QLoRA r={config['r']}: loss {losses[0]:.2f} → {losses[-1]:.2f}, {mine['trainable_parameters']:,} trainable parameters "
            f"(as LoRA), {mine['adapter_file'] / 2**20:.2f} MiB of adapter, a {mine['base_memory'] / 2**20:.0f} MiB base; all three "
            "predictions right, and measure() right on two hidden adapters.")


EX04_USABLE = 0.8  # the share of GPU memory for weights and optimizer states; the rest for activations and the runtime
#: Task 5's hidden cases: (shape, GPU GiB), the shapes the embedded model's and MODEL_SHAPES'; the memory model says what fits.
_EX04_CASES = [("embedded", 8), ("SmolLM2-1.7B", 24), ("SmolLM2-1.7B", 33), ("Llama-2-7B", 24), ("Llama-2-7B", 17), ("Llama-2-7B", 14),
               ("Llama-2-70B", 80), ("Llama-2-70B", 24)]


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


@self_check
def check_ex04_task5(choose_method) -> str:
    """``choose_method(n_params, gpu_gib)``: "full", "lora", "qlora" or "none" — the least approximation that fits."""
    expect(callable(choose_method), "`choose_method` is not a function.", "define def choose_method(n_params, gpu_gib): ...")
    for shape, gib in _EX04_CASES:
        n, need = _ex04_needs(shape)
        want = _ex04_choice(need, gib)
        got = call_learner(choose_method, n, gib, name="choose_method")
        hint = ("try each method in order full → lora → qlora and take the first whose weights and optimizer states "
                "(about n_params × bytes per parameter) fit in EX04_USABLE × gpu_gib GiB; 'none' if none fits.")
        if got == "full" and want != "full":
            hint = "full fine-tuning needs 16 bytes per parameter (gradients and Adam states too), not just the 2 or 4 of the weights. " + hint
        elif got != want and _ex04_choice(need, gib, usable=1.0) == got:
            hint = "keep 20% of the GPU free (EX04_USABLE = 0.8): activations, the CUDA context and fragmentation need it. " + hint
        elif got != want and _ex04_choice({m: v * 2**30 / 1e9 for m, v in need.items()}, gib) == got:
            hint = "a GiB is 2**30 bytes (GPU memory is quoted in GiB), not 1e9. " + hint
        expect(got == want, f"choose_method({n:,}, {gib}) = {got!r} ({shape}); want {want!r}: full {need['full']:.1f}, LoRA {need['lora']:.1f}, "
               f"QLoRA {need['qlora']:.1f} GiB (ftcourse.memory.training_memory) vs {EX04_USABLE * gib:.1f} GiB usable.", hint)
    return f"right on {len(_EX04_CASES)} hidden (model, GPU) pairs, from a 135M model on 8 GiB to 70B on 24 GiB."
