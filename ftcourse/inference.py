"""Measure what serving a model costs: time to first token (prefill), decode tokens/s, requests/s,
latency percentiles and peak memory, for a set of prompts at a given batch size.

Every measurement runs the package's own generation (:func:`ftcourse.generation.generate`: greedy,
left-padded batches), so what is measured is what the course's evaluations and server run. A warm-up
call is excluded; repeats are kept so the spread can be shown. Requests in a batch arrive together and
are answered together (static batching): each request's latency is its batch's.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ftcourse.device import DevicePolicy, device_policy
from ftcourse.errors import CourseError
from ftcourse.generation import Prompt, encode_prompt, generate
from ftcourse.memory import track_peak

__all__ = ["first_layers", "InferenceStats", "measure_inference", "sweep_batch_sizes", "time_call"]


@dataclass
class InferenceStats:
    """What :func:`measure_inference` measured; lists hold one value per repeat (latencies: one per request and repeat)."""

    batch_size: int
    max_new_tokens: int
    n_prompts: int
    prompt_tokens: float  # mean prompt length in tokens
    ttft_s: list[float] = field(default_factory=list)  # mean time to first token (prefill) per repeat
    decode_tokens_per_s: list[float] = field(default_factory=list)  # generated tokens after the first, per second of decoding
    requests_per_s: list[float] = field(default_factory=list)
    new_tokens: list[int] = field(default_factory=list)  # tokens generated per repeat (all requests)
    latencies_s: list[float] = field(default_factory=list)
    peak_mb: float = 0.0
    added_mb: float = 0.0
    answers: list[str] = field(default_factory=list)  # answers of the last repeat, in prompt order

    def percentile(self, q: float) -> float:
        """Request latency (seconds) at percentile ``q`` (0–100), over all requests and repeats."""
        return float(np.percentile(self.latencies_s, q))

    @property
    def p50_s(self) -> float:
        return self.percentile(50)

    @property
    def p95_s(self) -> float:
        return self.percentile(95)

    def row(self) -> dict[str, Any]:
        """One table row: means with their spread (standard deviation over repeats; 0 with one repeat)."""

        def spread(values: Sequence[float]) -> float:
            return statistics.stdev(values) if len(values) > 1 else 0.0

        return {
            "batch size": self.batch_size,
            "TTFT ms": round(1000 * statistics.mean(self.ttft_s), 1),
            "TTFT ± ms": round(1000 * spread(self.ttft_s), 1),
            "decode tok/s": round(statistics.mean(self.decode_tokens_per_s), 1),
            "decode ± tok/s": round(spread(self.decode_tokens_per_s), 1),
            "requests/s": round(statistics.mean(self.requests_per_s), 3),
            "requests ± /s": round(spread(self.requests_per_s), 3),
            "p50 ms": round(1000 * self.p50_s, 1),
            "p95 ms": round(1000 * self.p95_s, 1),
            "peak MB": round(self.peak_mb),
        }


def _count_new_tokens(tokenizer, answer: str, max_new_tokens: int) -> int:
    """Tokens generated for ``answer``: its tokens re-encoded, plus the stop token when it stopped early."""
    n = len(tokenizer(answer, add_special_tokens=False)["input_ids"])
    return min(max_new_tokens, n + 1)


def measure_inference(
    model,
    tokenizer,
    prompts: Sequence[Prompt],
    batch_size: int = 1,
    max_new_tokens: int = 32,
    repeats: int = 3,
    warmup: int = 1,
    seed: int = 0,
    progress: bool = True,
    desc: str = "Measuring",
) -> InferenceStats:
    """Time greedy generation of answers to ``prompts`` in batches of ``batch_size``, ``repeats`` times.

    Per batch, a 1-token generation gives the time to first token (the prefill of the whole batch), and a
    full generation gives the batch's latency; decode tokens/s is the tokens generated after the first
    divided by the time after the first. New tokens are counted by re-encoding the answers.
    ``warmup`` untimed calls come first. Peak memory covers the timed repeats.
    """
    if not prompts:
        raise CourseError("measure_inference got no prompts.", "pass a list of chat messages or texts as prompts.")
    for name, value in (("batch_size", batch_size), ("max_new_tokens", max_new_tokens), ("repeats", repeats)):
        if not isinstance(value, int) or value < 1:
            raise CourseError(f"{name} must be a positive integer, got {value!r}.", f"pass {name}=1 or more.")
    if max_new_tokens < 2:
        raise CourseError("max_new_tokens must be at least 2 to separate prefill from decoding.", "pass max_new_tokens=2 or more.")
    batches = [list(prompts[s : s + batch_size]) for s in range(0, len(prompts), batch_size)]
    stats = InferenceStats(batch_size, max_new_tokens, len(prompts),
                           statistics.mean(len(encode_prompt(tokenizer, p)) for p in prompts))

    def run(batch: list[Prompt], n: int) -> tuple[list[str], float]:
        start = time.perf_counter()
        answers = generate(model, tokenizer, batch, max_new_tokens=n, batch_size=len(batch), progress=False)
        return answers, time.perf_counter() - start

    for _ in range(warmup):
        run(batches[0], 2)
    with track_peak() as memory:
        for _ in tqdm(range(repeats), desc=desc, disable=not progress, leave=False):
            torch.manual_seed(seed)
            ttft, decode_s, total_s, decoded, answers = [], 0.0, 0.0, 0, []
            for batch in batches:
                ttft.append(run(batch, 1)[1])
                out, seconds = run(batch, max_new_tokens)
                answers += out
                total_s += seconds
                decode_s += max(seconds - ttft[-1], 1e-9)
                decoded += sum(_count_new_tokens(tokenizer, a, max_new_tokens) - 1 for a in out)
                stats.latencies_s += [seconds] * len(batch)
            stats.ttft_s.append(statistics.mean(ttft))
            stats.decode_tokens_per_s.append(decoded / decode_s)
            stats.requests_per_s.append(len(prompts) / total_s)
            stats.new_tokens.append(decoded + len(prompts))
            stats.answers = answers
    stats.peak_mb, stats.added_mb = memory.peak_mb, memory.added_mb
    return stats


def sweep_batch_sizes(model, tokenizer, prompts: Sequence[Prompt], batch_sizes: Sequence[int], **kwargs) -> list[InferenceStats]:
    """:func:`measure_inference` at each batch size, on the same prompts (keyword arguments are passed on)."""
    return [measure_inference(model, tokenizer, prompts, batch_size=b, desc=f"batch {b}", **kwargs)
            for b in tqdm(batch_sizes, desc="Batch sizes", disable=not kwargs.get("progress", True))]


def time_call(fn: Callable[[], Any], repeats: int = 3, warmup: int = 1, policy: DevicePolicy | None = None) -> list[float]:
    """Seconds taken by ``fn()`` in each of ``repeats`` timed calls, after ``warmup`` untimed ones.

    The device is synchronized before each clock read (``policy``, default :func:`ftcourse.device.device_policy`): a GPU
    runs its kernels after the call that queues them returns, so an unsynchronized clock measures only their launch.
    """
    policy = policy or device_policy()
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        policy.synchronize()
        start = time.perf_counter()
        fn()
        policy.synchronize()
        times.append(time.perf_counter() - start)
    return times


def first_layers(model, n_layers: int):
    """A copy of a decoder-only model keeping only its first ``n_layers`` layers (same architecture and weights).

    For demonstrations that must stay fast (an ONNX export of 2 layers instead of 30); its answers are not the model's.
    """
    import copy

    layers = getattr(getattr(model, "model", None), "layers", None)
    if layers is None:
        raise CourseError(f"{type(model).__name__} has no model.layers to cut.", "pass a Llama-style decoder (the embedded model is one).")
    if not 1 <= n_layers <= len(layers):
        raise CourseError(f"n_layers must be from 1 to {len(layers)}, got {n_layers}.", "pick fewer layers than the model has.")
    small = copy.deepcopy(model)
    small.model.layers = small.model.layers[:n_layers]
    small.config.num_hidden_layers = n_layers
    if getattr(small.config, "layer_types", None):
        small.config.layer_types = small.config.layer_types[:n_layers]
    return small.eval()
