"""Checks of exercise 05, prompt methods (``solutions/ex05_prompt_methods.ipynb``)."""

from __future__ import annotations

from ftcourse.course.checks.core import call_learner, expect, expect_intent_train, forbid_helpers, peft_trainable, self_check, trained_adapter

__all__ = [
    "check_ex05_task1", "check_ex05_task2", "check_ex05_task3", "check_ex05_task4", "check_ex05_task5",
    "EX05_BROKEN_TRAINING", "EX05_INIT_TEXT", "EX05_METHODS", "EX05_SETTINGS",
]

#: The text exercise 05 initialises its virtual tokens from.
EX05_INIT_TEXT = "Classify the intent of this customer message:"
EX05_METHODS = ("lora", "ia3", "prompt_tuning", "p_tuning", "prefix_tuning")


def _init_token_ids(tokenizer, n: int) -> list[int]:
    """The ids PEFT initialises n virtual tokens from: EX05_INIT_TEXT's tokens, repeated and cut to n."""
    ids = tokenizer(EX05_INIT_TEXT)["input_ids"]
    return (ids * (n // len(ids) + 1))[:n]


#: Hidden texts of exercise 05, task 1, with the number of virtual tokens: longer than that number, and much shorter.
_EX05_HIDDEN_INITS = (("Please sort every message from our customers into the right support queue before lunch today, thanks.", 12),
                      ("Intent:", 7))


def _peft_prompt_rows(base, tokenizer_path: str, text: str, n: int):
    """The initial virtual-token embeddings PEFT builds from ``text`` for ``n`` virtual tokens (measured, not re-derived)."""
    from peft import PromptTuningConfig
    from peft.tuners.prompt_tuning.model import PromptEmbedding

    embeddings = base.get_input_embeddings()
    config = PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=n, token_dim=embeddings.weight.shape[1], num_transformer_submodules=1,
                                prompt_tuning_init="TEXT", prompt_tuning_init_text=text, tokenizer_name_or_path=tokenizer_path)
    return PromptEmbedding(config, embeddings).embedding.weight.detach().float().cpu()


def _ex05_init_hint(got: list[int], tokenizer, text: str, n: int) -> str:
    ids = tokenizer(text)["input_ids"]
    if len(got) != n:
        return f"return exactly n ids, one per virtual token ({n} here; the text has {len(ids)} tokens)."
    if len(ids) > n and got == ids[-n:]:
        return "a text longer than n is cut at the end: PEFT keeps its first n token ids."
    if len(ids) < n and got[: len(ids)] == ids:
        return "a text shorter than n is repeated: its ids again and again (not padding, not EOS), cut to n."
    return "tokenize the text (tokenizer(text)['input_ids']); repeat the ids until there are at least n, keep the first n."


@self_check
def check_ex05_task1(pt_model, init_token_ids, tokenizer) -> str:
    """``pt_model``: prompt tuning (16 virtual tokens) initialised from EX05_INIT_TEXT on the embedded model;
    ``init_token_ids(tokenizer, text, n)``: the token ids whose embeddings PEFT copies into n virtual tokens initialised from text."""
    import torch
    from peft import PeftModel, get_peft_model

    from ftcourse.models import count_parameters
    from ftcourse.peft_methods import build_peft_config

    expect(isinstance(pt_model, PeftModel), f"`pt_model` is a {type(pt_model).__name__}, not a PeftModel.",
           "pt_model = get_peft_model(base, build_peft_config('prompt_tuning', base, init_text=..., tokenizer_path=...)).")
    config = pt_model.peft_config["default"]
    expect(config.peft_type.value == "PROMPT_TUNING", f"the adapter is {config.peft_type.value}, not prompt tuning.", "use method 'prompt_tuning'.")
    expect(getattr(config.prompt_tuning_init, "value", config.prompt_tuning_init) == "TEXT" and config.prompt_tuning_init_text == EX05_INIT_TEXT,
           "the virtual tokens are not initialised from EX05_INIT_TEXT.",
           "pass init_text=EX05_INIT_TEXT and tokenizer_path=base.name_or_path to build_peft_config.")
    want = peft_trainable(pt_model, "prompt_tuning")
    got = count_parameters(pt_model)["trainable"]
    expect(got == want, f"{got:,} parameters are trainable; prompt tuning trains {want:,} (virtual tokens × embedding width).",
           "let get_peft_model freeze the base model.")
    expect(callable(init_token_ids), "`init_token_ids` is not a function.", "define def init_token_ids(tokenizer, text, n): ...")
    forbid_helpers(init_token_ids, "init_token_ids", {"get_peft_model": get_peft_model, "build_peft_config": build_peft_config, "PromptEmbedding": None},
                   "predict the ids from the text and n yourself; building the prompt encoder is how the check measures them.")
    base = pt_model.get_base_model()
    vocab = base.get_input_embeddings().weight.detach().float().cpu()
    measured = pt_model.get_prompt_embedding_to_save("default").detach().float().cpu()
    cases = [(EX05_INIT_TEXT, config.num_virtual_tokens, measured)]
    cases += [(text, n, _peft_prompt_rows(base, config.tokenizer_name_or_path, text, n)) for text, n in _EX05_HIDDEN_INITS]
    for text, n, rows in cases:
        ids = call_learner(init_token_ids, tokenizer, text, n, name="init_token_ids")
        ids = [int(i) for i in ids] if isinstance(ids, (list, tuple)) or hasattr(ids, "tolist") else ids
        right = isinstance(ids, list) and len(ids) == n and all(0 <= i < len(vocab) for i in ids) and torch.equal(vocab[ids], rows)
        expect(right, f"for {text!r} with n={n}, the embeddings of your ids are not the {n} virtual tokens PEFT starts from.",
               _ex05_init_hint(ids if isinstance(ids, list) else [], tokenizer, text, n))
    return (f"{config.num_virtual_tokens} virtual tokens × {config.token_dim} = {want:,} trainable parameters, and your ids are exactly "
            f"where PEFT starts them, for EX05_INIT_TEXT and {len(_EX05_HIDDEN_INITS)} hidden texts (cut and repeated).")


@self_check
def check_ex05_task2(trainable_counts, model) -> str:
    """``trainable_counts``: method -> trainable parameters for each of EX05_METHODS with the default settings."""
    expect(isinstance(trainable_counts, dict) and set(trainable_counts) == set(EX05_METHODS),
           f"`trainable_counts` should have exactly the keys {list(EX05_METHODS)}.", "loop over EX05_METHODS.")
    for method in EX05_METHODS:
        want = peft_trainable(model, method)
        expect(trainable_counts[method] == want, f"trainable_counts[{method!r}] is {trainable_counts[method]:,}; PEFT trains {want:,}.",
               "build each method on a fresh (meta-device) model with build_peft_config(method, m) and count_parameters(...)['trainable'].")
    order = sorted(trainable_counts, key=trainable_counts.get)
    return "from smallest to largest: " + ", ".join(f"{m} {trainable_counts[m]:,}" for m in order) + "."


#: Exercise 05, task 3: a classmate's prompt-tuning run whose virtual tokens barely moved, and the settings one may blame.
EX05_BROKEN_TRAINING = {"learning_rate": 2e-5}
EX05_SETTINGS = ("learning_rate", "num_virtual_tokens", "prompt_init_text", "max_steps", "batch_size")
_EX05_LR_WHY = ("2e-5 is a full fine-tuning rate. Adam moves each coordinate by about the learning rate per step, and the virtual "
                "tokens are the only thing trained: they need a much higher rate (the prompt tuning paper, Lester et al. 2021, used 0.3; "
                "the course's default for prompt tuning is {default:g}).")


@self_check
def check_ex05_task3(causes, result, tokenizer) -> str:
    """``causes``: the settings (from EX05_SETTINGS) that kept the classmate's virtual tokens in place; ``result``: the fixed
    fine_tune(...) run of prompt tuning initialised from EX05_INIT_TEXT."""
    from safetensors.torch import load_file

    from ftcourse.peft_methods import get_method

    default = get_method("prompt_tuning").learning_rate
    expect(isinstance(causes, (set, list, tuple)) and set(causes) <= set(EX05_SETTINGS), f"`causes` should be a set of names from EX05_SETTINGS; got {causes!r}.",
           f"pick from {list(EX05_SETTINGS)}.")
    expect("learning_rate" in causes, "you did not name the setting that kept the tokens in place.", _EX05_LR_WHY.format(default=default))
    expect(set(causes) == {"learning_rate"}, f"{sorted(set(causes) - {'learning_rate'})} did not break the run.",
           "the classmate used the profile's other settings, the same as yours: change only what broke it.")
    config, losses = trained_adapter(result, "prompt_tuning", loss_must_drop=False)
    expect(config.get("prompt_tuning_init_text") == EX05_INIT_TEXT, "the run's virtual tokens were not initialised from EX05_INIT_TEXT.",
           "pass prompt_init_text=EX05_INIT_TEXT to fine_tune.")
    expect_intent_train(result, init_text=EX05_INIT_TEXT)
    rate = result.metrics["learning_rate"]
    expect(rate >= 1e-3, f"your run trained with learning rate {rate:g}.", _EX05_LR_WHY.format(default=default))
    saved = load_file(result.run_dir / "adapter_model.safetensors")["prompt_embeddings"].float()
    embeddings = result.model.get_base_model().get_input_embeddings().weight.detach().float().cpu()
    moved = float((saved - embeddings[_init_token_ids(tokenizer, saved.shape[0])]).abs().max())
    expect(moved > 0.01, f"the virtual tokens moved by at most {moved:.2g} from their text initialisation.", _EX05_LR_WHY.format(default=default))
    expect(len(losses) >= 2 and losses[-1] < losses[0], f"the training loss did not go down: {[round(v, 3) for v in losses]}.",
           "train at least two logged steps with a learning rate that moves the tokens.")
    return (f"learning rate {rate:g}: loss {losses[0]:.2f} → {losses[-1]:.2f}; the virtual tokens moved by up to {moved:.3f} from "
            "their text initialisation.")


@self_check
def check_ex05_task4(nearest_tokens, model, tokenizer) -> str:
    """``nearest_tokens(prompt_embeddings, embedding_matrix, tokenizer)``: the vocabulary token of highest cosine similarity per row."""
    import torch

    expect(callable(nearest_tokens), "`nearest_tokens` is not a function.", "define def nearest_tokens(prompt_embeddings, embedding_matrix, tokenizer): ...")
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    matrix = base.get_input_embeddings().weight.detach().float().cpu()
    ids = _init_token_ids(tokenizer, 16)
    want = [tokenizer.decode([i]) for i in ids]
    noise = 1e-3 * torch.randn(len(ids), matrix.shape[1], generator=torch.Generator().manual_seed(0))
    boosted = matrix.clone()
    boosted[int(matrix.norm(dim=-1).argmin())] *= 400  # one very long vocabulary vector: a dot product prefers it
    for name, queries, vocab in (("scaled up", matrix[ids] * 3.0 + noise, matrix), ("scaled down", matrix[ids] * 0.05 + noise * 0.01, matrix),
                                 ("next to a very long vocabulary vector", matrix[ids] + noise, boosted)):
        got = call_learner(nearest_tokens, queries.clone(), vocab.clone(), tokenizer, name="nearest_tokens")
        got = list(got)
        expect(got == want, f"for 16 embeddings of EX05_INIT_TEXT's tokens ({name}) you return {got[:4]}…; want {want[:4]}….",
               "normalise both sides to unit length (cosine similarity: direction only — a dot product favours long vectors and a "
               "distance favours short ones), take the argmax over the vocabulary per row, and decode each id with tokenizer.decode([id]).")
    return "recovers the initialisation text's tokens from their (scaled) embeddings."


_EX05_HIDDEN_TABLE = {"a": {"trainable": 5_000, "accuracy": 0.55}, "b": {"trainable": 40_000, "accuracy": 0.80},
                      "c": {"trainable": 30_000, "accuracy": 0.80}, "d": {"trainable": 900_000, "accuracy": 0.93}}
_EX05_HIDDEN_CASES = [(1_000_000, "d"), (50_000, "c"), (10_000, "a"), (1_000, None)]


def _ex05_choice(table: dict, budget: int):
    fits = [m for m, row in table.items() if row["trainable"] <= budget]
    return min(fits, key=lambda m: (-table[m]["accuracy"], table[m]["trainable"])) if fits else None


@self_check
def check_ex05_task5(choose_method, table) -> str:
    """``choose_method(table, max_trainable)``: the most accurate method within the budget (ties: fewer parameters), or None."""
    expect(callable(choose_method), "`choose_method` is not a function.", "define def choose_method(table, max_trainable): ...")
    cases = [(table, b, _ex05_choice(table, b)) for b in (100_000, 10_000, 1_000_000)] + [(_EX05_HIDDEN_TABLE, b, w) for b, w in _EX05_HIDDEN_CASES]
    for rows, budget, want in cases:
        got = call_learner(choose_method, {m: dict(r) for m, r in rows.items()}, budget, name="choose_method")
        best = max(rows, key=lambda m: rows[m]["accuracy"])
        if got is not None and got in rows and rows[got]["trainable"] > budget:
            hint = f"{got} trains {rows[got]['trainable']:,} parameters, over the budget: filter by the budget first, then pick."
        elif got == min(rows, key=lambda m: rows[m]["trainable"]) != want:
            hint = "the smallest method is not the best one that fits: among those within the budget, take the most accurate."
        elif got in rows and want in rows and rows[got]["accuracy"] == rows[want]["accuracy"]:
            hint = "on a tie in accuracy take the method with fewer trainable parameters (smaller adapter, less to store and serve)."
        else:
            hint = f"keep the methods with trainable ≤ max_trainable, then the highest accuracy (ties: fewer parameters); None if none fits (the best overall is {best})."
        expect(got == want, f"with a budget of {budget:,} trainable parameters you choose {got!r}; want {want!r}.", hint)
    return f"right on {len(cases)} budgets; with 1M trainable parameters the table says {_ex05_choice(table, 1_000_000)}."
