"""The gpu profile's model (issue 25): ``model=None`` is the profile's choice — SmolLM2-360M-Instruct when its weights
are cached or the Hub answers, else the embedded model. Only the Hub's reachability is mocked; the cache is a real one."""

from __future__ import annotations

import pytest

from ftcourse import profiles
from ftcourse.profiles import GPU_ONLINE_MODEL, get_profile


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache; ``hub_cache(files)`` puts a snapshot of the gpu profile's model with those files in it."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))

    def put(*files: str) -> None:
        repo = tmp_path / ("models--" + GPU_ONLINE_MODEL.replace("/", "--"))
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / "main").write_text("abc123")
        for name in files:
            (repo / "snapshots" / "abc123").mkdir(parents=True, exist_ok=True)
            (repo / "snapshots" / "abc123" / name).write_text("{}")

    return put


def _hub(monkeypatch, offline: bool, reachable: bool | None) -> None:
    """HF_HUB_OFFLINE as given; the Hub's reachability mocked (None: asking it fails the test)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1" if offline else "0")

    def answer(timeout: float = 5.0) -> bool:
        assert reachable is not None, "the Hub was asked although HF_HUB_OFFLINE=1"
        return reachable

    monkeypatch.setattr(profiles, "hub_reachable", answer)


@pytest.mark.parametrize("offline, reachable, expected", [
    (True, None, "embedded"), (False, False, "embedded"), (False, True, GPU_ONLINE_MODEL),
])
def test_gpu_profile_model_follows_the_hub(hub_cache, monkeypatch, offline, reachable, expected):
    """model=None (every notebook's default) means the profile's choice; a model the learner passes always wins."""
    _hub(monkeypatch, offline, reachable)
    assert get_profile("gpu").model == expected
    assert get_profile("gpu", model=None).model == expected
    assert get_profile("gpu", model="Qwen/Qwen2.5-0.5B-Instruct").model == "Qwen/Qwen2.5-0.5B-Instruct"
    assert get_profile("gpu", model="embedded").model == "embedded"
    assert get_profile("cpu", model=None).model == get_profile("smoke").model == "embedded"


def test_gpu_profile_uses_the_cached_model_offline(hub_cache, monkeypatch):
    """Offline, the larger model is chosen only when its weights are cached, and then it loads by name without the Hub."""
    from ftcourse.models import resolve_model

    _hub(monkeypatch, offline=True, reachable=None)
    hub_cache("config.json")  # the weights are missing: loading would fail offline
    assert get_profile("gpu").model == "embedded"
    hub_cache("model.safetensors")
    assert get_profile("gpu").model == GPU_ONLINE_MODEL
    assert resolve_model(get_profile("gpu").model) == GPU_ONLINE_MODEL
