"""Plots used by the lessons (matplotlib; every figure comes from measured numbers)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt

__all__ = [
    "bar_chart", "before_after_chart", "comparison_chart", "confusion_heatmap", "label_distribution", "lora_diagram", "loss_curve",
    "sweep_chart", "token_length_histogram",
]

if TYPE_CHECKING:
    import pandas as pd


def bar_chart(values: Mapping[str, float], title: str, ylabel: str, log: bool = False, ax=None, fmt: str = "{:,.0f}"):
    """A labelled bar chart of ``name -> value``."""
    ax = ax or plt.subplots(figsize=(7, 3.5))[1]
    names = list(values)
    bars = ax.bar(names, [values[n] for n in names], color="#4C72B0")
    ax.bar_label(bars, labels=[fmt.format(values[n]) for n in names], fontsize=8)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    ax.tick_params(axis="x", rotation=20)
    ax.figure.tight_layout()
    return ax


def lora_diagram(d_in: int, d_out: int, r: int, ax=None):
    """LoRA on one linear layer, drawn to scale: x goes through the frozen W (d_out × d_in) and, beside it, through A
    (r × d_in) then B (d_out × r); the two results are added. Box sides are proportional to the matrices' shapes."""
    from matplotlib.patches import Rectangle

    ax = ax or plt.subplots(figsize=(9, 3.8))[1]
    unit = 3.0 / max(d_in, d_out)  # the larger side is 3 units long
    thin = max(r * unit, 0.06)  # r is tiny next to d: drawn at least this wide to be visible
    boxes = [  # (x, y, width, height, colour, label): width ~ columns, height ~ rows
        (1.0, 1.5 - d_out * unit / 2, d_in * unit, d_out * unit, "#BBBBBB", f"W  {d_out}×{d_in}\nfrozen"),
        (5.6, 1.5 - thin / 2, d_in * unit, thin, "#DD8452", f"A  {r}×{d_in}"),
        (10.4, 1.5 - d_out * unit / 2, thin, d_out * unit, "#55A868", f"B  {d_out}×{r}"),
    ]
    for x, y, w, h, colour, label in boxes:
        ax.add_patch(Rectangle((x, y), w, h, facecolor=colour, edgecolor="black"))
        ax.text(x + w / 2, y + h + 0.15, label, ha="center", fontsize=9)
    ax.annotate("x", (1.0, 1.5), (0.1, 1.5), arrowprops={"arrowstyle": "->"}, fontsize=12, va="center")
    ax.annotate("", (5.6, 1.5), (0.3, 1.6), arrowprops={"arrowstyle": "->", "connectionstyle": "arc3,rad=-0.25"})
    ax.annotate("", (10.4, 1.5), (5.6 + d_in * unit, 1.5), arrowprops={"arrowstyle": "->"})
    ax.text(7.1, -0.8, f"h = Wx + (α/{r})·B(Ax)      trained: r(d_in + d_out) = {r * (d_in + d_out):,}      "
            f"frozen: d_in·d_out = {d_in * d_out:,}", ha="center", fontsize=10)
    ax.set_xlim(0, 12.5)
    ax.set_ylim(-1.1, 3.6)
    ax.set_aspect("equal")
    ax.set_axis_off()
    ax.set_title("LoRA on one layer, to scale: a thin trainable path (A, B) beside the frozen weight W")
    ax.figure.tight_layout()
    return ax


def loss_curve(history: Sequence[Mapping[str, float]], title: str = "Training loss", ax=None):
    """Training (and evaluation, when logged) loss against optimizer steps, from ``RunResult.history``."""
    ax = ax or plt.subplots(figsize=(7, 3.5))[1]
    train = [(h["step"], h["loss"]) for h in history if "loss" in h]
    evals = [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h]
    if train:
        ax.plot(*zip(*train), marker="o", markersize=3, label="train")
    if evals:
        ax.plot(*zip(*evals), marker="s", label="validation")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    ax.figure.tight_layout()
    return ax


def sweep_chart(table: pd.DataFrame, x: str, metrics: Sequence[str], group: Sequence[str] = ()) -> plt.Figure:
    """One panel per metric of a sweep's results table against ``x`` (three per row), one line per value of the ``group`` columns.

    Failed points are left out. Returns the figure (``ftcourse.course.sweep`` saves it as ``results.png``).
    """
    ok = table[table["status"] == "ok"]
    cols = min(3, len(metrics))
    rows = -(-len(metrics) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.4 * cols, 3.3 * rows), squeeze=False)
    for ax in axes.flat[len(metrics):]:
        ax.remove()
    parts = list(ok.groupby(list(group), sort=False)) if group else [((), ok)]
    numeric = ok[x].dtype.kind in "iuf"
    for ax, metric in zip(axes.flat, metrics):
        for key, part in parts:
            key = key if isinstance(key, tuple) else (key,)
            label = ", ".join(f"{g}={v}" for g, v in zip(group, key)) or None
            part = part.sort_values(x)
            ax.plot(part[x] if numeric else part[x].astype(str), part[metric], marker="o", label=label)
        if numeric:
            ax.set_xticks(sorted(ok[x].unique()))
        ax.set_xlabel(x)
        ax.set_title(metric)
        if group:
            ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def label_distribution(counts: Mapping[str, Mapping[str, int]] | Mapping[str, int], title: str = "Examples per label", ax=None):
    """Horizontal bars of examples per label: one ``label -> count`` mapping, or one per split
    (``split -> label -> count``, as in ``prepare_dataset``'s ``info["distribution"]``), side by side."""
    groups = counts if all(isinstance(v, Mapping) for v in counts.values()) else {"": counts}
    labels = sorted({label for group in groups.values() for label in group}, key=str)
    ax = ax or plt.subplots(figsize=(7, 0.25 * len(labels) * (1 + 0.5 * (len(groups) - 1)) + 1.2))[1]
    height = 0.8 / len(groups)
    for i, (name, group) in enumerate(groups.items()):
        positions = [j + (i - (len(groups) - 1) / 2) * height for j in range(len(labels))]
        bars = ax.barh(positions, [group.get(label, 0) for label in labels], height=height, label=name or None)
        ax.bar_label(bars, fontsize=7, padding=2)
    ax.set_yticks(range(len(labels)), [str(label) for label in labels])
    ax.invert_yaxis()
    ax.set_xlabel("examples")
    ax.set_title(title)
    if len(groups) > 1:
        ax.legend(fontsize=8, loc="lower right")
    ax.figure.tight_layout()
    return ax


def token_length_histogram(lengths: Mapping[str, Sequence[int]] | Sequence[int], max_length: int | None = None,
                           title: str = "Tokens per example", bins: int = 30, ax=None):
    """Histogram of token counts per example (several named series overlaid); a dashed line marks
    ``max_length``, beyond which examples would be truncated."""
    series = lengths if isinstance(lengths, Mapping) else {"": lengths}
    ax = ax or plt.subplots(figsize=(7, 3.2))[1]
    lo, hi = min(min(v) for v in series.values()), max(max(v) for v in series.values())
    step = max(1, (hi - lo + 1) // bins)  # integer-wide bins: token counts are whole numbers
    edges = list(range(lo, hi + step + 1, step))
    for name, values in series.items():
        ax.hist(values, bins=edges, alpha=0.6, label=name or None)
    if max_length is not None:
        ax.axvline(max_length, color="black", linestyle="--", linewidth=1, label=f"max_seq_length = {max_length}")
    ax.set_xlabel("tokens")
    ax.set_ylabel("examples")
    ax.set_title(title)
    if len(series) > 1 or max_length is not None:
        ax.legend(fontsize=8)
    ax.figure.tight_layout()
    return ax


def comparison_chart(rows: Sequence[Mapping], metrics: Mapping[str, tuple[str, str]], name_key: str = "name",
                     log: Sequence[str] = ("trainable_parameters",)):
    """One bar chart per column of a comparison table, side by side: ``metrics`` maps a column to
    ``(title, number format)``; rows without a value in a column are left out of its chart."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.4 * len(metrics), 3.6), squeeze=False)
    for ax, (column, (title, fmt)) in zip(axes[0], metrics.items()):
        values = {str(r[name_key]): r[column] for r in rows if r.get(column) is not None}
        bar_chart(values, title=title, ylabel="", log=column in log, ax=ax, fmt=fmt)
        plt.setp(ax.get_xticklabels(), rotation=30, ha="right")
    fig.tight_layout()
    return axes[0]


def before_after_chart(rows: Sequence[Mapping], names: Sequence[str] = ("base", "fine-tuned"), title: str = "Base vs fine-tuned",
                       ylabel: str = "score", ax=None):
    """Grouped bars per metric for two (or more) models, e.g. ``Comparison.rows()`` (``metric`` plus one key per name)."""
    ax = ax or plt.subplots(figsize=(max(5.0, 1.4 * len(rows) + 2), 3.6))[1]
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        bars = ax.bar([j + (i - (len(names) - 1) / 2) * width for j in range(len(rows))], [r[name] for r in rows], width, label=name)
        ax.bar_label(bars, fmt="%.3g", fontsize=8)
    ax.set_xticks(range(len(rows)), [r["metric"] for r in rows], rotation=15, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.figure.tight_layout()
    return ax


def confusion_heatmap(matrix: Sequence[Sequence[int]], labels: Sequence[str], title: str = "Confusion matrix", ax=None):
    """Counts of true label (rows) x predicted label (columns; the last one is "no label"), from ``evaluate.confusion_matrix``."""
    ax = ax or plt.subplots(figsize=(6.5, 5.5))[1]
    columns = [*labels, "(no label)"][: len(matrix[0])]
    ax.imshow(matrix, cmap="Blues")
    peak = max(max(row) for row in matrix) or 1
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            if count:
                ax.text(j, i, count, ha="center", va="center", fontsize=8, color="white" if count > peak / 2 else "black")
    ax.set_xticks(range(len(columns)), columns, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    ax.figure.tight_layout()
    return ax
