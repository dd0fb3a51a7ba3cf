"""Profiles and the seed configs."""

from __future__ import annotations

import json

import pytest

from ftcourse.configs import LoraSettings, QuantizationSettings, TrainingSettings, load_settings
from ftcourse.course import lessons
from ftcourse.errors import CourseError
from ftcourse.hardware import cuda_supports_bf16, detect_environment
from ftcourse.paths import configs_dir
from ftcourse.profiles import PROFILES, get_profile


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
