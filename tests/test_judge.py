"""The LLM judge (issue 29): flip rate and self-preference on tiny deterministic cases, the intervals and kappa they use,
the exact/field verdict a judge is checked against, and a grade read from the real embedded model."""

from __future__ import annotations

import math

import pytest

from ftcourse.errors import CourseError
from ftcourse.generation import label_log_likelihoods
from ftcourse.judge import VERDICTS, flip_rate, grade, grading_prompt, own_answer_wins, prefer, preference_prompt, reference_verdict
from ftcourse.metrics import cohen_kappa, share_interval


def test_flip_rate_counts_pairs_whose_preferred_answer_follows_the_position():
    # pairs 0 and 3 name the same side in both orders (position decided); 1 and 2 name the other side (answer decided)
    result = flip_rate(["A", "A", "B", "B"], ["A", "B", "A", "B"])
    assert (result["successes"], result["n"], result["rate"]) == (2, 4, 0.5)
    assert result == share_interval(2, 4)
    assert flip_rate(["A", "B"], ["B", "A"])["rate"] == 0.0  # a judge that follows the answers never flips
    assert flip_rate(["A", "A"], ["A", "A"])["rate"] == 1.0  # one that always says A always does


def test_flip_rate_refuses_unpaired_or_unknown_verdicts():
    with pytest.raises(CourseError, match="equally long"):
        flip_rate(["A", "B"], ["A"])
    with pytest.raises(CourseError, match="equally long"):
        flip_rate([], [])
    with pytest.raises(CourseError, match="Verdicts must be A or B"):
        flip_rate(["A", "yes"], ["B", "A"])


def test_own_answer_wins_averages_the_two_orders():
    # own answer shown as A first, then as B: A then B = own both times; A then A = once; B then A = never
    assert own_answer_wins(["A", "A", "B"], ["B", "A", "A"]) == [1.0, 0.5, 0.0]


def test_share_interval_matches_the_formula_and_stays_inside_zero_one():
    none = share_interval(0, 10)
    assert none["rate"] == 0 and none["low"] == 0 and none["high"] == pytest.approx(0.2775, abs=1e-4)  # the textbook value
    half = share_interval(5, 10)
    assert (half["low"], half["high"]) == (pytest.approx(0.2366, abs=1e-4), pytest.approx(0.7634, abs=1e-4))
    assert share_interval(10, 10)["high"] == 1.0
    with pytest.raises(CourseError, match="successes <= n"):
        share_interval(3, 2)


def test_cohen_kappa_subtracts_chance_agreement():
    # observed 3/4; chance 1/2 x 1/4 + 1/2 x 3/4 = 1/2; kappa (0.75 - 0.5) / 0.5 = 0.5
    assert cohen_kappa([1, 1, 0, 0], [1, 0, 0, 0]) == pytest.approx(0.5)
    assert cohen_kappa(["y", "n", "y"], ["y", "n", "y"]) == 1.0
    # a rater that always says yes agrees 3 times of 4 with one that mostly does, and no more than chance gives
    assert cohen_kappa([True] * 4, [True, True, True, False]) == 0.0
    with pytest.raises(CourseError, match="predictions"):
        cohen_kappa([1, 0], [1])


def test_reference_verdict_is_the_exact_and_field_metric():
    assert reference_verdict(" Damaged_Item ", "damaged_item", "classify")
    assert not reference_verdict("damaged_item, I think", "damaged_item", "classify")
    ticket = '{"intent":"damaged_item","order_id":"3585308","product":"metro sleeve"}'
    assert reference_verdict('{"product": "Metro Sleeve", "order_id": "3585308", "intent": "damaged_item"}', ticket, "extract")
    assert not reference_verdict('{"intent": "damaged_item", "order_id": "3585308"}', ticket, "extract")
    assert not reference_verdict("not json", ticket, "extract")
    with pytest.raises(CourseError, match="No exact metric"):
        reference_verdict("Hello!", "Hi!", "reply")


def test_grade_and_prefer_read_the_judges_label_likelihoods(base_model, tokenizer):
    prompts = [grading_prompt("Classify: where is my parcel?", "order_status", answer) for answer in ("order_status", "cancel_order")]
    grades = grade(base_model, tokenizer, prompts)
    for p, (yes, no) in zip(grades, label_log_likelihoods(base_model, tokenizer, prompts, VERDICTS, progress=False)):
        assert 0 < p < 1 and p == pytest.approx(math.exp(yes) / (math.exp(yes) + math.exp(no)))
    pair = preference_prompt("Classify: where is my parcel?", "order_status", "cancel_order")
    (a, b), = label_log_likelihoods(base_model, tokenizer, [pair], ("A", "B"), progress=False)
    assert prefer(base_model, tokenizer, [pair]) == ["A" if a >= b else "B"]
    assert "Answer A:\norder_status" in pair[1]["content"] and "Answer B:\ncancel_order" in pair[1]["content"]
