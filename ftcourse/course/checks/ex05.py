"""Checks of exercise 05, prompt methods (``solutions/ex05_prompt_methods.ipynb``).

Every task follows the grading protocol (``core``'s docstring): a collect step that turns the learner's values, the
outputs of their functions and the files of their run into plain data, and a judge that decides, recomputing with its own
reference model and PEFT. The practice cases are here; the hidden inputs the grader uses are in ``solutions/hidden/ex05.json``.
"""

from __future__ import annotations

from typing import Any

from ftcourse.course.checks.core import (
    Case,
    collected_run,
    describe,
    describe_run,
    expect,
    expect_intent_record,
    forbid_source_helpers,
    graded_check,
    output_of,
    outputs_of,
    peft_trainable,
    run_learner,
)

__all__ = [
    "check_ex05_task1", "check_ex05_task2", "check_ex05_task3", "check_ex05_task4", "check_ex05_task5",
    "EX05_BROKEN_TRAINING", "EX05_INIT_TEXT", "EX05_METHODS", "EX05_SETTINGS",
]

#: The text exercise 05 initialises its virtual tokens from.
EX05_INIT_TEXT = "Classify the intent of this customer message:"
EX05_METHODS = ("lora", "ia3", "prompt_tuning", "p_tuning", "prefix_tuning")


def _init_token_ids(tokenizer, n: int, text: str = EX05_INIT_TEXT) -> list[int]:
    """The ids PEFT initialises n virtual tokens from: the text's tokens, repeated and cut to n."""
    ids = tokenizer(text)["input_ids"]
    return (ids * (n // len(ids) + 1))[:n]


def _base_of(case: Case, name: str):
    """The base model a judge compares with: the base of the learner's PEFT model ``name`` in their kernel, else the grader's."""
    if name in case.objects:
        value = case.objects[name]
        model = getattr(value, "model", value)  # a RunResult holds its model
        return model.get_base_model() if hasattr(model, "get_base_model") else model
    return case.reference("model")


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


def _prompt_model(pt_model: Any) -> dict:
    """What task 1 checks of the learner's prompt-tuning model, as plain data (its type only, when it is not a PeftModel)."""
    from peft import PeftModel

    from ftcourse.models import count_parameters

    if not isinstance(pt_model, PeftModel):
        return {"type": type(pt_model).__name__}
    config = pt_model.peft_config["default"]
    return {"type": "PeftModel", "peft_type": str(config.peft_type.value), "init": str(getattr(config, "prompt_tuning_init", "")),
            "init_text": describe(getattr(config, "prompt_tuning_init_text", None)), "trainable": int(count_parameters(pt_model)["trainable"])}


@graded_check({"inputs": {"texts": [[EX05_INIT_TEXT, 16], ["Route this ticket:", 9],
                                    ["Every refund request that mentions a damaged parcel goes to the returns team first, then to billing.", 10]]},
               "expected": {}})
def check_ex05_task1(inputs, pt_model, init_token_ids, tokenizer) -> dict:
    """``pt_model``: prompt tuning (16 virtual tokens) initialised from EX05_INIT_TEXT on the embedded model;
    ``init_token_ids(tokenizer, text, n)``: the token ids whose embeddings PEFT copies into n virtual tokens initialised from text."""
    return {"pt_model": _prompt_model(pt_model), "outputs": [run_learner(init_token_ids, tokenizer, text, n) for text, n in inputs["texts"]]}


@check_ex05_task1.judge
def _judge_task1(data: dict, case: Case) -> str:
    import torch

    facts = data.get("pt_model") if isinstance(data.get("pt_model"), dict) else {}
    expect(facts.get("type") == "PeftModel", f"`pt_model` is a {str(facts.get('type'))[:80]}, not a PeftModel.",
           "pt_model = get_peft_model(base, build_peft_config('prompt_tuning', base, init_text=..., tokenizer_path=...)).")
    expect(facts.get("peft_type") == "PROMPT_TUNING", f"the adapter is {str(facts.get('peft_type'))[:40]}, not prompt tuning.", "use method 'prompt_tuning'.")
    expect(facts.get("init", "").endswith("TEXT") and output_of(facts.get("init_text"), "init_text")[0] == EX05_INIT_TEXT,
           "the virtual tokens are not initialised from EX05_INIT_TEXT.",
           "pass init_text=EX05_INIT_TEXT and tokenizer_path=base.name_or_path to build_peft_config.")
    base = _base_of(case, "pt_model")
    want = peft_trainable(base, "prompt_tuning")
    expect(facts.get("trainable") == want, f"{facts.get('trainable')} parameters are trainable; prompt tuning trains the virtual tokens only.",
           "let get_peft_model freeze the base model.")
    forbid_source_helpers(case, "init_token_ids", {"get_peft_model": "peft.get_peft_model", "build_peft_config": "ftcourse.peft_methods.build_peft_config",
                                                   "PromptEmbedding": "peft.tuners.prompt_tuning.model.PromptEmbedding",
                                                   "PromptTuningConfig": "peft.PromptTuningConfig", "apply_method": "ftcourse.peft_methods.apply_method"},
                          "predict the ids from the text and n yourself; building the prompt encoder is how the check measures them.")
    tokenizer = case.reference("tokenizer")
    vocab = base.get_input_embeddings().weight.detach().float().cpu()
    texts = case.inputs["texts"]
    for (text, n), (ids, _) in zip(texts, outputs_of(data, len(texts), "init_token_ids", "define def init_token_ids(tokenizer, text, n): ...")):
        ids = ids if isinstance(ids, list) and all(isinstance(i, int) and not isinstance(i, bool) for i in ids) else []
        rows = _peft_prompt_rows(base, tokenizer.name_or_path, text, n)
        right = len(ids) == n and all(0 <= i < len(vocab) for i in ids) and torch.equal(vocab[ids], rows)
        expect(right, f"for a {case.kind} text of {len(tokenizer(text)['input_ids'])} tokens with n={n}, the embeddings of your ids are not "
               f"the {n} virtual tokens PEFT starts from.", _ex05_init_hint(ids, tokenizer, text, n))
    return (f"{want:,} trainable parameters (virtual tokens × embedding width), and your ids are exactly where PEFT starts them, "
            f"on {len(texts)} {case.kind} texts (cut and repeated).")


@graded_check({"inputs": {}, "expected": {}})
def check_ex05_task2(inputs, trainable_counts, model) -> dict:
    """``trainable_counts``: method -> trainable parameters for each of EX05_METHODS with the default settings."""
    return {"trainable_counts": describe(trainable_counts)}


@check_ex05_task2.judge
def _judge_task2(data: dict, case: Case) -> str:
    counts, _ = output_of(data.get("trainable_counts"), "trainable_counts")
    expect(isinstance(counts, dict) and set(counts) == set(EX05_METHODS),
           f"`trainable_counts` should have exactly the keys {list(EX05_METHODS)}.", "loop over EX05_METHODS.")
    model = case.reference("model")
    for method in EX05_METHODS:
        expect(counts[method] == peft_trainable(model, method), f"trainable_counts[{method!r}] is {str(counts[method])[:20]}; that is not what PEFT "
               "trains for this method with its default settings.",
               "build each method on a fresh (meta-device) model with build_peft_config(method, m) and count_parameters(...)['trainable'].")
    order = sorted(counts, key=counts.get)
    return "from smallest to largest: " + ", ".join(f"{m} {counts[m]:,}" for m in order) + "."


#: Exercise 05, task 3: a classmate's prompt-tuning run whose virtual tokens barely moved, and the settings one may blame.
EX05_BROKEN_TRAINING = {"learning_rate": 2e-5}
EX05_SETTINGS = ("learning_rate", "num_virtual_tokens", "prompt_init_text", "max_steps", "batch_size")
#: Why the classmate's tokens stayed put, for a learner who has not named the cause: the mechanism, never the setting.
_EX05_STUCK = ("the classmate's loss and virtual tokens barely moved, although every step had a gradient. Adam moves each trained "
               "number by about the same amount per step whatever the size of its gradient: which setting decides that amount, "
               "and how far could the tokens move in max_steps steps at its value?")
_EX05_LR_WHY = ("2e-5 is a full fine-tuning rate. Adam moves each coordinate by about the learning rate per step, and the virtual "
                "tokens are the only thing trained: they need a much higher rate (the prompt tuning paper, Lester et al. 2021, used 0.3; "
                "the course's default for prompt tuning is {default:g}).")


@graded_check({"inputs": {}, "expected": {}})
def check_ex05_task3(inputs, causes, result, tokenizer) -> dict:
    """``causes``: the settings (from EX05_SETTINGS) that kept the classmate's virtual tokens in place; ``result``: the fixed
    fine_tune(...) run of prompt tuning initialised from EX05_INIT_TEXT."""
    named = sorted(causes, key=str) if isinstance(causes, (set, frozenset)) else causes
    return {"causes": describe(named), "run": describe_run(result)}


@check_ex05_task3.judge
def _judge_task3(data: dict, case: Case) -> str:
    from ftcourse.peft_methods import get_method

    default = get_method("prompt_tuning").learning_rate
    causes, kind = output_of(data.get("causes"), "causes")
    expect(kind in ("set", "frozenset", "list", "tuple") and all(isinstance(c, str) and c in EX05_SETTINGS for c in causes),
           f"`causes` should be a set of names from EX05_SETTINGS; got a {kind}.", f"pick from {list(EX05_SETTINGS)}.")
    expect("learning_rate" in causes, "you did not name the setting that kept the tokens in place.", _EX05_STUCK)
    expect(set(causes) == {"learning_rate"}, f"{sorted(set(causes) - {'learning_rate'})} did not break the run.",
           "the classmate used the profile's other settings, the same as yours: change only what broke it.")
    config, tensors, losses, record = collected_run(data.get("run"), case, "prompt_tuning", loss_must_drop=False)
    expect(config.get("prompt_tuning_init_text") == EX05_INIT_TEXT, "the run's virtual tokens were not initialised from EX05_INIT_TEXT.",
           "pass prompt_init_text=EX05_INIT_TEXT to fine_tune.")
    expect_intent_record(record, init_text=EX05_INIT_TEXT)
    metrics, _ = output_of(data["run"].get("metrics"), "result.metrics")
    rate = metrics.get("learning_rate") if isinstance(metrics, dict) else None
    expect(isinstance(rate, (int, float)), "the run's learning rate was not collected.", "pass the RunResult fine_tune returned.")
    expect(rate >= 1e-3, f"your run trained with learning rate {rate:g}.", _EX05_LR_WHY.format(default=default))
    saved = tensors.get("prompt_embeddings")
    expect(saved is not None and saved.ndim == 2, "the saved adapter holds no prompt_embeddings.", "save the prompt-tuning run fine_tune trained.")
    embeddings = _base_of(case, "result").get_input_embeddings().weight.detach().float().cpu()
    moved = float((saved.float() - embeddings[_init_token_ids(case.reference("tokenizer"), saved.shape[0])]).abs().max())
    expect(moved > 0.01, f"the virtual tokens moved by at most {moved:.2g} from their text initialisation.", _EX05_LR_WHY.format(default=default))
    expect(len(losses) >= 2 and losses[-1] < losses[0], f"the training loss did not go down: {[round(v, 3) for v in losses][:20]}.",
           "train at least two logged steps with a learning rate that moves the tokens.")
    return (f"learning rate {rate:g}: loss {losses[0]:.2f} → {losses[-1]:.2f}; the virtual tokens moved by up to {moved:.3f} from "
            "their text initialisation.")


def _ex05_queries(matrix, ids: list[int], scales: list[float], seed: int):
    """(name, queries, vocabulary) of task 4: the rows of ``ids`` scaled up, scaled down, and next to one very long vocabulary vector."""
    import torch

    noise = 1e-3 * torch.randn(len(ids), matrix.shape[1], generator=torch.Generator().manual_seed(seed))
    boosted = matrix.clone()
    boosted[int(matrix.norm(dim=-1).argmin())] *= 400  # one very long vocabulary vector: a dot product prefers it
    up, down = scales
    return [("scaled up", matrix[ids] * up + noise, matrix), ("scaled down", matrix[ids] * down + noise * down / 5, matrix),
            ("next to a very long vocabulary vector", matrix[ids] + noise, boosted)]


@graded_check({"inputs": {"text": EX05_INIT_TEXT, "n": 16, "scales": [3.0, 0.05], "seed": 0}, "expected": {}})
def check_ex05_task4(inputs, nearest_tokens, model, tokenizer) -> dict:
    """``nearest_tokens(prompt_embeddings, embedding_matrix, tokenizer)``: the vocabulary token of highest cosine similarity per row."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    matrix = base.get_input_embeddings().weight.detach().float().cpu()
    ids = _init_token_ids(tokenizer, inputs["n"], inputs["text"])
    return {"outputs": [run_learner(nearest_tokens, queries.clone(), vocab.clone(), tokenizer)
                        for _, queries, vocab in _ex05_queries(matrix, ids, inputs["scales"], inputs["seed"])]}


@check_ex05_task4.judge
def _judge_task4(data: dict, case: Case) -> str:
    tokenizer = case.reference("tokenizer")
    ids = _init_token_ids(tokenizer, case.inputs["n"], case.inputs["text"])
    want = [tokenizer.decode([i]) for i in ids]
    names = ("scaled up", "scaled down", "next to a very long vocabulary vector")
    outputs = outputs_of(data, len(names), "nearest_tokens", "define def nearest_tokens(prompt_embeddings, embedding_matrix, tokenizer): ...")
    for name, (got, _) in zip(names, outputs):
        wrong = sum(g != w for g, w in zip(got, want)) + abs(len(want) - len(got)) if isinstance(got, list) else len(want)
        expect(wrong == 0, f"for {len(want)} embeddings of a {case.kind} text's tokens ({name}) your tokens are not the text's tokens at "
               f"{wrong} of {len(want)} rows.",
               ("your measure favours short vectors: rows scaled down land next to the shortest vocabulary vectors. " if name == "scaled down" else
                "your measure favours long vectors: scaling a row or lengthening one vocabulary vector changes the winner. ")
               + "Compare directions only — divide each vector by its length first — and decode each best id with tokenizer.decode([id]).")
    return f"recovers a {case.kind} text's tokens from their embeddings (scaled up, scaled down, next to a very long vector)."


_EX05_PRACTICE_TABLE = {"a": {"trainable": 5_000, "accuracy": 0.55}, "b": {"trainable": 40_000, "accuracy": 0.80},
                        "c": {"trainable": 30_000, "accuracy": 0.80}, "d": {"trainable": 900_000, "accuracy": 0.93}}


def _ex05_choice(table: dict, budget: int):
    fits = [m for m, row in table.items() if row["trainable"] <= budget]
    return min(fits, key=lambda m: (-table[m]["accuracy"], table[m]["trainable"])) if fits else None


def _ex05_cases(inputs: dict, table: Any) -> list[tuple[Any, int]]:
    """(table, budget) of each call of task 5: the learner's table on three budgets, then the case's tables."""
    return [(table, b) for b in (100_000, 10_000, 1_000_000)] + [(t, b) for t, budgets in inputs["tables"] for b in budgets]


@graded_check({"inputs": {"tables": [[_EX05_PRACTICE_TABLE, [1_000_000, 50_000, 10_000, 1_000]]]}, "expected": {}})
def check_ex05_task5(inputs, choose_method, table) -> dict:
    """``choose_method(table, max_trainable)``: the most accurate method within the budget (ties: fewer parameters), or None."""
    rows = table if isinstance(table, dict) else {}
    return {"table": describe(table), "outputs": [run_learner(choose_method, {m: dict(r) for m, r in t.items()}, b) for t, b in _ex05_cases(inputs, rows)]}


@check_ex05_task5.judge
def _judge_task5(data: dict, case: Case) -> str:
    table, _ = output_of(data.get("table"), "table")
    expect(isinstance(table, dict) and table and all(isinstance(r, dict) and isinstance(r.get("trainable"), (int, float))
                                                     and isinstance(r.get("accuracy"), (int, float)) for r in table.values()),
           "`table` should map each method to {'trainable': ..., 'accuracy': ...}.", "build it as the task's cell does.")
    cases = _ex05_cases(case.inputs, table)
    for i, ((rows, budget), (got, _)) in enumerate(zip(cases, outputs_of(data, len(cases), "choose_method", "define def choose_method(table, max_trainable): ..."))):
        want = _ex05_choice(rows, budget)
        if got == want:
            continue
        if got in rows and rows[got]["trainable"] > budget:
            hint = f"{got} trains {rows[got]['trainable']:,} parameters, over the budget: filter by the budget first, then pick."
        elif got == min(rows, key=lambda m: rows[m]["trainable"]):
            hint = "the smallest method is not the best one that fits: among those within the budget, take the most accurate."
        elif got in rows and want in rows and rows[got]["accuracy"] == rows[want]["accuracy"]:
            hint = "on a tie in accuracy take the method with fewer trainable parameters (smaller adapter, less to store and serve)."
        else:
            hint = "keep the methods with trainable ≤ max_trainable, then the highest accuracy (ties: fewer parameters); None if none fits."
        where = "your table" if i < 3 else f"a {case.kind} table"
        expect(False, f"with a budget of {budget:,} trainable parameters on {where} you choose {str(got)[:40]!r}, which is not the best method that fits.", hint)
    return f"right on {len(cases)} budgets; with 1M trainable parameters your table says {_ex05_choice(table, 1_000_000)}."
