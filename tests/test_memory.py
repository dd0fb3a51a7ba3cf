"""ftcourse.memory: footprints of real models (embedded and tiny), peak-memory measurement, variant loading."""

from __future__ import annotations

import sys

import pytest
import torch
from tiny import save_tiny

from ftcourse.course.comparison import VARIANTS, load_variant
from ftcourse.errors import CourseError
from ftcourse.memory import MB, footprint_breakdown, footprint_bytes, make_resident, track_peak, unpack_cpu_4bit

EMBEDDING_MB = 49152 * 576 * 4 / MB  # SmolLM2-135M: vocabulary × hidden size, fp32, tied with the LM head


def test_footprint_of_the_embedded_model(base_model):
    params = sum(p.numel() for p in base_model.parameters())
    assert params == 134_515_008  # tied embeddings count once
    buffers = sum(b.numel() * b.element_size() for b in base_model.buffers())
    assert footprint_bytes(base_model) == 4 * params + buffers
    parts = footprint_breakdown(base_model)
    assert parts["embeddings"] == pytest.approx(EMBEDDING_MB, abs=0.1)
    assert sum(parts.values()) == pytest.approx(footprint_bytes(base_model) / MB, abs=0.5)


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory, tokenizer):
    return save_tiny("llama", tmp_path_factory.mktemp("tiny") / "llama", tokenizer)


def test_variants_shrink_the_linear_layers(tiny_folder):
    loads = {v: load_variant(str(tiny_folder), v) for v in VARIANTS}
    assert all(load.error is None for load in loads.values()), {v: load.error for v, load in loads.items()}
    # the decoder layers only: the untied LM head of the tiny model is left unquantized, as in bitsandbytes' default
    linear = {v: footprint_breakdown(load.model.model)["linear layers"] for v, load in loads.items()}
    assert linear["bf16"] == pytest.approx(linear["fp32"] / 2, rel=0.01)
    assert linear["8bit"] < linear["fp32"] / 3.5  # int8 weights + fp32 scales per row
    # two weights per byte, one uint8 scale per block of 64, plus ~1 KB of constants per layer (large at this tiny size)
    assert linear["fp32"] / 8 < linear["4bit"] < linear["fp32"] / 5
    # 4-bit weights are stored packed; their quantization constants are counted too
    packed = sum(p.numel() * p.element_size() for p in loads["4bit"].model.parameters())
    buffers = sum(b.numel() * b.element_size() for b in loads["4bit"].model.buffers())
    assert footprint_bytes(loads["4bit"].model) > packed + buffers
    # embeddings are not quantized: same bytes in fp32, 8-bit and 4-bit (compute dtype fp32 on CPU)
    embeddings = {v: footprint_breakdown(load.model)["embeddings"] for v, load in loads.items()}
    assert embeddings["4bit"] == embeddings["8bit"] == embeddings["fp32"] > 0
    assert all(load.row()["status"] == "ok" and load.row()["footprint_mb"] > 0 for load in loads.values())
    assert loads["4bit"].breakdown == footprint_breakdown(loads["4bit"].model)
    # inference may repack 4-bit weights for the CPU kernels (double quantization undone): still measurable
    with torch.no_grad():
        loads["4bit"].model(input_ids=torch.tensor([[1, 2, 3, 4]]))
    assert footprint_bytes(loads["4bit"].model) > 0 and footprint_breakdown(loads["4bit"].model)["linear layers"] > 0


def test_perplexity_survives_bf16_storage(tokenizer):
    text = ["The library opens at nine in the morning and closes at six in the evening, except on Sundays."]
    fp32 = load_variant("embedded", "fp32", text, tokenizer, progress=False)
    bf16 = load_variant("embedded", "bf16", text, tokenizer, progress=False)
    assert fp32.perplexity is not None and 1 < fp32.perplexity < 200
    assert bf16.perplexity == pytest.approx(fp32.perplexity, rel=0.1)
    assert bf16.footprint_mb == pytest.approx(fp32.footprint_mb / 2, rel=0.01)


def test_a_variant_that_cannot_load_is_reported_not_raised(tiny_folder, monkeypatch):
    import ftcourse.models

    monkeypatch.setattr(ftcourse.models, "find_spec", lambda name: None)  # as if bitsandbytes were not installed
    load = load_variant(str(tiny_folder), "4bit")
    assert load.model is None and "bitsandbytes" in load.error
    assert load.row()["status"].startswith("failed:") and load.row()["footprint_mb"] is None


def test_wrong_names_raise(tiny_folder):
    with pytest.raises(CourseError, match="Unknown base-model variant"):
        load_variant(str(tiny_folder), "3bit")
    with pytest.raises(CourseError, match="does not exist"):
        load_variant("./no/such/model", "fp32")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="resettable peak RSS is Linux-only")
def test_track_peak_sees_an_allocation_and_resets():
    with track_peak() as mem:
        big = torch.ones(64 * 2**20)  # 256 MB of fp32, written, so resident
        del big
    assert mem.source == "rss"
    assert mem.added_mb >= 240
    assert mem.end_mb < mem.peak_mb - 200  # freed again
    with track_peak() as quiet:  # the peak was reset: the earlier allocation does not count
        torch.ones(1024).sum()
    assert quiet.added_mb < 50
    assert quiet.seconds >= 0 and mem.seconds > 0


def test_track_peak_refuses_cuda_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(CourseError, match="CUDA is not available"):
        with track_peak("cuda"):
            pass


def test_unpacking_4bit_weights_makes_the_model_trainable_again(tiny_folder):
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    model = load_variant(str(tiny_folder), "4bit").model
    ids = torch.tensor([[1, 2, 3, 4, 5, 6]])
    with torch.no_grad():
        before = model(input_ids=ids).logits
    layer = model.model.layers[0].self_attn.q_proj
    if not getattr(layer.weight.quant_state, "packing_format_for_cpu", False):
        pytest.skip("bitsandbytes did not repack the weights on this CPU (no AVX512-BF16)")
    assert unpack_cpu_4bit(model) == 14  # 2 layers × 7 projections; the untied LM head is not quantized
    assert not layer.weight.quant_state.packing_format_for_cpu and unpack_cpu_4bit(model) == 0
    with torch.no_grad():
        assert torch.allclose(model(input_ids=ids).logits, before, atol=0.05)  # the same weights, unpacked
    assert unpack_cpu_4bit(model) == 14  # that inference (eval mode, no gradients) packed them again
    lora = get_peft_model(prepare_model_for_kbit_training(model, use_gradient_checkpointing=False),
                          LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    lora.train()
    lora(input_ids=ids, labels=ids).loss.backward()
    first = lora.base_model.model.model.layers[0].self_attn.q_proj.lora_B["default"].weight  # (lora_A's is 0: B starts at 0)
    assert first.grad is not None and first.grad.abs().sum() > 0  # gradients flow back through the 4-bit layers to the first


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="resettable peak RSS is Linux-only")
def test_make_resident_reads_memory_mapped_weights_into_ram(fresh_model):
    with track_peak() as mem:
        make_resident(fresh_model)
    # from_pretrained maps the safetensors file lazily; reading every page makes the 513 MB of weights resident
    assert mem.end_mb - mem.start_mb > 0.8 * footprint_bytes(fresh_model) / MB


def test_a_bitsandbytes_without_the_private_unpacker_gets_a_clear_error(monkeypatch):
    """The CPU unpacking relies on a private bitsandbytes function: if a release drops it, the error says what to do."""
    bnbf = pytest.importorskip("bitsandbytes.functional")
    from ftcourse.memory import cpu_4bit_unpacker

    assert callable(cpu_4bit_unpacker())
    monkeypatch.delattr(bnbf, "_convert_weight_packed_for_cpu_inverse")
    with pytest.raises(CourseError, match="constraints.txt"):
        cpu_4bit_unpacker()
