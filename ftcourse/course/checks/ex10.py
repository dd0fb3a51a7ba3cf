"""Checks of exercise 10, inference and serving (``solutions/ex10_inference.ipynb``)."""

from __future__ import annotations

from ftcourse.course.checks.core import expect, self_check

__all__ = ["check_ex10_task1", "check_ex10_task2", "check_ex10_task3"]

def _stats(rows):
    """Synthetic measurements: ``(batch size, requests/s, request latencies in ms)`` per row."""
    from ftcourse.inference import InferenceStats

    return [InferenceStats(batch_size=b, max_new_tokens=8, n_prompts=len(lat), prompt_tokens=50.0, ttft_s=[0.05 * b],
                           decode_tokens_per_s=[7.0 * rps], requests_per_s=[rps], new_tokens=[8 * len(lat)],
                           latencies_s=[ms / 1000 for ms in lat]) for b, rps, lat in rows]


#: Hidden cases of task 1: (measurements, p95 budget in ms, the right batch size).
_EX10_CASES = (
    # p50 of batch 8 fits the budget, its p95 does not; batch 16 is the fastest of all
    (((1, 2.0, [100] * 19 + [120]), (4, 5.0, [300] * 19 + [380]), (8, 7.0, [390] * 18 + [600, 700]), (16, 9.0, [900] * 20)), 400.0, 4),
    # throughput is not monotonic: batch 8 beats batch 16 within the budget
    (((1, 2.0, [100] * 20), (8, 8.0, [500] * 20), (16, 7.5, [550] * 20)), 600.0, 8),
    # nothing fits
    (((1, 2.0, [300] * 20), (2, 3.0, [400] * 20)), 250.0, None),
)


@self_check
def check_ex10_task1(best_batch_size) -> str:
    """``best_batch_size(stats, p95_budget_ms)``: the batch size with the most requests/s whose p95 latency is within the budget."""
    expect(callable(best_batch_size), "`best_batch_size` is not a function.", "define def best_batch_size(stats, p95_budget_ms): ...")
    for rows, budget, want in _EX10_CASES:
        stats = _stats(rows)
        got = best_batch_size(stats, budget)
        if got == want:
            continue
        fastest = max(stats, key=lambda s: s.requests_per_s[0]).batch_size
        by_p50 = max((s for s in stats if 1000 * s.p50_s <= budget), key=lambda s: s.requests_per_s[0], default=None)
        expect(want is not None or got is None, f"no batch size meets a {budget:.0f} ms budget here, but you return {got!r}.",
               "return None when no measurement's p95 is within the budget: the budget cannot be met at any batch size.")
        expect(got != fastest, f"you return batch {got}, the highest throughput, but its p95 latency is over the {budget:.0f} ms budget.",
               "keep only the measurements with 1000 * s.p95_s <= p95_budget_ms, then take the most requests/s among them.")
        expect(by_p50 is None or got != by_p50.batch_size, f"batch {got} meets the budget at the median (p50) but not at p95.",
               "the budget is on the 95th percentile: compare s.p95_s (seconds), not s.p50_s.")
        expect(False, f"for budget {budget:.0f} ms you return {got!r}; the right batch size is {want!r}.",
               "among measurements with p95 within budget (s.p95_s is in seconds), the largest s.row()['requests/s'] wins — "
               "not the largest batch size.")
    return "right on 3 hidden sweeps (p95, not p50; throughput, not batch size; None when nothing fits)."


def _ex10_hidden_prompts():
    return [[{"role": "user", "content": "My parcel never arrived. Order 5512."}], "The BrewMaster 300 is a",
            [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "How do I reset my password?"}]]


@self_check
def check_ex10_task2(onnx_dir, max_diff, small_model, tokenizer, prompts) -> str:
    """``onnx_dir``: ``small_model`` exported with export_onnx; ``max_diff``: max |logit difference| PyTorch vs onnxruntime on ``prompts``."""
    from pathlib import Path

    from ftcourse.deploy import ONNX_FILE, logits_on, max_logit_diff, onnx_logits, onnx_session

    expect((Path(onnx_dir) / ONNX_FILE).is_file(), f"{onnx_dir} holds no {ONNX_FILE}.", "onnx_dir = export_onnx(small_model, tokenizer, onnx_dir).")
    session = onnx_session(onnx_dir)
    hidden = _ex10_hidden_prompts()
    ours, theirs = logits_on(small_model, tokenizer, hidden), onnx_logits(session, tokenizer, hidden)
    hidden_diff = max_logit_diff(ours, theirs)
    expect(hidden_diff <= 1e-3 and all(bool((a.argmax(-1) == b.argmax(-1)).all()) for a, b in zip(ours, theirs)),
           f"on hidden prompts the ONNX model differs from small_model by up to {hidden_diff:.3g}.",
           "export small_model itself (not another model), and do not change its weights after exporting.")
    want = max_logit_diff(logits_on(small_model, tokenizer, prompts), onnx_logits(session, tokenizer, prompts))
    expect(isinstance(max_diff, float), f"max_diff should be a float, got {type(max_diff).__name__}.", "max_diff = float(...).")
    expect(max_diff != 0.0 or want == 0.0, "max_diff is exactly 0: two runtimes never agree to the last bit.",
           "compare PyTorch's logits (logits_on) with onnxruntime's (onnx_logits), not one runtime with itself.")
    expect(abs(max_diff - want) <= 0.1 * want + 1e-7, f"max_diff is {max_diff:.3g}; over every position of every prompt it is {want:.3g}.",
           "take the largest |difference| over all positions and all vocabulary entries of each prompt (max_logit_diff does), "
           "not only the last position.")
    return f"the export answers like PyTorch: max |Δlogit| {want:.2g} on your prompts, {hidden_diff:.2g} on hidden ones, same next tokens."


@self_check
def check_ex10_task3(batched_greedy, model, tokenizer) -> str:
    """``batched_greedy(model, tokenizer, prompts, max_new_tokens)``: batched greedy answers equal to one-at-a-time ones."""
    from ftcourse.generation import generate

    expect(callable(batched_greedy), "`batched_greedy` is not a function.", "fix the function in the cell and keep its name.")
    prompts = [[{"role": "user", "content": "Hi"}],
               [{"role": "system", "content": "You answer customer questions about orders, briefly and politely."},
                {"role": "user", "content": "I ordered a kettle two weeks ago and it still has not arrived. Where is it?"}],
               [{"role": "user", "content": "Cancel order 8812, please."}]]
    want = [generate(model, tokenizer, [p], max_new_tokens=6, batch_size=1, progress=False)[0] for p in prompts]
    got = batched_greedy(model, tokenizer, prompts, 6)
    expect(isinstance(got, list) and len(got) == len(prompts), f"expected a list of {len(prompts)} answers, got {got!r:.120}.",
           "return one decoded answer per prompt, in order.")
    wrong = [i for i, (a, b) in enumerate(zip(got, want)) if a != b]
    expect(not wrong, f"answers {wrong} differ from generating each prompt alone (e.g. {got[wrong[0]]!r} vs {want[wrong[0]]!r})." if wrong else "",
           "a decoder continues from the LAST position: put the pads on the left (ids[row, width - len(seq):] = seq) and mask "
           "them in attention_mask; then the new tokens start at column `width` for every row.")
    return "batched answers equal one-at-a-time answers: pads on the left, masked."
