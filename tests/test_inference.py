"""Inference measurement (issue 15): structure and invariants of the measurements, never the machine's speed."""

from __future__ import annotations

import pytest
from tiny import tiny_model

from ftcourse.errors import CourseError
from ftcourse.generation import generate
from ftcourse.inference import first_layers, measure_inference, sweep_batch_sizes, time_call

PROMPTS = [[{"role": "user", "content": t}] for t in ("Where is my parcel?", "Cancel my order please", "Hi", "Reset my password now")]


@pytest.fixture(scope="module")
def tiny(tokenizer):
    return tiny_model("llama", vocab_size=len(tokenizer)).eval()


def test_measurement_structure_and_invariants(tiny, tokenizer):
    stats = measure_inference(tiny, tokenizer, PROMPTS, batch_size=3, max_new_tokens=6, repeats=2, progress=False)
    assert (stats.batch_size, stats.n_prompts, stats.max_new_tokens) == (3, 4, 6)
    assert len(stats.ttft_s) == len(stats.decode_tokens_per_s) == len(stats.requests_per_s) == len(stats.new_tokens) == 2
    assert len(stats.latencies_s) == 2 * len(PROMPTS)  # one latency per request and repeat
    assert all(t > 0 for t in stats.ttft_s) and all(r > 0 for r in stats.requests_per_s)
    assert all(len(PROMPTS) <= n <= 6 * len(PROMPTS) for n in stats.new_tokens)  # at least the first token, at most the cap
    assert stats.p50_s <= stats.p95_s <= max(stats.latencies_s)
    # requests of one batch share its latency: batches of 3 and 1 give at most 2 distinct values per repeat
    assert len(set(stats.latencies_s[:4])) <= 2
    # the answers are the package's greedy generation, in prompt order
    assert stats.answers == generate(tiny, tokenizer, PROMPTS, max_new_tokens=6, batch_size=3, progress=False)
    assert stats.peak_mb > 0
    row = stats.row()
    assert row["batch size"] == 3 and row["p50 ms"] <= row["p95 ms"] and row["TTFT ± ms"] >= 0


def test_greedy_answers_do_not_depend_on_the_batch_size(tiny, tokenizer):
    one, four = sweep_batch_sizes(tiny, tokenizer, PROMPTS, [1, 4], max_new_tokens=5, repeats=1, warmup=0, progress=False)
    assert [s.batch_size for s in (one, four)] == [1, 4]
    assert one.answers == four.answers  # left padding keeps greedy answers the same
    assert len(set(four.latencies_s)) == 1  # one batch: every request waits for the whole batch


@pytest.mark.parametrize("kwargs", [{"batch_size": 0}, {"max_new_tokens": 1}, {"repeats": 0}, {"batch_size": 2.5}])
def test_bad_settings_are_course_errors(tiny, tokenizer, kwargs):
    with pytest.raises(CourseError):
        measure_inference(tiny, tokenizer, PROMPTS, progress=False, **kwargs)


def test_no_prompts_is_a_course_error(tiny, tokenizer):
    with pytest.raises(CourseError, match="no prompts"):
        measure_inference(tiny, tokenizer, [], progress=False)


def test_time_call_excludes_the_warm_up():
    calls = []
    times = time_call(lambda: calls.append(1), repeats=3, warmup=2)
    assert len(times) == 3 and len(calls) == 5 and all(t >= 0 for t in times)


def test_first_layers_is_a_shorter_copy(tiny, tokenizer):
    import torch

    short = first_layers(tiny, 1)
    ids = torch.tensor([[5, 6, 7]])
    assert len(short.model.layers) == short.config.num_hidden_layers == 1 and len(tiny.model.layers) == 2
    assert short.model.layers[0].self_attn.q_proj.weight.data_ptr() != tiny.model.layers[0].self_attn.q_proj.weight.data_ptr()
    with torch.no_grad():
        assert short(input_ids=ids).logits.shape == tiny(input_ids=ids).logits.shape
    with pytest.raises(CourseError, match="n_layers"):
        first_layers(tiny, 3)
