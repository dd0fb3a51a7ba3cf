"""The HTTP server (issues 15, 24, 30): real requests over loopback with urllib, raw sockets and the official openai client,
on tiny Llamas with and without adapters and on the embedded model; every error is JSON in OpenAI's shape."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

import openai
import pytest
import torch
from peft import LoraConfig, PrefixTuningConfig, get_peft_model
from tiny import save_tiny
from transformers.generation.streamers import BaseStreamer

from ftcourse.deploy import load_adapters, using_adapter
from ftcourse.errors import CourseError
from ftcourse.generation import encode_prompt, generate
from ftcourse.models import load_model
from ftcourse.serving import ChatServer
from ftcourse.tools.cli import build_parser, main

CHAT = [{"role": "user", "content": "Where is my parcel?"}]
TIMEOUT = 120  # seconds a request may take before the test fails instead of hanging


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory, tokenizer):
    return save_tiny("llama", tmp_path_factory.mktemp("tiny") / "llama", tokenizer, vocab_size=len(tokenizer))


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_folder, tokenizer):
    """A tiny Llama (the embedded tokenizer's vocabulary) with two random LoRA adapters, served on a free port."""
    folders = {}
    for seed, name in ((1, "intent"), (2, "support")):
        torch.manual_seed(seed)
        adapter = get_peft_model(load_model(str(tiny_folder)), LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
        folders[name] = tmp_path_factory.mktemp(name)
        adapter.save_pretrained(folders[name])
    model = load_adapters(folders)
    server = ChatServer(model, tokenizer, max_input_tokens=64, max_new_tokens=8).start()
    yield server, model
    server.stop()


@pytest.fixture(scope="module")
def embedded(base_model, tokenizer):
    """The embedded model behind an API key, and an openai client that sends the key."""
    with ChatServer(base_model, tokenizer, max_new_tokens=32, api_key="sk-course") as server:
        yield server, openai.OpenAI(base_url=server.url + "/v1", api_key="sk-course", max_retries=0, timeout=TIMEOUT)


def _call(url: str, data: bytes | None = None, method: str | None = None, headers: dict | None = None) -> tuple[int, dict]:
    return _call_with_headers(url, data, method, headers)[:2]


def _call_with_headers(url: str, data: bytes | None = None, method: str | None = None, headers: dict | None = None) -> tuple[int, dict, dict]:
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return response.status, json.loads(response.read()), {k.lower(): v for k, v in response.headers.items()}
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read()), {k.lower(): v for k, v in error.headers.items()}


def _chat(server, **body) -> tuple[int, dict]:
    return _call(server.url + "/v1/chat/completions", json.dumps(body).encode())


def _generated_ids(model, tokenizer, messages, max_new_tokens: int) -> list[int]:
    """The token ids greedy decoding generates after the prompt, from transformers' own generate (EOS included)."""
    prompt = torch.tensor([encode_prompt(tokenizer, messages)])
    out = model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=max_new_tokens, do_sample=False,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    return out[0, prompt.shape[1]:].tolist()


def _raw(server, request: bytes) -> bytes:
    """Send bytes on a fresh connection; return all the server sends until it closes the connection."""
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=TIMEOUT) as sock:
        sock.sendall(request)
        reply = b""
        while chunk := sock.recv(65536):  # a server that waits for a body never sent ends the test with socket.timeout
            reply += chunk
    return reply


def _is_openai_error(reply: dict) -> bool:
    error = reply.get("error", {})
    return set(reply) == {"error"} and set(error) == {"message", "type", "code"} and isinstance(error["message"], str)


def test_health_and_models(served):
    server, _ = served
    assert _call(server.url + "/health") == (200, {"status": "ok"})
    status, listing = _call(server.url + "/v1/models")
    assert status == 200 and [m["id"] for m in listing["data"]] == ["base", "intent", "support"]
    assert _call(server.url + "/openapi.json")[1]["paths"].keys() >= {"/v1/chat/completions", "/v1/models", "/health"}


def test_each_model_name_routes_to_its_adapter_and_usage_counts_the_generated_ids(served, tokenizer):
    server, model = served
    answers = {}
    for name in ("base", "intent", "support"):
        status, reply = _chat(server, model=name, messages=CHAT, max_tokens=6)
        assert status == 200 and reply["object"] == "chat.completion" and reply["model"] == name
        assert reply["choices"][0]["message"]["role"] == "assistant"
        answers[name] = reply["choices"][0]["message"]["content"]
        with using_adapter(model, None if name == "base" else name):  # the same model, switched by hand
            assert answers[name] == generate(model, tokenizer, [CHAT], max_new_tokens=6, progress=False)[0]
            ids = _generated_ids(model, tokenizer, CHAT, 6)
        prompt = len(encode_prompt(tokenizer, CHAT))
        assert reply["usage"] == {"prompt_tokens": prompt, "completion_tokens": len(ids), "total_tokens": prompt + len(ids)}
        assert reply["choices"][0]["finish_reason"] == ("stop" if ids[-1] == tokenizer.eos_token_id else "length")
    assert len(set(answers.values())) == 3  # three different models answered
    assert model.active_adapter == "intent"  # the server put the default adapter back


def test_openais_newer_names_and_nulls_are_understood(served):
    """max_completion_tokens is OpenAI's newer name for max_tokens; null means the default, as in OpenAI's API."""
    server, _ = served
    _, greedy = _chat(server, model="base", messages=CHAT, max_tokens=3)
    status, reply = _chat(server, model="base", messages=CHAT, max_completion_tokens=3, temperature=None, top_p=None, seed=None, stream=None)
    assert status == 200 and reply["usage"] == greedy["usage"] and reply["choices"][0]["message"] == greedy["choices"][0]["message"]
    assert _chat(server, model="base", messages=CHAT, max_completion_tokens=9)[0] == 400  # over the server's 8, like max_tokens


def test_a_streamer_sees_the_same_tokens_on_the_prefix_tuning_path(tiny_folder, tokenizer):
    """Prefix-tuning models are decoded token by token (not by model.generate): the streamer gets the prompt, each token, then the end."""

    class Collect(BaseStreamer):
        def __init__(self):
            self.puts, self.ended = [], False

        def put(self, value):
            self.puts.append(value.flatten().tolist())

        def end(self):
            self.ended = True

    torch.manual_seed(0)
    model = get_peft_model(load_model(str(tiny_folder)), PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4))
    streamer = Collect()
    answer = generate(model, tokenizer, [CHAT], max_new_tokens=5, progress=False, streamer=streamer)[0]
    prompt, *tokens = streamer.puts
    assert prompt == encode_prompt(tokenizer, CHAT) and streamer.ended and all(len(t) == 1 for t in tokens) and 1 <= len(tokens) <= 5
    assert tokenizer.decode(sum(tokens, []), skip_special_tokens=True).strip() == answer
    with pytest.raises(CourseError, match="one prompt"):
        generate(model, tokenizer, [CHAT, CHAT], streamer=Collect())


@pytest.mark.parametrize("body, status, words", [
    (b"{not json", 400, "not valid JSON"),
    (b"[1, 2]", 400, "JSON object"),
    (b"[" * 100_000 + b"]" * 100_000, 400, "RecursionError"),  # deeply nested JSON: a 500 before
    (json.dumps({"model": "nope", "messages": CHAT}).encode(), 404, "Unknown model"),
    (json.dumps({"messages": CHAT}).encode(), 400, "'model'"),
    (json.dumps({"model": "base"}).encode(), 400, "'messages'"),
    (json.dumps({"model": "base", "messages": "hi"}).encode(), 400, "'messages'"),
    (json.dumps({"model": "base", "messages": []}).encode(), 400, "'messages'"),
    (json.dumps({"model": "base", "messages": [{"role": "user", "content": 3}]}).encode(), 400, "'messages[0].content'"),
    (json.dumps({"model": "base", "messages": [{"role": "robot", "content": "hi"}]}).encode(), 400, "'messages[0].role'"),
    (json.dumps({"model": "base", "messages": [*CHAT, {"role": "assistant", "content": "hi"}]}).encode(), 400, "last message"),
    (json.dumps({"model": "base", "messages": CHAT, "max_tokens": "5"}).encode(), 400, "'max_tokens'"),
    (json.dumps({"model": "base", "messages": CHAT, "max_tokens": True}).encode(), 400, "'max_tokens'"),
    (json.dumps({"model": "base", "messages": CHAT, "max_tokens": 0}).encode(), 400, "'max_tokens'"),
    (json.dumps({"model": "base", "messages": CHAT, "max_tokens": 9}).encode(), 400, "at most 8"),
    (json.dumps({"model": "base", "messages": CHAT, "temperature": -1}).encode(), 400, "'temperature'"),
    (json.dumps({"model": "base", "messages": CHAT, "temperature": 2.5}).encode(), 400, "'temperature'"),
    (json.dumps({"model": "base", "messages": CHAT, "top_p": 0}).encode(), 400, "'top_p'"),
    (json.dumps({"model": "base", "messages": CHAT, "seed": -1}).encode(), 400, "'seed'"),
    (json.dumps({"model": "base", "messages": CHAT, "stream": "yes"}).encode(), 400, "'stream'"),
    (json.dumps({"model": "base", "messages": [{"role": "user", "content": "word " * 200}]}).encode(), 400, "at most 64"),
])
def test_bad_requests_get_a_clear_4xx_in_openais_shape(served, body, status, words):
    server, _ = served
    got, reply = _call(server.url + "/v1/chat/completions", body)
    assert got == status and _is_openai_error(reply) and words in reply["error"]["message"], reply
    assert _call(server.url + "/health")[0] == 200  # still serving


def test_unknown_routes_and_wrong_methods_are_json_404_and_405(served):
    server, _ = served
    got, reply = _call(server.url + "/v2/other")
    assert got == 404 and _is_openai_error(reply) and "POST /v1/chat/completions" in reply["error"]["message"]
    for url, method, allowed in (("/v1/chat/completions", "PUT", "POST"), ("/v1/chat/completions", "DELETE", "POST"), ("/v1/models", "POST", "GET")):
        got, reply, headers = _call_with_headers(server.url + url, b"{}", method)
        assert got == 405 and _is_openai_error(reply) and headers["allow"] == allowed and method in reply["error"]["message"]


def test_a_negative_content_length_is_refused_at_once(served):
    """It used to hang a handler thread (rfile.read(-n) reads until the client closes)."""
    server, _ = served
    reply = _raw(server, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: -5\r\n\r\n{}")
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and _is_openai_error(json.loads(body)), reply
    assert _call(server.url + "/health")[0] == 200


def test_an_oversized_body_gets_413_before_it_is_sent(served):
    """Only the headers go out: the server answers from Content-Length alone (reading the body would wait forever)."""
    server, _ = served
    reply = _raw(server, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10485760\r\n\r\n")
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413") and b"connection: close" in head.lower(), reply
    assert _is_openai_error(json.loads(body)) and "at most 1048576" in json.loads(body)["error"]["message"]
    chunked = _raw(server, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n")
    assert chunked.startswith(b"HTTP/1.1 411"), chunked


def test_twenty_concurrent_requests_all_succeed(served, tokenizer):
    """All tokenizer and model work happens in one worker thread: no 'Already borrowed' from the shared fast tokenizer."""
    server, model = served
    questions = [f"Question {i}: where is order {i * 37}?" for i in range(20)]

    def ask(question: str) -> tuple[int, dict]:
        return _chat(server, model="support", messages=[{"role": "user", "content": question}], max_tokens=4)

    with ThreadPoolExecutor(20) as pool:
        replies = list(pool.map(ask, questions))
    assert [status for status, _ in replies] == [200] * 20, [reply for status, reply in replies if status != 200]
    with using_adapter(model, "support"):
        expected = generate(model, tokenizer, [[{"role": "user", "content": q}] for q in questions], max_new_tokens=4, progress=False)
    assert [reply["choices"][0]["message"]["content"] for _, reply in replies] == expected


def test_a_full_queue_answers_503_with_retry_after(tiny_folder, tokenizer):
    """One request holds the model (blocked inside its forward pass), one waits in the queue of 1, the other is turned away."""
    model = load_model(str(tiny_folder))
    entered, release = threading.Event(), threading.Event()

    def hold(*_args) -> None:
        entered.set()
        assert release.wait(TIMEOUT)

    handle = model.register_forward_pre_hook(hold)
    body = json.dumps({"model": "base", "messages": CHAT, "max_tokens": 2}).encode()
    try:
        with ChatServer(model, tokenizer, max_new_tokens=2, max_queued=1) as server, ThreadPoolExecutor(3) as pool:
            first = pool.submit(_call_with_headers, server.url + "/v1/chat/completions", body)
            assert entered.wait(TIMEOUT)  # the worker holds the first request; the queue is empty
            others = [pool.submit(_call_with_headers, server.url + "/v1/chat/completions", body) for _ in range(2)]
            done, _ = wait(others, timeout=TIMEOUT, return_when=FIRST_COMPLETED)  # the turned-away one answers while the model is held
            status, reply, headers = done.pop().result()
            assert status == 503 and _is_openai_error(reply) and headers["retry-after"] == "1" and "busy" in reply["error"]["message"]
            release.set()
            statuses = sorted(future.result(TIMEOUT)[0] for future in [first, *others])
            assert statuses == [200, 200, 503]
    finally:
        release.set()
        handle.remove()


def test_the_official_openai_client_completes_lists_and_streams(embedded, tokenizer, base_model):
    server, client = embedded
    assert [m.id for m in client.models.list()] == ["base"]
    question = [{"role": "user", "content": "Give me two tips for writing a clear support ticket."}]
    reply = client.chat.completions.create(model="base", messages=question, max_tokens=16, seed=3)
    answer = reply.choices[0].message.content
    ids = _generated_ids(base_model, tokenizer, question, 16)
    assert answer == tokenizer.decode(ids, skip_special_tokens=True).strip() and answer  # what generate() answers
    assert reply.usage.completion_tokens == len(ids) and reply.choices[0].finish_reason == ("stop" if ids[-1] == tokenizer.eos_token_id else "length")

    chunks = list(client.chat.completions.create(model="base", messages=question, max_tokens=16, seed=3, stream=True,
                                                 stream_options={"include_usage": True}))
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) > 1 and "".join(pieces) == answer
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[-2].choices[0].finish_reason == reply.choices[0].finish_reason
    assert chunks[-1].choices == [] and chunks[-1].usage == reply.usage


def test_a_stream_sends_tokens_while_the_model_is_still_generating(embedded, base_model):
    """The model is held at its 8th forward pass until the client has read a piece of text: a server that sent the
    whole answer at the end would never send it (the hold times out and the test fails)."""
    server, client = embedded
    calls, got_text = [], threading.Event()

    def hold(*_args) -> None:
        calls.append(1)
        if len(calls) == 8:
            assert got_text.wait(TIMEOUT), "no text arrived while the model was generating"

    handle = base_model.register_forward_pre_hook(hold)
    try:
        stream = client.chat.completions.create(model="base", messages=[{"role": "user", "content": "Describe a rainy afternoon in a big city."}],
                                                max_tokens=16, stream=True)
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                got_text.set()
                break
        rest = list(stream)  # an error event (the hold timed out) raises openai.APIError here
    finally:
        got_text.set()
        handle.remove()
    assert len(calls) > 8 and rest[-1].choices[0].finish_reason in ("stop", "length")


def test_an_api_key_is_required_when_set(embedded):
    server, _ = embedded
    body = json.dumps({"model": "base", "messages": CHAT, "max_tokens": 1}).encode()
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "sk-course"}):
        status, reply, sent = _call_with_headers(server.url + "/v1/chat/completions", body, headers=headers)
        assert status == 401 and _is_openai_error(reply) and reply["error"]["code"] == "invalid_api_key" and sent["www-authenticate"] == "Bearer"
    assert _call(server.url + "/v1/models", headers={"Authorization": "Bearer sk-course"})[0] == 200
    assert _call(server.url + "/health")[0] == 200  # health checks need no key
    wrong = openai.OpenAI(base_url=server.url + "/v1", api_key="sk-wrong", max_retries=0, timeout=TIMEOUT)
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()


def test_stop_leaves_no_thread_and_frees_the_port(tokenizer, served):
    _, model = served
    before = set(threading.enumerate())
    with ChatServer(model, tokenizer) as server:
        url = server.url
        assert _call(url + "/health")[0] == 200
    assert set(threading.enumerate()) <= before
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url + "/health", timeout=5)
    host, port = url.removeprefix("http://").rsplit(":", 1)
    ChatServer(model, tokenizer, host=host, port=int(port)).stop()  # the same port binds again


def test_a_plain_model_serves_only_the_base(tokenizer, tiny_folder):
    model = load_model(str(tiny_folder))
    with ChatServer(model, tokenizer, base_name="tiny") as server:
        assert _chat(server, model="tiny", messages=CHAT, max_tokens=3)[0] == 200
        assert _chat(server, model="base", messages=CHAT)[0] == 404


@pytest.mark.parametrize("limits", [{"max_queued": -1}, {"max_new_tokens": 0}, {"max_body_bytes": 1.5}, {"max_input_tokens": True}])
def test_bad_limits_are_refused(served, tokenizer, limits):
    _, model = served
    with pytest.raises(CourseError, match=next(iter(limits))):
        ChatServer(model, tokenizer, **limits)


def test_cli_rejects_a_malformed_adapter_spec():
    args = build_parser().parse_args(["serve", "--adapter", "no-equals-sign"])
    with pytest.raises(CourseError, match="NAME=FOLDER"):
        args.func(args)


def test_cli_warns_when_it_listens_beyond_this_machine_without_a_key(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("FTCOURSE_API_KEY", raising=False)
    assert main(["serve", "--host", "0.0.0.0", "--model", str(tmp_path / "missing")]) == 2  # warned, then the model is not there
    assert "without an API key" in capsys.readouterr().err
    monkeypatch.setenv("FTCOURSE_API_KEY", "sk-course")
    assert main(["serve", "--host", "0.0.0.0", "--model", str(tmp_path / "missing")]) == 2
    assert "without an API key" not in capsys.readouterr().err


def test_the_serve_command_answers_and_stops_cleanly_on_sigterm(tiny_folder):
    """`ftcourse serve` in its own process, its key from FTCOURSE_API_KEY: it prints its address, answers, and exits 0 on SIGTERM."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "FTCOURSE_API_KEY": "sk-course"}
    process = subprocess.Popen([sys.executable, "-m", "ftcourse.tools.cli", "serve", "--model", str(tiny_folder), "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        line = process.stdout.readline()
        assert line.startswith("serving base on http://127.0.0.1:"), line
        url = line.split(" on ")[1].split()[0]
        assert _call(url + "/health") == (200, {"status": "ok"})
        body = json.dumps({"model": "base", "messages": CHAT, "max_tokens": 2}).encode()
        assert _call(url + "/v1/chat/completions", body)[0] == 401
        assert _call(url + "/v1/chat/completions", body, headers={"Authorization": "Bearer sk-course"})[0] == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
        assert "stopped" in process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
