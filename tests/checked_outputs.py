"""The checked cells' outputs of the smoke runs, recorded once and compared after every run (``make test-notebooks``).

A notebook cell marked ``# NBVAL_CHECK_OUTPUT`` prints something deterministic and meaningful (dataset sizes,
parameter counts, seeded metrics). ``record`` stores what those cells printed in papermill's executed copies
(``runs/smoke/``) into ``tests/checked_outputs.json``; ``check`` compares a later run's copies with it, so a checked
output that changes — between commits or between two runs — fails the build, and each notebook runs only once.
Both sides are sanitized first with nbval's rules (``tests/nbval_sanitize.cfg``: timings, sizes, addresses, dates,
progress bars, temporary paths); stderr, images and widget views are left out, as in nbval.

Seeded numbers reproduce on the same kind of machine, not across kinds (other matrix kernels round differently), so
the reference records the machine it was made on. On another machine ``check`` compares by re-execution instead:
nbval re-runs the executed copies and compares their checked cells with papermill's outputs.

    python tests/checked_outputs.py record runs/smoke      # after an intended change: commit the reference
    python tests/checked_outputs.py check runs/smoke --jobs 2
"""

from __future__ import annotations

import argparse
import configparser
import hashlib
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat

from ftcourse import paths
from ftcourse.fileio import atomic_write_json

MARKER = "NBVAL_CHECK_OUTPUT"
#: nbval's command line for the re-execution comparison (``conftest.py`` leaves stderr out and runs each copy in the
#: folder papermill ran its source in).
NBVAL_ARGS = ["--nbval-lax", "--nbval-current-env", "--nbval-sanitize-with", "tests/nbval_sanitize.cfg", "-p", "no:cacheprovider"]
_SKIPPED_DATA = ("image/", "application/vnd.jupyter.widget")


def reference_path() -> Path:
    return paths.project_root() / "tests" / "checked_outputs.json"


def machine_kind() -> dict[str, Any]:
    """What decides how seeded numbers round: the CPU's instruction set, bf16 support, the device and the threads."""
    import torch

    from ftcourse.hardware import detect_environment

    env = detect_environment()
    return {"machine": platform.machine(), "cpu_capability": torch.backends.cpu.get_cpu_capability(), "device": env.device,
            "bf16": env.bf16, "omp_threads": os.environ.get("OMP_NUM_THREADS", "")}


def sanitizers() -> list[tuple[re.Pattern, str]]:
    """nbval's (regex, replacement) pairs from ``tests/nbval_sanitize.cfg``, in file order."""
    config = configparser.ConfigParser(interpolation=None)
    config.read(paths.project_root() / "tests" / "nbval_sanitize.cfg", encoding="utf-8")
    return [(re.compile(config[s]["regex"]), config[s]["replace"]) for s in config.sections()]


def is_checked(source: str) -> bool:
    """nbval's rule: a comment line ``# NBVAL_CHECK_OUTPUT`` anywhere in the cell."""
    return any(line.strip().startswith("#") and line.strip().lstrip("#").strip() == MARKER for line in source.splitlines())


def cell_output(cell: nbformat.NotebookNode, rules: list[tuple[re.Pattern, str]]) -> str:
    """The cell's stdout (consecutive chunks joined), plain-text results and errors, sanitized, as one text (the
    project's folder written as ``PROJECT_ROOT``, so that two checkouts compare equal)."""
    parts: list[list[str]] = []
    for out in cell.get("outputs", []):
        if out.output_type == "stream":
            if out.name != "stdout":
                continue
            if parts and parts[-1][0] == "stdout":
                parts[-1][1] += out.text
            else:
                parts.append(["stdout", out.text])
        elif out.output_type in ("execute_result", "display_data"):
            if "text/plain" in out.data and not any(k.startswith(_SKIPPED_DATA) for k in out.data):
                parts.append(["text/plain", out.data["text/plain"]])
        elif out.output_type == "error":
            parts.append(["error", f"{out.ename}: {out.evalue}"])
    text = "".join(f"[{kind}]\n{body.rstrip()}\n" for kind, body in parts).replace(str(paths.project_root()), "PROJECT_ROOT")
    for pattern, replacement in rules:
        text = pattern.sub(replacement, text)
    return text


def checked_sources(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    """The notebook's checked code cells, in order."""
    return [c for c in nb.cells if c.cell_type == "code" and is_checked(c.source)]


def source_hash(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def _course_name(nb: nbformat.NotebookNode, executed: Path) -> str:
    """The notebook's path in the course (papermill records it), e.g. ``notebooks/02_model_fine_tuning.ipynb``."""
    source = nb.metadata.get("papermill", {}).get("input_path")
    path = Path(source).resolve() if source else executed.resolve()
    return path.relative_to(paths.project_root()).as_posix() if path.is_relative_to(paths.project_root()) else path.name


def collect(run_dir: str | Path) -> dict[str, list[dict[str, str]]]:
    """Each checked cell (a hash of its source, its sanitized output) of every executed notebook directly in ``run_dir``,
    by course path."""
    rules, found = sanitizers(), {}
    for executed in sorted(Path(run_dir).glob("*.ipynb")):
        nb = nbformat.read(executed, as_version=4)
        if cells := [{"source_sha256": source_hash(c.source), "output": cell_output(c, rules)} for c in checked_sources(nb)]:
            found[_course_name(nb, executed)] = cells
    if not found:
        raise SystemExit(f"no executed notebook with checked cells in {run_dir}: run the notebooks first (make test-notebooks).")
    return found


def record(run_dir: str | Path) -> Path:
    """Write the checked outputs of ``run_dir`` and this machine's kind to :func:`reference_path`."""
    return atomic_write_json(reference_path(), {"machine_kind": machine_kind(), "notebooks": collect(run_dir)})


def differences(reference: dict[str, list[dict[str, str]]], found: dict[str, list[dict[str, str]]]) -> list[str]:
    """What differs between recorded and found checked cells, one message per notebook or cell."""
    problems = [f"{name}: has checked cells but no recorded outputs" for name in sorted(set(found) - set(reference))]
    problems += [f"{name}: recorded, but not in this run" for name in sorted(set(reference) - set(found))]
    for name in sorted(set(reference) & set(found)):
        want, got = reference[name], found[name]
        if [c["source_sha256"] for c in want] != [c["source_sha256"] for c in got]:
            problems.append(f"{name}: its checked cells changed since the outputs were recorded ({len(want)} recorded, {len(got)} now)")
            continue
        for number, (w, g) in enumerate(zip(want, got), 1):
            if w["output"] != g["output"]:
                problems.append(f"{name}, checked cell {number} of {len(got)}:\n--- recorded\n{w['output']}--- this run\n{g['output']}")
    return problems


def check(run_dir: str | Path, jobs: int = 1) -> int:
    """Compare ``run_dir``'s checked cells with the reference (on its kind of machine) or by re-execution (elsewhere)."""
    if not reference_path().is_file():
        raise SystemExit(f"{reference_path()} is missing: record it (python tests/checked_outputs.py record {run_dir}) and commit it.")
    reference = json.loads(reference_path().read_text(encoding="utf-8"))
    here = machine_kind()
    if reference["machine_kind"] != here:
        print(f"The checked outputs were recorded on {reference['machine_kind']}; this machine is {here}: comparing by "
              "re-execution (nbval) instead.", flush=True)
        notebooks = sorted(str(p) for p in Path(run_dir).glob("*.ipynb"))
        parallel = ["-n", str(jobs), "--dist", "loadscope"] if jobs > 1 else []
        return subprocess.run([sys.executable, "-m", "pytest", *parallel, *NBVAL_ARGS, *notebooks], cwd=paths.project_root()).returncode
    problems = differences(reference["notebooks"], collect(run_dir))
    for problem in problems:
        print(problem, file=sys.stderr)
    cells = sum(map(len, reference["notebooks"].values()))
    if problems:
        print(f"{len(problems)} difference(s) from {reference_path().name}. If a change is intended, record the outputs again "
              f"(python tests/checked_outputs.py record {run_dir}) and commit the file.", file=sys.stderr)
        return 1
    print(f"{cells} checked cells in {len(reference['notebooks'])} notebooks match {reference_path().name}.")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python tests/checked_outputs.py", description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=["record", "check"])
    parser.add_argument("run_dir", help="the folder of executed notebooks (runs/smoke)")
    parser.add_argument("--jobs", type=int, default=1, help="nbval processes when comparing by re-execution")
    args = parser.parse_args(argv)
    if args.action == "record":
        print(f"-> {record(args.run_dir)}")
        return 0
    return check(args.run_dir, args.jobs)


if __name__ == "__main__":
    sys.exit(main())
