"""ftcourse.course.comparison: parameter counts on the real model's shapes, configs, and a real train-and-score run."""

from __future__ import annotations

import pytest
import torch
from peft import get_peft_model

from ftcourse.course.bundled import INTENT_LABELS, intent_records
from ftcourse.course.comparison import accuracy_with_interval, classification_accuracy, classification_correct, compare_methods, config_summary, lora_parameter_table, peft_parameter_count
from ftcourse.generation import classify
from ftcourse.memory import MB, footprint_bytes
from ftcourse.models import count_parameters
from ftcourse.peft_methods import NUM_VIRTUAL_TOKENS, build_peft_config
from ftcourse.profiles import get_profile


def _lora_by_hand(model: torch.nn.Module, r: int, names: set[str] | None) -> int:
    """r·(in + out) for every matching linear layer of the real model (all but the LM head when ``names`` is None)."""
    return sum(
        r * (m.in_features + m.out_features)
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and name != "lm_head" and (names is None or name.rsplit(".", 1)[-1] in names)
    )


def test_lora_table_matches_the_layer_shapes(base_model):
    rows = lora_parameter_table(base_model, ranks=(4, 16))
    table = {(r["target_modules"], r["r"]): r["trainable"] for r in rows}
    assert len(rows) == 6
    assert table[("q, v", 16)] == 921_600  # 30 layers × 16 × ((576+576) + (576+192))
    assert table[("q, v", 4)] == _lora_by_hand(base_model, 4, {"q_proj", "v_proj"})
    assert table[("q, k, v, o", 16)] == _lora_by_hand(base_model, 16, {"q_proj", "k_proj", "v_proj", "o_proj"})
    assert table[("all-linear", 16)] == _lora_by_hand(base_model, 16, None) == 4 * table[("all-linear", 4)]
    assert all(0 < r["trainable_percent"] < 10 for r in rows)


def test_weightless_count_equals_wrapping_the_real_model(fresh_model):
    counted = peft_parameter_count(fresh_model, "ia3")
    real = count_parameters(get_peft_model(fresh_model, build_peft_config("ia3", fresh_model)))
    assert counted == real
    assert peft_parameter_count(fresh_model, "full")["trainable"] == 134_515_008


def test_config_summary_shows_what_each_method_sets(base_model):
    assert config_summary(build_peft_config("prompt_tuning", base_model)) == {"num_virtual_tokens": NUM_VIRTUAL_TOKENS}
    lora = config_summary(build_peft_config("lora", base_model))
    assert lora["r"] == 16 and lora["target_modules"] == ["q_proj", "v_proj"]
    assert "feedforward_modules" in config_summary(build_peft_config("ia3", base_model))


def test_classification_accuracy_matches_the_predictions(base_model, tokenizer):
    records = intent_records(get_profile("smoke", n_eval=4))["test"]
    predictions = classify(base_model, tokenizer, [r["messages"][:-1] for r in records], INTENT_LABELS, progress=False)
    expected = sum(p == r["label"] for p, r in zip(predictions, records)) / len(records)
    assert classification_accuracy(base_model, tokenizer, records, progress=False) == pytest.approx(expected)
    assert classification_correct(base_model, tokenizer, records, progress=False) == [p == r["label"] for p, r in zip(predictions, records)]


def test_accuracy_with_interval_reads_the_wilson_interval():
    assert accuracy_with_interval([True] * 8 + [False] * 2) == "0.80 (95% CI 0.49–0.94)"  # Wilson (8 of 10): 0.4902–0.9433
    assert accuracy_with_interval([False] * 20) == "0.00 (95% CI 0.00–0.16)"


def test_compare_methods_trains_each_on_the_same_budget(tmp_path, base_model):
    profile = get_profile("smoke", max_steps=1, n_train=4, n_eval=2, batch_size=2)
    data = intent_records(profile)
    rows = compare_methods(["lora", "prompt_tuning"], data["train"], data["test"], profile,
                           run_prefix="test-compare", output_root=tmp_path, progress=False, gradient_checkpointing=False)
    by_name = {r["name"]: r for r in rows}
    assert list(by_name) == ["lora", "prompt_tuning"]
    assert by_name["lora"]["trainable_parameters"] == peft_parameter_count(base_model, "lora")["trainable"] == 921_600
    assert by_name["prompt_tuning"]["trainable_parameters"] == NUM_VIRTUAL_TOKENS * 576
    for row in rows:
        assert 0 <= row["accuracy"] <= 1 and row["train_seconds"] > 0 and row["train_loss"] > 0
        assert row["gradient_checkpointing"] is False  # as asked
        assert len(row["correct"]) == len(data["test"]) and row["accuracy"] == round(sum(row["correct"]) / len(data["test"]), 4)
        assert row["weights_mb"] == pytest.approx(footprint_bytes(base_model) / MB, abs=0.1)
        # mostly activations: one forward + backward at 4 × 100 tokens adds ~600 MB on this model
        assert 100 < row["training_mb"] < 3000
    assert (tmp_path / "test-compare-lora-smoke" / "adapter_config.json").is_file()
    assert (tmp_path / "test-compare-prompt_tuning-smoke" / "adapter_config.json").is_file()


def test_comparison_chart_draws_one_panel_per_column_and_skips_missing_values():
    import matplotlib.pyplot as plt

    from ftcourse.course.plots import comparison_chart

    rows = [{"name": "a", "speed": 1.0, "accuracy": None}, {"name": "b", "speed": 2.0, "accuracy": 0.5}]
    axes = comparison_chart(rows, {"speed": ("Speed", "{:.1f}"), "accuracy": ("Accuracy", "{:.2f}")}, log=())
    assert [ax.get_title() for ax in axes] == ["Speed", "Accuracy"]
    assert [len(ax.patches) for ax in axes] == [2, 1]
    plt.close(axes[0].figure)
