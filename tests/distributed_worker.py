"""Run by tests/test_distributed.py, alone or under ``torchrun``: fine-tune a tiny Llama with
``ftcourse.train.fine_tune`` and save this rank's LoRA weights and the run's world size.

    python tests/distributed_worker.py OUT GRADIENT_ACCUMULATION_STEPS [fsdp]
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tiny import tiny_model  # noqa: E402

from ftcourse.configs import LoraSettings, TrainingSettings  # noqa: E402
from ftcourse.distributed import end_process, world_info  # noqa: E402
from ftcourse.models import load_tokenizer  # noqa: E402
from ftcourse.train import fine_tune  # noqa: E402

STEPS, BATCH = 3, 2


def records(tokenizer, n: int = 16) -> list[dict]:
    """Pre-tokenized examples of varied length: a masked prompt, then a trained answer ending in EOS."""
    rng = random.Random(0)
    out = []
    for _ in range(n):
        prompt, answer = rng.randint(4, 12), rng.randint(2, 6)
        ids = [rng.randrange(3, 500) for _ in range(prompt + answer)] + [tokenizer.eos_token_id]
        out.append({"input_ids": ids, "labels": [-100] * prompt + ids[prompt:]})
    return out


def main(out: Path, accumulation: int) -> None:
    tokenizer = load_tokenizer("embedded")
    result = fine_tune(
        records(tokenizer), model=tiny_model("llama"), tokenizer=tokenizer,
        lora=LoraSettings(r=4, lora_alpha=8, lora_dropout=0.0),  # dropout would draw different masks per rank
        settings=TrainingSettings(max_steps=STEPS, batch_size=BATCH, gradient_accumulation_steps=accumulation,
                                  learning_rate=1e-2, warmup_ratio=0.0, logging_steps=1, seed=0),
        run_name="tiny", output_root=out / "runs", checkpoint_root=out / "checkpoints", progress=False,
    )
    lora = {n: p.detach().float().cpu().clone() for n, p in result.model.named_parameters() if "lora_" in n}
    torch.save({"lora": lora, "metrics": result.metrics}, out / f"rank{world_info().rank}.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
    end_process()  # the Trainer's gloo group can abort the rank at interpreter shutdown (see end_process)
