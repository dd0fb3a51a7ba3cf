"""Checks of exercise 01, data preparation (``solutions/ex01_data_preparation.ipynb``)."""

from __future__ import annotations

from collections import Counter

from ftcourse.course.checks.core import call_learner, expect, forbid_helpers, self_check

__all__ = [
    "check_ex01_task1", "check_ex01_task2", "check_ex01_task3", "check_ex01_task4", "check_ex01_task5",
    "check_ex01_task6", "ex01_buggy_collate", "EX01_MESSY_RECORDS",
]

def _intent_data():
    from ftcourse.course.bundled import INTENT_LABELS, raw_path
    from ftcourse.data import read_dataset

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
           "load data/raw/support_intents.jsonl (ftcourse.course.bundled.raw_path) and keep every record.")
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
    from ftcourse.metrics import normalize_text

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
    from ftcourse.course.bundled import intent_splits

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
    from ftcourse.course.bundled import INTENT_LABELS, intent_splits
    from ftcourse.data import to_messages
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
    from ftcourse.course.bundled import INTENT_LABELS, intent_splits
    from ftcourse.data import to_messages
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
    from ftcourse.course.bundled import INTENT_LABELS, intent_splits
    from ftcourse.data import to_messages
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
