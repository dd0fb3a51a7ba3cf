"""Profiles and the seed configs."""

from __future__ import annotations

import json

import pytest

from ftcourse import profiles
from ftcourse.configs import LoraSettings, QuantizationSettings, TrainingSettings, load_settings
from ftcourse.course import lessons
from ftcourse.errors import CourseError
from ftcourse.hardware import cuda_supports_bf16, detect_environment
from ftcourse.paths import configs_dir
from ftcourse.profiles import GPU_ONLINE_MODEL, PROFILES, get_profile


def test_profiles_are_printable_and_overridable():
    smoke = get_profile("smoke", max_steps=7)
    assert smoke.max_steps == 7 and smoke.model == "embedded"
    assert "max_steps" in str(smoke)
    assert set(PROFILES) == {"smoke", "cpu", "gpu"}


def test_auto_profile_matches_hardware():
    expected = "gpu" if detect_environment().device == "cuda" else "cpu"
    assert get_profile("auto").name == expected


@pytest.mark.parametrize("capability, native", [((7, 5), False), ((7, 0), False), ((6, 1), False), ((8, 0), True), ((8, 9), True), ((9, 0), True)])
def test_gpu_precision_follows_compute_capability(capability, native):
    """T4 (7.5) and V100 (7.0) train in fp16 although torch may report emulated bf16; A100 (8.0) and newer in bf16."""
    assert cuda_supports_bf16(capability) is native


def test_unknown_profile_and_field_are_errors():
    with pytest.raises(CourseError, match="smoke, cpu, gpu"):
        get_profile("tiny")
    with pytest.raises(CourseError, match="valid fields"):
        get_profile("smoke", steps=3)


def test_seed_configs_hold_the_original_values():
    lora = load_settings(LoraSettings, configs_dir() / "lora_config.json")
    assert (lora.r, lora.lora_alpha, lora.lora_dropout, lora.target_modules, lora.bias, lora.task_type) == (16, 32, 0.05, ["q_proj", "v_proj"], "none", "CAUSAL_LM")
    train = load_settings(TrainingSettings, configs_dir() / "training_config.json")
    assert (train.num_epochs, train.batch_size, train.gradient_accumulation_steps) == (3, 4, 4)
    quant = load_settings(QuantizationSettings, configs_dir() / "quantization_config.json")
    assert (quant.load_in_4bit, quant.bnb_4bit_quant_type, quant.bnb_4bit_use_double_quant, quant.bnb_4bit_compute_dtype) == (True, "nf4", True, "bfloat16")


@pytest.mark.parametrize(
    "content, message",
    [
        ({"r": 16, "rank": 4}, "unknown key 'rank'"),
        ({"r": "16"}, "key 'r' must be int"),
        ({"lora_dropout": True}, "key 'lora_dropout' must be float"),
        ({"bias": "some"}, "key 'bias' is 'some'"),
    ],
)
def test_bad_config_names_the_key(tmp_path, content, message):
    path = tmp_path / "lora_config.json"
    path.write_text(json.dumps(content))
    with pytest.raises(CourseError, match=message) as err:
        load_settings(LoraSettings, path)
    assert str(path) in str(err.value)


def test_config_with_bad_json_names_the_line(tmp_path):
    path = tmp_path / "training_config.json"
    path.write_text('{\n  "batch_size": 4,\n  "num_epochs": 3,,\n}')
    with pytest.raises(CourseError, match="line 3"):
        load_settings(TrainingSettings, path)


@pytest.mark.parametrize("profile, domain_steps", [("smoke", 4), ("cpu", 40), ("gpu", -1)])
def test_lesson_runs_are_sized_from_the_profile(profile, domain_steps):
    """Lesson 06's domain run caps the profile's steps at about 3 epochs; epoch-based profiles keep epochs; a given value wins."""
    p = get_profile(profile)
    assert lessons.domain_settings(p).max_steps == domain_steps
    assert lessons.domain_settings(p, max_steps=7).max_steps == 7


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache; ``hub_cache(files)`` puts a snapshot of the gpu profile's model with those files in it."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))

    def put(*files: str) -> None:
        repo = tmp_path / ("models--" + GPU_ONLINE_MODEL.replace("/", "--"))
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / "main").write_text("abc123")
        for name in files:
            (repo / "snapshots" / "abc123").mkdir(parents=True, exist_ok=True)
            (repo / "snapshots" / "abc123" / name).write_text("{}")

    return put


def _hub(monkeypatch, offline: bool, reachable: bool | None) -> None:
    """HF_HUB_OFFLINE as given; the Hub's reachability mocked (None: asking it fails the test)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1" if offline else "0")

    def answer(timeout: float = 5.0) -> bool:
        assert reachable is not None, "the Hub was asked although HF_HUB_OFFLINE=1"
        return reachable

    monkeypatch.setattr(profiles, "hub_reachable", answer)


@pytest.mark.parametrize("offline, reachable, expected", [
    (True, None, "embedded"), (False, False, "embedded"), (False, True, GPU_ONLINE_MODEL),
])
def test_gpu_profile_model_follows_the_hub(hub_cache, monkeypatch, offline, reachable, expected):
    """model=None (every notebook's default) means the profile's choice; a model the learner passes always wins."""
    _hub(monkeypatch, offline, reachable)
    assert get_profile("gpu").model == expected
    assert get_profile("gpu", model=None).model == expected
    assert get_profile("gpu", model="Qwen/Qwen2.5-0.5B-Instruct").model == "Qwen/Qwen2.5-0.5B-Instruct"
    assert get_profile("gpu", model="embedded").model == "embedded"
    assert get_profile("cpu", model=None).model == get_profile("smoke").model == "embedded"


def test_gpu_profile_uses_the_cached_model_offline(hub_cache, monkeypatch):
    """Offline, the larger model is chosen only when its weights are cached, and then it loads by name without the Hub."""
    from ftcourse.models import resolve_model

    _hub(monkeypatch, offline=True, reachable=None)
    hub_cache("config.json")  # the weights are missing: loading would fail offline
    assert get_profile("gpu").model == "embedded"
    hub_cache("model.safetensors")
    assert get_profile("gpu").model == GPU_ONLINE_MODEL
    assert resolve_model(get_profile("gpu").model) == GPU_ONLINE_MODEL
