"""The HTTP server (issue 15): real requests over loopback with urllib, with and without an adapter; bad requests get 4xx."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import pytest
import torch
from peft import LoraConfig, get_peft_model
from tiny import save_tiny

from ftcourse.deploy import load_adapters, using_adapter
from ftcourse.errors import CourseError
from ftcourse.generation import generate
from ftcourse.models import load_model
from ftcourse.serving import ChatServer
from ftcourse.tools.cli import build_parser

CHAT = [{"role": "user", "content": "Where is my parcel?"}]


@pytest.fixture(scope="module")
def served(tmp_path_factory, tokenizer):
    """A tiny Llama (the embedded tokenizer's vocabulary) with two random LoRA adapters, served on a free port."""
    base_dir = save_tiny("llama", tmp_path_factory.mktemp("tiny") / "llama", tokenizer, vocab_size=len(tokenizer))
    folders = {}
    for seed, name in ((1, "intent"), (2, "support")):
        torch.manual_seed(seed)
        adapter = get_peft_model(load_model(str(base_dir)), LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
        folders[name] = tmp_path_factory.mktemp(name)
        adapter.save_pretrained(folders[name])
    model = load_adapters(folders)
    server = ChatServer(model, tokenizer, max_input_tokens=64, max_new_tokens=8).start()
    yield server, model
    server.stop()


def _call(url: str, data: bytes | None = None, method: str | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _chat(server, **body) -> tuple[int, dict]:
    return _call(server.url + "/v1/chat/completions", json.dumps(body).encode())


def test_health_and_models(served):
    server, _ = served
    assert _call(server.url + "/health") == (200, {"status": "ok"})
    status, listing = _call(server.url + "/v1/models")
    assert status == 200 and [m["id"] for m in listing["data"]] == ["base", "intent", "support"]


def test_each_model_name_routes_to_its_adapter(served, tokenizer):
    server, model = served
    answers = {}
    for name in ("base", "intent", "support"):
        status, reply = _chat(server, model=name, messages=CHAT, max_tokens=6)
        assert status == 200 and reply["object"] == "chat.completion" and reply["model"] == name
        assert reply["choices"][0]["message"]["role"] == "assistant"
        assert reply["usage"]["total_tokens"] == reply["usage"]["prompt_tokens"] + reply["usage"]["completion_tokens"]
        answers[name] = reply["choices"][0]["message"]["content"]
        with using_adapter(model, None if name == "base" else name):  # the same model, switched by hand
            assert answers[name] == generate(model, tokenizer, [CHAT], max_new_tokens=6, progress=False)[0]
    assert len(set(answers.values())) == 3  # three different models answered
    assert model.active_adapter == "intent"  # the server put the default adapter back


@pytest.mark.parametrize("body, status, words", [
    (b"{not json", 400, "not valid JSON"),
    (b"[1, 2]", 400, "JSON object"),
    (json.dumps({"model": "nope", "messages": CHAT}).encode(), 404, "Unknown model"),
    (json.dumps({"messages": CHAT}).encode(), 400, "'model'"),
    (json.dumps({"model": "base"}).encode(), 400, "'messages'"),
    (json.dumps({"model": "base", "messages": "hi"}).encode(), 400, "'messages'"),
    (json.dumps({"model": "base", "messages": [{"role": "user", "content": 3}]}).encode(), 400, "messages[0]"),
    (json.dumps({"model": "base", "messages": CHAT, "max_tokens": "5"}).encode(), 400, "max_tokens"),
    (json.dumps({"model": "base", "messages": CHAT, "max_tokens": 9}).encode(), 400, "max_tokens"),
    (json.dumps({"model": "base", "messages": CHAT, "temperature": -1}).encode(), 400, "temperature"),
    (json.dumps({"model": "base", "messages": CHAT, "stream": True}).encode(), 400, "Streaming"),
    (json.dumps({"model": "base", "messages": [{"role": "user", "content": "word " * 200}]}).encode(), 400, "at most 64"),
])
def test_bad_requests_get_a_clear_4xx(served, body, status, words):
    server, _ = served
    got, reply = _call(server.url + "/v1/chat/completions", body)
    assert got == status and words in reply["error"]["message"]
    assert _call(server.url + "/health")[0] == 200  # still serving


def test_unknown_routes_are_404(served):
    server, _ = served
    assert _call(server.url + "/v2/other")[0] == 404
    assert _call(server.url + "/v1/models", b"{}")[0] == 404


def test_stop_leaves_no_thread_and_frees_the_port(tokenizer, served):
    _, model = served
    before = set(threading.enumerate())
    with ChatServer(model, tokenizer) as server:
        url = server.url
        assert _call(url + "/health")[0] == 200
    assert set(threading.enumerate()) <= before
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url + "/health", timeout=5)


def test_a_plain_model_serves_only_the_base(tokenizer, tmp_path):
    model = load_model(str(save_tiny("llama", tmp_path / "m", tokenizer, vocab_size=len(tokenizer))))
    with ChatServer(model, tokenizer, base_name="tiny") as server:
        assert _chat(server, model="tiny", messages=CHAT, max_tokens=3)[0] == 200
        assert _chat(server, model="base", messages=CHAT)[0] == 404


def test_cli_rejects_a_malformed_adapter_spec():
    args = build_parser().parse_args(["serve", "--adapter", "no-equals-sign"])
    with pytest.raises(CourseError, match="NAME=FOLDER"):
        args.func(args)


def test_the_serve_command_answers_and_stops_cleanly_on_sigterm(tmp_path, tokenizer):
    """`ftcourse serve` in its own process: it prints its address, answers, and exits 0 on SIGTERM."""
    import os
    import signal
    import subprocess
    import sys

    folder = save_tiny("llama", tmp_path / "m", tokenizer, vocab_size=len(tokenizer))
    process = subprocess.Popen([sys.executable, "-m", "ftcourse.tools.cli", "serve", "--model", str(folder), "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = process.stdout.readline()
        assert line.startswith("serving base on http://127.0.0.1:"), line
        url = line.split(" on ")[1].split()[0]
        assert _call(url + "/health") == (200, {"status": "ok"})
        assert _call(url + "/v1/chat/completions", json.dumps({"model": "base", "messages": CHAT, "max_tokens": 2}).encode())[0] == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
        assert "stopped" in process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
