"""Lesson 12: the preference pairs (generator output, splits, rules), and the mechanisms by hand against TRL on a tiny
real model — DPO's loss against ``DPOTrainer.compute_loss``, GRPO's group advantages against ``GRPOTrainer``'s."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from datasets import Dataset
from peft import LoraConfig

from ftcourse import paths
from ftcourse.course import bundled
from ftcourse.profiles import get_profile
from tests.tiny import tiny_model

GENERATOR = paths.data_dir() / "tools" / "make_preferences.py"


def _generator():
    spec = importlib.util.spec_from_file_location("make_preferences", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def rows():
    return [json.loads(line) for line in bundled.raw_path("ticket_preferences.jsonl").read_text(encoding="utf-8").splitlines()]


def test_the_committed_file_is_what_the_generator_writes_and_keeps_its_rules():
    done = subprocess.run([sys.executable, str(GENERATOR), "--check"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_sizes_two_different_defects_per_message_and_chosen_is_the_source_ticket(rows):
    assert len(rows) >= 200 and Counter(r["split"] for r in rows) == {"train": 400, "validation": 50, "test": 50}
    by_message = Counter(r["source_line"] for r in rows)
    assert set(by_message.values()) == {2} and len(by_message) == 250
    assert all(len({r["defect"] for r in rows if r["source_line"] == line}) == 2 for line in by_message)
    assert all(r["chosen"] != r["rejected"] for r in rows)
    source = [json.loads(line) for line in bundled.raw_path("support_instructions.jsonl").read_text(encoding="utf-8").splitlines()]
    assert all(r["chosen"] == source[r["source_line"] - 1]["output"] and r["input"] == source[r["source_line"] - 1]["input"] for r in rows)


def test_no_message_leaks_across_splits_and_the_splits_are_lesson_02s(rows):
    splits_of = {}
    for r in rows:
        splits_of.setdefault(r["input"], set()).add(r["split"])
    assert all(len(s) == 1 for s in splits_of.values())
    instruction = bundled.instruction_records(get_profile("cpu"))
    for split in ("train", "validation", "test"):
        extract = {r["messages"][1]["content"] for r in instruction[split] if r["task"] == "extract"}
        assert {m for m, s in splits_of.items() if s == {split}} == extract


def test_every_committed_pair_keeps_its_rule_and_broken_pairs_are_caught(rows):
    check_pair = _generator().check_pair
    assert all(check_pair(r) == [] for r in rows)
    chosen = '{"intent":"order_status","order_id":"12345","product":"BrewMaster 300"}'
    base = {"input": "Order 12345 (and my old order 67890): where is the BrewMaster 300? I also like the Aria vase.",
            "chosen": chosen, "source_line": 0}
    broken = {
        "equal": {**base, "defect": "wrong_intent", "rejected": chosen},
        "id from the message": {**base, "defect": "invented_order_id", "rejected": chosen.replace("12345", "67890")},
        "product from the message": {**base, "defect": "wrong_product", "rejected": chosen.replace("BrewMaster 300", "Aria vase")},
        "two fields changed": {**base, "defect": "wrong_intent", "rejected": chosen.replace("order_status", "cancel_order").replace("12345", "1")},
        "not an intent": {**base, "defect": "wrong_intent", "rejected": chosen.replace("order_status", "shipping")},
        "still valid JSON": {**base, "defect": "malformed_json", "rejected": chosen.replace(":", ": ")},
        "prose without the ticket": {**base, "defect": "chatty", "rejected": "Sure! " + chosen.replace("intent", "topic")},
        "dropped the intent": {**base, "defect": "dropped_field", "rejected": chosen.replace('"order_status"', "null")},
    }
    missed = [name for name, pair in broken.items() if not check_pair(pair)]
    assert not missed, missed


def test_preference_records_are_trl_conversational_pairs_with_lesson_02s_prompt():
    pairs = bundled.preference_records()
    smoke = bundled.preference_records(get_profile("smoke"))
    assert {k: len(v) for k, v in smoke.items()} == {"train": 32, "validation": 20, "test": 20}
    pair = pairs["test"][0]
    assert [m["role"] for m in pair["prompt"]] == ["system", "user"] and pair["chosen"][0]["role"] == "assistant"
    extract = [r for r in bundled.instruction_records(get_profile("cpu"))["test"] if r["task"] == "extract"]
    assert any(r["messages"][:2] == pair["prompt"] and r["messages"][2]["content"] == pair["chosen"][0]["content"] for r in extract)


def _cpu_args(**extra):
    return dict(use_cpu=True, bf16=False, activation_checkpointing=False, report_to="none", save_strategy="no", logging_steps=1, seed=0, **extra)


def _summed_logps(model, batch):
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].float()
    token = logits.log_softmax(-1).gather(-1, batch["input_ids"][:, 1:].unsqueeze(-1)).squeeze(-1)
    return (token * batch["completion_mask"][:, 1:]).sum(-1)


@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_dpo_loss_by_hand_equals_dpo_trainers_on_a_tiny_model(tmp_path, tokenizer, beta):
    from trl import DPOConfig, DPOTrainer

    data = Dataset.from_list([{k: p[k] for k in ("prompt", "chosen", "rejected")} for p in bundled.preference_records()["train"][:8]])
    config = DPOConfig(output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=2, learning_rate=5e-2, beta=beta, **_cpu_args())
    lora = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = DPOTrainer(model=tiny_model("llama", vocab_size=len(tokenizer)), args=config, train_dataset=data, processing_class=tokenizer, peft_config=lora)
    trainer.train()  # two steps at a high rate: the adapter is no longer zero, so the loss is not log 2
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    model = trainer.model.eval()
    with torch.no_grad():
        policy_c, policy_r = _summed_logps(model, batch).chunk(2)
        with model.disable_adapter():
            ref_c, ref_r = _summed_logps(model, batch).chunk(2)
        by_hand = -F.logsigmoid(beta * ((policy_c - ref_c) - (policy_r - ref_r))).mean()
        by_trl = trainer.compute_loss(model, batch)
    assert abs(by_hand.item() - 0.6931472) > 1e-3
    assert torch.allclose(by_hand, by_trl, atol=1e-5), (by_hand, by_trl)


def _grpo(tmp_path, tokenizer, reward, steps=1):
    from trl import GRPOConfig, GRPOTrainer

    prompts = Dataset.from_list([{"prompt": p["prompt"]} for p in bundled.preference_records()["train"][:8:2]])
    config = GRPOConfig(output_dir=str(tmp_path), max_steps=steps, per_device_train_batch_size=8, num_generations=4, max_completion_length=6,
                        learning_rate=1e-2, **_cpu_args())
    lora = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = GRPOTrainer(model=tiny_model("llama", vocab_size=len(tokenizer)), reward_funcs=reward, args=config, train_dataset=prompts,
                          processing_class=tokenizer, peft_config=lora)
    trainer.train()
    return trainer


def test_group_advantages_by_hand_equal_grpo_trainers(tmp_path, tokenizer):
    def reward(completions, **kwargs):  # differs within each group of 4, and between groups
        return [float(len(c[0]["content"]) % 5) for c in completions]

    trainer = _grpo(tmp_path, tokenizer, reward)
    rewards = torch.tensor(trainer._logs["rewards"]["reward"])
    groups = rewards.view(-1, 4)
    by_hand = ((groups - groups.mean(1, keepdim=True)) / (groups.std(1, keepdim=True) + 1e-4)).flatten()
    assert len(rewards) == 8 and bool((groups.std(1) > 0).any())
    assert torch.allclose(by_hand, torch.tensor(trainer._logs["advantages"]), atol=1e-5)
    batch_normalised = (rewards - rewards.mean()) / (rewards.std() + 1e-4)
    assert not torch.allclose(batch_normalised, torch.tensor(trainer._logs["advantages"]), atol=1e-3)


def test_a_group_whose_samples_all_score_the_same_gives_no_gradient(tmp_path, tokenizer):
    trainer = _grpo(tmp_path, tokenizer, lambda completions, **kwargs: [0.0] * len(completions), steps=2)
    logs = [h for h in trainer.state.log_history if "reward" in h]
    assert [h["frac_reward_zero_std"] for h in logs] == [1.0, 1.0]
    assert all(h["loss"] == 0.0 and h["grad_norm"] == 0.0 for h in logs)
    assert all(not p.abs().sum() for n, p in trainer.model.named_parameters() if "lora_B" in n)  # B started at 0 and never moved
