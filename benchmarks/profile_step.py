"""Where one course LoRA training step spends its time: a per-operation profile on this machine.

Runs ``ftcourse.train.fine_tune`` (the course's defaults: bf16 autocast where supported, the LM head only at
labelled positions, length-grouped batches) on the instruction data of ``train_speed.py`` and records
``--profile-steps`` optimizer steps with ``torch.profiler`` after ``--warmup-steps`` unrecorded ones. Every
operator's own time (excluding its children) goes into one category; what no operator accounts for is Python
and framework overhead (the Trainer, accelerate, PEFT's wrappers, autograd bookkeeping).

    python benchmarks/profile_step.py                    # 3 warm-up + 5 timed + 5 profiled steps x batch 8 (~1.5 min on 2 CPU cores)
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import torch  # noqa: E402
import train_speed  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

import ftcourse.train as course_train  # noqa: E402
from ftcourse.configs import TrainingSettings  # noqa: E402
from ftcourse.models import load_tokenizer  # noqa: E402
from ftcourse.reports import markdown_table  # noqa: E402
from ftcourse.tokenization import collate  # noqa: E402
from ftcourse.train import fine_tune  # noqa: E402

#: Categories in the order of the table. Matmuls are told apart by their shapes (see :func:`category`).
CATEGORIES = ["frozen body matmuls (and eager attention's two products)", "LoRA branches", "LM head", "attention (SDPA kernels)", "casts (autocast, dtype copies)",
              "norms, activations, rotary, residuals", "dropout (LoRA's random masks)", "loss", "optimizer (AdamW, zero_grad, clipping)", "collation",
              "other operators", "Python and framework overhead"]
MATMULS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear"}
ELEMENTWISE = ("aten::mul", "aten::add", "aten::sub", "aten::div", "aten::pow", "aten::rsqrt", "aten::mean", "aten::silu",
               "aten::neg", "aten::cat", "aten::cos", "aten::sin", "aten::slice", "aten::silu_backward", "aten::sum", "aten::fill_",
               "aten::zero_", "aten::zeros", "aten::empty", "aten::embedding", "aten::embedding_dense_backward", "aten::index",
               "aten::masked_fill", "aten::clone", "aten::contiguous", "aten::where", "aten::expand", "aten::view", "aten::reshape",
               "aten::transpose", "aten::t", "aten::permute", "aten::unsqueeze", "aten::squeeze", "aten::select", "aten::copy_")


def category(name: str, shapes: list, ancestors: list[str], rank: int, vocab: int) -> str:
    """The table row one operator's own time belongs to."""
    if any(a.startswith(("Optimizer.", "aten::_foreach", "clip_grad")) or "zero_grad" in a for a in ancestors + [name]):
        return "optimizer (AdamW, zero_grad, clipping)"
    if any(a == "collate" for a in ancestors):
        return "collation"
    if any("cross_entropy" in a or "log_softmax" in a or "nll_loss" in a for a in ancestors + [name]):
        return "loss"
    if name in MATMULS:
        dims = {d for s in shapes if s for d in s}
        if vocab in dims:
            return "LM head"
        if rank in dims:
            return "LoRA branches"
        return CATEGORIES[0]
    if name in ("aten::bernoulli_", "aten::native_dropout", "aten::dropout", "aten::native_dropout_backward"):
        return "dropout (LoRA's random masks)"
    if "scaled_dot_product" in name or "flash_attention" in name or "_efficient_attention" in name:
        return "attention (SDPA kernels)"
    if name in ("aten::to", "aten::_to_copy", "aten::_autocast_to_reduced_precision", "aten::_autocast_to_full_precision") or (
            name == "aten::copy_" and any(a in ("aten::to", "aten::_to_copy") for a in ancestors)):
        return "casts (autocast, dtype copies)"
    return "norms, activations, rotary, residuals" if name.startswith(ELEMENTWISE) else "other operators"


class StepProfiler(TrainerCallback):
    """After ``warmup`` optimizer steps: ``steps`` steps timed without the profiler, then ``steps`` steps recorded by it."""

    def __init__(self, warmup: int, steps: int):
        self.warmup, self.steps = warmup, steps
        self.prof = profile(activities=[ProfilerActivity.CPU], record_shapes=True)
        self.start = self.plain_seconds = self.profiled_seconds = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == self.warmup + self.steps:
            self.prof.start()
        if state.global_step in (self.warmup, self.warmup + self.steps):
            self.start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.warmup + self.steps:
            self.plain_seconds = time.perf_counter() - self.start
        elif state.global_step == self.warmup + 2 * self.steps:
            self.profiled_seconds = time.perf_counter() - self.start
            self.prof.stop()


def breakdown(prof, rank: int, vocab: int) -> dict[str, float]:
    """Seconds of operator self time per category (main thread), from the profiler's event tree."""
    totals: dict[str, float] = defaultdict(float)
    for event in prof.events():
        ancestors, parent = [], event.cpu_parent
        while parent is not None:
            ancestors.append(parent.name)
            parent = parent.cpu_parent
        totals[category(event.name, event.input_shapes or [], ancestors, rank, vocab)] += event.self_cpu_time_total / 1e6
    return totals


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--warmup-steps", type=int, default=3)
    parser.add_argument("--profile-steps", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-seq-length", type=int, default=256)
    parser.add_argument("--attention", choices=["course", "sdpa"], default="course",
                        help="course: fine_tune's choice (eager on a CPU up to 256 tokens); sdpa: PyTorch's fused kernel throughout")
    parser.add_argument("--no-mfu", action="store_true", help="skip the bf16 peak measurement")
    args = parser.parse_args(argv)
    if args.attention == "sdpa":
        course_train.EAGER_ATTENTION_MAX_LENGTH = 0
    peak = None if args.no_mfu else common.bf16_peak_study()["peak_gflops"] * 1e9

    tokenizer = load_tokenizer("embedded")
    speed_args = train_speed.parse_args(["--max-steps", str(args.warmup_steps + 2 * args.profile_steps), "--batch-size", str(args.batch_size),
                                         "--max-seq-length", str(args.max_seq_length)])
    train, _ = train_speed.data(speed_args, tokenizer)
    model = common.load_benchmark_model("embedded")
    profiler = StepProfiler(args.warmup_steps, args.profile_steps)

    def collate_recorded(batch):
        with torch.profiler.record_function("collate"):
            return collate(batch, tokenizer.pad_token_id)

    scratch = common.scratch_dir()
    settings = TrainingSettings(max_steps=args.warmup_steps + 2 * args.profile_steps, batch_size=args.batch_size, gradient_accumulation_steps=1,
                                learning_rate=train_speed.learning_rate(speed_args), max_seq_length=args.max_seq_length, logging_steps=1,
                                save_steps=10_000)
    result = fine_tune(train, model=model, tokenizer=tokenizer, method="lora", lora=common.LORA, settings=settings, run_name="profile",
                       output_root=f"{scratch}/runs", checkpoint_root=f"{scratch}/checkpoints", progress=False, preflight=False,
                       callbacks=[profiler], data_collator=collate_recorded)
    totals = breakdown(profiler.prof, common.LORA.r, result.model.config.vocab_size)
    seconds = profiler.profiled_seconds
    totals["Python and framework overhead"] = max(0.0, seconds - sum(totals.values()))
    per_step = {k: totals.get(k, 0.0) / args.profile_steps for k in CATEGORIES}
    step_s = seconds / args.profile_steps
    plain_s = profiler.plain_seconds / args.profile_steps
    profiled = train[args.batch_size * args.warmup_steps:]
    tokens = sum(len(e["input_ids"]) for e in profiled)
    trained = sum(sum(x != -100 for x in e["labels"][1:]) for e in profiled)
    flops = common.training_flops(result.model, tokens, trained, tokens / len(profiled)) / (2 * args.profile_steps)
    results = {
        "benchmark": "profile_step", "command": common.command_line(), "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": common.machine(), "config": vars(args), "seconds_per_step": round(plain_s, 3), "seconds_per_step_profiled": round(step_s, 3),
        "mfu_percent": round(100 * flops / plain_s / peak, 1) if peak else None, "bf16_peak_gflops": round(peak / 1e9, 1) if peak else None,
        "useful_gflop_per_step": round(flops / 1e9, 1),
        "per_step_seconds": {k: round(v, 4) for k, v in per_step.items()},
        "per_step_percent": {k: round(100 * v / step_s, 1) for k, v in per_step.items()},
    }
    mfu_text = f", MFU {results['mfu_percent']}% of the bf16 matmul peak ({peak / 1e9:.0f} GFLOP/s)" if peak else ""
    rows = [[k, f"{1000 * per_step[k]:.0f}", f"{100 * per_step[k] / step_s:.1f}"] for k in CATEGORIES]
    table = markdown_table(["part of the step", "ms per step", "% of the step"], rows)
    table += (f"\n\nembedded model, {args.attention} attention, the benchmarks' LoRA (r={common.LORA.r}), instruction data, batch {args.batch_size}, {args.profile_steps} profiled steps "
              f"after {args.warmup_steps}: {plain_s:.2f} s per step unprofiled ({step_s:.2f} s profiled), {flops / 1e9:.0f} useful GFLOP "
              f"per step{mfu_text}, "
              f"load average {results['machine']['load_average_1min']}.")
    common.save_results("profile_step" if args.attention == "course" else f"profile_step_{args.attention}", results, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
