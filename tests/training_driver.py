"""Run by tests/test_robustness.py as a second, real process: ``scripts/fine_tune_model.py`` with one callback added.

    python tests/training_driver.py pause READY GO -- SCRIPT_ARGS...   # after step 1: create READY, wait until GO exists
    python tests/training_driver.py interrupt STEP -- SCRIPT_ARGS...   # at step STEP: a real SIGINT (Ctrl-C) to this process
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # this checkout's package, like the test that starts it

from script_modules import load_script  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

import ftcourse.train  # noqa: E402


class Pause(TrainerCallback):
    """Holds training after its first step (the run folder locked) until the test creates ``go``."""

    def __init__(self, ready: str, go: str, limit: float = 600):
        self.ready, self.go, self.limit = Path(ready), Path(go), limit

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 1:
            self.ready.touch()
            deadline = time.monotonic() + self.limit
            while not self.go.exists():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{self.go} never appeared")
                time.sleep(0.05)


class CtrlC(TrainerCallback):
    """Presses Ctrl-C at step ``step``: the process sends itself SIGINT, as a terminal does."""

    def __init__(self, step: str):
        self.step = int(step)

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            os.kill(os.getpid(), signal.SIGINT)


def main(argv: list[str]) -> int:
    mode, *rest = argv
    split = rest.index("--")
    extra = {"pause": Pause, "interrupt": CtrlC}[mode](*rest[:split])
    signal.signal(signal.SIGINT, signal.default_int_handler)  # a test runner's worker may start us with Ctrl-C ignored
    fine_tune = ftcourse.train.fine_tune
    ftcourse.train.fine_tune = lambda *args, callbacks=(), **kwargs: fine_tune(*args, callbacks=[*callbacks, extra], **kwargs)
    return load_script("fine_tune_model").main(rest[split + 1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
