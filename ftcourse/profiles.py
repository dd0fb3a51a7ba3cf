"""The named run profiles (smoke, cpu, gpu, auto): the sizes a notebook or script runs at."""

from __future__ import annotations

from pydantic import Field

from ftcourse.configs import Count, CourseSettings, Real, Steps
from ftcourse.errors import CourseError
from ftcourse.hardware import detect_environment, hub_offline, table

__all__ = ["get_profile", "GPU_ONLINE_MODEL", "Profile", "PROFILES"]


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

#: The larger model the ``gpu`` profile uses when the Hugging Face Hub is reachable.
GPU_ONLINE_MODEL = "HuggingFaceTB/SmolLM2-360M-Instruct"


def get_profile(name: str = "auto", **overrides) -> Profile:
    """Return a named profile (``auto`` picks ``gpu`` on CUDA, else ``cpu``), with fields overridden."""
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
        if key == "gpu" and not hub_offline() and "model" not in overrides:
            base = base.replace(model=GPU_ONLINE_MODEL)
    return base.replace(**{k: v for k, v in overrides.items() if v is not None})


