"""The checked cells of the GPU workflow's runs (.github/workflows/notebooks-gpu.yml), compared without re-execution.

Each notebook runs once under the ``gpu`` profile, in its own job. The CPU recording (``tests/checked_outputs.json``:
the smoke profile, the embedded model) does not apply there, and re-running every notebook with nbval would double the
GPU time. GPU kernels round differently on another GPU model, CUDA or torch version, so the GPU recording names the
machine kind it was made on (:func:`gpu_machine_kind`), and ``check`` compares a run only with a recording of its own
kind; on any other kind it says so and compares nothing. Recording is a manual step: dispatch the workflow with
``record`` set, download its ``checked-outputs-gpu`` artifact (the jobs' records merged), look at it, and commit it as
``tests/checked_outputs_gpu.json``. A cell whose output differs between two recordings of one kind is not
deterministic there: take its ``# NBVAL_CHECK_OUTPUT`` marker off (or make it print something that is).

    python tests/gpu_checked_outputs.py record runs/gpu part.json     # one notebook's job
    python tests/gpu_checked_outputs.py merge checked_outputs_gpu.json parts/*.json
    python tests/gpu_checked_outputs.py check runs/gpu
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from checked_outputs import collect, differences, machine_kind

from ftcourse import paths
from ftcourse.fileio import atomic_write_json


def reference_path() -> Path:
    return paths.project_root() / "tests" / "checked_outputs_gpu.json"


def gpu_machine_kind() -> dict[str, Any]:
    """:func:`checked_outputs.machine_kind` plus the GPU's name and the CUDA and torch versions."""
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {**machine_kind(), "gpu": gpu, "cuda": torch.version.cuda, "torch": torch.__version__}


def checked_cells(run_dir: str | Path) -> dict[str, list[dict[str, str]]]:
    """:func:`checked_outputs.collect`, or nothing when no executed notebook in ``run_dir`` has checked cells (a job runs one)."""
    try:
        return collect(run_dir)
    except SystemExit:  # collect's way of saying that none has checked cells
        return {}


def record(run_dir: str | Path, out: str | Path) -> Path:
    """This machine's kind and the checked outputs of the executed notebooks in ``run_dir``, written to ``out``."""
    return atomic_write_json(Path(out), {"machine_kind": gpu_machine_kind(), "notebooks": checked_cells(run_dir)})


def merge(out: str | Path, parts: list[str | Path]) -> Path:
    """One recording from the jobs' records, which must all come from one kind of machine."""
    records = [json.loads(Path(p).read_text(encoding="utf-8")) for p in parts]
    kinds = {json.dumps(r["machine_kind"], sort_keys=True) for r in records}
    if len(kinds) != 1:
        raise SystemExit(f"the records come from {len(kinds)} kinds of machine; record on one kind: {sorted(kinds)}")
    notebooks = {name: cells for r in records for name, cells in r["notebooks"].items()}
    return atomic_write_json(Path(out), {"machine_kind": records[0]["machine_kind"], "notebooks": dict(sorted(notebooks.items()))})


def check(run_dir: str | Path) -> int:
    """Compare ``run_dir``'s checked cells with the recording of this kind of machine; 0 when equal or not comparable."""
    found, here = checked_cells(run_dir), gpu_machine_kind()
    reference = json.loads(reference_path().read_text(encoding="utf-8")) if reference_path().is_file() else None
    if reference is None or reference["machine_kind"] != here:
        why = "there is none" if reference is None else f"it was recorded on {reference['machine_kind']}"
        print(f"Checked outputs not compared: no recording for this machine ({here}) in {reference_path().name} ({why}).")
        return 0
    missing = sorted(set(found) - set(reference["notebooks"]))
    for name in missing:
        print(f"{name}: not in {reference_path().name} yet (record it): not compared.")
    problems = differences({n: reference["notebooks"][n] for n in found if n not in missing}, {n: c for n, c in found.items() if n not in missing})
    for problem in problems:
        print(problem, file=sys.stderr)
    print(f"{len(problems)} difference(s) from {reference_path().name} in {len(found) - len(missing)} notebook(s).")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python tests/gpu_checked_outputs.py", description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=["record", "merge", "check"])
    parser.add_argument("paths", nargs="+", help="record: RUN_DIR OUT; merge: OUT PART...; check: RUN_DIR")
    args = parser.parse_args(argv)
    arity = {"record": 2, "check": 1}.get(args.action)
    if arity is not None and len(args.paths) != arity or args.action == "merge" and len(args.paths) < 2:
        parser.error(f"{args.action}: wrong number of paths ({args.paths})")
    if args.action == "check":
        return check(args.paths[0])
    print(f"-> {record(*args.paths) if args.action == 'record' else merge(args.paths[0], args.paths[1:])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
