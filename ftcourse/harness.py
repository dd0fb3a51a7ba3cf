"""The course's data as a local task of EleutherAI's lm-evaluation-harness (``lm-eval`` 0.4), run offline on a loaded model.

:func:`write_choice_task` writes a multiple-choice task (a YAML config and its JSONL data, nothing from a hub);
:func:`run_harness` runs it with lm-eval's ``HFLM`` on a model already in memory (an adapter included) and returns the
accuracy with every document's prompt and per-choice log-likelihoods, so that it can be checked against the course's
own scoring (:func:`ftcourse.generation.label_log_likelihoods`).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftcourse.errors import CourseError
from ftcourse.fileio import atomic_write_text, jsonl_text

__all__ = ["HarnessResult", "run_harness", "write_choice_task"]


def write_choice_task(folder: str | Path, name: str, records: Sequence[dict[str, Any]], labels: Sequence[str], end: str = "") -> Path:
    """Write lm-eval task ``name`` into ``folder`` (``<name>.yaml`` + ``<name>.jsonl``); returns the YAML's path.

    Each processed record (chat ``messages`` + ``label``) becomes a document: its last user message is the text and the
    labels are the choices, each followed by ``end`` — pass the tokenizer's EOS token to score a label and then the end of
    the answer, as the course's label likelihood does. The task has no system prompt; :func:`run_harness` passes one.
    """
    missing = [label for label in {r.get("label") for r in records} if label not in labels]
    if not records or missing:
        raise CourseError(f"Cannot write a choice task from {len(records)} records (labels not among the choices: {missing}).",
                          "pass processed classification records (messages + label) and their full label set.")
    folder = Path(folder)
    data = folder / f"{name}.jsonl"
    docs = [{"text": r["messages"][-2]["content"], "choices": [label + end for label in labels], "gold": list(labels).index(r["label"])}
            for r in records]
    atomic_write_text(data, jsonl_text(docs))
    config = {  # JSON is YAML: the file lm-eval reads, without a YAML writer
        "task": name, "dataset_path": "json", "test_split": "test", "output_type": "multiple_choice",
        "dataset_kwargs": {"data_files": {"test": str(data)}, "cache_dir": str(folder / "cache")},
        "doc_to_text": "text", "doc_to_choice": "choices", "doc_to_target": "gold",
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
    }
    return atomic_write_text(folder / f"{name}.yaml", json.dumps(config, indent=2) + "\n")


@dataclass
class HarnessResult:
    """One lm-eval run of a choice task: accuracy, and per document the prompt, the choices' log-likelihoods and the pick."""

    task: str
    accuracy: float
    contexts: list[str]
    choices: list[list[str]]
    scores: list[list[float]]

    @property
    def predictions(self) -> list[int]:
        """Index of the most likely choice of each document (the first on a tie, as lm-eval's ``acc``)."""
        return [max(range(len(row)), key=row.__getitem__) for row in self.scores]


@contextlib.contextmanager
def _quiet(level: int = logging.ERROR) -> Iterator[None]:
    """lm-eval's INFO/WARNING log lines off for a block (its logger's level is restored afterwards)."""
    logger = logging.getLogger("lm_eval")
    before = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(before)


def run_harness(model, tokenizer, task_yaml: str | Path, system: str | None = None, chat_template: bool = True,
                batch_size: int = 16) -> HarnessResult:
    """Run the task written by :func:`write_choice_task` with lm-eval on ``model`` (a loaded model or ``PeftModel``).

    ``chat_template=True`` formats each document with the tokenizer's chat template and ``system`` as the system message
    (lm-eval's ``--apply_chat_template --system_instruction``); ``False`` writes the plain-text prompt base-model
    leaderboards use (``system``, a blank line, the text, a space, the choice).
    """
    try:
        import lm_eval
        from lm_eval.models.huggingface import HFLM
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise CourseError("The evaluation harness is not installed.", "pip install -c constraints.txt lm-eval (it is in the course extra).") from None
    task_yaml = Path(task_yaml)
    if not task_yaml.is_file():
        raise CourseError(f"{task_yaml} does not exist.", "write the task first with ftcourse.harness.write_choice_task(...).")
    task = json.loads(task_yaml.read_text(encoding="utf-8"))["task"]
    with _quiet():
        out = lm_eval.simple_evaluate(
            model=HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size), tasks=[task],
            task_manager=TaskManager(include_path=str(task_yaml.parent), include_defaults=False),
            apply_chat_template=chat_template, system_instruction=system if chat_template or not system else system.rstrip() + "\n\n",
            log_samples=True, bootstrap_iters=0,
        )
    samples = sorted(out["samples"][task], key=lambda s: s["doc_id"])
    return HarnessResult(task, out["results"][task]["acc,none"], [s["arguments"][0][0] for s in samples],
                         [[args[1] for args in s["arguments"]] for s in samples],
                         [[float(resp[0][0]) for resp in s["resps"]] for s in samples])
