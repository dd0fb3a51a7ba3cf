"""An LLM as judge, and the measurements that say whether to trust it (Zheng et al. 2023, "Judging LLM-as-a-judge with
MT-Bench and Chatbot Arena", arXiv:2306.05685).

Two kinds of verdict, each read from the judge's label likelihoods (deterministic, no sampling): a **grade** (does an
answer say what the reference says: the probability of "yes" against "no") and a **preference** between two answers
("A" or "B"). The biases are measured with the same calls: position (swap the two answers: does the preferred answer
change?), verbosity (pad an answer: does its grade rise?) and self-preference (does the judge prefer its own answers
among pairs a reference metric rates equal?). :func:`reference_verdict` is the exact/field metric a judge is checked
against.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ftcourse.errors import CourseError
from ftcourse.generation import Messages, label_log_likelihoods
from ftcourse.metrics import json_field_scores, normalize_text, share_interval

__all__ = [
    "flip_rate", "grade", "grading_prompt", "own_answer_wins", "PADDING", "prefer", "preference_prompt",
    "reference_verdict", "SIDES", "VERDICTS",
]

#: The grade's two answers, scored as labels: P(yes) is the grade.
VERDICTS = ("yes", "no")
#: The preference's two answers.
SIDES = ("A", "B")
#: What :func:`grade`'s verbosity check appends to an answer: longer, and no more correct.
PADDING = "\n\nI have checked this answer carefully against the message: it follows the instruction, it is complete, and it is correct."


def grading_prompt(question: str, reference: str, answer: str) -> Messages:
    """The judge's chat for one grade: the question, the reference answer and the answer to grade; reply yes or no."""
    return [{"role": "system", "content": "You grade answers of a customer-support assistant. Reply with one word: yes or no."},
            {"role": "user", "content": f"Question:\n{question}\n\nReference answer:\n{reference}\n\nAnswer to grade:\n{answer}\n\n"
                                        "Does the answer to grade give the same result as the reference answer? Reply yes or no."}]


def preference_prompt(question: str, answer_a: str, answer_b: str) -> Messages:
    """The judge's chat for one preference between two answers, shown as A and B; reply A or B."""
    return [{"role": "system", "content": "You compare two answers of a customer-support assistant. Reply with one letter: A or B."},
            {"role": "user", "content": f"Question:\n{question}\n\nAnswer A:\n{answer_a}\n\nAnswer B:\n{answer_b}\n\n"
                                        "Which answer follows the instruction better? Reply A or B."}]


def grade(model, tokenizer, prompts: Sequence[Messages], progress: bool = False) -> list[float]:
    """P("yes") of each grading prompt, normalised over "yes" and "no" (each scored with its end-of-turn token)."""
    scores = label_log_likelihoods(model, tokenizer, prompts, VERDICTS, progress=progress)
    return [1 / (1 + math.exp(no - yes)) for yes, no in scores]


def prefer(model, tokenizer, prompts: Sequence[Messages], progress: bool = False) -> list[str]:
    """The side ("A" or "B") the judge finds more likely for each preference prompt."""
    return [SIDES[0] if a >= b else SIDES[1] for a, b in label_log_likelihoods(model, tokenizer, prompts, SIDES, progress=progress)]


def flip_rate(first: Sequence[str], swapped: Sequence[str]) -> dict[str, float]:
    """Position bias: the share of pairs whose preferred *answer* changes when the two answers swap places.

    ``first[i]`` is the verdict ("A"/"B") on answers (x, y), ``swapped[i]`` on (y, x). A judge that follows the answers
    names the other side after the swap (A then B, or B then A); naming the same side both times means the position
    decided. Returns the share with its 95% interval (:func:`~ftcourse.metrics.share_interval`).
    """
    if len(first) != len(swapped) or not first:
        raise CourseError(f"flip_rate needs two equally long, non-empty lists of verdicts; got {len(first)} and {len(swapped)}.",
                          "judge every pair twice: as (x, y) and as (y, x).")
    if unknown := (set(first) | set(swapped)) - set(SIDES):
        raise CourseError(f"Verdicts must be {' or '.join(SIDES)}; got {sorted(map(str, unknown))}.", "pass the sides prefer() returns.")
    return share_interval(sum(a == b for a, b in zip(first, swapped)), len(first))


def own_answer_wins(first: Sequence[str], swapped: Sequence[str]) -> list[float]:
    """Per pair, the share of the two orders in which the judge preferred its own answer: shown first as A, then as B.

    ``first[i]`` is the verdict with the judge's own answer as A, ``swapped[i]`` with it as B; 0.5 is what a judge
    without self-preference (or one that always names the same side) gives on average.
    """
    flip_rate(first, swapped)  # same checks
    return [((a == SIDES[0]) + (b == SIDES[1])) / 2 for a, b in zip(first, swapped)]


def reference_verdict(answer: str, reference: str, task: str) -> bool:
    """The exact/field metric's verdict: a ``classify`` answer equals the label (case and spacing ignored); an
    ``extract`` answer is a JSON object with every field of the reference right."""
    if task == "classify":
        return normalize_text(answer) == normalize_text(reference)
    if task == "extract":
        fields: dict[str, Any] = json_field_scores(answer, reference)
        return bool(fields) and all(fields.values())
    raise CourseError(f"No exact metric for task {task!r}.", "judge classify and extract answers, which have exact references.")
