"""Nothing lost, nothing silent (issue 18): bad inputs fail early with a fix, outputs keep normal permissions."""

from __future__ import annotations

import json
import os
import shutil
from collections import namedtuple

import pytest
from script_modules import load_script
from tiny import save_tiny, tiny_model

from ftcourse import paths
from ftcourse.configs import TrainingSettings, load_settings
from ftcourse.course.bundled import intent_records
from ftcourse.data import DataError, read_dataset
from ftcourse.errors import CourseError
from ftcourse.fileio import atomic_directory, atomic_write_text, ensure_writable_dir, file_lock, sha256_file
from ftcourse.models import load_model
from ftcourse.profiles import get_profile
from ftcourse.runs import is_run_dir, load_run
from ftcourse.tools.cli import main as ftcourse_main
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
