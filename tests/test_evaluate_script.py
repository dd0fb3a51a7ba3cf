"""scripts/evaluate_model.py (issue 5): the original command, any course-format file, JSON metrics, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from script_modules import load_script

from ftcourse import paths
from ftcourse.configs import TrainingSettings
from ftcourse.course import bundled
from ftcourse.course.bundled import INTENT_LABELS
from ftcourse.course.lessons import INSTRUCTION_LORA, INTENT_LORA
from ftcourse.preparation import prepare_dataset
from ftcourse.profiles import get_profile
from ftcourse.runs import RUN_RECORD
from ftcourse.train import fine_tune

ROOT = paths.project_root()
SCRIPT = ROOT / "scripts" / "evaluate_model.py"
SMOKE = get_profile("smoke")
TINY_RUN = TrainingSettings(max_steps=2, batch_size=4, gradient_accumulation_steps=1, logging_steps=1)



@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A folder of two runs, as scripts/fine_tune_model.py writes them; the intent run is the most recent."""
    root = tmp_path_factory.mktemp("fine_tuned")
    checkpoints = tmp_path_factory.mktemp("checkpoints")
    made = {}
    for name, records, lora in (("instruction", bundled.instruction_records(SMOKE)["train"][:8], INSTRUCTION_LORA),
                                ("intent", bundled.intent_records(SMOKE)["train"][:8], INTENT_LORA)):
        result = fine_tune(records, model="embedded", lora=lora, settings=TINY_RUN, run_name=f"{name}-lora",
                           output_root=root, checkpoint_root=checkpoints, progress=False)
        made[name] = result.run_dir
        del result
    old = (made["intent"] / RUN_RECORD).stat().st_mtime - 60
    os.utime(made["instruction"] / RUN_RECORD, (old, old))
    return root, made


@pytest.fixture(scope="module")
def processed(tmp_path_factory):
    out = tmp_path_factory.mktemp("processed")
    prepare_dataset(ROOT / "data" / "raw" / "support_intents.jsonl", out, "classification", splits_dir=out / "splits")
    return out


def test_original_command_on_a_folder_of_runs(runs, processed):
    root, made = runs
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--model_path", str(root), "--test_dataset", str(processed / "test.jsonl"),
         "--metrics", "accuracy", "f1", "--max_examples", "6", "--no_progress"],
        capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert f"Using the most recently finished run in {root}: intent-lora (of 2 runs there)" in out
    assert f"10 labels, from {processed / 'dataset_info.json'}" in out
    assert "classification/accuracy" in out and "classification/f1" in out
    report = json.loads((made["intent"] / "evaluation_test.json").read_text())
    assert report["ftcourse_report"] == "evaluation" and report["tasks"]["classification"]["n"] == 6
    assert set(report["tasks"]["classification"]["metrics"]) == {"accuracy", "f1", "per_label"}
    assert (made["intent"] / "evaluation_test.md").read_text().count("| classification/") == 2


def test_unseen_raw_file_against_the_base(runs, tmp_path, capsys):
    _, made = runs
    code = load_script("evaluate_model").main(["--model_path", str(made["intent"]), "--test_dataset", str(ROOT / "data" / "raw" / "support_intents_unseen.jsonl"),
                           "--metrics", "accuracy", "f1", "--max_examples", "4", "--compare_base", "--report_dir", str(tmp_path), "--no_progress"])
    out = capsys.readouterr().out
    assert code == 0
    assert "(4 records); 10 labels" in out and "classification/accuracy" in out and "change" in out
    report = json.loads((tmp_path / "evaluation_support_intents_unseen.json").read_text())
    assert report["ftcourse_report"] == "comparison"
    assert report["base"]["tasks"]["classification"]["labels"] == list(INTENT_LABELS)
    assert [row["metric"] for row in report["comparison"]] == ["classification/accuracy", "classification/f1"]


def test_instruction_adapter_reports_json_extraction_metrics(runs, tmp_path, capsys):
    _, made = runs
    raw = [json.loads(line) for line in (ROOT / "data" / "raw" / "support_instructions.jsonl").read_text().splitlines()]
    test_file = tmp_path / "extract.jsonl"
    test_file.write_text("".join(json.dumps(r) + "\n" for r in raw if r["task"] == "extract"))
    code = load_script("evaluate_model").main(["--model_path", str(made["instruction"]), "--test_dataset", str(test_file), "--metrics", "valid_json", "field_accuracy",
                           "--max_examples", "3", "--report_dir", str(tmp_path), "--no_progress"])
    out = capsys.readouterr().out
    assert code == 0
    for key in ("extract/valid_json", "extract/field_accuracy.intent", "extract/field_accuracy.order_id",
                "extract/field_accuracy.product", "extract/all_fields"):
        assert key in out


@pytest.mark.parametrize(("args", "message"), [
    (["--model_path", "embedded", "--metrics", "accuracy", "bleu"], "Unknown metric 'bleu'"),
    (["--model_path", "embedded", "--metrics", "rouge"], "does not apply"),
    (["--model_path", "{empty}"], "holds no model, adapter or saved runs"),
])
def test_problems_are_errors_with_exit_code_2(args, message, tmp_path, capsys):
    args = [a.replace("{empty}", str(tmp_path)) for a in args]
    code = load_script("evaluate_model").main([*args, "--test_dataset", str(ROOT / "data" / "raw" / "support_intents_unseen.jsonl"), "--max_examples", "1", "--no_progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and message in err
    if "bleu" in message:
        assert "accuracy, f1, precision, recall" in err
