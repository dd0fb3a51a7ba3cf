"""Run records for adapters the tests save themselves (tiny real models), as ``fine_tune`` writes them next to the adapter."""

from __future__ import annotations

import json
from pathlib import Path

from ftcourse.configs import LoraSettings, settings_dict
from ftcourse.course.bundled import intent_records
from ftcourse.profiles import get_profile
from ftcourse.runs import RUN_RECORD, run_fingerprint
from ftcourse.train import settings_from_profile


def write_run_record(run_dir: Path, method: str, split: str = "train", init_text: str | None = None) -> None:
    """Record ``run_dir`` as a ``smoke`` run of ``method`` trained on the intent task's ``split`` (its fingerprint says so)."""
    lora, settings = LoraSettings(), settings_from_profile(get_profile("smoke"))
    records = intent_records(get_profile("smoke"))[split]
    record = {"base_model": "tiny", "method": method, "lora": settings_dict(lora), "training": settings_dict(settings),
              "fingerprint": run_fingerprint("tiny", method, lora, settings, records, False, init_text)}
    (Path(run_dir) / RUN_RECORD).write_text(json.dumps(record))
