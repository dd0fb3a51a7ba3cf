"""The GPU workflow (.github/workflows/notebooks-gpu.yml) without a GPU: its constraints, what may run on the self-hosted
runners, its caches, one execution per notebook, the schema of every workflow, and the comparison of its checked cells."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import gpu_checked_outputs
import nbformat
import pytest
import yaml

from ftcourse import paths

ROOT = paths.project_root()
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
GPU_WORKFLOW = ROOT / ".github" / "workflows" / "notebooks-gpu.yml"
SAME_REPOSITORY = "github.event.pull_request.head.repo.full_name == github.repository"


def _pins(name: str) -> dict[str, str]:
    lines = (ROOT / name).read_text(encoding="utf-8").splitlines()
    return dict(line.split("==", 1) for line in lines if line and not line.startswith("#"))


def _workflow(path=GPU_WORKFLOW) -> dict:
    workflow = yaml.safe_load(path.read_text(encoding="utf-8"))
    workflow["on"] = workflow.pop(True, workflow.get("on"))  # YAML 1.1 reads the key `on` as True
    return workflow


def _steps(workflow: dict):
    return [(name, step) for name, job in workflow["jobs"].items() for step in job.get("steps", [])]


def test_gpu_constraints_are_the_cpu_ones_with_cuda_12_torch():
    cpu, gpu = _pins("constraints.txt"), _pins("constraints-gpu.txt")
    assert {k: v for k, v in gpu.items() if k != "torch"} == {k: v for k, v in cpu.items() if k != "torch"}
    version, cuda = re.fullmatch(r"(.+)\+(cu12\d)", gpu["torch"]).groups()
    assert version == cpu["torch"]
    assert _workflow()["env"]["PIP_EXTRA_INDEX_URL"].endswith(f"/whl/{cuda}")  # the index that has that build


def test_self_hosted_runners_run_only_this_repositorys_code():
    workflow = _workflow()
    assert "pull_request_target" not in workflow["on"]
    hosted_here = {name: job for name, job in workflow["jobs"].items() if "self-hosted" in job["runs-on"]}
    assert set(hosted_here) == {"notebook", "multi-gpu"}
    for name, job in hosted_here.items():
        assert SAME_REPOSITORY in " ".join(job["if"].split()), f"{name}: a fork's pull request would run on the runner"


def test_pinned_python_and_caches_keyed_on_the_constraints():
    for path in WORKFLOWS:
        for job, step in _steps(_workflow(path)):
            uses, settings = step.get("uses", ""), step.get("with", {})
            if uses.startswith("actions/setup-python"):
                assert settings["python-version"] == "3.11", f"{path.name}/{job}"
                assert "cache" not in settings or settings["cache-dependency-path"].startswith("constraints"), f"{path.name}/{job}"
            if uses.startswith("actions/cache"):
                keys = settings["key"] + settings.get("restore-keys", "")
                assert "constraints" in settings["key"] and not re.search(r"run_id|run_number|run_attempt|github\.sha", keys)


def test_each_notebook_runs_once_with_the_gpu_constraints():
    workflow = _workflow()
    runs = [step["run"] for _, step in _steps(workflow) if "run" in step]
    notebook = [step.get("run", "") for step in workflow["jobs"]["notebook"]["steps"]]
    assert sum("ftcourse run" in r for r in notebook) == 1 and not any("nbval" in r or "pytest" in r for r in notebook)
    installs = [line for r in runs for line in r.splitlines() if "pip install" in line and ".[dev]" in line]
    assert installs and all("-c constraints-gpu.txt" in line for line in installs)


def test_workflows_match_the_github_workflow_schema(tmp_path):
    """What ``make lint`` runs; a broken workflow (a job without runs-on, a misspelt key) fails it."""
    pytest.importorskip("check_jsonschema", reason="check-jsonschema (the dev extra) is not installed")

    def check(*files) -> int:
        command = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows", *map(str, files)]
        return subprocess.run(command, capture_output=True).returncode

    assert check(*WORKFLOWS) == 0
    broken = yaml.safe_load(GPU_WORKFLOW.read_text(encoding="utf-8"))
    del broken["jobs"]["list"]["runs-on"]
    broken["jobs"]["notebook"]["timeout-minuts"] = 90
    (tmp_path / "broken.yml").write_text(yaml.safe_dump(broken))
    assert check(tmp_path / "broken.yml") != 0


KIND = {"machine": "x86_64", "gpu": "NVIDIA T4", "cuda": "12.8", "torch": "2.13.0+cu128"}


def _executed(folder, name: str, printed: str | None):
    """An executed notebook as papermill leaves it: one checked cell printing ``printed`` (None: no checked cell)."""
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("# NBVAL_CHECK_OUTPUT\nprint(n)" if printed is not None else "print(n)")
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=f"{printed}\n")]
    nb.cells = [cell]
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, folder / name)
    return folder


@pytest.fixture
def gpu(tmp_path, monkeypatch):
    """The comparison on a mocked machine kind (the only thing mocked), with its recording in tmp_path."""
    monkeypatch.setattr(gpu_checked_outputs, "reference_path", lambda: tmp_path / "checked_outputs_gpu.json")
    monkeypatch.setattr(gpu_checked_outputs, "gpu_machine_kind", lambda: KIND)
    return gpu_checked_outputs


def test_gpu_checked_outputs_are_compared_on_their_own_kind_of_machine(gpu, tmp_path, monkeypatch, capsys):
    parts = [gpu.record(_executed(tmp_path / f"job{i}", f"0{i}_x.ipynb", f"accuracy 0.9{i}"), tmp_path / f"part{i}.json")
             for i in (1, 2)]
    parts.append(gpu.record(_executed(tmp_path / "job3", "03_x.ipynb", None), tmp_path / "part3.json"))  # no checked cell
    gpu.merge(gpu.reference_path(), parts)
    assert set(json.loads(gpu.reference_path().read_text())["notebooks"]) == {"01_x.ipynb", "02_x.ipynb"}
    assert gpu.check(tmp_path / "job1") == 0 and gpu.check(tmp_path / "job3") == 0
    assert gpu.check(_executed(tmp_path / "again", "02_x.ipynb", "accuracy 0.95")) == 1
    assert "checked cell 1 of 1" in capsys.readouterr().err
    monkeypatch.setattr(gpu, "gpu_machine_kind", lambda: {**KIND, "gpu": "NVIDIA A100"})
    assert gpu.check(tmp_path / "again") == 0
    assert "not compared" in capsys.readouterr().out


def test_records_of_two_kinds_of_machine_do_not_merge(gpu, tmp_path, monkeypatch):
    first = gpu.record(_executed(tmp_path / "a", "01_x.ipynb", "1"), tmp_path / "a.json")
    monkeypatch.setattr(gpu, "gpu_machine_kind", lambda: {**KIND, "cuda": "12.6"})
    second = gpu.record(_executed(tmp_path / "b", "02_x.ipynb", "2"), tmp_path / "b.json")
    with pytest.raises(SystemExit, match="2 kinds of machine"):
        gpu.merge(tmp_path / "merged.json", [first, second])
