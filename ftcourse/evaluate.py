"""Evaluate models: batched deterministic generation, classification, and metrics.

Generation is greedy by default and left-padded (decoder-only models continue from
the right edge); classification can be constrained to the label set.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from ftcourse.data import IGNORE_INDEX, prompt_ids, tokenize_text
from ftcourse.errors import CourseError

Messages = Sequence[dict[str, str]]


def _device(model) -> torch.device:
    return next(model.parameters()).device


def _autocast(model):
    """bf16 autocast on CPUs that support it (same numerics as training), else a no-op."""
    from ftcourse.hardware import detect_environment

    env = detect_environment()
    enabled = _device(model).type == "cpu" and env.bf16
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled)


class LabelTrie:
    """Allowed next tokens so that generation can only spell one of the labels, then EOS."""

    def __init__(self, tokenizer, labels: Sequence[str]):
        self.eos = tokenizer.eos_token_id
        self.sequences = {label: tokenizer(label, add_special_tokens=False)["input_ids"] for label in labels}
        self.max_new_tokens = max(len(s) for s in self.sequences.values()) + 1

    def allowed(self, generated: Sequence[int]) -> list[int]:
        n = len(generated)
        if n and generated[-1] == self.eos:
            return [self.eos]
        nxt = {seq[n] for seq in self.sequences.values() if len(seq) > n and list(seq[:n]) == list(generated)}
        done = any(list(seq) == list(generated) for seq in self.sequences.values())
        return sorted(nxt | ({self.eos} if done else set())) or [self.eos]


@torch.no_grad()
def generate(
    model,
    tokenizer,
    prompts: Sequence[Messages],
    max_new_tokens: int = 64,
    batch_size: int = 16,
    labels: Sequence[str] | None = None,
    progress: bool = True,
    desc: str = "Generating",
) -> list[str]:
    """Greedy answers to chat prompts (lists of messages, without the answer).

    With ``labels``, decoding is constrained so that each answer is exactly one label.
    """
    trie = LabelTrie(tokenizer, labels) if labels else None
    if trie:
        max_new_tokens = trie.max_new_tokens
    device = _device(model)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    model.eval()
    answers: list[str] = []
    order = sorted(range(len(prompts)), key=lambda i: -len(prompt_ids(tokenizer, prompts[i])))  # less padding
    encoded = {i: prompt_ids(tokenizer, prompts[i]) for i in order}
    results: dict[int, str] = {}
    batches = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    for batch in tqdm(batches, desc=desc, disable=not progress, leave=False):
        width = max(len(encoded[i]) for i in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, i in enumerate(batch):
            seq = encoded[i]
            ids[row, width - len(seq) :] = torch.tensor(seq)
            mask[row, width - len(seq) :] = 1
        kwargs: dict[str, Any] = {}
        if trie:
            kwargs["prefix_allowed_tokens_fn"] = lambda _b, sent: trie.allowed(sent[width:].tolist())
        with _autocast(model):
            out = model.generate(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=pad,
                eos_token_id=tokenizer.eos_token_id,
                **kwargs,
            )
        for row, i in enumerate(batch):
            results[i] = tokenizer.decode(out[row, width:], skip_special_tokens=True).strip()
    answers = [results[i] for i in range(len(prompts))]
    return answers


def match_label(answer: str, labels: Sequence[str]) -> str | None:
    """The label an unconstrained answer names: an exact match, else the first label mentioned."""
    text = answer.strip().lower()
    for label in labels:
        if text == label.lower():
            return label
    hits = [(text.find(label.lower()), label) for label in labels if label.lower() in text]
    return min(hits)[1] if hits else None


def classify(
    model,
    tokenizer,
    prompts: Sequence[Messages],
    labels: Sequence[str],
    constrained: bool = True,
    batch_size: int = 16,
    progress: bool = True,
) -> list[str | None]:
    """Predict one label per prompt by generation; unconstrained answers that name no label give ``None``."""
    answers = generate(model, tokenizer, prompts, batch_size=batch_size, labels=labels if constrained else None,
                       max_new_tokens=16, progress=progress, desc="Classifying")
    return [match_label(a, labels) for a in answers]


# ---------------------------------------------------------------- metrics


def accuracy(predictions: Sequence[Any], references: Sequence[Any]) -> float:
    _same_length(predictions, references)
    return sum(p == r for p, r in zip(predictions, references)) / len(references) if references else 0.0


def _same_length(predictions: Sequence, references: Sequence) -> None:
    if len(predictions) != len(references):
        raise CourseError(f"{len(predictions)} predictions but {len(references)} references.", "evaluate the same examples you predicted.")


def per_label_scores(predictions: Sequence[Any], references: Sequence[Any], labels: Sequence[str]) -> dict[str, dict[str, float]]:
    """Precision, recall, F1 and support per label."""
    _same_length(predictions, references)
    scores = {}
    for label in labels:
        tp = sum(p == label and r == label for p, r in zip(predictions, references))
        fp = sum(p == label and r != label for p, r in zip(predictions, references))
        fn = sum(p != label and r == label for p, r in zip(predictions, references))
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        scores[label] = {"precision": precision, "recall": recall, "f1": f1, "support": tp + fn}
    return scores


def classification_metrics(predictions: Sequence[Any], references: Sequence[Any], labels: Sequence[str]) -> dict[str, Any]:
    """Accuracy and macro precision/recall/F1 (over labels present in the references), plus per-label scores."""
    per_label = per_label_scores(predictions, references, labels)
    present = [label for label in labels if per_label[label]["support"] > 0] or list(labels)
    macro = {k: sum(per_label[label][k] for label in present) / len(present) for k in ("precision", "recall", "f1")}
    return {
        "accuracy": accuracy(predictions, references),
        "precision": macro["precision"],
        "recall": macro["recall"],
        "f1": macro["f1"],
        "per_label": per_label,
        "n": len(references),
    }


def confusion_matrix(predictions: Sequence[Any], references: Sequence[Any], labels: Sequence[str]) -> list[list[int]]:
    """Rows: true label; columns: predicted label, plus a last column for answers that named no label."""
    _same_length(predictions, references)
    index = {label: i for i, label in enumerate(labels)}
    matrix = [[0] * (len(labels) + 1) for _ in labels]
    for p, r in zip(predictions, references):
        if r in index:
            matrix[index[r]][index.get(p, len(labels))] += 1
    return matrix


@torch.no_grad()
def perplexity(model, tokenizer, texts: Sequence[str], max_length: int = 256, batch_size: int = 8, progress: bool = True) -> float:
    """Token-level perplexity of ``texts`` (cut into blocks of ``max_length`` tokens)."""
    blocks = tokenize_text(tokenizer, texts, max_length)
    if not blocks:
        raise CourseError("No text to compute perplexity on.", "pass non-empty texts.")
    device = _device(model)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    model.eval()
    total_nll, total_tokens = 0.0, 0
    for start in tqdm(range(0, len(blocks), batch_size), desc="Perplexity", disable=not progress, leave=False):
        chunk = blocks[start : start + batch_size]
        width = max(len(b["input_ids"]) for b in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        labels = torch.full((len(chunk), width), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, b in enumerate(chunk):
            n = len(b["input_ids"])
            ids[row, :n], labels[row, :n], mask[row, :n] = torch.tensor(b["input_ids"]), torch.tensor(b["labels"]), 1
        with _autocast(model):
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
        shifted = labels[:, 1:].to(device)
        nll = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)), shifted.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum")
        total_nll += nll.item()
        total_tokens += int((shifted != IGNORE_INDEX).sum())
    return math.exp(total_nll / total_tokens)


def label_distribution(values: Sequence[Any]) -> dict[Any, int]:
    return dict(Counter(values).most_common())
