"""Shared fixtures: the real embedded model (loaded once) and tiny random architectures."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# trackio reads $TRACKIO_DIR once, when it is first imported (TRL's trainers import it): set it before any test imports
# it, so that a run logged by a test goes to a folder of this test process, whatever ran before it.
TRACKIO_DIR = tempfile.mkdtemp(prefix="ftcourse-trackio-")
os.environ["TRACKIO_DIR"] = TRACKIO_DIR
atexit.register(shutil.rmtree, TRACKIO_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def tokenizer():
    from ftcourse.models import load_tokenizer

    return load_tokenizer("embedded")


@pytest.fixture(scope="session")
def base_model():
    """The real embedded model. Do not modify it in place; use ``fresh_model`` for that."""
    from ftcourse.models import load_model

    return load_model("embedded")


@pytest.fixture
def fresh_model():
    from ftcourse.models import load_model

    return load_model("embedded")
