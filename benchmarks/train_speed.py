"""Training speed: the course's defaults (ftcourse.train.fine_tune) against TRL SFTTrainer's defaults.

Same model, same instruction data (ftcourse.course.bundled.instruction_records, pre-tokenized once and given to
both as the same token sequences), same LoRA config, same learning rate, same optimizer steps and
examples (one pass over steps x batch examples). A third setup, "course-matched", is fine_tune with TRL's
batch order (random, no length grouping) and schedule (no warm-up), so that its validation loss compares
the two implementations rather than their defaults. Measured per setup, each in its own process: input
(non-pad) tokens per second, peak memory (RSS on CPU, allocated on GPU), final training loss,
validation loss, and MFU against the bf16 matmul peak measured in the same run.

    python benchmarks/train_speed.py                       # embedded model, 40 steps x batch 8, three setups (~6 min on 2 CPU cores)
    python benchmarks/train_speed.py --max-steps 2         # a quick check
    python benchmarks/train_speed.py --model-shape 360m    # random-weight SmolLM2-360M shape (for GPUs)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

from ftcourse.configs import settings_dict  # noqa: E402
from ftcourse.course.bundled import instruction_records  # noqa: E402
from ftcourse.profiles import get_profile  # noqa: E402
from ftcourse.reports import markdown_table  # noqa: E402

#: The course's defaults; the course with TRL's batch order and schedule; TRL's defaults.
SETUPS = ("course", "course-matched", "trl")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-steps", type=int, default=40, help="optimizer steps for each setup")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=None, help="for both setups (default: the course's LoRA rate)")
    parser.add_argument("--model-shape", default="embedded", choices=["embedded", *common.SHAPES], help="real embedded model, or a random-weight SmolLM2 shape")
    parser.add_argument("--max-seq-length", type=int, default=256)
    parser.add_argument("--output", default=None, help="results name (default train_speed or train_speed_<shape>)")
    parser.add_argument("--no-mfu", action="store_true", help="skip the bf16 peak measurement and MFU (a quick check on a busy machine)")
    parser.add_argument("--child", choices=SETUPS, help=argparse.SUPPRESS)
    parser.add_argument("--child-out", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def learning_rate(args) -> float:
    from ftcourse.peft_methods import get_method

    return args.learning_rate or get_method("lora").learning_rate


def data(args, tokenizer):
    """The training examples (steps x batch, one pass) and the validation examples, tokenized once for both setups."""
    from ftcourse.tokenization import tokenize_records

    records = instruction_records(get_profile("cpu"))
    needed = args.max_steps * args.batch_size
    train = (records["train"] * (needed // len(records["train"]) + 1))[:needed]
    return tokenize_records(tokenizer, train, args.max_seq_length), tokenize_records(tokenizer, records["validation"], args.max_seq_length)


def child(args) -> None:
    from ftcourse.configs import TrainingSettings
    from ftcourse.models import load_tokenizer
    from ftcourse.train import fine_tune

    tokenizer = load_tokenizer("embedded")
    train, validation = data(args, tokenizer)
    model = common.load_benchmark_model(args.model_shape)
    scratch = common.scratch_dir()
    if args.child != "trl":
        matched = args.child == "course-matched"  # TRL's order (random batches) and schedule (no warm-up)
        settings = TrainingSettings(max_steps=args.max_steps, batch_size=args.batch_size, gradient_accumulation_steps=1,
                                    learning_rate=learning_rate(args), max_seq_length=args.max_seq_length, logging_steps=1,
                                    **({"warmup_ratio": 0.0} if matched else {}))
        result = fine_tune(train, model=model, tokenizer=tokenizer, method="lora", lora=common.LORA, settings=settings,
                           run_name="speed", output_root=f"{scratch}/runs", checkpoint_root=f"{scratch}/checkpoints", progress=False,
                           group_by_length=not matched)
        model, seconds, history = result.model, result.metrics["train_seconds"], result.history
    else:
        trainer = common.trl_trainer(model, tokenizer, train, scratch, max_steps=args.max_steps, per_device_train_batch_size=args.batch_size,
                                     learning_rate=learning_rate(args), logging_steps=1, save_strategy="no")
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
        common.unwrap(trainer)
        model, history = trainer.model, trainer.state.log_history
    losses = [h["loss"] for h in history if "loss" in h]
    tail = losses[-max(1, len(losses) // 4):]
    input_tokens = sum(len(e["input_ids"]) for e in train)
    trained_tokens = sum(sum(x != -100 for x in e["labels"][1:]) for e in train)
    common.child_result(args.child_out, {
        "train_seconds": round(seconds, 2),
        "input_tokens": input_tokens,
        "trained_tokens": trained_tokens,
        "tokens_per_second": round(input_tokens / seconds, 1),
        "flops": common.training_flops(model, input_tokens, trained_tokens, input_tokens / len(train)),
        "train_loss_final": round(sum(tail) / len(tail), 4),
        "validation_loss": round(common.validation_loss(model, validation, tokenizer.pad_token_id), 4),
    })


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        child(args)
        return 0
    try:
        study = None if args.no_mfu else common.bf16_peak_study()
    except common.BenchmarkError as exc:
        print(f"error: {exc} (or pass --no-mfu)", file=sys.stderr)
        return 2
    peak = study["peak_gflops"] * 1e9 if study else None
    if study:
        print(f"bf16 matmul rates on this machine (GFLOP/s): {study['gflops_by_way']}; peak (the highest) {peak / 1e9:.0f}", flush=True)
    runs = common.run_setups(Path(__file__), argv, SETUPS)
    for setup, run in runs.items():
        run["mfu_percent"] = common.mfu_percent(run["flops"], run["train_seconds"], peak) if peak else None
        if peak and run["mfu_percent"] is None:
            print(f"warning: {setup}'s MFU would exceed 100% against the peak measured before the runs: the machine got faster "
                  "(it was busy during the peak measurement); MFU is left out", file=sys.stderr)
    course, matched, trl = runs["course"], runs["course-matched"], runs["trl"]

    def against_trl(run):  # (speed-up in tokens per second, validation loss change in %)
        return run["tokens_per_second"] / trl["tokens_per_second"], 100 * (run["validation_loss"] / trl["validation_loss"] - 1)

    (speedup, val_change), (matched_speedup, matched_val_change) = against_trl(course), against_trl(matched)
    name = args.output or ("train_speed" if args.model_shape == "embedded" else f"train_speed_{args.model_shape}")
    results = {
        "benchmark": "train_speed", "command": common.command_line(), "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": common.machine(), "bf16_peak_gflops": round(peak / 1e9, 1) if peak else None,
        "bf16_gflops_by_way": study["gflops_by_way"] if study else None,
        "config": {"model": args.model_shape, "max_steps": args.max_steps, "batch_size": args.batch_size,
                   "learning_rate": learning_rate(args), "lora": settings_dict(common.LORA), "max_seq_length": args.max_seq_length},
        "runs": runs, "speedup_tokens_per_second": round(speedup, 2), "validation_loss_change_percent": round(val_change, 2),
        "matched_speedup_tokens_per_second": round(matched_speedup, 2), "matched_validation_loss_change_percent": round(matched_val_change, 2),
    }
    lowest = min(study["gflops_by_way"].values()) if study else None
    peak_text = f"{peak / 1e9:.0f} GFLOP/s (the highest of {len(study['gflops_by_way'])} ways, {lowest:.0f}–{peak / 1e9:.0f})" if study else "not measured"
    rows = [[setup, r["tokens_per_second"], r["train_seconds"], r["peak_memory_mb"], r["train_loss_final"], r["validation_loss"], "n/a" if r["mfu_percent"] is None else r["mfu_percent"]]
            for setup, r in (("course defaults", course), ("course, TRL's batch order and no warm-up", matched), ("TRL SFTTrainer defaults", trl))]
    table = markdown_table(["setup", "non-pad input tokens/s", "train s", "peak MB", "final train loss", "val loss", "MFU %"], rows)
    table += (f"\n\n{args.model_shape}, {args.max_steps} steps x batch {args.batch_size}, lr {learning_rate(args)}, "
              f"bf16 peak {peak_text}, load average {results['machine']['load_average_1min']}: "
              f"**{speedup:.2f}x** the tokens per second, validation loss {val_change:+.1f}%; with TRL's batch order and no warm-up, "
              f"**{matched_speedup:.2f}x**, validation loss {matched_val_change:+.1f}%.")
    common.save_results(name, results, table, f"Speed-up (non-pad input tokens per second, course / TRL): {speedup:.2f}x; validation loss "
                        f"{val_change:+.1f}% (matched order and schedule: {matched_speedup:.2f}x, {matched_val_change:+.1f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
