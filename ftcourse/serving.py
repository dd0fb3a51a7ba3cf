"""A small, real HTTP server for a base model with one or more adapters (OpenAI-compatible routes).

``POST /v1/chat/completions`` answers a chat; its ``model`` field picks an adapter by name, or the base
model (adapters disabled). ``GET /v1/models`` lists the names, ``GET /health`` says it is up. Requests
are answered one at a time (one model in memory; PEFT switches the adapter per request). Bad requests
get a 4xx JSON error in OpenAI's shape, never a crash. Built on the standard library's
``ThreadingHTTPServer``: for teaching and local use, not production (see lesson 10 for the engines).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from ftcourse.deploy import load_adapters, using_adapter
from ftcourse.errors import CourseError
from ftcourse.generation import encode_prompt, generate
from ftcourse.models import load_model, load_tokenizer

__all__ = ["ChatServer", "load_server", "MAX_BODY_BYTES", "RequestError", "ROLES"]

ROLES = ("system", "user", "assistant")
MAX_BODY_BYTES = 1 << 20


class RequestError(Exception):
    """A request the server rejects: HTTP ``status`` and a message saying what to fix."""

    def __init__(self, status: int, message: str, code: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


def _number(body: Mapping[str, Any], key: str, default: float, low: float, high: float, integer: bool = False) -> float:
    value = body.get(key, default)
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not low <= value <= high:
        kind = "an integer" if integer else "a number"
        raise RequestError(400, f"'{key}' must be {kind} from {low:g} to {high:g}, got {value!r}.")
    return value


def _messages(body: Mapping[str, Any]) -> list[dict[str, str]]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError(400, "'messages' must be a non-empty list of {'role': ..., 'content': ...} objects.")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            raise RequestError(400, f"messages[{i}] must be an object with 'role' ({', '.join(ROLES)}) and a string 'content'.")
    if messages[-1]["role"] == "assistant":
        raise RequestError(400, "The last message must come from the user (or system), not the assistant.")
    return [{"role": m["role"], "content": m["content"]} for m in messages]


class ChatServer:
    """Serve ``model`` (a plain model, or a ``PeftModel`` with adapters loaded) over HTTP on ``host:port``.

    ``port=0`` picks a free port (see :attr:`url`). Use as a context manager, or call :meth:`start`/:meth:`stop`.
    The base model is reachable under ``base_name``; each loaded adapter under its name.
    """

    def __init__(self, model, tokenizer, host: str = "127.0.0.1", port: int = 0, base_name: str = "base",
                 max_input_tokens: int = 1024, max_new_tokens: int = 256, log: bool = False):
        self.model, self.tokenizer, self.base_name = model, tokenizer, base_name
        self.adapters = list(getattr(model, "peft_config", {}))
        if base_name in self.adapters:
            raise CourseError(f"base_name {base_name!r} is also an adapter's name.", "pick another base_name.")
        self.max_input_tokens, self.max_new_tokens, self.log = max_input_tokens, max_new_tokens, log
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer((host, port), _handler(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def models(self) -> list[str]:
        """The names a request's ``model`` field may take: the base, then the adapters."""
        return [self.base_name, *self.adapters]

    def chat(self, body: Any) -> dict[str, Any]:
        """Answer one ``/v1/chat/completions`` request body (a parsed JSON value); :class:`RequestError` if it is invalid."""
        if not isinstance(body, dict):
            raise RequestError(400, "The request body must be a JSON object.")
        name = body.get("model")
        if not isinstance(name, str):
            raise RequestError(400, f"'model' must be a string naming one of: {', '.join(self.models())}.")
        if name not in self.models():
            raise RequestError(404, f"Unknown model {name!r}; this server has: {', '.join(self.models())}.", "model_not_found")
        if body.get("stream"):
            raise RequestError(400, "Streaming is not supported by this server; send 'stream': false.")
        messages = _messages(body)
        max_tokens = int(_number(body, "max_tokens", min(64, self.max_new_tokens), 1, self.max_new_tokens, integer=True))
        temperature = _number(body, "temperature", 0.0, 0.0, 2.0)
        top_p = _number(body, "top_p", 1.0, 0.01, 1.0)
        seed = int(_number(body, "seed", 0, 0, 2**31 - 1, integer=True))
        prompt_tokens = len(encode_prompt(self.tokenizer, messages))
        if prompt_tokens > self.max_input_tokens:
            raise RequestError(400, f"The messages are {prompt_tokens} tokens long; this server accepts at most {self.max_input_tokens}.",
                               "context_length_exceeded")
        with self._lock, self._active(name):
            answer = generate(self.model, self.tokenizer, [messages], max_new_tokens=max_tokens, progress=False,
                              temperature=temperature, top_p=top_p, seed=seed)[0]
        completion = len(self.tokenizer(answer, add_special_tokens=False)["input_ids"])
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion", "created": int(time.time()), "model": name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer},
                         "finish_reason": "length" if completion >= max_tokens else "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion, "total_tokens": prompt_tokens + completion},
        }

    def _active(self, name: str):
        if not self.adapters:
            return contextlib.nullcontext()
        return using_adapter(self.model, None if name == self.base_name else name)

    def start(self) -> ChatServer:
        """Serve in a background thread; returns at once."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._httpd.serve_forever, name=f"ftcourse-serve-{self.url}", daemon=True)
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted (Ctrl-C), then shut down cleanly."""
        try:
            self._httpd.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            self._httpd.server_close()

    def stop(self) -> None:
        """Stop serving, close the socket and wait for the server thread."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> ChatServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _handler(server: ChatServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, error: RequestError) -> None:
            self._send(error.status, {"error": {"message": error.message, "type": "invalid_request_error" if error.status < 500 else "server_error",
                                                "code": error.code}})

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            if self.path == "/health":
                self._send(200, {"status": "ok"})
            elif self.path == "/v1/models":
                self._send(200, {"object": "list", "data": [{"id": n, "object": "model", "owned_by": "ftcourse"} for n in server.models()]})
            else:
                self._error(RequestError(404, f"No route {self.path}; try POST /v1/chat/completions, GET /v1/models or GET /health.", "not_found"))

        def do_POST(self) -> None:  # noqa: N802
            try:
                if self.path != "/v1/chat/completions":
                    raise RequestError(404, f"No route POST {self.path}; use POST /v1/chat/completions.", "not_found")
                try:
                    length = int(self.headers.get("Content-Length", "0"))
                except ValueError:
                    raise RequestError(400, "Content-Length must be an integer.") from None
                if length > MAX_BODY_BYTES:
                    self.close_connection = True
                    raise RequestError(413, f"The body is {length} bytes; at most {MAX_BODY_BYTES} are accepted.", "request_too_large")
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError as exc:
                    raise RequestError(400, f"The body is not valid JSON ({exc}).") from None
                self._send(200, server.chat(body))
            except RequestError as exc:
                self._error(exc)
            except Exception as exc:  # a bug must not take the server down: report it as a 500
                self._error(RequestError(500, f"Internal error: {type(exc).__name__}: {exc}", "internal_error"))

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            if server.log:
                super().log_message(format, *args)

    return Handler


def load_server(model: str, adapters: Mapping[str, str | Path] | None = None, **kwargs) -> ChatServer:
    """A :class:`ChatServer` for a base model (anything ``load_model`` takes) with adapters ``{name: folder}``."""
    base = load_model(model)
    served = load_adapters(adapters, base=base) if adapters else base
    return ChatServer(served, load_tokenizer(model), **kwargs)

