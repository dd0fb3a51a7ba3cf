"""The Chinese README stays in step with the English one: the same two commands, the same lessons and exercises, in order."""

from __future__ import annotations

import re

import pytest

from ftcourse import paths

ROOT = paths.project_root()
ENGLISH = (ROOT / "README.md").read_text(encoding="utf-8")
CHINESE = (ROOT / "README.zh-CN.md").read_text(encoding="utf-8")


def commands(readme: str) -> list[str]:
    """The commands of the README's first shell block, comments left out."""
    block = re.search(r"```bash\n(.*?)```", readme, re.S).group(1)
    return [line.split("#")[0].strip() for line in block.splitlines() if line.split("#")[0].strip()]


def table_links(readme: str, heading: str) -> list[str]:
    """The notebook links of the table rows under ``## heading``, in order."""
    section = readme.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return [link for line in section.splitlines() if line.startswith("|") for link in re.findall(r"\]\(([^)]+\.ipynb)\)", line)]


def test_both_readmes_start_with_the_same_two_commands():
    assert commands(ENGLISH) == commands(CHINESE) == ["make course", "make test"]


@pytest.mark.parametrize("english, chinese", [("The lessons", "课程"), ("Exercises and grading", "练习与评分")])
def test_the_chinese_tables_link_the_same_notebooks_in_the_same_order(english, chinese):
    links = table_links(ENGLISH, english)
    assert links and table_links(CHINESE, chinese) == links
    assert all((ROOT / link).is_file() for link in links)


def test_each_readme_links_the_other_at_the_top():
    assert "[简体中文](README.zh-CN.md)" in ENGLISH.split("\n## ", 1)[0]
    assert "[English](README.md)" in CHINESE.split("\n## ", 1)[0]
