"""Reports the course writes: Markdown tables, and evaluation reports as JSON + Markdown side by side."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ftcourse.errors import CourseError
from ftcourse.fileio import atomic_write_json, atomic_write_text

__all__ = ["markdown_table", "REPORT_MARK", "write_report"]

REPORT_MARK = "ftcourse_report"


def _markdown_cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table (``|`` and newlines in cells escaped)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(_markdown_cell(c) for c in row) + " |" for row in rows])


def write_report(result: Any, folder: str | Path, name: str = "evaluation") -> list[Path]:
    """Write ``<name>.json`` and ``<name>.md`` of an evaluation or comparison (``to_dict``/``to_markdown``) atomically.

    An earlier course report of that name is replaced; any other existing file is left alone (an error).
    """
    folder = Path(folder)
    json_path, md_path = folder / f"{name}.json", folder / f"{name}.md"
    for path in (json_path, md_path):
        if path.exists() and not _is_report(path):
            raise CourseError(f"{path} exists and is not a report written by ftcourse; not overwriting it.",
                              "choose another folder (or name), or move that file away.")
    atomic_write_json(json_path, {REPORT_MARK: type(result).__name__.lower(), **result.to_dict()})
    atomic_write_text(md_path, f"<!-- {REPORT_MARK} -->\n{result.to_markdown()}")
    return [json_path, md_path]


def _is_report(path: Path) -> bool:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    if path.suffix == ".md":
        return text.startswith(f"<!-- {REPORT_MARK} -->")
    try:
        return REPORT_MARK in json.loads(text)
    except (ValueError, TypeError):
        return False
