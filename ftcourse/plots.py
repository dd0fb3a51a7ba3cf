"""Plots used by the lessons (matplotlib; every figure comes from measured numbers)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt


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
