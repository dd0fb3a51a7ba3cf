"""Training across processes on CPU (torchrun, gloo): one run, not N independent ones.

Each test launches 2 processes on the 2-core machine; budgets are steps, never seconds.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import torch
from tiny import save_tiny

from ftcourse.distributed import check_launch, launch
from ftcourse.errors import CourseError
from ftcourse.runs import load_run

ROOT = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).resolve().parent / "distributed_worker.py"


def _silent(line: str) -> None:
    pass


def _worker(out: Path, nproc: int, accumulation: int) -> list[dict]:
    out.mkdir()
    if nproc == 1:
        import subprocess

        subprocess.run([sys.executable, str(WORKER), str(out), str(accumulation)], check=True, capture_output=True)
    else:
        launch([str(WORKER), str(out), str(accumulation)], nproc=nproc, printer=_silent)
    return [torch.load(out / f"rank{r}.pt") for r in range(nproc)]


def test_two_process_ddp_equals_one_process_with_the_same_global_batch(tmp_path):
    # 1 process x batch 2 x 2 accumulation steps == 2 processes x batch 2: the same examples per optimizer step
    one = _worker(tmp_path / "one", 1, 2)
    two = _worker(tmp_path / "two", 2, 1)
    assert one[0]["metrics"]["world_size"] == 1 and one[0]["metrics"]["distributed_type"] == "NO"
    for rank in two:
        assert rank["metrics"]["world_size"] == 2 and rank["metrics"]["distributed_type"] == "MULTI_CPU"
    assert two[0]["metrics"]["trained_tokens"] == one[0]["metrics"]["trained_tokens"]  # each rank trained its own shard
    assert two[0]["metrics"]["train_loss"] == pytest.approx(one[0]["metrics"]["train_loss"], abs=1e-3)
    assert one[0]["lora"].keys() == two[0]["lora"].keys() and len(one[0]["lora"]) == 8
    for name, weight in one[0]["lora"].items():
        assert torch.equal(two[0]["lora"][name], two[1]["lora"][name]), name  # both ranks hold the same adapter
        torch.testing.assert_close(two[0]["lora"][name], weight, rtol=1e-4, atol=1e-5)
    assert any(w.abs().max() > 0 for n, w in one[0]["lora"].items() if "lora_B" in n)  # it trained


def test_fine_tune_script_under_torchrun_writes_one_run_that_loads(tmp_path):
    data = tmp_path / "train.jsonl"
    lines = (ROOT / "data" / "raw" / "support_intents.jsonl").read_text(encoding="utf-8").splitlines()[:8]
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    log = launch([str(ROOT / "scripts" / "fine_tune_model.py"), "--model_name_or_path", "embedded", "--dataset_path", str(data),
                  "--output_dir", str(tmp_path / "runs"), "--checkpoint_dir", str(tmp_path / "checkpoints"), "--max_steps", "2",
                  "--batch_size", "2", "--gradient_accumulation_steps", "1", "--max_seq_length", "256", "--no_progress"],
                 nproc=2, printer=_silent)
    text = "\n".join(log)
    assert "Process 0 of 2 (MULTI_CPU" in text and "Process 1 of 2 (MULTI_CPU" in text  # both ranks started and joined
    assert text.count("Pre-flight checks") == 1 and text.count("Saved the fine-tuned run") == 1  # rank 0 only
    runs = [p for p in (tmp_path / "runs").iterdir()]
    assert [p.name for p in runs] == ["lora-train"]
    result = load_run(runs[0])
    assert result.metrics["world_size"] == 2 and result.metrics["steps"] == 2
    assert sum("lora_" in n for n, _ in result.model.named_parameters()) > 0
    assert json.loads((runs[0] / "dataset_info.json").read_text())["labels"]


def test_fsdp2_gives_each_rank_half_of_the_lora_parameters(tmp_path, tokenizer):
    model = save_tiny("llama", tmp_path / "tiny", tokenizer, vocab_size=len(tokenizer))
    args = ["-m", "ftcourse.course.distributed_demo", "fsdp2", "--model", str(model), "--out", str(tmp_path), "--steps", "1"]
    launch(args, nproc=2, printer=_silent)
    record = json.loads((tmp_path / "fsdp2.json").read_text())
    assert record["world_size"] == 2 and record["sharded_layers"] == 2
    (mine0, whole), (mine1, whole1) = record["lora_values"]
    assert whole == whole1 > 0 and mine0 == mine1 == whole // 2


def test_a_rank_that_dies_natively_is_named_with_its_last_words(tmp_path):
    script = tmp_path / "dies.py"
    script.write_text("import os\nif os.environ['RANK'] == '1':\n    print('rank 1 about to abort', flush=True)\n"
                      "    os.abort()\nimport time\ntime.sleep(30)\n")
    with pytest.raises(CourseError) as error:
        launch([str(script)], nproc=2, printer=_silent)
    message = str(error.value)
    assert "rank 1 about to abort" in message and "SIGABRT" in message and re.search(r"root cause: rank\s+:\s+1 ", message)
    assert "Traceback" not in message and "elastic" not in message  # the ranks' words, not torchrun's own stack


def test_check_launch_names_the_silent_failures(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(CourseError, match="each one trains alone"):
        check_launch(1, "NO")
    assert check_launch(2, "MULTI_CPU") is None
    assert "FSDP was requested but the run is MULTI_CPU" in check_launch(2, "MULTI_CPU", fsdp_option=["full_shard"])
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    assert "FSDP" in check_launch(2, "MULTI_CPU") and check_launch(2, "FSDP") is None
