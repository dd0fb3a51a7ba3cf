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
