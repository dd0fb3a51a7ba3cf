"""Lessons 00 and 03 as a learner runs them: JupyterLab in headless Chromium (Playwright), every cell run through the UI.

Needs the ``playwright`` package (dev extra) and a Chromium binary (Debian's ``chromium``: ``make browser``;
Playwright's own browser download is not used). Skipped with the reason when either is missing.
The notebooks run as temporary copies with ``profile = "smoke"`` injected after the parameters cell (as papermill does).
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import nbformat
import psutil
import pytest

from ftcourse import paths
from ftcourse.course.experiments import kernel_name

CHROMIUM = os.environ.get("FTCOURSE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
try:
    from playwright.sync_api import sync_playwright
except ImportError:
    sync_playwright = None

pytestmark = [
    pytest.mark.skipif(sync_playwright is None, reason="playwright is not installed (pip install -c constraints.txt -e '.[dev]')"),
    pytest.mark.skipif(CHROMIUM is None, reason="no Chromium binary (`make browser` installs Debian's chromium; or set FTCOURSE_CHROMIUM)"),
]

CELL_TIMEOUT_MS = 20 * 60 * 1000  # a whole notebook under smoke; generous because a shared CI machine may be busy


def smoke_copy(notebook: Path, folder: Path) -> Path:
    """A copy of ``notebook`` in ``folder`` with ``profile = "smoke"`` injected after its parameters cell."""
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    nb = load_notebook_node(str(notebook))
    nb = parameterize_notebook(nb, {"profile": "smoke"}, kernel_name=kernel_name(), language="python")
    nb.metadata["kernelspec"] = {"name": kernel_name(), "display_name": "Python (ftcourse)", "language": "python"}
    nb.metadata.pop("papermill", None)
    copy = folder / notebook.name
    nbformat.write(nb, copy)
    return copy


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(url: str, server: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with status {server.returncode} before it answered")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"JupyterLab did not answer {url} within {timeout:.0f} s")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on a free port with a token and its own runtime, config and workspace folders.

    Serves a folder of smoke copies of lessons 00 and 03. Shut down through its API at the end, after the
    browser closed; then no process started here (server, kernels, Playwright's driver, Chromium) may be left.
    """
    already_running = {p.pid for p in psutil.Process().children(recursive=True)}
    home = tmp_path_factory.mktemp("jupyter")
    served = home / "notebooks"
    served.mkdir()
    for name in ("00_setup.ipynb", "03_evaluation.ipynb"):
        smoke_copy(paths.notebooks_dir() / name, served)
    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(home / "runtime"), "JUPYTER_CONFIG_DIR": str(home / "config"),
           "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"), "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(paths.project_root()), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
               f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={served}", "--LabApp.expose_app_in_browser=True",
               f"--LabApp.workspaces_dir={home / 'workspaces'}", f"--LabApp.user_settings_dir={home / 'settings'}"]
    if os.geteuid() == 0:  # CI runs as root; JupyterLab refuses root without this
        command.append("--allow-root")
    log = (home / "server.log").open("wb")
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{base}/api/status?token={token}", server)
        yield base, token
    finally:
        stop_server(server, base, token)
        log.close()
        left = [p for p in psutil.Process().children(recursive=True) if p.pid not in already_running]
        _gone, alive = psutil.wait_procs(left, timeout=30)
        assert not alive, f"processes left behind: {[(p.pid, p.name()) for p in alive]}"


def stop_server(server: subprocess.Popen, base: str, token: str) -> None:
    """Shut the server (and the kernels it started) down through its API; kill the process group if that fails."""
    try:
        request = urllib.request.Request(f"{base}/api/shutdown", method="POST", headers={"Authorization": f"token {token}"})
        urllib.request.urlopen(request, timeout=30).close()
        server.wait(timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        os.killpg(server.pid, 9)
        server.wait(timeout=30)


@pytest.fixture(scope="module")
def browser(lab):
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


# The notebook panel JupyterLab shows, through the app object that --LabApp.expose_app_in_browser puts on window.
PANEL = "window.jupyterapp?.shell.currentWidget"
KERNEL_READY = f"() => {PANEL}?.sessionContext?.session?.kernel?.status === 'idle' && {PANEL}.context?.isReady"
ERRORS = f"""() => {{
    const cells = {PANEL}.content.model.cells, found = [];
    for (let i = 0; i < cells.length; i++) {{
        const cell = cells.get(i);
        if (cell.type !== 'code') continue;
        if (cell.executionCount === null) found.push(`cell ${{i}} did not run`);
        for (let j = 0; j < cell.outputs.length; j++) {{
            const out = cell.outputs.get(j).toJSON();
            if (out.output_type === 'error') found.push(`cell ${{i}}: ${{out.ename}}: ${{out.evalue}}`);
        }}
    }}
    return found;
}}"""


def run_all_cells(browser, base: str, token: str, notebook: str):
    """Open ``notebook`` in a fresh workspace, run all cells from the UI; return the page and the cells' errors."""
    page = browser.new_page()
    page.set_default_timeout(120_000)
    page.goto(f"{base}/lab/workspaces/{uuid.uuid4().hex}/tree/{notebook}?reset&token={token}")
    page.wait_for_function(KERNEL_READY, timeout=180_000)
    page.set_default_timeout(CELL_TIMEOUT_MS)
    finished = page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    errors = page.evaluate(ERRORS)
    assert finished or errors, "run-all-cells reported a failure but no cell shows an error"
    page.set_default_timeout(120_000)
    return page, errors


def test_lesson_00_runs_in_jupyterlab(lab, browser):
    page, errors = run_all_cells(browser, *lab, "00_setup.ipynb")
    assert errors == []
    page.close()


def test_lesson_03_runs_and_its_playground_answers_a_click(lab, browser):
    page, errors = run_all_cells(browser, *lab, "03_evaluation.ipynb")
    assert errors == []
    playground = page.locator(".jp-OutputArea-output .jupyter-widgets").filter(has=page.get_by_role("button", name="Generate")).first
    playground.wait_for(state="visible")
    prompt, generate = playground.get_by_placeholder("Type a message to the model…"), playground.get_by_role("button", name="Generate")
    status = playground.locator(".widget-html-content").last  # the status line under the two panes
    prompt.fill("")
    generate.click()
    playground.get_by_text("Type a prompt first.").wait_for()  # the click reached the kernel and the answer came back
    prompt.fill("Where is the parcel I ordered last week?")
    generate.click()
    page.wait_for_function("(el) => /greedy; [0-9.]+ s/.test(el.textContent)", arg=status.element_handle())
    assert playground.locator("textarea[disabled]").last.input_value().strip(), "the fine-tuned pane stayed empty after the click"
    page.close()
