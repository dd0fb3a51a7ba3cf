"""Checks of exercise 10, inference and serving (``solutions/ex10_inference.ipynb``).

Every task follows the grading protocol (``core``'s docstring): a collect step that turns the learner's values and the
outputs of their functions into plain data, and a judge that decides. The practice cases are here; the hidden inputs
and expected answers the grader uses are in ``solutions/hidden/ex10.json``.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ftcourse.course.checks.core import Case, CheckFailed, describe, expect, graded_check, output_of, run_learner, workspace_path

__all__ = ["check_ex10_task1", "check_ex10_task2", "check_ex10_task3"]

#: Largest ONNX file a judge reads (the 2-layer export of the embedded model is about 0.14 GB).
ONNX_CAP = 2**30


def _stats(rows: list) -> list:
    """Synthetic measurements, one ``InferenceStats`` per row ``[batch size, requests/s, decode tokens/s, latencies in ms]``."""
    from ftcourse.inference import InferenceStats

    return [InferenceStats(batch_size=b, max_new_tokens=8, n_prompts=len(lat), prompt_tokens=50.0, ttft_s=[0.05 * b],
                           decode_tokens_per_s=[decode], requests_per_s=[rps], new_tokens=[8 * len(lat)],
                           latencies_s=[ms / 1000 for ms in lat]) for b, rps, decode, lat in rows]


# The practice sweeps of task 1: [rows, p95 budget in ms]. In the first, batch 16 fits the budget by its p50 only, batch 12
# by its p50 and mean, batch 8 by its p50, mean and p90 but not by its p95, and batch 1 decodes the most tokens/s; in the
# second, batch 8's p95 fits but its p99 and max do not, and batch 32 is the largest batch within the budget; in the third
# nothing fits.
_PRACTICE_SWEEPS = [
    [[[1, 2.0, 30.0, [100] * 20], [4, 5.0, 20.0, [300] * 19 + [380]], [8, 6.0, 25.0, [350] * 18 + [600, 700]],
      [12, 7.0, 28.0, [300] * 16 + [500] * 4], [16, 8.0, 29.0, [390] * 11 + [500] * 9], [32, 9.0, 60.0, [900] * 20]], 400.0],
    [[[1, 2.0, 15.0, [100] * 20], [8, 8.0, 40.0, [500] * 19 + [900]], [16, 7.5, 50.0, [550] * 20], [32, 6.0, 45.0, [560] * 19 + [1000]]], 600.0],
    [[[1, 2.0, 14.0, [300] * 20], [2, 3.0, 21.0, [400] * 20]], 250.0],
]


@graded_check({"inputs": {"sweeps": _PRACTICE_SWEEPS}, "expected": {"best": [4, 8, None]}})
def check_ex10_task1(inputs, best_batch_size) -> dict:
    """``best_batch_size(stats, p95_budget_ms)``: the batch size with the most requests/s whose p95 latency is within the budget."""
    return {"outputs": [run_learner(best_batch_size, _stats(rows), budget) for rows, budget in inputs["sweeps"]]}


def _pick(stats: list, keep: Callable[[Any], bool], by: Callable[[Any], float]) -> int | None:
    within = [s for s in stats if keep(s)]
    return max(within, key=by).batch_size if within else None


def _rps(s) -> float:
    return s.row()["requests/s"]


def _tempting(stats: list, budget: float) -> list[tuple[int | None, str]]:
    """What the tempting wrong rules choose on one sweep, each with the hint that names its mistake."""
    import numpy as np

    def by_latency(q: float | str) -> int | None:
        stat = (lambda s: float(np.mean(s.latencies_s))) if q == "mean" else (lambda s: s.percentile(q))
        return _pick(stats, lambda s: 1000 * stat(s) <= budget, _rps)

    fits = lambda s: 1000 * s.p95_s <= budget  # noqa: E731
    strict = ("a p95 budget lets 5% of the requests be slower: a batch size whose p95 is within the budget is allowed even when "
              "its slowest requests (the maximum, the 99th percentile) are over it. Compare s.p95_s.")
    return [
        (_pick(stats, lambda s: True, _rps), "that is the highest throughput, but its p95 latency is over the budget: keep only the "
                                             "measurements with 1000 * s.p95_s <= p95_budget_ms (p95_s is in seconds, the budget in ms)."),
        (_pick(stats, lambda s: s.p95_s <= budget, _rps), "p95_s is in seconds and the budget in milliseconds: compare 1000 * s.p95_s "
                                                          "with p95_budget_ms."),
        (by_latency(50), "that batch meets the budget at the median (p50) but not at p95: the budget is on the 95th percentile, s.p95_s."),
        (by_latency("mean"), "that batch meets the budget on average, but the mean hides the slow requests a p95 budget is about: "
                             "compare s.p95_s."),
        (by_latency(90), "that batch meets the budget at the 90th percentile, not at the 95th: compare s.p95_s."),
        (by_latency(99), strict),
        (by_latency(100), strict),
        (_pick(stats, fits, lambda s: s.decode_tokens_per_s[0]), "throughput here is requests served per second, "
                                                                 "s.row()['requests/s']; decode tokens/s counts tokens, not requests."),
        (_pick(stats, fits, lambda s: s.batch_size), "the most requests/s within the budget wins, not the largest batch size: "
                                                     "throughput does not always grow with the batch."),
    ]


@check_ex10_task1.judge
def _judge_task1(data: dict, case: Case) -> str:
    sweeps = case.inputs["sweeps"]
    outputs = data.get("outputs")
    define = "define def best_batch_size(stats, p95_budget_ms): ... returning a batch size or None."
    expect(isinstance(outputs, list) and len(outputs) == len(sweeps), "no output of `best_batch_size` was collected.", f"{define} Run the task's cell.")
    for number, ((rows, budget), want, entry) in enumerate(zip(sweeps, case.expected["best"], outputs), 1):
        got, kind = output_of(entry, "best_batch_size", define)
        expect(got is None or (isinstance(got, int) and kind == "int"), f"`best_batch_size` returns a {kind}, not a batch size.",
               "return s.batch_size of the chosen measurement (an int), or None.")
        if got == want:
            continue
        where = f"on {case.kind} sweep {number} (p95 budget {budget:g} ms) you return {got!r}, which is not the best batch size."
        expect(want is not None or got is None, where, "return None when no measurement's p95 is within the budget: the budget "
                                                       "cannot be met at any batch size.")
        hint = next((h for pick, h in _tempting(_stats(rows), budget) if pick == got), None)
        raise CheckFailed(where, hint or "among the measurements with 1000 * s.p95_s <= p95_budget_ms, return the batch size of "
                                         "the one with the most s.row()['requests/s']; None when there is none.")
    return (f"right on {len(sweeps)} {case.kind} sweeps (p95, not p50, mean, p90, p99 or max; requests/s, not tokens/s or batch "
            "size; None when nothing fits). The grader runs more sweeps.")


# ---------------------------------------------------------------- task 2: an ONNX export answers like PyTorch


_PRACTICE_PROMPTS = [[{"role": "user", "content": "My kettle stopped heating. What should I do?"}], "The warranty covers",
                     [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Track order 2231."}]]


@graded_check({"inputs": {"layers": 2, "prompts": _PRACTICE_PROMPTS}, "expected": {}})
def check_ex10_task2(inputs, onnx_dir, max_diff, model, tokenizer, prompts) -> dict:
    """``onnx_dir``: the first ``layers`` layers of ``model`` exported with export_onnx (inside the course folder);
    ``max_diff``: max |logit difference| PyTorch vs onnxruntime over every position of ``prompts``."""
    from ftcourse.deploy import ONNX_FILE

    folder = workspace_path(onnx_dir)
    return {"onnx": None if folder is None else f"{folder}/{ONNX_FILE}", "max_diff": describe(max_diff), "prompts": describe(prompts)}


def _prompts(value: Any) -> list | None:
    """The learner's prompts when they are a short list of texts or chat messages, else None."""
    def ok(p: Any) -> bool:
        if isinstance(p, str):
            return 0 < len(p) <= 2000
        return (isinstance(p, list) and 0 < len(p) <= 8 and all(isinstance(m, dict) and isinstance(m.get("role"), str)
                                                                  and isinstance(m.get("content"), str) and len(m["content"]) <= 2000 for m in p))
    return value if isinstance(value, list) and 0 < len(value) <= 8 and all(map(ok, value)) else None


@check_ex10_task2.judge
def _judge_task2(data: dict, case: Case) -> str:
    from ftcourse.deploy import ONNX_FILE, logits_on, max_logit_diff, onnx_logits, onnx_session
    from ftcourse.inference import first_layers

    where = data.get("onnx")
    expect(isinstance(where, str), "`onnx_dir` is outside the course folder, where the grader cannot read it.",
           "export into the folder the task gives (onnx_dir), inside the course folder.")
    blob = case.file(where, ONNX_CAP)
    expect(blob is not None, f"{where.rsplit('/', 1)[0]} holds no {ONNX_FILE}.", "export_onnx(small_model, tokenizer, onnx_dir) writes it.")
    tokenizer, small = case.reference("tokenizer"), first_layers(case.reference("model"), int(case.inputs["layers"]))
    with tempfile.TemporaryDirectory(prefix="ex10-judge-") as tmp:
        (Path(tmp) / ONNX_FILE).write_bytes(blob)
        try:
            session = onnx_session(tmp)
        except Exception as exc:  # not an ONNX model onnxruntime can run
            raise CheckFailed(f"onnxruntime cannot load {where} ({type(exc).__name__}).", "write it with export_onnx and do not edit it.") from None
        probe = case.inputs["prompts"]
        ours, theirs = logits_on(small, tokenizer, probe), _run_onnx(lambda: onnx_logits(session, tokenizer, probe))
        expect(theirs is not None and max_logit_diff(ours, theirs) <= 1e-3 and all(bool((a.argmax(-1) == b.argmax(-1)).all()) for a, b in zip(ours, theirs)),
               f"on {case.kind} prompts the ONNX model does not answer like the first {case.inputs['layers']} layers of the model.",
               "export small_model itself (first_layers(model, 2), not another model), and do not change its weights after exporting.")
        prompts = _prompts(output_of(data.get("prompts"), "prompts")[0])
        expect(prompts is not None, "`prompts` is not a short list of prompts.", "pass the `prompts` of the setup cell.")
        theirs = _run_onnx(lambda: onnx_logits(session, tokenizer, prompts))
        expect(theirs is not None, "onnxruntime cannot run your export on `prompts`.", "pass the `prompts` of the setup cell.")
        want = max_logit_diff(logits_on(small, tokenizer, prompts), theirs)
    max_diff, kind = output_of(data.get("max_diff"), "max_diff")
    expect(kind in ("float", "float64") and isinstance(max_diff, float) and math.isfinite(max_diff),
           f"max_diff should be a float, got a {kind}.", "max_diff = float(...) of the largest |difference|.")
    expect(max_diff != 0.0 or want == 0.0, "max_diff is exactly 0: two runtimes never agree to the last bit.",
           "compare PyTorch's logits (logits_on) with onnxruntime's (onnx_logits), not one runtime with itself.")
    expect(abs(max_diff - want) <= 0.1 * want + 1e-7, f"max_diff is {max_diff:.3g}, not the largest |difference| over your prompts.",
           "take the largest |difference| over all positions and all vocabulary entries of each prompt (max_logit_diff does), "
           "not only the last position or one prompt.")
    return f"the export answers like PyTorch: max |Δlogit| {want:.2g} on your prompts, and the same next tokens on {case.kind} ones."


def _run_onnx(step: Callable[[], list]) -> list | None:
    """The ONNX logits, or None when the learner's file does not run (a wrong graph is the learner's, not the checker's)."""
    try:
        return step()
    except Exception:  # onnxruntime's errors have no common base class
        return None


# ---------------------------------------------------------------- task 3: debug right padding in batched generation

_PRACTICE_CHATS = [[{"role": "user", "content": "Hi"}],
                   [{"role": "system", "content": "You answer customer questions about orders, briefly and politely."},
                    {"role": "user", "content": "I ordered a kettle two weeks ago and it still has not arrived. Where is it?"}],
                   [{"role": "user", "content": "Cancel order 8812, please."}]]


def _batch_sizes(model, call: Callable[[], dict]) -> tuple[dict, list[int]]:
    """``call()``'s result and the batch size of every forward pass of ``model`` during it."""
    seen: list[int] = []

    def hook(module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is not None and hasattr(ids, "shape") and len(ids.shape) == 2:
            seen.append(int(ids.shape[0]))

    handle = model.register_forward_pre_hook(hook, with_kwargs=True) if hasattr(model, "register_forward_pre_hook") else None
    try:
        return call(), seen
    finally:
        if handle is not None:
            handle.remove()


@graded_check({"inputs": {"prompts": _PRACTICE_CHATS, "max_new_tokens": 6}, "expected": {}})
def check_ex10_task3(inputs, batched_greedy, model, tokenizer) -> dict:
    """``batched_greedy(model, tokenizer, prompts, max_new_tokens)``: batched greedy answers equal to one-at-a-time ones."""
    prompts, n = inputs["prompts"], inputs["max_new_tokens"]
    answers, batches = _batch_sizes(model, lambda: run_learner(batched_greedy, model, tokenizer, [list(p) for p in prompts], n))
    return {"answers": answers, "batches": batches}


@check_ex10_task3.judge
def _judge_task3(data: dict, case: Case) -> str:
    from ftcourse.generation import generate

    prompts, n = case.inputs["prompts"], case.inputs["max_new_tokens"]
    got, kind = output_of(data.get("answers"), "batched_greedy", "fix the function in the cell and keep its name.")
    expect(isinstance(got, list) and len(got) == len(prompts) and all(isinstance(a, str) for a in got),
           f"`batched_greedy` returns a {kind} for {len(prompts)} prompts, not one answer per prompt.", "return one decoded answer per prompt, in order.")
    batches = data.get("batches")
    expect(isinstance(batches, list) and max((b for b in batches if isinstance(b, int)), default=0) >= len(prompts),
           f"`batched_greedy` never runs the model on all {len(prompts)} prompts at once: it does not batch.",
           "the task is to fix batched generation, not to avoid it: one model.generate call over a padded batch serves many "
           "users at once. Fix how the batch is padded instead.")
    model, tokenizer = case.reference("model"), case.reference("tokenizer")
    want = [generate(model, tokenizer, [p], max_new_tokens=n, batch_size=1, progress=False)[0] for p in prompts]
    wrong = [i for i, (a, b) in enumerate(zip(got, want)) if a != b]
    expect(not wrong, f"on {case.kind} prompts, the answers to prompts {wrong} differ from generating each prompt alone.",
           "a decoder continues from the LAST position: put the pads on the left (ids[row, width - len(seq):] = seq) and mask "
           "them in attention_mask; then the new tokens start at column `width` for every row.")
    return f"batched answers equal one-at-a-time answers on {len(prompts)} {case.kind} prompts: pads on the left, masked, in one batch."
