"""The two runs lesson 09 launches with ``torchrun``, in plain PyTorch: DDP (each rank prints its own loss) and FSDP2.

    torchrun --nproc_per_node 2 -m ftcourse.course.distributed_demo ddp --out DIR
    torchrun --nproc_per_node 2 -m ftcourse.course.distributed_demo fsdp2 --out DIR

Both put LoRA (r=8, q_proj/v_proj, no dropout) on ``--model`` and train on the first texts of the
support-intents data. Rank 0 writes ``DIR/<mode>.json`` (and the DDP run's LoRA weights, ``DIR/ddp_lora.pt``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.distributed as dist

from ftcourse import paths
from ftcourse.distributed import end_process, fsdp2_shard, local_numel
from ftcourse.models import load_model, load_tokenizer

__all__ = ["main"]


def _lora_model(name: str, seed: int):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)  # the same LoRA initialisation on every rank
    model = load_model(name, dtype="float32", device_map="cpu")  # gloo on CPU processes, also on a GPU machine
    return get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj"]))


def _global_batches(name: str, steps: int, batch_size: int, seq_length: int) -> list[dict[str, torch.Tensor]]:
    """``steps`` global batches of plain-text LM examples (labels = inputs, padding ignored)."""
    tokenizer = load_tokenizer(name)
    lines = (paths.data_dir() / "raw" / "support_intents.jsonl").read_text(encoding="utf-8").splitlines()
    texts = [json.loads(line)["text"] for line in lines[: steps * batch_size]]
    batches = []
    for i in range(0, len(texts), batch_size):
        enc = tokenizer(texts[i : i + batch_size], max_length=seq_length, truncation=True, padding="max_length", return_tensors="pt")
        enc["labels"] = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
        batches.append(dict(enc))
    return batches


def _my_loss(model, batch: dict[str, torch.Tensor], rank: int, world: int) -> tuple[torch.Tensor, float]:
    """This rank's share of the global batch's mean token loss (times ``world``: DDP averages the gradients)."""
    mine = {k: v[rank::world] for k, v in batch.items()}
    logits = model(input_ids=mine["input_ids"], attention_mask=mine["attention_mask"]).logits[:, :-1].float()
    labels = mine["labels"][:, 1:]
    total = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100, reduction="sum")
    n_global, n_mine = int((batch["labels"][:, 1:] != -100).sum()), int((labels != -100).sum())
    return total / n_global * world, total.item() / max(n_mine, 1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=["ddp", "fsdp2"])
    parser.add_argument("--out", required=True)
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=4, help="global batch (split over the processes)")
    parser.add_argument("--seq_length", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    dist.init_process_group("gloo")  # CPU; on GPUs it would be nccl
    rank, world = dist.get_rank(), dist.get_world_size()
    model = _lora_model(args.model, args.seed)
    batches = _global_batches(args.model, args.steps, args.batch_size, args.seq_length)
    record: dict = {"mode": args.mode, "world_size": world}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    if args.mode == "ddp":
        trained = torch.nn.parallel.DistributedDataParallel(model)  # broadcasts rank 0's weights; all-reduces gradients in backward
    else:
        record["sharded_layers"] = fsdp2_shard(model)
        trained = model
    mine, whole = local_numel(model)
    print(f"rank {rank}: holds {mine:,} of {whole:,} LoRA values", flush=True)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    losses, start = [], time.perf_counter()
    for step, batch in enumerate(batches, 1):
        loss, shown = _my_loss(trained, batch, rank, world)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(round(shown, 4))
        print(f"step {step} rank {rank}: loss on its {args.batch_size // world} examples {shown:.4f}", flush=True)
    seconds = time.perf_counter() - start
    all_losses, all_counts = [None] * world, [None] * world
    dist.all_gather_object(all_losses, losses)
    dist.all_gather_object(all_counts, [mine, whole])
    record.update(losses=all_losses, lora_values=all_counts, seconds_per_step=round(seconds / args.steps, 3))
    if args.mode == "ddp":
        flat = torch.cat([p.detach().flatten() for n, p in model.named_parameters() if "lora_" in n])
        copies = [torch.empty_like(flat) for _ in range(world)]
        dist.all_gather(copies, flat)
        record["max_difference_between_ranks"] = max((c - copies[0]).abs().max().item() for c in copies)
        if rank == 0:
            torch.save(flat, Path(args.out) / "ddp_lora.pt")
    if rank == 0:
        (Path(args.out) / f"{args.mode}.json").write_text(json.dumps(record, indent=1))
    end_process()  # barrier, destroy the process group, exit without interpreter shutdown (see its docstring)


if __name__ == "__main__":
    main()
