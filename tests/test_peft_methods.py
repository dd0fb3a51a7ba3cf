"""The method registry: every method builds its PEFT config; target modules resolve per architecture (issue 4)."""

from __future__ import annotations

import pytest
import torch
from peft import AdaLoraConfig, IA3Config, LoraConfig, PrefixTuningConfig, PromptEncoderConfig, PromptTuningConfig, get_peft_model
from tiny import OPT_350M, TINY_CONFIGS, tiny_model
from transformers import AutoModelForCausalLM, OPTConfig

from ftcourse.configs import LoraSettings
from ftcourse.errors import CourseError
from ftcourse.models import count_parameters
from ftcourse.peft_methods import METHODS, build_peft_config, get_method, linear_layer_names, resolve_target_modules

EXPECTED_CONFIG = {
    "lora": LoraConfig, "qlora": LoraConfig, "dora": LoraConfig, "rslora": LoraConfig, "adalora": AdaLoraConfig,
    "ia3": IA3Config, "prompt_tuning": PromptTuningConfig, "p_tuning": PromptEncoderConfig,
    "prefix_tuning": PrefixTuningConfig, "full": type(None),
}


def meta_model(config):
    """A model of ``config``'s shape on the meta device: counts parameters without allocating them."""
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


def test_registry_has_every_method_of_the_issue():
    assert list(METHODS) == list(EXPECTED_CONFIG)
    assert all(m.learning_rate > 0 and m.description for m in METHODS.values())
    assert get_method("qlora").quantization == "4bit" and get_method("lora").quantization is None
    assert {m.name for m in METHODS.values() if m.prompt_learning} == {"prompt_tuning", "p_tuning", "prefix_tuning"}
    assert {m.name for m in METHODS.values() if m.low_rank} == {"lora", "qlora", "dora", "rslora", "adalora"}


@pytest.mark.parametrize("name", ["P-Tuning", "prefix-tuning", "LoRA"])
def test_method_names_are_forgiving(name):
    assert get_method(name).name == name.lower().replace("-", "_")


def test_unknown_method_lists_the_valid_ones():
    with pytest.raises(CourseError, match="Unknown fine-tuning method 'lorra'") as err:
        get_method("lorra")
    assert all(name in str(err.value) for name in METHODS)


@pytest.mark.parametrize("method", list(EXPECTED_CONFIG))
def test_each_method_builds_its_peft_config(base_model, method):
    config = build_peft_config(method, base_model, LoraSettings(r=8), total_steps=40)
    assert isinstance(config, EXPECTED_CONFIG[method])
    if isinstance(config, LoraConfig):
        assert config.r == 8 and set(config.target_modules) == {"q_proj", "v_proj"}
        assert config.use_dora == (method == "dora") and config.use_rslora == (method == "rslora")
    if method == "adalora":
        assert config.total_step == 40 and config.tinit < config.total_step - config.tfinal


# Trainable parameters on the embedded model's shape (SmolLM2-135M: 30 layers, hidden 576, 3 KV heads of 64, MLP 1536).
EMBEDDED_TRAINABLE = {
    "lora": 30 * (8 * (576 + 576) + 8 * (576 + 192)),  # q_proj 576->576, v_proj 576->192
    "dora": 30 * (8 * (576 + 576) + 8 * (576 + 192) + 576 + 192),  # + one magnitude per output column
    "ia3": 30 * (192 + 192 + 1536),  # k_proj and v_proj outputs, down_proj input
    "prompt_tuning": 16 * 576,  # 16 virtual token embeddings
}


@pytest.mark.parametrize("method", list(EMBEDDED_TRAINABLE))
def test_trainable_parameter_counts_on_the_embedded_shape(base_model, method):
    model = meta_model(base_model.config)
    peft_model = get_peft_model(model, build_peft_config(method, model, LoraSettings(r=8)))
    assert count_parameters(peft_model)["trainable"] == EMBEDDED_TRAINABLE[method]


def test_opt_350m_lora_count_matches_peft_report():
    # The original course's figure: facebook/opt-350m, LoRA r=8 on q_proj/v_proj.
    model = meta_model(OPTConfig(**OPT_350M))
    peft_model = get_peft_model(model, build_peft_config("lora", model, LoraSettings(r=8, target_modules=["q_proj", "v_proj"])))
    assert peft_model.get_nb_trainable_parameters() == (786_432, 331_982_848)
    counts = count_parameters(peft_model)
    assert (counts["trainable"], counts["total"]) == (786_432, 331_982_848)
    assert f"{counts['trainable_percent']:.4f}" == "0.2369"


DEFAULT_TARGETS = {"llama": ["q_proj", "v_proj"], "qwen2": ["q_proj", "v_proj"], "opt": ["q_proj", "v_proj"],
                   "gpt2": ["c_attn"], "gpt_neox": ["query_key_value"]}


@pytest.mark.parametrize("arch", list(DEFAULT_TARGETS))
def test_auto_targets_resolve_per_architecture(arch):
    model = tiny_model(arch)
    assert resolve_target_modules(model, "auto") == DEFAULT_TARGETS[arch]
    assert resolve_target_modules(model, None) == DEFAULT_TARGETS[arch]
    assert resolve_target_modules(model, "all-linear") == "all-linear"
    config = build_peft_config("lora", model, LoraSettings(target_modules="auto"))
    assert set(config.target_modules) == set(DEFAULT_TARGETS[arch])


def test_gpt2_conv1d_layers_are_linear_layers():
    names = linear_layer_names(tiny_model("gpt2"))
    assert {"c_attn", "c_fc", "c_proj", "lm_head"} <= set(names)


def test_wrong_target_module_lists_the_linear_layers():
    model = tiny_model("gpt2")
    with pytest.raises(CourseError) as err:
        build_peft_config("lora", model, LoraSettings(target_modules=["q_proj", "v_proj"]))
    text = str(err.value)
    assert "['q_proj', 'v_proj'] match no linear layer of this gpt2" in text
    assert "c_attn, c_fc, c_proj" in text and "all-linear" in text


def test_a_module_that_is_not_linear_is_rejected():
    with pytest.raises(CourseError, match=r"\['mlp'\] match no linear layer"):
        resolve_target_modules(tiny_model("llama"), ["mlp"])


def test_path_suffixes_match_like_peft_does():
    model = tiny_model("llama")
    assert resolve_target_modules(model, ["self_attn.q_proj", "mlp.down_proj"]) == ["self_attn.q_proj", "mlp.down_proj"]
    assert resolve_target_modules(model, "q_proj") == ["q_proj"]


def test_ia3_on_an_architecture_without_defaults_is_a_clear_error():
    model = tiny_model("llama")
    model.config.model_type = "my_custom_llm"
    with pytest.raises(CourseError, match="IA3 has no default modules for model type 'my_custom_llm'"):
        build_peft_config("ia3", model)


@pytest.mark.parametrize("arch", list(TINY_CONFIGS))
def test_every_peft_method_wraps_every_tiny_architecture(arch):
    for method in ("lora", "ia3", "prompt_tuning", "prefix_tuning"):
        model = tiny_model(arch)
        peft_model = get_peft_model(model, build_peft_config(method, model, LoraSettings(r=4, target_modules="auto")))
        counts = count_parameters(peft_model)
        assert 0 < counts["trainable"] < counts["total"], (arch, method)


@pytest.mark.parametrize("method", ["lora", "dora", "adalora"])
def test_a_rank_above_the_smallest_target_layer_is_refused_before_allocation(base_model, method):
    """``--lora_r 100000`` on the 576-wide embedded model once allocated ~23 GB; v_proj (576 -> 192) caps r at 192."""
    with pytest.raises(CourseError, match=r"r=100000 is larger than the smallest target layer \(v_proj: 576 inputs, 192 outputs\)") as err:
        build_peft_config(method, base_model, LoraSettings(r=100000), total_steps=40)
    assert "r <= 192" in err.value.fix
    with pytest.raises(CourseError, match=r"r=193 .*\(k_proj: 576 inputs, 192 outputs\)"):
        build_peft_config(method, base_model, LoraSettings(r=193, target_modules="all-linear"), total_steps=40)
    assert build_peft_config(method, base_model, LoraSettings(r=192), total_steps=40) is not None


def test_the_rank_check_reads_gpt2_conv1d_as_inputs_by_outputs():
    model = tiny_model("gpt2")  # c_fc: Conv1D with a 64 x 256 weight (inputs x outputs)
    with pytest.raises(CourseError, match=r"r=65 .*\(c_fc: 64 inputs, 256 outputs\)"):
        build_peft_config("lora", model, LoraSettings(r=65, target_modules=["c_fc"]))
    assert build_peft_config("lora", model, LoraSettings(r=64, target_modules=["c_fc"])).r == 64
