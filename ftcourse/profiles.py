"""The named run profiles (smoke, cpu, gpu, auto): the sizes a notebook or script runs at."""

from __future__ import annotations

from functools import cache

from pydantic import Field

from ftcourse.configs import Count, CourseSettings, Real, Steps
from ftcourse.errors import CourseError
from ftcourse.hardware import detect_environment, hub_offline, table

__all__ = ["get_profile", "GPU_ONLINE_MODEL", "gpu_profile_model", "hub_reachable", "Profile", "PROFILES"]


class Profile(CourseSettings):
    """The sizes a notebook runs at. Every field can be overridden: ``get_profile("cpu", max_steps=50)``."""

    name: str = Field(strict=True)
    model: str = Field(strict=True)
    max_steps: Steps  # optimizer steps per training run; -1 means "train num_epochs"
    num_epochs: Real = Field(gt=0, description="greater than 0")
    batch_size: Count
    gradient_accumulation_steps: Count
    max_seq_length: Count
    n_train: Count | None = Field(description="at least 1 (or None: all)")  # training examples used
    n_eval: Count | None = Field(description="at least 1 (or None: all)")  # evaluation examples used
    eval_batch_size: Count

    def __str__(self) -> str:
        return table(f"Profile '{self.name}'", self.model_dump())


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke", model="embedded", max_steps=4, num_epochs=1, batch_size=4, gradient_accumulation_steps=1,
        max_seq_length=256, n_train=32, n_eval=20, eval_batch_size=20,
    ),
    "cpu": Profile(
        name="cpu", model="embedded", max_steps=150, num_epochs=1, batch_size=8, gradient_accumulation_steps=1,
        max_seq_length=256, n_train=None, n_eval=None, eval_batch_size=32,
    ),
    "gpu": Profile(
        name="gpu", model="embedded", max_steps=-1, num_epochs=3, batch_size=16, gradient_accumulation_steps=1,
        max_seq_length=512, n_train=None, n_eval=None, eval_batch_size=64,
    ),
}

#: The larger model the ``gpu`` profile uses when it can be loaded: in the local Hugging Face cache, or the Hub reachable.
GPU_ONLINE_MODEL = "HuggingFaceTB/SmolLM2-360M-Instruct"


@cache
def hub_reachable(timeout: float = 5.0) -> bool:
    """Whether the Hugging Face Hub answers for :data:`GPU_ONLINE_MODEL` within ``timeout`` seconds (asked once per process)."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    try:
        get_hf_file_metadata(hf_hub_url(GPU_ONLINE_MODEL, "config.json"), timeout=timeout)
    except Exception:  # offline, no route, a timeout, a proxy's error page: not reachable
        return False
    return True


def gpu_profile_model() -> str:
    """The ``gpu`` profile's model: :data:`GPU_ONLINE_MODEL` when its weights are in the local Hugging Face cache or the
    Hub is reachable (never asked under ``HF_HUB_OFFLINE=1``), else ``embedded``."""
    from huggingface_hub import try_to_load_from_cache

    cached = all(isinstance(try_to_load_from_cache(GPU_ONLINE_MODEL, f), str) for f in ("config.json", "model.safetensors"))
    return GPU_ONLINE_MODEL if cached or (not hub_offline() and hub_reachable()) else "embedded"


def get_profile(name: str = "auto", **overrides) -> Profile:
    """Return a named profile (``auto`` picks ``gpu`` on CUDA, else ``cpu``), with fields overridden.

    An override of ``None`` keeps the profile's value: ``get_profile("gpu", model=None)`` uses the ``gpu`` profile's
    model (:func:`gpu_profile_model`), as every notebook's ``model_name = None`` does.
    """
    if isinstance(name, Profile):
        base = name
    else:
        key = name.lower()
        if key == "auto":
            key = "gpu" if detect_environment().device == "cuda" else "cpu"
        if key not in PROFILES:
            raise CourseError(
                f"Unknown profile {name!r}.", f"use one of: {', '.join([*PROFILES, 'auto'])}."
            )
        base = PROFILES[key]
        if key == "gpu" and overrides.get("model") is None:
            base = base.replace(model=gpu_profile_model())
    return base.replace(**{k: v for k, v in overrides.items() if v is not None})


