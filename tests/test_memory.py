"""ftcourse.memory: footprints of real models (embedded and tiny), the training-memory model against PEFT, real footprints
and hand computations, peak-memory measurement, variant loading."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import torch
from tiny import TINY_CONFIGS, save_tiny, tiny_model
from transformers import LlamaConfig

from ftcourse.configs import LoraSettings
from ftcourse.course.comparison import VARIANTS, load_variant
from ftcourse.errors import CourseError
from ftcourse.memory import (
    ACTIVATION_BYTES_PER_HIDDEN,
    MB,
    MODEL_SHAPES,
    NF4_BYTES,
    RUNTIME_OVERHEAD_BYTES,
    MemoryBreakdown,
    footprint_breakdown,
    footprint_bytes,
    make_resident,
    track_peak,
    training_memory,
    unpack_cpu_4bit,
)
from ftcourse.models import load_model

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


# ---------------------------------------------------------------- the training-memory model

GIB = 2**30


def _base_weights(memory: MemoryBreakdown) -> float:
    return memory.embeddings + memory.lm_head + memory.linear + memory.norms


def _peft_trainable(model, settings: LoraSettings) -> int:
    from peft import get_peft_model

    from ftcourse.peft_methods import build_peft_config

    peft = get_peft_model(copy.deepcopy(model), build_peft_config("lora", model, settings))
    return sum(p.numel() for p in peft.parameters() if p.requires_grad)


@pytest.mark.parametrize("arch", sorted(TINY_CONFIGS))
def test_every_architecture_shape_matches_its_real_tensors_and_peft(arch):
    model = tiny_model(arch)
    shape = training_memory(model, "full", "fp32", device="cpu")
    assert _base_weights(shape) == footprint_bytes(model)  # fp32 shapes and fp32 tensors: the same bytes exactly
    assert shape.gradients == 4 * sum(p.numel() for p in model.parameters()) and shape.adapter == 0
    for settings in (LoraSettings(r=4, target_modules="auto"), LoraSettings(r=2, target_modules="all-linear")):
        lora = training_memory(model, "lora", lora=settings, device="cpu")
        assert lora.adapter == 4 * _peft_trainable(model, settings), settings  # fp32 A and B, as PEFT counts them


def test_the_embedded_shape_matches_peft_and_the_fp32_footprint(base_model):
    for settings in (LoraSettings(), LoraSettings(r=8, target_modules="all-linear"), LoraSettings(r=4, target_modules=["mlp.down_proj", "o_proj"])):
        shape = training_memory(base_model.config, "lora", "fp32", lora=settings, device="cpu")
        trainable = _peft_trainable(base_model, settings)
        assert (shape.adapter, shape.gradients, shape.optimizer) == (4 * trainable, 4 * trainable, 8 * trainable)
    full = training_memory(base_model, "full", "fp32", device="cpu")
    assert _base_weights(full) == footprint_bytes(base_model)  # exact: nothing is approximated in fp32
    assert full.embeddings / MB == pytest.approx(EMBEDDING_MB) and full.lm_head == 0  # tied: the head is the embedding matrix
    bf16 = training_memory(base_model.config, "full", device="cpu")  # mixed precision: 2 + 2 + 12 bytes per parameter
    buffers = bf16.norms - 2 * 61 * 576  # 61 RMSNorm weights of 576 in bf16; the rotary frequencies keep fp32 and are not trained
    assert 0 < buffers <= 1024 and bf16.model_states == 16 * 134_515_008 + buffers


@pytest.fixture(scope="module")
def embedded_4bit():
    pytest.importorskip("bitsandbytes")
    return load_model("embedded", quantization="4bit")


def test_the_4bit_shape_matches_the_loaded_4bit_model(embedded_4bit):
    """bitsandbytes quantizes the decoder's linear layers only; their NF4 bytes are 4.127 bits a weight within 0.5% (the
    code tables and the rounding of blocks are left out); embeddings and norms keep the loaded dtype (fp32 on CPU)."""
    loaded = training_memory(embedded_4bit, device="cpu")  # the model as it is
    shape = training_memory(embedded_4bit, "qlora", "fp32", device="cpu")
    assert loaded.embeddings == shape.embeddings == 49152 * 576 * 4 and loaded.norms == shape.norms
    assert loaded.linear == pytest.approx(shape.linear, rel=0.005)  # + ~1.1 KB of code tables a layer, 0.4% of layers this small
    assert _base_weights(shape) == pytest.approx(footprint_bytes(embedded_4bit), rel=0.005)
    quantized = [n for n, m in embedded_4bit.named_modules() if hasattr(getattr(m, "weight", None), "quant_state")]
    assert len(quantized) == 30 * 7 and not any("embed" in n or "head" in n for n in quantized)


def test_a_7b_shape_prices_the_4bit_weights_by_hand():
    config = LlamaConfig(**MODEL_SHAPES["Llama-2-7B"])
    memory = training_memory(config, "qlora", device="cuda")
    h, ffn, layers, vocab = 4096, 11008, 32, 32000
    linear = layers * (4 * h * h + 3 * h * ffn)  # q, k, v, o and gate, up, down
    assert linear + 2 * vocab * h + (2 * layers + 1) * h == 6_738_415_616  # Llama-2-7B's published parameter count
    assert memory.linear == pytest.approx(linear * 4.127 / 8, rel=1e-12)
    assert memory.embeddings == memory.lm_head == vocab * h * 2  # 16-bit in QLoRA: neither is an nn.Linear bitsandbytes quantizes
    assert memory.norms == pytest.approx((2 * layers + 1) * h * 2, abs=1024)  # + the rotary frequencies (fp32 buffers)
    wrongly_4bit = 2 * vocab * h * NF4_BYTES
    assert 0.35 * GIB < memory.embeddings + memory.lm_head - wrongly_4bit < 0.4 * GIB  # what pricing them at 4 bits gets wrong
    lora = layers * 16 * (2 * h + 2 * h)  # default LoraSettings: r=16 on q_proj and v_proj
    assert memory.adapter == 4 * lora and memory.optimizer == 8 * lora


def test_activations_follow_korthikanti_on_a_gpu_and_the_fitted_constants_on_cpu():
    config = LlamaConfig(**MODEL_SHAPES["Llama-2-7B"])
    s, b, h, a, layers, vocab = 2048, 2, 4096, 32, 32, 32000
    working = s * b * h * (34 + 5 * a * s / h)  # one layer's 16-bit activations (Korthikanti et al. 2022)
    kept = training_memory(config, "lora", batch_size=b, seq_length=s, device="cuda")
    recomputed = training_memory(config, "lora", batch_size=b, seq_length=s, gradient_checkpointing=True, device="cuda")
    assert kept.activations == pytest.approx(layers * working)
    assert recomputed.activations == pytest.approx(layers * 2 * s * b * h + working)  # every layer's input + one layer's working set
    assert kept.logits == recomputed.logits == b * s * vocab * 4 and kept.overhead == 0
    cpu = training_memory(config, "lora", batch_size=b, seq_length=s, device="cpu")
    assert cpu.activations == b * s * layers * ACTIVATION_BYTES_PER_HIDDEN * h and cpu.overhead == RUNTIME_OVERHEAD_BYTES


def test_the_model_as_it_is_keeps_the_fitted_estimate(base_model):
    """check_memory's and fine_tune's estimate: the loaded tensors, 12 bytes of gradient and AdamW states per fp32 trainable
    parameter, the activations fitted on this CPU, fp32 logits, the runtime overhead."""
    b, s, h, layers, vocab = 8, 128, 576, 30, 49152
    tensors = footprint_bytes(base_model)
    memory = training_memory(base_model, batch_size=b, seq_length=s, device="cpu")
    assert memory.total == RUNTIME_OVERHEAD_BYTES + tensors + 12 * 134_515_008 + b * s * (layers * 64 * h + vocab * 4)
    recomputed = training_memory(base_model, batch_size=b, seq_length=s, gradient_checkpointing=True, device="cpu")
    assert memory.total - recomputed.total == b * s * (layers - 1) * 64 * h - b * s * layers * 4 * h
    from peft import get_peft_model

    from ftcourse.peft_methods import build_peft_config

    peft = get_peft_model(copy.deepcopy(base_model), build_peft_config("lora", base_model, LoraSettings()))
    adapted = training_memory(peft, batch_size=b, seq_length=s, device="cpu")
    assert (adapted.adapter, adapted.gradients, adapted.optimizer) == (4 * 921_600, 4 * 921_600, 8 * 921_600)
    assert _base_weights(adapted) == tensors  # the frozen base, by kind, as loaded


def test_zero_stages_divide_what_they_should():
    config = LlamaConfig(**MODEL_SHAPES["Llama-2-7B"])
    one = training_memory(config, "full", batch_size=1, seq_length=512, device="cuda")
    per_gpu = {stage: training_memory(config, "full", batch_size=1, seq_length=512, gpus=8, zero_stage=stage, device="cuda") for stage in range(4)}
    assert per_gpu[0] == one  # plain data parallel: every GPU holds everything
    assert per_gpu[1].optimizer == one.optimizer / 8 and per_gpu[1].gradients == one.gradients and per_gpu[1].weights == one.weights
    assert per_gpu[2].gradients == one.gradients / 8 and per_gpu[2].weights == one.weights
    assert per_gpu[3].weights == pytest.approx(one.weights / 8) and per_gpu[3].lm_head == one.lm_head / 8
    assert all(m.activations == one.activations and m.logits == one.logits for m in per_gpu.values())  # each GPU's own micro-batch
    assert one.model_states == pytest.approx(16 * 6_738_415_616, rel=1e-4)  # the ZeRO paper's 16 bytes per parameter
    counted = MemoryBreakdown.of_counts(1000, 10, 2.0).sharded(4, 2)
    assert (counted.linear, counted.adapter, counted.gradients, counted.optimizer) == (2000, 40, 10, 20)  # stage 2: gradients and optimizer states over 4


def test_settings_the_model_cannot_price_are_refused(base_model):
    for kwargs, match in ((dict(method="sgd"), "not a setup"), (dict(method="lora", precision="int3"), "not a setup"),
                          (dict(method="full", lora=LoraSettings()), "not a setup"), (dict(precision="bf16"), "as it is"),
                          (dict(zero_stage=4, gpus=8), "zero_stage"), (dict(gpus=0), "zero_stage"), (dict(device="tpu"), "device")):
        with pytest.raises(CourseError, match=match):
            training_memory(base_model.config if "method" in kwargs else base_model, **kwargs)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process trees are read through /proc")
def test_track_peak_of_children_sees_a_child_process_memory():
    script = "import sys; data = b'x' * (256 * 2**20); print('ready', flush=True); sys.stdin.read()"
    with track_peak(children=True, interval=0.05) as mem:
        child = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert child.stdout.readline().strip() == "ready"  # the child holds 256 MB until its stdin closes, after the block
    child.stdin.close()
    child.wait()
    assert mem.source == "rss-children" and mem.start_mb < 50
    assert mem.peak_mb >= 256 and mem.end_mb >= 256  # the last sample, taken when the block ends, sees the child
    with track_peak(children=True) as after:
        pass
    assert after.peak_mb < 50  # the child has ended: nothing left to count
    with pytest.raises(CourseError, match="children=True"):
        with track_peak("cuda", children=True):
            pass
