"""Self-checks of the exercises: ``check_exNN_taskK(...)`` prints ✓, or what is wrong and a hint.

In a notebook, call the check with your result: it prints one friendly line and never
raises. The grader calls ``check_exNN_taskK.verify(...)`` instead, which returns the success
message or raises :class:`CheckFailed` (an ``AssertionError``) with the same explanation.
Checks recompute what they test from the course's own data and model (shapes, parameter
counts, metrics, files written) instead of trusting numbers a notebook printed.
"""

from __future__ import annotations

import ast
import functools
import inspect
import json
import math
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from ftcourse.errors import CourseError
from ftcourse.metrics import _T95


class CheckFailed(AssertionError):
    """A result is wrong: ``what`` is wrong and ``hint`` says how to get it right."""

    def __init__(self, what: str, hint: str):
        self.what, self.hint = what, hint
        super().__init__(f"{what} Hint: {hint}")


class CheckerError(RuntimeError):
    """The check itself failed (a fault in the checker or the course, not in the learner's answer)."""


def expect(condition: object, what: str, hint: str) -> None:
    """Raise :class:`CheckFailed` unless ``condition`` holds."""
    if not condition:
        raise CheckFailed(what, hint)


def call_learner(func: Callable, *args, name: str = "your function", **kwargs):
    """Call the learner's ``func``; an exception it raises becomes a :class:`CheckFailed` (the learner's fault)."""
    try:
        return func(*args, **kwargs)
    except (CheckFailed, NotImplementedError):
        raise
    except Exception as exc:
        raise CheckFailed(f"`{name}` raised {type(exc).__name__}: {exc}",
                          "run it on the small example of the task yourself; the task gives its arguments and what it returns.") from None


def _code_names(code) -> set[str]:
    names = set(code.co_names) | set(code.co_varnames) | set(code.co_freevars)
    for const in code.co_consts:
        if inspect.iscode(const):
            names |= _code_names(const)
    return names


def uses_helper(func: Callable, helpers: dict[str, object]) -> str | None:
    """The name of a helper (name -> object) that ``func`` calls, directly, under another name or as an attribute."""
    code = getattr(func, "__code__", None)
    if code is None:
        return None
    names = _code_names(code)
    scope = {**getattr(func, "__globals__", {}), **inspect.getclosurevars(func).nonlocals}
    for helper, obj in helpers.items():
        if helper in names or (obj is not None and any(scope.get(n) is obj for n in names if n in scope)):
            return helper
    return None


def forbid_helpers(func: Callable, name: str, helpers: dict[str, object], why: str) -> None:
    """Fail when the learner's ``func`` hands the task to one of the course's ``helpers``."""
    used = uses_helper(func, helpers)
    expect(used is None, f"`{name}` calls `{used}`, the course's helper for this very task.", why)


class SelfCheck:
    """A task's check: call it for a ✓/✗ line; ``.verify(...)`` returns the message or raises.

    :class:`CheckFailed` means the answer is wrong (its hint is for the learner);
    :class:`CheckerError` means the check itself failed and says nothing about the answer.
    """

    def __init__(self, func: Callable[..., str]):
        functools.update_wrapper(self, func)
        self.func = func
        exercise, task = re.fullmatch(r"check_ex(\d+)_task(\d+)", func.__name__).groups()
        self.label = f"Exercise {exercise}, task {task}"
        self.signature = inspect.signature(func).replace(return_annotation=inspect.Signature.empty)

    def verify(self, *args, **kwargs) -> str:
        try:
            self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise CheckFailed(f"the check was called with the wrong arguments ({exc}).",
                              f"pass what the task asks for: {self.func.__name__}{self.signature}") from None
        try:
            return self.func(*args, **kwargs)
        except (CheckFailed, NotImplementedError):
            raise
        except Exception as exc:
            raise CheckerError(f"{self.label}: the checker itself failed ({type(exc).__name__}: {exc}). "
                               "This says nothing about your answer; please tell your instructor.") from exc

    def __call__(self, *args, **kwargs) -> None:
        try:
            message = self.verify(*args, **kwargs)
        except CheckFailed as exc:
            print(f"✗ {self.label}: {exc.what}\n  Hint: {exc.hint}")
        except NotImplementedError:
            print(f"✗ {self.label}: not answered yet.\n  Hint: replace `raise NotImplementedError()` with your code.")
        except CheckerError as exc:
            print(f"⚠ {exc}")
        else:
            print(f"✓ {self.label}: {message}")


def self_check(func: Callable[..., str]) -> SelfCheck:
    """Decorator: a function ``check_exNN_taskK(...) -> str`` that raises :class:`CheckFailed` becomes a :class:`SelfCheck`."""
    return SelfCheck(func)


def _close(a: float, b: float, rel: float) -> bool:
    return abs(a - b) <= rel * max(abs(a), abs(b), 1e-12)


# ---------------------------------------------------------------- ex01 · data preparation


def _intent_data():
    from ftcourse.bundled import raw_path
    from ftcourse.data import INTENT_LABELS, read_dataset

    return read_dataset(raw_path("support_intents.jsonl"), labels=INTENT_LABELS)


@self_check
def check_ex01_task1(data, label_counts) -> str:
    """``data``: the intent dataset loaded with ftcourse.data.read_dataset; ``label_counts``: label -> count."""
    from ftcourse.data import CourseDataset

    reference = _intent_data()
    expect(isinstance(data, CourseDataset), f"`data` is a {type(data).__name__}, not a ftcourse.data.CourseDataset.",
           "load the file with ftcourse.data.read_dataset(path, labels=INTENT_LABELS).")
    expect(data.fmt == "classification" and len(data) == len(reference),
           f"`data` holds {len(data)} {data.fmt} records; support_intents.jsonl has {len(reference)} classification records.",
           "load data/raw/support_intents.jsonl (ftcourse.bundled.raw_path) and keep every record.")
    want = Counter(reference.labels())
    expect(isinstance(label_counts, dict), f"`label_counts` is a {type(label_counts).__name__}, not a dict.",
           "build a dict label -> count, e.g. dict(collections.Counter(data.labels())).")
    wrong = sorted(k for k in set(want) | set(label_counts) if label_counts.get(k) != want.get(k))
    expect(not wrong, f"the counts of {', '.join(map(str, wrong[:3]))} are wrong (e.g. {wrong[0]!r}: got {label_counts.get(wrong[0])}, "
           f"want {want.get(wrong[0])})." if wrong else "", "count the label of every record, e.g. collections.Counter(data.labels()).")
    top, n = want.most_common(1)[0]
    return f"{len(data)} records with {len(want)} labels; the most frequent is {top} ({n})."


#: The small messy dataset of exercise 01, task 2 (the comments are not part of the data).
EX01_MESSY_RECORDS = [
    {"text": "Where is my order 12345? It was due Monday.", "label": "order_status"},
    {"text": "where is my order 12345?   It was due monday.", "label": "order_status"},  # duplicate of the first
    {"text": "Please cancel order 555 before it ships.", "label": "cancel_order"},
    {"text": "I was charged twice for one order.", "label": "billing"},  # unknown label
    {"text": "   ", "label": "order_status"},  # empty text
    {"text": "My parcel arrived crushed and the lamp is broken.", "label": "damaged_item"},
    {"text": 42, "label": "product_info"},  # text is not a string
    {"text": "How do I reset my password?"},  # label missing
    {"text": "I want to return these shoes for a refund.", "label": "return_refund"},
    {"text": "Please cancel order 555 before it ships.", "label": "cancel_order"},  # exact duplicate
]
_EX01_INVALID, _EX01_CLEAN = (3, 4, 6, 7), (0, 2, 5, 8)


#: A second messy dataset the check of exercise 01, task 2 runs the learner's function on.
_EX01_HIDDEN_MESSY = [
    {"text": "My parcel never came.", "label": "order_status"},
    {"text": "Update my card, the old one expired.", "label": "payment_update"},
    {"text": "MY PARCEL   never came.", "label": "order_status"},  # duplicate of the first (case, spaces)
    {"text": "I can't log in to my account.", "label": "account_access"},
    {"text": "", "label": "billing_issue"},  # empty text
    {"text": "I can't log in to my account.", "label": "talk_to_human"},  # same message, other label: still a duplicate
    {"text": "Refund for order 88, please.", "label": "refund"},  # unknown label
    {"text": "Move my delivery to 5 Elm Street.", "label": "change_address"},
]
_EX01_HIDDEN_CLEAN = (0, 1, 3, 7)


@self_check
def check_ex01_task2(clean_records) -> str:
    """``clean_records(records)``: the valid records, first copy of each (normalised) message kept, in order."""
    from ftcourse.data import normalize_text

    expect(callable(clean_records), "`clean_records` is not a function.", "define def clean_records(records): ... returning a list.")
    for records, keep in ((EX01_MESSY_RECORDS, _EX01_CLEAN), (_EX01_HIDDEN_MESSY, _EX01_HIDDEN_CLEAN)):
        want = [records[i] for i in keep]
        clean = call_learner(clean_records, [dict(r) for r in records], name="clean_records")
        expect(isinstance(clean, list), f"`clean_records` returns a {type(clean).__name__}, not a list of records.", "collect the records you keep in a list.")
        where = "on a hidden messy set" if records is _EX01_HIDDEN_MESSY else "on EX01_MESSY_RECORDS"
        foreign = [r for r in clean if r not in records]
        expect(not foreign, f"{where}, your result holds records that are not in its input, e.g. {foreign[0]!r}." if foreign else "",
               "clean the records you are given: a list copied from the printout fits one dataset only.")
        keys = [normalize_text(r["text"]) if isinstance(r.get("text"), str) else r.get("text") for r in clean if isinstance(r, dict)]
        expect(len(keys) == len(set(keys)), f"{where}, your result keeps two copies of one message.",
               "messages that differ only in case or spaces are duplicates, whatever their label: compare ftcourse.data.normalize_text(text), keep the first.")
        invalid = [r for r in clean if r not in want]
        expect(not invalid, f"{where}, your result keeps an invalid record: {invalid[0]!r}." if invalid else "",
               "drop records that ftcourse.data.validate_record(record, 'classification', line, INTENT_LABELS) finds problems in.")
        missing = [r for r in want if r not in clean]
        expect(not missing, f"{where}, your result lost a valid record: {missing[0]!r}." if missing else "",
               "keep every valid record; of duplicates keep the first (the later copy may be the one with a typo'd label).")
        expect(clean == want, "your result has the right records, but not in their original order.", "keep the records in the order of the data.")
    return f"kept {len(_EX01_CLEAN)} of {len(EX01_MESSY_RECORDS)} records here and {len(_EX01_HIDDEN_CLEAN)} of {len(_EX01_HIDDEN_MESSY)} on a hidden set."


#: Exercise 01, task 3: the hidden, unbalanced dataset a hand-written stratified split is run on (label -> records).
_EX01_STRATA = {"order_status": 97, "billing_issue": 23, "talk_to_human": 6, "cancel_order": 4}


def _ex01_check_stratified_split(stratified_split) -> str:
    """Run the learner's ``stratified_split(records, test, seed)`` on a hidden unbalanced dataset (test = 20%)."""
    from ftcourse.data import split_dataset

    forbid_helpers(stratified_split, "stratified_split", {"split_dataset": split_dataset},
                   "write the split yourself: group the records by label, shuffle each group with random.Random(seed), cut each.")
    records = [{"text": f"{label} message {i}", "label": label} for label, n in _EX01_STRATA.items() for i in range(n)]

    def run(seed):
        got = call_learner(stratified_split, [dict(r) for r in records], 0.2, seed, name="stratified_split")
        expect(isinstance(got, (tuple, list)) and len(got) == 2 and all(isinstance(part, list) for part in got),
               f"stratified_split returns {type(got).__name__}, not (train, test) lists.", "return two lists of records: (train, test).")
        return got

    train, test = run(0)
    texts = [r.get("text") for r in [*train, *test] if isinstance(r, dict)]
    expect(len(texts) == len(train) + len(test) == len(records) and set(texts) == {r["text"] for r in records},
           f"train + test hold {len(train) + len(test)} records ({len(set(texts))} different); the data has {len(records)}.",
           "every record goes to exactly one part: the test part of each label, and the rest of it to train (no copies, none lost).")
    got = Counter(r["label"] for r in test)
    want = {label: round(n * 0.2) for label, n in _EX01_STRATA.items()}
    if any(got.get(label, 0) != n for label, n in want.items()):
        if all(got.get(label, 0) == int(n * 0.2) for label, n in _EX01_STRATA.items()):
            hint = ("round each label's share to the nearest record: 4 records × 0.2 = 0.8 → 1. int() truncates it to 0, and that label "
                    "is never tested.")
        elif sum(got.values()) == round(len(records) * 0.2):
            hint = ("the test part has the right size but not each label's share: shuffling all records together leaves a rare label "
                    "with too few (or no) test examples. Shuffle and cut each label's records separately.")
        else:
            hint = "for each label: shuffle its records, put round(len(group) * test) of them into test and the rest into train."
        expect(False, f"on a hidden unbalanced dataset (labels {dict(_EX01_STRATA)}, test=0.2) your test part has {dict(got)}; "
               f"a stratified split has {want}.", hint)
    expect([list(part) for part in run(0)] == [train, test], "two calls with seed=0 give different splits.",
           "draw from a generator seeded with `seed` (random.Random(seed)), not from the global random module.")
    tests = {tuple(sorted(r["text"] for r in run(seed)[1])) for seed in (1, 2, 3)}
    expect(len(tests) > 1, "seeds 1, 2 and 3 give the same test part: the seed changes nothing.",
           "shuffle each label's records with random.Random(seed) before cutting: the first records of each label are not a random sample.")
    return f"and stratified_split keeps each label's share on a hidden unbalanced dataset ({dict(want)} of {dict(_EX01_STRATA)} in test)."


@self_check
def check_ex01_task3(splits, stratified_split=None) -> str:
    """``splits``: split_dataset(data, validation=0.1, test=0.1, seed=42) of the intent data;
    ``stratified_split(records, test, seed)`` (optional): a stratified (train, test) split written by hand."""
    from ftcourse.bundled import intent_splits

    if stratified_split is not None:
        expect(callable(stratified_split), "`stratified_split` is not a function.", "define def stratified_split(records, test, seed): ...")
        by_hand = _ex01_check_stratified_split(stratified_split)
    reference = intent_splits()
    expect(isinstance(splits, dict) and set(splits) == set(reference), f"`splits` should be a dict with keys {sorted(reference)}.",
           "use ftcourse.data.split_dataset(data, validation=0.1, test=0.1, seed=42).")
    sizes = {k: len(v) for k, v in splits.items()}
    want = {k: len(v) for k, v in reference.items()}
    expect(sizes == want, f"split sizes are {sizes}; an 80/10/10 split of 1000 records is {want}.", "pass validation=0.1 and test=0.1.")
    lines = {k: set(v.lines) for k, v in splits.items()}
    expect(not (lines["train"] & lines["test"]) and not (lines["train"] & lines["validation"]),
           "a record appears in training and in validation/test: the evaluation would be leaked.", "split once and keep the parts disjoint.")
    for name, part in splits.items():
        missing = sorted(set(reference["train"].labels()) - set(part.labels()))
        expect(not missing, f"the {name} split has no example of {missing[0] if missing else ''}.", "stratify by label (split_dataset does).")
    expect(all(lines[k] == set(reference[k].lines) for k in lines), "the split differs from the course's split.",
           "use seed=42, so that your test set is the one every lesson evaluates on.")
    done = f"train/validation/test = {sizes['train']}/{sizes['validation']}/{sizes['test']}, stratified, disjoint, the course's split"
    return f"{done} — {by_hand}" if stratified_split is not None else f"{done}."


@self_check
def check_ex01_task4(completion_only, tokenizer) -> str:
    """``completion_only(tokenizer, messages)`` -> {"input_ids", "labels"} with the prompt masked by -100."""
    from ftcourse.bundled import intent_splits
    from ftcourse.data import INTENT_LABELS, to_messages
    from ftcourse.tokenization import IGNORE_INDEX, tokenize_messages, tokenize_records

    expect(callable(completion_only), "`completion_only` is not a function.", "define def completion_only(tokenizer, messages): ...")
    forbid_helpers(completion_only, "completion_only", {"tokenize_messages": tokenize_messages, "tokenize_records": tokenize_records},
                   "this task is to write the masking yourself: prompt ids from prompt_ids, the answer's ids and EOS, "
                   "then -100 for every prompt position.")
    records = intent_splits()["validation"].records[:3]
    for record in records:
        messages = to_messages(record, "classification", INTENT_LABELS)
        want = tokenize_messages(tokenizer, messages)
        got = call_learner(completion_only, tokenizer, messages, name="completion_only")
        expect(isinstance(got, dict) and {"input_ids", "labels"} <= set(got), "completion_only must return a dict with 'input_ids' and 'labels'.",
               "return {'input_ids': ids, 'labels': labels}.")
        ids, labels = list(got["input_ids"]), list(got["labels"])
        expect(len(ids) == len(labels), f"input_ids has {len(ids)} tokens but labels {len(labels)}.", "labels must line up with input_ids, one per token.")
        expect(ids == want["input_ids"], f"for {record['text'][:40]!r}… the token ids differ from the chat-template prompt + answer + EOS.",
               "ids = prompt_ids(tokenizer, messages[:-1]) + the answer's ids (add_special_tokens=False) + [tokenizer.eos_token_id].")
        trained = [lbl for lbl in labels if lbl != IGNORE_INDEX]
        expect(trained, "every label is -100: nothing would be trained.", "keep the answer's tokens (and EOS) as labels.")
        expect(labels[:-1] != want["labels"][1:], "your labels are shifted one position to the left of the tokens.",
               "labels line up with input_ids: do not shift them yourself (the model shifts labels by one inside its loss).")
        expect(labels[-1] == tokenizer.eos_token_id, "the last label is not EOS: the model would never learn to stop.",
               "append tokenizer.eos_token_id to the ids and keep it in the labels.")
        first = next(i for i, lbl in enumerate(want["labels"]) if lbl != IGNORE_INDEX)
        shifted = labels[:first] != want["labels"][:first] or labels[first] != want["labels"][first]
        expect(labels == want["labels"], "the prompt is not masked exactly: " + (
            "the boundary is off by one (the last prompt token is trained, or the first answer token masked)." if shifted
            else "some answer token is masked or some prompt token trained."),
               "labels = [-100] * len(prompt) + answer ids: do not shift them yourself (the model shifts labels by one inside its loss).")
    return f"prompt masked, answer + EOS trained on {len(records)} hidden examples."


@self_check
def check_ex01_task5(tokenizer, max_seq_length) -> str:
    """``max_seq_length``: the smallest multiple of 32 that truncates no training example."""
    from ftcourse.bundled import intent_splits
    from ftcourse.data import INTENT_LABELS, to_messages
    from ftcourse.tokenization import tokenize_messages

    longest = max(len(tokenize_messages(tokenizer, to_messages(r, "classification", INTENT_LABELS))["input_ids"])
                  for r in intent_splits()["train"].records)
    want = -(-longest // 32) * 32
    expect(isinstance(max_seq_length, int), f"`max_seq_length` is a {type(max_seq_length).__name__}, not an int.", "compute an int.")
    expect(max_seq_length >= longest, f"max_seq_length={max_seq_length} truncates the longest training example ({longest} tokens).",
           "tokenize every training example and take the longest, then round up to a multiple of 32.")
    expect(max_seq_length % 32 == 0, f"{max_seq_length} is not a multiple of 32.", "round up: -(-n // 32) * 32.")
    expect(max_seq_length == want, f"{max_seq_length} is larger than needed: {want} truncates nothing.",
           "take the smallest multiple of 32 at or above the longest example; padding costs compute.")
    return f"the longest training example has {longest} tokens; max_seq_length={want} truncates none."


def ex01_buggy_collate(examples, pad_id):
    """Exercise 01, task 6: the collator of a run whose model never learned to stop. Do not fix it here."""
    width = max(len(e["input_ids"]) for e in examples)
    input_ids = [list(e["input_ids"]) + [pad_id] * (width - len(e["input_ids"])) for e in examples]
    labels = [list(e["labels"]) + [pad_id] * (width - len(e["labels"])) for e in examples]
    labels = [[-100 if t == pad_id else t for t in row] for row in labels]  # "ignore the padding"
    attention_mask = [[int(t != pad_id) for t in row] for row in input_ids]
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def _as_rows(value) -> list[list[int]]:
    return value.tolist() if hasattr(value, "tolist") else [list(row) for row in value]


@self_check
def check_ex01_task6(collate, tokenizer) -> str:
    """``collate(examples, pad_id)``: right-padded input_ids, attention_mask and labels; EOS stays trained when pad == eos."""
    from ftcourse.bundled import intent_splits
    from ftcourse.data import INTENT_LABELS, to_messages
    from ftcourse.tokenization import IGNORE_INDEX, tokenize_messages
    from ftcourse.tokenization import collate as course_collate

    expect(callable(collate), "`collate` is not a function.", "define def collate(examples, pad_id): ...")
    forbid_helpers(collate, "collate", {"collate": course_collate},
                   "write the padding yourself: it is the point of this debugging task.")
    pad = tokenizer.pad_token_id
    expect(pad == tokenizer.eos_token_id, "this tokenizer's pad token is not its EOS token; the task is about the case where they are equal.",
           "use the exercise's tokenizer (load_tokenizer(P.model)).")
    examples = [tokenize_messages(tokenizer, to_messages(r, "classification", INTENT_LABELS)) for r in intent_splits()["test"].records[:4]]
    examples = [{"input_ids": e["input_ids"], "labels": e["labels"]} for e in examples]
    want = course_collate(examples, pad, pad_to_multiple_of=1)
    got = call_learner(collate, [dict(e) for e in examples], pad, name="collate")
    expect(isinstance(got, dict) and {"input_ids", "attention_mask", "labels"} <= set(got),
           "`collate` must return a dict with 'input_ids', 'attention_mask' and 'labels'.", "return all three, one row per example.")
    ids, mask, labels = (_as_rows(got[k]) for k in ("input_ids", "attention_mask", "labels"))
    expect(ids == _as_rows(want["input_ids"]), "the padded input_ids are wrong (padded on the left, or to another width).",
           "pad on the right to the longest example of the batch: training pads right, generation pads left.")
    rows = [e["labels"] for e in examples]
    eos_masked = any(row[len(e) - 1] == IGNORE_INDEX for row, e in zip(labels, rows))
    expect(not eos_masked, "the label of the final EOS token is -100: the model is never taught to stop — the bug of the given collator.",
           "pad == eos here, so 'mask every pad token' also masks the real EOS. Build the labels from the lengths: "
           "copy each example's own labels, then -100 only in the padding positions.")
    trained_pad = any(lbl != IGNORE_INDEX for row, e in zip(labels, rows) for lbl in row[len(e):])
    expect(not trained_pad, "padding positions have labels other than -100: the model would be trained to emit padding.",
           "the labels of the padding positions must be -100.")
    expect(labels == _as_rows(want["labels"]), "some label inside an example changed.", "copy each example's labels unchanged before padding.")
    expect(mask == _as_rows(want["attention_mask"]), "the attention_mask is wrong: "
           + ("it hides the real EOS token." if any(m[len(e) - 1] == 0 for m, e in zip(mask, rows)) else "it does not mark exactly the real tokens."),
           "build the mask from the lengths (1 for each real token, EOS included; 0 for padding), not from `ids != pad_id`.")
    return f"EOS stays trained and padding is ignored on {len(examples)} hidden examples with pad == eos (id {pad})."


# ---------------------------------------------------------------- ex03 · evaluation


_F1_CASES = [
    (["a", "b", "a", "c"], ["a", "b", "b", "c"]),
    (["a", None, "b", "b", "c"], ["a", "a", "b", "c", "c"]),
    (["x", "x", "z", "y"], ["x", "y", "x", "y"]),  # z is predicted but never a reference
    (["a", "b", "b"], ["a", "a", "a"]),  # b likewise
]


def _mean_f1(predictions, references, labels) -> float:
    """Macro F1 over exactly ``labels`` (0 for a label without a true positive)."""
    from ftcourse.metrics import per_label_scores

    scores = per_label_scores(predictions, references, labels)
    return sum(scores[label]["f1"] for label in labels) / len(labels)


def macro_f1_reference(predictions, references) -> float:
    """The course's macro F1: scikit-learn's ``f1_score(average="macro")`` over the labels in references ∪ predictions.

    A ``None`` prediction (no label named) is wrong and is not a label; F1 is 0 when precision + recall is 0.
    """
    return _mean_f1(predictions, references, sorted(set(references) | {p for p in predictions if p is not None}))


@self_check
def check_ex03_task1(macro_f1) -> str:
    """``macro_f1(predictions, references)``: mean F1 over the labels in references ∪ predictions (scikit-learn's macro F1)."""
    from ftcourse.metrics import classification_metrics, per_label_scores

    expect(callable(macro_f1), "`macro_f1` is not a function.", "define def macro_f1(predictions, references): ...")
    forbid_helpers(macro_f1, "macro_f1", {"classification_metrics": classification_metrics, "per_label_scores": per_label_scores, "f1_score": None},
                   "count tp, fp and fn per label yourself; that is the exercise.")
    for predictions, references in _F1_CASES:
        want = macro_f1_reference(predictions, references)
        got = call_learner(macro_f1, list(predictions), list(references), name="macro_f1")
        expect(isinstance(got, (int, float)), f"macro_f1 returns a {type(got).__name__}, not a number.", "return the mean F1 as a float.")
        refs_only = [lbl for lbl in dict.fromkeys(references)]
        hint = ("per label: precision = tp/(tp+fp), recall = tp/(tp+fn), F1 = 2PR/(P+R) (0 when P+R = 0); "
                "average over every label in references ∪ predictions; a None prediction is wrong and is not a label.")
        if any(p is not None and p not in references for p in predictions) and _close(float(got), _mean_f1(predictions, references, refs_only), 1e-6):
            hint = ("you average over the labels of the references only. A label the model predicts but nobody asked for still has "
                    "false positives, and scikit-learn's macro F1 (the course's definition) counts it, with F1 = 0.")
        elif _close(float(got), sum(p == r for p, r in zip(predictions, references)) / len(references), 1e-6) and not _close(want, float(got), 1e-6):
            hint = "that is accuracy (= micro F1). Macro F1 computes F1 per label and averages the labels equally. " + hint
        expect(_close(float(got), want, 1e-6), f"macro_f1({predictions}, {references}) = {got}; want {want:.4f}.", hint)
    return f"matches scikit-learn's macro F1 on {len(_F1_CASES)} hidden cases (None predictions and labels nobody asked for included)."


@self_check
def check_ex03_task2(model, tokenizer, predictions, metrics, P) -> str:
    """``predictions``: constrained labels of the base model on the profile's test split; ``metrics``: {"accuracy", "macro_f1"} of them."""
    from ftcourse.bundled import intent_records
    from ftcourse.data import INTENT_LABELS
    from ftcourse.generation import classify
    from ftcourse.metrics import accuracy

    test = intent_records(P)["test"]
    references = [r["label"] for r in test]
    expect(isinstance(predictions, list) and len(predictions) == len(test),
           f"there are {len(predictions) if isinstance(predictions, list) else '?'} predictions for {len(test)} test examples.",
           "predict one label per example of intent_records(P)['test'].")
    expect(all(p in INTENT_LABELS for p in predictions), "some predictions are not intent labels.",
           "constrain generation to the label set: classify(model, tokenizer, prompts, INTENT_LABELS) (constrained=True).")
    want = accuracy(predictions, references)
    expect(isinstance(metrics, dict) and {"accuracy", "macro_f1"} <= set(metrics), "`metrics` should be a dict with 'accuracy' and 'macro_f1'.",
           "metrics = {'accuracy': ..., 'macro_f1': macro_f1(predictions, references)}.")
    expect(_close(float(metrics["accuracy"]), want, 1e-9), f"metrics['accuracy'] is {metrics['accuracy']}; your predictions' accuracy is {want:.3f}.",
           "the share of predictions equal to their reference, references in test order.")
    f1 = macro_f1_reference(predictions, references)
    expect(_close(float(metrics["macro_f1"]), f1, 1e-6), f"metrics['macro_f1'] is {metrics['macro_f1']}; your predictions' macro F1 is {f1:.3f}.",
           "use your task-1 macro_f1 on (predictions, references) — a zero-shot model predicts labels that no test example has, "
           "and they count.")
    probes = sorted({0, 1, len(test) // 2, len(test) - 1})  # the first two, and two the learner cannot guess from the printout
    again = classify(model, tokenizer, [test[i]["messages"][:-1] for i in probes], INTENT_LABELS, progress=False)
    expect(again == [predictions[i] for i in probes], f"re-classifying test examples {probes} gives other labels than your predictions.",
           "predict every example with the base model, the prompts without the answer (r['messages'][:-1]), in test order.")
    return f"zero-shot accuracy {want:.2f} and macro F1 {f1:.2f} on {len(test)} test examples (re-checked on {len(probes)})."


_CONFUSION_CASES = [
    ((["a", "b", "b", "c", "a", "b"], ["a", "a", "a", "c", "b", "c"], 2), [(("a", "b"), 2), (("b", "a"), 1)]),
    ((["x", None, None, "y", "z"], ["y", "y", "x", "x", "z"], 3), [(("x", "(none)"), 1), (("x", "y"), 1), (("y", "(none)"), 1)]),
    ((["a", "b"], ["a", "b"], 3), []),
]


@self_check
def check_ex03_task3(top_confusions) -> str:
    """``top_confusions(predictions, references, k)``: the k most frequent ((true, predicted), count) mistakes."""
    expect(callable(top_confusions), "`top_confusions` is not a function.", "define def top_confusions(predictions, references, k=3): ...")
    for (predictions, references, k), want in _CONFUSION_CASES:
        got = top_confusions(list(predictions), list(references), k)
        got = [(tuple(pair), count) for pair, count in got] if isinstance(got, list) else got
        expect(got == want, f"top_confusions({predictions}, {references}, k={k}) = {got}; want {want}.",
               "count (true, predicted) pairs where they differ, None as '(none)'; sort by count (highest first), "
               "ties by (true, predicted) alphabetically; return at most k.")
    return f"right on {len(_CONFUSION_CASES)} hidden cases (ties, missing predictions, no mistakes)."


_PPL_TEXTS = [
    "The HubOS bridge keeps a local copy of every automation, so lights and sensors keep working when the internet is down. "
    "To restore a backup, open the app, choose Settings, then Backup, and pick the most recent snapshot from the list.",
    "Rivers carry water from mountains to the sea. Along the way they shape valleys, feed farmland and give homes to fish, birds and plants.",
]


@self_check
def check_ex03_task4(my_perplexity, model, tokenizer) -> str:
    """``my_perplexity(model, tokenizer, text)``: exp(mean next-token loss) of the text's tokens followed by EOS."""
    from ftcourse.generation import perplexity, text_nll

    expect(callable(my_perplexity), "`my_perplexity` is not a function.", "define def my_perplexity(model, tokenizer, text): ...")
    forbid_helpers(my_perplexity, "my_perplexity", {"perplexity": perplexity, "text_nll": text_nll},
                   "compute it from the model's loss yourself: exp(model(input_ids=ids, labels=ids).loss).")
    for text in _PPL_TEXTS:
        want = perplexity(model, tokenizer, [text], progress=False)
        got = call_learner(my_perplexity, model, tokenizer, text, name="my_perplexity")
        expect(isinstance(got, (int, float)) or hasattr(got, "item"), f"my_perplexity returns a {type(got).__name__}.", "return a float.")
        got = float(got)
        expect(_close(got, want, 0.02), f"my_perplexity gives {got:.2f} on a hidden text; want {want:.2f} (within 2%).",
               "ids = text's tokens (add_special_tokens=False) + [eos]; loss = model(input_ids=ids, labels=ids).loss "
               "(the model shifts labels itself); perplexity = exp(loss). A value near exp(loss)^2 or off by a lot means a double shift.")
    return f"matches ftcourse.generation.perplexity within 2% on {len(_PPL_TEXTS)} hidden texts."


@self_check
def check_ex03_task5(bootstrap_ci) -> str:
    """``bootstrap_ci(correct, n_boot=2000, seed=0)``: a 95% percentile-bootstrap interval (low, high) of accuracy."""
    expect(callable(bootstrap_ci), "`bootstrap_ci` is not a function.", "define def bootstrap_ci(correct, n_boot=2000, seed=0): ...")

    def ci(correct, n_boot, seed):
        got = call_learner(bootstrap_ci, list(correct), n_boot=n_boot, seed=seed, name="bootstrap_ci")
        expect(isinstance(got, (tuple, list)) and len(got) == 2, f"bootstrap_ci returns {got!r}, not (low, high).", "return a tuple (low, high).")
        return float(got[0]), float(got[1])

    small = [True] * 70 + [False] * 30
    low, high = ci(small, 2000, 0)
    expect(low <= 0.7 <= high, f"the interval ({low:.3f}, {high:.3f}) does not contain the accuracy 0.70.",
           "resample the list with replacement n_boot times, take each sample's mean, return the 2.5th and 97.5th percentiles.")
    expect(0.16 <= high - low <= 0.21, f"for 100 examples at 70% the interval is {high - low:.3f} wide; a 95% interval is about 0.18.",
           "take the 2.5th and 97.5th percentiles of the resampled accuracies (not the standard deviation, not 5/95).")
    wide = high - low
    low4, high4 = ci(small * 4, 2000, 0)
    expect(0.35 <= (high4 - low4) / wide <= 0.7, f"with 4x the examples the interval should be about half as wide; it went from {wide:.3f} to {high4 - low4:.3f}.",
           "resample the given list itself (same size as the data), not a fixed number of items.")
    expect(ci(small * 4, 20, 3) == ci(small * 4, 20, 3), "two calls with the same seed give different intervals.",
           "draw from a generator seeded with `seed` (random.Random(seed) or numpy.random.default_rng(seed)).")
    skewed = [True] * 19 + [False]
    low_s, high_s = ci(skewed, 2000, 0)
    expect(high_s <= 1.0, f"for 19 of 20 correct your interval reaches {high_s:.3f}, above 100% accuracy.",
           "that is the normal-approximation (Wald) formula p ± 1.96·sqrt(p(1-p)/n), which the task does not ask for: near 0 or 1 "
           "it leaves [0, 1]. Resample instead: no resampled accuracy can exceed 1.")
    seeds = {ci([True] * 30 + [False] * 20, 40, seed) for seed in range(6)}
    expect(len(seeds) > 1, "six different seeds give exactly the same interval: your function does not resample.",
           "a formula (e.g. Wald's p ± 1.96·sqrt(p(1-p)/n)) ignores n_boot and seed. The bootstrap draws n_boot resamples "
           "with replacement from a generator seeded with `seed`, so with few resamples the seed shows.")
    expect(ci([True] * 20, 200, 1) == (1.0, 1.0), "all-correct data must give the interval (1.0, 1.0).", "compute accuracies of the resamples directly.")
    return f"100 examples at 70%: [{low:.3f}, {high:.3f}]; 4x the data halves the width ({high4 - low4:.3f}); 19/20: [{low_s:.2f}, {high_s:.2f}]."


def paired_difference_ci(correct_a, correct_b, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile-bootstrap interval of accuracy(B) - accuracy(A), resampling examples (pairs) with ``random.Random(seed)``."""
    import random

    rng = random.Random(seed)
    n = len(correct_a)
    diffs = sorted(sum(correct_b[i] - correct_a[i] for i in (rng.randrange(n) for _ in range(n))) / n for _ in range(n_boot))
    return diffs[int(0.025 * n_boot)], diffs[int(0.975 * n_boot) - 1]


def _paired_case(n: int, both: int, only_a: int, only_b: int) -> tuple[list[bool], list[bool]]:
    """A and B right together on ``both`` examples, A alone on ``only_a``, B alone on ``only_b``, both wrong on the rest."""
    a = [True] * both + [True] * only_a + [False] * only_b
    b = [True] * both + [False] * only_a + [True] * only_b
    rest = n - len(a)
    return a + [False] * rest, b + [False] * rest


#: (n, both right, only A right, only B right) -> the verdict of the course's rule.
_COMPARE_CASES = [((100, 70, 0, 8), "B"), ((50, 30, 1, 3), "no clear difference"), ((200, 120, 20, 4), "A")]


@self_check
def check_ex03_task6(compare_models) -> str:
    """``compare_models(correct_a, correct_b, n_boot=2000, seed=0)`` -> ("A" | "B" | "no clear difference", (low, high))."""
    expect(callable(compare_models), "`compare_models` is not a function.", "define def compare_models(correct_a, correct_b, n_boot=2000, seed=0): ...")
    for (n, both, only_a, only_b), want in _COMPARE_CASES:
        a, b = _paired_case(n, both, only_a, only_b)
        got = call_learner(compare_models, list(a), list(b), n_boot=2000, seed=0, name="compare_models")
        expect(isinstance(got, (tuple, list)) and len(got) == 2 and got[0] in ("A", "B", "no clear difference"),
               f"compare_models returns {got!r}.", 'return (verdict, (low, high)) with verdict "A", "B" or "no clear difference".')
        verdict, interval = got
        acc_a, acc_b = sum(a) / n, sum(b) / n
        low, high = paired_difference_ci(a, b)
        case = f"A {acc_a:.2f} vs B {acc_b:.2f} on {n} examples ({only_a + only_b} disagreements)"
        if verdict != want and want == "no clear difference":
            hint = ("a higher accuracy on a small test set is not yet a better model: decide from the interval of the difference, "
                    "and only when it excludes 0.")
        elif verdict != want:
            hint = ("the two models answer the SAME examples, so compare them pair by pair: resample example indices, and compute "
                    "accuracy(B) - accuracy(A) on each resample. Two separate intervals that overlap do not show that there is no difference.")
        else:
            hint = ""
        expect(verdict == want, f"{case}: you say {verdict!r}; the paired bootstrap of the difference gives [{low:+.3f}, {high:+.3f}], so {want!r}.", hint)
        lo, hi = (float(v) for v in interval)
        expect(abs(lo - low) <= 0.03 and abs(hi - high) <= 0.03, f"{case}: your interval [{lo:+.3f}, {hi:+.3f}] is far from the paired bootstrap's [{low:+.3f}, {high:+.3f}].",
               "interval of accuracy(B) - accuracy(A): resample indices i with replacement, take the mean of b[i] - a[i]; 2.5th and 97.5th percentiles.")
    return f"right on {len(_COMPARE_CASES)} hidden comparisons, including one where the separate intervals overlap but the paired one excludes 0."


# ---------------------------------------------------------------- ex02 · LoRA configuration and training


def _peft_trainable(model, method: str, settings=None) -> int:
    """Trainable parameters PEFT gives ``method`` with ``settings`` on ``model``'s architecture (counted on a weightless copy)."""
    from ftcourse.comparison import peft_parameter_count

    return int(peft_parameter_count(model, method, settings)["trainable"])


def _targets(config) -> set[str]:
    modules = config.target_modules if hasattr(config, "target_modules") else config["target_modules"]
    return {modules} if isinstance(modules, str) else set(modules)


_EX02_LORA = {"r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"]}


def ex02_classmate_lora(model):
    """Exercise 02, task 1: a classmate's LoRA model (r=8, alpha=16 on q_proj and v_proj), then every weight made
    trainable "to be sure it learns". Do not fix it here."""
    from peft import get_peft_model

    from ftcourse.configs import LoraSettings
    from ftcourse.peft_methods import build_peft_config

    lora_model = get_peft_model(model, build_peft_config("lora", model, LoraSettings(**_EX02_LORA)))
    lora_model.requires_grad_(True)
    return lora_model


def _ex02_adam_cases(lora_model):
    """Models to run ``adam_state_mib`` on: the learner's, the classmate's (weightless) and a small one with a frozen embedding."""
    import torch

    from ftcourse.models import weightless_copy

    small = torch.nn.Sequential(torch.nn.Embedding(1000, 24), torch.nn.Linear(24, 48), torch.nn.Linear(48, 10))
    small[0].requires_grad_(False)
    return [("your fixed lora_model", lora_model), ("the classmate's model", ex02_classmate_lora(weightless_copy(lora_model))),
            ("a hidden model with a frozen embedding", small)]


def _ex02_check_adam(adam_state_mib, lora_model) -> float:
    expect(callable(adam_state_mib), "`adam_state_mib` is not a function.", "define def adam_state_mib(model): ...")
    for name, m in _ex02_adam_cases(lora_model):
        trainable = sum(p.numel() for p in m.parameters() if p.requires_grad)
        want = 8 * trainable / 2**20
        got = call_learner(adam_state_mib, m, name="adam_state_mib")
        if isinstance(got, (int, float)) and _close(float(got), want, 1e-6):
            continue
        wrongs = {"only the trainable parameters have optimizer states (p.requires_grad): frozen weights get no gradient and no AdamW state.":
                  8 * sum(p.numel() for p in m.parameters()) / 2**20,
                  "AdamW keeps two states per trainable parameter (the running means of the gradient and of its square), each fp32 "
                  "(4 bytes) like the trainable weights here: 8 bytes per parameter.": 4 * trainable / 2**20,
                  "count AdamW's states only: the weights and gradients are not optimizer states.": 16 * trainable / 2**20,
                  "a MiB is 2**20 bytes, not 10**6.": 8 * trainable / 1e6}
        hint = next((h for h, v in wrongs.items() if isinstance(got, (int, float)) and _close(float(got), v, 1e-6)),
                    "2 states × 4 bytes (fp32) × the number of trainable parameters, in MiB (2**20 bytes).")
        expect(False, f"adam_state_mib({name}) = {got!r}; AdamW's states for its {trainable:,} trainable parameters take {want:.2f} MiB.", hint)
    return 8 * sum(p.numel() for p in lora_model.parameters() if p.requires_grad) / 2**20


@self_check
def check_ex02_task1(lora_model, adam_state_mib) -> str:
    """``lora_model``: the classmate's LoRA model (r=8, alpha=16 on q_proj and v_proj) fixed so that only the adapter trains;
    ``adam_state_mib(model)``: MiB of AdamW's states for a model's trainable parameters."""
    from peft import PeftModel

    from ftcourse.configs import LoraSettings
    from ftcourse.models import count_parameters

    expect(isinstance(lora_model, PeftModel), f"`lora_model` is a {type(lora_model).__name__}, not a PeftModel.",
           "keep the classmate's PEFT model (or build the same one again with get_peft_model).")
    config = lora_model.peft_config["default"]
    expect(str(config.peft_type.value) == "LORA", f"the adapter is {config.peft_type.value}, not LoRA.", "build the config with method 'lora'.")
    expect((config.r, config.lora_alpha, _targets(config)) == (8, 16, {"q_proj", "v_proj"}),
           f"the adapter has r={config.r}, lora_alpha={config.lora_alpha} on {sorted(_targets(config))}; the task asks for r=8, lora_alpha=16 on q_proj and v_proj.",
           "LoraSettings(r=8, lora_alpha=16, target_modules=['q_proj', 'v_proj']): the settings were right, the trainable weights were not.")
    counts = count_parameters(lora_model)
    want = _peft_trainable(lora_model, "lora", LoraSettings(**_EX02_LORA))
    extra = [n for n, p in lora_model.named_parameters() if p.requires_grad and "lora_" not in n]
    expect(not extra, f"{len(extra)} base-model tensors still train (e.g. {extra[0]}): {counts['trainable']:,} trainable parameters "
           f"where the adapter has {want:,}." if extra else "",
           "LoRA freezes the base model: set requires_grad = False on every parameter that is not a lora_A / lora_B matrix. "
           "(The classmate's base weights changed during training, and PEFT's save_pretrained saves only the adapter: "
           "what the base learned was lost.)")
    expect(counts["trainable"] == want, f"{counts['trainable']:,} parameters are trainable; LoRA r=8 on q_proj/v_proj trains {want:,}.",
           "keep every lora_A and lora_B matrix trainable: without them nothing learns.")
    fixed = _ex02_check_adam(adam_state_mib, lora_model)
    return (f"{want:,} trainable of {counts['total']:,} parameters ({counts['trainable_percent']:.2f}%); AdamW's states: "
            f"{fixed:.1f} MiB instead of {8 * counts['total'] / 2**20:,.0f} MiB.")


@self_check
def check_ex02_task2(lora_parameter_count, model) -> str:
    """``lora_parameter_count(model, r, target_modules)``: LoRA's trainable parameters, computed from the layer shapes."""
    from peft import LoraConfig, get_peft_model, inject_adapter_in_model

    from ftcourse.configs import LoraSettings
    from ftcourse.models import count_parameters, weightless_copy
    from ftcourse.peft_methods import build_peft_config, linear_layer_names

    expect(callable(lora_parameter_count), "`lora_parameter_count` is not a function.",
           "define def lora_parameter_count(model, r, target_modules): ...")
    forbid_helpers(lora_parameter_count, "lora_parameter_count",
                   {"get_peft_model": get_peft_model, "inject_adapter_in_model": inject_adapter_in_model, "LoraConfig": LoraConfig,
                    "build_peft_config": build_peft_config, "count_parameters": count_parameters},
                   "predict the count from the layer shapes alone (in_features, out_features, r): building the adapter and counting is what the check does.")
    cases = [(8, ["q_proj", "v_proj"]), (4, ["q_proj", "k_proj", "v_proj", "o_proj"]), (2, ["gate_proj", "up_proj", "down_proj"])]
    cases = [c for c in cases if set(c[1]) <= set(linear_layer_names(weightless_copy(model)))]
    for r, targets in cases:
        want = _peft_trainable(model, "lora", LoraSettings(r=r, target_modules=targets))
        got = call_learner(lora_parameter_count, weightless_copy(model), r, list(targets), name="lora_parameter_count")
        expect(got == want, f"lora_parameter_count(model, r={r}, {targets}) = {got}; PEFT trains {want:,}.",
               "for every nn.Linear whose name ends with a target: A is r x in_features and B is out_features x r, "
               "so it adds r * (in_features + out_features); sum over all layers (every block has its own).")
    return f"matches PEFT on {len(cases)} hidden configurations."


@self_check
def check_ex02_task3(budget_settings, model) -> str:
    """``budget_settings``: LoraSettings on q/k/v/o_proj with the largest r under 1,000,000 trainable parameters."""
    from dataclasses import replace

    from ftcourse.configs import LoraSettings

    expect(isinstance(budget_settings, LoraSettings), f"`budget_settings` is a {type(budget_settings).__name__}, not LoraSettings.",
           "budget_settings = LoraSettings(r=..., lora_alpha=2 * r, target_modules=[...]).")
    targets, r = _targets(budget_settings), budget_settings.r
    expect(targets == {"q_proj", "k_proj", "v_proj", "o_proj"}, f"the adapter targets {sorted(targets)}.",
           "target all four attention projections: q_proj, k_proj, v_proj and o_proj.")
    n = _peft_trainable(model, "lora", budget_settings)
    expect(n < 1_000_000, f"r={r} gives {n / 1e6:.2f}M trainable parameters; the task asks for under 1M.", "lower r (the count grows linearly with r).")
    bigger = _peft_trainable(model, "lora", replace(budget_settings, r=r + 1))
    expect(bigger >= 1_000_000, f"r={r + 1} still fits the budget ({bigger:,} parameters).",
           "use the largest r under the budget: your lora_parameter_count from task 2 tells you quickly.")
    return f"r={r} on the four attention projections trains {n:,} parameters (r={r + 1} would train {bigger:,})."


def _trained_adapter(result, method: str, loss_must_drop: bool = True) -> tuple[dict, list[float]]:
    """Check a RunResult of ``method``: adapter saved, every lora_B trained, loss down; return (adapter config, losses)."""
    import json
    from pathlib import Path

    from safetensors.torch import load_file

    from ftcourse.train import RunResult

    expect(isinstance(result, RunResult), f"`result` is a {type(result).__name__}, not what fine_tune returns.",
           f"result = fine_tune(records, model=P.model, method={method!r}, settings=settings_from_profile(P), run_name=...).")
    expect(result.method == method, f"the run used method {result.method!r}; the task asks for {method!r}.", f"pass method={method!r}.")
    run_dir = Path(result.run_dir)
    files = {p.name for p in run_dir.iterdir()} if run_dir.is_dir() else set()
    expect({"adapter_config.json", "adapter_model.safetensors"} <= files, f"{run_dir} holds no saved adapter (found {sorted(files)}).",
           "fine_tune saves the adapter when training ends; let it finish.")
    losses = [loss for _, loss in result.losses]
    expect(not loss_must_drop or (len(losses) >= 2 and losses[-1] < losses[0]),
           f"the training loss did not go down: {[round(v, 3) for v in losses]}.",
           "train at least two logged steps with the method's default learning rate (settings_from_profile(P)).")
    tensors = load_file(run_dir / "adapter_model.safetensors")
    frozen = [n for n, t in tensors.items() if "lora_B" in n and not t.abs().sum()]
    expect(not frozen, f"{len(frozen)} of the saved lora_B matrices are still all zero: those layers never learned.",
           "check that the optimizer updates the adapter (learning rate > 0, steps > 0).")
    return json.loads((run_dir / "adapter_config.json").read_text()), losses


def _trained_on(result, records, packing: bool = False, init_text: str | None = None) -> bool:
    """True when ``result``'s saved run was trained on exactly ``records`` (with fine_tune's other defaults): its fingerprint says so."""
    from ftcourse.configs import LoraSettings, TrainingSettings
    from ftcourse.train import RUN_RECORD, run_fingerprint

    record = json.loads((Path(result.run_dir) / RUN_RECORD).read_text())
    return record.get("fingerprint") == run_fingerprint(record["base_model"], record["method"], LoraSettings(**record["lora"]),
                                                         TrainingSettings(**record["training"]), list(records), packing, init_text)


def _expect_intent_train(result, init_text: str | None = None) -> None:
    """Fail unless ``result`` was trained on the intent task's training split (of some profile), naming an evaluation split it used."""
    from ftcourse.bundled import intent_records
    from ftcourse.hardware import PROFILES, get_profile
    from ftcourse.train import RUN_RECORD

    expect((Path(result.run_dir) / RUN_RECORD).is_file(), f"{result.run_dir} holds no {RUN_RECORD}: it was not saved by fine_tune.",
           "train with ftcourse.train.fine_tune and pass its RunResult.")
    splits = {split for name in PROFILES for split, records in intent_records(get_profile(name)).items() if _trained_on(result, records, init_text=init_text)}
    evaluation = sorted(splits - {"train"})
    expect("train" in splits, f"the run was trained on the {evaluation[0]} split." if evaluation else
           "the run was not trained on the intent training split (its fingerprint matches none of the course's intent splits).",
           "evaluation data is never trained on: a model that has seen the test (or validation) examples scores well on them "
           "without having learned the task. Train on data['train']." if evaluation else
           "train on data['train'] as it is (same records, same order), with fine_tune's defaults otherwise.")


def _safetensors_bytes(folder) -> int:
    """The bytes of the tensors in a folder's .safetensors files (without their headers)."""
    from safetensors import safe_open

    total = 0
    for path in Path(folder).glob("*.safetensors"):
        with safe_open(path, "pt") as f:
            for key in f.keys():
                tensor = f.get_tensor(key)
                total += tensor.numel() * tensor.element_size()
    return total


def _ex02_adapter_mib_hint(got, model, settings, trainable: int) -> str:
    """The hint for a wrong adapter-size prediction: the tempting formulas, recognised by their value."""
    from ftcourse.models import count_parameters

    wrongs = {"fine_tune computes in bf16 under autocast, but autocast only changes the dtype of the computation: the adapter's "
              "weights stay fp32 (4 bytes each) and are saved so.": 2 * trainable / 2**20,
              "the run folder holds only the adapter (lora_A and lora_B), not the base model's weights.":
              4 * (trainable + count_parameters(model)["total"]) / 2**20,
              "a MiB is 2**20 bytes, not 10**6.": 4 * trainable / 1e6}
    return next((h for h, v in wrongs.items() if isinstance(got, (int, float)) and _close(float(got), v, 0.02)),
                "the adapter's parameters (r · (in + out) per adapted layer, your lora_parameter_count) × 4 bytes (fp32), in MiB.")


@self_check
def check_ex02_task4(result, budget_settings, adapter_mib, model) -> str:
    """``result``: fine_tune(...) of LoRA with ``budget_settings``; ``adapter_mib(model, settings)``: the saved adapter's MiB, predicted."""
    from peft import LoraConfig, get_peft_model

    from ftcourse.configs import LoraSettings
    from ftcourse.models import count_parameters, weightless_copy
    from ftcourse.peft_methods import build_peft_config

    config, losses = _trained_adapter(result, "lora")
    _expect_intent_train(result)
    expect((config["r"], _targets(config)) == (budget_settings.r, _targets(budget_settings)),
           f"the saved adapter has r={config['r']} on {sorted(_targets(config))}, not your budget_settings.", "pass lora=budget_settings.")
    want = _peft_trainable(result.model, "lora", LoraSettings(r=config["r"], target_modules=sorted(_targets(config))))
    expect(result.metrics["trainable_parameters"] == want, f"{result.metrics['trainable_parameters']:,} parameters were trained; the adapter has {want:,}.",
           "train only the adapter.")
    expect(callable(adapter_mib), "`adapter_mib` is not a function.", "define def adapter_mib(model, settings): ...")
    forbid_helpers(adapter_mib, "adapter_mib", {"get_peft_model": get_peft_model, "LoraConfig": LoraConfig, "build_peft_config": build_peft_config,
                                                "count_parameters": count_parameters},
                   "predict the size from the shapes (your lora_parameter_count) and the dtype the adapter is saved in, without building it.")
    measured = _safetensors_bytes(result.run_dir) / 2**20  # the file adds a header of a few KB
    got = call_learner(adapter_mib, weightless_copy(model), budget_settings, name="adapter_mib")
    expect(isinstance(got, (int, float)) and _close(float(got), measured, 1e-6),
           f"you predict {got!r} MiB; the weights in the saved adapter_model.safetensors take {measured:.4f} MiB.",
           _ex02_adapter_mib_hint(got, model, budget_settings, want))
    hidden = LoraSettings(r=3, lora_alpha=6, target_modules=["o_proj", "gate_proj", "up_proj", "down_proj"])
    hidden_want = 4 * _peft_trainable(model, "lora", hidden) / 2**20
    got = call_learner(adapter_mib, weightless_copy(model), hidden, name="adapter_mib")
    expect(isinstance(got, (int, float)) and _close(float(got), hidden_want, 1e-6),
           f"for r=3 on the output and MLP projections you predict {got!r} MiB; that adapter holds {hidden_want:.4f} MiB of weights.",
           _ex02_adapter_mib_hint(got, model, hidden, round(hidden_want * 2**20 / 4)))
    return (f"{result.metrics['steps']} steps, loss {losses[0]:.2f} → {losses[-1]:.2f}; the {want:,}-parameter adapter's weights "
            f"take {measured:.2f} MiB on disk (fp32), as predicted.")


def _probe_logits(model, tokenizer, text: str = "Hi, my order 4417 has not arrived yet. Where is it?"):
    import torch

    device = next(model.parameters()).device
    batch = tokenizer(text, return_tensors="pt").to(device)
    model.eval()
    with torch.no_grad():
        return model(**batch).logits.float().cpu()


def _adapter_state(model) -> dict:
    return {k: v.detach().float().cpu() for k, v in model.state_dict().items() if "lora_" in k}


def ex02_classmate_reload(run_dir):
    """Exercise 02, task 5: a classmate's code that loads a saved adapter for evaluation. Do not fix it here."""
    from peft import LoraConfig, get_peft_model

    from ftcourse.models import load_model

    config = LoraConfig.from_pretrained(str(run_dir))
    return get_peft_model(load_model(config.base_model_name_or_path), config)


def _ex02_other_adapter(run_dir, folder: Path) -> None:
    """Save another adapter in ``folder``: the run's, with every lora_B negated."""
    import shutil

    from safetensors.torch import load_file, save_file

    shutil.copy(Path(run_dir) / "adapter_config.json", folder)
    tensors = {k: -t if "lora_B" in k else t for k, t in load_file(Path(run_dir) / "adapter_model.safetensors").items()}
    save_file(tensors, folder / "adapter_model.safetensors")


@self_check
def check_ex02_task5(load_adapter, result, tokenizer) -> str:
    """``load_adapter(run_dir)``: the adapter saved in ``run_dir`` loaded onto a fresh base model, ready to evaluate."""
    import tempfile

    import torch
    from peft import PeftModel

    from ftcourse.train import load_run

    expect(callable(load_adapter), "`load_adapter` is not a function.", "define def load_adapter(run_dir): ...")
    forbid_helpers(load_adapter, "load_adapter", {"load_run": load_run},
                   "load it with PEFT yourself: the point of this task is which PEFT function reads saved weights.")
    reloaded = call_learner(load_adapter, result.run_dir, name="load_adapter")
    expect(isinstance(reloaded, PeftModel) and reloaded is not result.model,
           "`load_adapter` should return a PeftModel loaded from the run folder (not the trained object itself).",
           "load a fresh base model and put the saved adapter on it.")
    trained, loaded = _adapter_state(result.model), _adapter_state(reloaded)
    expect(set(trained) == set(loaded), "the reloaded adapter has other layers than the trained one.", "load the folder you are given.")
    gap = max(float((trained[k] - loaded[k]).abs().max()) for k in trained)
    fresh = all(not float(v.abs().sum()) for k, v in loaded.items() if "lora_B" in k)
    expect(gap == 0, f"the reloaded adapter's weights differ from the trained ones (by up to {gap:.3f})"
           + ("; every lora_B is zero: a new, untrained adapter." if fresh else "."),
           "get_peft_model(model, config) builds a NEW adapter from a config (lora_B = 0: it changes nothing); the saved weights "
           "are read by PeftModel.from_pretrained(base_model, run_dir)." if fresh else "load the saved weights, unchanged.")
    with_adapter = _probe_logits(reloaded, tokenizer)
    with reloaded.disable_adapter():
        base = _probe_logits(reloaded, tokenizer)
    effect = float((with_adapter - base).abs().max())
    expect(effect > 1e-4 and torch.isfinite(with_adapter).all(), "the reloaded adapter does not change the base model's output.",
           "load the adapter onto the base model and leave it enabled.")
    with tempfile.TemporaryDirectory() as folder:
        _ex02_other_adapter(result.run_dir, Path(folder))
        got = _adapter_state(call_learner(load_adapter, Path(folder), name="load_adapter"))
    expect(set(got) == set(trained) and all(float((got[k] + trained[k]).abs().max()) == 0 for k in trained if "lora_B" in k),
           "on another adapter folder, load_adapter does not return that folder's weights.", "load the folder passed as `run_dir`, not task 4's run.")
    return f"{len(loaded)} adapter tensors reloaded exactly (from another folder too); the adapter moves the base model's logits by up to {effect:.2f}."


#: Exercise 02, task 6: the settings of a LoRA run on the intent data that did not learn.
EX02_BROKEN_LORA = {"r": 8, "lora_alpha": 16, "target_modules": ["lm_head"]}
EX02_BROKEN_TRAINING = {"learning_rate": 2e-5, "max_seq_length": 32}
#: What the learner may name as causes in exercise 02, task 6.
EX02_SETTINGS = ("r", "lora_alpha", "target_modules", "learning_rate", "max_seq_length", "batch_size", "max_steps")
_EX02_CAUSES = {"target_modules", "learning_rate", "max_seq_length"}
_EX02_WHY = {
    "learning_rate": "2e-5 is a full fine-tuning rate (and TRL's SFTConfig default); LoRA's B starts at zero and needs a rate about "
                     "100x higher: this course uses 2e-3 on its 135M model, the QLoRA paper 2e-4/1e-4 on 7B-65B models.",
    "max_seq_length": "32 tokens cut every example before its answer: all labels are -100, nothing is trained (the loss is 0 or NaN).",
    "target_modules": "lm_head is the output layer: LoRA there cannot change how the model reads the message, and the embedded model "
                      "ties it to the input embeddings. Adapt the attention (and MLP) projections inside the blocks.",
}


@self_check
def check_ex02_task6(causes, fixed_lora, fixed_training, model, tokenizer, P) -> str:
    """``causes``: the settings that broke the run; ``fixed_lora``/``fixed_training``: LoraSettings/TrainingSettings that learn."""
    from ftcourse.bundled import intent_records
    from ftcourse.configs import LoraSettings, TrainingSettings
    from ftcourse.models import weightless_copy
    from ftcourse.peft_methods import get_method, linear_layer_names
    from ftcourse.tokenization import tokenize_messages

    expect(isinstance(causes, (set, list, tuple)) and set(causes) <= set(EX02_SETTINGS),
           f"`causes` should be a set of names from EX02_SETTINGS; got {causes!r}.", f"pick from {list(EX02_SETTINGS)}.")
    missed, blamed = _EX02_CAUSES - set(causes), set(causes) - _EX02_CAUSES
    expect(not missed, f"the run has {len(_EX02_CAUSES)} faults; you did not name {sorted(missed)[0]!r}." if missed else "",
           _EX02_WHY[sorted(missed)[0]] if missed else "")
    expect(not blamed, f"{sorted(blamed)[0]!r} is fine in this run." if blamed else "", "change only what breaks it: the other settings are the lesson's defaults.")
    expect(isinstance(fixed_lora, LoraSettings) and isinstance(fixed_training, TrainingSettings),
           "`fixed_lora` must be a LoraSettings and `fixed_training` a TrainingSettings.",
           "fixed_lora = LoraSettings(...); fixed_training = settings_from_profile(P, learning_rate=..., max_seq_length=...).")
    targets = _targets(fixed_lora)
    blocks = {n for n in linear_layer_names(weightless_copy(model)) if n != "lm_head"}
    expect(targets == {"all-linear"} or (targets and targets <= blocks),
           f"fixed_lora targets {sorted(targets)}.", _EX02_WHY["target_modules"] + f" Names here: {sorted(blocks)}.")
    expect((fixed_lora.r, fixed_lora.lora_alpha) == (EX02_BROKEN_LORA["r"], EX02_BROKEN_LORA["lora_alpha"]),
           f"fixed_lora changed r/lora_alpha to {fixed_lora.r}/{fixed_lora.lora_alpha}.", "keep r=8, lora_alpha=16: they were not the problem.")
    rate = get_method("lora").learning_rate if fixed_training.learning_rate is None else fixed_training.learning_rate
    expect(1e-4 <= rate <= 5e-3, f"learning rate {rate:g} is outside the range where LoRA learns in a short run (1e-4 to 5e-3).", _EX02_WHY["learning_rate"])
    longest = max(len(tokenize_messages(tokenizer, r["messages"])["input_ids"]) for r in intent_records(P)["train"])
    expect(fixed_training.max_seq_length >= longest, f"max_seq_length={fixed_training.max_seq_length} still cuts the longest training example "
           f"({longest} tokens) — and with it the answer.", _EX02_WHY["max_seq_length"] + " Measure the longest example (exercise 01, task 5).")
    return f"all three faults named and fixed: LoRA on {sorted(targets)}, learning rate {rate:g}, max_seq_length {fixed_training.max_seq_length} ≥ {longest}."


# ---------------------------------------------------------------- ex04 · QLoRA and memory


_SIZE_CASES = [((1_000_000, 32), 3.814697265625), ((134_515_008, 16), 256.5670166015625), ((7_000_000_000, 4), 3337.860107421875)]
#: The prompt exercise 04 compares full-precision and 4-bit logits on.
EX04_TEXT = "Hello! I ordered a CrispAir air fryer last week and it still has not shipped. Can you check order 73654?"


def _is_4bit(model) -> bool:
    return any(type(m).__name__ == "Linear4bit" for m in model.modules())


@self_check
def check_ex04_task1(weight_megabytes) -> str:
    """``weight_megabytes(n_params, bits)``: MiB that n_params weights of ``bits`` bits take."""
    expect(callable(weight_megabytes), "`weight_megabytes` is not a function.", "define def weight_megabytes(n_params, bits): ...")
    for (n, bits), want in _SIZE_CASES:
        got = weight_megabytes(n, bits)
        expect(isinstance(got, (int, float)) and _close(float(got), want, 1e-9), f"weight_megabytes({n:,}, {bits}) = {got}; want {want:,.2f}.",
               "bytes = parameters × bits / 8, and a MiB is 2**20 = 1,048,576 bytes.")
    return f"right on {len(_SIZE_CASES)} hidden cases (a 7B model in 4 bits: {_SIZE_CASES[-1][1]:,.0f} MiB)."


def _ex04_hidden_4bit_pair():
    """A small Llama with its own (untied) output layer: full precision and loaded in 4-bit NF4 from a temporary folder."""
    import tempfile

    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    from ftcourse.models import load_model

    config = LlamaConfig(vocab_size=512, hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, tie_word_embeddings=False)
    torch.manual_seed(0)
    full = AutoModelForCausalLM.from_config(config)
    with tempfile.TemporaryDirectory() as folder:
        full.save_pretrained(folder)
        return full, load_model(folder, quantization="4bit").get_memory_footprint()


def _ex04_footprint_hint(got, model) -> str:
    """The hint for a wrong 4-bit footprint prediction: the tempting rules, recognised by their value."""
    import torch

    params = {id(p): p for p in model.parameters()}
    linear = {id(m.weight) for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    head = model.get_output_embeddings()
    full = {k: p.numel() * p.element_size() for k, p in params.items()}
    wrongs = {
        "only the linear layers inside the transformer blocks are stored in 4 bits: embeddings and norms keep their dtype "
        "(bitsandbytes replaces nn.Linear modules only).": sum(p.numel() for p in params.values()) / 2,
        "bitsandbytes leaves the output layer (lm_head) in full precision; here it is the input embedding matrix itself (tied).":
            sum(v / 8 if k in linear else v for k, v in full.items()),
        "the parameters that stay unquantized keep their own dtype (fp32 here, element_size() = 4), not 2 bytes.":
            sum(full[k] / 8 if k in linear and k != id(head.weight) else p.numel() * 2 for k, p in params.items()),
    }
    return " ".join(h for h, v in wrongs.items() if isinstance(got, (int, float)) and _close(float(got), v, 0.02)) or (
        "4-bit linear weights take half a byte each (two per byte; their scales are kept outside the parameters); every "
        "other parameter keeps its bytes (p.numel() * p.element_size()), and the output layer is not quantized.")


@self_check
def check_ex04_task2(qmodel, model, predict_4bit_bytes) -> str:
    """``qmodel``: the model loaded in 4-bit NF4 with double quantization; ``model``: the full-precision one;
    ``predict_4bit_bytes(model)``: the 4-bit model's get_memory_footprint(), predicted from the full-precision model."""
    from ftcourse.models import load_model, weightless_copy

    expect(_is_4bit(qmodel), "`qmodel` has no 4-bit linear layers.", "qmodel = load_model(P.model, quantization='4bit').")
    config = getattr(qmodel.config, "quantization_config", None)
    config = config.to_dict() if hasattr(config, "to_dict") else dict(config or {})
    expect(config.get("bnb_4bit_quant_type") == "nf4" and config.get("bnb_4bit_use_double_quant"),
           f"the 4-bit settings are quant_type={config.get('bnb_4bit_quant_type')!r}, double_quant={config.get('bnb_4bit_use_double_quant')}.",
           "QLoRA uses NF4 with double quantization (the course's default QuantizationSettings).")
    expect(not _is_4bit(model), "`model` should be the full-precision model, for comparison.", "model = load_model(P.model).")
    small, full = qmodel.get_memory_footprint(), model.get_memory_footprint()
    expect(small < 0.45 * full, f"the 4-bit model takes {small / 2**20:.0f} MB, {100 * small / full:.0f}% of {full / 2**20:.0f} MB.",
           "load it with quantization='4bit' (8-bit or a cast to bf16 saves less).")
    expect(callable(predict_4bit_bytes), "`predict_4bit_bytes` is not a function.", "define def predict_4bit_bytes(model): ...")
    forbid_helpers(predict_4bit_bytes, "predict_4bit_bytes", {"load_model": load_model, "get_memory_footprint": None, "from_pretrained": None},
                   "predict it from the full-precision model's parameters; loading the 4-bit model is the measurement.")
    hidden, hidden_bytes = _ex04_hidden_4bit_pair()
    for name, shell, want in (("this model", weightless_copy(model), small), ("a hidden model with its own output layer", hidden, hidden_bytes)):
        got = call_learner(predict_4bit_bytes, shell, name="predict_4bit_bytes")
        expect(isinstance(got, (int, float)) and abs(float(got) - want) <= 0.02 * want,
               f"for {name} you predict {got!r} bytes; loaded in 4-bit it takes {want:,} bytes.", _ex04_footprint_hint(got, shell))
    return (f"{small / 2**20:.0f} MB in 4-bit NF4 vs {full / 2**20:.0f} MB ({100 * small / full:.0f}%), as predicted: linear layers at "
            "half a byte per weight, embeddings (tied to the output layer) and norms in fp32.")


@self_check
def check_ex04_task3(logit_gap, top1_agreement, model, qmodel, tokenizer) -> str:
    """``logit_gap``: max |logit difference| between model and qmodel on EX04_TEXT; ``top1_agreement``: share of equal argmax."""
    full, small = _probe_logits(model, tokenizer, EX04_TEXT), _probe_logits(qmodel, tokenizer, EX04_TEXT)
    gap = float((full - small).abs().max())
    agree = float((full.argmax(-1) == small.argmax(-1)).float().mean())
    expect(isinstance(logit_gap, (int, float)) and _close(float(logit_gap), gap, 0.02),
           f"logit_gap is {logit_gap}; the largest |difference| between the two models' logits on EX04_TEXT is {gap:.3f}.",
           "run both models on tokenizer(EX04_TEXT, return_tensors='pt') under torch.no_grad() and take (a - b).abs().max().")
    expect(isinstance(top1_agreement, (int, float)) and abs(float(top1_agreement) - agree) <= 1 / full.shape[1] + 1e-9,
           f"top1_agreement is {top1_agreement}; the models pick the same next token at {agree:.3f} of the positions.",
           "compare logits.argmax(-1) of both models position by position and take the mean of the matches.")
    return f"4-bit moves logits by up to {gap:.2f}; the top-1 next token agrees at {100 * agree:.0f}% of positions."


#: Exercise 04, task 4: what to predict about QLoRA compared with LoRA of the same settings, and the answers to choose from.
EX04_QLORA_QUESTIONS = {
    "trainable_parameters": "the number of trainable parameters",
    "adapter_file": "the bytes of the saved adapter's weights",
    "base_memory": "the memory the frozen base model's weights take",
}
EX04_ANSWERS = ("smaller", "same", "larger")
_EX04_WHY = {
    "trainable_parameters": "QLoRA trains the same LoRA matrices A and B on the same layers; only the frozen base is quantized.",
    "adapter_file": "the adapter is the same shapes, trained and saved in fp32 (4 bytes per parameter) on either base.",
    "base_memory": "the base's linear weights are stored in 4 bits: about half a byte per weight instead of 4 (fp32) bytes.",
}


def _ex04_measured(result) -> dict[str, str]:
    """Each question of EX04_QLORA_QUESTIONS answered from the QLoRA run and the same adapter on the full-precision base."""
    from ftcourse.configs import LoraSettings
    from ftcourse.models import weightless_copy

    config = json.loads((Path(result.run_dir) / "adapter_config.json").read_text())
    lora = _peft_trainable(result.model, "lora", LoraSettings(r=config["r"], lora_alpha=config["lora_alpha"], target_modules=sorted(_targets(config))))
    saved = _safetensors_bytes(result.run_dir)
    base = result.model.get_base_model()
    base_bytes = sum(p.numel() * p.element_size() for n, p in base.named_parameters() if "lora_" not in n)
    full_bytes = sum(p.numel() * p.element_size() for p in weightless_copy(base).parameters())

    def compare(a, b):
        return "same" if a == b else ("smaller" if a < b else "larger")

    return {"trainable_parameters": compare(result.metrics["trainable_parameters"], lora), "adapter_file": compare(saved, 4 * lora),
            "base_memory": compare(base_bytes, full_bytes)}


@self_check
def check_ex04_task4(result, predictions) -> str:
    """``result``: fine_tune(...) with method "qlora" on the intent data; ``predictions``: question -> one of EX04_ANSWERS,
    QLoRA compared with LoRA of the same settings, committed before training."""
    config, losses = _trained_adapter(result, "qlora")
    expect(_is_4bit(result.model), "the trained model's base is not 4-bit.", "method='qlora' loads the base in 4 bits; pass the model name, not a loaded model.")
    _expect_intent_train(result)
    expect(isinstance(predictions, dict) and set(predictions) == set(EX04_QLORA_QUESTIONS),
           f"`predictions` should have the keys {sorted(EX04_QLORA_QUESTIONS)}.", "one answer per question of EX04_QLORA_QUESTIONS.")
    expect(all(v in EX04_ANSWERS for v in predictions.values()), f"the answers are {sorted(set(predictions.values()))}.", f"answer with one of {EX04_ANSWERS}.")
    measured = _ex04_measured(result)
    for key, want in measured.items():
        expect(predictions[key] == want, f"you predicted that QLoRA's {EX04_QLORA_QUESTIONS[key]} is {predictions[key]!r} compared with LoRA; "
               f"the run measures {want!r}.", _EX04_WHY[key])
    footprint = result.model.get_memory_footprint() / 2**20
    return (f"QLoRA r={config['r']}: loss {losses[0]:.2f} → {losses[-1]:.2f}, {result.metrics['trainable_parameters']:,} trainable "
            f"parameters (as LoRA) on a {footprint:.0f} MB 4-bit base; all three predictions measured right.")


#: Bytes per parameter of the model being trained (exercise 04, task 5): full fine-tuning with mixed-precision AdamW
#: (16-bit weights and gradients, fp32 master weights and two Adam states: ZeRO paper), LoRA on a 16-bit frozen base,
#: QLoRA on an NF4 base with double quantization (about 4.127 bits per parameter: QLoRA paper). Adapter states are ignored.
EX04_BYTES_PER_PARAM = {"full": 16.0, "lora": 2.0, "qlora": 4.127 / 8}
EX04_USABLE = 0.8  # the share of GPU memory for weights and optimizer states; the rest for activations and the runtime
_EX04_CASES = [((135e6, 8), "full"), ((1.7e9, 24), "lora"), ((7e9, 24), "lora"), ((7e9, 17), "lora"), ((7e9, 14), "qlora"),
               ((70e9, 80), "qlora"), ((70e9, 24), "none")]


def _ex04_choice(n_params: float, gpu_gib: float) -> str:
    return next((m for m in ("full", "lora", "qlora") if n_params * EX04_BYTES_PER_PARAM[m] <= EX04_USABLE * gpu_gib * 2**30), "none")


@self_check
def check_ex04_task5(choose_method) -> str:
    """``choose_method(n_params, gpu_gib)``: "full", "lora", "qlora" or "none" — the least approximation that fits."""
    expect(callable(choose_method), "`choose_method` is not a function.", "define def choose_method(n_params, gpu_gib): ...")
    for (n, gib), want in _EX04_CASES:
        got = call_learner(choose_method, n, gib, name="choose_method")
        need = {m: n * b / 2**30 for m, b in EX04_BYTES_PER_PARAM.items()}
        hint = ("try each method in order full → lora → qlora and take the first whose weights and optimizer states "
                "(n_params × EX04_BYTES_PER_PARAM[method] bytes) fit in EX04_USABLE × gpu_gib GiB; 'none' if none fits.")
        if got == "full" and want != "full":
            hint = "full fine-tuning needs 16 bytes per parameter (gradients and Adam states too), not just the 2 or 4 of the weights. " + hint
        elif got != want and _ex04_choice(n, gib / EX04_USABLE) == got:
            hint = "keep 20% of the GPU free (EX04_USABLE = 0.8): activations, the CUDA context and fragmentation need it. " + hint
        elif got != want:
            hint = "a GiB is 2**30 bytes (GPU memory is quoted in GiB), not 1e9. " + hint if _ex04_choice(n * 2**30 / 1e9, gib) == got else hint
        expect(got == want, f"choose_method({n:.3g}, {gib}) = {got!r}; want {want!r} (full {need['full']:.1f}, LoRA {need['lora']:.1f}, "
               f"QLoRA {need['qlora']:.1f} GiB vs {EX04_USABLE * gib:.1f} GiB usable).", hint)
    return f"right on {len(_EX04_CASES)} hidden (model, GPU) pairs, from a 135M model on 8 GiB to 70B on 24 GiB."


# ---------------------------------------------------------------- ex05 · prompt methods


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
    want = _peft_trainable(pt_model, "prompt_tuning")
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
        want = _peft_trainable(model, method)
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
    config, losses = _trained_adapter(result, "prompt_tuning", loss_must_drop=False)
    expect(config.get("prompt_tuning_init_text") == EX05_INIT_TEXT, "the run's virtual tokens were not initialised from EX05_INIT_TEXT.",
           "pass prompt_init_text=EX05_INIT_TEXT to fine_tune.")
    _expect_intent_train(result, init_text=EX05_INIT_TEXT)
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


# ---------------------------------------------------------------- ex06 · domain adaptation


def ex06_samples(chars: int = 1200) -> tuple[str, str]:
    """Exercise 06's evaluation texts: the start of the first held-out domain document and of the general text."""
    from ftcourse.bundled import domain_texts

    texts = domain_texts()
    return texts["heldout"][0][:chars], texts["general"][0][:chars]


def _ppl_pair(model, tokenizer) -> dict[str, float]:
    from ftcourse.generation import perplexity

    domain, general = ex06_samples()
    return {"domain": perplexity(model, tokenizer, [domain], progress=False), "general": perplexity(model, tokenizer, [general], progress=False)}


def _expect_ppl(name: str, got, want: dict[str, float]) -> None:
    expect(isinstance(got, dict) and set(got) == {"domain", "general"}, f"`{name}` should be a dict with keys 'domain' and 'general'.",
           "use the keys 'domain' (domain_sample) and 'general' (general_sample).")
    for key in want:
        expect(_close(float(got[key]), want[key], 0.01), f"{name}[{key!r}] is {got[key]:.2f}; the model's perplexity on {key}_sample is {want[key]:.2f}.",
               f"perplexity(model, tokenizer, [{key}_sample]) with the samples given above.")


_PACK_CASES = [([[1, 2, 3], [4, 5], [6, 7, 8, 9]], 4), ([[5] * 10, [6]], 3), ([[1, 2, 3, 4, 5, 6]], 7)]


@self_check
def check_ex06_task1(pack) -> str:
    """``pack(token_lists, block_size, eos_id)``: documents joined with EOS after each, cut into blocks; a last block of < 2 tokens dropped."""
    expect(callable(pack), "`pack` is not a function.", "define def pack(token_lists, block_size, eos_id): ...")
    eos = 0
    for docs, size in _PACK_CASES:
        stream = [t for doc in docs for t in [*doc, eos]]
        want = [stream[i : i + size] for i in range(0, len(stream), size) if len(stream[i : i + size]) > 1]
        got = [list(b) for b in pack([list(d) for d in docs], size, eos)]
        expect(got == want, f"pack({docs}, block_size={size}, eos_id=0) = {got}; want {want}.",
               "append eos_id after every document, concatenate everything into one stream, cut it every block_size tokens, "
               "and drop a final block shorter than 2 tokens (nothing to predict).")
    return f"right on {len(_PACK_CASES)} hidden cases; packing wastes no compute on padding."


#: Exercise 06, task 2: what to predict about the base model's perplexity on the two samples, before measuring it.
EX06_QUESTIONS = {"harder": "which sample the base model finds harder (the higher perplexity): 'domain' or 'general'",
                  "ratio": "the higher perplexity divided by the lower one, as one of EX06_RATIOS"}
EX06_RATIOS = ("under 1.5", "1.5 to 3", "3 to 10", "over 10")


def _ex06_ratio_bin(ratio: float) -> str:
    return EX06_RATIOS[sum(ratio >= edge for edge in (1.5, 3, 10))]


@self_check
def check_ex06_task2(predictions, ppl_before, model, tokenizer) -> str:
    """``predictions``: EX06_QUESTIONS answered before measuring; ``ppl_before``: {"domain": ..., "general": ...} perplexities
    of the base model on ex06_samples()."""
    expect(isinstance(predictions, dict) and set(predictions) == set(EX06_QUESTIONS),
           f"`predictions` should have the keys {sorted(EX06_QUESTIONS)}.", "one answer per question of EX06_QUESTIONS.")
    expect(predictions["harder"] in ("domain", "general") and predictions["ratio"] in EX06_RATIOS,
           f"your answers are {predictions}.", f"'harder' is 'domain' or 'general'; 'ratio' one of {EX06_RATIOS}.")
    want = _ppl_pair(model, tokenizer)
    _expect_ppl("ppl_before", ppl_before, want)
    harder = max(want, key=want.get)
    ratio = max(want.values()) / min(want.values())
    expect(predictions["harder"] == harder, f"you predicted the {predictions['harder']} sample to be harder; the base model's perplexity is "
           f"{want['domain']:.1f} on the domain sample and {want['general']:.1f} on the general one.",
           "the base model learned general English in pre-training, but never saw HubOS: its product names, error codes and menu "
           "paths are token sequences it cannot predict. That gap is what continued pre-training closes.")
    expect(predictions["ratio"] == _ex06_ratio_bin(ratio), f"you predicted a ratio {predictions['ratio']}; it is {ratio:.1f}.",
           "perplexity is exp(mean loss per token), so a ratio of R is a difference of ln R nats per token: a ratio of 2 is already "
           "0.69 nats — every token of the harder text is noticeably less predictable.")
    return f"the base model finds the product docs {want['domain'] / want['general']:.1f}× as surprising as general text, as predicted."


def _norm_words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def _shingles(text: str, n: int) -> set[tuple[str, ...]]:
    words = _norm_words(text)
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def _leaks(texts, heldout, n: int = 13) -> list[int]:
    """Indices of ``texts`` that share a run of ``n`` words (case and punctuation ignored) with a held-out text."""
    held = set().union(*(_shingles(h, n) for h in heldout)) if heldout else set()
    return [i for i, t in enumerate(texts) if _shingles(t, n) & held]


@self_check
def check_ex06_task3(result, train_records) -> str:
    """``result``: LoRA trained, packed, on ``train_records`` ({"text": ...}); none of them from the held-out documents."""
    from ftcourse.bundled import domain_texts

    expect(isinstance(train_records, list) and train_records and all(isinstance(r, dict) and isinstance(r.get("text"), str) for r in train_records),
           "`train_records` should be the list of {'text': ...} records you trained on.",
           "continued pre-training trains on plain text: train_records = [{'text': t} for t in ...].")
    leaked = _leaks([r["text"] for r in train_records], domain_texts()["heldout"])
    expect(not leaked, f"{len(leaked)} of your training records contain held-out text: the perplexity you measure next would reward memorising it.",
           "train on texts['train'] only: the held-out documents exist to measure what the model learned about the domain, "
           "and a model that has seen them looks better than it is.")
    _trained_adapter(result, "lora", loss_must_drop=False)
    if not _trained_on(result, train_records, packing=True):
        expect(not _trained_on(result, train_records), "the run was trained on these records without packing: short documents were padded.",
               "pass packing=True to fine_tune: documents are joined (EOS between them) and cut into full blocks, no padding.")
        expect(False, "`result` was not trained on `train_records` (its run fingerprint does not match them).",
               "pass the same list to fine_tune and to the check; do not change it in between.")
    metrics = result.metrics
    share = metrics["trained_tokens"] / max(metrics["input_tokens"], 1)
    expect(share > 0.9, f"only {metrics['trained_tokens']:,} of {metrics['input_tokens']:,} input tokens were trained.",
           "continued pre-training trains every token: pass records {'text': ...}, not chat messages.")
    return (f"{metrics['steps']} steps over {metrics['input_tokens']:,} tokens, packed, {100 * share:.0f}% of them trained; "
            "no held-out text in the training data.")


@self_check
def check_ex06_task4(ppl_before, ppl_after, forgetting, result, tokenizer) -> str:
    """``ppl_after``: the trained model's perplexities on ex06_samples(); ``forgetting``: general after / before."""
    want = _ppl_pair(result.model, tokenizer)
    _expect_ppl("ppl_after", ppl_after, want)
    expect(want["domain"] < ppl_before["domain"], f"domain perplexity did not drop ({ppl_before['domain']:.2f} → {want['domain']:.2f}).",
           "train on the domain corpus (task 3) and evaluate result.model.")
    expect(isinstance(forgetting, (int, float)) and _close(float(forgetting), want["general"] / ppl_before["general"], 1e-3),
           f"forgetting is {forgetting}; general perplexity after / before is {want['general'] / ppl_before['general']:.3f}.",
           "forgetting = ppl_after['general'] / ppl_before['general'] (above 1: general text got harder).")
    return (f"domain perplexity {ppl_before['domain']:.1f} → {want['domain']:.1f}; general {ppl_before['general']:.1f} → "
            f"{want['general']:.1f} (×{forgetting:.3f}).")


#: Exercise 06, task 5: a shared run of this many words counts as leaked text (GPT-3's contamination analysis used 13-grams).
EX06_SHINGLE = 13
_EX06_HELD = ["The HubOS bridge restarts itself at 3 a.m. every Sunday to apply updates, and your automations resume within a minute.",
              "To pair a new sensor, hold its button for five seconds until the light blinks blue, then choose Add device in the app."]
_EX06_TRAIN = [
    "Lights can be grouped into rooms; a room can be switched on and off as one.",  # clean
    "FAQ: TO PAIR A NEW SENSOR, HOLD ITS BUTTON FOR FIVE SECONDS UNTIL THE LIGHT BLINKS BLUE, THEN CHOOSE ADD DEVICE IN THE APP!",  # case
    "Release notes. The HubOS bridge restarts itself at 3 a.m. every Sunday to apply updates. Other fixes: faster start-up.",  # a sentence
    "Every Sunday the bridge checks for updates, and it may restart.",  # similar words, no shared run of 8: clean
    _EX06_HELD[0],  # an exact copy
    "Hold the button to reset a sensor; the light blinks red while it resets.",  # clean
]


@self_check
def check_ex06_task5(remove_leaks) -> str:
    """``remove_leaks(train_texts, heldout_texts, n=EX06_SHINGLE)``: the training texts sharing no run of n words with a held-out text."""
    expect(callable(remove_leaks), "`remove_leaks` is not a function.", "define def remove_leaks(train_texts, heldout_texts, n=13): ...")
    leaks = set(_leaks(_EX06_TRAIN, _EX06_HELD, EX06_SHINGLE))
    want = [t for i, t in enumerate(_EX06_TRAIN) if i not in leaks]
    got = call_learner(remove_leaks, list(_EX06_TRAIN), list(_EX06_HELD), n=EX06_SHINGLE, name="remove_leaks")
    expect(isinstance(got, list), f"`remove_leaks` returns a {type(got).__name__}, not a list of texts.", "return the training texts you keep, in order.")
    kept_leaks = [t for t in got if t in _EX06_TRAIN and _EX06_TRAIN.index(t) in leaks]
    if kept_leaks:
        hint = ("an exact-match test misses leaks: held-out text is often copied with other case or punctuation, or as one sentence "
                "inside a longer document. Compare runs of n words, lower-cased, punctuation dropped (re.findall(r'\\w+', text.lower())).")
        expect(False, f"you keep a training text that contains held-out text: {kept_leaks[0][:60]!r}…", hint)
    dropped = [t for t in want if t not in got]
    expect(not dropped, f"you drop a clean training text: {dropped[0][:60]!r}…" if dropped else "",
           "sharing a few words is not a leak (every text about one product does): drop a text only when it shares a run of n words.")
    expect(got == want, "your result has the right texts but in another order, or extra ones.", "keep the clean training texts in their order.")
    return f"removes the {len(leaks)} leaked texts of a hidden corpus (an exact copy, a changed-case copy, one copied sentence) and keeps the clean ones."


# ---------------------------------------------------------------- ex07 · merging


def _relative_gap(a, b) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-6))


def _adapter_logits(adapter_dir, tokenizer):
    from ftcourse.models import load_model

    return _probe_logits(load_model(str(adapter_dir)), tokenizer)


#: Exercise 07, task 1: what may have made the classmate's merged model answer differently from their adapter.
EX07_CAUSES = {
    "4bit_base": "the adapter was merged into a 4-bit copy of the base model, to save memory",
    "scale": "the merge multiplied B A by alpha instead of alpha / r",
    "dropout": "LoRA's dropout was active during the merge",
    "tokenizer": "the merged model was evaluated with another tokenizer",
}


def ex07_classmate_merge(adapter_dir):
    """Exercise 07, task 1: a classmate's merge of the adapter saved in ``adapter_dir`` (base loaded in 4 bits to save
    memory). Do not fix it here."""
    from peft import PeftModel

    from ftcourse.models import load_model

    base_name = json.loads((Path(adapter_dir) / "adapter_config.json").read_text())["base_model_name_or_path"]
    return PeftModel.from_pretrained(load_model(base_name, quantization="4bit"), str(adapter_dir)).merge_and_unload()


@self_check
def check_ex07_task1(causes, merged, adapter_dir, tokenizer) -> str:
    """``causes``: names from EX07_CAUSES; ``merged``: the adapter of ``adapter_dir`` merged into the weights (a plain model again)."""
    from peft import PeftModel

    expect(isinstance(causes, (set, list, tuple)) and set(causes) <= set(EX07_CAUSES), f"`causes` should be a set of names from EX07_CAUSES; got {causes!r}.",
           f"pick from {sorted(EX07_CAUSES)}.")
    why = ("merge_and_unload into a 4-bit layer dequantizes the weight, adds (alpha / r) · B A and rounds the sum to NF4 again: the "
           "merged model answers like a 4-bit model, not like the adapter model it came from (peft#2105). Merge into the full-precision base.")
    expect("4bit_base" in causes, "you did not name what changed the merged model's answers.", why)
    expect(set(causes) == {"4bit_base"}, f"{sorted(set(causes) - {'4bit_base'})} did not happen here.",
           "PEFT's merge uses alpha / r and no dropout, and the tokenizer was the same: only the base the adapter was merged into changed.")
    expect(not _is_4bit(merged), "`merged` has 4-bit layers: it was merged into the quantized base.", why)
    expect(not isinstance(merged, PeftModel) and not any("lora_" in n for n, _ in merged.named_modules()),
           "`merged` still has LoRA layers.", "merge_and_unload() returns the plain model with the update folded in.")
    gap = _relative_gap(_probe_logits(merged, tokenizer), _adapter_logits(adapter_dir, tokenizer))
    expect(gap < 1e-4, f"the merged model's logits differ from the adapter model's by {gap:.1e} (relative).",
           "merge the adapter that was saved in adapter_dir into the full-precision base, and do not change the weights afterwards.")
    return f"merged into the full-precision base: no LoRA layers left, and the logits match the adapter model (relative gap {gap:.1e})."


def _ex07_hidden_saved() -> tuple[object, int]:
    """A small Llama with an untied output layer, and the tensor bytes save_pretrained writes for it."""
    import tempfile

    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False))
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        return model, _safetensors_bytes(folder)


def _ex07_bytes_hint(got, model) -> str:
    params = list(model.parameters())
    wrongs = {"tied weights are stored once: here the output layer IS the embedding matrix. model.parameters() lists it once; "
              "state_dict() lists it under both names.": sum(t.numel() * t.element_size() for t in model.state_dict().values()),
              "the weights are saved in their own dtype (p.element_size(): 4 bytes for fp32 here), not in 16 bits.": sum(p.numel() * 2 for p in params),
              "the task asks for bytes, not MiB.": sum(p.numel() * p.element_size() for p in params) / 2**20}
    return next((h for h, v in wrongs.items() if isinstance(got, (int, float)) and _close(float(got), v, 1e-6)),
                "each parameter tensor once (model.parameters()), numel() × element_size() bytes.")


@self_check
def check_ex07_task2(merged_dir, reloaded, adapter_dir, tokenizer, predict_weight_bytes, merged) -> str:
    """``merged_dir``: the merged model saved as a plain model folder; ``reloaded``: it loaded back with load_model;
    ``predict_weight_bytes(model)``: the bytes of the tensors save_pretrained writes for ``model``, predicted before saving."""
    from peft import PeftModel

    folder = Path(merged_dir)
    files = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
    expect("config.json" in files and any(f.endswith(".safetensors") for f in files),
           f"{folder} is not a model folder (found {sorted(files)}).", "merged.save_pretrained(merged_dir) and tokenizer.save_pretrained(merged_dir).")
    expect("adapter_config.json" not in files, f"{folder} holds an adapter, not a merged model.", "save the merged model, not lora_model.")
    expect(not isinstance(reloaded, PeftModel), "`reloaded` is a PeftModel.", "reloaded = load_model(str(merged_dir)).")
    gap = _relative_gap(_probe_logits(reloaded, tokenizer), _adapter_logits(adapter_dir, tokenizer))
    expect(gap < 1e-4, f"the reloaded model's logits differ from the adapter model's by {gap:.1e} (relative).",
           "save the merged model in full precision and load that folder.")
    expect(callable(predict_weight_bytes), "`predict_weight_bytes` is not a function.", "define def predict_weight_bytes(model): ...")
    forbid_helpers(predict_weight_bytes, "predict_weight_bytes", {"save_pretrained": None, "save_file": None, "save_model": None},
                   "predict it from the model's parameters; saving the model is the measurement.")
    hidden, hidden_bytes = _ex07_hidden_saved()
    for name, model, want in (("your merged model", merged, _safetensors_bytes(folder)), ("a hidden model with its own output layer", hidden, hidden_bytes)):
        got = call_learner(predict_weight_bytes, model, name="predict_weight_bytes")
        expect(isinstance(got, (int, float)) and _close(float(got), want, 1e-6),
               f"for {name} you predict {got!r} bytes; save_pretrained writes {want:,} bytes of tensors.", _ex07_bytes_hint(got, model))
    return f"{folder.name}/ loads as a plain model that reproduces the adapter model (relative gap {gap:.1e}); its tensor bytes were predicted exactly."


def _folder_mb(folder) -> float:
    from pathlib import Path

    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file()) / 2**20


@self_check
def check_ex07_task3(adapter_mb, merged_mb, adapter_dir, merged_dir) -> str:
    """``adapter_mb``, ``merged_mb``: total size in MiB of the files in each folder."""
    for name, got, folder in (("adapter_mb", adapter_mb, adapter_dir), ("merged_mb", merged_mb, merged_dir)):
        want = _folder_mb(folder)
        expect(isinstance(got, (int, float)) and _close(float(got), want, 0.01), f"{name} is {got}; the files in {folder} take {want:.2f} MiB.",
               "sum p.stat().st_size over the files of the folder (Path(folder).rglob('*')) and divide by 2**20.")
    return f"the adapter takes {adapter_mb:.1f} MiB, the merged model {merged_mb:.0f} MiB ({merged_mb / adapter_mb:.0f}× more)."


@self_check
def check_ex07_task4(merge_weight) -> str:
    """``merge_weight(weight, lora_A, lora_B, alpha, r)``: the weight with the LoRA update folded in."""
    import torch
    from peft import LoraConfig, inject_adapter_in_model

    expect(callable(merge_weight), "`merge_weight` is not a function.", "define def merge_weight(weight, lora_A, lora_B, alpha, r): ...")
    forbid_helpers(merge_weight, "merge_weight", {"get_delta_weight": None, "merge_and_unload": None, "merge": None},
                   "write the formula with the tensors you are given: W + (alpha / r) · B @ A.")
    for r, alpha, shape in ((4, 8, (24, 40)), (2, 16, (40, 12))):
        torch.manual_seed(r)
        module = torch.nn.Sequential()
        module.add_module("proj", torch.nn.Linear(shape[1], shape[0], bias=False))
        layer = inject_adapter_in_model(LoraConfig(r=r, lora_alpha=alpha, target_modules=["proj"], init_lora_weights=False), module).proj
        weight, a, b = layer.base_layer.weight.detach(), layer.lora_A["default"].weight.detach(), layer.lora_B["default"].weight.detach()
        want = weight + layer.get_delta_weight("default").detach()
        got = call_learner(merge_weight, weight.clone(), a.clone(), b.clone(), alpha, r, name="merge_weight")
        expect(isinstance(got, torch.Tensor) and got.shape == want.shape, f"for a {tuple(shape)} layer you return shape {getattr(got, 'shape', None)}.",
               "B @ A has the weight's shape (out_features, in_features).")
        expect(torch.allclose(got, want, atol=1e-5), f"for r={r}, alpha={alpha} your merged weight differs from PEFT's by {float((got - want).abs().max()):.3f}.",
               "W + (alpha / r) * B @ A — B is (out, r), A is (r, in)." + (" You used alpha * r or alpha alone: the scale is alpha / r."
               if any(torch.allclose(got, weight + f * (b @ a), atol=1e-5) for f in (alpha * r, alpha, 1.0)) else ""))
    return "matches PEFT's merge on 2 hidden layers: W' = W + (alpha / r) · B A."


#: Exercise 07, task 5: how a colleague's inference code built its prompts (the adapter was trained on the chat template).
def ex07_broken_prompt_ids(tokenizer, message: str) -> list[int]:
    """The prompt of the colleague's inference code: plain text, no chat template. Do not fix it here."""
    from ftcourse.data import INTENT_LABELS, classification_instruction

    return tokenizer(f"{classification_instruction(INTENT_LABELS)}\n\nMessage: {message}\nIntent:")["input_ids"]


_EX07_MESSAGES = ["My blender arrived with a cracked jug.", "How do I change the email on my account?", "Where is order 9912?"]


@self_check
def check_ex07_task5(inference_ids, tokenizer) -> str:
    """``inference_ids(tokenizer, message)``: the prompt ids the intent adapter saw in training, for a new message."""
    from ftcourse.data import INTENT_LABELS, to_messages
    from ftcourse.generation import encode_prompt
    from ftcourse.tokenization import prompt_ids, tokenize_messages

    expect(callable(inference_ids), "`inference_ids` is not a function.", "define def inference_ids(tokenizer, message): ...")
    forbid_helpers(inference_ids, "inference_ids", {"prompt_ids": prompt_ids, "encode_prompt": encode_prompt, "tokenize_messages": tokenize_messages},
                   "build it with tokenizer.apply_chat_template yourself: the point is to see what training used.")
    for message in _EX07_MESSAGES:
        want = prompt_ids(tokenizer, to_messages({"text": message, "label": INTENT_LABELS[0]}, "classification", INTENT_LABELS)[:-1])
        got = call_learner(inference_ids, tokenizer, message, name="inference_ids")
        got = list(got["input_ids"] if isinstance(got, dict) else got)
        text, target = tokenizer.decode(got), tokenizer.decode(want)
        if "<|im_start|>" not in text:
            hint = "the adapter was trained on the chat template: build the prompt with tokenizer.apply_chat_template, not plain text."
        elif "SmolLM" in text and "SmolLM" not in target:
            hint = ("without a system message the template inserts its default one ('You are a helpful AI assistant named SmolLM…'); "
                    "training used the classification instruction as the system message (classification_instruction(INTENT_LABELS)).")
        elif target.startswith(text):
            hint = "the prompt stops before the assistant's turn: pass add_generation_prompt=True so the model answers instead of continuing the user."
        else:
            hint = "use the same messages as training: system = classification_instruction(INTENT_LABELS), user = the message, add_generation_prompt=True."
        expect(got == want, f"for {message!r} your prompt differs from the training prompt ({len(got)} vs {len(want)} tokens).", hint)
    return f"the inference prompt equals the training prompt on {len(_EX07_MESSAGES)} hidden messages."


# ================================================================ ex08 · experiments (lesson 08) — start
# Parameter validation by hand, the t interval of a mean over seeds, how many seeds a comparison needs, choosing a
# setting from a seed table, and a sweep that silently ran one setting.

def _ex08_spec(*rows: tuple[str, str, str, str]) -> dict[str, dict[str, str]]:
    """A spec as ftcourse.notebooks.parameters_of returns it, from (name, default's source, type, help) rows."""
    return {name: {"default": default, "type": kind, "help": text} for name, default, kind, text in rows}


#: The parameters of notebooks/experiments/lora_experiment.ipynb as ftcourse.notebooks.parameters_of reads them (task 1).
EX08_SPEC = _ex08_spec(
    ("profile", '"auto"', "str", "smoke | cpu | gpu | auto (gpu when CUDA is present, else cpu)"),
    ("model_name", "None", "any", 'None: the profile\'s model ("embedded" offline); or any Hub id / local folder'),
    ("peft_method", '"lora"', "str", "any method of ftcourse.peft_methods: lora, dora, rslora, qlora, ia3, prompt_tuning, ..."),
    ("lora_r", "16", "int", "LoRA rank"),
    ("learning_rate", "None", "any", "None: the method's default"),
    ("max_steps", "None", "any", "None: the profile's"),
    ("seed", "42", "int", ""),
)
_EX08_OTHER_SPEC = _ex08_spec(("profile", '"smoke"', "str", ""), ("learning_rate", "0.001", "float", ""), ("use_bf16", "False", "bool", ""),
                              ("target_modules", '["q_proj", "v_proj"]', "list", ""), ("epochs", "3", "int", ""))
_EX08_ANY_VALUE = "a parameter whose default is None has type 'any': every value is fine."
#: Task 1's hidden cases: (spec, params, number of problems, a name one problem must mention, the rule the case tests).
_EX08_PARAM_CASES = [
    (EX08_SPEC, {"peft_method": "dora", "lora_r": 8}, 0, None, "known names with values of their default's type are fine."),
    (EX08_SPEC, {"lora_rank": 8}, 1, "lora_r", "a name the notebook does not have is a problem: papermill would only warn and train the default."),
    (EX08_SPEC, {"lora_r": "8"}, 1, None, "compare the value's type with spec[name]['type']: '8' is a str, not an int."),
    (EX08_SPEC, {"lora_r": True}, 1, None,
     "True is not a rank: bool is a subclass of int in Python (isinstance(True, int) is True), so reject a bool unless the type is 'bool'."),
    (EX08_SPEC, {"learning_rate": 3e-4, "max_steps": 10, "model_name": "HuggingFaceTB/SmolLM2-135M"}, 0, None, _EX08_ANY_VALUE),
    (EX08_SPEC, {"lora_rank": 8, "seed": "1", "lora_r": 4}, 2, "lora_r", "report every problem, not only the first one."),
    (_EX08_OTHER_SPEC, {"learning_rate": 1, "use_bf16": True, "target_modules": ["q_proj"], "epochs": 2}, 0, None,
     "an int is a fine float (1 == 1.0): accept an int where the type is 'float'; read the types from `spec`, not from a list of names."),
    (_EX08_OTHER_SPEC, {"learning_rate": "1e-3"}, 1, None, "'1e-3' is a str: a float parameter needs a number."),
    (_EX08_OTHER_SPEC, {"use_bf16": 1}, 1, None, "1 is an int, not a bool: a 'bool' parameter needs True or False."),
    (_EX08_OTHER_SPEC, {"epochs": 2.5}, 1, None, "2.5 is a float, not an int."),
    (_EX08_OTHER_SPEC, {"target_modules": "q_proj"}, 1, None, "a 'list' parameter needs a list, not a str."),
    (_EX08_OTHER_SPEC, {"lerning_rate": 1e-3}, 1, "learning_rate", "check the names against the given `spec` (here another notebook's)."),
]


@self_check
def check_ex08_task1(parameter_problems) -> str:
    """``parameter_problems(params, spec)``: one message per unknown name or wrong-typed value; [] when all is fine."""
    from ftcourse.notebooks import validate_parameters

    expect(callable(parameter_problems), "`parameter_problems` is not a function.", "define def parameter_problems(params, spec): ...")
    forbid_helpers(parameter_problems, "parameter_problems", {"validate_parameters": validate_parameters},
                   "write the checks yourself from `spec` (names and types): that is the exercise.")
    for spec, params, count, names, rule in _EX08_PARAM_CASES:
        got = call_learner(parameter_problems, dict(params), {k: dict(v) for k, v in spec.items()}, name="parameter_problems")
        expect(isinstance(got, list) and all(isinstance(p, str) for p in got), f"parameter_problems returns {got!r:.80}, not a list of messages.",
               "return a list of strings, one per problem ([] when every parameter is fine).")
        expect(len(got) == count, f"parameter_problems({params}) finds {len(got)} problem(s); there {'is' if count == 1 else 'are'} {count}.", rule)
        expect(names is None or any(re.search(rf"\b{names}\b", p) for p in got), f"for {params} no message names {names!r}, the parameter that was meant.",
               "name the closest parameter of `spec` in the message: difflib.get_close_matches(name, list(spec), n=1).")
    return f"right on {len(_EX08_PARAM_CASES)} hidden cases: typos (with a suggestion), wrong types, bools posing as ints, ints as floats."


#: Two-sided 95% quantiles of Student's t: degrees of freedom -> t (beyond 30 degrees of freedom use 1.96).
EX08_T95 = dict(enumerate(_T95, start=1))


def _t95(df: int) -> float:
    return EX08_T95.get(df, 1.96)


def _ex08_interval(values, quantile: float, ddof: int = 1, root: bool = True) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - ddof))
    half = quantile * std / (math.sqrt(n) if root else n)
    return mean - half, mean + half


_EX08_CI_CASES = ([0.70, 0.74, 0.72], [0.61, 0.65], [0.80, 0.82, 0.79, 0.85, 0.81], [0.5 + 0.01 * (i % 5) for i in range(12)])


@self_check
def check_ex08_task2(mean_ci) -> str:
    """``mean_ci(values)``: the 95% confidence interval (low, high) of the mean of repeated runs (Student's t, n - 1 df)."""
    from ftcourse.metrics import mean_interval

    expect(callable(mean_ci), "`mean_ci` is not a function.", "define def mean_ci(values): ... returning (low, high).")
    forbid_helpers(mean_ci, "mean_ci", {"mean_interval": mean_interval}, "compute the mean, the sample standard deviation and t yourself.")
    for values in _EX08_CI_CASES:
        n = len(values)
        want = _ex08_interval(values, _t95(n - 1))
        got = call_learner(mean_ci, list(values), name="mean_ci")
        expect(isinstance(got, (tuple, list)) and len(got) == 2, f"mean_ci returns {got!r:.80}, not (low, high).", "return a tuple (low, high).")
        got = (float(got[0]), float(got[1]))
        if all(abs(a - b) < 1e-9 for a, b in zip(got, want)):
            continue
        wrongs = {"z": _ex08_interval(values, 1.96), "population": _ex08_interval(values, _t95(n - 1), ddof=0),
                  "df": _ex08_interval(values, _t95(n)), "n": _ex08_interval(values, _t95(n - 1), root=False)}
        which = next((k for k, v in wrongs.items() if all(abs(a - b) < 1e-9 for a, b in zip(got, v))), None)
        hint = {"z": f"1.96 is the normal distribution's quantile; with {n} runs the mean's spread is estimated from the runs themselves, "
                     f"so use Student's t with n - 1 = {n - 1} degrees of freedom: EX08_T95[{n - 1}] = {_t95(n - 1)}.",
                "population": "use the sample standard deviation (divide the squared deviations by n - 1, not n): the mean was estimated from the same runs.",
                "df": f"Student's t has n - 1 degrees of freedom: EX08_T95[{n - 1}], not EX08_T95[{n}].",
                "n": "the standard error of a mean is s / sqrt(n), not s / n.",
                None: "mean ± t · s / sqrt(n), with s the sample standard deviation (n - 1) and t = EX08_T95[n - 1]."}[which]
        expect(False, f"mean_ci({values}) = ({got[0]:.4f}, {got[1]:.4f}); want ({want[0]:.4f}, {want[1]:.4f}).", hint)
    return f"equals the t interval on {len(_EX08_CI_CASES)} hidden cases (2 to 12 runs): with 3 seeds t = {_t95(2)}, not 1.96."


def _ex08_seeds(std: float, half_width: float, quantile=lambda n: _t95(n - 1)) -> int:
    n = 2
    while quantile(n) * std / math.sqrt(n) > half_width:
        n += 1
    return n


_EX08_SEED_CASES = ((0.02, 0.02), (0.01, 0.02), (0.015, 0.01), (0.05, 0.015), (0.001, 0.02))


@self_check
def check_ex08_task3(seeds_needed) -> str:
    """``seeds_needed(std, half_width)``: the fewest runs (at least 2) whose 95% t interval is at most ± half_width."""
    expect(callable(seeds_needed), "`seeds_needed` is not a function.", "define def seeds_needed(std, half_width): ...")
    for std, half in _EX08_SEED_CASES:
        want = _ex08_seeds(std, half)
        got = call_learner(seeds_needed, std, half, name="seeds_needed")
        if got == want:
            continue
        if got == max(2, math.ceil((1.96 * std / half) ** 2)) or got == _ex08_seeds(std, half, lambda n: 1.96):
            hint = ("that is the normal approximation n = (1.96 · s / h)². With few runs the interval uses t with n - 1 degrees of "
                    "freedom, which is much larger than 1.96 (4.30 for 3 runs): try n = 2, 3, … until EX08_T95[n - 1] · s / sqrt(n) <= h.")
        elif got == _ex08_seeds(std, half, lambda n: _t95(n)):
            hint = "n runs give n - 1 degrees of freedom: use EX08_T95[n - 1]."
        elif isinstance(got, int) and got < 2:
            hint = "one run has no spread to estimate: at least 2."
        else:
            hint = "try n = 2, 3, … and return the first n with EX08_T95[n - 1] · std / sqrt(n) <= half_width (1.96 beyond 30 df)."
        expect(False, f"seeds_needed(std={std}, half_width={half}) = {got!r}; the fewest runs is {want}.", hint)
    return (f"right on {len(_EX08_SEED_CASES)} hidden cases: seeds with a spread of 0.02 pin the mean to ±0.02 with "
            f"{_ex08_seeds(0.02, 0.02)} runs, not the {math.ceil(1.96 ** 2)} the normal approximation promises.")


def _ex08_table(settings: dict[str, tuple[list[float], list[float]]]) -> list[dict]:
    """Rows {setting, seed, validation, test} from setting -> (validation accuracies, test accuracies) by seed 1, 2, …"""
    return [{"setting": name, "seed": seed, "validation": v, "test": t}
            for name, (val, test) in settings.items() for seed, (v, t) in enumerate(zip(val, test), start=1)]


#: Task 4's table: validation and test accuracy of three settings trained with seeds 1-3.
EX08_SEED_TABLE = _ex08_table({
    "lora r=4": ([0.800, 0.815, 0.790], [0.805, 0.830, 0.800]),
    "lora r=16": ([0.830, 0.845, 0.815], [0.815, 0.820, 0.805]),
    "dora r=16": ([0.825, 0.850, 0.805], [0.840, 0.855, 0.830]),
})
#: Tables of task 4 besides EX08_SEED_TABLE, each with a trap: the best on test is another setting; one lucky seed; 3 seeds
#: where 1.96 would call the lead shown; settings whose separate intervals overlap while every seed favours one; three settings.
_EX08_HIDDEN_TABLES = [
    _ex08_table({"A": ([0.80, 0.81, 0.79, 0.80], [0.88, 0.87, 0.89, 0.88]), "B": ([0.84, 0.85, 0.83, 0.86], [0.82, 0.81, 0.83, 0.82])}),
    _ex08_table({"A": ([0.95, 0.70, 0.72], [0.90, 0.70, 0.71]), "B": ([0.83, 0.84, 0.82], [0.82, 0.83, 0.82])}),
    _ex08_table({"A": ([0.80, 0.78, 0.82], [0.80, 0.79, 0.81]), "B": ([0.81, 0.81, 0.84], [0.81, 0.80, 0.83])}),
    _ex08_table({"A": ([0.70, 0.80, 0.75, 0.85, 0.72], [0.70, 0.80, 0.75, 0.85, 0.72]),
                 "B": ([0.73, 0.84, 0.78, 0.90, 0.76], [0.73, 0.84, 0.78, 0.90, 0.76])}),
    _ex08_table({"A": ([0.80, 0.82, 0.81], [0.80, 0.82, 0.81]), "B": ([0.85, 0.86, 0.84], [0.85, 0.86, 0.84]),
                 "C": ([0.84, 0.86, 0.83], [0.84, 0.86, 0.83])}),
]
#: What a wrong answer did (the rule that reproduces it) -> the hint.
_EX08_CHOICE_HINTS = {
    "test": "choose on validation accuracy; the test split is for reporting the chosen setting once (choosing on it overstates its result).",
    "max": "compare the mean over seeds: the best single run is partly luck (a lucky seed).",
    "z": "with n seeds the interval of the mean difference uses t with n - 1 degrees of freedom (4.30 for 3 seeds), not 1.96: your mean_ci of task 2.",
    "worst": "the question is whether the best setting beats the runner-up (the second-best mean), not the worst one.",
    "unpaired": "the settings were trained with the same seeds: pair the runs by seed and take the interval of the differences. "
                "Two separate intervals that overlap do not show that there is no difference.",
}


def _ex08_choice(rows: list[dict], key: str = "validation", pick=None, quantile=None, paired: bool = True, against: int = 1) -> tuple[str, bool]:
    """The setting with the best mean ``key`` accuracy, and whether its paired 95% t interval over the runner-up excludes 0.

    The other arguments give the tempting wrong rules: ``pick`` scores a setting's runs (default: their mean), ``quantile``
    replaces t, ``paired=False`` compares the two settings' separate intervals, ``against=-1`` compares with the worst setting.
    """
    by: dict[str, dict] = {}
    for row in rows:
        by.setdefault(row["setting"], {})[row["seed"]] = row[key]
    score = {name: (pick or (lambda runs: sum(runs) / len(runs)))(list(runs.values())) for name, runs in by.items()}
    ranked = sorted(score, key=score.get, reverse=True)
    best, other = ranked[0], ranked[against]

    def ci(values):
        return _ex08_interval(values, _t95(len(values) - 1) if quantile is None else quantile)

    if not paired:
        return best, ci(list(by[best].values()))[0] > ci(list(by[other].values()))[1]
    return best, ci([by[best][seed] - by[other][seed] for seed in by[best] if seed in by[other]])[0] > 0


@self_check
def check_ex08_task4(choose_setting) -> str:
    """``choose_setting(rows)`` -> (the setting with the best mean validation accuracy, whether its lead over the runner-up is shown)."""
    expect(callable(choose_setting), "`choose_setting` is not a function.", "define def choose_setting(rows): ... returning (setting, shown).")
    for rows in (EX08_SEED_TABLE, *_EX08_HIDDEN_TABLES):
        want = _ex08_choice(rows)
        got = call_learner(choose_setting, [dict(r) for r in rows], name="choose_setting")
        expect(isinstance(got, (tuple, list)) and len(got) == 2 and isinstance(got[1], bool),
               f"choose_setting returns {got!r:.80}.", "return (setting, shown) with shown True or False.")
        setting, shown = got
        where = "on the table above" if rows is EX08_SEED_TABLE else "on a hidden table"
        rules = {"test": _ex08_choice(rows, key="test")[0], "max": _ex08_choice(rows, pick=max)[0]}
        traps = " ".join(_EX08_CHOICE_HINTS[k] for k, v in rules.items() if v == setting != want[0])
        expect(setting == want[0], f"{where} you choose {setting!r}; the best mean validation accuracy is {want[0]!r}'s.",
               traps or "average each setting's validation accuracy over its seeds and take the highest mean.")
        rules = {"z": _ex08_choice(rows, quantile=1.96)[1], "worst": _ex08_choice(rows, against=-1)[1], "unpaired": _ex08_choice(rows, paired=False)[1]}
        traps = " ".join(_EX08_CHOICE_HINTS[k] for k, v in rules.items() if v == shown != want[1])
        expect(shown == want[1], f"{where} you say the lead of {want[0]!r} is {'' if shown else 'not '}shown; the paired 95% t interval "
               f"of its differences to the runner-up {'excludes' if want[1] else 'contains'} 0.",
               traps or "differences per seed (best − runner-up, same seed), then your mean_ci: shown when the low end is above 0.")
    best, shown = _ex08_choice(EX08_SEED_TABLE)
    return (f"right on {1 + len(_EX08_HIDDEN_TABLES)} tables; here {best} has the best validation mean, and its lead is "
            f"{'' if shown else 'not '}shown.")


#: Exercise 08, task 5: what may have broken the classmate's sweep.
EX08_CAUSES = {
    "unknown_parameter": "the sweep passed a parameter name the notebook does not have",
    "derived_parameter": "the parameters cell computes a value from another parameter",
    "same_seed": "every point used the same seed",
    "skipped_points": "the sweep skipped points that had already run",
    "kernel": "the points ran in the wrong Jupyter kernel",
}
_EX08_FAULTS = {"unknown_parameter", "derived_parameter"}
_EX08_WHY = {
    "unknown_parameter": "papermill only warns about a parameter the notebook does not have (`rank` here; the notebook's is `lora_r`) and "
                         "runs the defaults: every row is the same point. run_sweep validates names and types before anything runs.",
    "derived_parameter": "papermill injects the new values in a cell AFTER the parameters cell, so `lora_alpha = 2 * lora_r` there was "
                         "computed from the default rank and never recomputed: move it to the next cell.",
}
_EX08_BODY = '''from ftcourse.notebooks import record_metrics

# LoRA on q_proj (576 -> 576) and v_proj (576 -> 192) in each of the embedded model's 30 blocks: r * (d_in + d_out) per layer
trainable = lora_r * ((576 + 576) + (576 + 192)) * 30
record_metrics(lora_r=lora_r, lora_alpha=lora_alpha, scale=lora_alpha / lora_r, trainable=trainable)'''


def ex08_classmate_notebook(path: str | Path) -> Path:
    """Write the classmate's experiment notebook (one point: LoRA's size and scale at a rank) to ``path``. Do not fix it here."""
    import nbformat

    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nb.cells = [nbformat.v4.new_markdown_cell("# LoRA size and scale at one rank"),
                nbformat.v4.new_code_cell('profile = "smoke"\nlora_r = 8  # LoRA rank\nlora_alpha = 2 * lora_r  # twice the rank, as the course does',
                                          metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell(_EX08_BODY)]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def ex08_classmate_sweep(notebook: str | Path, ranks, folder: str | Path) -> list[dict]:
    """The classmate's sweep: papermill directly, one run per rank into ``folder``, each run's recorded metrics. Do not fix it here."""
    import os

    import papermill

    from ftcourse.notebooks import METRICS_ENV, kernel_name

    rows, saved = [], os.environ.get(METRICS_ENV)
    try:
        for rank in ranks:
            out = Path(folder) / f"rank-{rank}"
            out.mkdir(parents=True, exist_ok=True)
            metrics = out / "metrics.json"
            metrics.unlink(missing_ok=True)
            os.environ[METRICS_ENV] = str(metrics)
            papermill.execute_notebook(str(notebook), str(out / Path(notebook).name), parameters={"rank": rank},
                                       kernel_name=kernel_name(), progress_bar=False)
            rows.append({"rank": rank, **json.loads(metrics.read_text())})
    finally:
        if saved is None:
            os.environ.pop(METRICS_ENV, None)
        else:
            os.environ[METRICS_ENV] = saved
    return rows


def _ex08_point(rank: int) -> dict:
    return {"lora_r": rank, "lora_alpha": 2 * rank, "scale": 2.0, "trainable": rank * 57_600}


def _is_literal(text: str) -> bool:
    try:
        ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return False
    return True


@self_check
def check_ex08_task5(causes, notebook, sweep) -> str:
    """``causes``: names from EX08_CAUSES; ``notebook``: the fixed experiment; ``sweep``: run_sweep of it over lora_r."""
    import tempfile

    import nbformat

    from ftcourse.notebooks import parameters_of, run_notebook
    from ftcourse.sweep import STATE, SweepResult

    expect(isinstance(causes, (set, list, tuple)) and set(causes) <= set(EX08_CAUSES),
           f"`causes` should be a set of names from EX08_CAUSES; got {causes!r}.", f"pick from {sorted(EX08_CAUSES)}.")
    missed, blamed = sorted(_EX08_FAULTS - set(causes)), sorted(set(causes) - _EX08_FAULTS)
    expect(not missed, f"the sweep has {len(_EX08_FAULTS)} faults; you did not name {missed[0]!r}." if missed else "", _EX08_WHY[missed[0]] if missed else "")
    expect(not blamed, f"{blamed[0]!r} did not break this sweep." if blamed else "",
           "the classmate called papermill once per rank (nothing was skipped), with the course's kernel; the seed does not change a parameter count.")
    path = Path(notebook)
    expect(path.is_file(), f"{path} does not exist.", "write the fixed notebook with nbformat.write(nb, path) and pass that path.")
    tagged = [c for c in nbformat.read(path, as_version=4).cells if "parameters" in c.metadata.get("tags", [])]
    expect(len(tagged) == 1, f"{path.name} has {len(tagged)} cells tagged 'parameters'.", "keep exactly one: papermill injects its values after it.")
    spec = parameters_of(path)
    derived = [name for name, s in spec.items() if s["type"] == "any" and not _is_literal(s["default"])]
    expect(not derived, f"the parameters cell still computes {derived[0]!r} from another parameter ({spec[derived[0]]['default'] if derived else ''})."
           if derived else "", _EX08_WHY["derived_parameter"])
    expect("lora_r" in spec, f"{path.name} has no parameter 'lora_r'.", "keep the notebook's own parameter names; fix the sweep's name instead.")
    with tempfile.TemporaryDirectory() as folder:
        try:
            run = run_notebook(path, folder, "smoke", {"lora_r": 2}, timeout=300, progress=False)
        except CourseError as exc:
            raise CheckFailed(f"the fixed notebook cannot be run with lora_r=2: {exc.what}", "keep the parameters cell's lines "
                              "`profile = \"smoke\"` and `lora_r = 8`; only the derived value moves.") from None
        expect(run.error is None, f"the fixed notebook fails at lora_r=2: {run.error}", "run it yourself with another rank.")
        recorded = json.loads((Path(folder) / f"{path.stem}.metrics.json").read_text())
    want = _ex08_point(2)
    expect({k: recorded.get(k) for k in want} == want, f"run at lora_r=2 the fixed notebook records {recorded}; want {want}.",
           _EX08_WHY["derived_parameter"] + " A fixed lora_alpha = 16 is no better: alpha must follow the rank.")
    expect(isinstance(sweep, SweepResult), f"`sweep` is a {type(sweep).__name__}, not what ftcourse.sweep.run_sweep returns.",
           "sweep = run_sweep(fixed_path, {'lora_r': [...]}, profile='smoke', output_dir=...): it checks the parameter names first.")
    state = json.loads((sweep.folder / STATE).read_text())
    expect(Path(state["notebook"]).resolve() == path.resolve(), f"the sweep ran {Path(state['notebook']).name}, not your fixed notebook {path}.",
           "sweep the fixed notebook.")
    table = sweep.table
    expect("lora_r" in table.columns and table["lora_r"].nunique() >= 3 and (table["status"] == "ok").all(),
           "the sweep should vary lora_r over at least 3 values, every point ok.", "grid = {'lora_r': [4, 8, 16]}.")
    bad = [row for row in table.to_dict("records") if row.get("lora_alpha") != 2 * row["lora_r"] or row.get("scale") != 2.0]
    expect(not bad, f"the sweep's row lora_r={bad[0]['lora_r']} recorded lora_alpha={bad[0].get('lora_alpha')}." if bad else "", _EX08_WHY["derived_parameter"])
    return f"both faults named and fixed: {len(table)} points with lora_alpha = 2 · lora_r (scale 2), and a hidden rank too."


# ================================================================ ex08 · experiments — end


# ================================================================ ex09 · scaling out (lesson 09) — start
# Memory per GPU under ZeRO / FSDP, the ZeRO paper's numbers, accelerate's data sharding, choosing a setup.

#: (total params, trainable params, bytes per frozen weight, gpus, zero stage) cases of task 1.
_EX09_LORA_CASES = [(134_515_008 + 921_600, 921_600, 2, 1, 0), (6_738_415_616 + 8_388_608, 8_388_608, 2, 8, 1),
                    (6_738_415_616 + 8_388_608, 8_388_608, 2, 8, 2), (68_976_648_192 + 32_768_000, 32_768_000, 0.5, 4, 3)]


def _ex09_lora_gib(total: int, trainable: int, weight_bytes: float, gpus: int, stage: int) -> float:
    from ftcourse.distributed import per_gpu_memory

    parts = per_gpu_memory(total, trainable, weight_bytes, gpus, stage)
    return (parts["weights"] + parts["gradients"] + parts["optimizer"]) / 2**30


@self_check
def check_ex09_task1(lora_memory_gib) -> str:
    """``lora_memory_gib(total, trainable, weight_bytes, gpus, zero_stage)``: GiB per GPU of weights + gradients + Adam states."""
    expect(callable(lora_memory_gib), "`lora_memory_gib` is not a function.", "define def lora_memory_gib(total, trainable, weight_bytes, gpus, zero_stage): ...")
    hints = {0: "no sharding: frozen weights × weight_bytes + the trainable weights, gradients and two Adam moments, each 4 bytes (fp32).",
             1: "ZeRO-1 divides only the optimizer states (the two Adam moments) by the number of GPUs.",
             2: "ZeRO-2 divides the optimizer states and the gradients, not the weights.",
             3: "ZeRO-3 divides everything — frozen and trainable weights too — by the number of GPUs."}
    for total, trainable, weight_bytes, gpus, stage in _EX09_LORA_CASES:
        want = _ex09_lora_gib(total, trainable, weight_bytes, gpus, stage)
        got = lora_memory_gib(total, trainable, weight_bytes, gpus, stage)
        expect(isinstance(got, (int, float)) and _close(float(got), want, 1e-6),
               f"lora_memory_gib({total:,}, {trainable:,}, {weight_bytes}, gpus={gpus}, zero_stage={stage}) = {got}; want {want:.3f} GiB.",
               hints[stage] + " A GiB is 2**30 bytes.")
    return f"right on {len(_EX09_LORA_CASES)} hidden cases, ZeRO 0-3 (70B QLoRA over 4 GPUs with ZeRO-3: {want:.1f} GiB per GPU before activations)."


#: The ZeRO paper's Figure 1 (Rajbhandari et al. 2020): 7.5B parameters, 64 GPUs, mixed-precision Adam (K = 12), in GB.
_ZERO_FIGURE1 = {0: 120.0, 1: 31.4, 2: 16.6, 3: 1.9}


@self_check
def check_ex09_task2(full_finetune_gb) -> str:
    """``full_finetune_gb(params, gpus, zero_stage)``: GB (1e9 bytes) per GPU for full fine-tuning with mixed-precision Adam."""
    expect(callable(full_finetune_gb), "`full_finetune_gb` is not a function.", "define def full_finetune_gb(params, gpus, zero_stage): ...")
    for stage, want in _ZERO_FIGURE1.items():
        got = full_finetune_gb(7.5e9, 64, stage)
        expect(isinstance(got, (int, float)) and abs(float(got) - want) < 0.06,
               f"full_finetune_gb(7.5e9, 64, zero_stage={stage}) = {got}; the ZeRO paper's Figure 1 says {want} GB.",
               "per parameter: 2 bytes of bf16/fp16 weights, 2 of gradients, 12 of optimizer state (fp32 master copy + 2 Adam moments); "
               "stage 1 divides the 12, stage 2 also the gradients' 2, stage 3 all 16 — by the number of GPUs. GB here is 1e9 bytes.")
    got1 = full_finetune_gb(1e9, 1, 0)
    expect(_close(float(got1), 16.0, 1e-6), f"full_finetune_gb(1e9, 1, 0) = {got1}; one GPU with no sharding needs 16 GB per billion parameters.",
           "2 + 2 + 12 = 16 bytes per parameter, and nothing is divided on one GPU.")
    return "reproduces the ZeRO paper's Figure 1: 120 → 31.4 → 16.6 → 1.9 GB per GPU for 7.5B parameters on 64 GPUs."


def _ex09_rank_examples(n: int, batch_size: int, accumulation: int, processes: int, rank: int) -> list[int]:
    from accelerate.data_loader import BatchSamplerShard
    from torch.utils.data import BatchSampler, SequentialSampler

    shard = BatchSamplerShard(BatchSampler(SequentialSampler(range(n)), batch_size, False), num_processes=processes, process_index=rank)
    return [i for batch in list(shard)[:accumulation] for i in batch]


@self_check
def check_ex09_task3(rank1_first_step) -> str:
    """``rank1_first_step``: example indices rank 1 trains on in the first optimizer step (16 examples in order,
    batch 2 per process, 2 gradient-accumulation steps, 2 processes)."""
    want = _ex09_rank_examples(16, 2, 2, 2, 1)
    expect(isinstance(rank1_first_step, (list, tuple)) and len(rank1_first_step) == len(want),
           f"rank1_first_step is {rank1_first_step!r}; rank 1 trains on {len(want)} examples per optimizer step.",
           "batch 2 per process × 2 accumulation steps = 4 examples per rank per optimizer step.")
    got = sorted(int(i) for i in rank1_first_step)
    expect(got != [4, 5, 6, 7], "accelerate does not give rank 1 the second half of the examples.",
           "the batch sampler makes batches of 2 in order, and the batches are dealt out in turn: batch 0 to rank 0, batch 1 to rank 1, batch 2 to rank 0, …")
    expect(got == want, f"rank 1's first optimizer step trains on {want}, not {got}.",
           "batches of 2 in order ([0,1], [2,3], [4,5], …) dealt out in turn; each optimizer step accumulates 2 of a rank's batches.")
    return f"rank 1 trains on {want} — accelerate deals whole batches out in turn (BatchSamplerShard), so the ranks interleave."


#: Task 4's situations and the setups that fit them (the configs in configs/accelerate/, or "single" GPU without a launcher).
EX09_SCENARIOS = {
    "a": "LoRA on the 135M embedded model; you have 4 × 24 GB GPUs and want the run to finish sooner",
    "b": "LoRA on Llama-2-7B with a bf16 base, batch 1 × 2,048 tokens, gradient checkpointing; you have 1 × 24 GB GPU",
    "c": "LoRA on Llama-2-70B; you have 2 × 24 GB GPUs",
    "d": "full fine-tuning (every weight trained, mixed-precision AdamW) of Llama-2-7B; you have 8 × 24 GB GPUs",
}
EX09_SETUPS = ("single", "ddp", "fsdp", "fsdp_qlora", "zero2", "zero3", "zero3_qlora")
_EX09_ANSWERS = {"a": {"ddp"}, "b": {"single"}, "c": {"fsdp_qlora", "zero3_qlora"}, "d": {"fsdp", "zero3"}}
_EX09_WHY = {
    "a": "the model fits one GPU many times over: plain data parallelism (ddp) multiplies the throughput, sharding would only add communication.",
    "b": "lesson 09's table: about 13 GiB for weights, adapter state and activations — one 24 GB GPU holds it; sharding or 4-bit would cost speed or quality for nothing.",
    "c": "70B in bf16 needs over 130 GiB; 4-bit brings it to ~36 GiB, and sharding that over 2 GPUs to ~19 GiB each: QLoRA + FSDP or ZeRO-3.",
    "d": "full fine-tuning costs 16 bytes per parameter (~108 GB for 6.7B): ZeRO-2 keeps the 2-byte weights whole (13.5 GB) plus 14/8 bytes "
         "(11.8 GB) — over 24 GB per GPU; ZeRO-3 / FSDP divides all 16 bytes by 8 (~13.5 GB each).",
}


@self_check
def check_ex09_task4(choices) -> str:
    """``choices``: a dict scenario letter -> one of EX09_SETUPS."""
    expect(isinstance(choices, dict) and set(choices) == set(EX09_SCENARIOS),
           f"choices should have the keys {sorted(EX09_SCENARIOS)}; got {sorted(choices) if isinstance(choices, dict) else type(choices).__name__}.",
           "choices = {'a': 'ddp', 'b': ..., 'c': ..., 'd': ...}.")
    unknown = {k: v for k, v in choices.items() if v not in EX09_SETUPS}
    expect(not unknown, f"{unknown} are not setups of this task.", f"choose from {EX09_SETUPS}.")
    for key in sorted(EX09_SCENARIOS):
        expect(choices[key] in _EX09_ANSWERS[key], f"({key}) {EX09_SCENARIOS[key]}: {choices[key]!r} is not the best fit.", _EX09_WHY[key])
    return "each setup fits its budget: DDP for speed when the model fits, one GPU when it fits there, sharding (and 4-bit) only when it must."
# ================================================================ ex09 · scaling out — end


# ================================================================ ex10 · inference and serving (lesson 10) — start


def _stats(rows):
    """Synthetic measurements: ``(batch size, requests/s, request latencies in ms)`` per row."""
    from ftcourse.inference import InferenceStats

    return [InferenceStats(batch_size=b, max_new_tokens=8, n_prompts=len(lat), prompt_tokens=50.0, ttft_s=[0.05 * b],
                           decode_tokens_per_s=[7.0 * rps], requests_per_s=[rps], new_tokens=[8 * len(lat)],
                           latencies_s=[ms / 1000 for ms in lat]) for b, rps, lat in rows]


#: Hidden cases of task 1: (measurements, p95 budget in ms, the right batch size).
_EX10_CASES = (
    # p50 of batch 8 fits the budget, its p95 does not; batch 16 is the fastest of all
    (((1, 2.0, [100] * 19 + [120]), (4, 5.0, [300] * 19 + [380]), (8, 7.0, [390] * 18 + [600, 700]), (16, 9.0, [900] * 20)), 400.0, 4),
    # throughput is not monotonic: batch 8 beats batch 16 within the budget
    (((1, 2.0, [100] * 20), (8, 8.0, [500] * 20), (16, 7.5, [550] * 20)), 600.0, 8),
    # nothing fits
    (((1, 2.0, [300] * 20), (2, 3.0, [400] * 20)), 250.0, None),
)


@self_check
def check_ex10_task1(best_batch_size) -> str:
    """``best_batch_size(stats, p95_budget_ms)``: the batch size with the most requests/s whose p95 latency is within the budget."""
    expect(callable(best_batch_size), "`best_batch_size` is not a function.", "define def best_batch_size(stats, p95_budget_ms): ...")
    for rows, budget, want in _EX10_CASES:
        stats = _stats(rows)
        got = best_batch_size(stats, budget)
        if got == want:
            continue
        fastest = max(stats, key=lambda s: s.requests_per_s[0]).batch_size
        by_p50 = max((s for s in stats if 1000 * s.p50_s <= budget), key=lambda s: s.requests_per_s[0], default=None)
        expect(want is not None or got is None, f"no batch size meets a {budget:.0f} ms budget here, but you return {got!r}.",
               "return None when no measurement's p95 is within the budget: the budget cannot be met at any batch size.")
        expect(got != fastest, f"you return batch {got}, the highest throughput, but its p95 latency is over the {budget:.0f} ms budget.",
               "keep only the measurements with 1000 * s.p95_s <= p95_budget_ms, then take the most requests/s among them.")
        expect(by_p50 is None or got != by_p50.batch_size, f"batch {got} meets the budget at the median (p50) but not at p95.",
               "the budget is on the 95th percentile: compare s.p95_s (seconds), not s.p50_s.")
        expect(False, f"for budget {budget:.0f} ms you return {got!r}; the right batch size is {want!r}.",
               "among measurements with p95 within budget (s.p95_s is in seconds), the largest s.row()['requests/s'] wins — "
               "not the largest batch size.")
    return "right on 3 hidden sweeps (p95, not p50; throughput, not batch size; None when nothing fits)."


def _ex10_hidden_prompts():
    return [[{"role": "user", "content": "My parcel never arrived. Order 5512."}], "The BrewMaster 300 is a",
            [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "How do I reset my password?"}]]


@self_check
def check_ex10_task2(onnx_dir, max_diff, small_model, tokenizer, prompts) -> str:
    """``onnx_dir``: ``small_model`` exported with export_onnx; ``max_diff``: max |logit difference| PyTorch vs onnxruntime on ``prompts``."""
    from pathlib import Path

    from ftcourse.deploy import ONNX_FILE, logits_on, max_logit_diff, onnx_logits, onnx_session

    expect((Path(onnx_dir) / ONNX_FILE).is_file(), f"{onnx_dir} holds no {ONNX_FILE}.", "onnx_dir = export_onnx(small_model, tokenizer, onnx_dir).")
    session = onnx_session(onnx_dir)
    hidden = _ex10_hidden_prompts()
    ours, theirs = logits_on(small_model, tokenizer, hidden), onnx_logits(session, tokenizer, hidden)
    hidden_diff = max_logit_diff(ours, theirs)
    expect(hidden_diff <= 1e-3 and all(bool((a.argmax(-1) == b.argmax(-1)).all()) for a, b in zip(ours, theirs)),
           f"on hidden prompts the ONNX model differs from small_model by up to {hidden_diff:.3g}.",
           "export small_model itself (not another model), and do not change its weights after exporting.")
    want = max_logit_diff(logits_on(small_model, tokenizer, prompts), onnx_logits(session, tokenizer, prompts))
    expect(isinstance(max_diff, float), f"max_diff should be a float, got {type(max_diff).__name__}.", "max_diff = float(...).")
    expect(max_diff != 0.0 or want == 0.0, "max_diff is exactly 0: two runtimes never agree to the last bit.",
           "compare PyTorch's logits (logits_on) with onnxruntime's (onnx_logits), not one runtime with itself.")
    expect(abs(max_diff - want) <= 0.1 * want + 1e-7, f"max_diff is {max_diff:.3g}; over every position of every prompt it is {want:.3g}.",
           "take the largest |difference| over all positions and all vocabulary entries of each prompt (max_logit_diff does), "
           "not only the last position.")
    return f"the export answers like PyTorch: max |Δlogit| {want:.2g} on your prompts, {hidden_diff:.2g} on hidden ones, same next tokens."


@self_check
def check_ex10_task3(batched_greedy, model, tokenizer) -> str:
    """``batched_greedy(model, tokenizer, prompts, max_new_tokens)``: batched greedy answers equal to one-at-a-time ones."""
    from ftcourse.generation import generate

    expect(callable(batched_greedy), "`batched_greedy` is not a function.", "fix the function in the cell and keep its name.")
    prompts = [[{"role": "user", "content": "Hi"}],
               [{"role": "system", "content": "You answer customer questions about orders, briefly and politely."},
                {"role": "user", "content": "I ordered a kettle two weeks ago and it still has not arrived. Where is it?"}],
               [{"role": "user", "content": "Cancel order 8812, please."}]]
    want = [generate(model, tokenizer, [p], max_new_tokens=6, batch_size=1, progress=False)[0] for p in prompts]
    got = batched_greedy(model, tokenizer, prompts, 6)
    expect(isinstance(got, list) and len(got) == len(prompts), f"expected a list of {len(prompts)} answers, got {got!r:.120}.",
           "return one decoded answer per prompt, in order.")
    wrong = [i for i, (a, b) in enumerate(zip(got, want)) if a != b]
    expect(not wrong, f"answers {wrong} differ from generating each prompt alone (e.g. {got[wrong[0]]!r} vs {want[wrong[0]]!r})." if wrong else "",
           "a decoder continues from the LAST position: put the pads on the left (ids[row, width - len(seq):] = seq) and mask "
           "them in attention_mask; then the new tokens start at column `width` for every row.")
    return "batched answers equal one-at-a-time answers: pads on the left, masked."
# ================================================================ ex10 · inference and serving — end


# ================================================================ ex11 · knowledge-base QA (lesson 11)
# Checks for solutions/ex11_knowledge_base_qa.ipynb. Kept together at the end of the module.

_EX11_NORMALIZE_CASES = (
    ("The E-104 error", "e104 error"),
    ("  An   Action button! ", "action button"),
    ("Theatre, a Wi-Fi 6 router.", "theatre wifi 6 router"),
    ("Chalk White, Graphite", "chalk white graphite"),
)


@self_check
def check_ex11_task1(normalize_answer, f1) -> str:
    """``normalize_answer(text)``: SQuAD's normalisation; ``f1(prediction, reference)``: token F1 of the normalised words."""
    from ftcourse.metrics import token_f1

    expect(callable(normalize_answer) and callable(f1), "`normalize_answer` and `f1` must both be functions.",
           "define def normalize_answer(text): ... and def f1(prediction, reference): ...")
    for text, want in _EX11_NORMALIZE_CASES:
        got = normalize_answer(text)
        if isinstance(got, str) and got != want:
            if got == " ".join(text.lower().split()):
                hint = "lower-casing is not enough: also delete punctuation and the words a, an, the."
            elif "e 104" in got or "wi fi" in got:
                hint = "SQuAD deletes punctuation without putting a space in its place: 'E-104' becomes 'e104'."
            elif re.search(r"\b(the|an|a)\b", got):
                hint = "drop the articles a, an and the as whole words (after deleting punctuation); 'Theatre' stays."
            elif "atre" in got and "theatre" not in got:
                hint = "remove 'the' only as a whole word (\\b in a regular expression), not inside 'Theatre'."
            else:
                hint = "lower-case, delete string.punctuation, drop a/an/the, then join the words with single spaces."
            expect(False, f"normalize_answer({text!r}) returned {got!r}; SQuAD's normalisation gives {want!r}.", hint)
        expect(got == want, f"normalize_answer({text!r}) returned {got!r}, not a string.", "return the normalised text.")
    cases = [("It weighs 265 g", "265 g"), ("the Wi-Fi password", "Wi-Fi password rejected"), ("a a b", "a b b"),
             ("nothing", "265 g"), ("The manual: 24 months", "24 months")]
    for pred, ref in cases:
        got, want = f1(pred, ref), token_f1(pred, ref)
        expect(isinstance(got, (int, float)) and abs(got - want) < 1e-9, f"f1({pred!r}, {ref!r}) is {got}; the SQuAD token F1 is {want:.4f}.",
               "normalise both, split into words, count the overlap with Counter(pred) & Counter(ref) (repeats count once per "
               "match), then precision = overlap / len(pred), recall = overlap / len(ref), F1 = 2PR / (P + R); 0 when no overlap.")
    return f"matches SQuAD's normalisation on {len(_EX11_NORMALIZE_CASES)} hidden cases and its token F1 on {len(cases)}."


@self_check
def check_ex11_task2(recall_at_k) -> str:
    """``recall_at_k(retrieved, gold, k)``: share of queries whose gold document is among their first k retrieved."""
    from ftcourse.metrics import recall_at_k as right

    expect(callable(recall_at_k), "`recall_at_k` is not a function.", "define def recall_at_k(retrieved, gold, k): ...")
    retrieved = [["a", "b", "c", "d"], ["b", "a", "a", "c"], ["c", "d", "b", "a"], ["d", "c", "b", "a"], ["a"]]
    gold = ["a", "a", "a", "e", "a"]
    for k in (1, 2, 3, 5):
        got, want = recall_at_k(retrieved, gold, k), right(retrieved, gold, k)
        if isinstance(got, (int, float)) and abs(got - want) > 1e-9:
            if abs(got - sum(d[:k].count(g) for d, g in zip(retrieved, gold)) / len(gold)) < 1e-9:
                hint = "a query is a hit once, even if retrieved twice: test `gold in docs[:k]`, do not count occurrences."
            elif abs(got - sum(g in d[:k] for d, g in zip(retrieved, gold))) < 1e-9:
                hint = "divide the number of hits by the number of queries: recall is a share, between 0 and 1."
            elif abs(got - right(retrieved, gold, k + 1)) < 1e-9 or (k > 1 and abs(got - right(retrieved, gold, k - 1)) < 1e-9):
                hint = "count the first k documents exactly: docs[:k] (off by one?)."
            else:
                hint = "for each query, 1 if its gold document is in docs[:k] (once, even if retrieved twice), else 0; then the mean."
            expect(False, f"recall_at_k(..., k={k}) is {got}; it should be {want:.2f} on the hidden case.", hint)
        expect(isinstance(got, (int, float)), f"recall_at_k returned {got!r}, not a number.", "return the share as a float.")
    return "matches ftcourse's recall@k for k = 1, 2, 3, 5 on a hidden case (short lists and duplicates included)."


def _bm25_idf(n_docs: int, n: int) -> float:
    return math.log((n_docs - n + 0.5) / (n + 0.5))


@self_check
def check_ex11_task3(idf, retriever) -> str:
    """``idf(term)``: BM25's inverse document frequency of ``term`` over ``retriever``'s passages (as rank_bm25 computes it)."""
    expect(callable(idf), "`idf` is not a function.", "define def idf(term): ... over the passages' tokens.")
    from ftcourse.retrieval import bm25_tokens

    docs = [set(bm25_tokens(c.text)) for c in retriever.chunks]
    n_docs = len(docs)
    for term in ("e-104", "halo", "zigbee", "warranty"):
        n = sum(term in d for d in docs)
        want = retriever.bm25.idf[term]
        got = idf(term)
        if isinstance(got, (int, float)) and abs(got - want) > 1e-6:
            if _close(got, _bm25_idf(n_docs, n) / math.log(10), 1e-9):
                hint = "BM25 uses the natural logarithm: math.log, not math.log10."
            elif n and abs(got - math.log(n_docs / n)) < 1e-6:
                hint = "that is the classic tf-idf idf; BM25's is ln((N - n + 0.5) / (n + 0.5))."
            elif _close(got, _bm25_idf(n_docs, sum(bm25_tokens(c.text).count(term) for c in retriever.chunks)), 1e-9):
                hint = "n(t) counts the passages that contain the term at least once, not its occurrences."
            else:
                hint = "N = number of passages, n = passages containing the term; idf = ln((N - n + 0.5) / (n + 0.5))."
            expect(False, f"idf({term!r}) is {got}; rank_bm25 gives {want:.4f} ({n} of {n_docs} passages contain it).", hint)
        expect(isinstance(got, (int, float)), f"idf({term!r}) returned {got!r}, not a number.", "return the idf as a float.")
    return "equals rank_bm25's idf for 4 terms: rare codes such as E-104 weigh far more than common words."


_EX11_SCENARIOS = {
    "weekly_updates": ("retrieve", "facts change every week: re-indexing the manuals takes seconds; retraining an adapter "
                                   "every week does not, and closed-book weights go stale."),
    "house_style": ("fine-tune", "a fixed answer format on stable content is behaviour, which fine-tuning teaches; "
                                 "retrieval adds facts, not style."),
    "abstain_and_quote": ("both", "quoting current manuals needs retrieval, and saying 'the manual does not say' is a "
                                  "behaviour the base model with passages rarely shows: fine-tune the reader on retrieved passages."),
}


@self_check
def check_ex11_task4(choices) -> str:
    """``choices``: for each scenario key, one of "fine-tune", "retrieve", "both"."""
    expect(isinstance(choices, dict) and set(choices) == set(_EX11_SCENARIOS),
           f"`choices` must be a dict with the keys {sorted(_EX11_SCENARIOS)}.", "fill in one answer per scenario.")
    for key, (want, why) in _EX11_SCENARIOS.items():
        got = choices[key]
        expect(got in ("fine-tune", "retrieve", "both"), f"choices[{key!r}] is {got!r}.", 'answer "fine-tune", "retrieve" or "both".')
        expect(got == want, f"choices[{key!r}] is {got!r}.", why)
    return "retrieval for changing facts, fine-tuning for behaviour, both when you need current facts *and* a trained behaviour."
