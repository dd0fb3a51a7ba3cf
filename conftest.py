"""nbval settings for validating executed notebooks by re-execution (``tests/checked_outputs.py`` uses it on a machine
unlike the one the checked outputs were recorded on; see README, "Continuous integration").

``pytest --nbval-lax runs/smoke/*.ipynb`` re-executes the copies papermill wrote, injected parameters included,
and compares the cells marked ``# NBVAL_CHECK_OUTPUT`` with papermill's outputs (after ``tests/nbval_sanitize.cfg``).
"""

from __future__ import annotations

from pathlib import Path

import pytest


def pytest_collectstart(collector):
    """Leave stderr (warnings, progress bars) out of the comparison; nbval already skips widget views and images."""
    if collector.path.suffix == ".ipynb" and hasattr(collector, "skip_compare"):
        collector.skip_compare += ("stderr",)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    """Run an executed copy in the folder papermill ran its source in, so relative paths behave the same."""
    result = yield
    kernel = getattr(item.parent, "kernel", None)
    source = getattr(item.parent, "nb", {}).get("metadata", {}).get("papermill", {}).get("input_path")
    if kernel is not None and source and getattr(item, "cell_num", None) == 0:
        kernel.await_reply(kernel.execute_cell_input(f"__import__('os').chdir({str(Path(source).parent)!r})", allow_stdin=False), timeout=60)
    return result
