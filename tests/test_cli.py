"""The ftcourse command."""

from __future__ import annotations

import subprocess
import sys


def test_doctor_reports_environment_profile_and_model():
    out = subprocess.run([sys.executable, "-m", "ftcourse.tools.cli", "doctor", "--profile", "smoke"], capture_output=True, text=True, check=True).stdout
    assert "Environment" in out and "Profile 'smoke'" in out and "Embedded model:" in out


def test_run_rejects_missing_notebook():
    proc = subprocess.run([sys.executable, "-m", "ftcourse.tools.cli", "run", "notebooks/99_nope.ipynb"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "does not exist" in proc.stderr


def test_run_all_takes_the_lessons_in_order_with_a_short_lesson_after_its_number(tmp_path):
    from ftcourse.tools.runner import course_notebooks

    for name in ("02_b.ipynb", "01_a.ipynb", "01b_short.ipynb", "13_c.ipynb", "notes.ipynb", "lesson_1.ipynb"):
        (tmp_path / name).write_text("{}")
    assert [p.name for p in course_notebooks(tmp_path)] == ["01_a.ipynb", "01b_short.ipynb", "02_b.ipynb", "13_c.ipynb"]
