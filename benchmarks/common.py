"""Shared parts of the benchmarks: models, the TRL baseline, child processes, peak memory, results and README tables.

Each setup (the course's defaults, TRL's defaults) runs in its own child process, so that peak memory
and library state of one never leak into the other; the parent compares them and writes the results.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ftcourse.configs import LoraSettings
from ftcourse.fileio import atomic_write_json, atomic_write_text
from ftcourse.hardware import detect_environment

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
README = HERE / "README.md"
#: The LoRA config both setups train (the course's default: r=16, alpha=32, dropout 0.05 on q_proj/v_proj).
LORA = LoraSettings()

#: SmolLM2 shapes (from the models' config.json), built with random weights for GPU runs.
SHAPES = {
    "135m": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3, rope_theta=100000.0),
    "360m": dict(hidden_size=960, intermediate_size=2560, num_hidden_layers=32, num_attention_heads=15, num_key_value_heads=5, rope_theta=100000.0),
    "1.7b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=24, num_attention_heads=32, num_key_value_heads=32, rope_theta=130000.0),
}


def device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_benchmark_model(shape: str, seed: int = 42):
    """``embedded``: the real embedded model; a SmolLM2 shape: that architecture with random weights."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    from ftcourse.device import device_policy
    from ftcourse.models import load_model

    if shape == "embedded":
        return load_model("embedded")
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=49152, max_position_embeddings=8192, rms_norm_eps=1e-5, tie_word_embeddings=True,
                         bos_token_id=1, eos_token_id=2, pad_token_id=2, **SHAPES[shape])
    return AutoModelForCausalLM.from_config(config, dtype=device_policy().weights_dtype).to(device())


class BenchmarkError(RuntimeError):
    """A figure the benchmark cannot measure validly (the machine too busy); the message says what to do."""


def measure_bf16_peak(seconds: float = 1.0, size: int | None = None, rounds: int = 10, tolerance: float = 0.05,
                      clock: Callable[[], float] = time.perf_counter, shape: tuple[int, int, int] | None = None) -> float:
    """This machine's bf16 matmul throughput in FLOP/s (all threads): ``size`` × ``size`` squares, or an (m, k, n) ``shape``.

    Measured in rounds of at least ``seconds`` (each at least one matmul, so never 0) until two rounds
    agree within ``tolerance``; the peak is the highest rate another round confirms. Raises :class:`BenchmarkError`
    when ``rounds`` rounds do not settle (other jobs competing for the machine).
    """
    size = size or (8192 if device() == "cuda" else 2048)
    m, k, n = shape or (size, size, size)
    a = torch.randn(m, k, device=device(), dtype=torch.bfloat16)
    b = torch.randn(k, n, device=device(), dtype=torch.bfloat16)
    a @ b  # warm up
    rates: list[float] = []
    for _ in range(rounds):
        count, start = 0, clock()
        while count == 0 or clock() - start < seconds:
            a @ b
            count += 1
            if device() == "cuda":
                torch.cuda.synchronize()
        rates.append(2 * m * k * n * count / (clock() - start))
        ranked = sorted(rates, reverse=True)
        for high, low in zip(ranked, ranked[1:]):  # the highest rate another round confirms (a lone high round is not a peak)
            if low >= (1 - tolerance) * high:
                return high
    raise BenchmarkError(f"the bf16 matmul peak did not settle in {rounds} rounds ({', '.join(f'{r / 1e9:.0f}' for r in rates)} GFLOP/s): "
                         "other jobs are competing for the machine; run the benchmark again when it is idle")


#: The ways the MFU denominator is measured on a CPU: squares of three sizes, and the embedded model's own layer shapes
#: (2,048 tokens through the 576 → 1,536 MLP projections and the 576 → 576 attention projection).
PEAK_SHAPES = {"square 1024": (1024, 1024, 1024), "square 2048": (2048, 2048, 2048), "square 4096": (4096, 4096, 4096),
               "2048 x 576 -> 1536": (2048, 576, 1536), "2048 x 1536 -> 576": (2048, 1536, 576), "2048 x 576 -> 576": (2048, 576, 576)}


def bf16_peak_study() -> dict[str, Any]:
    """The bf16 matmul rate measured several ways (GFLOP/s each) and the peak used for MFU: the highest, so MFU is not flattered.

    On a GPU only the 8,192² square is measured.
    """
    shapes = PEAK_SHAPES if device() == "cpu" else {"square 8192": (8192, 8192, 8192)}
    rates = {name: measure_bf16_peak(shape=shape) for name, shape in shapes.items()}
    return {"gflops_by_way": {name: round(r / 1e9, 1) for name, r in rates.items()}, "peak_gflops": round(max(rates.values()) / 1e9, 1)}


def mfu_percent(flops: float, seconds: float, peak: float) -> float | None:
    """Model FLOPs utilisation in percent, or None when the figure would be impossible (over 100%: the peak was measured too low)."""
    value = 100 * flops / seconds / peak
    return round(value, 1) if 0 < value <= 100 else None


def training_flops(model, input_tokens: int, trained_tokens: int, mean_length: float) -> float:
    """Useful FLOPs of adapter training: forward + input-gradient backward (4 x params) per token through the
    body and attention, the LM head only where a label is, plus 6 x adapter params per token (their weight gradients).
    The same formula for both setups: the MFU ratio is the throughput ratio."""
    config = model.config
    embedding = config.vocab_size * config.hidden_size
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    body = total - trainable - embedding * (1 if config.tie_word_embeddings else 2)
    attention = 4 * config.num_hidden_layers * mean_length * config.hidden_size  # causal QK^T and AV, forward + backward
    return input_tokens * (4 * body + attention + 6 * trainable) + trained_tokens * 4 * embedding


def peak_memory_mb() -> float:
    """Peak memory of this process: allocated GPU memory on CUDA, else the peak RSS."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine() -> dict[str, Any]:
    env = detect_environment()
    return {"device": env.device, "device_name": env.device_name, "cpu_count": env.cpu_count, "threads": torch.get_num_threads(),
            "bf16": env.bf16, "torch": torch.__version__, "python": platform.python_version(),
            "load_average_1min": round(os.getloadavg()[0], 2)}


@torch.no_grad()
def validation_loss(model, examples: Sequence[dict[str, Any]], pad_token_id: int, batch_size: int = 16) -> float:
    """Mean NLL per trained token over ``examples``, under the same bf16 autocast as training, for any setup's model."""
    from ftcourse.tokenization import collate
    from ftcourse.train import completion_loss

    model.eval()
    enabled = detect_environment().bf16
    nll, count = 0.0, 0
    for start in range(0, len(examples), batch_size):
        batch = {k: v.to(device()) for k, v in collate(examples[start : start + batch_size], pad_token_id).items()}
        with torch.autocast(device(), dtype=torch.bfloat16, enabled=enabled):
            nll += float(completion_loss(model, batch, num_items_in_batch=1))
        count += int((batch["labels"][:, 1:] != -100).sum())
    return nll / count


def trl_dataset(examples: Sequence[dict[str, Any]]):
    """Pre-tokenized examples as TRL takes them: ``input_ids`` + ``completion_mask`` (1 where a label is trained)."""
    from datasets import Dataset

    return Dataset.from_list([{"input_ids": e["input_ids"], "completion_mask": [int(x != -100) for x in e["labels"]]} for e in examples])


def trl_trainer(model, tokenizer, examples, output_dir: str, callbacks=(), **overrides):
    """TRL ``SFTTrainer`` with its defaults (``SFTConfig()``), the course's LoRA config, and only ``overrides`` changed
    (``use_cpu`` is required on a CPU: bf16, TRL's default, otherwise refuses to start; ``completion_only_loss`` makes
    TRL use the ``completion_mask`` of pre-tokenized data, which it otherwise ignores and trains the prompt too)."""
    from trl import SFTConfig, SFTTrainer

    from ftcourse.peft_methods import build_peft_config

    config = SFTConfig(output_dir=output_dir, report_to="none", disable_tqdm=True, use_cpu=device() == "cpu",
                       completion_only_loss=True, **overrides)
    return SFTTrainer(model=model, args=config, train_dataset=trl_dataset(examples), processing_class=tokenizer,
                      peft_config=build_peft_config("lora", model, LORA), callbacks=list(callbacks))


def unwrap(trainer) -> None:
    """Remove the autocast wrapper accelerate puts on the model's forward, so evaluation runs the same for every setup."""
    trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False)


def scratch_dir() -> str:
    return tempfile.mkdtemp(prefix="ftcourse-bench-")


# ---------------------------------------------------------------- parent: children, results, README


def run_setups(script: Path, argv: Sequence[str] | None, setups: Sequence[str] = ("course", "trl")) -> dict[str, dict[str, Any]]:
    """Run ``script`` once per setup (by default course defaults, then TRL defaults), each in a fresh process; return what each wrote."""
    forwarded = list(argv if argv is not None else sys.argv[1:])
    return {setup: run_child(script, setup, forwarded) for setup in setups}


def run_child(script: Path, setup: str, argv: Sequence[str]) -> dict[str, Any]:
    """Run ``script`` for one setup in a fresh process; return the JSON it wrote."""
    out = Path(scratch_dir()) / f"{setup}.json"
    env = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"), "TOKENIZERS_PARALLELISM": "false"}
    print(f"▶ {setup} ...", flush=True)
    done = subprocess.run([sys.executable, str(script), *argv, "--child", setup, "--child-out", str(out)], env=env)
    if done.returncode != 0:
        raise SystemExit(f"the {setup} run failed (exit code {done.returncode}); see its output above")
    return json.loads(out.read_text())


def child_result(path: str, result: dict[str, Any]) -> None:
    result["peak_memory_mb"] = round(peak_memory_mb(), 1)
    result["load_average_1min_after"] = round(os.getloadavg()[0], 2)  # other jobs competing for the CPU during this run
    atomic_write_json(path, result)


def save_results(name: str, results: dict[str, Any], table: str, summary: str = "") -> Path:
    """Write ``results/<name>.json``, put ``table`` into README.md between this benchmark's markers, and print the
    table and ``summary`` with the results' path."""
    path = atomic_write_json(RESULTS / f"{name}.json", results)
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = README.read_text(encoding="utf-8")
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        atomic_write_text(README, f"{head}{begin}\n{table}\n{end}{rest.split(end, 1)[1]}")
    print(table)
    print(f"{summary}  -> {path}" if summary else f"-> {path}")
    return path


def command_line() -> str:
    script = Path(sys.argv[0])
    shown = script.relative_to(HERE.parent) if script.is_absolute() and script.is_relative_to(HERE.parent) else script
    return "python " + " ".join([str(shown), *sys.argv[1:]])
