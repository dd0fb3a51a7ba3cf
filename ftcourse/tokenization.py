"""How a prompt becomes tokens: chat template or Alpaca prompt, completion-only labels, plain-text blocks, batches.

Every path that turns text into model input — training, evaluation, the pre-flight checks — goes through
this module, so that a prompt is tokenized the same way at training and at inference.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import torch

from ftcourse.errors import CourseError

__all__ = [
    "alpaca_prompt", "ALPACA_TEMPLATE", "ALPACA_TEMPLATE_NO_INPUT", "collate", "DEFAULT_MAX_SEQ_LENGTH", "IGNORE_INDEX",
    "earlier_assistant_spans", "length_stats", "prompt_ids", "show_masked", "token_lengths", "tokenize_messages", "tokenize_records",
    "tokenize_text", "uses_chat_template",
]

IGNORE_INDEX = -100
DEFAULT_MAX_SEQ_LENGTH = 256  # the smoke and cpu profiles' sequence length
ALPACA_TEMPLATE = "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
ALPACA_TEMPLATE_NO_INPUT = "### Instruction:\n{instruction}\n\n### Response:\n"


def uses_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def alpaca_prompt(messages: Sequence[dict[str, str]]) -> str:
    """The original course's Alpaca prompt for models without a chat template."""
    system = [m["content"] for m in messages if m["role"] == "system"]
    turns = [m for m in messages if m["role"] != "system"]
    if system:
        body = "\n".join(("" if m["role"] == "user" else "Assistant: ") + m["content"] for m in turns)
        return ALPACA_TEMPLATE.format(instruction="\n".join(system), input=body)
    *earlier, last = turns
    context = "\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in earlier)
    if context:
        return ALPACA_TEMPLATE.format(instruction=last["content"], input=context)
    return ALPACA_TEMPLATE_NO_INPUT.format(instruction=last["content"])


def prompt_ids(tokenizer, prompt_messages: Sequence[dict[str, str]]) -> list[int]:
    """Token ids of the prompt, exactly as generation sees it (chat template, or Alpaca prompt)."""
    if uses_chat_template(tokenizer):
        encoded = tokenizer.apply_chat_template(list(prompt_messages), add_generation_prompt=True, tokenize=True, return_dict=True)
        return list(encoded["input_ids"])
    ids = tokenizer(alpaca_prompt(prompt_messages), add_special_tokens=True)["input_ids"]
    return list(ids)


def tokenize_messages(tokenizer, messages: Sequence[dict[str, str]], max_length: int | None = None) -> dict[str, Any]:
    """Token ids and labels for one conversation: every assistant turn's content and its end-of-turn token are trained.

    The ids are the final answer's prompt as generation sees it, then the answer and EOS (a single-turn conversation
    is exactly that). With a chat template, each earlier assistant turn is found inside that prompt and trained too
    (TRL's ``assistant_only_loss``); system and user turns and the template's role headers stay masked. Without a
    chat template the Alpaca prompt folds earlier turns into its input, so only the final answer is trained.
    Returns ``input_ids``, ``labels`` (``-100`` where not trained) and ``truncated``.
    """
    if not messages or messages[-1]["role"] != "assistant":
        raise CourseError("The last message must be the assistant's answer (the training target).", "end each example with a message of role 'assistant'.")
    prompt = prompt_ids(tokenizer, messages[:-1])
    target = tokenizer(messages[-1]["content"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    ids = prompt + list(target)
    labels = [IGNORE_INDEX] * len(prompt) + list(target)
    if uses_chat_template(tokenizer):
        for start, end in earlier_assistant_spans(tokenizer, messages, prompt):
            labels[start:end] = ids[start:end]
    truncated = max_length is not None and len(ids) > max_length
    if truncated:
        ids, labels = ids[:max_length], labels[:max_length]
    return {"input_ids": ids, "labels": labels, "truncated": truncated}


def earlier_assistant_spans(tokenizer, messages: Sequence[dict[str, str]], prompt: Sequence[int]) -> list[tuple[int, int]]:
    """``(start, end)`` token positions of each assistant turn before the last one inside ``prompt`` (its content,
    plus the end-of-turn token when it is EOS), where the chat template renders that turn as generation produced it."""
    spans = []
    for i, message in enumerate(messages[:-1]):
        if message["role"] != "assistant":
            continue
        before = prompt_ids(tokenizer, messages[:i])
        content = tokenizer(message["content"], add_special_tokens=False)["input_ids"]
        end = len(before) + len(content)
        if list(prompt[: len(before)]) != before or list(prompt[len(before) : end]) != content:
            raise CourseError(
                f"The chat template does not render assistant turn #{i} of a conversation as the model generated it "
                "(it rewrites or drops earlier turns, as some templates do with reasoning), so that turn cannot be trained in place.",
                "split the conversation into one example per assistant turn (each ending with that turn), or train the final turn only.",
            )
        closed = end < len(prompt) and prompt[end] == tokenizer.eos_token_id
        spans.append((len(before), end + 1 if closed else end))
    return spans


def tokenize_text(tokenizer, texts: Sequence[str], max_length: int, packing: bool = False) -> list[dict[str, Any]]:
    """Plain text for continued pre-training: every token is trained.

    Each text is cut into blocks of ``max_length`` tokens; with ``packing`` the texts are
    first joined (EOS between them) so that every block but the last is full and no padding is needed.
    """
    docs = [tokenizer(t, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for t in texts]
    streams = [[tok for doc in docs for tok in doc]] if packing else docs
    blocks = []
    for stream in streams:
        for start in range(0, len(stream), max_length):
            block = stream[start : start + max_length]
            if len(block) > 1:
                blocks.append({"input_ids": block, "labels": list(block), "truncated": False})
    return blocks


def length_stats(examples: Sequence[dict[str, Any]], max_length: int | None = None) -> dict[str, float]:
    """Token-length statistics of tokenized examples, with the number and share truncated."""
    lengths = sorted(len(e["input_ids"]) for e in examples)
    n = len(lengths)
    if n == 0:
        return {"count": 0}
    truncated = sum(bool(e.get("truncated")) for e in examples)
    return {
        "count": n,
        "mean": round(sum(lengths) / n, 1),
        "p50": lengths[n // 2],
        "p95": lengths[min(n - 1, int(0.95 * n))],
        "max": lengths[-1],
        "trained_tokens": sum(sum(lbl != IGNORE_INDEX for lbl in e["labels"]) for e in examples),
        "truncated": truncated,
        "truncated_share": round(truncated / n, 4),
        **({"max_length": max_length, "full": sum(length == max_length for length in lengths)} if max_length else {}),
    }


def show_masked(tokenizer, example: dict[str, Any]) -> str:
    """Render one tokenized example: trained tokens in ``[[...]]``, masked ones plain."""
    out = []
    pairs = zip(example["input_ids"], example["labels"])
    for trained, run in itertools.groupby(pairs, key=lambda pair: pair[1] != IGNORE_INDEX):
        text = tokenizer.decode([tok for tok, _ in run])
        out.append(f"[[{text}]]" if trained else text)
    return "".join(out)


def _pretokenized(record: dict[str, Any], max_length: int) -> dict[str, Any]:
    ids, labels = list(record["input_ids"]), list(record["labels"])
    if len(ids) != len(labels):
        raise CourseError(f"A pre-tokenized record has {len(ids)} input_ids but {len(labels)} labels.", "give every token one label (-100 where it is not trained).")
    truncated = len(ids) > max_length or bool(record.get("truncated"))
    return {"input_ids": ids[:max_length], "labels": labels[:max_length], "truncated": truncated}


def tokenize_records(tokenizer, records: Sequence[dict[str, Any]], max_length: int, packing: bool = False) -> list[dict[str, Any]]:
    """Tokenize processed records: chat ``messages`` (completion-only labels) or plain ``text`` (all labels).

    Records that already hold ``input_ids`` and ``labels`` are kept as they are (cut to ``max_length``).
    """
    if not records:
        raise CourseError("No training records were given.", "check the dataset path and the profile's n_train.")
    first = records[0]
    if "input_ids" in first and "labels" in first:
        return [_pretokenized(r, max_length) for r in records]
    if "messages" in first:
        return [tokenize_messages(tokenizer, r["messages"], max_length) for r in records]
    if "text" in first:
        return tokenize_text(tokenizer, [r["text"] for r in records], max_length, packing=packing)
    raise CourseError(f"Records with fields {sorted(first)} cannot be tokenized.", "pass processed records with 'messages' or 'text' (ftcourse.data.processed_records).")


def collate(examples: Sequence[dict[str, Any]], pad_token_id: int, pad_to_multiple_of: int = 8) -> dict[str, torch.Tensor]:
    """Right-pad a batch to its longest example; labels come from the mask, so EOS stays trained when pad == EOS."""
    longest = max(len(e["input_ids"]) for e in examples)
    width = int(math.ceil(longest / pad_to_multiple_of) * pad_to_multiple_of)
    input_ids = torch.full((len(examples), width), pad_token_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    attention = torch.zeros((len(examples), width), dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e["input_ids"])
        input_ids[i, :n] = torch.tensor(e["input_ids"])
        labels[i, :n] = torch.tensor(e["labels"])
        attention[i, :n] = 1
    return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}


def token_lengths(
    tokenizer, records: Sequence[dict[str, Any]], max_length: int = DEFAULT_MAX_SEQ_LENGTH, packing: bool = False
) -> dict[str, float]:
    """:func:`length_stats` of processed records tokenized exactly as training will tokenize them."""
    if not records:
        return {"count": 0}
    return length_stats(tokenize_records(tokenizer, records, max_length, packing=packing), max_length)
