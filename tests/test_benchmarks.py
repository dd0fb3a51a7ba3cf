"""The benchmarks: tiny end-to-end runs (their numbers are not checked, only their shape and that none is impossible),
and their logic — the bf16 peak, MFU, the accuracy clock, the time-to-accuracy report — with injected clocks and
canned child results, so that no test depends on how fast or how busy the machine is."""

from __future__ import annotations

import itertools
import json
import sys
from types import SimpleNamespace

import pytest
from tiny import tiny_model
from transformers import TrainerControl

from ftcourse import paths
from ftcourse.course.bundled import intent_records
from ftcourse.profiles import get_profile

sys.path.insert(0, str(paths.project_root() / "benchmarks"))
import common  # noqa: E402
import intent_seeds  # noqa: E402
import time_to_accuracy  # noqa: E402
import train_speed  # noqa: E402


@pytest.fixture
def results_dir(tmp_path, monkeypatch):
    """Results go to a temporary folder; the committed results and README tables stay as they are."""
    readme = common.README.read_text(encoding="utf-8")
    monkeypatch.setattr(common, "RESULTS", tmp_path)
    yield tmp_path
    assert common.README.read_text(encoding="utf-8") == readme  # a results name without README markers leaves it alone


def test_train_speed_compares_both_setups(results_dir, capsys):
    # --no-mfu: the bf16 peak may not settle on a busy machine (its logic is tested below with a fake clock)
    assert train_speed.main(["--max-steps", "2", "--batch-size", "2", "--no-mfu", "--output", "check"]) == 0
    results = json.loads((results_dir / "check.json").read_text())
    assert set(results["runs"]) == {"course", "course-matched", "trl"} and results["bf16_peak_gflops"] is None
    for run in results["runs"].values():
        assert run["tokens_per_second"] > 0 and run["validation_loss"] > 0 and run["flops"] > 0 and run["mfu_percent"] is None
    assert results["speedup_tokens_per_second"] > 0 and results["matched_speedup_tokens_per_second"] > 0
    assert "Speed-up (non-pad input tokens per second, course / TRL)" in capsys.readouterr().out


def test_intent_seeds_names_its_results_by_the_lora_targets():
    assert intent_seeds.results_name("all-linear") == "intent_seeds_all_linear"
    assert intent_seeds.results_name(["q_proj", "v_proj"]) == "intent_seeds_q_v"


def test_intent_seeds_reports_each_seed_and_the_interval_of_the_mean(results_dir):
    assert intent_seeds.main(["--profile", "smoke", "--max-steps", "1", "--seeds", "3,4", "--target-modules", "q_proj,k_proj",
                              "--output", "check"]) == 0
    results = json.loads((results_dir / "check.json").read_text())
    assert [r["seed"] for r in results["runs"]] == [3, 4] and results["n_test"] == 20
    assert results["target_modules"] == ["q_proj", "k_proj"] and all(r["validation_loss"] > 0 for r in results["runs"])
    assert all(r["lora_modules"] == ["k_proj", "q_proj"] for r in results["runs"])  # what was trained, read from the model
    assert all(0 <= r["test_accuracy"] <= 1 and 0 <= r["validation_accuracy"] <= 1 for r in results["runs"])
    test = results["test_accuracy"]
    assert test["n"] == 2 and test["low"] <= test["mean"] <= test["high"]
    assert test["mean"] == pytest.approx(sum(r["test_accuracy"] for r in results["runs"]) / 2)


def _clock(increments):
    """A fake clock: each call advances it by the next increment."""
    time = itertools.accumulate(increments, initial=0.0)
    return lambda: next(time)


def test_bf16_peak_counts_at_least_one_matmul_and_stops_when_two_rounds_agree():
    # every clock call advances 0.5 s: each 1-s round runs 2 matmuls of 2 * 8^3 FLOPs in 1.5 s
    peak = common.measure_bf16_peak(seconds=1.0, size=8, clock=_clock(itertools.repeat(0.5)))
    assert peak == pytest.approx(2 * 8**3 * 2 / 1.5)
    slow = common.measure_bf16_peak(seconds=0.1, size=8, clock=_clock(itertools.repeat(100.0)))  # one matmul outlasts the round
    assert slow > 0


def test_bf16_peak_that_does_not_settle_fails_clearly():
    with pytest.raises(common.BenchmarkError, match="did not settle in 4 rounds .* run the benchmark again when it is idle"):
        common.measure_bf16_peak(seconds=1.0, size=8, rounds=4, clock=_clock(itertools.count(1.0)))  # each round slower


def test_an_impossible_mfu_is_left_out():
    assert common.mfu_percent(flops=30e9, seconds=1.0, peak=100e9) == 30.0
    assert common.mfu_percent(flops=3000e9, seconds=1.0, peak=100e9) is None
    assert common.mfu_percent(flops=1e9, seconds=1.0, peak=float("inf")) is None


def test_accuracy_clock_counts_training_time_and_stops_at_the_budget(tokenizer):
    now = [0.0]
    test = intent_records(get_profile("smoke"))["test"][:2]
    clock = time_to_accuracy.AccuracyClock(tokenizer, test, target=1.01, every=5, budget=15, clock=lambda: now[0])
    model = tiny_model("llama", vocab_size=len(tokenizer))
    state, control = SimpleNamespace(global_step=0, max_steps=100), TrainerControl()
    clock.on_train_begin(None, state, control, model=model)
    for step, seconds in ((1, 10.0), (2, 20.0)):  # the second step passes the 15-s budget
        now[0], state.global_step = seconds, step
        clock.on_step_end(None, state, control, model=model)
    assert [(p["step"], p["train_seconds"]) for p in clock.points] == [(0, 0.0), (2, 20.0)]
    assert control.should_training_stop and clock.reached is None and all(0 <= p["accuracy"] <= 1 for p in clock.points)


def _child(reached: bool, seconds: float) -> dict:
    points = [{"step": 0, "train_seconds": 0.0, "accuracy": 0.1}, {"step": 10, "train_seconds": seconds, "accuracy": 0.95 if reached else 0.5}]
    return {"reached": reached, "seconds_to_target": seconds if reached else None, "step_at_target": 10 if reached else None,
            "train_seconds": seconds, "final_accuracy": points[-1]["accuracy"], "points": points,
            "config": {"learning_rate": 1e-4}, "peak_memory_mb": 1.0}


@pytest.mark.parametrize(("course", "trl", "speedup", "text"), [
    (_child(False, 60), _child(False, 60), None, "did not reach 90% either"),
    (_child(True, 30), _child(False, 90), 3.0, "at least 3.0x faster"),
    (_child(True, 30), _child(True, 60), 2.0, "2.0x faster"),
])
def test_time_to_accuracy_reports_a_ratio_only_when_it_is_measured(course, trl, speedup, text, results_dir, monkeypatch, capsys):
    monkeypatch.setattr(common, "run_setups", lambda script, argv: {"course": course, "trl": trl})
    assert time_to_accuracy.main(["--output", "check"]) == 0
    results = json.loads((results_dir / "check.json").read_text())
    assert results["speedup"] == speedup and results["speedup_is_lower_bound"] == (course["reached"] and not trl["reached"])
    assert text in capsys.readouterr().out
