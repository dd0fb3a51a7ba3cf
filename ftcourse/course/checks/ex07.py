"""Checks of exercise 07, merging (``solutions/ex07_merging.ipynb``)."""

from __future__ import annotations

import json
from pathlib import Path

from ftcourse.course.checks.core import call_learner, expect, forbid_helpers, is_4bit, is_close, probe_logits, safetensors_bytes, self_check

__all__ = [
    "check_ex07_task1", "check_ex07_task2", "check_ex07_task3", "check_ex07_task4", "check_ex07_task5",
    "ex07_broken_prompt_ids", "EX07_CAUSES", "ex07_classmate_merge",
]

def _relative_gap(a, b) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-6))


def _adapter_logits(adapter_dir, tokenizer):
    from ftcourse.models import load_model

    return probe_logits(load_model(str(adapter_dir)), tokenizer)


#: Exercise 07, task 1: what may have made the classmate's merged model answer differently from their adapter.
EX07_CAUSES = {
    "4bit_base": "the adapter was merged into a 4-bit copy of the base model, to save memory",
    "scale": "the merge multiplied B A by alpha instead of alpha / r",
    "dropout": "LoRA's dropout was active during the merge",
    "tokenizer": "the merged model was evaluated with another tokenizer",
}


def ex07_classmate_merge(adapter_dir):
    """Exercise 07, task 1: a classmate's merge of the adapter saved in ``adapter_dir`` (base loaded in 4 bits to save
    memory). Do not fix it here."""
    from peft import PeftModel

    from ftcourse.models import load_model

    base_name = json.loads((Path(adapter_dir) / "adapter_config.json").read_text())["base_model_name_or_path"]
    return PeftModel.from_pretrained(load_model(base_name, quantization="4bit"), str(adapter_dir)).merge_and_unload()


@self_check
def check_ex07_task1(causes, merged, adapter_dir, tokenizer) -> str:
    """``causes``: names from EX07_CAUSES; ``merged``: the adapter of ``adapter_dir`` merged into the weights (a plain model again)."""
    from peft import PeftModel

    expect(isinstance(causes, (set, list, tuple)) and set(causes) <= set(EX07_CAUSES), f"`causes` should be a set of names from EX07_CAUSES; got {causes!r}.",
           f"pick from {sorted(EX07_CAUSES)}.")
    why = ("merge_and_unload into a 4-bit layer dequantizes the weight, adds (alpha / r) · B A and rounds the sum to NF4 again: the "
           "merged model answers like a 4-bit model, not like the adapter model it came from (peft#2105). Merge into the full-precision base.")
    expect("4bit_base" in causes, "you did not name what changed the merged model's answers.", why)
    expect(set(causes) == {"4bit_base"}, f"{sorted(set(causes) - {'4bit_base'})} did not happen here.",
           "PEFT's merge uses alpha / r and no dropout, and the tokenizer was the same: only the base the adapter was merged into changed.")
    expect(not is_4bit(merged), "`merged` has 4-bit layers: it was merged into the quantized base.", why)
    expect(not isinstance(merged, PeftModel) and not any("lora_" in n for n, _ in merged.named_modules()),
           "`merged` still has LoRA layers.", "merge_and_unload() returns the plain model with the update folded in.")
    gap = _relative_gap(probe_logits(merged, tokenizer), _adapter_logits(adapter_dir, tokenizer))
    expect(gap < 1e-4, f"the merged model's logits differ from the adapter model's by {gap:.1e} (relative).",
           "merge the adapter that was saved in adapter_dir into the full-precision base, and do not change the weights afterwards.")
    return f"merged into the full-precision base: no LoRA layers left, and the logits match the adapter model (relative gap {gap:.1e})."


def _ex07_hidden_saved() -> tuple[object, int]:
    """A small Llama with an untied output layer, and the tensor bytes save_pretrained writes for it."""
    import tempfile

    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False))
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        return model, safetensors_bytes(folder)


def _ex07_bytes_hint(got, model) -> str:
    params = list(model.parameters())
    wrongs = {"tied weights are stored once: here the output layer IS the embedding matrix. model.parameters() lists it once; "
              "state_dict() lists it under both names.": sum(t.numel() * t.element_size() for t in model.state_dict().values()),
              "the weights are saved in their own dtype (p.element_size(): 4 bytes for fp32 here), not in 16 bits.": sum(p.numel() * 2 for p in params),
              "the task asks for bytes, not MiB.": sum(p.numel() * p.element_size() for p in params) / 2**20}
    return next((h for h, v in wrongs.items() if isinstance(got, (int, float)) and is_close(float(got), v, 1e-6)),
                "each parameter tensor once (model.parameters()), numel() × element_size() bytes.")


@self_check
def check_ex07_task2(merged_dir, reloaded, adapter_dir, tokenizer, predict_weight_bytes, merged) -> str:
    """``merged_dir``: the merged model saved as a plain model folder; ``reloaded``: it loaded back with load_model;
    ``predict_weight_bytes(model)``: the bytes of the tensors save_pretrained writes for ``model``, predicted before saving."""
    from peft import PeftModel

    folder = Path(merged_dir)
    files = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
    expect("config.json" in files and any(f.endswith(".safetensors") for f in files),
           f"{folder} is not a model folder (found {sorted(files)}).", "merged.save_pretrained(merged_dir) and tokenizer.save_pretrained(merged_dir).")
    expect("adapter_config.json" not in files, f"{folder} holds an adapter, not a merged model.", "save the merged model, not lora_model.")
    expect(not isinstance(reloaded, PeftModel), "`reloaded` is a PeftModel.", "reloaded = load_model(str(merged_dir)).")
    gap = _relative_gap(probe_logits(reloaded, tokenizer), _adapter_logits(adapter_dir, tokenizer))
    expect(gap < 1e-4, f"the reloaded model's logits differ from the adapter model's by {gap:.1e} (relative).",
           "save the merged model in full precision and load that folder.")
    expect(callable(predict_weight_bytes), "`predict_weight_bytes` is not a function.", "define def predict_weight_bytes(model): ...")
    forbid_helpers(predict_weight_bytes, "predict_weight_bytes", {"save_pretrained": None, "save_file": None, "save_model": None},
                   "predict it from the model's parameters; saving the model is the measurement.")
    hidden, hidden_bytes = _ex07_hidden_saved()
    for name, model, want in (("your merged model", merged, safetensors_bytes(folder)), ("a hidden model with its own output layer", hidden, hidden_bytes)):
        got = call_learner(predict_weight_bytes, model, name="predict_weight_bytes")
        expect(isinstance(got, (int, float)) and is_close(float(got), want, 1e-6),
               f"for {name} you predict {got!r} bytes; save_pretrained writes {want:,} bytes of tensors.", _ex07_bytes_hint(got, model))
    return f"{folder.name}/ loads as a plain model that reproduces the adapter model (relative gap {gap:.1e}); its tensor bytes were predicted exactly."


def _folder_mb(folder) -> float:
    from pathlib import Path

    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file()) / 2**20


@self_check
def check_ex07_task3(adapter_mb, merged_mb, adapter_dir, merged_dir) -> str:
    """``adapter_mb``, ``merged_mb``: total size in MiB of the files in each folder."""
    for name, got, folder in (("adapter_mb", adapter_mb, adapter_dir), ("merged_mb", merged_mb, merged_dir)):
        want = _folder_mb(folder)
        expect(isinstance(got, (int, float)) and is_close(float(got), want, 0.01), f"{name} is {got}; the files in {folder} take {want:.2f} MiB.",
               "sum p.stat().st_size over the files of the folder (Path(folder).rglob('*')) and divide by 2**20.")
    return f"the adapter takes {adapter_mb:.1f} MiB, the merged model {merged_mb:.0f} MiB ({merged_mb / adapter_mb:.0f}× more)."


@self_check
def check_ex07_task4(merge_weight) -> str:
    """``merge_weight(weight, lora_A, lora_B, alpha, r)``: the weight with the LoRA update folded in."""
    import torch
    from peft import LoraConfig, inject_adapter_in_model

    expect(callable(merge_weight), "`merge_weight` is not a function.", "define def merge_weight(weight, lora_A, lora_B, alpha, r): ...")
    forbid_helpers(merge_weight, "merge_weight", {"get_delta_weight": None, "merge_and_unload": None, "merge": None},
                   "write the formula with the tensors you are given: W + (alpha / r) · B @ A.")
    for r, alpha, shape in ((4, 8, (24, 40)), (2, 16, (40, 12))):
        torch.manual_seed(r)
        module = torch.nn.Sequential()
        module.add_module("proj", torch.nn.Linear(shape[1], shape[0], bias=False))
        layer = inject_adapter_in_model(LoraConfig(r=r, lora_alpha=alpha, target_modules=["proj"], init_lora_weights=False), module).proj
        weight, a, b = layer.base_layer.weight.detach(), layer.lora_A["default"].weight.detach(), layer.lora_B["default"].weight.detach()
        want = weight + layer.get_delta_weight("default").detach()
        got = call_learner(merge_weight, weight.clone(), a.clone(), b.clone(), alpha, r, name="merge_weight")
        expect(isinstance(got, torch.Tensor) and got.shape == want.shape, f"for a {tuple(shape)} layer you return shape {getattr(got, 'shape', None)}.",
               "B @ A has the weight's shape (out_features, in_features).")
        expect(torch.allclose(got, want, atol=1e-5), f"for r={r}, alpha={alpha} your merged weight differs from PEFT's by {float((got - want).abs().max()):.3f}.",
               "W + (alpha / r) * B @ A — B is (out, r), A is (r, in)." + (" You used alpha * r or alpha alone: the scale is alpha / r."
               if any(torch.allclose(got, weight + f * (b @ a), atol=1e-5) for f in (alpha * r, alpha, 1.0)) else ""))
    return "matches PEFT's merge on 2 hidden layers: W' = W + (alpha / r) · B A."


#: Exercise 07, task 5: how a colleague's inference code built its prompts (the adapter was trained on the chat template).
def ex07_broken_prompt_ids(tokenizer, message: str) -> list[int]:
    """The prompt of the colleague's inference code: plain text, no chat template. Do not fix it here."""
    from ftcourse.course.bundled import INTENT_LABELS
    from ftcourse.data import classification_instruction

    return tokenizer(f"{classification_instruction(INTENT_LABELS)}\n\nMessage: {message}\nIntent:")["input_ids"]


_EX07_MESSAGES = ["My blender arrived with a cracked jug.", "How do I change the email on my account?", "Where is order 9912?"]


@self_check
def check_ex07_task5(inference_ids, tokenizer) -> str:
    """``inference_ids(tokenizer, message)``: the prompt ids the intent adapter saw in training, for a new message."""
    from ftcourse.course.bundled import INTENT_LABELS
    from ftcourse.data import to_messages
    from ftcourse.generation import encode_prompt
    from ftcourse.tokenization import prompt_ids, tokenize_messages

    expect(callable(inference_ids), "`inference_ids` is not a function.", "define def inference_ids(tokenizer, message): ...")
    forbid_helpers(inference_ids, "inference_ids", {"prompt_ids": prompt_ids, "encode_prompt": encode_prompt, "tokenize_messages": tokenize_messages},
                   "build it with tokenizer.apply_chat_template yourself: the point is to see what training used.")
    for message in _EX07_MESSAGES:
        want = prompt_ids(tokenizer, to_messages({"text": message, "label": INTENT_LABELS[0]}, "classification", INTENT_LABELS)[:-1])
        got = call_learner(inference_ids, tokenizer, message, name="inference_ids")
        got = list(got["input_ids"] if isinstance(got, dict) else got)
        text, target = tokenizer.decode(got), tokenizer.decode(want)
        if "<|im_start|>" not in text:
            hint = "the adapter was trained on the chat template: build the prompt with tokenizer.apply_chat_template, not plain text."
        elif "SmolLM" in text and "SmolLM" not in target:
            hint = ("without a system message the template inserts its default one ('You are a helpful AI assistant named SmolLM…'); "
                    "training used the classification instruction as the system message (classification_instruction(INTENT_LABELS)).")
        elif target.startswith(text):
            hint = "the prompt stops before the assistant's turn: pass add_generation_prompt=True so the model answers instead of continuing the user."
        else:
            hint = "use the same messages as training: system = classification_instruction(INTENT_LABELS), user = the message, add_generation_prompt=True."
        expect(got == want, f"for {message!r} your prompt differs from the training prompt ({len(got)} vs {len(want)} tokens).", hint)
    return f"the inference prompt equals the training prompt on {len(_EX07_MESSAGES)} hidden messages."
