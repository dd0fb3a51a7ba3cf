"""Shared fixtures: the real embedded model (loaded once) and tiny random architectures."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


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
