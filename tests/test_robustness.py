"""Nothing lost, nothing silent (issues 18 and 30): bad inputs fail early with a fix, outputs keep normal permissions, no run
trains into NaN or replaces another silently."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import namedtuple

import pytest
from safetensors.torch import load_file, save_file
from script_modules import load_script
from test_run_params import write_notebook
from tiny import save_tiny, tiny_model

from ftcourse import paths
from ftcourse.configs import TrainingSettings, load_settings
from ftcourse.course.bundled import intent_records
from ftcourse.data import DataError, read_dataset
from ftcourse.deploy import load_adapters
from ftcourse.errors import CourseError
from ftcourse.fileio import atomic_directory, atomic_write_text, ensure_writable_dir, file_lock, sha256_file
from ftcourse.models import load_model, load_tokenizer
from ftcourse.profiles import get_profile
from ftcourse.runs import is_run_dir, load_run
from ftcourse.tools.cli import main as ftcourse_main
from ftcourse.tools.runner import current_runs, run_many
from ftcourse.train import fine_tune

ROOT = paths.project_root()


# ---------------------------------------------------------------- files


def test_atomic_writes_keep_the_umasks_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        file = atomic_write_text(tmp_path / "shared.json", "{}")
        with atomic_directory(tmp_path / "run") as folder:
            (folder / "x").write_text("x")
    finally:
        os.umask(old)
    assert oct(file.stat().st_mode & 0o777) == "0o644"
    assert oct((tmp_path / "run").stat().st_mode & 0o777) == "0o755"


def test_file_lock_excludes_a_second_holder(tmp_path):
    from filelock import FileLock, Timeout

    with file_lock(tmp_path / ".lock"):
        with pytest.raises(Timeout):
            FileLock(str(tmp_path / ".lock"), timeout=0.1).acquire()
    with FileLock(str(tmp_path / ".lock"), timeout=0.1):
        pass


def test_an_unusable_output_folder_fails_with_its_parameter_named(tmp_path, monkeypatch):
    (tmp_path / "a_file").write_text("mine")
    with pytest.raises(CourseError, match="output_dir .*a_file is an existing file"):
        ensure_writable_dir(tmp_path / "a_file")
    with pytest.raises(CourseError, match="Cannot write to output_root"):
        ensure_writable_dir(tmp_path / "a_file" / "below", "output_root")
    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(CourseError, match="only 0.0 MB free"):
        ensure_writable_dir(tmp_path / "new")
    assert (tmp_path / "a_file").read_text() == "mine"


def test_ftcourse_run_into_an_existing_file_fails_before_any_notebook(tmp_path, capsys):
    (tmp_path / "out").write_text("mine")
    code = ftcourse_main(["run", str(ROOT / "notebooks" / "00_setup.ipynb"), "--profile", "smoke", "--output-dir", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert code == 2 and "output_dir" in captured.err and "existing file" in captured.err and "▶" not in captured.out
    assert (tmp_path / "out").read_text() == "mine"


# ---------------------------------------------------------------- settings


@pytest.mark.parametrize(("overrides", "message"), [
    ({"max_steps": -5}, "max_steps must be at least 1, or -1 to train num_epochs, got -5"),
    ({"batch_size": 0}, "batch_size must be at least 1, got 0"),
    ({"batch_size": "abc"}, "batch_size must be int, got str 'abc'"),
    ({"n_train": 0}, "n_train must be at least 1"),
])
def test_profile_overrides_are_validated_by_type_and_range(overrides, message):
    with pytest.raises(CourseError, match=message) as info:
        get_profile("smoke", **overrides)
    assert info.value.fix and next(iter(overrides)) in info.value.fix


def test_a_config_value_out_of_range_names_the_file(tmp_path):
    (tmp_path / "t.json").write_text('{"batch_size": 0}')
    with pytest.raises(CourseError, match=r"t.json: batch_size must be at least 1"):
        load_settings(TrainingSettings, tmp_path / "t.json")


# ---------------------------------------------------------------- data


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".json", ".txt"])
def test_a_file_that_is_not_utf8_names_the_byte_line_and_fix(tmp_path, suffix):
    body = {".jsonl": '{"text": "ok", "label": "a"}\n{"text": "caf\xe9", "label": "a"}\n',
            ".csv": 'text,label\nok,a\ncaf\xe9,a\n', ".json": '[\n{"text": "ok"},\n{"text": "caf\xe9"}]',
            ".txt": "ok\ncaf\xe9\n"}[suffix]
    path = tmp_path / f"latin1{suffix}"
    path.write_bytes(body.encode("latin-1"))
    with pytest.raises(DataError) as info:
        read_dataset(path)
    offset = body.encode("latin-1").index(b"\xe9")
    line = body[:offset].count("\n") + 1
    assert f"{path} is not UTF-8 text: byte {offset} (line {line})" in str(info.value) and "iconv" in info.value.fix


def test_prepare_dataset_script_on_a_latin1_file_exits_2(tmp_path, capsys):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes('{"text": "caf\xe9", "label": "a"}\n'.encode("latin-1"))
    code = load_script("prepare_dataset").main(["--input_file", str(path), "--output_dir", str(tmp_path / "out"), "--task_type", "classification"])
    err = capsys.readouterr().err
    assert code == 2 and "not UTF-8 text: byte 13 (line 1)" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- training runs


def _snapshot(folder):
    return {str(p.relative_to(folder)): (sha256_file(p), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory, tokenizer):
    """A tiny real Llama with the embedded tokenizer, saved as a local model folder (fast runs through the script)."""
    return save_tiny("llama", tmp_path_factory.mktemp("tiny") / "tiny-llama", tokenizer, vocab_size=len(tokenizer))


def _fine_tune_args(tiny_folder, out, *extra):
    return ["--model_name_or_path", str(tiny_folder), "--dataset_path", str(ROOT / "data" / "raw" / "support_intents.jsonl"),
            "--profile", "smoke", "--max_steps", "1", "--batch_size", "2", "--no_progress", "--output_dir", str(out),
            "--run_name", "mine", *extra]


@pytest.mark.parametrize("flags", [["--lora_r", "0"], ["--lora_r", "-4"], ["--batch_size", "0"], ["--lora_dropout", "1.5"]])
def test_bad_training_flags_fail_before_the_model_loads(flags, tiny_folder, tmp_path, capsys):
    code = load_script("fine_tune_model").main(_fine_tune_args(tiny_folder, tmp_path / "out") + flags)
    captured = capsys.readouterr()
    field = {"--lora_r": "r", "--batch_size": "batch_size", "--lora_dropout": "lora_dropout"}[flags[0]]
    assert code == 2 and f"error: {field} must be" in captured.err and "Fine-tuning" not in captured.out
    assert not (tmp_path / "out").exists()


def test_an_output_dir_that_is_a_file_fails_before_training(tiny_folder, tmp_path, capsys):
    (tmp_path / "out").write_text("mine")
    code = load_script("fine_tune_model").main(_fine_tune_args(tiny_folder, tmp_path / "out"))
    err = capsys.readouterr().err
    assert code == 2 and "output_root" in err and "is an existing file" in err and "Traceback" not in err
    assert (tmp_path / "out").read_text() == "mine"


def test_the_script_never_replaces_a_run_with_other_settings_silently(tiny_folder, tmp_path, capsys):
    script = load_script("fine_tune_model")
    out = tmp_path / "out"
    assert script.main(_fine_tune_args(tiny_folder, out, "--lora_r", "4")) == 0
    first = capsys.readouterr()
    assert "%|" not in first.out + first.err  # --no_progress: no progress bar at all, model loading included
    assert (out / "checkpoints" / "mine").is_dir() and not (paths.checkpoints_dir() / "mine").exists()  # checkpoints follow --output_dir
    before = _snapshot(out / "mine")
    assert script.main(_fine_tune_args(tiny_folder, out, "--lora_r", "8")) == 2
    err = capsys.readouterr().err
    assert "already holds a run trained with other settings" in err and "overwrite=True" in err
    assert _snapshot(out / "mine") == before
    assert script.main(_fine_tune_args(tiny_folder, out, "--lora_r", "8", "--overwrite")) == 0
    assert json.loads((out / "mine" / "lora_config.json").read_text())["r"] == 8


def test_fine_tune_keeps_an_earlier_run_with_other_settings(tokenizer, tmp_path, capsys):
    records = intent_records(get_profile("smoke"))["train"][:4]
    common = dict(tokenizer=tokenizer, run_name="run", output_root=tmp_path / "runs", progress=False, preflight=False)
    settings = TrainingSettings(max_steps=1, batch_size=2, gradient_accumulation_steps=1, warmup_ratio=0.0)
    first = fine_tune(records, model=tiny_model("llama", vocab_size=len(tokenizer)), settings=settings, **common)
    before = _snapshot(first.run_dir)
    second = fine_tune(records, model=tiny_model("llama", vocab_size=len(tokenizer)), settings=settings.replace(seed=7), **common)
    assert second.run_dir != first.run_dir and second.run_dir.name.startswith("run-") and is_run_dir(second.run_dir)
    assert "holds a run with other settings; keeping it and saving this run as run-" in capsys.readouterr().out
    assert _snapshot(first.run_dir) == before


def test_a_truncated_adapter_names_the_file_and_how_to_recover(tiny_folder, tmp_path):
    assert load_script("fine_tune_model").main(_fine_tune_args(tiny_folder, tmp_path / "out")) == 0
    adapter = tmp_path / "out" / "mine" / "adapter_model.safetensors"
    adapter.write_bytes(adapter.read_bytes()[: adapter.stat().st_size // 2])
    for load in (load_run, load_model):
        with pytest.raises(CourseError, match="adapter_model.safetensors is damaged") as info:
            load(str(adapter.parent))
        assert "overwrite=True" in info.value.fix


def test_evaluating_on_labels_the_run_never_saw_is_an_error(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "adapter_config.json").write_text('{"base_model_name_or_path": "embedded"}')
    (run / "dataset_info.json").write_text(json.dumps({"labels": ["billing", "shipping"]}))
    test = tmp_path / "test.jsonl"
    test.write_text('{"text": "a", "label": "billing"}\n{"text": "b", "label": "refund"}\n')
    code = load_script("evaluate_model").main(["--model_path", str(run), "--test_dataset", str(test), "--no_progress"])
    err = capsys.readouterr().err
    assert code == 2 and "labels the model never saw in training: refund" in err and "Traceback" not in err
    assert sorted(p.name for p in run.iterdir()) == ["adapter_config.json", "dataset_info.json"]


# ---------------------------------------------------------------- issue 30: diverged runs, locks, own inputs, Ctrl-C, summaries


def test_a_diverging_run_stops_at_the_first_non_finite_value_and_saves_nothing(tiny_folder, tmp_path, capsys):
    """A finite but enormous learning rate turns the LoRA weights to NaN; the Trainer's logged loss would hide it."""
    out = tmp_path / "out"
    code = load_script("fine_tune_model").main(_fine_tune_args(tiny_folder, out, "--learning_rate", "1e38", "--max_steps", "4",
                                                               "--warmup_ratio", "0", "--logging_steps", "1"))
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert re.search(r"error: Training stopped at step 1: the (weight|gradient) of \S+lora_\S+ holds [\d,]+ NaN or infinite values", err)
    assert "nothing was saved as a run" in err and "lower the learning rate" in err
    assert not (out / "mine").exists() and not any(is_run_dir(p) for p in out.iterdir())


@pytest.fixture(scope="module")
def trained_run(tiny_folder, tmp_path_factory):
    """A finished run of the tiny Llama (one step), for tests that damage a copy of it."""
    out = tmp_path_factory.mktemp("trained")
    assert load_script("fine_tune_model").main(_fine_tune_args(tiny_folder, out)) == 0
    return out / "mine"


def test_an_adapter_with_non_finite_weights_is_never_loaded_or_served(trained_run, tiny_folder, tmp_path, capsys):
    run = shutil.copytree(trained_run, tmp_path / "run")
    weights = load_file(run / "adapter_model.safetensors")
    key = sorted(weights)[-1]
    weights[key][0, 0] = float("nan")
    save_file(weights, run / "adapter_model.safetensors", metadata={"format": "pt"})
    expected = f"adapter_model.safetensors holds non-finite weights: {key} has 1 NaN or infinite values of {weights[key].numel():,}"
    for load in (load_run, load_model, lambda folder: load_adapters({"mine": folder})):
        with pytest.raises(CourseError, match=re.escape(expected)) as info:
            load(str(run))
        assert "lower learning rate" in info.value.fix
    assert ftcourse_main(["serve", "--model", str(tiny_folder), "--adapter", f"mine={run}", "--port", "0"]) == 2
    assert expected in capsys.readouterr().err


def test_a_damaged_adapter_config_or_tokenizer_file_is_named(trained_run, tmp_path):
    run = shutil.copytree(trained_run, tmp_path / "run")
    for name, loaders in (("adapter_config.json", (load_run, load_model)), ("tokenizer.json", (load_run, load_model, load_tokenizer))):
        whole = (run / name).read_text()
        (run / name).write_text(whole[: len(whole) // 2])
        for load in loaders:
            with pytest.raises(CourseError, match=f"{name} is damaged: it is not valid JSON") as info:
                load(str(run))
            assert "overwrite=True" in info.value.fix
        (run / name).write_text(whole)
    assert load_run(run).name == "run"


def test_prepare_dataset_never_writes_over_its_own_input(tmp_path, capsys):
    """Input in <x>/splits/, output <x>/processed: the default splits folder is the input's own."""
    script = load_script("prepare_dataset")
    common = ["--output_dir", str(tmp_path / "processed"), "--task_type", "classification", "--model_name_or_path", "none"]
    assert script.main(["--input_file", str(ROOT / "data" / "raw" / "support_intents.jsonl"), *common]) == 0
    train = tmp_path / "splits" / "train.jsonl"
    before = {p: p.read_bytes() for p in tmp_path.rglob("*.json*")}
    capsys.readouterr()
    assert script.main(["--input_file", str(train), *common, "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert f"error: {train} is an input of this step: writing it would replace the data being read" in err
    assert "overwrite does not change this" in err and "--splits_dir" in err
    assert {p: p.read_bytes() for p in tmp_path.rglob("*.json*")} == before and len(before[train].splitlines()) == 800


def _wait_for(path, proc, limit: float = 600) -> None:
    deadline = time.monotonic() + limit
    while not path.exists():
        assert proc.poll() is None, f"the first training ended early: {proc.communicate()}"
        assert time.monotonic() < deadline, f"{path} did not appear in {limit} s"
        time.sleep(0.1)


def test_a_second_training_into_the_same_run_folder_is_refused(tiny_folder, tmp_path, capsys):
    """Two real processes: the first holds the run folder (paused after a step), the second is refused, then may go."""
    out, ready, go = tmp_path / "out", tmp_path / "ready", tmp_path / "go"
    args = _fine_tune_args(tiny_folder, out, "--max_steps", "2")
    first = subprocess.Popen([sys.executable, str(ROOT / "tests" / "training_driver.py"), "pause", str(ready), str(go), "--", *args],
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(ready, first)
        script = load_script("fine_tune_model")
        assert script.main(args) == 2
        err = capsys.readouterr().err
        assert f"{out / 'mine'} is being trained right now by process {first.pid} on " in err
        assert "wait for that training to finish" in err and not (out / "mine").exists()
        go.touch()
        stdout, stderr = first.communicate(timeout=600)
    finally:
        first.kill()
    assert first.returncode == 0, stderr
    assert is_run_dir(out / "mine") and json.loads((out / "mine" / "metrics.json").read_text())["steps"] == 2
    assert script.main(args) == 0  # the folder is free again: the same settings train and replace it
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints", "mine"]  # no lock file left behind


def test_ctrl_c_says_where_training_stopped_and_resume_continues(tiny_folder, tmp_path, capsys):
    out = tmp_path / "out"
    args = _fine_tune_args(tiny_folder, out, "--max_steps", "4", "--save_steps", "2")
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "training_driver.py"), "interrupt", "3", "--", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 130, proc.stderr
    assert "Traceback" not in proc.stderr and "KeyboardInterrupt" not in proc.stderr
    last = out / "checkpoints" / "mine" / "checkpoint-2"
    assert [line for line in proc.stderr.splitlines() if line.startswith("Interrupted")] == [
        f"Interrupted at step 3 of 4; the last checkpoint is {last}: run the same command with --resume to continue from it."]
    assert not (out / "mine").exists()
    assert load_script("fine_tune_model").main([*args, "--resume"]) == 0
    assert f"Resuming from {last}" in capsys.readouterr().out
    assert json.loads((out / "mine" / "metrics.json").read_text())["steps"] == 4


SEES_THE_SUMMARY = """
import json, os
from pathlib import Path
from ftcourse.course.experiments import record_metrics

summary = Path(os.environ["FTCOURSE_METRICS_FILE"]).parent / "summary.json"
seen = json.loads(summary.read_text()) if summary.exists() else {"runs": [], "complete": None}
record_metrics(seen=[Path(r["notebook"]).name for r in seen["runs"]], complete=seen["complete"])
"""


def test_the_summary_is_written_after_each_notebook_and_a_rerun_skips_current_ones(tmp_path):
    old = time.time() - 3600
    notebooks = [write_notebook(tmp_path / "lessons" / name, 'profile = "auto"\nseed = 0', SEES_THE_SUMMARY) for name in ("01_a.ipynb", "02_b.ipynb")]
    for nb in notebooks:
        os.utime(nb, (old, old))
    out = tmp_path / "out"
    a, b = notebooks
    run_many(notebooks, "smoke", out)
    assert json.loads((out / "02_b.metrics.json").read_text()) == {"seen": ["01_a.ipynb"], "complete": False}  # while b ran
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] and [r["params"] for r in summary["runs"]] == [{"profile": "smoke"}] * 2

    def stamps():
        return [(out / nb.name).stat().st_mtime_ns for nb in notebooks]

    before = stamps()
    assert [r.status for r in run_many(notebooks, "smoke", out, skip_current=True)] == ["ok", "ok"] and stamps() == before
    assert [r.get("skipped") for r in json.loads((out / "summary.json").read_text())["runs"]] == [True, True]
    os.utime(b, None)  # the notebook changed: only it runs again
    run_many(notebooks, "smoke", out, skip_current=True)
    assert stamps()[0] == before[0] and stamps()[1] > before[1]
    os.utime(out / "01_a.ipynb", (old, old))  # older than the package's code: it runs again
    run_many(notebooks, "smoke", out, skip_current=True)
    assert stamps()[0] > before[0]
    typed = {nb: {"profile": "smoke"} for nb in notebooks}
    assert list(current_runs(notebooks, out / "summary.json", typed)) == notebooks
    assert current_runs(notebooks, out / "summary.json", {nb: {"profile": "smoke", "seed": 1} for nb in notebooks}) == {}
    summary = json.loads((out / "summary.json").read_text())
    summary["runs"][0]["status"] = "failed"
    (out / "summary.json").write_text(json.dumps(summary))
    assert list(current_runs(notebooks, out / "summary.json", typed)) == [b]
