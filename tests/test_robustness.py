"""Nothing lost, nothing silent (issue 18): bad inputs fail early with a fix, outputs keep normal permissions."""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections import namedtuple

import pytest

from ftcourse import paths
from ftcourse.cli import main as ftcourse_main
from ftcourse.configs import TrainingSettings, load_settings
from ftcourse.data import DataError, load_dataset
from ftcourse.errors import CourseError
from ftcourse.fileio import atomic_directory, atomic_write_text, ensure_writable_dir, file_lock
from ftcourse.hardware import get_profile

ROOT = paths.project_root()


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
        load_dataset(path)
    offset = body.encode("latin-1").index(b"\xe9")
    line = body[:offset].count("\n") + 1
    assert f"{path} is not UTF-8 text: byte {offset} (line {line})" in str(info.value) and "iconv" in info.value.fix


def test_prepare_dataset_script_on_a_latin1_file_exits_2(tmp_path, capsys):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes('{"text": "caf\xe9", "label": "a"}\n'.encode("latin-1"))
    code = _script("prepare_dataset").main(["--input_file", str(path), "--output_dir", str(tmp_path / "out"), "--task_type", "classification"])
    err = capsys.readouterr().err
    assert code == 2 and "not UTF-8 text: byte 13 (line 1)" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()
