"""GGUF export (issue 29): a file the course writes loads back with transformers' ``gguf_file=`` with the same logits
(F32 exactly, F16 within 0.01 on a tiny Llama, Q8_0 within its measured error) and the same tokenizer; what it refuses."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from peft import LoraConfig, get_peft_model
from tiny import tiny_model

from ftcourse.deploy import logits_on, max_logit_diff
from ftcourse.errors import CourseError
from ftcourse.generation import encode_prompt
from ftcourse.gguf_export import gguf_tensor_name, load_gguf, load_gguf_tokenizer, ollama_modelfile, permute_qk, write_gguf

PROMPTS = [[{"role": "system", "content": "Answer with the intent only."}, {"role": "user", "content": "Where is order 3585308?"}],
           "The Lumora Home Hub H2 is"]


@pytest.fixture(scope="module")
def tiny_llama():
    """A tiny Llama with the embedded tokenizer's vocabulary and grouped-query attention (4 heads, 2 key/value heads)."""
    return tiny_model("llama", vocab_size=49152).eval()


@pytest.mark.parametrize("kind, atol", [("F32", 1e-5), ("F16", 1e-2), ("Q8_0", 0.1)])
def test_a_written_gguf_loads_back_with_the_same_logits(tmp_path, tiny_llama, tokenizer, kind, atol):
    path = write_gguf(tiny_llama, tokenizer, tmp_path / f"tiny-{kind}.gguf", kind=kind, pre="smollm")
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind
    loaded = load_gguf(path)
    diff = max_logit_diff(logits_on(tiny_llama, tokenizer, PROMPTS), logits_on(loaded, tokenizer, PROMPTS))
    assert diff <= atol
    if kind == "Q8_0":
        assert diff > 1e-4  # quantized: not a copy


def test_the_tokenizer_travels_in_the_file(tmp_path, tiny_llama, tokenizer):
    gguf_tokenizer = load_gguf_tokenizer(write_gguf(tiny_llama, tokenizer, tmp_path / "tiny.gguf", kind="Q8_0"))
    assert all(encode_prompt(gguf_tokenizer, p) == encode_prompt(tokenizer, p) for p in PROMPTS)
    assert gguf_tokenizer.eos_token == tokenizer.eos_token and gguf_tokenizer.chat_template == tokenizer.chat_template
    with pytest.raises(CourseError, match="does not exist"):
        load_gguf(tmp_path / "missing.gguf")


def test_names_and_the_rotary_permutation_are_llama_cpps(tiny_llama):
    assert gguf_tensor_name("model.layers.1.self_attn.k_proj.weight", 2) == "blk.1.attn_k.weight"
    assert gguf_tensor_name("model.embed_tokens.weight", 2) == "token_embd.weight"
    assert gguf_tensor_name("lm_head.weight", 2) == "output.weight"
    with pytest.raises(CourseError, match="no name"):
        gguf_tensor_name("model.layers.0.self_attn.q_proj.lora_A.default.weight", 2)
    rows = np.arange(8)[:, None]  # one head of 8 dimensions: halves [0 1 2 3] [4 5 6 7] become pairs (0 4) (1 5) ...
    assert permute_qk(rows, 1)[:, 0].tolist() == [0, 4, 1, 5, 2, 6, 3, 7]
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    weight = tiny_llama.model.layers[0].self_attn.k_proj.weight.detach().numpy()
    undone = LlamaTensorProcessor({"num_attention_heads": 4, "num_key_value_heads": 2}).process(permute_qk(weight, 2), "blk.0.attn_k.weight")
    assert np.array_equal(undone.weights, weight)


def test_what_write_gguf_refuses(tmp_path, tiny_llama, tokenizer):
    mine = tmp_path / "mine.gguf"
    mine.write_text("my own file")
    with pytest.raises(CourseError, match="already exists"):
        write_gguf(tiny_llama, tokenizer, mine)
    assert mine.read_text() == "my own file"
    with pytest.raises(CourseError, match="Unknown GGUF tensor type"):
        write_gguf(tiny_llama, tokenizer, tmp_path / "x.gguf", kind="Q4_K")
    torch.manual_seed(0)
    with pytest.raises(CourseError, match="still has an adapter"):
        write_gguf(get_peft_model(tiny_model("llama"), LoraConfig(r=2, target_modules=["q_proj"])), tokenizer, tmp_path / "x.gguf")
    with pytest.raises(CourseError, match="Llama-architecture"):
        write_gguf(tiny_model("qwen2"), tokenizer, tmp_path / "x.gguf")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.gguf"]


def test_the_ollama_modelfile_names_the_file_the_chat_format_and_the_stop_token(tokenizer):
    text = ollama_modelfile("model-Q8_0.gguf", tokenizer, system="Answer with the intent only.")
    assert text.startswith("FROM ./model-Q8_0.gguf\n")
    assert '<|im_start|>user\n{{ .Content }}<|im_end|>\n<|im_start|>assistant\n' in text
    assert 'SYSTEM """Answer with the intent only."""' in text and 'PARAMETER stop "<|im_end|>"' in text
    other = type("Tokenizer", (), {"chat_template": "{{ bos_token }}[INST] {{ messages[0]['content'] }} [/INST]"})()
    with pytest.raises(CourseError, match="ChatML"):
        ollama_modelfile("model.gguf", other)
