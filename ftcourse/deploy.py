"""Deploy a fine-tuned model: several adapters on one base, merging (4-bit bases dequantized first),
merged-vs-unmerged checks, safetensors and ONNX export (verified against PyTorch with onnxruntime), and a minimal
inference function.
"""

from __future__ import annotations

import contextlib
import copy
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from ftcourse.errors import CourseError
from ftcourse.fileio import atomic_directory, atomic_write_json
from ftcourse.generation import Prompt, adapter_disabled, encode_prompt, generate

__all__ = [
    "check_onnx", "export_merged", "export_onnx", "EXPORT_RECORD", "exported_base", "inference_function",
    "load_adapters", "logits_on", "max_logit_diff", "merge_adapter", "merge_and_check", "ONNX_FILE", "onnx_logits",
    "onnx_session", "using_adapter",
]

#: Marker file of a folder written by :func:`export_merged` (names the base model, for comparisons).
EXPORT_RECORD = "ftcourse_export.json"
#: The graph file in a folder written by :func:`export_onnx`.
ONNX_FILE = "model.onnx"


def _require_peft(model, what: str) -> None:
    from peft import PeftModel

    if not isinstance(model, PeftModel):
        raise CourseError(f"{what} needs a PeftModel (a base model with an adapter), got {type(model).__name__}.",
                          "load an adapter folder with ftcourse.models.load_model(<run folder>) or ftcourse.deploy.load_adapters.")


def _check_loaded(model, name: str) -> None:
    if name not in model.peft_config:
        raise CourseError(f"No adapter named {name!r} is loaded.", f"loaded adapters: {', '.join(model.peft_config)}.")


def load_adapters(adapters: Mapping[str, str | Path], base=None):
    """One base model with several adapters loaded under the given names; the first one is active.

    All adapters must name the same base model (``adapter_config.json``); ``base`` skips loading it.
    """
    from peft import PeftModel

    from ftcourse.models import adapter_base_model, check_adapter_folder, is_adapter_dir, load_model

    if not adapters:
        raise CourseError("No adapters given.", "pass {'name': 'models/fine_tuned/<run>', ...}.")
    for folder in adapters.values():
        if not is_adapter_dir(folder):
            raise CourseError(f"{folder} is not an adapter folder (no adapter_config.json).", "pass run folders written by fine_tune().")
        check_adapter_folder(folder)  # damaged files or non-finite weights: refused before anything loads
    bases = {name: adapter_base_model(folder) for name, folder in adapters.items()}
    if len(set(bases.values())) > 1:
        raise CourseError(f"These adapters were trained on different base models: {bases}.", "load only adapters of one base model together.")
    (first, folder), *rest = adapters.items()
    model = PeftModel.from_pretrained(base if base is not None else load_model(bases[first]), str(folder), adapter_name=first)
    for name, folder in rest:
        model.load_adapter(str(folder), adapter_name=name)
    model.eval()
    return model


@contextlib.contextmanager
def using_adapter(model, name: str | None) -> Iterator:
    """Run a block with adapter ``name`` active, or with adapters disabled (``None``: the base model).

    The previously active adapter is active again afterwards; adapters stay frozen.
    """
    _require_peft(model, "Switching adapters")
    if name is None:
        with adapter_disabled(model):
            yield model
        return
    _check_loaded(model, name)
    previous = model.active_adapter
    model.set_adapter(name, inference_mode=True)
    try:
        yield model
    finally:
        model.set_adapter(previous, inference_mode=True)


def merge_adapter(model, adapter: str | None = None):
    """Merge the active (or the named) adapter into the base weights; returns the plain model.

    The ``PeftModel`` is consumed. A 4-bit (or 8-bit) base is dequantized first and the adapter
    re-attached, so the merged weights are not rounded back to 4 bits (peft#2105).
    """
    from peft import get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict

    _require_peft(model, "Merging")
    name = adapter or model.active_adapter
    _check_loaded(model, name)
    config = model.peft_config[name]
    if config.is_prompt_learning:
        raise CourseError(f"Adapter {name!r} ({config.peft_type}) adds virtual tokens, not weight updates; it cannot be merged.",
                          "deploy the base model with the adapter loaded (load_model(<run folder>)).")
    if getattr(model.get_base_model(), "is_quantized", False):
        state = get_peft_model_state_dict(model, adapter_name=name)
        base = model.unload()
        base.dequantize()
        model = get_peft_model(base, config, adapter_name=name)
        set_peft_model_state_dict(model, state, adapter_name=name)
    merged = model.merge_and_unload(adapter_names=[name])
    merged.eval()
    return merged


@torch.no_grad()
def logits_on(model, tokenizer, prompts: Sequence[Prompt]) -> list[torch.Tensor]:
    """Logits of each prompt at full precision (no autocast), to compare two versions of a model."""
    device = next(model.parameters()).device
    model.eval()
    return [model(input_ids=torch.tensor([encode_prompt(tokenizer, p)], device=device)).logits[0].float().cpu() for p in prompts]


def max_logit_diff(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> float:
    """Largest absolute difference between two lists of logits (from :func:`logits_on`)."""
    return max(float((x - y).abs().max()) for x, y in zip(a, b, strict=True))


def merge_and_check(model, tokenizer, prompts: Sequence[Prompt], atol: float = 1e-3, adapter: str | None = None):
    """Merge the adapter (:func:`merge_adapter`) and check the merged model's logits against the unmerged ones.

    Returns ``(merged model, max |logit difference|)``; a difference above ``atol`` is a :class:`CourseError`.
    """
    before = logits_on(model, tokenizer, prompts)
    merged = merge_adapter(model, adapter)
    diff = max_logit_diff(before, logits_on(merged, tokenizer, prompts))
    if diff > atol:
        raise CourseError(f"The merged model's logits differ from the adapter's by up to {diff:.3g} (tolerance {atol:g}).",
                          "merge a full-precision base (dequantize a 4-bit one first: merge_adapter does), and compare in float32.")
    return merged, diff


def export_merged(model, tokenizer, folder: str | Path, base_model: str | None = None, overwrite: bool = False) -> Path:
    """Save a merged model (a ``PeftModel`` is merged first) and its tokenizer as safetensors, atomically.

    ``base_model`` (default: the adapter's base, else the model's ``name_or_path``) is recorded in
    ``ftcourse_export.json`` so that evaluations can compare against it. A folder ftcourse did not
    write is not replaced unless ``overwrite``.
    """
    from peft import PeftModel

    folder = Path(folder)
    _replaceable(folder, EXPORT_RECORD, overwrite)
    if isinstance(model, PeftModel):
        base_model = base_model or model.peft_config[model.active_adapter].base_model_name_or_path
    model = _merged(model)
    base_model = base_model or model.name_or_path
    with atomic_directory(folder) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        atomic_write_json(tmp / EXPORT_RECORD, {"base_model": base_model})
    return folder


def _merged(model):
    """A plain model: a ``PeftModel`` is merged (and consumed), anything else is returned as is."""
    from peft import PeftModel

    return merge_adapter(model) if isinstance(model, PeftModel) else model


def _replaceable(folder: Path, marker: str, overwrite: bool) -> None:
    if folder.exists() and not (folder / marker).is_file() and not overwrite:
        raise CourseError(f"{folder} exists and was not written by ftcourse's export; not replacing it.",
                          "choose another folder, or pass overwrite=True.")
    if folder.exists():
        print(f"Replacing the earlier export in {folder}")


class _LogitsOnly(torch.nn.Module):
    """``input_ids, attention_mask -> logits`` without a key/value cache: the graph ONNX export traces."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits


def export_onnx(model, tokenizer, folder: str | Path, overwrite: bool = False) -> Path:
    """Export a model (a ``PeftModel`` is merged first) to ``folder/model.onnx`` with its tokenizer, atomically.

    Uses ``torch.onnx.export(..., dynamo=True)`` (needs ``onnxscript``); batch size and sequence length stay
    dynamic. The graph maps ``input_ids, attention_mask`` to ``logits``, without a key/value cache.
    It is traced on the CPU in float32 (onnxruntime's CPU session runs it): a model on a GPU or in half
    precision is exported from a float32 CPU copy, and the model passed in stays where it is.
    Check it with :func:`check_onnx`.
    """
    folder = Path(folder)
    _replaceable(folder, ONNX_FILE, overwrite)
    model = _cpu_float32(_merged(model)).eval()
    ids = torch.tensor([encode_prompt(tokenizer, "Export me, please.")] * 2)
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
    with atomic_directory(folder) as tmp:
        program = torch.onnx.export(_LogitsOnly(model).eval(), (ids, torch.ones_like(ids)), dynamo=True, verbose=False,
                                    input_names=["input_ids", "attention_mask"], output_names=["logits"],
                                    dynamic_shapes={"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}})
        program.save(str(tmp / ONNX_FILE))
        tokenizer.save_pretrained(tmp)
    return folder


def _cpu_float32(model):
    """The model itself when every weight is a float32 CPU tensor, else a copy that is."""
    if all(p.device.type == "cpu" and p.dtype == torch.float32 for p in model.parameters()):
        return model
    return copy.deepcopy(model).to(device="cpu", dtype=torch.float32)


def onnx_session(folder: str | Path):
    """An onnxruntime CPU session of a folder written by :func:`export_onnx`."""
    import onnxruntime

    path = Path(folder) / ONNX_FILE
    if not path.is_file():
        raise CourseError(f"{path} does not exist.", "export the model first with ftcourse.deploy.export_onnx(model, tokenizer, folder).")
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_logits(session, tokenizer, prompts: Sequence[Prompt]) -> list[torch.Tensor]:
    """Logits of each prompt from an onnxruntime session (the counterpart of :func:`logits_on`)."""
    out = []
    for prompt in prompts:
        ids = np.array([encode_prompt(tokenizer, prompt)], dtype=np.int64)
        out.append(torch.from_numpy(session.run(["logits"], {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0][0]))
    return out


def check_onnx(model, tokenizer, folder: str | Path, prompts: Sequence[Prompt], atol: float = 1e-3) -> float:
    """Max |logit difference| between ``model`` (PyTorch, float32) and its ONNX export on ``prompts``.

    A difference above ``atol``, or a different greedy next token, is a :class:`CourseError`.
    """
    ours, theirs = logits_on(model, tokenizer, prompts), onnx_logits(onnx_session(folder), tokenizer, prompts)
    diff = max_logit_diff(ours, theirs)
    if diff > atol or any(not torch.equal(a.argmax(-1), b.argmax(-1)) for a, b in zip(ours, theirs)):
        raise CourseError(f"The ONNX model's logits differ from PyTorch's by up to {diff:.3g} (tolerance {atol:g}).",
                          "export the same (merged, float32) model you compare with; re-export after changing it.")
    return diff


def exported_base(folder: str | Path) -> str:
    """The base model recorded in an export folder (see :func:`export_merged`)."""
    record = Path(folder) / EXPORT_RECORD
    try:
        return json.loads(record.read_text(encoding="utf-8"))["base_model"]
    except (OSError, ValueError, KeyError):
        raise CourseError(f"{folder} is neither an adapter nor a merged model exported by ftcourse, so its base model is unknown.",
                          "compare an adapter folder, or a folder written by ftcourse.deploy.export_merged.") from None


def inference_function(model, tokenizer=None, system: str | None = None, labels: Sequence[str] | None = None,
                       max_new_tokens: int = 64) -> Callable[[str], str]:
    """A function ``text -> answer`` around a model (loaded, or anything ``load_model`` takes): greedy, with ``system``
    as the system prompt; with ``labels`` the answer is always one of them."""
    if isinstance(model, (str, Path)):
        from ftcourse.models import load_model, load_tokenizer

        tokenizer = tokenizer or load_tokenizer(str(model))
        model = load_model(str(model))
    if tokenizer is None:
        raise CourseError("inference_function needs the tokenizer of a loaded model.", "pass tokenizer=..., or pass the model's folder instead.")

    def predict(text: str) -> str:
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
        return generate(model, tokenizer, [messages], max_new_tokens=max_new_tokens, labels=labels, progress=False)[0]

    return predict
