"""Profiles and the seed configs; the settings classes validated field by field (issues 24 and 30)."""

from __future__ import annotations

import json
import math
import re

import pytest

from ftcourse.configs import LoraSettings, QuantizationSettings, TrainingSettings, load_settings, settings_dict
from ftcourse.course import lessons
from ftcourse.errors import CourseError
from ftcourse.hardware import cuda_supports_bf16, detect_environment
from ftcourse.paths import configs_dir
from ftcourse.profiles import PROFILES, Profile, get_profile
from ftcourse.runs import run_fingerprint
from ftcourse.train import settings_from_profile


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
        ({"r": "16"}, "r must be int, got str '16'"),
        ({"lora_dropout": True}, "lora_dropout must be float, got bool True"),
        ({"bias": "some"}, "bias is 'some'"),
        ({"r": 0}, "r must be at least 1, got 0"),
        ({"target_modules": "q_proj"}, "target_modules must be list of str or 'all-linear' or 'auto'"),
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


def test_a_config_that_is_missing_or_not_an_object_says_so(tmp_path):
    with pytest.raises(CourseError, match="does not exist"):
        load_settings(TrainingSettings, tmp_path / "nope.json")
    (tmp_path / "list.json").write_text("[4, 3]")
    with pytest.raises(CourseError, match="expected a JSON object of settings, got list"):
        load_settings(TrainingSettings, tmp_path / "list.json")


def test_an_unknown_key_is_named_with_the_valid_ones(tmp_path):
    path = tmp_path / "q.json"
    path.write_text('{"load_in_8bit": true}')
    with pytest.raises(CourseError, match=r"q.json: unknown key 'load_in_8bit'") as err:
        load_settings(QuantizationSettings, path)
    assert all(name in err.value.fix for name in QuantizationSettings.model_fields)
    with pytest.raises(CourseError, match="unknown keys 'rank', 'alpha'"):
        LoraSettings(rank=4, alpha=8)
    path.write_text('{"self": 1}')
    with pytest.raises(CourseError, match="unknown key 'self'"):
        load_settings(QuantizationSettings, path)


# ---------------------------------------------------------------- every field, validated

INF, NAN = math.inf, math.nan

#: (class, field, a bad value, words the error must hold): a wrong type, out of range, not finite, not a choice.
BAD_VALUES = [
    (LoraSettings, "r", 0, "at least 1"), (LoraSettings, "r", True, "must be int"), (LoraSettings, "r", 8.0, "must be int"),
    (LoraSettings, "lora_alpha", 0, "greater than 0"), (LoraSettings, "lora_alpha", INF, "finite"),
    (LoraSettings, "lora_alpha", "32", "must be float"),
    (LoraSettings, "lora_dropout", 1, "below 1"), (LoraSettings, "lora_dropout", -0.1, "at least 0"), (LoraSettings, "lora_dropout", NAN, "finite"),
    (LoraSettings, "target_modules", "q_proj", "list of str or 'all-linear' or 'auto'"), (LoraSettings, "target_modules", [], "non-empty"),
    (LoraSettings, "target_modules", ["q_proj", 1], "list of str"), (LoraSettings, "target_modules", None, "list of str"),
    (LoraSettings, "bias", "some", "one of: none, all, lora_only"), (LoraSettings, "task_type", "SEQ2SEQ", "one of: CAUSAL_LM, SEQ_CLS"),
    (TrainingSettings, "num_epochs", 0, "greater than 0"), (TrainingSettings, "num_epochs", INF, "finite"), (TrainingSettings, "num_epochs", True, "must be float"),
    (TrainingSettings, "max_steps", 0, "at least 1, or -1"), (TrainingSettings, "max_steps", -2, "at least 1, or -1"), (TrainingSettings, "max_steps", 5.0, "must be int"),
    (TrainingSettings, "batch_size", 0, "at least 1"), (TrainingSettings, "batch_size", "4", "must be int"),
    (TrainingSettings, "gradient_accumulation_steps", 0, "at least 1"), (TrainingSettings, "gradient_accumulation_steps", False, "must be int"),
    (TrainingSettings, "learning_rate", 0, "greater than 0"), (TrainingSettings, "learning_rate", INF, "finite"),
    (TrainingSettings, "learning_rate", -INF, "finite"), (TrainingSettings, "learning_rate", NAN, "finite"),
    (TrainingSettings, "learning_rate", "2e-4", "must be float or None"),
    (TrainingSettings, "warmup_ratio", 1.5, "between 0 and 1"), (TrainingSettings, "warmup_ratio", NAN, "finite"),
    (TrainingSettings, "weight_decay", -0.01, "at least 0"), (TrainingSettings, "weight_decay", INF, "finite"),
    (TrainingSettings, "max_seq_length", 0, "at least 1"), (TrainingSettings, "max_seq_length", 256.0, "must be int"),
    (TrainingSettings, "logging_steps", 0, "at least 1"), (TrainingSettings, "save_steps", -1, "at least 1"),
    (TrainingSettings, "eval_steps", 0, "at least 1 (or None"), (TrainingSettings, "eval_steps", 2.0, "must be int or None"),
    (TrainingSettings, "seed", -1, "at least 0"), (TrainingSettings, "seed", 4.2, "must be int"),
    (QuantizationSettings, "load_in_4bit", 1, "must be bool"), (QuantizationSettings, "load_in_4bit", "true", "must be bool"),
    (QuantizationSettings, "bnb_4bit_quant_type", "int8", "one of: nf4, fp4"),
    (QuantizationSettings, "bnb_4bit_use_double_quant", None, "must be bool"),
    (QuantizationSettings, "bnb_4bit_compute_dtype", "foo", "one of: bfloat16, float16, float32"),
]


def test_every_field_has_a_bad_value_below():
    covered = {(cls, name) for cls, name, _, _ in BAD_VALUES}
    assert covered == {(cls, name) for cls in (LoraSettings, TrainingSettings, QuantizationSettings) for name in cls.model_fields}


@pytest.mark.parametrize(("cls", "name", "value", "words"), BAD_VALUES, ids=lambda v: repr(v) if not isinstance(v, type) else v.__name__)
def test_a_bad_value_is_an_error_naming_the_field_and_value(cls, name, value, words):
    with pytest.raises(CourseError) as err:
        cls(**{name: value})
    text = str(err.value)
    assert words in text and err.value.what.startswith(name) and name in err.value.fix
    assert repr(value) in err.value.what and "pydantic" not in text


@pytest.mark.parametrize(("cls", "name", "value"), [(cls, name, value) for cls, name, value, _ in BAD_VALUES])
def test_a_bad_value_in_a_file_names_the_file_and_field(tmp_path, cls, name, value):
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({name: value}))  # inf and nan are written as Infinity and NaN, which json reads back
    with pytest.raises(CourseError, match=rf"^{re.escape(str(path))}: {name} (must be|is) "):
        load_settings(cls, path)


@pytest.mark.parametrize("cls", [LoraSettings, TrainingSettings, QuantizationSettings])
def test_the_defaults_and_seed_configs_pass_their_own_validation(cls):
    assert cls(**settings_dict(cls())) == cls()


def test_ints_are_fine_floats_and_stay_ints():
    settings = TrainingSettings(num_epochs=2, warmup_ratio=0, learning_rate=1)
    assert (settings.num_epochs, settings.warmup_ratio, settings.learning_rate) == (2, 0, 1)
    assert all(type(v) is int for v in (settings.num_epochs, settings.warmup_ratio, settings.learning_rate))
    assert LoraSettings(target_modules=("q_proj", "k_proj")).target_modules == ["q_proj", "k_proj"]


def test_replace_is_a_validated_copy():
    lora = LoraSettings()
    changed = lora.replace(r=4, target_modules="all-linear")
    assert (changed.r, changed.target_modules, lora.r, lora.target_modules) == (4, "all-linear", 16, ["q_proj", "v_proj"])
    with pytest.raises(CourseError, match="r must be at least 1, got 0"):
        lora.replace(r=0)
    with pytest.raises(CourseError, match="learning_rate must be a finite number"):
        TrainingSettings().replace(learning_rate=INF)
    with pytest.raises(CourseError, match="unknown key 'rank'"):
        lora.replace(rank=4)
    with pytest.raises(CourseError, match=r"frozen: r cannot be changed in place") as err:
        lora.r = 4
    assert "replace(r=...)" in err.value.fix and lora.r == 16


def test_profiles_are_validated_like_the_settings():
    with pytest.raises(CourseError, match="num_epochs must be a finite number"):
        get_profile("smoke", num_epochs=INF)
    with pytest.raises(CourseError, match="model must be str, got int 3"):
        get_profile("smoke", model=3)
    with pytest.raises(CourseError, match="eval_batch_size is missing"):
        Profile(**{k: v for k, v in settings_dict(PROFILES["smoke"]).items() if k != "eval_batch_size"})


# ---------------------------------------------------------------- saved runs keep their fingerprints

#: Computed with the dataclass settings before the move to pydantic: a change here would orphan every saved run.
FINGERPRINTS = {
    "defaults": "9e8667046c198895", "intent q/v, smoke": "23618814873677cd",
    "smoke": "3cdc8fc46f942ff0", "cpu": "41dbdb8657cc04c4", "gpu": "6b658db1008bcedf",
}


def test_settings_dicts_and_fingerprints_are_unchanged():
    assert settings_dict(LoraSettings()) == {"r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "target_modules": ["q_proj", "v_proj"],
                                             "bias": "none", "task_type": "CAUSAL_LM"}
    training = settings_dict(TrainingSettings())
    assert training == {"num_epochs": 3, "max_steps": -1, "batch_size": 4, "gradient_accumulation_steps": 4, "learning_rate": None,
                        "warmup_ratio": 0.05, "weight_decay": 0.0, "max_seq_length": 256, "logging_steps": 5, "save_steps": 50, "eval_steps": None, "seed": 42}
    assert type(training["num_epochs"]) is int and type(training["weight_decay"]) is float
    records = [{"text": "hi"}]
    found = {
        "defaults": run_fingerprint("embedded", "lora", LoraSettings(), TrainingSettings(), records, False, None),
        "intent q/v, smoke": run_fingerprint("embedded", "lora", lessons.INTENT_LORA_QV, settings_from_profile(get_profile("smoke")),
                                             records, True, "x"),
    } | {
        name: run_fingerprint("embedded", "lora", LoraSettings(target_modules="all-linear"),
                              settings_from_profile(get_profile(name), learning_rate=2e-3), records, False, None)
        for name in ("smoke", "cpu", "gpu")
    }
    assert found == FINGERPRINTS


@pytest.mark.parametrize("profile, domain_steps", [("smoke", 4), ("cpu", 40), ("gpu", -1)])
def test_lesson_runs_are_sized_from_the_profile(profile, domain_steps):
    """Lesson 06's domain run caps the profile's steps at about 3 epochs; epoch-based profiles keep epochs; a given value wins."""
    p = get_profile(profile)
    assert lessons.domain_settings(p).max_steps == domain_steps
    assert lessons.domain_settings(p, max_steps=7).max_steps == 7
