"""The README's course table, written from a course run, never typed: each lesson's time and peak memory from
``runs/<profile>/summary.json`` and its headline numbers from ``<lesson>.metrics.json`` (what the lesson passed to
``record_metrics``).

    ftcourse course-table runs/cpu            # rewrite the table between the markers in README.md
    ftcourse course-table runs/cpu --check    # change nothing; fail when README.md's table differs
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ftcourse import paths
from ftcourse.errors import CourseError
from ftcourse.fileio import atomic_write_text

__all__ = ["END_MARKER", "HEADLINES", "course_table", "headline", "START_MARKER", "update_readme"]

START_MARKER = "<!-- course-table:start (written by `ftcourse course-table runs/<profile>`; do not edit by hand) -->"
END_MARKER = "<!-- course-table:end -->"

#: Each lesson's headline as fragments joined with "; ". A ``{metric:format}`` field is a number the lesson recorded;
#: with ``<metric>_low`` and ``<metric>_high`` also recorded it is followed by its 95% interval. A fragment that names
#: a metric the run did not record is left out, so a lesson that records more shows more.
HEADLINES: dict[str, tuple[str, ...]] = {
    "00_setup": ("the embedded model chats", "LoRA trains {lora_trainable_parameters:,} parameters"),
    "01_data_preparation": ("zero-shot intent accuracy {zero_shot_accuracy:.2f} (macro F1 {zero_shot_macro_f1:.2f})",),
    "01b_data_curation": ("unseen-style accuracy trained without paraphrases {unseen_base:.2f}, with {unseen_augmented:.2f}",
                          "McNemar p = {unseen_mcnemar_p:.2g}", "{near_duplicate_pairs} near-duplicate pairs"),
    "02_model_fine_tuning": ("intent LoRA test accuracy {accuracy_before:.2f} → {accuracy_after:.2f}",
                             "{train_seconds:.0f} s of training", "instruction LoRA eval loss {instruction_eval_loss:.2f}"),
    "03_evaluation": ("fine-tuned {tuned_accuracy:.2f} vs base {base_accuracy:.2f} on test", "McNemar p = {test_mcnemar_p:.2g}",
                      "{unseen_accuracy:.2f} on the unseen-style set", "label likelihood {likelihood_accuracy:.2f}"),
    "04_qlora_and_memory": ("base {footprint_fp32_mb:,.0f} MB fp32 → {footprint_4bit_mb:,.0f} MB 4-bit",
                            "perplexity {perplexity_fp32:.1f} → {perplexity_4bit:.1f}",
                            "QLoRA {qlora_accuracy_after:.2f} vs LoRA {lora_accuracy_after:.2f}",
                            "{qlora_seconds_per_step:.2f} vs {lora_seconds_per_step:.2f} s per step"),
    "05_prompt_methods": ("LoRA {accuracy_lora:.2f}", "IA3 {accuracy_ia3:.2f}", "prompt tuning {accuracy_prompt_tuning:.2f}",
                          "P-Tuning {accuracy_p_tuning:.2f}", "prefix tuning {accuracy_prefix_tuning:.2f}"),
    "06_domain_adaptation": ("held-out manual perplexity {heldout_perplexity_before:.1f} → {heldout_perplexity_after:.1f}",
                             "general English {general_perplexity_before:.1f} → {general_perplexity_after:.1f}"),
    "07_merge_and_deploy": ("merged = unmerged (max logit difference {merge_max_logit_diff:.1e})",),
    "08_experiments": ("a {points}-point sweep, best accuracy {best_accuracy:.2f} (before training {accuracy_before:.2f})",),
    "09_scaling_out": ("2-process DDP = 1 process (LoRA weights within {ddp_one_vs_two_processes_max_difference:.0e})",
                       "FSDP2 rank 0 stores {fsdp2_lora_share_rank0:.0%} of the LoRA values"),
    "10_inference_and_serving": ("bf16 {bf16_throughput_gain:.2f}× requests/s", "dynamic int8 {int8_throughput_gain:.2f}×",
                                 "intent accuracy fp32 {fp32_accuracy:.2f}, int8 per-tensor {int8_accuracy:.2f}, "
                                 "per-channel {int8_per_channel_accuracy:.2f}, head kept float {int8_float_head_accuracy:.2f}",
                                 "ONNX prefill {onnx_prefill_speedup:.1f}×"),
    "11_knowledge_base_qa": ("QA adapter + BM25: EM {qa_QA_adapter_plus_BM25_exact_match:.2f}", "F1 {qa_QA_adapter_plus_BM25_f1:.2f}",
                             "base + BM25 F1 {qa_base_plus_BM25_f1:.2f}", "closed-book F1 {qa_base_closed-book_f1:.2f}",
                             "{qa_QA_adapter_plus_BM25_abstain_rate:.0%} of \"not in the manual\" questions answered so"),
}
_FIELD = re.compile(r"\{([^{}:]+)(?::([^{}]*))?\}")


def headline(fragments: tuple[str, ...], metrics: dict[str, Any]) -> str:
    """The fragments whose every metric was recorded, filled in and joined with "; " (an em dash when none is left)."""

    def fill(match: re.Match) -> str:
        name, spec = match.group(1), match.group(2) or ""
        text = format(metrics[name], spec)
        if f"{name}_low" in metrics and f"{name}_high" in metrics:
            text += f" [{format(metrics[f'{name}_low'], spec)}, {format(metrics[f'{name}_high'], spec)}]"
        return text

    shown = [_FIELD.sub(fill, f) for f in fragments if all(name in metrics for name, _ in _FIELD.findall(f))]
    return "; ".join(shown) or "—"


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {round(seconds % 60):02d} s ({seconds:,.0f} s)"


def course_table(run_dir: str | Path) -> str:
    """The Markdown table of a course run: one row per notebook of ``run_dir/summary.json``, then the whole course
    (marked when the summary says the run did not finish)."""
    run_dir = Path(run_dir)
    summary_file = run_dir / "summary.json"
    if not summary_file.is_file():
        raise CourseError(f"{summary_file} does not exist.", "run the course first (`make course PROFILE=cpu`), then pass its folder.")
    summary = json.loads(summary_file.read_text(encoding="utf-8"))
    lines = [f"| lesson | time | peak memory | headline result (`{summary['profile']}` run) |", "|---|---|---|---|"]
    for run in summary["runs"]:
        stem = Path(run["notebook"]).stem
        metrics_file = run_dir / f"{stem}.metrics.json"
        metrics = json.loads(metrics_file.read_text(encoding="utf-8")) if metrics_file.is_file() else {}
        time = f"{run['seconds']:.0f} s" if run["status"] == "ok" else f"failed ({run['error']})"
        lines.append(f"| {stem.replace('_', ' ')} | {time} | {run['peak_rss_mb'] / 1024:.1f} GB | "
                     f"{headline(HEADLINES.get(stem, ()), metrics)} |")
    peak = max((r["peak_rss_mb"] for r in summary["runs"]), default=0.0)
    unfinished = " (run interrupted: the lessons that finished)" if summary.get("complete") is False else ""
    lines.append(f"| **all {len(summary['runs'])}**{unfinished} | {_minutes(summary['total_seconds'])} | {peak / 1024:.1f} GB (largest) | |")
    return "\n".join(lines)


def update_readme(table: str, readme: str | Path | None = None, check: bool = False) -> bool:
    """Put ``table`` between the markers of ``readme`` (default the project's README.md), the rest untouched, written
    atomically. Returns whether the README's table differed; with ``check`` nothing is written."""
    readme = Path(readme or paths.project_root() / "README.md")
    text = readme.read_text(encoding="utf-8")
    if text.count(START_MARKER) != 1 or text.count(END_MARKER) != 1 or text.index(START_MARKER) > text.index(END_MARKER):
        raise CourseError(f"{readme} needs exactly one pair of course-table markers, start before end.",
                          f"put the lines\n{START_MARKER}\n{END_MARKER}\nwhere the table goes.")
    before, rest = text.split(START_MARKER)
    new = f"{before}{START_MARKER}\n{table}\n{END_MARKER}{rest.split(END_MARKER, 1)[1]}"
    if new != text and not check:
        atomic_write_text(readme, new)
    return new != text
