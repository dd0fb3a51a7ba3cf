"""Evaluate models: batched deterministic generation, classification, metrics, base-vs-fine-tuned reports.

Generation is greedy by default and left-padded (decoder-only models continue from the right edge);
classification is constrained to the label set, scored by label likelihood, or done by a
sequence-classification head. Metrics come from one registry (:data:`METRICS`): an unknown name is
an error that lists the valid ones. :func:`evaluate` scores one model on processed records,
:func:`compare` scores the base and the fine-tuned model on the same records, and
:func:`write_report` saves either as JSON and Markdown.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ftcourse.data import INTENT_LABELS, Dataset, normalize_text, prompt_ids, tokenize_text
from ftcourse.errors import CourseError
from ftcourse.fileio import atomic_write_json, atomic_write_text

Messages = Sequence[dict[str, str]]
#: A prompt is a chat (messages without the answer, formatted with the model's template) or plain text.
Prompt = Messages | str
KINDS = ("classification", "extraction", "generation", "text")
REPORT_MARK = "ftcourse_report"


def _device(model) -> torch.device:
    return next(model.parameters()).device


def _autocast(model):
    """bf16 autocast on CPUs that support it (same numerics as training), else a no-op.

    Used for passes over whole blocks of tokens (perplexity, the classification head), where it is
    faster. Generation and label scoring run without it: autocast re-casts every frozen weight to
    bf16 at every call, which makes token-by-token decoding several times slower than float32.
    """
    from ftcourse.hardware import detect_environment

    env = detect_environment()
    enabled = _device(model).type == "cpu" and env.bf16
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled)


def _pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def encode_prompt(tokenizer, prompt: Prompt) -> list[int]:
    """Token ids of a prompt: chat messages through the template (see :func:`ftcourse.data.prompt_ids`), text as is."""
    if isinstance(prompt, str):
        return list(tokenizer(prompt)["input_ids"])
    return prompt_ids(tokenizer, prompt)


def prompt_preview(prompt: Prompt, limit: int = 160) -> str:
    """The part of a prompt a reader needs: the last user message (or the text), shortened."""
    text = prompt if isinstance(prompt, str) else next((m["content"] for m in reversed(prompt) if m["role"] == "user"), prompt[-1]["content"])
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


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
    prompts: Sequence[Prompt],
    max_new_tokens: int = 64,
    batch_size: int = 16,
    labels: Sequence[str] | None = None,
    progress: bool = True,
    desc: str = "Generating",
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int = 42,
) -> list[str]:
    """Answers to prompts (chat messages without the answer, or plain text to continue), in input order.

    Greedy by default (deterministic); ``temperature > 0`` samples, seeded by ``seed``. Prompts are
    batched by length and left-padded. With ``labels``, decoding is constrained so that each answer
    is exactly one label.
    """
    trie = LabelTrie(tokenizer, labels) if labels else None
    if trie:
        max_new_tokens = trie.max_new_tokens
    device = _device(model)
    pad = _pad_id(tokenizer)
    model.eval()
    encoded = [encode_prompt(tokenizer, p) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))  # similar lengths share a batch: less padding
    sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p} if temperature > 0 else {"do_sample": False}
    if temperature > 0:
        torch.manual_seed(seed)
    results: dict[int, str] = {}
    if uses_prefix_cache(model):
        for i in tqdm(order, desc=desc, disable=not progress, leave=False):
            new = _decode_without_cache(model, encoded[i], max_new_tokens, tokenizer.eos_token_id, trie, temperature, top_p)
            results[i] = tokenizer.decode(new, skip_special_tokens=True).strip()
        return [results[i] for i in range(len(prompts))]
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
        out = model.generate(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            max_new_tokens=max_new_tokens,
            pad_token_id=pad,
            eos_token_id=tokenizer.eos_token_id,
            **sampling,
            **kwargs,
        )
        for row, i in enumerate(batch):
            results[i] = tokenizer.decode(out[row, width:], skip_special_tokens=True).strip()
    return [results[i] for i in range(len(prompts))]


def uses_prefix_cache(model) -> bool:
    """Whether ``model`` is a prefix-tuning model (with the adapter disabled, its forward is the base model's).

    Prefix tuning puts its virtual tokens into the key/value cache; ``model.generate`` (transformers 5.24,
    peft 0.21) starts from a cache of its own, so the prefix is silently ignored and the answers are the base
    model's. Such models are decoded token by token with full forward passes instead.
    """
    return getattr(getattr(model, "active_peft_config", None), "peft_type", None) == "PREFIX_TUNING"


def _decode_without_cache(model, prompt: list[int], max_new_tokens: int, eos: int, trie: LabelTrie | None,
                          temperature: float, top_p: float) -> list[int]:
    """New token ids after ``prompt``: one full forward pass per token, with the logits processors ``generate`` uses."""
    from transformers import LogitsProcessorList, PrefixConstrainedLogitsProcessor, TemperatureLogitsWarper, TopPLogitsWarper

    processors = LogitsProcessorList()
    if trie:
        processors.append(PrefixConstrainedLogitsProcessor(lambda _b, sent: trie.allowed(sent[len(prompt):].tolist()), num_beams=1))
    if temperature > 0:
        processors += [TemperatureLogitsWarper(temperature), TopPLogitsWarper(top_p)]
    ids = torch.tensor([prompt], device=_device(model))
    for _ in range(max_new_tokens):
        scores = processors(ids, model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[:, -1].float())
        token = torch.multinomial(scores.softmax(-1), 1) if temperature > 0 else scores.argmax(-1, keepdim=True)
        ids = torch.cat([ids, token], dim=1)
        if token.item() == eos:
            break
    return ids[0, len(prompt):].tolist()


def match_label(answer: str, labels: Sequence[str]) -> str | None:
    """The label an unconstrained answer names: an exact match, else the first label mentioned."""
    text = answer.strip().lower()
    for label in labels:
        if text == label.lower():
            return label
    hits = [(text.find(label.lower()), label) for label in labels if label.lower() in text]
    return min(hits)[1] if hits else None


@torch.no_grad()
def label_log_likelihoods(model, tokenizer, prompts: Sequence[Prompt], labels: Sequence[str], progress: bool = True) -> list[list[float]]:
    """Log-probability of each label (its tokens, then EOS) as the answer to each prompt.

    Each prompt runs once; its key/value cache is then repeated for all labels, which are scored in one batch.
    """
    config = getattr(model, "active_peft_config", None)
    if config is not None and config.is_prompt_learning:
        raise CourseError("Scoring labels by likelihood reuses the prompt's cache, which prompt-learning adapters change.",
                          "classify prompt-tuning, P-Tuning or prefix-tuning models with by='generation'.")
    device = _device(model)
    answers = [tokenizer(label, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for label in labels]
    width = max(len(a) for a in answers)
    cont = torch.full((len(labels), width), _pad_id(tokenizer), dtype=torch.long)
    cont_mask = torch.zeros((len(labels), width), dtype=torch.long)
    for row, seq in enumerate(answers):
        cont[row, : len(seq)], cont_mask[row, : len(seq)] = torch.tensor(seq), 1
    model.eval()
    scores = []
    for prompt in tqdm(prompts, desc="Scoring labels", disable=not progress, leave=False):
        ids = torch.tensor([encode_prompt(tokenizer, prompt)], device=device)
        out = model(input_ids=ids, use_cache=True)
        cache = out.cache
        cache.batch_repeat_interleave(len(labels))
        mask = torch.cat([torch.ones((len(labels), ids.shape[1]), dtype=torch.long), cont_mask], dim=1)
        nxt = model(input_ids=cont.to(device), attention_mask=mask.to(device), cache=cache).logits
        first = out.logits[0, -1].float().log_softmax(-1)
        rest = nxt.float().log_softmax(-1)
        scores.append([first[seq[0]].item() + sum(rest[row, j - 1, seq[j]].item() for j in range(1, len(seq)))
                       for row, seq in enumerate(answers)])
    return scores


def classify(
    model,
    tokenizer,
    prompts: Sequence[Prompt],
    labels: Sequence[str],
    constrained: bool = True,
    batch_size: int = 16,
    progress: bool = True,
    by: str = "generation",
) -> list[str | None]:
    """Predict one label per prompt.

    ``by="generation"``: greedy decoding, constrained to the labels (or free, when ``constrained=False``;
    answers that name no label give ``None``). ``by="likelihood"``: the label with the highest log-probability.
    """
    if by == "likelihood":
        return [labels[max(range(len(labels)), key=row.__getitem__)] for row in label_log_likelihoods(model, tokenizer, prompts, labels, progress)]
    if by != "generation":
        raise CourseError(f"Unknown classification method by={by!r}.", "use 'generation' or 'likelihood'.")
    answers = generate(model, tokenizer, prompts, batch_size=batch_size, labels=labels if constrained else None,
                       max_new_tokens=16, progress=progress, desc="Classifying")
    return [match_label(a, labels) for a in answers]


# ---------------------------------------------------------------- classification with a head


def example_text(record: dict[str, Any]) -> str:
    """The input text of a raw (``text``) or processed (last user message) classification record."""
    if "text" in record:
        return record["text"]
    return next(m["content"] for m in reversed(record["messages"]) if m["role"] == "user")


def _head_batch(tokenizer, texts: Sequence[str], max_length: int, device) -> dict[str, torch.Tensor]:
    batch = tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    return {k: v.to(device) for k, v in batch.items()}


def train_classification_head(
    records: Sequence[dict[str, Any]],
    labels: Sequence[str],
    model: str = "embedded",
    steps: int = 30,
    batch_size: int = 8,
    learning_rate: float = 1e-3,
    lora_r: int = 8,
    max_length: int = 128,
    seed: int = 42,
    progress: bool = True,
):
    """Train a classification head (``AutoModelForSequenceClassification`` on the same base) plus LoRA on q/v.

    ``records`` are raw (``text``/``label``) or processed classification records. Returns
    ``(model, tokenizer, losses)``; predict with :func:`head_predict`.
    """
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForSequenceClassification, set_seed

    from ftcourse.models import default_dtype, load_tokenizer, resolve_model

    unknown = sorted({r["label"] for r in records} - set(labels))
    if unknown:
        raise CourseError(f"Training labels {unknown} are not in the label set.", f"use labels from: {', '.join(labels)}.")
    set_seed(seed)
    tokenizer = load_tokenizer(model)
    head = AutoModelForSequenceClassification.from_pretrained(
        resolve_model(model), num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)}, pad_token_id=tokenizer.pad_token_id, dtype=default_dtype(),
    )
    if torch.cuda.is_available():
        head = head.to("cuda")
    head = get_peft_model(head, LoraConfig(task_type=TaskType.SEQ_CLS, r=lora_r, lora_alpha=2 * lora_r, target_modules=["q_proj", "v_proj"]))
    device = _device(head)
    optimizer = torch.optim.AdamW([p for p in head.parameters() if p.requires_grad], lr=learning_rate)
    generator = torch.Generator().manual_seed(seed)
    texts, targets = [example_text(r) for r in records], [labels.index(r["label"]) for r in records]
    losses = []
    head.train()
    order: list[int] = []
    for _ in tqdm(range(steps), desc="Training the head", disable=not progress, leave=False):
        if len(order) < batch_size:
            order += torch.randperm(len(texts), generator=generator).tolist()
        batch, order = order[:batch_size], order[batch_size:]
        inputs = _head_batch(tokenizer, [texts[i] for i in batch], max_length, device)
        with _autocast(head):
            loss = head(**inputs, labels=torch.tensor([targets[i] for i in batch], device=device)).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    head.eval()
    return head, tokenizer, losses


@torch.no_grad()
def head_predict(model, tokenizer, texts: Sequence[str], batch_size: int = 16, max_length: int = 128) -> list[str]:
    """Labels a classification head predicts for ``texts`` (the argmax of its logits)."""
    names = model.config.id2label
    predictions = []
    for start in range(0, len(texts), batch_size):
        with _autocast(model):
            logits = model(**_head_batch(tokenizer, texts[start : start + batch_size], max_length, _device(model))).logits
        predictions += [names[int(i)] for i in logits.argmax(-1)]
    return predictions


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


def exact_match(predictions: Sequence[Any], references: Sequence[Any]) -> float:
    """Share of predictions equal to their reference after lower-casing and collapsing white space."""
    _same_length(predictions, references)
    same = [p is not None and normalize_text(str(p)) == normalize_text(str(r)) for p, r in zip(predictions, references)]
    return sum(same) / len(same) if same else 0.0


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def _f1(overlap: int, n_pred: int, n_ref: int) -> float:
    if not overlap:
        return 0.0
    precision, recall = overlap / n_pred, overlap / n_ref
    return 2 * precision * recall / (precision + recall)


def _lcs(a: Sequence[str], b: Sequence[str]) -> int:
    row = [0] * (len(b) + 1)
    for x in a:
        prev = 0
        for j, y in enumerate(b, start=1):
            prev, row[j] = row[j], prev + 1 if x == y else max(row[j], row[j - 1])
    return row[-1]


def rouge_scores(prediction: str, reference: str) -> dict[str, float]:
    """ROUGE-1 (word overlap) and ROUGE-L (longest common word subsequence) F1 of one answer."""
    pred, ref = _words(prediction), _words(reference)
    overlap = sum((Counter(pred) & Counter(ref)).values())
    return {"rouge1": _f1(overlap, len(pred), len(ref)), "rougeL": _f1(_lcs(pred, ref), len(pred), len(ref))}


def rouge(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Mean ROUGE-1 and ROUGE-L F1 over examples."""
    _same_length(predictions, references)
    scores = [rouge_scores(p, r) for p, r in zip(predictions, references)]
    return {key: sum(s[key] for s in scores) / len(scores) if scores else 0.0 for key in ("rouge1", "rougeL")}


def parse_json_object(text: str) -> dict[str, Any] | None:
    """The JSON object an answer holds (a surrounding Markdown code fence is allowed), else ``None``."""
    body = re.sub(r"^```(?:json)?\s*|\s*```$", "", text.strip())
    try:
        value = json.loads(body)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _same_value(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is b
    return normalize_text(str(a)) == normalize_text(str(b))


def json_field_scores(prediction: str, reference: str) -> dict[str, bool]:
    """For each field of the reference object: does the predicted object hold the same value?"""
    expected, got = parse_json_object(reference) or {}, parse_json_object(prediction)
    return {key: got is not None and key in got and _same_value(got[key], value) for key, value in expected.items()}


def json_metrics(predictions: Sequence[str], references: Sequence[str]) -> dict[str, Any]:
    """Valid-JSON rate, accuracy per field of the reference objects, and the share with every field right."""
    _same_length(predictions, references)
    rows = [json_field_scores(p, r) for p, r in zip(predictions, references)]
    fields = list(dict.fromkeys(key for row in rows for key in row))
    n = len(rows) or 1
    return {
        "valid_json": sum(parse_json_object(p) is not None for p in predictions) / n,
        "field_accuracy": {key: sum(row.get(key, False) for row in rows) / n for key in fields},
        "all_fields": sum(bool(row) and all(row.values()) for row in rows) / n,
    }


@torch.no_grad()
def text_nll(model, tokenizer, texts: Sequence[str], max_length: int = 256, batch_size: int = 8, progress: bool = True) -> list[tuple[float, int]]:
    """Summed negative log-likelihood and number of predicted tokens of each text (cut into blocks of ``max_length``)."""
    from ftcourse.train import collate

    blocks = [(i, b) for i, text in enumerate(texts) for b in tokenize_text(tokenizer, [text], max_length)]
    if not blocks:
        raise CourseError("No text to compute perplexity on.", "pass non-empty texts.")
    device = _device(model)
    model.eval()
    totals = [[0.0, 0] for _ in texts]
    for start in tqdm(range(0, len(blocks), batch_size), desc="Perplexity", disable=not progress, leave=False):
        chunk = blocks[start : start + batch_size]
        batch = collate([b for _, b in chunk], _pad_id(tokenizer))
        with _autocast(model):
            logits = model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device)).logits.float()
        shifted = batch["labels"][:, 1:].to(device)
        nll = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), shifted, ignore_index=-100, reduction="none").sum(1)
        for (i, _), row_nll, count in zip(chunk, nll.tolist(), (shifted != -100).sum(1).tolist()):
            totals[i][0] += row_nll
            totals[i][1] += count
    return [(nll, n) for nll, n in totals]


def _pooled_perplexity(per_text: Sequence[tuple[float, int]]) -> float:
    return math.exp(sum(n for n, _ in per_text) / max(1, sum(c for _, c in per_text)))


def perplexity(model, tokenizer, texts: Sequence[str], max_length: int = 256, batch_size: int = 8, progress: bool = True) -> float:
    """Token-level perplexity of ``texts`` (cut into blocks of ``max_length`` tokens)."""
    return _pooled_perplexity(text_nll(model, tokenizer, texts, max_length, batch_size, progress))


def label_distribution(values: Sequence[Any]) -> dict[Any, int]:
    return dict(Counter(values).most_common())


def generation_checks(answers: Sequence[str], labels: Sequence[str] | None = None, max_words: int = 60) -> dict[str, float]:
    """LLM-free sanity checks of free generations: empty, label validity, length, repetition (looping).

    ``repeated_trigrams``: mean share of an answer's word 3-grams that repeat an earlier one;
    ``looping``: share of answers with a 3-gram seen three times or more.
    """
    def trigrams(text: str) -> list[tuple[str, ...]]:
        words = _words(text)
        return [tuple(words[i : i + 3]) for i in range(len(words) - 2)]

    n = len(answers) or 1
    grams = [trigrams(a) for a in answers]
    out = {
        "empty": sum(not a.strip() for a in answers) / n,
        "mean_words": sum(len(_words(a)) for a in answers) / n,
        "too_long": sum(len(_words(a)) > max_words for a in answers) / n,
        "repeated_trigrams": sum((len(g) - len(set(g))) / len(g) if g else 0.0 for g in grams) / n,
        "looping": sum(bool(g) and Counter(g).most_common(1)[0][1] >= 3 for g in grams) / n,
    }
    if labels is not None:
        out["valid_label"] = sum(a.strip() in labels for a in answers) / n
        out["names_a_label"] = sum(match_label(a, labels) is not None for a in answers) / n
    return out


# ---------------------------------------------------------------- the metric registry


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
        return [_pooled_perplexity([p]) for p in self.predictions]

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
        Metric("f1", ("classification",), "macro F1 over the labels present, plus precision/recall/F1 per label",
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
        Metric("perplexity", ("text",), "exp of the mean per-token negative log-likelihood", lambda t: {"perplexity": _pooled_perplexity(t.predictions)}),
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


def infer_labels(references: Sequence[str]) -> list[str]:
    """A label set from the references: the course's intents (in its order) when they are a subset, else sorted."""
    found = set(references)
    return list(INTENT_LABELS) if found <= set(INTENT_LABELS) else sorted(found)


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
        raise CourseError("No records to evaluate.", "check the test file and --max_examples.")
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
                 f"- time: {self.seconds:.1f} s", "", _md_table(["metric", "value"], [[k, f"{v:.4f}"] for k, v in self.scores().items()])]
        for task in self.tasks.values():
            if "per_label" in task.metrics:
                lines += ["", f"## Per label ({task.name})", "",
                          _md_table(["label", "precision", "recall", "f1", "support"],
                                    [[label, *(f"{s[k]:.3f}" for k in ("precision", "recall", "f1")), s["support"]] for label, s in task.metrics["per_label"].items()])]
            wrong = [i for i, s in enumerate(task.example_scores()) if task.kind != "text" and s < 1]
            if wrong:
                lines += ["", f"## Examples not fully right ({task.name}, first {min(5, len(wrong))} of {len(wrong)})", "",
                          _md_table(["input", "reference", "prediction"],
                                    [[prompt_preview(task.prompts[i]), task.references[i], task.shown_predictions()[i]] for i in wrong[:5]])]
        return "\n".join(lines) + "\n"


def evaluate(
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
                 _md_table(["metric", "base", "fine-tuned", "change"],
                           [[r["metric"], f"{r['base']:.4f}", f"{r['fine-tuned']:.4f}", f"{r['change']:+.4f}"] for r in self.rows()]),
                 "", "## Changes per example", "",
                 _md_table(["task", "worse", "better", "same"], [[t, c["worse"], c["better"], c["same"]] for t, c in self.counts().items()]),
                 "", "## Side-by-side examples", "",
                 _md_table(["task", "change", "input", "reference", "base", "fine-tuned"], [list(e.values()) for e in self.examples()])]
        return "\n".join(lines) + "\n"


@contextlib.contextmanager
def adapter_disabled(model) -> Iterator:
    """``model.disable_adapter()`` that also keeps which parameters are trainable (PEFT makes the adapter trainable on exit)."""
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    try:
        with model.disable_adapter():
            yield model
    finally:
        for name, p in model.named_parameters():
            p.requires_grad_(name in trainable)


def compare(model, tokenizer, records: Sequence[dict[str, Any]], base_model=None, name: str = "fine-tuned", **kwargs) -> Comparison:
    """Evaluate the base and the fine-tuned model on the same records (same arguments as :func:`evaluate`).

    For a ``PeftModel`` the base is the same model under ``with model.disable_adapter():`` — no
    second copy in memory; for a merged or fully fine-tuned model, pass ``base_model``.
    """
    if base_model is None and not hasattr(model, "disable_adapter"):
        raise CourseError("Comparing with the base needs a PeftModel (adapter) or an explicit base_model.",
                          "pass base_model=load_model(<base name>), or compare an adapter.")
    if base_model is None:
        with adapter_disabled(model):
            base = evaluate(model, tokenizer, records, name="base", **kwargs)
    else:
        base = evaluate(base_model, tokenizer, records, name="base", **kwargs)
    return Comparison(base, evaluate(model, tokenizer, records, name=name, **kwargs))


# ---------------------------------------------------------------- reports


def _md_cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows])


def write_report(result: Evaluation | Comparison, folder: str | Path, name: str = "evaluation") -> list[Path]:
    """Write ``<name>.json`` and ``<name>.md`` into ``folder`` atomically; returns both paths.

    An earlier course report of that name is replaced; any other existing file is left alone (an error).
    """
    folder = Path(folder)
    json_path, md_path = folder / f"{name}.json", folder / f"{name}.md"
    for path in (json_path, md_path):
        if path.exists() and not _is_report(path):
            raise CourseError(f"{path} exists and is not a report written by ftcourse; not overwriting it.",
                              "choose another --report_dir (or report name), or move that file away.")
    atomic_write_json(json_path, {REPORT_MARK: type(result).__name__.lower(), **result.to_dict()})
    atomic_write_text(md_path, f"<!-- {REPORT_MARK} -->\n{result.to_markdown()}")
    return [json_path, md_path]


def _is_report(path: Path) -> bool:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    if path.suffix == ".md":
        return text.startswith(f"<!-- {REPORT_MARK} -->")
    try:
        return REPORT_MARK in json.loads(text)
    except (ValueError, TypeError):
        return False


# ---------------------------------------------------------------- files (scripts/evaluate_model.py)


def resolve_model_path(path: str | Path) -> tuple[str, str | None]:
    """What to load for ``--model_path``, and a note when it was chosen from a folder of runs.

    A model or adapter folder, ``embedded`` or a Hub id is used as given; a folder of runs
    (subfolders with ``ftcourse_run.json``, like ``models/fine_tuned/``) gives its most recently written run.
    """
    from ftcourse.train import RUN_RECORD

    folder = Path(path).expanduser()
    if not folder.is_dir() or (folder / "config.json").is_file() or (folder / "adapter_config.json").is_file():
        return str(path), None
    runs = sorted((p for p in folder.iterdir() if (p / RUN_RECORD).is_file()), key=lambda p: (p / RUN_RECORD).stat().st_mtime)
    if not runs:
        raise CourseError(f"{folder} holds no model, adapter or saved runs.",
                          "pass a run folder (with adapter_config.json), a model folder, a folder of runs, or 'embedded'; train one with scripts/fine_tune_model.py.")
    others = f" (of {len(runs)} runs there)" if len(runs) > 1 else ""
    return str(runs[-1]), f"Using the most recently written run in {folder}: {runs[-1].name}{others}"


def classification_labels(data: Dataset, search: Sequence[Path]) -> tuple[list[str], str]:
    """The label set of a classification file, and where it came from.

    The first ``dataset_info.json`` in ``search`` whose labels cover the file's (the adapter's
    training data), else the file's own labels (:func:`infer_labels`).
    """
    found = {r["label"] for r in data.records}
    for info in search:
        try:
            labels = json.loads(info.read_text(encoding="utf-8")).get("labels")
        except (OSError, ValueError):
            continue
        if labels and found <= set(labels):
            return list(labels), str(info)
    return infer_labels(sorted(found)), "the test file"


def load_eval_records(test_dataset: str | Path, run_dir: str | Path | None = None) -> tuple[list[dict[str, Any]], list[str] | None, str]:
    """Processed records of any course-format file, its label set (classification) and where the labels came from.

    Labels are looked up in ``dataset_info.json`` of the run, next to the test file, then in
    ``data/processed/`` (where the original course's pipeline prepares the training data).
    """
    from ftcourse import paths
    from ftcourse.data import load_dataset, processed_records

    test_dataset = Path(test_dataset)
    data = load_dataset(test_dataset)
    labelled = data.fmt == "classification" or all("label" in r for r in data.records)
    if not labelled:
        return processed_records(data), None, ""
    search = [Path(run_dir) / "dataset_info.json"] if run_dir else []
    search += [test_dataset.parent / "dataset_info.json", paths.data_dir() / "processed" / "dataset_info.json"]
    labels, source = classification_labels(data, search)
    return processed_records(data, labels), labels, source


def evaluate_file(
    model_path: str,
    test_dataset: str,
    metrics: Sequence[str] | None = None,
    compare_base: bool = False,
    report_dir: str | None = None,
    batch_size: int = 16,
    max_examples: int | None = None,
    classify_by: str = "generation",
    progress: bool = True,
) -> tuple[Evaluation | Comparison, list[Path]]:
    """What ``scripts/evaluate_model.py`` does: load, evaluate (against the base when asked), print, write the report.

    The report goes to ``report_dir``, else the model's folder when ftcourse wrote it (a run or an
    export), else ``runs/evaluations/<model name>/``.
    """
    from ftcourse import paths
    from ftcourse.deploy import EXPORT_RECORD, exported_base
    from ftcourse.models import load_model, load_tokenizer
    from ftcourse.train import RUN_RECORD

    path, note = resolve_model_path(model_path)
    if note:
        print(note)
    folder = Path(path)
    records, labels, label_source = load_eval_records(test_dataset, folder if folder.is_dir() else None)
    if max_examples is not None:
        records = records[:max_examples]
    check_metrics(group_tasks(records, labels), metrics)  # before the (slow) model load
    print(f"Model: {path}")
    print(f"Test data: {test_dataset} ({len(records)} records)" + (f"; {len(labels)} labels, from {label_source}" if labels else ""))
    model, tokenizer = load_model(path), load_tokenizer(path)
    kwargs = dict(metrics=metrics, labels=labels, batch_size=batch_size, classify_by=classify_by, progress=progress, dataset=str(test_dataset))
    if compare_base:
        base = None if hasattr(model, "disable_adapter") else load_model(exported_base(folder))
        result: Evaluation | Comparison = compare(model, tokenizer, records, base_model=base, name=folder.name or path, **kwargs)
    else:
        result = evaluate(model, tokenizer, records, name=folder.name or path, **kwargs)
    print(result.summary())
    ours = folder.is_dir() and ((folder / RUN_RECORD).is_file() or (folder / EXPORT_RECORD).is_file())
    target = Path(report_dir) if report_dir else folder if ours else paths.runs_dir() / "evaluations" / re.sub(r"[^\w.-]+", "-", path).strip("-")
    written = write_report(result, target, f"evaluation_{Path(test_dataset).stem}")
    print("Report: " + ", ".join(map(str, written)))
    return result, written
