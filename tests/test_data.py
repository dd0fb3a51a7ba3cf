"""Data preparation: loading and validation, splits, duplicates and leakage, formatting, masking, packing, the script."""

from __future__ import annotations

import copy
import itertools
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from ftcourse import paths
from ftcourse.course import bundled
from ftcourse.course.bundled import INTENT_LABELS, LABEL_SETS
from ftcourse.data import DataError, conflicting_duplicates, find_duplicates, find_leakage, processed_records, read_dataset, read_jsonl, split_dataset, to_messages
from ftcourse.errors import CourseError
from ftcourse.preparation import format_summary, prepare_dataset
from ftcourse.tokenization import ALPACA_TEMPLATE, IGNORE_INDEX, prompt_ids, show_masked, tokenize_messages, tokenize_text

ROOT = paths.project_root()
INTENTS = ROOT / "data" / "raw" / "support_intents.jsonl"
GOOD = [{"text": f"where is my order {i}?", "label": "order_status"} for i in range(10)]
CANCEL = [{"text": f"cancel order {i}, please", "label": "cancel_order"} for i in range(10)]  # a second class to split


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


# ---------------------------------------------------------------- validation: one clear error per corrupted file

CORRUPTED = {
    "bad_json": ([*GOOD[:6], '{"text": "broken", "label": "order_status"', *GOOD[7:]], None, "line 7: not valid JSON"),
    "missing_label": ([*GOOD[:2], {"text": "no label here"}, *GOOD[3:]], None, "line 3: field 'label': missing"),
    "unknown_label": ([*GOOD[:4], {"text": "refund me", "label": "refund_please"}, *GOOD[5:]], INTENT_LABELS,
                      "line 5: field 'label': unknown label 'refund_please'"),
    "wrong_type": ([*GOOD[:1], {"text": "hi", "label": 5}, *GOOD[2:]], None, "line 2: field 'label': must be a string, got int 5"),
    "empty_text": ([*GOOD[:8], {"text": "   ", "label": "order_status"}, *GOOD[9:]], None, "line 9: field 'text': is empty"),
}


@pytest.mark.parametrize("case", sorted(CORRUPTED))
def test_corrupted_file_gives_one_error_naming_file_line_and_field(tmp_path, case):
    rows, labels, expected = CORRUPTED[case]
    path = write_jsonl(tmp_path / f"{case}.jsonl", rows)
    with pytest.raises(DataError) as err:
        read_dataset(path, labels=labels)
    message = str(err.value)
    assert message.startswith(f"1 problem(s) in {path}:")
    assert f"{path}, {expected}" in message


def test_empty_file_is_an_error(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n\n", encoding="utf-8")
    with pytest.raises(DataError, match=f"{path} is empty: no records"):
        read_dataset(path)


def test_all_problems_are_reported_together(tmp_path):
    path = write_jsonl(tmp_path / "many.jsonl", [GOOD[0], "not json", {"text": 1, "label": "order_status"}, {"label": "x"}])
    with pytest.raises(DataError) as err:
        read_dataset(path)
    assert str(err.value).startswith("3 problem(s)")
    assert all(f"line {n}" in str(err.value) for n in (2, 3, 4))


def test_labels_in_test_but_not_in_train_are_an_error(tmp_path):
    test_file = write_jsonl(tmp_path / "test.jsonl", [{"text": "charged twice", "label": "billing_issue"}])
    train = write_jsonl(tmp_path / "train.jsonl", GOOD + CANCEL)
    with pytest.raises(DataError, match="billing_issue occur in the test data but never in training"):
        prepare_dataset(train, tmp_path / "out", "classification", test_file=test_file, validation=0.0)


def test_hub_id_offline_is_a_clean_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match="Hugging Face Hub is off"):
        read_dataset("tatsu-lab/alpaca")


# ---------------------------------------------------------------- careless input: a clear error or a stated normalisation (issue 30)


def test_labels_differing_in_case_are_an_error_and_spaces_around_labels_are_removed(tmp_path):
    rows = [{"text": f"message {i}", "label": ["billing", "shipping", "billing", "Billing", " shipping "][i % 5]} for i in range(40)]
    with pytest.raises(DataError) as err:
        read_dataset(write_jsonl(tmp_path / "case.jsonl", rows))
    assert str(err.value).startswith("1 problem(s)")  # the spaced ' shipping ' is not a third class: it is stripped first
    assert "line 4: field 'label': 'Billing' (8 records) differs from 'billing' (16 records) only in case" in str(err.value)
    assert len(read_dataset(tmp_path / "case.jsonl", labels=["billing", "Billing", "shipping"]).records) == 40  # named: 3 classes
    spaced = [{**r, "label": r["label"].replace("Billing", "billing")} for r in rows]
    info = prepare_dataset(write_jsonl(tmp_path / "spaced.jsonl", spaced), tmp_path / "out", "classification")
    assert info["labels"] == ["billing", "shipping"] and info["distribution"]["train"] == {"billing": 20, "shipping": 12}
    assert info["notes"] == ["8 label(s) had spaces around them, removed (lines 5, 10, 15, 20, 25 ...)"]
    assert "  normalised: 8 label(s) had spaces around them, removed" in format_summary(info)
    assert {r["label"] for r in read_jsonl(tmp_path / "splits" / "train.jsonl")} == {"billing", "shipping"}


@pytest.mark.parametrize(("rows", "sizes", "expected"), [
    (GOOD[:1], {}, "has a single label, 'order_status', in all its 1 record(s)"),
    (GOOD, {}, "has a single label, 'order_status', in all its 10 record(s)"),
    (GOOD[:4] + CANCEL[:4], {}, "The validation split came out empty: 10% of the records of each label (stratified; the largest label has 4)"),
    (GOOD[:4] + CANCEL[:4], {"validation": 0.0}, "The test split came out empty"),
    ([{"instruction": "Say hi.", "output": "Hi."}], {"validation": 0.0}, "The test split came out empty: 10% of 1 record(s) rounds to 0"),
    (GOOD[:2] + CANCEL[:2], {"validation": 0.5, "test": 0.4}, "No record of"),
])
def test_one_record_one_label_or_an_empty_split_is_an_error(tmp_path, rows, sizes, expected):
    task = "instruction" if "instruction" in rows[0] else "classification"
    with pytest.raises(DataError, match=re.escape(expected)):
        prepare_dataset(write_jsonl(tmp_path / "d.jsonl", rows), tmp_path / "out", task, **sizes)
    assert not (tmp_path / "out").exists() and not (tmp_path / "splits").exists()


def test_invisible_text_and_nan_fields_are_errors(tmp_path):
    rows = [GOOD[0], {"text": "\u200b\u200b \u2060", "label": "order_status"}, {**GOOD[1], "score": float("nan")},
            {**GOOD[2], "meta": {"weights": [1.0, float("-inf")]}}]
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")  # json.dumps writes NaN and -Infinity
    with pytest.raises(DataError) as err:
        read_dataset(path)
    message = str(err.value)
    assert message.startswith("3 problem(s)")
    assert "line 2: field 'text': has no visible characters (only U+200B ZERO WIDTH SPACE, U+2060 WORD JOINER)" in message
    assert "line 3: field 'score': is NaN, which is not a JSON value" in message
    assert "line 4: field 'meta.weights[1]': is -Infinity, which is not a JSON value" in message


def test_a_utf8_bom_is_accepted_and_utf16_is_named(tmp_path):
    (tmp_path / "bom.jsonl").write_bytes(b"\xef\xbb\xbf" + "".join(json.dumps(r) + "\n" for r in GOOD[:2]).encode())
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbftext,label\nhello,order_status\n")
    assert read_dataset(tmp_path / "bom.jsonl").records == GOOD[:2]
    assert read_dataset(tmp_path / "bom.csv").records == [{"text": "hello", "label": "order_status"}]
    for encoding in ("utf-16", "utf-16-le"):  # with and without a byte-order mark
        path = tmp_path / f"{encoding}.jsonl"
        path.write_text(json.dumps(GOOD[0]) + "\n", encoding=encoding)
        with pytest.raises(DataError, match=f"{path} is UTF-16 text, not UTF-8") as err:
            read_dataset(path)
        assert "iconv -f UTF-16 -t UTF-8" in err.value.fix and "latin" not in err.value.fix


def test_a_json_array_in_a_jsonl_file_and_broken_links_are_named(tmp_path):
    path = tmp_path / "list.jsonl"
    path.write_text(json.dumps(GOOD[:3], indent=1), encoding="utf-8")
    with pytest.raises(DataError, match="holds a JSON array, but a .jsonl file is JSON Lines") as err:
        read_dataset(path)
    assert "list.json" in err.value.fix
    (tmp_path / "a.jsonl").symlink_to("b.jsonl")
    (tmp_path / "b.jsonl").symlink_to("a.jsonl")
    (tmp_path / "gone.jsonl").symlink_to("missing.jsonl")
    with pytest.raises(DataError, match="a.jsonl is a symbolic link that loops back on itself"):
        read_dataset(tmp_path / "a.jsonl")
    with pytest.raises(DataError, match="gone.jsonl is a symbolic link to missing.jsonl, which does not exist"):
        read_dataset(tmp_path / "gone.jsonl")
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "loop.md").symlink_to("loop.md")
    with pytest.raises(DataError, match="loop.md is a symbolic link that loops back on itself"):
        read_dataset(tmp_path / "corpus")


# ---------------------------------------------------------------- formats and file types

FORMAT_RECORDS = {
    "classification": {"text": "where is my parcel?", "label": "order_status"},
    "alpaca": {"instruction": "Summarise.", "input": "A long text.", "output": "Short."},
    "chat": {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]},
    "sharegpt": {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello!"}]},
    "text": {"text": "Plain text for continued pre-training."},
}


@pytest.mark.parametrize("fmt", sorted(FORMAT_RECORDS))
def test_each_format_is_detected_and_formatted(tmp_path, fmt):
    path = write_jsonl(tmp_path / "d.jsonl", [FORMAT_RECORDS[fmt]] * 2)
    data = read_dataset(path)
    assert data.fmt == fmt and len(data) == 2
    if fmt == "text":
        assert processed_records(data) == [{"text": FORMAT_RECORDS["text"]["text"]}] * 2
    else:
        messages = to_messages(data.records[0], fmt, labels=INTENT_LABELS)
        assert messages[-1]["role"] == "assistant" and messages[-1]["content"] in ("order_status", "Short.", "Hello!")


def test_format_override_validates_against_the_forced_format(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [FORMAT_RECORDS["classification"]])
    assert read_dataset(path, fmt="text").fmt == "text"
    with pytest.raises(DataError, match="field 'instruction': missing"):
        read_dataset(path, fmt="alpaca")


def test_four_file_types_load_the_same_records(tmp_path):
    rows = [{"text": f"message {i}", "label": INTENT_LABELS[i % 3]} for i in range(6)]
    chat = [{"messages": FORMAT_RECORDS["chat"]["messages"]}] * 2
    write_jsonl(tmp_path / "a.jsonl", rows)
    (tmp_path / "a.json").write_text(json.dumps({"data": rows}), encoding="utf-8")
    pd.DataFrame(rows).to_csv(tmp_path / "a.csv", index=False)
    pd.DataFrame(rows).to_parquet(tmp_path / "a.parquet")
    for suffix in ("jsonl", "json", "csv", "parquet"):
        data = read_dataset(tmp_path / f"a.{suffix}")
        assert (data.fmt, data.records) == ("classification", rows), suffix
    # nested turns survive CSV (a JSON cell) and Parquet (list of structs)
    pd.DataFrame({"messages": [json.dumps(r["messages"]) for r in chat]}).to_csv(tmp_path / "c.csv", index=False)
    pd.DataFrame(chat).to_parquet(tmp_path / "c.parquet")
    for suffix in ("csv", "parquet"):
        assert read_dataset(tmp_path / f"c.{suffix}").records == chat, suffix


def test_csv_errors_name_the_file_line(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('text,label\nhello,order_status\n"two\nlines",\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"d\.csv, line 3: field 'label': is empty"):
        read_dataset(path)


def test_folder_of_text_files_loads_without_readme():
    data = read_dataset(ROOT / "data" / "raw" / "domain_corpus" / "train")
    assert data.fmt == "text" and len(data) == 19
    assert all(not r["source"].endswith("README.md") for r in data.records)


def test_train_jsonl_is_a_relative_symlink_to_the_intents():
    link = ROOT / "data" / "raw" / "train.jsonl"
    assert link.is_symlink() and os.readlink(link) == "support_intents.jsonl"
    assert read_dataset(link, labels=INTENT_LABELS).records == read_dataset(INTENTS).records


def test_general_knowledge_questions_have_their_answer_among_three_distinct_choices():
    rows = [json.loads(line) for line in (ROOT / "data" / "raw" / "general_knowledge.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 40 and len({r["question"] for r in rows}) == 40
    assert all(len(set(r["choices"])) == 3 and r["answer"] in r["choices"] for r in rows)
    assert {r["choices"].index(r["answer"]) for r in rows} == {0, 1, 2}  # the right answer is not always in one place


# ---------------------------------------------------------------- splits, duplicates, leakage


def test_splits_are_stratified_and_reproducible(tmp_path):
    first = prepare_dataset(INTENTS, tmp_path / "a" / "processed", "classification", seed=42)
    prepare_dataset(INTENTS, tmp_path / "b" / "processed", "classification", seed=42)
    prepare_dataset(INTENTS, tmp_path / "c" / "processed", "classification", seed=7)
    assert first["counts"] == {"train": 800, "validation": 100, "test": 100}
    assert all(first["distribution"][name] == dict.fromkeys(sorted(INTENT_LABELS), n)
               for name, n in (("train", 80), ("validation", 10), ("test", 10)))
    for folder in ("splits", "processed"):
        for name in ("train", "validation", "test"):
            a, b, c = ((tmp_path / run / folder / f"{name}.jsonl").read_bytes() for run in "abc")
            assert a == b, f"{folder}/{name} differs between two runs with the same seed"
            assert a != c, f"{folder}/{name} is the same with another seed"


def test_script_splits_match_the_bundled_splits(tmp_path):
    prepare_dataset(INTENTS, tmp_path / "processed", "classification", label_sets=LABEL_SETS)  # as the script calls it
    assert read_jsonl(tmp_path / "processed" / "test.jsonl") == processed_records(bundled.intent_splits()["test"], INTENT_LABELS)


def test_duplicates_and_conflicting_labels_are_found(tmp_path):
    rows = [*GOOD[:5], {"text": "  WHERE is my order 1? ", "label": "order_status"}, {"text": "where is my order 2?", "label": "cancel_order"}]
    data = read_dataset(write_jsonl(tmp_path / "d.jsonl", rows))
    pairs = find_duplicates(data)
    assert pairs == [(2, 6), (3, 7)]
    assert conflicting_duplicates(data, pairs) == [(3, 7)]


def test_leakage_is_found_and_can_be_dropped(tmp_path):
    rows = [{"text": f"message number {i}", "label": INTENT_LABELS[i % 2]} for i in range(20)]
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    test_file = write_jsonl(tmp_path / "test.jsonl", [{"text": "Message  number 3", "label": INTENT_LABELS[1]}, {"text": "new one", "label": INTENT_LABELS[0]}])
    info = prepare_dataset(train, tmp_path / "p1", "classification", test_file=test_file, validation=0.0)
    assert info["leakage_lines"] == {"validation": [], "test": [1], "test_in_validation": []} and info["counts"]["test"] == 2
    assert "leakage (input also in train): test 1 (lines 1) — kept" in format_summary(info)
    dropped = prepare_dataset(train, tmp_path / "p2", "classification", test_file=test_file, validation=0.0,
                              splits_dir=tmp_path / "s2", drop_leakage=True)
    assert dropped["counts"]["test"] == 1
    assert find_leakage(read_dataset(tmp_path / "s2" / "train.jsonl"), read_dataset(tmp_path / "s2" / "test.jsonl")) == []


def test_leakage_between_validation_and_test_is_found_and_can_be_dropped(tmp_path):
    rows = [{"text": f"message number {i}", "label": INTENT_LABELS[i % 2]} for i in range(20)]
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    first = prepare_dataset(train, tmp_path / "p0", "classification", test_file=write_jsonl(tmp_path / "t0.jsonl", [{"text": "x", "label": INTENT_LABELS[0]}]),
                            validation=0.2, splits_dir=tmp_path / "s0")
    seen = read_jsonl(tmp_path / "s0" / "validation.jsonl")[0]  # same seed: the same validation split below
    test_file = write_jsonl(tmp_path / "test.jsonl", [{"text": "new one", "label": INTENT_LABELS[0]}, {**seen, "text": seen["text"].upper()}])
    info = prepare_dataset(train, tmp_path / "p1", "classification", test_file=test_file, validation=0.2, splits_dir=tmp_path / "s1")
    assert first["counts"] == {"train": 16, "validation": 4, "test": 1}
    assert info["leakage_lines"] == {"validation": [], "test": [], "test_in_validation": [2]}
    assert "leakage (test input also in validation): 1 (test lines 2) — kept" in format_summary(info)
    dropped = prepare_dataset(train, tmp_path / "p2", "classification", test_file=test_file, validation=0.2,
                              splits_dir=tmp_path / "s2", drop_leakage=True)
    assert dropped["counts"]["test"] == 1 and read_jsonl(tmp_path / "s2" / "test.jsonl") == [{"text": "new one", "label": INTENT_LABELS[0]}]


def test_drop_duplicates_removes_them_before_the_split(tmp_path):
    rows = [*GOOD, *CANCEL, *GOOD[:3]]
    info = prepare_dataset(write_jsonl(tmp_path / "d.jsonl", rows), tmp_path / "out", "classification", drop_dupes=True)
    assert len(info["duplicates"]) == 3 and sum(info["counts"].values()) == 20


# ---------------------------------------------------------------- outputs


def test_overwrite_refusal_leaves_every_output_untouched(tmp_path):
    out = tmp_path / "processed"
    prepare_dataset(INTENTS, out, "classification", seed=42)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*.json*")}
    prepare_dataset(INTENTS, out, "classification", seed=42)  # identical re-run: fine
    with pytest.raises(CourseError, match="already exist.*different contents"):
        prepare_dataset(INTENTS, out, "classification", seed=1)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*.json*")} == before
    # all or nothing: with fresh split files the refused run must not write them either
    for split_file in (tmp_path / "splits").iterdir():
        split_file.unlink()
    with pytest.raises(CourseError):
        prepare_dataset(INTENTS, out, "classification", seed=1)
    assert list((tmp_path / "splits").iterdir()) == []
    prepare_dataset(INTENTS, out, "classification", seed=1, overwrite=True)
    assert (out / "test.jsonl").read_bytes() != before[out / "test.jsonl"]


def test_original_command_works_and_prints_a_summary(tmp_path):
    cmd = [sys.executable, "scripts/prepare_dataset.py", "--input_file", "data/raw/train.jsonl",
           "--output_dir", str(tmp_path / "processed"), "--task_type", "classification", "--splits_dir", str(tmp_path / "splits")]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr
    assert "records:    train 800 · validation 100 · test 100" in proc.stdout
    assert "duplicates: none" in proc.stdout and "leakage (input also in train): none" in proc.stdout
    assert "token lengths (max_seq_length 256)" in proc.stdout
    info = json.loads((tmp_path / "processed" / "dataset_info.json").read_text())
    assert info["source"] == "data/raw/train.jsonl" and info["labels"] == list(INTENT_LABELS)
    assert sorted(p.name for p in (tmp_path / "splits").iterdir()) == ["test.jsonl", "train.jsonl", "validation.jsonl"]
    # a problem is one line of "error: ..." with exit code 2, no traceback
    bad = write_jsonl(tmp_path / "bad.jsonl", CORRUPTED["bad_json"][0])
    proc = subprocess.run([*cmd[:3], str(bad), *cmd[4:], "--model_name_or_path", "none"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.startswith("error: 1 problem(s)") and "Traceback" not in proc.stderr
    assert f"{bad}, line 7: not valid JSON" in proc.stderr


# ---------------------------------------------------------------- formatting, masking, packing


def test_masked_view_trains_only_the_response_and_eos(tokenizer):
    record = read_dataset(INTENTS).records[0]
    example = tokenize_messages(tokenizer, to_messages(record, "classification", INTENT_LABELS))
    trained = [tok for tok, lbl in zip(example["input_ids"], example["labels"]) if lbl != IGNORE_INDEX]
    assert tokenizer.decode(trained) == record["label"] + tokenizer.eos_token
    assert trained[-1] == tokenizer.eos_token_id == example["input_ids"][-1]
    view = show_masked(tokenizer, example)
    assert view.count("[[") == 1 and view.endswith(f"[[{record['label']}{tokenizer.eos_token}]]")
    assert record["text"] in view.split("[[")[0]


THREE_TURNS = [
    {"role": "system", "content": "You are the shop's assistant."},
    {"role": "user", "content": "Where is order 1234?"},
    {"role": "assistant", "content": "It ships tomorrow."},
    {"role": "user", "content": "Can I change the address?"},
    {"role": "assistant", "content": "Yes, on your account page."},
    {"role": "user", "content": "Thanks!"},
    {"role": "assistant", "content": "You're welcome."},
]


def trained_runs(tokenizer, example) -> list[str]:
    """The trained stretches of a tokenized example, decoded, in order."""
    pairs = zip(example["input_ids"], example["labels"])
    return [tokenizer.decode([tok for tok, _ in run]) for trained, run in itertools.groupby(pairs, key=lambda p: p[1] != IGNORE_INDEX) if trained]


def test_every_assistant_turn_is_trained_and_nothing_else(tokenizer):
    example = tokenize_messages(tokenizer, THREE_TURNS)
    answers = [m["content"] + tokenizer.eos_token for m in THREE_TURNS if m["role"] == "assistant"]
    assert trained_runs(tokenizer, example) == answers
    assert example["input_ids"][: len(prompt_ids(tokenizer, THREE_TURNS[:-1]))] == prompt_ids(tokenizer, THREE_TURNS[:-1])
    masked = tokenizer.decode([tok for tok, lbl in zip(example["input_ids"], example["labels"]) if lbl == IGNORE_INDEX])
    assert all(m["content"] in masked for m in THREE_TURNS if m["role"] != "assistant") and "assistant" in masked
    single = tokenize_messages(tokenizer, THREE_TURNS[:3])  # one turn: the prompt masked, then the answer and EOS trained
    prompt = prompt_ids(tokenizer, THREE_TURNS[:2])
    target = tokenizer(THREE_TURNS[2]["content"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert single == {"input_ids": prompt + target, "labels": [IGNORE_INDEX] * len(prompt) + target, "truncated": False}


def test_a_template_that_rewrites_earlier_turns_is_refused(tokenizer):
    rewriting = copy.deepcopy(tokenizer)  # drops every assistant turn but the last, as reasoning templates drop <think>
    rewriting.chat_template = (
        "{% for message in messages %}{% if message['role'] != 'assistant' or loop.last %}"
        "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% else %}"
        "{{ '<|im_start|>assistant\\n<|im_end|>\\n' }}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
    with pytest.raises(CourseError, match="assistant turn #2") as error:
        tokenize_messages(rewriting, THREE_TURNS)
    assert "one example per assistant turn" in error.value.fix
    assert trained_runs(rewriting, tokenize_messages(rewriting, THREE_TURNS[:3])) == ["It ships tomorrow." + tokenizer.eos_token]


def test_alpaca_prompt_for_a_tokenizer_without_chat_template(tokenizer):
    plain = copy.deepcopy(tokenizer)
    plain.chat_template = None
    record = FORMAT_RECORDS["alpaca"]
    example = tokenize_messages(plain, to_messages(record, "alpaca"))
    prompt = [tok for tok, lbl in zip(example["input_ids"], example["labels"]) if lbl == IGNORE_INDEX]
    assert plain.decode(prompt, skip_special_tokens=True) == ALPACA_TEMPLATE.format(instruction="Summarise.", input="A long text.")
    trained = [tok for tok, lbl in zip(example["input_ids"], example["labels"]) if lbl != IGNORE_INDEX]
    assert plain.decode(trained) == "Short." + plain.eos_token


def test_packing_produces_full_blocks(tokenizer):
    texts = bundled.domain_texts()["heldout"]
    packed = tokenize_text(tokenizer, texts, max_length=128, packing=True)
    unpacked = tokenize_text(tokenizer, texts, max_length=128)
    assert all(len(b["input_ids"]) == 128 for b in packed[:-1])
    assert sum(len(b["input_ids"]) == 128 for b in unpacked) < len(unpacked) - 1  # one short block per document
    stream = [tok for text in texts for tok in tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]]
    assert [tok for b in packed for tok in b["input_ids"]] == stream
    assert all(b["labels"] == b["input_ids"] for b in packed)


def test_text_task_on_the_domain_corpus_reports_packed_blocks(tmp_path, tokenizer):
    info = prepare_dataset(ROOT / "data" / "raw" / "domain_corpus" / "train", tmp_path / "processed", "text",
                           tokenizer=tokenizer, max_seq_length=256, packing=True, test=0.0)
    stats = info["token_lengths"]["train"]
    assert info["counts"] == {"train": 17, "validation": 2, "test": 0}
    assert stats["full"] == stats["count"] - 1 and stats["max"] == 256
    assert "blocks" in format_summary(info) and read_jsonl(tmp_path / "processed" / "train.jsonl")[0].keys() == {"text"}


def test_task_type_must_match_the_format(tmp_path):
    with pytest.raises(DataError, match="use task_type=.instruction."):
        prepare_dataset(ROOT / "data" / "raw" / "support_instructions.jsonl", tmp_path / "p", "classification")


def test_split_of_instructions_is_stratified_by_task():
    parts = split_dataset(read_dataset(ROOT / "data" / "raw" / "support_instructions.jsonl"), seed=42)
    assert [sum(r["task"] == "extract" for r in parts[name].records) for name in ("train", "validation", "test")] == [200, 25, 25]


# ---------------------------------------------------------------- plots


def test_label_distribution_plot_draws_the_counts():
    from ftcourse.course.plots import label_distribution, token_length_histogram

    ax = label_distribution({"train": {"a": 3, "b": 1}, "test": {"a": 1}})
    assert sorted(bar.get_width() for bar in ax.patches) == [0, 1, 1, 3]
    ax = token_length_histogram({"x": [10, 12, 12, 40]}, max_length=32)
    assert sum(bar.get_height() for bar in ax.patches) == 4


def test_one_rule_infers_a_label_set():
    """The course's intents in its order when the labels are among them (a test set may lack some), else sorted."""
    from ftcourse.data import infer_labels

    assert infer_labels(["return_refund", "order_status"], [INTENT_LABELS]) == list(INTENT_LABELS)
    assert infer_labels(INTENT_LABELS, [INTENT_LABELS]) == list(INTENT_LABELS)
    assert infer_labels(["return_refund", "order_status"]) == ["order_status", "return_refund"]
    assert infer_labels(["spam", "ham", "order_status"]) == ["ham", "order_status", "spam"]
