"""Experiment tracking: a tracked tiny run writes TensorBoard events, a trackio run and an offline wandb run, each read back; multi-seed intervals."""

from __future__ import annotations

import os
import statistics
from pathlib import Path

import pytest
from tiny import tiny_model

from ftcourse.configs import TrainingSettings
from ftcourse.course.bundled import intent_records
from ftcourse.errors import CourseError
from ftcourse.metrics import mean_interval
from ftcourse.profiles import get_profile
from ftcourse.tracking import tensorboard_scalars, trackio_logs, wandb_logs
from ftcourse.train import fine_tune

SETTINGS = TrainingSettings(max_steps=2, batch_size=2, gradient_accumulation_steps=1, logging_steps=1, warmup_ratio=0.0, learning_rate=1e-3)


@pytest.fixture(scope="module")
def records():
    train = intent_records(get_profile("smoke"))["train"]
    return sorted(train, key=lambda r: len(r["messages"][1]["content"]))[:6]


def tracked_run(records, tokenizer, tmp_path, report_to: str, name: str):
    return fine_tune(records[:4], model=tiny_model("llama", vocab_size=len(tokenizer)), tokenizer=tokenizer, settings=SETTINGS,
                     eval_records=records[4:], run_name=name, report_to=report_to, progress=False,
                     output_root=tmp_path / "runs", checkpoint_root=tmp_path / "ckpt")


def test_tensorboard_run_logs_loss_learning_rate_eval_and_settings(records, tokenizer, tmp_path):
    result = tracked_run(records, tokenizer, tmp_path, "tensorboard", "tb")
    scalars = tensorboard_scalars(tmp_path / "ckpt" / "tb" / "runs")
    assert [step for step, _ in scalars["train/loss"]] == [1, 2]
    assert scalars["train/learning_rate"][0][1] == pytest.approx(1e-3)
    assert scalars["eval/loss"] == [(2, pytest.approx(result.metrics["eval_loss"], abs=1e-4))]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folder = next((tmp_path / "ckpt" / "tb" / "runs").rglob("events.out.tfevents.*")).parent
    events = EventAccumulator(str(folder))
    events.Reload()
    assert "args/text_summary" in events.Tags()["tensors"]  # the run's training arguments
    with pytest.raises(CourseError, match="No TensorBoard event files"):
        tensorboard_scalars(tmp_path / "runs")


def test_trackio_run_is_logged_locally(records, tokenizer, tmp_path):
    """Logged under $TRACKIO_DIR (``tests/conftest.py`` sets it before trackio is first imported: it reads it only then)."""
    result = tracked_run(records, tokenizer, tmp_path, "trackio", "tr")
    assert list(Path(os.environ["TRACKIO_DIR"]).glob("ftcourse*.db"))
    run = trackio_logs("tr")
    losses = [row["train/loss"] for row in run["logs"] if "train/loss" in row]
    assert len(losses) == 2 and any(row.get("train/learning_rate") == pytest.approx(1e-3) for row in run["logs"])
    assert any(row.get("eval/loss") == pytest.approx(result.metrics["eval_loss"], abs=1e-4) for row in run["logs"])
    assert run["config"]["learning_rate"] == pytest.approx(1e-3) and run["config"]["seed"] == SETTINGS.seed
    with pytest.raises(CourseError, match="No trackio run"):
        trackio_logs("never-ran")


def test_wandb_run_is_written_offline_and_read_back(records, tokenizer, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    for name in ("WANDB_MODE", "WANDB_PROJECT", "WANDB_ERROR_REPORTING"):
        monkeypatch.delenv(name, raising=False)
    result = tracked_run(records, tokenizer, tmp_path, "wandb", "wb")
    assert os.environ["WANDB_MODE"] == "offline"
    import wandb

    assert wandb.run is None  # fine_tune closed its run: the next one gets its own
    run = wandb_logs("wb")
    assert run["folder"].parent == tmp_path / "wandb" and run["folder"].name.startswith("offline-run-")
    losses = [(row["train/global_step"], row["train/loss"]) for row in run["logs"] if "train/loss" in row]
    assert losses == [(h["step"], pytest.approx(h["loss"])) for h in result.history if "loss" in h] and len(losses) == 2
    assert any(row.get("train/learning_rate") == pytest.approx(1e-3) for row in run["logs"])
    assert run["summary"]["eval/loss"] == pytest.approx(result.metrics["eval_loss"], abs=1e-4)
    assert run["config"]["learning_rate"] == pytest.approx(1e-3) and run["config"]["seed"] == SETTINGS.seed
    again = tracked_run(records, tokenizer, tmp_path, "wandb", "wb2")  # a second run in the same process: its own run file
    assert len(list((tmp_path / "wandb").glob("offline-run-*"))) == 2
    assert len([row for row in wandb_logs("wb2")["logs"] if "train/loss" in row]) == len(again.losses) == 2
    with pytest.raises(CourseError, match="No offline wandb run 'never-ran'"):
        wandb_logs("never-ran")


def test_mean_interval_uses_students_t():
    values = [0.8, 0.9, 0.85]
    out = mean_interval(values)
    half = 4.303 * statistics.stdev(values) / 3 ** 0.5
    assert out["mean"] == pytest.approx(0.85) and out["std"] == pytest.approx(statistics.stdev(values))
    assert (out["low"], out["high"]) == (pytest.approx(0.85 - half), pytest.approx(0.85 + half))
    with pytest.raises(CourseError, match="at least 2 values"):
        mean_interval([0.9])
