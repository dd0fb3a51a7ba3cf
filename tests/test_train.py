"""Training: every method on the embedded model, resume, reuse, tiny architectures, the fine-tune script (issue 4)."""

from __future__ import annotations

import copy
import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from script_modules import load_script
from tiny import save_tiny, tiny_model
from transformers import TrainerCallback

import ftcourse.train as train
from ftcourse import paths
from ftcourse.configs import LoraSettings, TrainingSettings, load_settings
from ftcourse.course.bundled import intent_records
from ftcourse.errors import CourseError
from ftcourse.models import load_model
from ftcourse.peft_methods import METHODS
from ftcourse.preparation import prepare_dataset
from ftcourse.profiles import get_profile
from ftcourse.runs import RUN_RECORD, latest_run, load_run, run_fingerprint
from ftcourse.tokenization import collate, prompt_ids, tokenize_records
from ftcourse.train import completion_loss, fine_tune, settings_from_profile, supports_fast_loss

SMALL = TrainingSettings(max_steps=2, batch_size=2, gradient_accumulation_steps=1, logging_steps=1, warmup_ratio=0.0)
SCRIPT = paths.project_root() / "scripts" / "fine_tune_model.py"


@pytest.fixture(scope="module")
def records():
    train_records = intent_records(get_profile("smoke"))["train"]
    return sorted(train_records, key=lambda r: len(r["messages"][1]["content"]))[:8]  # the shortest: fast steps


@pytest.fixture(scope="module")
def alpaca_tokenizer(tokenizer):
    """The embedded tokenizer without its chat template: prompts use the original course's Alpaca format."""
    plain = copy.deepcopy(tokenizer)
    plain.chat_template = None
    return plain


def run(records, tmp_path, name="run", **kwargs):
    kwargs.setdefault("settings", SMALL)
    return fine_tune(records, progress=False, run_name=name, output_root=tmp_path / "runs", checkpoint_root=tmp_path / "ckpt", **kwargs)


@torch.no_grad()
def last_logits(model, tokenizer, records) -> torch.Tensor:
    """Next-token logits after each record's prompt (prompt-learning models prepend virtual tokens: take the last position)."""
    model.eval()
    device = next(model.parameters()).device
    prompts = [prompt_ids(tokenizer, r["messages"][:-1]) for r in records]
    return torch.stack([model(input_ids=torch.tensor([ids], device=device)).logits[0, -1].float().cpu() for ids in prompts])


# ---------------------------------------------------------------- every method, end to end


#: One method of each family trains the real embedded model (low-rank, 4-bit, scaling vectors, virtual tokens); the
#: others show the same wiring (save, reload, same logits) on a tiny Llama with the embedded tokenizer, in a fraction of the time.
ON_THE_EMBEDDED_MODEL = {"lora", "qlora", "ia3", "prompt_tuning"}


@pytest.fixture(scope="module")
def tiny_llama(tokenizer, tmp_path_factory):
    return str(save_tiny("llama", tmp_path_factory.mktemp("tiny") / "llama", tokenizer, vocab_size=len(tokenizer)))


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_trains_saves_and_reloads(method, records, tokenizer, base_model, tiny_llama, tmp_path):
    real = method in ON_THE_EMBEDDED_MODEL
    result = run(records[:4], tmp_path, method, method=method, **({} if real else {"model": tiny_llama}))
    assert result.method == method and result.metrics["steps"] == 2
    assert math.isfinite(result.metrics["train_loss"])
    assert result.metrics["checks"]["parameters update"] is True
    assert 0 < result.metrics["trainable_parameters"] <= result.metrics["total_parameters"]
    weights = "model.safetensors" if method == "full" else "adapter_model.safetensors"
    assert (result.run_dir / weights).is_file() and (result.run_dir / "tokenizer.json").is_file()
    assert json.loads((result.run_dir / "metrics.json").read_text()) == result.metrics
    assert load_settings(TrainingSettings, result.run_dir / "training_config.json") == SMALL
    assert (result.run_dir / "lora_config.json").is_file() == METHODS[method].low_rank
    reloaded = load_run(result.run_dir)
    assert reloaded.method == method and reloaded.metrics == result.metrics and reloaded.history == result.history
    probe = records[4:6]
    trained = last_logits(result.model, tokenizer, probe)
    assert torch.allclose(last_logits(reloaded.model, reloaded.tokenizer, probe), trained, atol=1e-4)
    base = base_model if real else load_model(tiny_llama)
    # the tiny random model's logits are small, and two steps move them little (AdaLoRA's singular values start at 0)
    assert not torch.allclose(last_logits(base, tokenizer, probe), trained, atol=1e-3 if real else 1e-6)


def test_lora_adapter_names_its_base_as_the_user_did(records, tmp_path):
    result = run(records[:2], tmp_path, settings=TrainingSettings(max_steps=1, batch_size=2))
    config = json.loads((result.run_dir / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "embedded" and config["r"] == 16
    record = json.loads((result.run_dir / RUN_RECORD).read_text())
    assert record["base_model"] == "embedded" and record["training"]["max_steps"] == 1 and record["finished_at"] > 0


# ---------------------------------------------------------------- the loss


@pytest.mark.parametrize("arch", ["llama", "qwen2", "opt", "gpt2", "gpt_neox"])
def test_completion_loss_equals_the_models_own_loss(arch, tokenizer, records):
    model = tiny_model(arch, vocab_size=len(tokenizer)).eval()  # no dropout: both losses see the same network
    batch = collate(tokenize_records(tokenizer, records[:3], 256), tokenizer.pad_token_id)
    assert supports_fast_loss(model)
    with torch.no_grad():
        assert torch.allclose(completion_loss(model, batch), model(**batch).loss, rtol=1e-5)
        assert torch.allclose(completion_loss(model, batch, num_items_in_batch=100), model(**batch, num_items_in_batch=100).loss, rtol=1e-5)


class AttentionSeen(TrainerCallback):
    """Records the attention implementation the model trains with."""

    def __init__(self):
        self.seen = set()

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        self.seen.add(model.get_base_model().config._attn_implementation)


@pytest.mark.parametrize("max_seq_length, expected", [(train.EAGER_ATTENTION_MAX_LENGTH, "eager"), (train.EAGER_ATTENTION_MAX_LENGTH + 1, "sdpa")])
def test_cpu_training_uses_eager_attention_for_short_sequences_only(max_seq_length, expected, records, tokenizer, tmp_path):
    model = tiny_model("llama", vocab_size=len(tokenizer))
    model.set_attn_implementation("sdpa")
    seen = AttentionSeen()
    result = run(records[:4], tmp_path, model=model, tokenizer=tokenizer, callbacks=[seen], preflight=False,
                 settings=SMALL.replace(max_seq_length=max_seq_length))
    assert seen.seen == {expected}
    assert result.model.get_base_model().config._attn_implementation == "sdpa"  # restored after training


def test_eager_and_sdpa_attention_give_the_same_loss(tokenizer, records):
    model = tiny_model("llama", vocab_size=len(tokenizer)).eval()
    batch = collate(tokenize_records(tokenizer, records[:3], 256), tokenizer.pad_token_id)  # right-padded, different lengths
    losses = {}
    for impl in ("sdpa", "eager"):
        model.set_attn_implementation(impl)
        with torch.no_grad():
            losses[impl] = completion_loss(model, batch)
    assert torch.allclose(losses["sdpa"], losses["eager"], rtol=1e-5)


def test_completion_loss_on_the_embedded_model(base_model, tokenizer, records):
    batch = collate(tokenize_records(tokenizer, records[:3], 256), tokenizer.pad_token_id)
    with torch.no_grad():
        assert torch.allclose(completion_loss(base_model, batch), base_model(**batch).loss, rtol=1e-5)


def test_softcapped_models_fall_back_to_the_models_loss(tokenizer):
    model = tiny_model("llama", vocab_size=len(tokenizer))
    model.config.final_logit_softcapping = 30.0
    assert not supports_fast_loss(model)


class _PaddingOfBatches(TrainerCallback):
    """Padding of the batches the training dataloader yields (read once at the start of training)."""

    def on_train_begin(self, args, state, control, train_dataloader=None, **kwargs):
        self.padding = sum(int((batch["attention_mask"] == 0).sum()) for batch in train_dataloader)


def test_batches_are_length_grouped_and_seeded(tokenizer, tmp_path):
    """fine_tune asks transformers for length-grouped batches: less padding than random order, same order for a seed."""
    mixed = intent_records(get_profile("cpu"))["train"][:160]  # transformers groups within mega-batches of up to 50 batches
    settings = TrainingSettings(max_steps=1, batch_size=4, gradient_accumulation_steps=1, logging_steps=1, warmup_ratio=0.0)
    padding = {}
    for name, grouped in (("grouped", True), ("grouped-again", True), ("random", False)):
        seen = _PaddingOfBatches()
        run(mixed, tmp_path, name, model=tiny_model("llama", vocab_size=len(tokenizer)), tokenizer=tokenizer, settings=settings,
            group_by_length=grouped, preflight=False, callbacks=[seen])
        padding[name] = seen.padding
    assert padding["grouped"] == padding["grouped-again"]
    assert padding["grouped"] < padding["random"] / 2


# ---------------------------------------------------------------- resume and reuse


class Interrupt(TrainerCallback):
    """Simulates a crash in the middle of step ``at`` (after checkpoint-2 was written)."""

    def __init__(self, at: int):
        self.at = at

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.at:
            raise RuntimeError("simulated interruption")


class StepLog(TrainerCallback):
    def __init__(self):
        self.steps = []

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append(state.global_step)


def test_interrupted_run_resumes_to_the_same_weights(records, tokenizer, tmp_path, capsys):
    settings = TrainingSettings(max_steps=4, batch_size=2, gradient_accumulation_steps=1, save_steps=2, logging_steps=1, warmup_ratio=0.25)

    def attempt(name, **kwargs):  # LoRA dropout on: the resumed run must also restore the random state
        return run(records, tmp_path, name, model=tiny_model("llama", vocab_size=len(tokenizer)), tokenizer=tokenizer, settings=settings, **kwargs)

    straight = attempt("straight")
    with pytest.raises(RuntimeError, match="simulated interruption"):
        attempt("resumed", callbacks=[Interrupt(at=3)])
    assert sorted(p.name for p in (tmp_path / "ckpt" / "resumed").glob("checkpoint-*")) == ["checkpoint-2"]
    assert not (tmp_path / "runs" / "resumed").exists()
    assert "run again with resume=True" in capsys.readouterr().out
    steps = StepLog()
    resumed = attempt("resumed", resume=True, callbacks=[steps])
    assert "Resuming from" in capsys.readouterr().out and resumed.metrics["steps"] == 4
    assert steps.steps == [3, 4]  # only the steps after checkpoint-2 ran
    mine = {n: p for n, p in resumed.model.named_parameters() if p.requires_grad}
    theirs = {n: p for n, p in straight.model.named_parameters() if p.requires_grad}
    assert mine.keys() == theirs.keys() and len(mine) == 8  # 2 layers x (q_proj, v_proj) x (A, B)
    assert all(torch.equal(mine[n], theirs[n]) for n in mine), "resumed weights differ from the uninterrupted run"
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in straight.history]
    with pytest.raises(CourseError, match="to a run with different data or settings"):
        run(records[:6], tmp_path, "resumed", model=tiny_model("llama", vocab_size=len(tokenizer)), tokenizer=tokenizer, settings=settings, resume=True)


def test_reuse_loads_the_saved_run_when_nothing_changed(records, tokenizer, tmp_path, capsys):
    first = run(records[:2], tmp_path, "reuse", settings=TrainingSettings(max_steps=1, batch_size=2))
    capsys.readouterr()
    again = run(records[:2], tmp_path, "reuse", settings=TrainingSettings(max_steps=1, batch_size=2), reuse=True)
    assert "Reusing the saved run" in capsys.readouterr().out
    assert again.metrics == first.metrics
    assert torch.allclose(last_logits(again.model, tokenizer, records[4:5]), last_logits(first.model, tokenizer, records[4:5]), atol=1e-4)


def test_fingerprint_changes_with_what_determines_the_result(records):
    lora, settings = LoraSettings(), TrainingSettings()
    key = run_fingerprint("embedded", "lora", lora, settings, records, False, None)
    assert key == run_fingerprint("embedded", "lora", lora, settings, list(records), False, None)
    changed = [
        run_fingerprint("embedded", "dora", lora, settings, records, False, None),
        run_fingerprint("embedded", "lora", LoraSettings(r=8), settings, records, False, None),
        run_fingerprint("embedded", "lora", lora, TrainingSettings(seed=1), records, False, None),
        run_fingerprint("embedded", "lora", lora, settings, records[1:], False, None),
        run_fingerprint("other", "lora", lora, settings, records, False, None),
        run_fingerprint("embedded", "lora", lora, settings, records, False, None, group_by_length=False),
    ]
    assert key not in changed and len(set(changed)) == len(changed)


def test_refuses_to_overwrite_a_folder_it_did_not_write(records, tokenizer, tmp_path):
    (tmp_path / "runs" / "mine").mkdir(parents=True)
    (tmp_path / "runs" / "mine" / "notes.txt").write_text("my work")
    with pytest.raises(CourseError, match="not written by ftcourse"):
        run(records, tmp_path, "mine")
    (tmp_path / "ckpt" / "theirs").mkdir(parents=True)
    (tmp_path / "ckpt" / "theirs" / "notes.txt").write_text("my work")
    with pytest.raises(CourseError, match="does not hold ftcourse checkpoints"):
        run(records, tmp_path, "theirs", model=tiny_model("llama", vocab_size=len(tokenizer)), tokenizer=tokenizer)
    assert (tmp_path / "ckpt" / "theirs" / "notes.txt").read_text() == "my work"
    with pytest.raises(CourseError, match="share the folder"):
        fine_tune(records, run_name="same", output_root=tmp_path, checkpoint_root=tmp_path)


def test_latest_run_picks_the_most_recent(tmp_path):
    for name, finished in [("old", 1.0), ("new", 2.0), ("mid", 1.5)]:
        (tmp_path / name).mkdir()
        (tmp_path / name / RUN_RECORD).write_text(json.dumps({"finished_at": finished}))
    (tmp_path / "not-a-run").mkdir()
    assert latest_run(tmp_path) == tmp_path / "new"
    assert latest_run(tmp_path / "old") == tmp_path / "old"
    with pytest.raises(CourseError, match="holds no fine-tuned run"):
        latest_run(tmp_path / "not-a-run")


# ---------------------------------------------------------------- architectures


@pytest.mark.parametrize("arch", ["llama", "qwen2", "opt", "gpt2", "gpt_neox"])
def test_tiny_architectures_train_through_fine_tune(arch, tokenizer, alpaca_tokenizer, records, tmp_path):
    tok = alpaca_tokenizer if arch in ("gpt2", "gpt_neox") else tokenizer  # no chat template: the Alpaca prompt
    result = run(records, tmp_path, arch, model=tiny_model(arch, vocab_size=len(tokenizer)), tokenizer=tok,
                 lora=LoraSettings(r=4, target_modules="auto"), settings=replace_steps(3))
    assert math.isfinite(result.metrics["train_loss"]) and result.metrics["steps"] == 3
    assert result.metrics["checks"]["chat template"] and result.metrics["checks"]["parameters update"]
    reloaded = load_run(result.run_dir, model=tiny_model(arch, vocab_size=len(tokenizer)))
    assert reloaded.tokenizer.chat_template == tok.chat_template
    assert torch.allclose(last_logits(reloaded.model, tok, records[:2]), last_logits(result.model, tok, records[:2]), atol=1e-5)


def test_qlora_trains_a_loaded_4bit_model_already_used_for_inference(records, tokenizer, tmp_path):
    pytest.importorskip("bitsandbytes")
    from ftcourse.models import load_model

    model = load_model(str(save_tiny("llama", tmp_path / "tiny", tokenizer, vocab_size=len(tokenizer))), quantization="4bit")
    model.eval()
    with torch.no_grad():  # on AVX512-BF16 CPUs this repacks the 4-bit weights for a kernel without backward
        model(input_ids=torch.tensor([[1, 2, 3]]))
    result = run(records[:4], tmp_path, model=model, method="qlora", settings=replace_steps(2))
    assert result.metrics["checks"]["parameters update"] is True and math.isfinite(result.metrics["train_loss"])


def replace_steps(steps: int) -> TrainingSettings:
    return TrainingSettings(max_steps=steps, batch_size=2, gradient_accumulation_steps=1, logging_steps=1, warmup_ratio=0.0)


def test_training_runs_under_bf16_autocast_and_the_result_does_not(records, tokenizer, tmp_path):
    from ftcourse.hardware import detect_environment

    model = tiny_model("llama", vocab_size=len(tokenizer))
    seen = []
    model.model.layers[0].register_forward_hook(lambda module, args, out: seen.append((module.training, torch.is_autocast_enabled("cpu"))))
    result = run(records[:4], tmp_path, model=model, tokenizer=tokenizer, settings=replace_steps(2), eval_records=records[4:6])
    bf16 = detect_environment().bf16
    assert result.metrics["bf16"] == bf16
    assert seen == [(True, bf16), (True, bf16), (False, bf16)]  # two training steps, one evaluation batch
    seen.clear()
    last_logits(result.model, tokenizer, records[:1])
    assert seen == [(False, False)]  # the returned model runs as loaded, in full precision


def test_eval_steps_gives_a_validation_curve(records, tokenizer, tmp_path):
    settings = replace_steps(4)
    once = run(records[:4], tmp_path, "once", model=tiny_model("llama", vocab_size=len(tokenizer)), tokenizer=tokenizer, settings=settings, eval_records=records[4:6])
    every = run(records[:4], tmp_path, "every", model=tiny_model("llama", vocab_size=len(tokenizer)), tokenizer=tokenizer,
                settings=settings.replace(eval_steps=2), eval_records=records[4:6])
    assert [h["step"] for h in once.history if "eval_loss" in h] == [4]
    assert [h["step"] for h in every.history if "eval_loss" in h] == [2, 4]
    fingerprints = [run_fingerprint("embedded", "lora", LoraSettings(), s, records, False, None) for s in (settings, settings.replace(eval_steps=2))]
    assert fingerprints[0] != fingerprints[1]  # a saved run without the curve is not reused for one that asks for it


def test_unnamed_model_needs_a_tokenizer(records, tmp_path):
    with pytest.raises(CourseError, match="pass tokenizer="):
        run(records, tmp_path, model=tiny_model("llama"))


def test_tensorboard_logs_are_written(records, tokenizer, tmp_path):
    run(records[:2], tmp_path, "tb", model=tiny_model("llama", vocab_size=len(tokenizer)), tokenizer=tokenizer,
        settings=replace_steps(1), report_to="tensorboard")
    assert list((tmp_path / "ckpt" / "tb" / "runs").rglob("events.out.tfevents.*"))


def test_wandb_runs_offline_unless_the_user_set_a_mode(monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    if importlib.util.find_spec("wandb") is None:
        with pytest.raises(CourseError, match="pip install wandb"):
            train.resolve_report_to("wandb")
        monkeypatch.setattr(train, "find_spec", lambda name: object())  # pretend it is installed
    assert train.resolve_report_to("wandb") == "wandb" and os.environ["WANDB_MODE"] == "offline"
    monkeypatch.setenv("WANDB_MODE", "online")
    train.resolve_report_to("wandb")
    assert os.environ["WANDB_MODE"] == "online"
    with pytest.raises(CourseError, match="use one of: none, tensorboard, trackio, wandb"):
        train.resolve_report_to("mlflow")


def test_settings_from_profile_then_overrides():
    settings = settings_from_profile(get_profile("smoke"), learning_rate=1e-4, batch_size=None)
    assert (settings.max_steps, settings.batch_size, settings.learning_rate) == (4, 4, 1e-4)


# ---------------------------------------------------------------- scripts/fine_tune_model.py


ORIGINAL = ["--dataset_path", "data/processed/", "--output_dir", "models/fine_tuned/", "--peft_method", "lora", "--lora_r", "16",
            "--lora_alpha", "32", "--lora_dropout", "0.05", "--num_epochs", "3", "--batch_size", "4", "--gradient_accumulation_steps", "4"]


def test_original_command_offline_fails_cleanly():
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, str(SCRIPT), "--model_name_or_path", "facebook/opt-350m", *ORIGINAL],
                          cwd=paths.project_root(), env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert "error: Cannot load model 'facebook/opt-350m'" in done.stderr and "embedded" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_every_method_is_reachable_from_the_script():
    parser = load_script("fine_tune_model").build_parser()
    assert next(a for a in parser._actions if a.dest == "peft_method").choices == list(METHODS)
    for flag in ("--max_steps", "--profile", "--config", "--lora_config", "--learning_rate", "--target_modules", "--run_name", "--resume", "--report_to", "--seed"):
        assert flag in parser._option_string_actions


def test_flags_override_config_files_which_override_the_profile():
    script = load_script("fine_tune_model")
    args = script.build_parser().parse_args(["--profile", "smoke", "--config", "configs/training_config.json", "--batch_size", "2",
                                             "--lora_config", "configs/lora_config.json", "--lora_r", "8", "--target_modules", "all-linear"])
    profile, training, lora = script.resolve_settings(args)
    assert profile.name == "smoke"
    assert training.batch_size == 2  # flag (config file: 4, profile: 4)
    assert training.gradient_accumulation_steps == 4 and training.num_epochs == 3  # config file (profile: 1, 1)
    assert training.max_steps == 4 and training.learning_rate is None  # profile; the method's default
    assert (lora.r, lora.lora_alpha, lora.target_modules) == (8, 32, "all-linear")


def test_a_bad_config_value_names_the_file_and_key(tmp_path, capsys):
    bad = tmp_path / "training.json"
    bad.write_text('{"batch_size": "four"}')
    assert load_script("fine_tune_model").main(["--config", str(bad)]) == 2
    assert f"{bad}: batch_size must be int" in capsys.readouterr().err


@pytest.mark.parametrize("flags, message", [
    (["--learning_rate", "inf"], "learning_rate must be a finite number"), (["--lora_dropout", "nan"], "lora_dropout must be a finite number"),
    (["--lora_r", "0"], "r must be at least 1, got 0"), (["--target_modules", "q_proj", "all-linear"], None),
])
def test_a_bad_flag_is_one_clean_error_before_any_loading(capsys, flags, message):
    assert load_script("fine_tune_model").main(["--model_name_or_path", "no/such-model", *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.splitlines()) == 2 and "pydantic" not in err and "Traceback" not in err
    assert (message or "no/such-model") in err  # a valid flag gets as far as the model


def test_dataset_path_can_be_one_raw_file():
    train_records, validation, name, info = load_script("fine_tune_model").load_training_data("data/raw/support_intents.jsonl")
    assert name == "support_intents" and validation is None and len(train_records) == 1000
    assert info["format"] == "classification" and len(info["labels"]) == 10
    assert train_records[0]["messages"][-1] == {"role": "assistant", "content": train_records[0]["label"]}


def test_a_folder_without_train_jsonl_says_how_to_prepare_it(tmp_path, capsys):
    assert load_script("fine_tune_model").main(["--model_name_or_path", "embedded", "--dataset_path", str(tmp_path)]) == 2
    assert "prepare_dataset.py" in capsys.readouterr().err


def test_original_command_with_the_embedded_model(tmp_path, capsys):
    processed = tmp_path / "processed"
    prepare_dataset(paths.data_dir() / "raw" / "support_intents.jsonl", processed, "classification", splits_dir=tmp_path / "splits")
    argv = [a if a not in ("data/processed/", "models/fine_tuned/") else str(processed if a.startswith("data") else tmp_path / "out") for a in ORIGINAL]
    code = load_script("fine_tune_model").main(["--model_name_or_path", "embedded", *argv, "--profile", "smoke", "--max_steps", "1", "--no_progress",
                               "--checkpoint_dir", str(tmp_path / "ckpt")])
    out = capsys.readouterr().out
    assert code == 0
    saved = tmp_path / "out" / "lora-support_intents"
    assert f"Saved the fine-tuned run to: {saved}" in out and latest_run(tmp_path / "out") == saved
    record = json.loads((saved / RUN_RECORD).read_text())
    assert (record["lora"]["r"], record["lora"]["lora_alpha"], record["lora"]["lora_dropout"]) == (16, 32, 0.05)
    assert (record["training"]["batch_size"], record["training"]["gradient_accumulation_steps"], record["training"]["num_epochs"]) == (4, 4, 3)
    metrics = json.loads((saved / "metrics.json").read_text())
    assert metrics["steps"] == 1 and "eval_loss" in metrics and metrics["trainable_parameters"] == 921_600
    assert Path(load_run(saved).run_dir) == saved
    info = json.loads((saved / "dataset_info.json").read_text())  # the label set travels with the adapter
    assert info == json.loads((processed / "dataset_info.json").read_text())
