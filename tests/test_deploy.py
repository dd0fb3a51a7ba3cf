"""Deployment (issue 5): merging (4-bit bases dequantized first), adapter switching, export, inference function."""

from __future__ import annotations

import json

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from tiny import save_tiny, tiny_model

from ftcourse.course.bundled import INTENT_LABELS
from ftcourse.data import classification_instruction
from ftcourse.deploy import (
    EXPORT_RECORD,
    export_merged,
    exported_base,
    inference_function,
    load_adapters,
    logits_on,
    max_logit_diff,
    merge_adapter,
    merge_and_check,
    using_adapter,
)
from ftcourse.errors import CourseError
from ftcourse.models import load_model

IDS = torch.tensor([[5, 17, 301, 44, 9, 250, 3, 77]])  # inside the tiny models' 512-token vocabulary


def _random_lora(model, seed: int, **kwargs):
    torch.manual_seed(seed)
    return get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False, **kwargs))


@torch.no_grad()
def _logits(model) -> torch.Tensor:
    return model(input_ids=IDS).logits.float()


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, tokenizer):
    return save_tiny("llama", tmp_path_factory.mktemp("tiny") / "llama", tokenizer)


@pytest.fixture(scope="module")
def two_adapters(tmp_path_factory, tiny_dir):
    """Two different random LoRA adapters of the tiny Llama, saved as adapter folders."""
    folders = {}
    for seed, name in ((1, "first"), (2, "second")):
        folder = tmp_path_factory.mktemp(name)
        _random_lora(load_model(str(tiny_dir)), seed).save_pretrained(folder)
        folders[name] = folder
    return folders


def test_merged_logits_match_the_adapter(fresh_model, tokenizer):
    prompts = [[{"role": "user", "content": "Where is my parcel?"}], "The Lumora Home Hub H2 is"]
    base = logits_on(fresh_model, tokenizer, prompts)
    adapted = _random_lora(fresh_model, 0)
    assert max_logit_diff(base, logits_on(adapted, tokenizer, prompts)) > 0.1  # the adapter matters
    merged, diff = merge_and_check(adapted, tokenizer, prompts)
    assert diff < 1e-3
    assert not isinstance(merged, PeftModel) and not any("lora" in n for n, _ in merged.named_parameters())


def test_merging_needs_an_adapter(base_model):
    with pytest.raises(CourseError, match="PeftModel"):
        merge_adapter(base_model)


def test_4bit_base_is_dequantized_before_merging(tiny_dir):
    pytest.importorskip("bitsandbytes")
    adapted = _random_lora(load_model(str(tiny_dir), quantization="4bit"), 3)
    served = _logits(adapted)
    naive = _logits(_random_lora(load_model(str(tiny_dir), quantization="4bit"), 3).merge_and_unload())
    merged = merge_adapter(adapted)
    assert not getattr(merged, "is_quantized", False)
    assert all(type(m).__name__ != "Linear4bit" for m in merged.modules())
    good = float((_logits(merged) - served).abs().max())
    bad = float((naive - served).abs().max())
    assert good < 0.05 and good < bad / 3  # merging into 4-bit weights rounds the update away; dequantizing first does not


def test_switch_between_adapters_on_one_base(two_adapters, tiny_dir):
    model = load_adapters(two_adapters)
    singles = {name: _logits(PeftModel.from_pretrained(load_model(str(tiny_dir)), str(folder))) for name, folder in two_adapters.items()}
    assert model.active_adapter == "first"
    with using_adapter(model, "second"):
        assert torch.allclose(_logits(model), singles["second"], atol=1e-5)
    assert model.active_adapter == "first"
    assert torch.allclose(_logits(model), singles["first"], atol=1e-5)
    with using_adapter(model, None):
        assert torch.allclose(_logits(model), _logits(load_model(str(tiny_dir))), atol=1e-5)
    assert not any(p.requires_grad for p in model.parameters())
    with pytest.raises(CourseError, match="loaded adapters: first, second"):
        with using_adapter(model, "third"):
            pass


def test_adapters_of_different_bases_are_refused(two_adapters, tmp_path, tokenizer):
    other = save_tiny("qwen2", tmp_path / "qwen2", tokenizer)
    stray = tmp_path / "stray"
    _random_lora(load_model(str(other)), 4).save_pretrained(stray)
    with pytest.raises(CourseError, match="different base models"):
        load_adapters({"first": two_adapters["first"], "stray": stray})


def test_export_reloads_with_the_same_logits_and_respects_user_folders(two_adapters, tiny_dir, tmp_path, tokenizer):
    adapted = PeftModel.from_pretrained(load_model(str(tiny_dir)), str(two_adapters["first"]))
    expected = _logits(adapted)
    out = export_merged(adapted, tokenizer, tmp_path / "merged")
    assert (out / "model.safetensors").is_file() and not list(out.glob("*.bin"))
    assert exported_base(out) == str(tiny_dir)
    reloaded = load_model(str(out))
    assert not isinstance(reloaded, PeftModel)
    assert torch.allclose(_logits(reloaded), expected, atol=1e-4)
    export_merged(reloaded, tokenizer, out, base_model=str(tiny_dir))  # our own export: replaced
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(CourseError, match="not written by ftcourse"):
        export_merged(reloaded, tokenizer, mine)
    assert (mine / "notes.txt").read_text() == "keep me" and not (mine / EXPORT_RECORD).exists()
    with pytest.raises(CourseError, match="base model is unknown"):
        exported_base(mine)
    assert json.loads((out / EXPORT_RECORD).read_text()) == {"base_model": str(tiny_dir)}


def test_inference_function_answers_with_a_label(base_model, tokenizer):
    predict = inference_function(base_model, tokenizer, system=classification_instruction(INTENT_LABELS), labels=INTENT_LABELS)
    answers = [predict("My parcel never arrived, where is it?"), predict("I was charged twice for one order")]
    assert all(a in INTENT_LABELS for a in answers)
    with pytest.raises(CourseError, match="tokenizer"):
        inference_function(base_model)


def test_onnx_export_answers_like_pytorch(tmp_path, tokenizer):
    """The ONNX graph of a merged LoRA model, run by onnxruntime, gives PyTorch's logits (float32: |Δ| ≤ 1e-4)."""
    from ftcourse.deploy import check_onnx, export_onnx, onnx_logits, onnx_session

    folder = tmp_path / "onnx"
    model = _random_lora(tiny_model("llama", vocab_size=len(tokenizer)), 0)
    prompts = [[{"role": "user", "content": "Where is my parcel?"}], "The Lumora Home Hub H2 is a"]
    expected = logits_on(model, tokenizer, prompts)
    export_onnx(model, tokenizer, folder)  # merges the adapter first
    assert max_logit_diff(expected, onnx_logits(onnx_session(folder), tokenizer, prompts)) < 1e-4
    merged = model.get_base_model()
    assert check_onnx(merged, tokenizer, folder, prompts, atol=1e-4) < 1e-4
    with torch.no_grad():
        merged.lm_head.weight.mul_(1.5)  # a model that is not the exported one
    with pytest.raises(CourseError, match="differ from PyTorch"):
        check_onnx(merged, tokenizer, folder, prompts, atol=1e-4)


def test_onnx_export_of_a_half_precision_model_is_float32_on_the_cpu(tmp_path, tokenizer):
    """A bf16 model (as ``load_model`` gives on a GPU) is exported from a float32 CPU copy: the graph answers like the
    float32 model of the same weights, and the model passed in is left as it was."""
    from ftcourse.deploy import export_onnx, onnx_logits, onnx_session

    model = tiny_model("llama", vocab_size=len(tokenizer)).to(torch.bfloat16).eval()
    float32 = tiny_model("llama", vocab_size=len(tokenizer)).to(torch.bfloat16).float().eval()  # the same rounded weights
    prompts = [[{"role": "user", "content": "Where is my parcel?"}], "The Lumora Home Hub H2 is a"]
    export_onnx(model, tokenizer, tmp_path / "onnx")
    exported = onnx_logits(onnx_session(tmp_path / "onnx"), tokenizer, prompts)
    assert all(t.dtype == torch.float32 for t in exported)
    expected = logits_on(float32, tokenizer, prompts)
    assert max_logit_diff(expected, exported) < 1e-4
    assert all(torch.equal(a.argmax(-1), b.argmax(-1)) for a, b in zip(expected, exported))
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}  # the caller's model is not converted in place


def test_onnx_export_keeps_a_foreign_folder(tmp_path, tokenizer):
    from ftcourse.deploy import export_onnx

    (tmp_path / "mine").mkdir()
    with pytest.raises(CourseError, match="not replacing"):
        export_onnx(tiny_model("llama"), tokenizer, tmp_path / "mine")
