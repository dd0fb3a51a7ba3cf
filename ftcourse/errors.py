"""The course's error type: says what is wrong and how to fix it."""

from __future__ import annotations

__all__ = ["CourseError"]


class CourseError(Exception):
    """An error a learner can act on: ``what`` went wrong, ``fix`` says what to do.

    Raised instead of letting a traceback from deep inside a library reach the user.
    """

    def __init__(self, what: str, fix: str | None = None):
        self.what = what
        self.fix = fix
        super().__init__(what if fix is None else f"{what}\nFix: {fix}")
