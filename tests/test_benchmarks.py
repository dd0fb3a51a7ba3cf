"""The benchmark scripts still run end to end (tiny step counts; their numbers are not checked here, only their shape)."""

from __future__ import annotations

import json
import sys

import pytest

from ftcourse import paths

sys.path.insert(0, str(paths.project_root() / "benchmarks"))
import common  # noqa: E402
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
    assert train_speed.main(["--max-steps", "2", "--batch-size", "2", "--output", "check"]) == 0
    results = json.loads((results_dir / "check.json").read_text())
    assert set(results["runs"]) == {"course", "trl"}
    for run in results["runs"].values():
        assert run["tokens_per_second"] > 0 and run["validation_loss"] > 0 and 0 < run["mfu_percent"] < 100
    assert results["speedup_tokens_per_second"] > 0
    assert "Speed-up (trained tokens per second, course / TRL)" in capsys.readouterr().out


def test_time_to_accuracy_reports_a_bound_when_the_target_is_not_reached(results_dir, capsys):
    argv = ["--max-steps", "2", "--eval-every", "2", "--n-test", "10", "--budget-seconds", "60", "--target", "1.01", "--output", "check"]
    assert time_to_accuracy.main(argv) == 0
    results = json.loads((results_dir / "check.json").read_text())
    for run in results["runs"].values():
        assert not run["reached"] and [p["step"] for p in run["points"]] == [0, 2]
        assert all(0 <= p["accuracy"] <= 1 for p in run["points"])
    assert results["speedup"] is None  # an unreachable target: no ratio is claimed
    assert "did not reach 101% either" in capsys.readouterr().out
