"""Checks of exercise 07, merging (``solutions/ex07_merging.ipynb``).

Every task follows the grading protocol (``core``'s docstring): a collect step that turns the learner's values, the
outputs of their functions and the folders their code wrote into plain data, and a judge that decides (it loads the
saved adapter onto its own base model to compare logits). The practice cases are here; the hidden inputs the grader
uses are in ``solutions/hidden/ex07.json``.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from ftcourse.course.checks.core import (
    Case,
    describe,
    expect,
    forbid_source_helpers,
    graded_check,
    is_close,
    output_of,
    outputs_of,
    probe_logits,
    run_learner,
    safetensors_bytes,
    workspace_adapter,
    workspace_path,
)

__all__ = [
    "check_ex07_task1", "check_ex07_task2", "check_ex07_task3", "check_ex07_task4", "check_ex07_task5",
    "ex07_broken_prompt_ids", "EX07_CAUSES", "ex07_classmate_merge",
]

#: The probe the merged and reloaded models are compared on: a text, and the vocabulary ids whose logits are collected.
_PROBE = {"probe": "Hi, my order 4417 has not arrived yet. Where is it?", "ids": [0, 2, 13, 198, 314, 1010, 2048, 4417, 9000, 20000, 31337, 49151]}


def _model_summary(model: Any, tokenizer: Any, inputs: dict) -> dict:
    """A model as plain data: its type, whether it still has LoRA or 4-bit layers, and its logits on the probe's ids."""
    from peft import PeftModel

    summary = {"type": type(model).__name__}
    try:
        logits = probe_logits(model, tokenizer, inputs["probe"])[0][:, inputs["ids"]]
        summary.update(peft=isinstance(model, PeftModel), lora=any("lora_" in n for n, _ in model.named_modules()),
                       four_bit=any(type(m).__name__ == "Linear4bit" for m in model.modules()), logits=logits.tolist())
    except Exception:  # not a model that runs on the probe: the judge names its type
        summary["opaque"] = True
    return summary


def _gap_to_adapter(summary: Any, case: Case, adapter_dir: Any, name: str) -> float:
    """The relative gap between a collected model's probe logits and the adapter model's (loaded here from ``adapter_dir``)."""
    import torch

    expect(isinstance(summary, dict) and not summary.get("opaque") and isinstance(summary.get("logits"), list),
           f"`{name}` is a {str((summary or {}).get('type'))[:80]}, not a model that answers the probe.", f"{name} must be a model (load_model / merge_and_unload).")
    adapter = workspace_adapter(case, adapter_dir)
    want = probe_logits(adapter, case.reference("tokenizer"), case.inputs["probe"])[0][:, case.inputs["ids"]]
    try:
        got = torch.tensor(summary["logits"], dtype=torch.float32)
    except (TypeError, ValueError):
        got = None
    expect(got is not None and got.shape == want.shape, f"`{name}` gives logits of another shape than the adapter model on the probe.",
           "use the tokenizer of the base model and the model the adapter was merged into.")
    return float((got - want).abs().max() / want.abs().max().clamp(min=1e-6))


# ---------------------------------------------------------------- task 1: a merge into a 4-bit base


#: Exercise 07, task 1: what may have made the classmate's merged model answer differently from their adapter.
EX07_CAUSES = {
    "4bit_base": "the adapter was merged into a 4-bit copy of the base model, to save memory",
    "scale": "the merge multiplied B A by alpha instead of alpha / r",
    "dropout": "LoRA's dropout was active during the merge",
    "tokenizer": "the merged model was evaluated with another tokenizer",
}
_EX07_CAUSE = {"4bit_base"}


def ex07_classmate_merge(adapter_dir):
    """Exercise 07, task 1: a classmate's merge of the adapter saved in ``adapter_dir`` (base loaded in 4 bits to save
    memory). Do not fix it here."""
    from peft import PeftModel

    from ftcourse.models import load_model

    base_name = json.loads((Path(adapter_dir) / "adapter_config.json").read_text())["base_model_name_or_path"]
    return PeftModel.from_pretrained(load_model(base_name, quantization="4bit"), str(adapter_dir)).merge_and_unload()


@graded_check({"inputs": _PROBE, "expected": {}})
def check_ex07_task1(inputs, causes, merged, adapter_dir, tokenizer) -> dict:
    """``causes``: names from EX07_CAUSES; ``merged``: the adapter of ``adapter_dir`` merged into the weights (a plain model again)."""
    named = sorted(causes, key=str) if isinstance(causes, (set, frozenset)) else causes
    return {"causes": describe(named), "merged": _model_summary(merged, tokenizer, inputs), "adapter_dir": workspace_path(adapter_dir)}


@check_ex07_task1.judge
def _judge_task1(data: dict, case: Case) -> str:
    causes, kind = output_of(data.get("causes"), "causes")
    expect(kind in ("set", "frozenset", "list", "tuple") and all(isinstance(c, str) and c in EX07_CAUSES for c in causes),
           f"`causes` should be a set of names from EX07_CAUSES; got a {kind}.", f"pick from {sorted(EX07_CAUSES)}.")
    expect(_EX07_CAUSE <= set(causes), "you did not name what changed the merged model's answers.",
           "read ex07_classmate_merge line by line and compare each step with how the adapter model you compare against was built. "
           "Test a suspicion: redo the merge with that one step changed and see whether the gap disappears.")
    expect(set(causes) == _EX07_CAUSE, f"{len(set(causes) - _EX07_CAUSE)} of the causes you name did not happen here.",
           "name only what you can point to: each cause must be a line of ex07_classmate_merge, or something merge_and_unload "
           "itself does (read PEFT's merge: which scale does it use, and is dropout applied outside training?).")
    merged = data.get("merged") if isinstance(data.get("merged"), dict) else {}
    expect(not merged.get("four_bit"), "`merged` has 4-bit layers: it was merged into the quantized base.",
           "a 4-bit layer can only hold weights rounded to its 16 levels per block: merge into a base whose weights can hold W + (alpha / r)·B·A.")
    expect(not merged.get("peft") and not merged.get("lora"), "`merged` still has LoRA layers.", "merge_and_unload() returns the plain model with the update folded in.")
    gap = _gap_to_adapter(merged, case, data.get("adapter_dir"), "merged")
    expect(gap < 1e-4, f"the merged model's logits differ from the adapter model's by {gap:.1e} (relative).",
           "merge the adapter that was saved in adapter_dir into the full-precision base, and do not change the weights afterwards.")
    return f"merged into the full-precision base: no LoRA layers left, and the logits match the adapter model (relative gap {gap:.1e})."


# ---------------------------------------------------------------- task 2: predict the bytes, save and reload


def _ex07_model(spec: dict):
    """A small seeded Llama of ``spec`` ({"tied": bool, "dtype": "float32" | "bfloat16" | ...}) whose saved size is predicted."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, tie_word_embeddings=bool(spec["tied"]))
    return AutoModelForCausalLM.from_config(config).to(getattr(torch, spec["dtype"]))


@graded_check({"inputs": {**_PROBE, "models": [{"tied": False, "dtype": "bfloat16"}, {"tied": True, "dtype": "float32"}]}, "expected": {}})
def check_ex07_task2(inputs, merged_dir, reloaded, adapter_dir, tokenizer, predict_weight_bytes, merged) -> dict:
    """``merged_dir``: the merged model saved as a plain model folder; ``reloaded``: it loaded back with load_model;
    ``predict_weight_bytes(model)``: the bytes of the tensors save_pretrained writes for ``model``, predicted before saving."""
    folder = Path(merged_dir) if isinstance(merged_dir, (str, Path)) else None
    files = sorted(p.name for p in folder.iterdir() if p.is_file() and not p.is_symlink()) if folder is not None and folder.is_dir() else []
    return {"merged_dir": workspace_path(merged_dir) if folder is not None else None, "files": files, "adapter_dir": workspace_path(adapter_dir),
            "reloaded": _model_summary(reloaded, tokenizer, inputs),
            "outputs": [run_learner(predict_weight_bytes, model) for model in [merged, *map(_ex07_model, inputs["models"])]]}


def _header(data: bytes) -> dict:
    """The tensor entries of a .safetensors file's header (name -> dtype, shape, data_offsets)."""
    size = struct.unpack("<Q", data[:8])[0]
    return {k: v for k, v in json.loads(data[8 : 8 + size]).items() if k != "__metadata__"}


def _bytes_hint(got: Any, want: int, element_size: int, tied_extra: int) -> str:
    """The hint for a wrong prediction of tensor bytes: the tempting rules, recognised by their value."""
    wrongs = {"tied weights are stored once: here the output layer IS the embedding matrix. model.parameters() lists it once; "
              "state_dict() lists it under both names.": want + tied_extra if tied_extra else None,
              "the weights are saved in their own dtype (p.element_size()), not always in 16 bits.": want * 2 // element_size if element_size != 2 else None,
              "the weights are saved in their own dtype (p.element_size()), not always as 4-byte floats.": want * 4 // element_size if element_size != 4 else None,
              "the task asks for bytes, not MiB.": want / 2**20}
    return next((h for h, v in wrongs.items() if v is not None and isinstance(got, (int, float)) and is_close(float(got), v, 1e-6)),
                "each parameter tensor once (model.parameters()), numel() × element_size() bytes.")


def _saved_models(data: dict, case: Case) -> list[tuple[str, int, int, int]]:
    """(what, tensor bytes save_pretrained writes, bytes per value, bytes a tied output layer would add) for each predicted model."""
    import tempfile

    folder, files = data.get("merged_dir"), data.get("files")
    expect(not isinstance(files, list) or "adapter_config.json" not in files, "`merged_dir` holds an adapter, not a merged model.", "save the merged model, not lora_model.")
    expect(isinstance(folder, str) and isinstance(files, list) and "config.json" in files and any(str(f).endswith(".safetensors") for f in files),
           "`merged_dir` is not a model folder under the course folder.", "merged.save_pretrained(merged_dir) and tokenizer.save_pretrained(merged_dir).")
    header: dict = {}
    for name in (f for f in files if str(f).endswith(".safetensors")):
        raw = case.file(f"{folder}/{name}")
        expect(raw is not None and len(raw) > 8, f"{name} in merged_dir cannot be read.", "save the merged model again with save_pretrained.")
        header.update(_header(raw))
    total = sum(e["data_offsets"][1] - e["data_offsets"][0] for e in header.values())
    embed = next((e for k, e in header.items() if k.endswith("embed_tokens.weight")), None)
    tied = embed["data_offsets"][1] - embed["data_offsets"][0] if embed and not any(k.endswith("lm_head.weight") for k in header) else 0
    models = [("your merged model", total, 2 if embed and embed["dtype"] in ("BF16", "F16") else 4, tied)]
    for spec in case.inputs["models"]:
        model = _ex07_model(spec)
        with tempfile.TemporaryDirectory() as tmp:
            model.save_pretrained(tmp)
            saved = safetensors_bytes(tmp)
        extra = model.get_input_embeddings().weight
        models.append((f"a {case.kind} {spec['dtype']} model{' with tied embeddings' if spec['tied'] else ''}", saved, extra.element_size(),
                       extra.numel() * extra.element_size() if spec["tied"] else 0))
    return models


@check_ex07_task2.judge
def _judge_task2(data: dict, case: Case) -> str:
    forbid_source_helpers(case, "predict_weight_bytes", {"save_pretrained": "transformers.PreTrainedModel.save_pretrained", "save_file": "safetensors.torch.save_file",
                                                         "save_model": "safetensors.torch.save_model", "safetensors_bytes": "ftcourse.course.checks.safetensors_bytes",
                                                         "get_memory_footprint": "transformers.PreTrainedModel.get_memory_footprint"},
                          "predict it from the model's parameters; saving the model is the measurement.")
    reloaded = data.get("reloaded") if isinstance(data.get("reloaded"), dict) else {}
    expect(not reloaded.get("peft"), "`reloaded` is a PeftModel.", "reloaded = load_model(str(merged_dir)).")
    models = _saved_models(data, case)
    gap = _gap_to_adapter(reloaded, case, data.get("adapter_dir"), "reloaded")
    expect(gap < 1e-4, f"the reloaded model's logits differ from the adapter model's by {gap:.1e} (relative).",
           "save the merged model in full precision and load that folder.")
    for (name, want, element_size, tied_extra), (got, _) in zip(models, outputs_of(data, len(models), "predict_weight_bytes",
                                                                                  "define def predict_weight_bytes(model): ...")):
        expect(isinstance(got, (int, float)) and is_close(float(got), want, 1e-6),
               f"for {name} your prediction is not the bytes of tensors save_pretrained writes.", _bytes_hint(got, want, element_size, tied_extra))
    return (f"merged_dir loads as a plain model that reproduces the adapter model (relative gap {gap:.1e}); its tensor bytes were "
            f"predicted exactly, and those of {len(models) - 1} {case.kind} model(s) (the grader runs more).")


# ---------------------------------------------------------------- task 3: sizes on disk


def _listing(folder: Any) -> dict:
    """A folder named inside the workspace, with its regular files (relative paths, links skipped)."""
    root = Path(folder) if isinstance(folder, (str, Path)) else None
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and not p.is_symlink()) if root and root.is_dir() else []
    return {"dir": workspace_path(root) if root is not None else None, "files": files}


@graded_check({"inputs": {}, "expected": {}})
def check_ex07_task3(inputs, adapter_mb, merged_mb, adapter_dir, merged_dir) -> dict:
    """``adapter_mb``, ``merged_mb``: total size in MiB of the files in each folder."""
    return {"adapter_mb": describe(adapter_mb), "merged_mb": describe(merged_mb), "folders": [_listing(adapter_dir), _listing(merged_dir)]}


@check_ex07_task3.judge
def _judge_task3(data: dict, case: Case) -> str:
    folders = data.get("folders")
    expect(isinstance(folders, list) and len(folders) == 2, "the folders were not collected.", "run the task's cell and its check as given.")
    sizes = {}
    for name, folder in zip(("adapter_mb", "merged_mb"), folders):
        expect(isinstance(folder, dict) and isinstance(folder.get("dir"), str) and isinstance(folder.get("files"), list) and folder["files"],
               f"the folder of {name} is not a folder of files under the course folder.", "pass adapter_dir and merged_dir as saved in tasks 1 and 2.")
        read = [case.file(f"{folder['dir']}/{f}") for f in folder["files"]]
        want = sum(len(b) for b in read if b is not None) / 2**20
        got, _ = output_of(data.get(name), name)
        expect(isinstance(got, (int, float)) and is_close(float(got), want, 0.01), f"{name} is {str(got)[:40]}; the files in its folder take {want:.2f} MiB.",
               "sum p.stat().st_size over the files of the folder (Path(folder).rglob('*')) and divide by 2**20.")
        sizes[name] = want
    return f"the adapter takes {sizes['adapter_mb']:.1f} MiB, the merged model {sizes['merged_mb']:.0f} MiB ({sizes['merged_mb'] / sizes['adapter_mb']:.0f}× more)."


# ---------------------------------------------------------------- task 4: the merge formula


def _lora_tensors(layer: dict):
    """(weight, lora_A, lora_B) of a layer spec ({"r", "alpha", "out", "in", "seed"}), drawn from a seeded generator."""
    import torch

    g = torch.Generator().manual_seed(layer["seed"])
    return (torch.randn(layer["out"], layer["in"], generator=g), torch.randn(layer["r"], layer["in"], generator=g) / 4,
            torch.randn(layer["out"], layer["r"], generator=g) / 4)


@graded_check({"inputs": {"layers": [{"r": 4, "alpha": 8, "out": 24, "in": 40, "seed": 4}, {"r": 2, "alpha": 16, "out": 40, "in": 12, "seed": 2}]},
               "expected": {}})
def check_ex07_task4(inputs, merge_weight) -> dict:
    """``merge_weight(weight, lora_A, lora_B, alpha, r)``: the weight with the LoRA update folded in."""
    outputs = []
    for layer in inputs["layers"]:
        weight, a, b = _lora_tensors(layer)
        outputs.append(run_learner(merge_weight, weight, a, b, layer["alpha"], layer["r"]))
    return {"outputs": outputs}


def _peft_merged(layer: dict):
    """PEFT's merge of a layer spec: the tensors put into a LoRA layer, W + its get_delta_weight()."""
    import torch
    from peft import LoraConfig, inject_adapter_in_model

    weight, a, b = _lora_tensors(layer)
    module = torch.nn.Sequential()
    module.add_module("proj", torch.nn.Linear(layer["in"], layer["out"], bias=False))
    lora = inject_adapter_in_model(LoraConfig(r=layer["r"], lora_alpha=layer["alpha"], target_modules=["proj"]), module).proj
    with torch.no_grad():
        lora.base_layer.weight.copy_(weight)
        lora.lora_A["default"].weight.copy_(a)
        lora.lora_B["default"].weight.copy_(b)
    return weight, a, b, weight + lora.get_delta_weight("default").detach()


@check_ex07_task4.judge
def _judge_task4(data: dict, case: Case) -> str:
    import torch

    forbid_source_helpers(case, "merge_weight", {"get_delta_weight": "peft.tuners.lora.LoraLayer.get_delta_weight", "merge_and_unload": "peft.PeftModel.merge_and_unload",
                                                 "merge": "peft.tuners.lora.LoraLayer.merge", "merge_adapter": "ftcourse.deploy.merge_adapter",
                                                 "inject_adapter_in_model": "peft.inject_adapter_in_model", "get_peft_model": "peft.get_peft_model"},
                          "write the formula with the tensors you are given: W + (alpha / r) · B @ A.")
    layers = case.inputs["layers"]
    for layer, (got, _) in zip(layers, outputs_of(data, len(layers), "merge_weight", "define def merge_weight(weight, lora_A, lora_B, alpha, r): ...")):
        weight, a, b, want = _peft_merged(layer)
        try:
            got = torch.tensor(got, dtype=torch.float32)
        except (TypeError, ValueError):
            got = None
        where = f"for a {case.kind} ({layer['out']} × {layer['in']}) layer with r={layer['r']}, alpha={layer['alpha']}"
        expect(got is not None and got.shape == want.shape, f"{where} your result has shape {tuple(got.shape) if got is not None else '?'}.",
               "B @ A has the weight's shape (out_features, in_features): B is (out, r), A is (r, in).")
        scaled = {"alpha * r": layer["alpha"] * layer["r"], "alpha alone": layer["alpha"], "no scale": 1.0, "r / alpha": layer["r"] / layer["alpha"]}
        wrong = next((k for k, f in scaled.items() if torch.allclose(got, weight + f * (b @ a), atol=1e-4)), None)
        expect(torch.allclose(got, want, atol=1e-4), f"{where} your merged weight differs from PEFT's merge.",
               f"you scaled B @ A by {wrong}: LoRA's scale is alpha / r." if wrong else "W + (alpha / r) * B @ A — B is (out, r), A is (r, in).")
    return f"matches PEFT's merge on {len(layers)} {case.kind} layers (the grader runs more): W' = W + (alpha / r) · B A."


# ---------------------------------------------------------------- task 5: the inference prompt


#: Exercise 07, task 5: how a colleague's inference code built its prompts (the adapter was trained on the chat template).
def ex07_broken_prompt_ids(tokenizer, message: str) -> list[int]:
    """The prompt of the colleague's inference code: plain text, no chat template. Do not fix it here."""
    from ftcourse.course.bundled import INTENT_LABELS
    from ftcourse.data import classification_instruction

    return tokenizer(f"{classification_instruction(INTENT_LABELS)}\n\nMessage: {message}\nIntent:")["input_ids"]


@graded_check({"inputs": {"messages": ["My blender arrived with a cracked jug.", "How do I change the email on my account?", "Where is order 9912?"]},
               "expected": {}})
def check_ex07_task5(inputs, inference_ids, tokenizer) -> dict:
    """``inference_ids(tokenizer, message)``: the prompt ids the intent adapter saw in training, for a new message."""
    return {"outputs": [run_learner(inference_ids, tokenizer, message) for message in inputs["messages"]]}


def _ids(value: Any) -> list | None:
    """Token ids from what inference_ids returned: a list, a dict with input_ids, or a batch of one."""
    if isinstance(value, dict):
        value = value.get("input_ids")
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], list):
        value = value[0]
    return value if isinstance(value, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in value) else None


@check_ex07_task5.judge
def _judge_task5(data: dict, case: Case) -> str:
    from ftcourse.course.bundled import INTENT_LABELS
    from ftcourse.data import to_messages
    from ftcourse.tokenization import prompt_ids

    forbid_source_helpers(case, "inference_ids", {"prompt_ids": "ftcourse.tokenization.prompt_ids", "encode_prompt": "ftcourse.generation.encode_prompt",
                                                  "tokenize_messages": "ftcourse.tokenization.tokenize_messages", "to_messages": "ftcourse.data.to_messages"},
                          "build it with tokenizer.apply_chat_template yourself: the point is to see what training used.")
    tokenizer, messages = case.reference("tokenizer"), case.inputs["messages"]
    outputs = outputs_of(data, len(messages), "inference_ids", "define def inference_ids(tokenizer, message): ...")
    for number, (message, (value, _)) in enumerate(zip(messages, outputs), start=1):
        got = _ids(value)
        expect(got is not None, f"inference_ids returns no list of token ids for {case.kind} message {number}.", "return the prompt's input_ids.")
        want = prompt_ids(tokenizer, to_messages({"text": message, "label": INTENT_LABELS[0]}, "classification", INTENT_LABELS)[:-1])
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
        expect(got == want, f"for {case.kind} message {number} of {len(messages)} your prompt differs from the training prompt.", hint)
    return f"the inference prompt equals the training prompt on {len(messages)} {case.kind} messages (the grader runs more)."
