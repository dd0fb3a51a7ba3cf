"""Self-checks of the exercises: ``check_exNN_taskK(...)`` prints ✓, or what is wrong and a hint.

In a notebook, call the check with your result: it prints one friendly line and never
raises. ``check_exNN_taskK.verify(...)`` returns the success message or raises
:class:`CheckFailed` (an ``AssertionError``) with the same explanation. Under ``ftcourse grade``
the checks that follow the grading protocol (``core`` describes it; the grader's feedback names the
path of each task) only ``collect(...)`` data in the submission's sandbox, and the grader judges it; the others still
``verify`` inside the submission's kernel. Checks recompute what they test from the course's own
data and model (shapes, parameter counts, metrics, files written) instead of trusting numbers a
notebook printed.
"""

from __future__ import annotations

from ftcourse.course.checks import core, ex01, ex02, ex03, ex04, ex05, ex06, ex07, ex08, ex09, ex10, ex11, ex12, ex13
from ftcourse.course.checks.core import *  # noqa: F403
from ftcourse.course.checks.ex01 import *  # noqa: F403
from ftcourse.course.checks.ex02 import *  # noqa: F403
from ftcourse.course.checks.ex03 import *  # noqa: F403
from ftcourse.course.checks.ex04 import *  # noqa: F403
from ftcourse.course.checks.ex05 import *  # noqa: F403
from ftcourse.course.checks.ex06 import *  # noqa: F403
from ftcourse.course.checks.ex07 import *  # noqa: F403
from ftcourse.course.checks.ex08 import *  # noqa: F403
from ftcourse.course.checks.ex09 import *  # noqa: F403
from ftcourse.course.checks.ex10 import *  # noqa: F403
from ftcourse.course.checks.ex11 import *  # noqa: F403
from ftcourse.course.checks.ex12 import *  # noqa: F403
from ftcourse.course.checks.ex13 import *  # noqa: F403

__all__ = [*core.__all__, *ex01.__all__, *ex02.__all__, *ex03.__all__, *ex04.__all__, *ex05.__all__, *ex06.__all__,
           *ex07.__all__, *ex08.__all__, *ex09.__all__, *ex10.__all__, *ex11.__all__, *ex12.__all__, *ex13.__all__]
