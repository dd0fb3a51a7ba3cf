"""Runs that several lessons build on, defined once so that each lesson gets the same model.

Lesson 02 trains them; lessons 03, 07 and the exercises call the same function and reuse the
saved run (``fine_tune(reuse=True)``) when its fingerprint matches, or train it if missing.
"""

from __future__ import annotations

from typing import Any

from ftcourse.configs import LoraSettings, TrainingSettings
from ftcourse.course.bundled import domain_texts, instruction_records, intent_records
from ftcourse.models import load_model, load_tokenizer
from ftcourse.profiles import Profile
from ftcourse.runs import RunResult
from ftcourse.train import fine_tune, settings_from_profile

__all__ = [
    "DOMAIN_LORA", "domain_lora", "DOMAIN_MAX_STEPS", "domain_settings", "INSTRUCTION_LORA", "instruction_lora",
    "INTENT_LEARNING_RATE", "INTENT_LORA", "intent_lora", "INTENT_LORA_QV",
]

#: LoRA settings of the intent-classification run (lesson 02): all attention and MLP projections, chosen on the validation
#: split against q/v only (``benchmarks/intent_seeds.py``, seeds 42/1/2 under ``cpu``, 2026-12-01): validation loss lower
#: for every seed (mean 0.0265 vs 0.0338), validation accuracy 0.970 vs 0.967, at +67% training time.
INTENT_LORA = LoraSettings(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear")
#: The intent settings on ``q_proj``/``v_proj`` only (the LoRA paper's choice): what lessons 04, 05 and 08 train for their
#: short comparisons of methods, ranks and seeds, where a step costs ~40% less than with :data:`INTENT_LORA`.
INTENT_LORA_QV = INTENT_LORA.replace(target_modules=["q_proj", "v_proj"])
#: Learning rate of the intent run: chosen on the validation split (150 steps × 8 under ``cpu``, 2026-12-01): validation
#: accuracy 0.97 at 3e-3 against 0.95 at the course's LoRA default of 2e-3.
INTENT_LEARNING_RATE = 3e-3
#: LoRA settings of the Alpaca-style instruction run (lesson 02): all attention and MLP projections.
INSTRUCTION_LORA = LoraSettings(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear")
#: LoRA settings of continued pre-training on the product manuals (lesson 06).
DOMAIN_LORA = LoraSettings(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear")


def intent_lora(profile: Profile, progress: bool = True, reuse: bool = True, seed: int | None = None,
                target_modules: str | list[str] | None = None, **fine_tune_kwargs: Any) -> RunResult:
    """LoRA on the intent task, sized by ``profile``, at :data:`INTENT_LEARNING_RATE`, evaluated on validation every tenth of
    its steps; saved as ``models/fine_tuned/intent-lora-<profile>``.

    ``seed`` replaces the training seed and ``target_modules`` :data:`INTENT_LORA`'s (``benchmarks/intent_seeds.py``);
    ``fine_tune_kwargs`` (``run_name``, ``output_root``, ...) go to :func:`~ftcourse.train.fine_tune`.
    """
    eval_steps = max(1, profile.max_steps // 10) if profile.max_steps > 0 else None  # a validation curve (lesson 02)
    overrides = {"learning_rate": INTENT_LEARNING_RATE, "eval_steps": eval_steps, **({"seed": seed} if seed is not None else {})}
    lora = INTENT_LORA if target_modules is None else INTENT_LORA.replace(target_modules=target_modules)
    return _lora_run("intent", intent_records(profile), lora, profile, progress, reuse, overrides, **fine_tune_kwargs)


def instruction_lora(profile: Profile, progress: bool = True, reuse: bool = True) -> RunResult:
    """LoRA on all three instruction tasks (classify, extract, reply); saved as ``instruction-lora-<profile>``.

    A step-limited profile gives it half of ``max_steps``: its examples (JSON tickets, replies) are longer, so a
    step costs about 1.7× an intent step on a CPU (measured under ``cpu``); 75 steps × 8 still see all 600 examples once.
    """
    steps = max(1, profile.max_steps // 2) if profile.max_steps > 0 else profile.max_steps
    return _lora_run("instruction", instruction_records(profile), INSTRUCTION_LORA, profile, progress, reuse, {"max_steps": steps})


def _lora_run(task: str, data: dict[str, list[dict]], lora: LoraSettings, profile: Profile, progress: bool, reuse: bool,
              overrides: dict[str, Any], **fine_tune_kwargs: Any) -> RunResult:
    return fine_tune(
        data["train"], model=profile.model, method="lora", lora=lora,
        settings=settings_from_profile(profile, **overrides), eval_records=data["validation"],
        reuse=reuse, progress=progress, **{"run_name": f"{task}-lora-{profile.name}", **fine_tune_kwargs},
    )


#: Most optimizer steps of the domain run: about 3 epochs of the manuals (26k tokens = 102 packed blocks of 256, batch 8).
DOMAIN_MAX_STEPS = 40


def domain_settings(profile: Profile, **overrides: Any) -> TrainingSettings:
    """Training settings of lesson 06's domain run: the profile's, with ``max_steps`` capped at :data:`DOMAIN_MAX_STEPS`."""
    steps = min(profile.max_steps, DOMAIN_MAX_STEPS) if profile.max_steps > 0 else profile.max_steps
    return settings_from_profile(profile, **{"max_steps": steps, **{k: v for k, v in overrides.items() if v is not None}})


def domain_lora(profile: Profile, progress: bool = True, reuse: bool = True) -> RunResult:
    """Lesson 06's continued pre-training on the manuals (packed text, LoRA r=16 on all linear layers); ``domain-lora-<profile>``."""
    train = [{"text": t} for t in domain_texts()["train"]]
    return fine_tune(train, model=load_model(profile.model), tokenizer=load_tokenizer(profile.model), method="lora", lora=DOMAIN_LORA,
                     settings=domain_settings(profile), packing=True, run_name=f"domain-lora-{profile.name}",
                     reuse=reuse, progress=progress)

