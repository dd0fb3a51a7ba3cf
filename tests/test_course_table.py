"""The README's course table, written from a course run (``ftcourse course-table``)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from ftcourse.errors import CourseError
from ftcourse.tools.course_table import END_MARKER, HEADLINES, START_MARKER, course_table, headline, update_readme

README = f"# Course\n\nintro\n\n{START_MARKER}\n| old | table |\n{END_MARKER}\n\n## After\ntext\n"


@pytest.fixture
def run_dir(tmp_path):
    """A fixture course run: two lessons that ran (one recorded metrics, with an interval), one that failed."""
    runs = [{"notebook": "notebooks/01_data_preparation.ipynb", "status": "ok", "seconds": 23.4, "peak_rss_mb": 1638.4, "error": None},
            {"notebook": "notebooks/09_scaling_out.ipynb", "status": "ok", "seconds": 83.0, "peak_rss_mb": 6656.0, "error": None},
            {"notebook": "notebooks/10_inference_and_serving.ipynb", "status": "failed", "seconds": 12.0, "peak_rss_mb": 512.0,
             "error": "AssertionError: claim"}]
    (tmp_path / "summary.json").write_text(json.dumps({"profile": "cpu", "jobs": 1, "total_seconds": 118.4, "runs": runs}))
    (tmp_path / "01_data_preparation.metrics.json").write_text(json.dumps(
        {"zero_shot_accuracy": 0.114, "zero_shot_accuracy_low": 0.07, "zero_shot_accuracy_high": 0.19, "zero_shot_macro_f1": 0.05}))
    (tmp_path / "09_scaling_out.metrics.json").write_text(json.dumps({"fsdp2_lora_share_rank0": 0.5}))
    return tmp_path


def test_table_rows_come_from_the_run(run_dir):
    table = course_table(run_dir).splitlines()
    assert table[0] == "| lesson | time | peak memory | headline result (`cpu` run) |"
    assert table[2] == "| 01 data preparation | 23 s | 1.6 GB | zero-shot intent accuracy 0.11 [0.07, 0.19] (macro F1 0.05) |"
    # the DDP fragment's metric was not recorded: only the FSDP2 fragment is shown
    assert table[3] == "| 09 scaling out | 83 s | 6.5 GB | FSDP2 rank 0 stores 50% of the LoRA values |"
    assert table[4] == "| 10 inference and serving | failed (AssertionError: claim) | 0.5 GB | — |"
    assert table[5] == "| **all 3** | 1 min 58 s (118 s) | 6.5 GB (largest) | |"



def test_an_interrupted_run_is_marked(run_dir):
    summary = json.loads((run_dir / "summary.json").read_text())
    (run_dir / "summary.json").write_text(json.dumps({**summary, "complete": False}))
    assert course_table(run_dir).splitlines()[-1].startswith("| **all 3** (run interrupted: the lessons that finished) | 1 min 58 s")

def test_headline_drops_fragments_with_missing_metrics():
    assert headline(("static", "a {x:.1f}", "b {y}"), {"x": 1.25}) == "static; a 1.2"
    assert headline(("a {x}",), {}) == "—"
    # every template names only fields it can format (a typo in a format spec would fail here, not in a course run)
    for stem, fragments in HEADLINES.items():
        assert headline(fragments, _all_fields(fragments)), stem


def _all_fields(fragments: tuple[str, ...]) -> dict[str, float]:
    return {name: 0.5 for f in fragments for name in re.findall(r"\{([^{}:]+)", f)}


def test_update_readme_rewrites_between_the_markers_only(run_dir, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(README)
    table = course_table(run_dir)
    assert update_readme(table, readme, check=True) is True
    assert readme.read_text() == README  # --check writes nothing
    assert update_readme(table, readme) is True
    text = readme.read_text()
    assert text.startswith("# Course\n\nintro\n\n" + START_MARKER + "\n| lesson |")
    assert text.endswith(f"(largest) | |\n{END_MARKER}\n\n## After\ntext\n")
    assert "| old | table |" not in text
    assert update_readme(table, readme) is False  # the same run again: nothing to change


@pytest.mark.parametrize("broken", ["# no markers\n", f"{END_MARKER}\n{START_MARKER}\n", f"{START_MARKER}\n{START_MARKER}\n{END_MARKER}\n"])
def test_markers_missing_or_out_of_order_are_an_error(tmp_path, broken):
    readme = tmp_path / "README.md"
    readme.write_text(broken)
    with pytest.raises(CourseError, match="markers"):
        update_readme("| t |", readme)
    assert readme.read_text() == broken


def test_a_folder_without_a_run_is_an_error(tmp_path):
    with pytest.raises(CourseError, match="summary.json does not exist"):
        course_table(tmp_path)


def test_command_line(run_dir, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(README)
    command = [sys.executable, "-m", "ftcourse.tools.cli", "course-table", str(run_dir), "--readme", str(readme)]
    assert subprocess.run([*command, "--check"], capture_output=True, text=True).returncode == 1
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    assert "README course table rewritten" in done.stdout
    assert subprocess.run([*command, "--check"], capture_output=True, text=True).returncode == 0
