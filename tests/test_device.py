"""The device and precision policy (issues 24, 25): one decision per machine and launch, used by loading, training and timing.

Only the hardware facts are faked (an ``Environment``, or ``torch.cuda``'s answers); the models are real tiny ones.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from tiny import save_tiny, tiny_model

from ftcourse.configs import LoraSettings, QuantizationSettings, TrainingSettings
from ftcourse.device import DevicePolicy, device_policy
from ftcourse.errors import CourseError
from ftcourse.hardware import CPU_BF16_VARIABLE, Environment, cpu_supports_bf16, detect_environment
from ftcourse.inference import time_call
from ftcourse.models import from_pretrained_kwargs, load_model, quantization_config
from ftcourse.peft_methods import get_method
from ftcourse.runs import plan_run
from ftcourse.train import TrainingData, prepare_model, training_arguments

LAUNCH_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "ACCELERATE_USE_FSDP", "ACCELERATE_USE_DEEPSPEED",
                    "ACCELERATE_DEEPSPEED_ZERO_STAGE", "ACCELERATE_DEEPSPEED_CONFIG_FILE")


@pytest.fixture(autouse=True)
def single_process(monkeypatch):
    """Every test starts outside any launcher; the ones about launches set the variables themselves."""
    for name in LAUNCH_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def machine(device: str, bf16: bool) -> Environment:
    return Environment(platform="local", device=device, device_name="test", bf16=bf16, fp16=device != "cpu", ram_gb=16.0,
                       vram_gb=16.0 if device == "cuda" else None, cpu_count=2, bitsandbytes=True)


def cuda_machine(monkeypatch, capability: tuple[int, int], name: str) -> Environment:
    """``detect_environment`` on a machine whose torch reports one GPU of ``capability`` (the detection itself runs)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device=None: SimpleNamespace(name=name, total_memory=16 * 2**30))
    return detect_environment.__wrapped__()  # past the cache, which holds this machine's answer


T4 = machine("cuda", bf16=False)
A100 = machine("cuda", bf16=True)
CPU_BF16 = machine("cpu", bf16=True)
CPU_PLAIN = machine("cpu", bf16=False)


def test_a_t4_trains_in_fp16_with_a_scaler_and_fp32_trainable_weights(monkeypatch):
    env = cuda_machine(monkeypatch, (7, 5), "Tesla T4")
    policy = device_policy(env)
    assert (env.device, env.bf16) == ("cuda", False)
    assert policy.device == torch.device("cuda", 0)
    assert (policy.weights_dtype, policy.trainable_dtype, policy.autocast_dtype) == (torch.float16, torch.float32, torch.float16)
    assert policy.scaler and policy.compute_dtype_4bit == torch.float16 and policy.storage_dtype_4bit == torch.uint8
    assert policy.training_flags() == {"bf16": False, "fp16": True, "use_cpu": False}
    assert policy.device_map is None


def test_an_a100_trains_in_bf16_without_a_scaler(monkeypatch):
    policy = device_policy(cuda_machine(monkeypatch, (8, 0), "NVIDIA A100"))
    assert (policy.weights_dtype, policy.trainable_dtype, policy.autocast_dtype) == (torch.bfloat16, torch.float32, torch.bfloat16)
    assert not policy.scaler and policy.compute_dtype_4bit == torch.bfloat16
    assert policy.training_flags() == {"bf16": True, "fp16": False, "use_cpu": False}


@pytest.mark.parametrize("value, bf16", [("0", False), ("no", False), ("1", True), ("TRUE", True)])
def test_ftcourse_cpu_bf16_decides_the_cpus_path_over_its_flags(monkeypatch, value, bf16):
    """FTCOURSE_CPU_BF16 overrides /proc/cpuinfo (a CPU whose bf16 is slow, or another machine's numbers): the detected
    environment, and so the policy, follow it."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.setenv(CPU_BF16_VARIABLE, value)
    env = detect_environment.__wrapped__()
    assert cpu_supports_bf16() is env.bf16 is bf16
    assert device_policy(env).autocast_dtype == (torch.bfloat16 if bf16 else None)


def test_an_unknown_ftcourse_cpu_bf16_value_is_refused_with_the_accepted_ones(monkeypatch):
    monkeypatch.setenv(CPU_BF16_VARIABLE, "fast")
    with pytest.raises(CourseError, match="FTCOURSE_CPU_BF16='fast' is not understood") as error:
        cpu_supports_bf16()
    assert "set it to 0" in str(error.value)


@pytest.mark.parametrize("env, autocast", [(CPU_BF16, torch.bfloat16), (CPU_PLAIN, None)])
def test_a_cpu_keeps_fp32_weights_and_autocasts_only_with_bf16_instructions(env, autocast):
    policy = device_policy(env)
    assert policy.device == torch.device("cpu") and policy.weights_dtype == policy.trainable_dtype == torch.float32
    assert policy.autocast_dtype == autocast and not policy.scaler
    assert policy.compute_dtype_4bit == (autocast or torch.float32)
    assert policy.training_flags() == {"bf16": autocast is not None, "fp16": False, "use_cpu": True}
    layer = torch.nn.Linear(4, 4)
    with policy.autocast():
        assert layer(torch.ones(1, 4)).dtype == (autocast or torch.float32)
    policy.synchronize()  # nothing to wait for on a CPU


def test_the_4bit_config_follows_the_policy_unless_settings_say_otherwise(monkeypatch):
    pytest.importorskip("bitsandbytes")
    assert quantization_config("4bit", policy=device_policy(T4)).bnb_4bit_compute_dtype == torch.float16
    assert quantization_config("4bit", policy=device_policy(CPU_PLAIN)).bnb_4bit_compute_dtype == torch.float32
    explicit = quantization_config("4bit", QuantizationSettings(bnb_4bit_compute_dtype="bfloat16"), policy=device_policy(T4))
    assert explicit.bnb_4bit_compute_dtype == torch.bfloat16
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")  # FSDP-QLoRA: the packed weights in the dtype of the other frozen weights
    assert quantization_config("4bit", policy=device_policy(T4)).bnb_4bit_quant_storage == torch.float16
    assert quantization_config("4bit", policy=device_policy(A100)).bnb_4bit_quant_storage == torch.bfloat16


def launch(monkeypatch, **variables: str) -> None:
    """Rank 1 of 2, as torchrun / accelerate launch tell it, plus the sharding variables accelerate reads."""
    for name, value in {"RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "2", **variables}.items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize("variables, rank_map", [
    ({}, {"": 1}),  # plain DDP: each rank's own copy on its own GPU
    ({"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "2"}, {"": 1}),  # ZeRO-2 shards no weights
    ({"ACCELERATE_USE_FSDP": "true"}, None),
    ({"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "3"}, None),
])
def test_no_rank_loads_the_whole_model_onto_its_gpu_when_the_launch_shards(monkeypatch, variables, rank_map):
    launch(monkeypatch, **variables)
    policy = device_policy(T4)
    assert policy.device == torch.device("cuda", 1) and policy.device_map == rank_map
    assert from_pretrained_kwargs(policy=policy).get("device_map") == rank_map
    assert from_pretrained_kwargs("4bit", policy=policy).get("device_map") == rank_map  # under sharding bitsandbytes takes this rank's current GPU


def test_zero_stage_3_in_accelerates_deepspeed_config_file_counts(monkeypatch, tmp_path):
    config = tmp_path / "ds.json"
    config.write_text(json.dumps({"zero_optimization": {"stage": 3}}))
    launch(monkeypatch, ACCELERATE_USE_DEEPSPEED="true", ACCELERATE_DEEPSPEED_CONFIG_FILE=str(config))
    assert device_policy(T4).shards_weights and "device_map" not in from_pretrained_kwargs(policy=device_policy(T4))


def test_one_process_loads_then_moves_and_quantized_models_are_placed_while_loading():
    policy = device_policy(T4)
    assert "device_map" not in from_pretrained_kwargs(policy=policy)  # load_model moves it to policy.device afterwards
    assert from_pretrained_kwargs(policy=policy)["dtype"] == torch.float16
    assert from_pretrained_kwargs(dtype="float32", policy=policy)["dtype"] == torch.float32
    pytest.importorskip("bitsandbytes")
    assert from_pretrained_kwargs("4bit", policy=policy)["device_map"] == {"": "cuda:0"}


def test_load_model_places_the_model_where_the_policy_says(tokenizer, tmp_path):
    folder = save_tiny("llama", tmp_path / "tiny", tokenizer, vocab_size=len(tokenizer))
    policy = device_policy(CPU_PLAIN)
    model = load_model(str(folder), policy=policy)
    assert {(p.device, p.dtype) for p in model.parameters()} == {(policy.device, policy.weights_dtype)}
    half = load_model(str(folder), dtype="bfloat16", policy=policy)
    assert {p.dtype for p in half.parameters()} == {torch.bfloat16}


def prepared(method: str, policy: DevicePolicy):
    model = tiny_model("llama").to(policy.weights_dtype)  # a base loaded as the policy loads it
    data = TrainingData(train=[], eval=None, conversations=None, longest=16, total_steps=2)
    model, _ = prepare_model(model, get_method(method), LoraSettings(), data, batch_size=2, gradient_checkpointing=False, policy=policy)
    return model


@pytest.mark.parametrize("method", ["lora", "full"])
def test_fp16_mixed_precision_trains_fp32_weights_next_to_fp16_frozen_ones(method):
    """The GradScaler refuses fp16 gradients ("Attempting to unscale FP16 gradients"): every trainable weight is fp32."""
    model = prepared(method, device_policy(T4))
    trainable = {p.dtype for p in model.parameters() if p.requires_grad}
    frozen = {p.dtype for p in model.parameters() if not p.requires_grad}
    assert trainable == {torch.float32}
    assert frozen == ({torch.float16} if method == "lora" else set())


@pytest.mark.parametrize("env, flag", [(T4, "fp16"), (CPU_BF16, "bf16")])
def test_training_arguments_take_the_policys_precision(env, flag, tmp_path):
    plan = plan_run("precision", "0" * 12, tmp_path / "runs", tmp_path / "checkpoints")
    settings = TrainingSettings(max_steps=2, batch_size=2)
    args = training_arguments(plan, settings, get_method("lora"), 2, False, policy=device_policy(env))
    assert {"bf16": args.bf16, "fp16": args.fp16} == {"bf16": flag == "bf16", "fp16": flag == "fp16"}
    assert args.use_cpu is (env.device == "cpu")


def test_time_call_synchronises_the_device_before_each_clock_read():
    events = []
    recorder = SimpleNamespace(synchronize=lambda: events.append("sync"))
    times = time_call(lambda: events.append("call"), repeats=2, warmup=1, policy=recorder)
    assert len(times) == 2
    assert events == ["call", "sync", "call", "sync", "sync", "call", "sync"]
