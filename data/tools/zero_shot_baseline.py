"""Measure the embedded base model's zero-shot baseline on the bundled test splits; write data/baselines.json.

    HF_HUB_OFFLINE=1 python data/tools/zero_shot_baseline.py [--model embedded] [--output data/baselines.json] [--overwrite]

Intents (test split, 100): accuracy and macro-F1 with label-constrained decoding and with free generation.
Instructions (test split): classify accuracy (both decodings); extract valid-JSON rate and exact match (every field right).
Domain corpus: perplexity on the held-out documents (and on the general English text, for reference).
Greedy decoding, so the numbers are deterministic on a given machine (15-25 min on a busy 2-core CPU).
"""

from __future__ import annotations

import argparse
import json
import sys

import torch
import transformers

from ftcourse.course.bundled import INTENT_LABELS, SEED, domain_texts, instruction_records, intent_splits
from ftcourse.data import processed_records
from ftcourse.errors import CourseError
from ftcourse.fileio import write_output
from ftcourse.generation import classify, generate, perplexity
from ftcourse.hardware import detect_environment
from ftcourse.metrics import classification_metrics, json_metrics
from ftcourse.models import load_model, load_tokenizer
from ftcourse.profiles import get_profile


def _scores(metrics: dict) -> dict[str, float]:
    return {"accuracy": round(metrics["accuracy"], 4), "macro_f1": round(metrics["f1"], 4), "n": metrics["n"]}


def measure(model_name: str) -> dict:
    model, tokenizer = load_model(model_name), load_tokenizer(model_name)
    result: dict = {"model": model_name, "seed": SEED, "decoding": "greedy",
                    "bf16_autocast": detect_environment().bf16 and detect_environment().device == "cpu",
                    "torch": torch.__version__, "transformers": transformers.__version__}

    test = processed_records(intent_splits()["test"], INTENT_LABELS)
    prompts, refs = [r["messages"][:-1] for r in test], [r["label"] for r in test]
    result["intents_test"] = {
        mode: _scores(classification_metrics(classify(model, tokenizer, prompts, INTENT_LABELS, constrained=mode == "constrained"), refs, INTENT_LABELS))
        for mode in ("constrained", "free")
    }

    instructions = instruction_records(get_profile("cpu"), tasks=("classify", "extract"))["test"]
    cls = [r for r in instructions if r["task"] == "classify"]
    prompts, refs = [r["messages"][:-1] for r in cls], [r["messages"][-1]["content"] for r in cls]
    result["instructions_test_classify"] = {
        mode: _scores(classification_metrics(classify(model, tokenizer, prompts, INTENT_LABELS, constrained=mode == "constrained"), refs, INTENT_LABELS))
        for mode in ("constrained", "free")
    }
    ext = [r for r in instructions if r["task"] == "extract"]
    answers = generate(model, tokenizer, [r["messages"][:-1] for r in ext], max_new_tokens=64, desc="Extracting")
    scores = json_metrics(answers, [r["messages"][-1]["content"] for r in ext])
    result["instructions_test_extract"] = {"valid_json": round(scores["valid_json"], 4), "exact_match": round(scores["all_fields"], 4),
                                           "field_accuracy": {k: round(v, 4) for k, v in scores["field_accuracy"].items()}, "n": len(ext),
                                           "first_answer": answers[0]}

    texts = domain_texts()
    result["domain_perplexity"] = {
        "heldout": round(perplexity(model, tokenizer, texts["heldout"], max_length=256), 2),
        "general": round(perplexity(model, tokenizer, texts["general"], max_length=256), 2),
        "max_length": 256,
    }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--output", default="data/baselines.json")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing, different output")
    args = parser.parse_args(argv)
    try:
        result = measure(args.model)
        write_output(args.output, json.dumps(result, indent=2) + "\n", overwrite=args.overwrite)
    except CourseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
