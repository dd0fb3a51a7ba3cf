"""Parameterized runs: ``ftcourse run NOTEBOOK -p NAME VALUE / --params FILE`` with validated names and types."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from ftcourse.course.experiments import CommandLineValue, parameters_of, validate_parameters
from ftcourse.errors import CourseError
from ftcourse.tools.cli import main
from ftcourse.tools.runner import find_notebooks, run_many

PARAMETERS = '''
profile = "auto"  # smoke | cpu | gpu | auto
lora_r = 8  # LoRA rank
learning_rate = 1e-3
method = "lora"
model_name = None
ranks = [4, 8]
fail = False
'''
BODY = '''
from ftcourse.course.experiments import record_metrics

if fail:
    raise RuntimeError("asked to fail")
record_metrics(lora_r=lora_r, lora_r_type=type(lora_r).__name__, learning_rate=learning_rate, method=method, ranks=ranks)
'''


def write_notebook(path: Path, parameters: str = PARAMETERS, body: str = BODY) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(parameters.strip(), metadata={"tags": ["parameters"]}), nbformat.v4.new_code_cell(body.strip())]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


@pytest.fixture
def notebook(tmp_path) -> Path:
    return write_notebook(tmp_path / "params.ipynb")


class Done:
    """What one in-process ``ftcourse`` call returned and printed (tests/test_cli.py runs the command as a process)."""

    def __init__(self, returncode: int, captured):
        self.returncode, self.stdout, self.stderr = returncode, captured.out, captured.err


@pytest.fixture
def cli(capsys):
    def call(*args: str) -> Done:
        code = main(list(args))
        return Done(code, capsys.readouterr())

    return call


def test_parameter_types_come_from_the_defaults(notebook):
    types = {name: spec["type"] for name, spec in parameters_of(notebook).items()}
    assert types == {"profile": "str", "lora_r": "int", "learning_rate": "float", "method": "str", "model_name": "any",
                     "ranks": "list", "fail": "bool"}
    assert parameters_of(notebook)["lora_r"]["help"] == "LoRA rank"


def test_unknown_parameter_is_an_error_that_suggests_the_right_name(notebook):
    with pytest.raises(CourseError) as info:
        validate_parameters(notebook, {"lora_rank": 8})
    assert "has no parameter 'lora_rank'" in info.value.what
    assert "did you mean 'lora_r'?" in info.value.fix and "learning_rate (float, default 1e-3)" in info.value.fix


@pytest.mark.parametrize("name, value", [
    ("lora_r", "eight"), ("lora_r", 8.5), ("lora_r", True), ("learning_rate", "fast"), ("method", 3),
    ("ranks", 4), ("fail", "yes"),
])
def test_wrong_types_are_errors(notebook, name, value):
    with pytest.raises(CourseError, match=f"parameter '{name}' must be"):
        validate_parameters(notebook, {name: value})


def test_right_types_pass_and_an_int_is_a_float(notebook):
    ok = {"lora_r": 4, "learning_rate": 1, "method": "dora", "model_name": "facebook/opt-350m", "ranks": [16], "fail": True}
    assert validate_parameters(notebook, ok) == ok


def test_command_line_values_take_the_type_of_the_parameter(notebook):
    typed = validate_parameters(notebook, {name: CommandLineValue(text) for name, text in
                                           {"lora_r": "4", "learning_rate": "5e-4", "method": "123", "ranks": "[2, 4]", "model_name": "null"}.items()})
    assert typed == {"lora_r": 4, "learning_rate": 0.0005, "method": "123", "ranks": [2, 4], "model_name": None}


def test_unknown_profile_is_an_error(notebook):
    with pytest.raises(CourseError, match="unknown profile 'fast'"):
        validate_parameters(notebook, {"profile": "fast"})


def test_cli_rejects_an_unknown_parameter_before_running_anything(cli, notebook, tmp_path):
    out = tmp_path / "out"
    proc = cli("run", str(notebook), "--profile", "smoke", "-p", "lora_rank", "8", "--output-dir", str(out))
    assert proc.returncode == 2
    assert "has no parameter 'lora_rank'" in proc.stderr and "did you mean 'lora_r'?" in proc.stderr
    assert not out.exists()


def test_cli_rejects_a_wrong_type_from_a_params_file(cli, notebook, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("lora_r: eight\n")
    proc = cli("run", str(notebook), "--profile", "smoke", "--params", str(params), "--output-dir", str(tmp_path / "out"))
    assert proc.returncode == 2 and "parameter 'lora_r' must be int" in proc.stderr


def test_cli_runs_with_parameters_and_records_metrics(cli, notebook, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("method: dora\nlora_r: 2\n")
    out = tmp_path / "out"
    proc = cli("run", str(notebook), "--profile", "smoke", "--params", str(params), "-p", "lora_r", "4",
               "-p", "learning_rate", "5e-4", "--output-dir", str(out))
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((out / "params.metrics.json").read_text())
    assert metrics == {"lora_r": 4, "lora_r_type": "int", "learning_rate": 0.0005, "method": "dora", "ranks": [4, 8]}
    executed = nbformat.read(out / "params.ipynb", as_version=4)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and 'profile = "smoke"' in injected[0].source
    summary = json.loads((out / "summary.json").read_text())
    assert summary["runs"][0]["status"] == "ok" and summary["runs"][0]["seconds"] > 0 and summary["runs"][0]["peak_rss_mb"] > 0


def test_a_failing_notebook_fails_the_run_and_keeps_its_executed_copy(cli, notebook, tmp_path):
    out = tmp_path / "out"
    proc = cli("run", str(notebook), "--profile", "smoke", "-p", "fail", "true", "--output-dir", str(out))
    assert proc.returncode == 1
    run = json.loads((out / "summary.json").read_text())["runs"][0]
    assert run["status"] == "failed" and run["error"] == "RuntimeError: asked to fail"
    assert (out / "params.ipynb").is_file() and not (out / "params.metrics.json").exists()


def test_folders_expand_to_their_notebooks_and_names_must_not_clash(tmp_path):
    a = write_notebook(tmp_path / "lessons" / "01_a.ipynb")
    b = write_notebook(tmp_path / "lessons" / "sub" / "02_b.ipynb")
    write_notebook(tmp_path / "lessons" / ".ipynb_checkpoints" / "01_a-checkpoint.ipynb")
    clash = write_notebook(tmp_path / "solutions" / "01_a.ipynb")
    assert find_notebooks([tmp_path / "lessons"]) == [a, b]
    with pytest.raises(CourseError, match="does not exist"):
        find_notebooks([tmp_path / "nope"])
    with pytest.raises(CourseError, match="Several notebooks are named 01_a.ipynb"):
        run_many([a, clash], "smoke", tmp_path / "out")


def test_notebooks_run_in_parallel_keep_their_own_parameters_and_metrics(tmp_path):
    """jobs=2: two notebooks at once, each in its own process, each recording its own metrics; one summary in input order."""
    a = write_notebook(tmp_path / "lessons" / "01_a.ipynb")
    b = write_notebook(tmp_path / "lessons" / "02_b.ipynb", PARAMETERS.replace("lora_r = 8", "lora_r = 16"))
    out = tmp_path / "out"
    runs = run_many([a, b], "smoke", out, jobs=2)
    assert [r.status for r in runs] == ["ok", "ok"] and [Path(r.notebook).name for r in runs] == ["01_a.ipynb", "02_b.ipynb"]
    assert json.loads((out / "01_a.metrics.json").read_text())["lora_r"] == 8
    assert json.loads((out / "02_b.metrics.json").read_text())["lora_r"] == 16
    summary = json.loads((out / "summary.json").read_text())
    assert summary["jobs"] == 2 and [r["status"] for r in summary["runs"]] == ["ok", "ok"] and summary["wall_seconds"] > 0
    with pytest.raises(CourseError, match="jobs=0 runs nothing"):
        run_many([a], "smoke", out, jobs=0)
