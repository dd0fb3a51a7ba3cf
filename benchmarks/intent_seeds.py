"""Seed spread of lesson 02's intent LoRA: the same run (ftcourse.course.lessons' intent settings) with several seeds.

One run's test accuracy moves by a few points with the seed (the order of the batches and LoRA's random
initialisation), which is the noise every comparison in the course has to beat. This repeats lesson 02's run under a
profile with each seed and reports validation and test accuracy per seed, the mean and its 95% interval (Student's t,
ftcourse.metrics.mean_interval), and the validation loss (a finer signal than 100 examples' accuracy for choosing
settings). Seed 42 is the lesson's own run.

    python benchmarks/intent_seeds.py                                # cpu profile, seeds 42, 1, 2 (~15 min on 2 CPU cores)
    python benchmarks/intent_seeds.py --target-modules q_proj,v_proj  # LoRA on q/v only, the setting it was chosen against
    python benchmarks/intent_seeds.py --profile smoke --max-steps 2   # a quick check
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

from ftcourse.course.bundled import intent_records  # noqa: E402
from ftcourse.course.comparison import classification_accuracy  # noqa: E402
from ftcourse.course.lessons import INTENT_LEARNING_RATE, INTENT_LORA, intent_lora  # noqa: E402
from ftcourse.metrics import mean_interval  # noqa: E402
from ftcourse.models import load_tokenizer  # noqa: E402
from ftcourse.profiles import get_profile  # noqa: E402
from ftcourse.reports import markdown_table  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="cpu", choices=["smoke", "cpu", "gpu"])
    parser.add_argument("--seeds", default="42,1,2", help="comma-separated seeds (at least two; 42 is the lesson's)")
    parser.add_argument("--max-steps", type=int, default=None, help="override the profile's steps (a quick check)")
    parser.add_argument("--target-modules", default=None,
                        help="LoRA target modules instead of the lesson's all-linear: comma-separated names or all-linear")
    parser.add_argument("--output", default=None, help="results name (default: intent_seeds_ and the targets, e.g. intent_seeds_q_v)")
    return parser.parse_args(argv)


def results_name(targets: str | list[str]) -> str:
    """The default results name for LoRA on ``targets``: ``intent_seeds_all_linear``, ``intent_seeds_q_v``, ..."""
    return "intent_seeds_" + ("all_linear" if targets == "all-linear" else "_".join(t.removesuffix("_proj") for t in targets))


def main(argv=None) -> int:
    args = parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    targets = args.target_modules or INTENT_LORA.target_modules
    if isinstance(targets, str) and targets != "all-linear":
        targets = targets.split(",")
    output = args.output or results_name(targets)
    profile = get_profile(args.profile, **({"max_steps": args.max_steps} if args.max_steps else {}))
    data, tokenizer, scratch = intent_records(profile), load_tokenizer(profile.model), common.scratch_dir()
    runs = []
    for seed in seeds:
        print(f"▶ seed {seed} ...", flush=True)
        run = intent_lora(profile, progress=False, reuse=False, seed=seed, target_modules=targets, run_name=f"intent-seed{seed}",
                          output_root=f"{scratch}/runs", checkpoint_root=f"{scratch}/checkpoints")
        trained = sorted({name.rsplit(".", 1)[-1] for name, module in run.model.named_modules() if hasattr(module, "lora_A")})  # LoRA layers
        runs.append({"seed": seed, "lora_modules": trained, "train_seconds": run.metrics["train_seconds"], "validation_loss": run.metrics["eval_loss"],
                     "validation_accuracy": classification_accuracy(run.model, tokenizer, data["validation"], progress=False),
                     "test_accuracy": classification_accuracy(run.model, tokenizer, data["test"], progress=False)})
        del run
    test = mean_interval([r["test_accuracy"] for r in runs])
    validation = mean_interval([r["validation_accuracy"] for r in runs])
    validation_loss = mean_interval([r["validation_loss"] for r in runs])
    results = {
        "benchmark": "intent_seeds", "command": common.command_line(), "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": common.machine(), "profile": profile.name, "steps": profile.max_steps, "learning_rate": INTENT_LEARNING_RATE,
        "target_modules": targets, "n_validation": len(data["validation"]), "n_test": len(data["test"]), "runs": runs,
        "test_accuracy": test, "validation_accuracy": validation, "validation_loss": validation_loss,
    }
    rows = [[r["seed"], r["validation_accuracy"], r["validation_loss"], r["test_accuracy"], r["train_seconds"]] for r in runs]
    table = markdown_table(["seed", "validation accuracy", "validation loss", "test accuracy", "train s"], rows)
    table += (f"\n\n{profile.name} profile, {profile.max_steps} steps × batch {profile.batch_size}, lr {INTENT_LEARNING_RATE}, "
              f"{len(data['test'])} test examples, load average {results['machine']['load_average_1min']}: test accuracy "
              f"**{test['mean']:.3f}** on average (95% interval {test['low']:.3f}–{test['high']:.3f}, sd {test['std']:.3f}); "
              f"validation {validation['mean']:.3f} (sd {validation['std']:.3f}), validation loss {validation_loss['mean']:.4f}; "
              f"LoRA on {results['target_modules']}.")
    common.save_results(output, results, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
