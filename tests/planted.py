"""Running a check on a planted answer: on its practice case, and on the grader's hidden case where it has one."""

from __future__ import annotations

import pytest

from ftcourse.course import checks
from ftcourse.course.checks import CheckFailed
from ftcourse.tools.grading import grading_case

__all__ = ["fails", "passes", "tiny_llama"]


def fails(check, *args, hint: str) -> str:
    with pytest.raises(CheckFailed) as info:
        check.verify(*args)
    assert hint in str(info.value), str(info.value)
    if isinstance(check, checks.GradedCheck):  # the grader's case rejects it as well, with the same hint
        with pytest.raises(CheckFailed) as hidden:
            check.verify_case(grading_case(check), *args, hidden=True)
        assert hint in str(hidden.value), str(hidden.value)
    return str(info.value)


def passes(check, *args) -> str:
    """A right answer passes the practice case and the grader's case; the practice message."""
    assert check.verify_case(grading_case(check), *args, hidden=True)
    return check.verify(*args)


def tiny_llama(tokenizer):
    """A real tiny Llama with the embedded tokenizer's vocabulary (stands in for a trained model where only shapes matter)."""
    from tests.tiny import tiny_model

    return tiny_model("llama", vocab_size=len(tokenizer))
