"""The checked cells' outputs of the smoke runs, recorded once and compared after every run (``make test-notebooks``).

A notebook cell marked ``# NBVAL_CHECK_OUTPUT`` prints something deterministic and meaningful (dataset sizes,
parameter counts, seeded metrics). ``record`` stores what those cells printed in papermill's executed copies
(``runs/smoke/``) into ``tests/checked_outputs.json``; ``check`` compares a later run's copies with it, so a checked
output that changes — between commits or between two runs — fails the build, and each notebook runs only once.
Both sides are sanitized first with nbval's rules (``tests/nbval_sanitize.cfg``: timings, sizes, addresses, dates,
progress bars, temporary paths); stderr, images and widget views are left out, as in nbval.

Seeded numbers reproduce on the same kind of machine (:func:`machine_kind`), not across kinds: a CPU without
AVX512-BF16 trains in fp32 instead of bf16 autocast, and other matrix kernels round differently. So the recording
names the kind it was made on, and each recorded cell says whether its output depends on the numeric path
(``"numeric_path"``: ``"independent"`` or ``"dependent"``), as ``classify`` found by comparing a run of the other
kind with the recording. On the recording's kind ``check`` compares every checked cell; on another kind only the
path-independent ones, and it prints how many it left out and why (nothing is re-executed). A cell recorded since
the last ``classify`` (new, or its output changed) is not compared on another kind until the next ``classify``.
Comparing no cell at all is a failure.

    python tests/checked_outputs.py record runs/smoke      # after an intended change: commit the reference
    python tests/checked_outputs.py check runs/smoke
    # the other numeric path, emulated on an AVX512-BF16 machine (torch's, MKL's and oneDNN's AVX2 kernels, the course's
    # fp32 path), in a fresh clone: saved runs in models/fine_tuned/ are reused whatever path trained them
    export ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2 FTCOURSE_CPU_BF16=0
    ftcourse run notebooks solutions --profile smoke --output-dir runs/smoke-fp32
    python tests/checked_outputs.py classify runs/smoke-fp32
"""

from __future__ import annotations

import argparse
import configparser
import hashlib
import json
import os
import platform
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat

from ftcourse import paths
from ftcourse.fileio import atomic_write_json

MARKER = "NBVAL_CHECK_OUTPUT"
#: A recorded cell's ``numeric_path``: its output is the same on both numeric paths, or it differs.
INDEPENDENT, DEPENDENT = "independent", "dependent"
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


def load_reference() -> dict[str, Any]:
    """The recording: ``machine_kind`` and, by course path, each checked cell's source hash, output and numeric path."""
    if not reference_path().is_file():
        raise SystemExit(f"{reference_path()} is missing: record it (python tests/checked_outputs.py record runs/smoke) and commit it.")
    return json.loads(reference_path().read_text(encoding="utf-8"))


def record(run_dir: str | Path) -> Path:
    """Write the checked outputs of ``run_dir`` and this machine's kind to :func:`reference_path`; a cell recorded before
    with the same source and output keeps its ``numeric_path``."""
    found = collect(run_dir)
    before = load_reference()["notebooks"] if reference_path().is_file() else {}
    for name, cells in found.items():
        kept = {(c["source_sha256"], c["output"]): c["numeric_path"] for c in before.get(name, []) if "numeric_path" in c}
        for cell in cells:
            if path := kept.get((cell["source_sha256"], cell["output"])):
                cell["numeric_path"] = path
    return atomic_write_json(reference_path(), {"machine_kind": machine_kind(), "notebooks": found})


def classify(run_dir: str | Path) -> Path:
    """Mark each recorded cell path-independent when ``run_dir`` — a run on another kind of machine — printed the same,
    path-dependent when it differs (or was marked so before). A notebook whose checked cells changed since the
    recording, or that ``run_dir`` lacks, keeps its marks."""
    reference = load_reference()
    if reference["machine_kind"] == machine_kind():
        raise SystemExit("This machine is the recording's kind: classify with a run on another kind (see python tests/checked_outputs.py --help).")
    found = collect(run_dir)
    for name, cells in reference["notebooks"].items():
        if [c["source_sha256"] for c in found.get(name, [])] != [c["source_sha256"] for c in cells]:
            print(f"{name}: not in {run_dir} or its checked cells changed since the recording: left as it was")
            continue
        for want, got in zip(cells, found[name]):
            same = want["output"] == got["output"] and want.get("numeric_path") != DEPENDENT
            want["numeric_path"] = INDEPENDENT if same else DEPENDENT
    marks = [c.get("numeric_path", "not classified") for cells in reference["notebooks"].values() for c in cells]
    print(", ".join(f"{marks.count(m)} {m}" for m in (INDEPENDENT, DEPENDENT, "not classified")), f"(compared with {describe(machine_kind())})")
    return atomic_write_json(reference_path(), reference)


def differences(reference: dict[str, list[dict[str, str]]], found: dict[str, list[dict[str, str]]],
                compared: Callable[[dict[str, str]], bool] | None = None) -> list[str]:
    """What differs between recorded and found checked cells, one message per notebook or cell; only the recorded cells
    that ``compared`` accepts (all without it) have their outputs compared."""
    problems = [f"{name}: has checked cells but no recorded outputs" for name in sorted(set(found) - set(reference))]
    problems += [f"{name}: recorded, but not in this run" for name in sorted(set(reference) - set(found))]
    for name in sorted(set(reference) & set(found)):
        want, got = reference[name], found[name]
        if [c["source_sha256"] for c in want] != [c["source_sha256"] for c in got]:
            problems.append(f"{name}: its checked cells changed since the outputs were recorded ({len(want)} recorded, {len(got)} now)")
            continue
        for number, (w, g) in enumerate(zip(want, got), 1):
            if (compared is None or compared(w)) and w["output"] != g["output"]:
                problems.append(f"{name}, checked cell {number} of {len(got)}:\n--- recorded\n{w['output']}--- this run\n{g['output']}")
    return problems


def describe(kind: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in kind.items())


def left_out(notebooks: dict[str, list[dict[str, str]]]) -> list[str]:
    """One line per notebook with cells that another kind of machine does not compare, saying which and why."""
    reasons = {DEPENDENT: "path-dependent", None: "not classified since recorded"}
    lines = []
    for name, cells in notebooks.items():
        parts = [f"{', '.join(str(n) for n, c in enumerate(cells, 1) if c.get('numeric_path') == mark)} ({why})"
                 for mark, why in reasons.items() if any(c.get("numeric_path") == mark for c in cells)]
        lines += [f"  not compared in {name}: checked cells {'; '.join(parts)}"] if parts else []
    return lines


def check(run_dir: str | Path) -> int:
    """Compare ``run_dir``'s checked cells with the recording: all of them on its kind of machine, the path-independent
    ones elsewhere. Fails on a difference, and when no cell is compared."""
    reference, here = load_reference(), machine_kind()
    same_kind = reference["machine_kind"] == here
    compared = None if same_kind else (lambda cell: cell.get("numeric_path") == INDEPENDENT)
    recorded = [c for cells in reference["notebooks"].values() for c in cells]
    count = len(recorded) if same_kind else sum(map(compared, recorded))
    if not same_kind:
        print(f"This machine ({describe(here)}) is not the recording's kind ({describe(reference['machine_kind'])}): seeded numbers "
              f"round differently on another numeric path (bf16 autocast or fp32, other matrix kernels). Comparing the {count} of "
              f"{len(recorded)} checked cells whose output is the same on both paths; not comparing "
              f"{sum(c.get('numeric_path') == DEPENDENT for c in recorded)} path-dependent ones and "
              f"{sum('numeric_path' not in c for c in recorded)} not classified since they were recorded:", *left_out(reference["notebooks"]),
              sep="\n", flush=True)
    problems = differences(reference["notebooks"], collect(run_dir), compared)
    problems += [] if count else [f"no checked cell to compare on this kind of machine: classify the recording (python tests/checked_outputs.py classify {run_dir})"]
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"{len(problems)} difference(s) from {reference_path().name}. If a change is intended, record the outputs again "
              f"(python tests/checked_outputs.py record {run_dir}) and commit the file.", file=sys.stderr)
        return 1
    print(f"{count} checked cells in {len(reference['notebooks'])} notebooks match {reference_path().name}.")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python tests/checked_outputs.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["record", "check", "classify"])
    parser.add_argument("run_dir", help="the folder of executed notebooks (runs/smoke)")
    args = parser.parse_args(argv)
    if args.action == "check":
        return check(args.run_dir)
    print(f"-> {(record if args.action == 'record' else classify)(args.run_dir)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
