"""Run a model on prompts: batched left-padded generation, constrained decoding, label likelihoods, perplexity.

Generation is greedy by default and left-padded (decoder-only models continue from the right edge).
Classification is generation constrained to the label set (a token trie), or the label with the highest
log-likelihood. Prefix-tuning models are decoded token by token (see :func:`uses_prefix_cache`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from ftcourse.device import device_policy
from ftcourse.errors import CourseError
from ftcourse.metrics import match_label, pooled_perplexity
from ftcourse.tokenization import collate, prompt_ids, tokenize_text

__all__ = [
    "adapter_disabled", "classify", "encode_prompt", "generate", "label_log_likelihoods", "LabelTrie",
    "Messages", "model_device", "perplexity", "Prompt", "prompt_preview", "text_nll", "uses_prefix_cache",
]

Messages = Sequence[dict[str, str]]
#: A prompt is a chat (messages without the answer, formatted with the model's template) or plain text.
Prompt = Messages | str


def model_device(model) -> torch.device:
    return next(model.parameters()).device


def _pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def encode_prompt(tokenizer, prompt: Prompt) -> list[int]:
    """Token ids of a prompt: chat messages through the template (see :func:`ftcourse.tokenization.prompt_ids`), text as is."""
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
    streamer=None,
) -> list[str]:
    """Answers to prompts (chat messages without the answer, or plain text to continue), in input order.

    Greedy by default (deterministic); ``temperature > 0`` samples, seeded by ``seed``. Prompts are
    batched by length and left-padded. With ``labels``, decoding is constrained so that each answer
    is exactly one label. A ``streamer`` (a transformers ``BaseStreamer``, e.g. ``TextStreamer``) gets the
    prompt's ids, then each generated token id as it comes, then ``end()``; it follows a single prompt.
    """
    if streamer is not None and len(prompts) != 1:
        raise CourseError(f"A streamer follows one prompt; got {len(prompts)}.", "generate one prompt at a time when streaming.")
    trie = LabelTrie(tokenizer, labels) if labels else None
    if trie:
        max_new_tokens = trie.max_new_tokens
    device = model_device(model)
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
            new = _decode_without_cache(model, encoded[i], max_new_tokens, tokenizer.eos_token_id, trie, temperature, top_p, streamer)
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
        kwargs: dict[str, Any] = {"streamer": streamer} if streamer is not None else {}
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
                          temperature: float, top_p: float, streamer=None) -> list[int]:
    """New token ids after ``prompt``: one full forward pass per token, with the logits processors ``generate`` uses.

    A ``streamer`` gets what ``model.generate`` gives it: the prompt, each new token, then ``end()``.
    """
    from transformers import LogitsProcessorList, PrefixConstrainedLogitsProcessor, TemperatureLogitsWarper, TopPLogitsWarper

    processors = LogitsProcessorList()
    if trie:
        processors.append(PrefixConstrainedLogitsProcessor(lambda _b, sent: trie.allowed(sent[len(prompt):].tolist()), num_beams=1))
    if temperature > 0:
        processors += [TemperatureLogitsWarper(temperature), TopPLogitsWarper(top_p)]
    ids = torch.tensor([prompt], device=model_device(model))
    if streamer is not None:
        streamer.put(ids.cpu())
    for _ in range(max_new_tokens):
        scores = processors(ids, model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[:, -1].float())
        token = torch.multinomial(scores.softmax(-1), 1) if temperature > 0 else scores.argmax(-1, keepdim=True)
        ids = torch.cat([ids, token], dim=1)
        if streamer is not None:
            streamer.put(token[0].cpu())
        if token.item() == eos:
            break
    if streamer is not None:
        streamer.end()
    return ids[0, len(prompt):].tolist()


@torch.no_grad()
def label_log_likelihoods(model, tokenizer, prompts: Sequence[Prompt], labels: Sequence[str], progress: bool = True) -> list[list[float]]:
    """Log-probability of each label (its tokens, then EOS) as the answer to each prompt.

    Each prompt runs once; its key/value cache is then repeated for all labels, which are scored in one batch.
    """
    config = getattr(model, "active_peft_config", None)
    if config is not None and config.is_prompt_learning:
        raise CourseError("Scoring labels by likelihood reuses the prompt's cache, which prompt-learning adapters change.",
                          "classify prompt-tuning, P-Tuning or prefix-tuning models with by='generation'.")
    device = model_device(model)
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



@torch.no_grad()
def text_nll(model, tokenizer, texts: Sequence[str], max_length: int = 256, batch_size: int = 8, progress: bool = True) -> list[tuple[float, int]]:
    """Summed negative log-likelihood and number of predicted tokens of each text (cut into blocks of ``max_length``).

    Runs under the device policy's autocast (:mod:`ftcourse.device`: the numerics of training), which is faster for passes
    over whole blocks of tokens. Generation and label scoring run without it: on a CPU, autocast re-casts every frozen fp32
    weight to bf16 at every call, which makes token-by-token decoding several times slower than float32.
    """
    blocks = [(i, b) for i, text in enumerate(texts) for b in tokenize_text(tokenizer, [text], max_length)]
    if not blocks:
        raise CourseError("No text to compute perplexity on.", "pass non-empty texts.")
    device, policy = model_device(model), device_policy()
    model.eval()
    totals = [[0.0, 0] for _ in texts]
    for start in tqdm(range(0, len(blocks), batch_size), desc="Perplexity", disable=not progress, leave=False):
        chunk = blocks[start : start + batch_size]
        batch = collate([b for _, b in chunk], _pad_id(tokenizer))
        with policy.autocast():
            logits = model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device)).logits.float()
        shifted = batch["labels"][:, 1:].to(device)
        nll = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), shifted, ignore_index=-100, reduction="none").sum(1)
        for (i, _), row_nll, count in zip(chunk, nll.tolist(), (shifted != -100).sum(1).tolist()):
            totals[i][0] += row_nll
            totals[i][1] += count
    return [(nll, n) for nll, n in totals]


def perplexity(model, tokenizer, texts: Sequence[str], max_length: int = 256, batch_size: int = 8, progress: bool = True) -> float:
    """Token-level perplexity of ``texts`` (cut into blocks of ``max_length`` tokens)."""
    return pooled_perplexity(text_nll(model, tokenizer, texts, max_length, batch_size, progress))



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
