"""Time to accuracy: wall-clock training time until the intent test accuracy reaches a target (default 90%).

The course's defaults (ftcourse.train.fine_tune, the cpu profile's schedule) against TRL SFTTrainer's defaults
(learning rate 2e-5, 3 epochs, gradient checkpointing, ...), both with the course's LoRA config on the embedded
model and the same pre-tokenized intent data. Every ``--eval-every`` steps the test split is classified with
constrained decoding (ftcourse.generation.classify); evaluation time is left out of the clock. A setup that has not
reached the target within ``--budget-seconds`` of training stops there, and the ratio is reported as a lower bound.

    python benchmarks/time_to_accuracy.py                          # ~15-25 min on 2 CPU cores (TRL capped at 900 s)
    python benchmarks/time_to_accuracy.py --max-steps 4 --eval-every 2 --budget-seconds 60   # a quick check
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

from ftcourse.course.bundled import (
    INTENT_LABELS,  # noqa: E402
    intent_records,  # noqa: E402
)
from ftcourse.generation import classify
from ftcourse.metrics import accuracy  # noqa: E402
from ftcourse.profiles import get_profile  # noqa: E402
from ftcourse.reports import markdown_table  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target", type=float, default=0.90, help="test accuracy to reach")
    parser.add_argument("--budget-seconds", type=float, default=900, help="training-time cap per setup")
    parser.add_argument("--eval-every", type=int, default=10, help="optimizer steps between accuracy checks")
    parser.add_argument("--max-steps", type=int, default=None, help="cap both setups' steps (default: each setup's own schedule)")
    parser.add_argument("--n-test", type=int, default=None, help="test examples to classify (default: the whole test split)")
    parser.add_argument("--output", default="time_to_accuracy")
    parser.add_argument("--child", choices=["course", "trl"], help=argparse.SUPPRESS)
    parser.add_argument("--child-out", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


class AccuracyClock(TrainerCallback):
    """Measures test accuracy every few steps; the clock counts training time only; stops at the target or the budget.

    ``clock`` is injectable so that tests check the logic without depending on the machine's speed.
    """

    def __init__(self, tokenizer, test_records, target: float, every: int, budget: float, clock=time.perf_counter):
        self.tokenizer, self.target, self.every, self.budget, self.clock = tokenizer, target, every, budget, clock
        self.prompts = [r["messages"][:-1] for r in test_records]
        self.references = [r["label"] for r in test_records]
        self.points: list[dict] = []
        self.reached: dict | None = None
        self.start = self.paused = 0.0

    def measure(self, model, step: int) -> float:
        began = self.clock()
        seconds = began - self.start - self.paused
        predictions = classify(model, self.tokenizer, self.prompts, INTENT_LABELS, batch_size=32, progress=False)
        score = accuracy(predictions, self.references)
        model.train()
        self.paused += self.clock() - began
        self.points.append({"step": step, "train_seconds": round(seconds, 1), "accuracy": score})
        print(f"  step {step:>4}  {seconds:7.1f} s of training  accuracy {score:.2f}", flush=True)
        if score >= self.target and self.reached is None:
            self.reached = self.points[-1]
        return seconds

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.start = self.clock()
        self.measure(model, state.global_step)
        self.start, self.paused = self.clock(), 0.0  # the baseline evaluation is not training time

    def on_step_end(self, args, state, control, model=None, **kwargs):
        elapsed = self.clock() - self.start - self.paused
        if state.global_step % self.every == 0 or elapsed >= self.budget or state.global_step >= state.max_steps:
            seconds = self.measure(model, state.global_step)
            if self.reached or seconds >= self.budget:
                control.should_training_stop = True
        return control


def child(args) -> None:
    from ftcourse.models import load_tokenizer
    from ftcourse.tokenization import tokenize_records
    from ftcourse.train import fine_tune, settings_from_profile

    profile = get_profile("cpu")
    records = intent_records(profile)
    test = records["test"][: args.n_test] if args.n_test else records["test"]
    tokenizer = load_tokenizer("embedded")
    train = tokenize_records(tokenizer, records["train"], profile.max_seq_length)
    clock = AccuracyClock(tokenizer, test, args.target, args.eval_every, args.budget_seconds)
    model = common.load_benchmark_model("embedded")
    scratch = common.scratch_dir()
    if args.child == "course":
        settings = settings_from_profile(profile, max_steps=args.max_steps)
        result = fine_tune(train, model=model, tokenizer=tokenizer, method="lora", lora=common.LORA, settings=settings,
                           run_name="time-to-accuracy", output_root=f"{scratch}/runs", checkpoint_root=f"{scratch}/checkpoints", progress=False, callbacks=[clock])
        config = {"learning_rate": result.metrics["learning_rate"], "max_steps": settings.max_steps, "batch_size": settings.batch_size}
    else:
        overrides = {"max_steps": args.max_steps} if args.max_steps else {}
        trainer = common.trl_trainer(model, tokenizer, train, scratch, callbacks=[clock], **overrides)
        trainer.train()
        config = {"learning_rate": trainer.args.learning_rate, "max_steps": trainer.state.max_steps,
                  "batch_size": trainer.args.per_device_train_batch_size, "num_train_epochs": trainer.args.num_train_epochs}
    common.child_result(args.child_out, {
        "reached": clock.reached is not None,
        "seconds_to_target": clock.reached["train_seconds"] if clock.reached else None,
        "step_at_target": clock.reached["step"] if clock.reached else None,
        "train_seconds": clock.points[-1]["train_seconds"],
        "final_accuracy": clock.points[-1]["accuracy"],
        "points": clock.points,
        "config": config,
    })


def describe(run: dict) -> str:
    if run["reached"]:
        return f"{run['seconds_to_target']} s (step {run['step_at_target']})"
    return f"not reached within {run['train_seconds']} s (best {max(p['accuracy'] for p in run['points']):.2f})"


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        child(args)
        return 0
    runs = common.run_setups(Path(__file__), argv)
    course, trl = runs["course"], runs["trl"]
    if not course["reached"]:
        ratio, ratio_text = None, f"the course's defaults did not reach {args.target:.0%} either"
    elif trl["reached"]:
        ratio = trl["seconds_to_target"] / course["seconds_to_target"]
        ratio_text = f"{ratio:.1f}x faster"
    else:
        ratio = trl["train_seconds"] / course["seconds_to_target"]
        ratio_text = f"at least {ratio:.1f}x faster (TRL {describe(trl)})"
    results = {
        "benchmark": "time_to_accuracy", "command": common.command_line(), "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": common.machine(), "target_accuracy": args.target, "budget_seconds": args.budget_seconds, "eval_every": args.eval_every,
        "runs": runs, "speedup": round(ratio, 2) if ratio else None, "speedup_is_lower_bound": bool(course["reached"] and not trl["reached"]),
    }
    rows = [[setup, r["config"]["learning_rate"], r["points"][0]["accuracy"], describe(r), r["final_accuracy"], r["peak_memory_mb"]]
            for setup, r in (("course defaults", course), ("TRL SFTTrainer defaults", trl))]
    table = markdown_table(["setup", "learning rate", "accuracy at step 0", f"time to {args.target:.0%}", "last accuracy", "peak MB"], rows)
    table += (f"\n\nTraining time only (evaluation every {args.eval_every} steps excluded), budget {args.budget_seconds:.0f} s per setup, "
              f"load average {results['machine']['load_average_1min']}. Course defaults vs TRL defaults: **{ratio_text}**.")
    common.save_results(args.output, results, table, f"Time to {args.target:.0%} test accuracy, course defaults vs TRL defaults: {ratio_text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
