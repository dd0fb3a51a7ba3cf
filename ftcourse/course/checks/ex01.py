"""Checks of exercise 01, data preparation (``solutions/ex01_data_preparation.ipynb``).

Every task follows the grading protocol (``core``'s docstring): a collect step that turns the learner's values and the
outputs of their functions into plain data, and a judge that decides. The practice cases are here; the hidden inputs
and expected answers the grader uses are in ``solutions/hidden/ex01.json``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from ftcourse.course.checks.core import Case, describe, expect, forbid_source_helpers, graded_check, output_of, run_learner

__all__ = [
    "check_ex01_task1", "check_ex01_task2", "check_ex01_task3", "check_ex01_task4", "check_ex01_task5",
    "check_ex01_task6", "ex01_buggy_collate", "EX01_MESSY_RECORDS",
]

def _intent_data():
    from ftcourse.course.bundled import INTENT_LABELS, raw_path
    from ftcourse.data import read_dataset

    return read_dataset(raw_path("support_intents.jsonl"), labels=INTENT_LABELS)


def _dataset(value: Any) -> dict:
    """A dataset as plain data: its type and, for a CourseDataset-like value, format, size, source lines and labels."""
    try:
        return {"type": type(value).__name__, "fmt": str(value.fmt), "size": len(value), "lines": [int(n) for n in value.lines],
                "labels": [str(label) for label in value.labels()]}
    except Exception:  # not a dataset: the judge names its type
        return {"type": type(value).__name__}


@graded_check({"inputs": {}, "expected": {}})
def check_ex01_task1(inputs, data, label_counts) -> dict:
    """``data``: the intent dataset loaded with ftcourse.data.read_dataset; ``label_counts``: label -> count."""
    return {"data": _dataset(data), "label_counts": describe(label_counts)}


@check_ex01_task1.judge
def _judge_task1(data: dict, case: Case) -> str:
    reference = _intent_data()
    got = data.get("data") if isinstance(data.get("data"), dict) else {}
    expect(got.get("type") == "CourseDataset", f"`data` is a {got.get('type')}, not a ftcourse.data.CourseDataset.",
           "load the file with ftcourse.data.read_dataset(path, labels=INTENT_LABELS).")
    expect(got.get("fmt") == "classification" and got.get("size") == len(reference),
           f"`data` holds {got.get('size')} {got.get('fmt')} records; support_intents.jsonl has {len(reference)} classification records.",
           "load data/raw/support_intents.jsonl (ftcourse.course.bundled.raw_path) and keep every record.")
    want = Counter(reference.labels())
    label_counts, kind = output_of(data.get("label_counts"), "label_counts")
    expect(isinstance(label_counts, dict), f"`label_counts` is a {kind}, not a dict.",
           "build a dict label -> count, e.g. dict(collections.Counter(data.labels())).")
    wrong = sorted(k for k in set(want) | set(label_counts) if label_counts.get(k) != want.get(k))
    expect(not wrong, f"the counts of {', '.join(map(str, wrong[:3]))} are wrong (e.g. {wrong[0]!r}: got {label_counts.get(wrong[0])})."
           if wrong else "", "count the label of every record, e.g. collections.Counter(data.labels()).")
    top, n = want.most_common(1)[0]
    return f"{len(reference)} records with {len(want)} labels; the most frequent is {top} ({n})."


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


#: A second messy dataset of the practice case (the learner's self-check runs clean_records on it too).
_EX01_SECOND_MESSY = [
    {"text": "My parcel never came.", "label": "order_status"},
    {"text": "Update my card, the old one expired.", "label": "payment_update"},
    {"text": "MY PARCEL   never came.", "label": "order_status"},  # duplicate of the first (case, spaces)
    {"text": "I can't log in to my account.", "label": "account_access"},
    {"text": "", "label": "billing_issue"},  # empty text
    {"text": "I can't log in to my account.", "label": "talk_to_human"},  # same message, other label: still a duplicate
    {"text": "Refund for order 88, please.", "label": "refund"},  # unknown label
    {"text": "Move my delivery to 5 Elm Street.", "label": "change_address"},
]


@graded_check({"inputs": {"sets": [{"where": "EX01_MESSY_RECORDS", "records": EX01_MESSY_RECORDS},
                                   {"where": "a second messy set", "records": _EX01_SECOND_MESSY}]},
               "expected": {"keep": [[0, 2, 5, 8], [0, 1, 3, 7]]}})
def check_ex01_task2(inputs, clean_records) -> dict:
    """``clean_records(records)``: the valid records, first copy of each (normalised) message kept, in order."""
    return {"outputs": [run_learner(clean_records, [dict(r) for r in s["records"]]) for s in inputs["sets"]]}


@check_ex01_task2.judge
def _judge_task2(data: dict, case: Case) -> str:
    from ftcourse.metrics import normalize_text

    outputs, done = data.get("outputs"), []
    expect(isinstance(outputs, list) and len(outputs) == len(case.inputs["sets"]), "no output of `clean_records` was collected.",
           "define def clean_records(records): ... returning a list, and run the task's cell.")
    for part, keep, entry in zip(case.inputs["sets"], case.expected["keep"], outputs):
        records, where = part["records"], f"on {part['where']}"
        want = [records[i] for i in keep]
        clean, kind = output_of(entry, "clean_records", "define def clean_records(records): ... returning a list.")
        expect(isinstance(clean, list) and kind == "list", f"`clean_records` returns a {kind}, not a list of records.", "collect the records you keep in a list.")
        foreign = [r for r in clean if r not in records]
        expect(not foreign, f"{where}, your result holds records that are not in its input, e.g. {foreign[0]!r}." if foreign else "",
               "clean the records you are given: a list copied from the printout fits one dataset only.")
        keys = [normalize_text(r["text"]) if isinstance(r.get("text"), str) else r.get("text") for r in clean if isinstance(r, dict)]
        expect(len(keys) == len(set(map(repr, keys))), f"{where}, your result keeps two copies of one message.",
               "messages that differ only in case or spaces are duplicates, whatever their label: compare ftcourse.data.normalize_text(text), keep the first.")
        invalid = [r for r in clean if r not in want]
        expect(not invalid, f"{where}, your result keeps an invalid record: {invalid[0]!r}." if invalid else "",
               "drop records that ftcourse.data.validate_record(record, 'classification', line, INTENT_LABELS) finds problems in.")
        missing = [r for r in want if r not in clean]
        expect(not missing, f"{where}, your result lost a valid record: {missing[0]!r}." if missing else "",
               "keep every valid record; of duplicates keep the first (the later copy may be the one with a typo'd label).")
        expect(clean == want, "your result has the right records, but not in their original order.", "keep the records in the order of the data.")
        done.append(f"{len(keep)} of {len(records)} records of {part['where']}")
    return f"kept {' and '.join(done)}."


def _stratified_records(strata: dict) -> list[dict]:
    return [{"text": f"{label} message {i}", "label": label} for label, n in strata.items() for i in range(n)]


@graded_check({"inputs": {"strata": {"order_status": 97, "billing_issue": 23, "talk_to_human": 6, "cancel_order": 4}, "test": 0.2,
                          "seeds": [0, 0, 1, 2, 3]}, "expected": {}})
def check_ex01_task3(inputs, splits, stratified_split) -> dict:
    """``splits``: split_dataset(data, validation=0.1, test=0.1, seed=42) of the intent data;
    ``stratified_split(records, test, seed)``: a stratified (train, test) split written by hand."""
    records = _stratified_records(inputs["strata"])
    by_hand = [run_learner(stratified_split, [dict(r) for r in records], inputs["test"], seed) for seed in inputs["seeds"]]
    parts = {str(k): _dataset(v) for k, v in splits.items()} if isinstance(splits, dict) else None
    return {"splits": parts, "splits_type": type(splits).__name__, "stratified_split": by_hand}


def _judge_stratified_split(outputs: Any, case: Case) -> str:
    """The learner's ``stratified_split`` on the case's unbalanced dataset: each call's (train, test) in ``outputs``."""
    strata, fraction = case.inputs["strata"], case.inputs["test"]
    forbid_source_helpers(case, "stratified_split", {"split_dataset": "ftcourse.data.split_dataset"},
                          "write the split yourself: group the records by label, shuffle each group with random.Random(seed), cut each.")
    records = _stratified_records(strata)
    expect(isinstance(outputs, list) and len(outputs) == len(case.inputs["seeds"]), "no output of `stratified_split` was collected.",
           "define def stratified_split(records, test, seed): ... and run the task's cell.")
    runs = []
    for entry in outputs:
        got, kind = output_of(entry, "stratified_split", "define def stratified_split(records, test, seed): ...")
        expect(isinstance(got, list) and len(got) == 2 and all(isinstance(part, list) for part in got),
               f"stratified_split returns {kind}, not (train, test) lists.", "return two lists of records: (train, test).")
        runs.append(got)
    train, test = runs[0]
    texts = [r.get("text") for r in [*train, *test] if isinstance(r, dict)]
    expect(len(texts) == len(train) + len(test) == len(records) and set(map(repr, texts)) == {repr(r["text"]) for r in records},
           f"train + test hold {len(train) + len(test)} records ({len(set(map(repr, texts)))} different); the data has {len(records)}.",
           "every record goes to exactly one part: the test part of each label, and the rest of it to train (no copies, none lost).")
    got = Counter(r.get("label") for r in test)
    want = {label: round(n * fraction) for label, n in strata.items()}
    if any(got.get(label, 0) != n for label, n in want.items()):
        if all(got.get(label, 0) == int(n * fraction) for label, n in strata.items()):
            hint = ("round each label's share to the nearest record: 4 records × 0.2 = 0.8 → 1. int() truncates it to 0, and that label "
                    "is never tested.")
        elif sum(got.values()) == round(len(records) * fraction):
            hint = ("the test part has the right size but not each label's share: shuffling all records together leaves a rare label "
                    "with too few (or no) test examples. Shuffle and cut each label's records separately.")
        else:
            hint = "for each label: shuffle its records, put round(len(group) * test) of them into test and the rest into train."
        expect(False, f"on a {case.kind} unbalanced dataset (labels {dict(strata)}, test={fraction}) your test part has {dict(got)}: "
               "not each label's share.", hint)
    expect(runs[1] == runs[0], "two calls with seed=0 give different splits.",
           "draw from a generator seeded with `seed` (random.Random(seed)), not from the global random module.")
    tests = {tuple(sorted(repr(r.get("text")) for r in run[1] if isinstance(r, dict))) for run in runs[2:]}
    expect(len(tests) > 1, "seeds 1, 2 and 3 give the same test part: the seed changes nothing.",
           "shuffle each label's records with random.Random(seed) before cutting: the first records of each label are not a random sample.")
    return f"and stratified_split keeps each label's share on a {case.kind} unbalanced dataset ({want} of {dict(strata)} in test)."


@check_ex01_task3.judge
def _judge_task3(data: dict, case: Case) -> str:
    from ftcourse.course.bundled import intent_splits

    by_hand = _judge_stratified_split(data.get("stratified_split"), case)
    reference = intent_splits()
    splits = data.get("splits")
    expect(isinstance(splits, dict) and set(splits) == set(reference), f"`splits` should be a dict with keys {sorted(reference)}.",
           "use ftcourse.data.split_dataset(data, validation=0.1, test=0.1, seed=42).")
    for name, part in splits.items():
        expect(isinstance(part, dict) and "lines" in part, f"`splits[{name!r}]` is a {part.get('type') if isinstance(part, dict) else '?'}, not a dataset.",
               "use ftcourse.data.split_dataset(data, validation=0.1, test=0.1, seed=42).")
    sizes = {k: v["size"] for k, v in splits.items()}
    want = {k: len(v) for k, v in reference.items()}
    expect(sizes == want, f"split sizes are {sizes}; an 80/10/10 split of 1000 records is {want}.", "pass validation=0.1 and test=0.1.")
    lines = {k: set(v["lines"]) for k, v in splits.items()}
    expect(not (lines["train"] & lines["test"]) and not (lines["train"] & lines["validation"]),
           "a record appears in training and in validation/test: the evaluation would be leaked.", "split once and keep the parts disjoint.")
    for name, part in splits.items():
        missing = sorted(set(reference["train"].labels()) - set(part["labels"]))
        expect(not missing, f"the {name} split has no example of {missing[0] if missing else ''}.", "stratify by label (split_dataset does).")
    expect(all(lines[k] == set(reference[k].lines) for k in lines), "the split differs from the course's split.",
           "use seed=42, so that your test set is the one every lesson evaluates on.")
    return f"train/validation/test = {sizes['train']}/{sizes['validation']}/{sizes['test']}, stratified, disjoint, the course's split — {by_hand}"


def _records(split: str, n: int) -> dict:
    from ftcourse.course.bundled import intent_splits

    return {"inputs": {"records": [{"text": r["text"], "label": r["label"]} for r in intent_splits()[split].records[:n]]}, "expected": {}}


def _messages(record: dict) -> list[dict]:
    from ftcourse.course.bundled import INTENT_LABELS
    from ftcourse.data import to_messages

    return to_messages(record, "classification", INTENT_LABELS)


@graded_check(lambda: _records("validation", 3))
def check_ex01_task4(inputs, completion_only, tokenizer) -> dict:
    """``completion_only(tokenizer, messages)`` -> {"input_ids", "labels"} with the prompt masked by -100."""
    return {"outputs": [run_learner(completion_only, tokenizer, _messages(r)) for r in inputs["records"]]}


@check_ex01_task4.judge
def _judge_task4(data: dict, case: Case) -> str:
    from ftcourse.tokenization import IGNORE_INDEX, tokenize_messages

    forbid_source_helpers(case, "completion_only", {"tokenize_messages": "ftcourse.tokenization.tokenize_messages",
                                                    "tokenize_records": "ftcourse.tokenization.tokenize_records"},
                          "this task is to write the masking yourself: prompt ids from prompt_ids, the answer's ids and EOS, "
                          "then -100 for every prompt position.")
    tokenizer, records, outputs = case.reference("tokenizer"), case.inputs["records"], data.get("outputs")
    expect(isinstance(outputs, list) and len(outputs) == len(records), "no output of `completion_only` was collected.",
           "define def completion_only(tokenizer, messages): ... and run the task's cell.")
    for record, entry in zip(records, outputs):
        want = tokenize_messages(tokenizer, _messages(record))
        got, _ = output_of(entry, "completion_only", "define def completion_only(tokenizer, messages): ...")
        expect(isinstance(got, dict) and {"input_ids", "labels"} <= set(got), "completion_only must return a dict with 'input_ids' and 'labels'.",
               "return {'input_ids': ids, 'labels': labels}.")
        ids, labels = _row(got["input_ids"], "input_ids"), _row(got["labels"], "labels")
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
    return f"prompt masked, answer + EOS trained on {len(records)} {case.kind} examples."


def _row(value: Any, name: str) -> list[int]:
    """A collected row of token ids or labels, checked to be a list of ints."""
    expect(isinstance(value, list) and all(isinstance(v, int) for v in value), f"`{name}` is not a list of token ids.",
           "return lists of ints (or 1-D tensors).")
    return value


@graded_check({"inputs": {}, "expected": {}})
def check_ex01_task5(inputs, tokenizer, max_seq_length) -> dict:
    """``max_seq_length``: the smallest multiple of 32 that truncates no training example."""
    return {"max_seq_length": describe(max_seq_length)}


@check_ex01_task5.judge
def _judge_task5(data: dict, case: Case) -> str:
    from ftcourse.course.bundled import intent_splits
    from ftcourse.tokenization import tokenize_messages

    tokenizer = case.reference("tokenizer")
    longest = max(len(tokenize_messages(tokenizer, _messages(r))["input_ids"]) for r in intent_splits()["train"].records)
    want = -(-longest // 32) * 32
    max_seq_length, kind = output_of(data.get("max_seq_length"), "max_seq_length")
    expect(isinstance(max_seq_length, int) and kind != "bool", f"`max_seq_length` is a {kind}, not an int.", "compute an int.")
    expect(max_seq_length >= longest, f"max_seq_length={max_seq_length} truncates at least one training example.",
           "tokenize every training example and take the longest, then round up to a multiple of 32.")
    expect(max_seq_length % 32 == 0, f"{max_seq_length} is not a multiple of 32.", "round up: -(-n // 32) * 32.")
    expect(max_seq_length == want, f"{max_seq_length} is larger than needed: a smaller multiple of 32 truncates nothing.",
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


def _examples(tokenizer, records: list[dict]) -> list[dict]:
    from ftcourse.tokenization import tokenize_messages

    return [{k: e[k] for k in ("input_ids", "labels")} for e in (tokenize_messages(tokenizer, _messages(r)) for r in records)]


@graded_check(lambda: _records("test", 4))
def check_ex01_task6(inputs, collate, tokenizer) -> dict:
    """``collate(examples, pad_id)``: right-padded input_ids, attention_mask and labels; EOS stays trained when pad == eos."""
    try:
        examples, pad = _examples(tokenizer, inputs["records"]), tokenizer.pad_token_id
    except Exception as exc:  # not the exercise's tokenizer
        return {"tokenizer_error": f"{type(exc).__name__}: {exc}"[:300]}
    return {"pad": describe(pad), "eos": describe(tokenizer.eos_token_id), "output": run_learner(collate, [dict(e) for e in examples], pad)}


def _as_rows(value: Any, name: str) -> list[list[int]]:
    expect(isinstance(value, list) and all(isinstance(row, list) and all(isinstance(v, int) for v in row) for row in value),
           f"`{name}` is not a list of rows of ints.", "return lists of rows (or 2-D tensors), one row per example.")
    return value


@check_ex01_task6.judge
def _judge_task6(data: dict, case: Case) -> str:
    from ftcourse.tokenization import IGNORE_INDEX
    from ftcourse.tokenization import collate as course_collate

    forbid_source_helpers(case, "collate", {"collate": "ftcourse.tokenization.collate"},
                          "write the padding yourself: it is the point of this debugging task.")
    tokenizer = case.reference("tokenizer")
    pad = tokenizer.pad_token_id
    expect("tokenizer_error" not in data and output_of(data.get("pad"), "tokenizer.pad_token_id")[0] == pad == tokenizer.eos_token_id,
           "this tokenizer's pad token is not its EOS token (or it is not the exercise's tokenizer); the task is about the case where they are equal.",
           "use the exercise's tokenizer (load_tokenizer(P.model)).")
    examples = _examples(tokenizer, case.inputs["records"])
    got, _ = output_of(data.get("output"), "collate", "define def collate(examples, pad_id): ...")
    expect(isinstance(got, dict) and {"input_ids", "attention_mask", "labels"} <= set(got),
           "`collate` must return a dict with 'input_ids', 'attention_mask' and 'labels'.", "return all three, one row per example.")
    ids, mask, labels = (_as_rows(got[k], k) for k in ("input_ids", "attention_mask", "labels"))
    eight = course_collate(examples, pad, pad_to_multiple_of=8)  # the course's own default width is right too
    want = eight if ids and len(ids[0]) == eight["input_ids"].shape[1] else course_collate(examples, pad, pad_to_multiple_of=1)
    expect(ids == want["input_ids"].tolist(), "the padded input_ids are wrong: " + (
        "each row should start with its example's own tokens." if ids and len(ids[0]) == want["input_ids"].shape[1]
        else "the rows are not as wide as the longest example of the batch (or that rounded up to a multiple of 8)."),
           "pad on the right, up to the longest example of the batch: training pads right, generation pads left.")
    rows = [e["labels"] for e in examples]
    expect(len(labels) == len(rows) and all(len(row) >= len(e) for row, e in zip(labels, rows)), "the labels do not have one row per example, padded.",
           "pad each example's labels to the batch's width.")
    eos_masked = any(row[len(e) - 1] == IGNORE_INDEX for row, e in zip(labels, rows))
    expect(not eos_masked, "the label of the final EOS token is -100: the model is never taught to stop — the bug of the given collator.",
           "pad == eos here, so 'mask every pad token' also masks the real EOS. Build the labels from the lengths: "
           "copy each example's own labels, then -100 only in the padding positions.")
    trained_pad = any(lbl != IGNORE_INDEX for row, e in zip(labels, rows) for lbl in row[len(e):])
    expect(not trained_pad, "padding positions have labels other than -100: the model would be trained to emit padding.",
           "the labels of the padding positions must be -100.")
    expect(labels == want["labels"].tolist(), "some label inside an example changed.", "copy each example's labels unchanged before padding.")
    expect(mask == want["attention_mask"].tolist(), "the attention_mask is wrong: "
           + ("it hides the real EOS token." if any(len(m) >= len(e) and m[len(e) - 1] == 0 for m, e in zip(mask, rows)) else "it does not mark exactly the real tokens."),
           "build the mask from the lengths (1 for each real token, EOS included; 0 for padding), not from `ids != pad_id`.")
    return f"EOS stays trained and padding is ignored on {len(examples)} {case.kind} examples with pad == eos (id {pad})."
