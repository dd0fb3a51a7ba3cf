"""Runs inside a submission's sandbox (``python -m ftcourse.tools.submission_run``): executes the prepared notebook.

It prints :data:`STARTED` first, then writes into ``--out``: ``replies.jsonl``, one line per cell as it finishes (index, status, ename,
evalue), so that a notebook stopped at the time limit keeps what it reached; then ``executed.ipynb`` (output capped) and
``status.json`` (``ok``, ``timed out`` or ``crashed``, and why). All of it runs with the student's code: the grader
reads these files as untrusted data, and decides the converted tasks from the checks' collected data, not from them.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import nbformat

__all__ = ["EXECUTED", "main", "OUTPUT_CAP", "REPLIES", "STARTED", "STATUS"]

#: Characters of cell output kept per submission; the rest is dropped (a notebook may print megabytes).
OUTPUT_CAP = 200_000
#: The runner's first line on standard output, before any of the notebook runs: the grader knows the sandbox started
#: (a notebook can delete files, but not take back a line the grader has read).
STARTED = "ftcourse submission runner started"
REPLIES, STATUS, EXECUTED = "replies.jsonl", "status.json", "executed.ipynb"


def _client_class():
    from nbclient import NotebookClient

    class GradingClient(NotebookClient):
        """Keeps at most ``OUTPUT_CAP`` characters of output; appends every cell's execute reply to a file as it comes."""

        def __init__(self, nb, replies, **kwargs):
            super().__init__(nb, on_cell_executed=self._record, **kwargs)
            self.kept, self.truncated, self.replies = 0, set(), replies

        def _record(self, cell, cell_index, execute_reply):
            content = execute_reply["content"]
            line = {"cell": cell_index, **{k: str(content.get(k, ""))[:2000] for k in ("status", "ename", "evalue")}}
            self.replies.write(json.dumps(line) + "\n")
            self.replies.flush()

        def output(self, outs, msg, display_id, cell_index):
            size = len(str(msg["content"]))
            if msg["msg_type"] != "error" and self.kept + size > OUTPUT_CAP:
                if cell_index not in self.truncated:
                    self.truncated.add(cell_index)
                    outs.append(nbformat.v4.new_output("stream", name="stderr", text="[output truncated by the grader]\n"))
                return None
            self.kept += size
            return super().output(outs, msg, display_id, cell_index)

    return GradingClient


def main(argv: list[str] | None = None) -> int:
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notebook", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--timeout", type=int, required=True, help="seconds for the whole notebook")
    parser.add_argument("--kernel", required=True)
    parser.add_argument("--cwd", required=True, help="the kernel's working folder")
    args = parser.parse_args(argv)
    print(STARTED, flush=True)
    out = Path(args.out)
    nb = nbformat.read(args.notebook, as_version=4)
    deadline = time.monotonic() + args.timeout
    status, stop = "ok", ""
    with open(out / REPLIES, "a", encoding="utf-8") as replies:
        client = _client_class()(nb, replies, kernel_name=args.kernel, allow_errors=True, interrupt_on_timeout=False,
                                 timeout_func=lambda cell: max(1, int(deadline - time.monotonic())),
                                 resources={"metadata": {"path": args.cwd}})
        try:
            client.execute(transport_encryption="auto")
        except CellTimeoutError:
            status, stop = "timed out", f"the notebook ran past the grader's limit of {args.timeout} s"
        except DeadKernelError:
            status, stop = "crashed", "the kernel died (the notebook crashed Python, exited, or ran out of memory)"
        except Exception as exc:  # the notebook broke the runner (it shares the sandbox with it)
            status, stop = "crashed", f"the notebook stopped the grader's runner ({type(exc).__name__}: {str(exc)[:300]})"
    out.mkdir(parents=True, exist_ok=True)  # the notebook may have deleted it
    nbformat.write(nb, out / EXECUTED)
    (out / STATUS).write_text(json.dumps({"status": status, "stop": stop}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
