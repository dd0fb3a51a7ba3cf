"""The class summary of ``ftcourse grade``: per task the mean score, the share who passed and the most common failure.

An instructor reads it to see which concept the class missed: ``<out>_summary.md`` (a table) and
``<out>_summary.png`` (a chart) are written next to the grades CSV. Failures are grouped by the
check's hint (the concept), not by the values in the message; checker faults are counted apart.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftcourse.fileio import write_outputs

__all__ = [
    "CHECKER_FAULT", "failure_reason", "summarize", "summary_chart", "summary_markdown", "summary_paths", "TaskSummary",
    "write_class_summary",
]

#: Start of a grading message that reports a fault of the checker, not of the answer.
CHECKER_FAULT = "checker fault"


@dataclass
class TaskSummary:
    task: str
    max_points: float
    mean_points: float
    passed: float  # share of students with full points
    common_failure: str  # the most frequent reason for lost points ("" when nobody lost any)
    common_count: int
    checker_faults: int


def failure_reason(message: str) -> str:
    """What a failed task's message says the concept is: the check's hint when it has one, else the message."""
    return message.split(" Hint: ", 1)[1].strip() if " Hint: " in message else message.strip()


def summarize(grades: Sequence[Any], tasks: Sequence[Any]) -> list[TaskSummary]:
    """One :class:`TaskSummary` per task (``ftcourse.tools.build.Task``) from the ``ftcourse.tools.grading.Grade`` of each student."""
    rows = []
    for i, task in enumerate(tasks):
        scores = [g.tasks[i] for g in grades]
        failed = [s.message for s in scores if s.points < s.max_points]
        faults = sum(m.startswith(CHECKER_FAULT) for m in failed)
        reason, count = (Counter(failure_reason(m) for m in failed).most_common(1) or [("", 0)])[0]
        n = max(len(scores), 1)
        rows.append(TaskSummary(task.task, task.points, sum(s.points for s in scores) / n,
                                sum(s.points >= s.max_points for s in scores) / n, reason, count, faults))
    return rows


def _cell(text: str, limit: int = 300) -> str:
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= limit else text[:limit] + " …"


def summary_markdown(assignment: str, grades: Sequence[Any], rows: Sequence[TaskSummary], notes: Sequence[str] = ()) -> str:
    """The summary as Markdown: class totals, then one row per task, then the grader's ``notes`` (how tasks were graded, ...)."""
    total = sum(g.percent for g in grades) / max(len(grades), 1)
    statuses = Counter(g.status for g in grades)
    lines = [f"# {assignment} — class summary", "",
             f"{len(grades)} submissions, mean {total:.1f}%; status: " + ", ".join(f"{k} {v}" for k, v in sorted(statuses.items())), "",
             "| task | points | mean | passed | most common failure (students) | checker faults |", "|---|---|---|---|---|---|"]
    for r in rows:
        failure = f"{_cell(r.common_failure)} ({r.common_count})" if r.common_count else "—"
        lines.append(f"| {r.task} | {r.max_points:g} | {r.mean_points:.2f} | {100 * r.passed:.0f}% | {failure} | {r.checker_faults} |")
    if any(r.checker_faults for r in rows):
        lines += ["", "A checker fault is an error in the check itself, not in the answers: look at it before you publish the grades."]
    lines += [line for note in notes for line in ("", note)]
    return "\n".join(lines) + "\n"


def summary_chart(assignment: str, rows: Sequence[TaskSummary]) -> bytes:
    """A PNG: mean score (% of the task's points) and share who passed, per task."""
    import matplotlib.pyplot as plt

    from ftcourse.course.plots import bar_chart

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
    bar_chart({r.task: 100 * r.mean_points / r.max_points if r.max_points else 0.0 for r in rows},
              title=f"{assignment}: mean score per task", ylabel="% of the task's points", ax=left)
    bar_chart({r.task: 100 * r.passed for r in rows}, title=f"{assignment}: who passed each task", ylabel="% of students", ax=right)
    for ax in (left, right):
        ax.set_ylim(0, 105)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def summary_paths(out: str | Path) -> tuple[Path, Path]:
    """Where the summary of the grades CSV ``out`` goes: ``<stem>_summary.md`` and ``<stem>_summary.png`` beside it."""
    out = Path(out)
    return out.with_name(out.stem + "_summary.md"), out.with_name(out.stem + "_summary.png")


def write_class_summary(out: str | Path, assignment: str, grades: Sequence[Any], tasks: Sequence[Any],
                        notes: Sequence[str] = ()) -> tuple[Path, Path]:
    """Write the Markdown summary (with ``notes`` at its end) and its chart next to the grades CSV ``out`` (replacing an earlier summary)."""
    rows = summarize(grades, tasks)
    markdown, chart = summary_paths(out)
    write_outputs({markdown: summary_markdown(assignment, grades, rows, notes), chart: summary_chart(assignment, rows)}, overwrite=True)
    return markdown, chart
