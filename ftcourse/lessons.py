"""Runs that several lessons build on, defined once so that each lesson gets the same model.

Lesson 02 trains them; lessons 03, 07 and the exercises call the same function and reuse the
saved run (``fine_tune(reuse=True)``) when its fingerprint matches, or train it if missing.
"""

from __future__ import annotations

from ftcourse.bundled import domain_texts, instruction_records, intent_records
from ftcourse.configs import LoraSettings
from ftcourse.hardware import Profile
from ftcourse.models import load_model, load_tokenizer
from ftcourse.train import RunResult, fine_tune, settings_from_profile

#: LoRA settings of the intent-classification run (lesson 02).
INTENT_LORA = LoraSettings(r=16, lora_alpha=32, lora_dropout=0.05, target_modules=["q_proj", "v_proj"])
#: LoRA settings of the Alpaca-style instruction run (lesson 02): all attention and MLP projections.
INSTRUCTION_LORA = LoraSettings(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear")
#: LoRA settings of continued pre-training on the product manuals (lesson 06).
DOMAIN_LORA = LoraSettings(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear")


def intent_lora(profile: Profile, progress: bool = True, reuse: bool = True) -> RunResult:
    """LoRA on the intent task, sized by ``profile``; saved as ``models/fine_tuned/intent-lora-<profile>``."""
    return _lora_run("intent", intent_records(profile), INTENT_LORA, profile, progress, reuse)


def instruction_lora(profile: Profile, progress: bool = True, reuse: bool = True) -> RunResult:
    """LoRA on all three instruction tasks (classify, extract, reply); saved as ``instruction-lora-<profile>``."""
    return _lora_run("instruction", instruction_records(profile), INSTRUCTION_LORA, profile, progress, reuse)


def _lora_run(task: str, data: dict[str, list[dict]], lora: LoraSettings, profile: Profile, progress: bool, reuse: bool) -> RunResult:
    return fine_tune(
        data["train"], model=profile.model, method="lora", lora=lora,
        settings=settings_from_profile(profile), eval_records=data["validation"],
        run_name=f"{task}-lora-{profile.name}", reuse=reuse, progress=progress,
    )


def domain_lora(profile: Profile, progress: bool = True, reuse: bool = True) -> RunResult:
    """Lesson 06's continued pre-training on the manuals (packed text, LoRA r=16 on all linear layers); ``domain-lora-<profile>``."""
    train = [{"text": t} for t in domain_texts()["train"]]
    return fine_tune(train, model=load_model(profile.model), tokenizer=load_tokenizer(profile.model), method="lora", lora=DOMAIN_LORA,
                     settings=settings_from_profile(profile), packing=True, run_name=f"domain-lora-{profile.name}",
                     reuse=reuse, progress=progress)

