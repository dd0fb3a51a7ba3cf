"""Score a model on processed records, per task, with metrics from one registry; compare it with its base.

Records are grouped into tasks (:func:`group_tasks`): classification, JSON extraction, free generation, plain
text (perplexity). Metrics come from one registry (:data:`METRICS`): an unknown name is an error that lists the
valid ones. :func:`evaluate_model` scores one model, :func:`compare` scores the base and the fine-tuned model on
the same records (a ``PeftModel``'s base is the same model with its adapter disabled), and
:func:`ftcourse.reports.write_report` saves either as JSON and Markdown.

Named ``evaluate_model`` (not ``evaluate``) so that it does not shadow Hugging Face's ``evaluate`` library.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ftcourse.data import infer_labels
from ftcourse.errors import CourseError
from ftcourse.generation import Prompt, adapter_disabled, classify, generate, prompt_preview, text_nll
from ftcourse.metrics import (
    accuracy,
    classification_metrics,
    confusion_matrix,
    exact_match,
    json_field_scores,
    json_metrics,
    parse_json_object,
    pooled_perplexity,
    rouge,
    rouge_scores,
)
from ftcourse.reports import markdown_table

__all__ = [
    "check_metrics", "compare", "Comparison", "DETAILS", "evaluate_model", "Evaluation", "get_metric", "group_tasks",
    "KINDS", "Metric", "METRICS", "metrics_for", "record_kind", "TaskResult",
]

KINDS = ("classification", "extraction", "generation", "text")


@dataclass
class TaskResult:
    """One group of examples evaluated the same way, with the predictions and metrics of one model."""

    name: str
    kind: str  # one of KINDS
    prompts: list[Prompt]
    references: list[str]
    labels: list[str] | None = None
    predictions: list[Any] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)

    def example_scores(self) -> list[float]:
        """Per-example score: 1/0 correct, share of JSON fields right, ROUGE-L, or perplexity (lower is better)."""
        if self.kind == "classification":
            return [float(p == r) for p, r in zip(self.predictions, self.references)]
        if self.kind == "extraction":
            return [sum(row.values()) / len(row) if row else 0.0 for row in (json_field_scores(p, r) for p, r in zip(self.predictions, self.references))]
        if self.kind == "generation":
            return [rouge_scores(p, r)["rougeL"] for p, r in zip(self.predictions, self.references)]
        return [pooled_perplexity([p]) for p in self.predictions]

    def shown_predictions(self) -> list[str]:
        if self.kind == "text":
            return [f"perplexity {s:.2f}" for s in self.example_scores()]
        return ["(no label)" if p is None else str(p) for p in self.predictions]


@dataclass(frozen=True)
class Metric:
    """A metric: the kinds of task it applies to, and how it is computed from a :class:`TaskResult`."""

    name: str
    kinds: tuple[str, ...]
    description: str
    compute: Callable[[TaskResult], dict[str, Any]]


def _macro(key: str) -> Callable[[TaskResult], dict[str, Any]]:
    return lambda t: {key: classification_metrics(t.predictions, t.references, t.labels)[key]}


METRICS: dict[str, Metric] = {
    m.name: m
    for m in [
        Metric("accuracy", ("classification",), "share of correct labels", lambda t: {"accuracy": accuracy(t.predictions, t.references)}),
        Metric("f1", ("classification",), "macro F1 over the labels in references or predictions (scikit-learn's), plus precision/recall/F1 per label",
               lambda t: {k: v for k, v in classification_metrics(t.predictions, t.references, t.labels).items() if k in ("f1", "per_label")}),
        Metric("precision", ("classification",), "macro precision", _macro("precision")),
        Metric("recall", ("classification",), "macro recall", _macro("recall")),
        Metric("confusion_matrix", ("classification",), "counts of true label x predicted label (last column: no label)",
               lambda t: {"confusion_matrix": confusion_matrix(t.predictions, t.references, t.labels)}),
        Metric("exact_match", ("classification", "extraction", "generation"), "answer equals the reference (case and spacing ignored)",
               lambda t: {"exact_match": exact_match(t.predictions, t.references)}),
        Metric("valid_json", ("extraction",), "share of answers that parse as a JSON object",
               lambda t: {"valid_json": json_metrics(t.predictions, t.references)["valid_json"]}),
        Metric("field_accuracy", ("extraction",), "accuracy per field of the reference object (intent, order_id, product), and all fields right",
               lambda t: {k: v for k, v in json_metrics(t.predictions, t.references).items() if k != "valid_json"}),
        Metric("rouge", ("generation",), "ROUGE-1 and ROUGE-L F1 against the reference answer", lambda t: rouge(t.predictions, t.references)),
        Metric("perplexity", ("text",), "exp of the mean per-token negative log-likelihood", lambda t: {"perplexity": pooled_perplexity(t.predictions)}),
    ]
}
#: Metric results kept out of the headline table (they are in the JSON report).
DETAILS = ("per_label", "confusion_matrix")


def get_metric(name: str) -> Metric:
    """Look a metric up by name; an unknown name is a :class:`CourseError` listing the valid ones."""
    if name not in METRICS:
        raise CourseError(f"Unknown metric {name!r}.", f"use one of: {', '.join(METRICS)}.")
    return METRICS[name]


def metrics_for(kind: str, names: Sequence[str] | None = None) -> list[str]:
    """The requested metric names (all by default) that apply to a task of ``kind``."""
    chosen = [get_metric(n).name for n in names] if names else list(METRICS)
    return [n for n in chosen if kind in METRICS[n].kinds]


# ---------------------------------------------------------------- evaluating records


def record_kind(record: dict[str, Any]) -> str:
    """How a processed record is evaluated: ``classification``, ``extraction`` (JSON), ``generation`` or ``text``."""
    if "messages" not in record:
        if "text" in record:
            return "text"
        raise CourseError(f"A record with fields {sorted(record)} cannot be evaluated.",
                          "pass processed records with 'messages' or 'text' (ftcourse.data.processed_records).")
    task = record.get("task")
    if "label" in record or task == "classify":
        return "classification"
    if task == "extract" or (task is None and parse_json_object(record["messages"][-1]["content"]) is not None):
        return "extraction"
    return "generation"


def group_tasks(records: Sequence[dict[str, Any]], labels: Sequence[str] | None = None) -> dict[str, TaskResult]:
    """Split processed records into tasks (by their ``task`` field, else by kind), each with prompts and references."""
    if not records:
        raise CourseError("No records to evaluate.", "pass at least one record (check the test file and max_examples).")
    tasks: dict[str, TaskResult] = {}
    for record in records:
        kind = record_kind(record)
        name = record.get("task") or kind
        task = tasks.setdefault(name, TaskResult(name, kind, [], []))
        if task.kind != kind:
            raise CourseError(f"Task {name!r} mixes {task.kind} and {kind} records.", "give each task one kind of record.")
        if kind == "text":
            task.prompts.append(record["text"])
            task.references.append(record["text"])
        else:
            task.prompts.append(record["messages"][:-1])
            task.references.append(record.get("label") or record["messages"][-1]["content"])
    for task in tasks.values():
        if task.kind == "classification":
            task.labels = list(labels) if labels else infer_labels(task.references)
    return tasks


def check_metrics(tasks: dict[str, TaskResult], metrics: Sequence[str] | None) -> None:
    """An unknown metric, or one that applies to none of the tasks, is a :class:`CourseError` naming the usable ones."""
    for requested in metrics or []:
        metric = get_metric(requested)
        if not any(t.kind in metric.kinds for t in tasks.values()):
            kinds = ", ".join(sorted({t.kind for t in tasks.values()}))
            usable = list(dict.fromkeys(n for t in tasks.values() for n in metrics_for(t.kind)))
            raise CourseError(f"Metric {requested!r} does not apply to this data ({kinds}).", f"for this data use: {', '.join(usable)}.")


def _predict(model, tokenizer, task: TaskResult, batch_size: int, max_new_tokens: int, classify_by: str, progress: bool) -> list[Any]:
    if task.kind == "classification":
        return classify(model, tokenizer, task.prompts, task.labels, batch_size=batch_size, progress=progress, by=classify_by)
    if task.kind == "text":
        return text_nll(model, tokenizer, task.prompts, batch_size=batch_size, progress=progress)
    # room for the longest reference and a little more: enough to be judged, no time spent on rambling
    longest = max(len(tokenizer(r, add_special_tokens=False)["input_ids"]) for r in task.references)
    return generate(model, tokenizer, task.prompts, max_new_tokens=min(max_new_tokens, longest + 16), batch_size=batch_size,
                    progress=progress, desc=f"Generating ({task.name})")


@dataclass
class Evaluation:
    """One model's results on one set of records, per task."""

    model: str
    dataset: str
    tasks: dict[str, TaskResult]
    seconds: float

    def scores(self) -> dict[str, float]:
        """Headline numbers as ``task/metric`` (nested per-field values as ``task/metric.field``)."""
        out = {}
        for task in self.tasks.values():
            for key, value in task.metrics.items():
                if key in DETAILS:
                    continue
                if isinstance(value, dict):
                    out.update({f"{task.name}/{key}.{k}": v for k, v in value.items()})
                else:
                    out[f"{task.name}/{key}"] = value
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "dataset": self.dataset,
            "seconds": round(self.seconds, 2),
            "tasks": {
                t.name: {"kind": t.kind, "n": len(t.references), "labels": t.labels, "metrics": t.metrics,
                         "examples": [{"prompt": prompt_preview(p), "reference": r, "prediction": s}
                                      for p, r, s in zip(t.prompts, t.references, t.shown_predictions())]}
                for t in self.tasks.values()
            },
        }

    def summary(self) -> str:
        """The headline numbers as an aligned text table."""
        rows = [(key, f"{value:.4f}") for key, value in self.scores().items()]
        width = max((len(k) for k, _ in rows), default=6)
        return "\n".join([f"{'metric':<{width}}  value", *(f"{k:<{width}}  {v}" for k, v in rows)])

    def to_markdown(self) -> str:
        counts = ", ".join(f"{t.name}: {len(t.references)} ({t.kind})" for t in self.tasks.values())
        lines = [f"# Evaluation of {self.model}", "", f"- test data: `{self.dataset}`", f"- examples: {counts}",
                 f"- time: {self.seconds:.1f} s", "", markdown_table(["metric", "value"], [[k, f"{v:.4f}"] for k, v in self.scores().items()])]
        for task in self.tasks.values():
            if "per_label" in task.metrics:
                lines += ["", f"## Per label ({task.name})", "",
                          markdown_table(["label", "precision", "recall", "f1", "support"],
                                    [[label, *(f"{s[k]:.3f}" for k in ("precision", "recall", "f1")), s["support"]] for label, s in task.metrics["per_label"].items()])]
            wrong = [i for i, s in enumerate(task.example_scores()) if task.kind != "text" and s < 1]
            if wrong:
                lines += ["", f"## Examples not fully right ({task.name}, first {min(5, len(wrong))} of {len(wrong)})", "",
                          markdown_table(["input", "reference", "prediction"],
                                    [[prompt_preview(task.prompts[i]), task.references[i], task.shown_predictions()[i]] for i in wrong[:5]])]
        return "\n".join(lines) + "\n"


def evaluate_model(
    model,
    tokenizer,
    records: Sequence[dict[str, Any]],
    metrics: Sequence[str] | None = None,
    labels: Sequence[str] | None = None,
    batch_size: int = 16,
    max_new_tokens: int = 128,
    classify_by: str = "generation",
    progress: bool = True,
    name: str = "model",
    dataset: str = "",
) -> Evaluation:
    """Score ``model`` on processed records with the given metrics (default: every metric that applies).

    Records are grouped into tasks (:func:`group_tasks`): classification (``label`` field or
    ``task == "classify"``), JSON extraction, free generation, plain text (perplexity). A task
    no requested metric applies to is skipped; a metric that applies to no task is an error.
    """
    tasks = group_tasks(records, labels)
    check_metrics(tasks, metrics)
    start = time.perf_counter()
    kept = {}
    for task in tasks.values():
        names = metrics_for(task.kind, metrics)
        if not names:
            continue
        task.predictions = _predict(model, tokenizer, task, batch_size, max_new_tokens, classify_by, progress)
        for metric in names:
            task.metrics.update(METRICS[metric].compute(task))
        kept[task.name] = task
    return Evaluation(name, dataset, kept, time.perf_counter() - start)


# ---------------------------------------------------------------- base vs fine-tuned


@dataclass
class Comparison:
    """The base and the fine-tuned model on the same records."""

    base: Evaluation
    tuned: Evaluation

    def rows(self) -> list[dict[str, Any]]:
        """One row per headline metric: base, fine-tuned, change."""
        base, tuned = self.base.scores(), self.tuned.scores()
        return [{"metric": k, "base": base[k], "fine-tuned": tuned[k], "change": tuned[k] - base[k]} for k in tuned]

    def table(self):
        """The rows as a pandas DataFrame (indexed by metric)."""
        import pandas as pd

        return pd.DataFrame(self.rows()).set_index("metric")

    def changes(self) -> dict[str, dict[str, list[int]]]:
        """Per task, the example indices where the fine-tune got ``worse``, ``better`` or stayed the ``same`` (biggest changes first)."""
        out = {}
        for name, tuned in self.tuned.tasks.items():
            sign = -1 if tuned.kind == "text" else 1  # perplexity: lower is better
            deltas = [sign * (t - b) for b, t in zip(self.base.tasks[name].example_scores(), tuned.example_scores())]
            out[name] = {"worse": sorted((i for i, d in enumerate(deltas) if d < 0), key=lambda i: deltas[i]),
                         "better": sorted((i for i, d in enumerate(deltas) if d > 0), key=lambda i: -deltas[i]),
                         "same": [i for i, d in enumerate(deltas) if d == 0]}
        return out

    def examples(self, n: int = 3) -> list[dict[str, Any]]:
        """Side-by-side examples per task: up to ``n`` where the fine-tune got worse, ``n`` better, ``n`` unchanged."""
        out = []
        for name, groups in self.changes().items():
            base, tuned = self.base.tasks[name], self.tuned.tasks[name]
            for change, indices in groups.items():
                out += [{"task": name, "change": change, "input": prompt_preview(tuned.prompts[i]),
                         "reference": prompt_preview(tuned.references[i], 120), "base": base.shown_predictions()[i],
                         "fine-tuned": tuned.shown_predictions()[i]} for i in indices[:n]]
        return out

    def counts(self) -> dict[str, dict[str, int]]:
        """Per task: how many examples got worse, better or stayed the same."""
        return {name: {change: len(indices) for change, indices in groups.items()} for name, groups in self.changes().items()}

    def to_dict(self) -> dict[str, Any]:
        return {"base": self.base.to_dict(), "fine_tuned": self.tuned.to_dict(), "comparison": self.rows(),
                "changes": self.counts(), "examples": self.examples()}

    def summary(self) -> str:
        rows = self.rows()
        width = max((len(r["metric"]) for r in rows), default=6)
        head = f"{'metric':<{width}}  {'base':>8}  {'tuned':>8}  {'change':>8}"
        return "\n".join([head, *(f"{r['metric']:<{width}}  {r['base']:8.4f}  {r['fine-tuned']:8.4f}  {r['change']:+8.4f}" for r in rows)])

    def to_markdown(self) -> str:
        lines = [f"# {self.tuned.model} vs its base model", "", f"- test data: `{self.tuned.dataset}`", "",
                 markdown_table(["metric", "base", "fine-tuned", "change"],
                           [[r["metric"], f"{r['base']:.4f}", f"{r['fine-tuned']:.4f}", f"{r['change']:+.4f}"] for r in self.rows()]),
                 "", "## Changes per example", "",
                 markdown_table(["task", "worse", "better", "same"], [[t, c["worse"], c["better"], c["same"]] for t, c in self.counts().items()]),
                 "", "## Side-by-side examples", "",
                 markdown_table(["task", "change", "input", "reference", "base", "fine-tuned"], [list(e.values()) for e in self.examples()])]
        return "\n".join(lines) + "\n"


def compare(model, tokenizer, records: Sequence[dict[str, Any]], base_model=None, name: str = "fine-tuned", **kwargs) -> Comparison:
    """Evaluate the base and the fine-tuned model on the same records (same arguments as :func:`evaluate_model`).

    For a ``PeftModel`` the base is the same model under ``with model.disable_adapter():`` — no
    second copy in memory; for a merged or fully fine-tuned model, pass ``base_model``.
    """
    if base_model is None and not hasattr(model, "disable_adapter"):
        raise CourseError("Comparing with the base needs a PeftModel (adapter) or an explicit base_model.",
                          "pass base_model=load_model(<base name>), or compare an adapter.")
    if base_model is None:
        with adapter_disabled(model):
            base = evaluate_model(model, tokenizer, records, name="base", **kwargs)
    else:
        base = evaluate_model(base_model, tokenizer, records, name="base", **kwargs)
    return Comparison(base, evaluate_model(model, tokenizer, records, name=name, **kwargs))
