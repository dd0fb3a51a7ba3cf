"""An OpenAI-compatible HTTP server for a base model and its adapters, on FastAPI + uvicorn + pydantic.

Routes: ``POST /v1/chat/completions`` (its ``model`` field picks an adapter by name, or the base model with
adapters disabled; ``"stream": true`` sends server-sent events as the tokens are generated), ``GET /v1/models``
(the names), ``GET /health``; FastAPI adds the OpenAPI docs at ``/docs``.

A request's way through: a gate checks the API key (when one is set) and the declared body size before the body
is read; pydantic validates the body; the request then waits in a bounded queue (full: 503 with ``Retry-After``)
for the one worker thread. The worker does all tokenizer and model work, one request at a time (one model in
memory, PEFT switches the adapter per request), and sends the text back to the request piece by piece.

Every error is JSON in OpenAI's shape, ``{"error": {"message", "type", "code"}}``: 400 for a body that is not
JSON or does not validate (FastAPI's 422 becomes 400, the field named) or a prompt over ``max_input_tokens``;
401 without the API key; 404 for an unknown model or route; 405 for a wrong method; 411 without Content-Length;
413 for a body over ``max_body_bytes``; 503 when the queue is full; 500 for a bug. Requests that are not valid
HTTP (e.g. a negative Content-Length) never reach the app: the HTTP parser answers 400 and closes the connection.
For teaching and local use, not production (lesson 10 names the engines).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import secrets
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import h11
import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.exceptions import HTTPException
from transformers import TextStreamer
from uvicorn.protocols.http.h11_impl import H11Protocol

from ftcourse.deploy import load_adapters, using_adapter
from ftcourse.errors import CourseError
from ftcourse.generation import encode_prompt, generate
from ftcourse.models import load_model, load_tokenizer

__all__ = [
    "ChatCompletion", "ChatCompletionChunk", "ChatRequest", "ChatServer", "load_server", "MAX_BODY_BYTES", "Message",
    "ModelList", "RequestError", "Usage",
]

MAX_BODY_BYTES = 1 << 20


# --- What goes over the wire (pydantic models: they validate requests and document the API at /docs) ---

class Message(BaseModel):
    model_config = ConfigDict(strict=True)
    role: Literal["system", "user", "assistant"]
    content: str


class StreamOptions(BaseModel):
    include_usage: bool = Field(False, description="send a last chunk with the token counts")


class ChatRequest(BaseModel):
    """The body of ``POST /v1/chat/completions``: the OpenAI fields this server uses (others are ignored; null means the default)."""

    model_config = ConfigDict(strict=True)  # "5" is not a number, 1 is not a boolean
    model: str = Field(description="an adapter's name, or the base model's (GET /v1/models lists them)")
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1, description="at most this many new tokens (default: 64, or the server's limit)")
    max_completion_tokens: int | None = Field(None, ge=1, description="OpenAI's newer name for max_tokens")
    temperature: float | None = Field(0.0, ge=0, le=2, description="0: greedy (deterministic); above 0: sampling")
    top_p: float | None = Field(1.0, gt=0, le=1)
    seed: int | None = Field(0, ge=0, le=2**31 - 1, description="seeds the sampling")
    stream: bool | None = False
    stream_options: StreamOptions | None = None

    @field_validator("messages")
    @classmethod
    def last_message_asks(cls, messages: list[Message]) -> list[Message]:
        if messages[-1].role == "assistant":
            raise ValueError("the last message must come from the user (or system), not the assistant")
        return messages


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int = Field(description="the generated token ids, EOS included")
    total_tokens: int


class Choice(BaseModel):
    index: int = 0
    message: Message
    finish_reason: Literal["stop", "length"]


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: Literal["stop", "length"] | None = None


class ChatCompletionChunk(BaseModel):
    """One server-sent event of a streamed answer (``data: {...}``); ``data: [DONE]`` ends the stream."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    owned_by: str = "ftcourse"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class RequestError(Exception):
    """A request the server rejects: HTTP ``status``, a message saying what to fix, and extra response headers."""

    def __init__(self, status: int, message: str, code: str = "invalid_request_error", headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, dict(headers or {})

    def body(self) -> dict[str, Any]:
        kind = "invalid_request_error" if self.status < 500 else "server_error"
        return {"error": {"message": self.message, "type": kind, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


# --- The worker's side: one thread answers queued jobs and sends events back to the request's event loop ---

@dataclass
class _Done:
    """The last event of a job: the whole answer (stripped like ``generate``'s) and its token counts."""

    text: str
    finish_reason: Literal["stop", "length"]
    usage: Usage


class _Cancelled(Exception):
    """Raised inside generation when the client has gone away."""


@dataclass
class _Job:
    request: ChatRequest
    max_tokens: int
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.get_running_loop)
    inbox: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancelled: bool = False  # the client is gone: the worker skips or stops this job

    def send(self, event: int | str | _Done | RequestError) -> None:
        """From the worker thread: hand an event to the request (ignored once the server's loop is closed)."""
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self.inbox.put_nowait, event)

    async def events(self) -> AsyncIterator[int | str | _Done]:
        """The prompt's token count, the answer's text pieces, then :class:`_Done`; raises the worker's :class:`RequestError`."""
        try:
            while True:
                event = await self.inbox.get()
                if isinstance(event, RequestError):
                    raise event
                yield event
                if isinstance(event, _Done):
                    return
        finally:
            self.cancelled = True


class _PieceStreamer(TextStreamer):
    """Keeps the generated token ids and sends the answer's text to a job as they are decoded, without the outer
    whitespace ``generate`` strips; raises :class:`_Cancelled` into generation once the job is cancelled."""

    def __init__(self, tokenizer, job: _Job):
        super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=True)
        self.job, self.held, self.started = job, "", False
        self.ids: list[int] | None = None  # None until the prompt has gone by (generate puts the prompt first)

    def put(self, value) -> None:
        if self.job.cancelled:
            raise _Cancelled
        if self.ids is None:
            self.ids = []
        else:
            self.ids.extend(value.flatten().tolist())
        super().put(value)

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        text = self.held + text if self.started else text.lstrip()
        piece = text.rstrip()
        self.held = text[len(piece):]  # trailing whitespace waits for more text; at the end it is dropped
        if piece:
            self.started = True
            self.job.send(piece)


class ChatServer:
    """Serve ``model`` (a plain model, or a ``PeftModel`` with adapters loaded) over HTTP on ``host:port``.

    ``port=0`` picks a free port (see :attr:`url`). Use as a context manager, or call :meth:`start`/:meth:`stop`.
    The base model is reachable under ``base_name``; each loaded adapter under its name. The limits:
    ``max_body_bytes`` per request body, ``max_input_tokens`` per prompt, ``max_new_tokens`` per answer (the
    largest ``max_tokens`` a request may ask for), ``max_queued`` requests waiting for the model. With ``api_key``,
    ``/v1/`` routes need ``Authorization: Bearer <api_key>``.
    """

    def __init__(self, model, tokenizer, host: str = "127.0.0.1", port: int = 0, base_name: str = "base",
                 max_input_tokens: int = 1024, max_new_tokens: int = 256, max_body_bytes: int = MAX_BODY_BYTES,
                 max_queued: int = 32, api_key: str | None = None, log: bool = False):
        self.model, self.tokenizer, self.base_name = model, tokenizer, base_name
        self.adapters = list(getattr(model, "peft_config", {}))
        if base_name in self.adapters:
            raise CourseError(f"base_name {base_name!r} is also an adapter's name.", "pick another base_name.")
        limits = {"max_input_tokens": max_input_tokens, "max_new_tokens": max_new_tokens, "max_body_bytes": max_body_bytes, "max_queued": max_queued}
        for name, value in limits.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "max_queued" else 1):
                raise CourseError(f"{name}={value!r} is not a valid limit.", f"pass a whole number {'>= 0' if name == 'max_queued' else '>= 1'}.")
        self.max_input_tokens, self.max_new_tokens, self.max_body_bytes, self.max_queued = limits.values()
        self.api_key, self.log = api_key or None, log
        self.app = self._build_app()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._socket = socket.create_server((host, port), family=family)  # bound now: the url is known, a busy port fails here
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._uvicorn: uvicorn.Server | None = None
        self._worker: threading.Thread | None = None  # the one thread that uses the tokenizer and the model
        self._http: threading.Thread | None = None  # uvicorn's event loop

    @property
    def url(self) -> str:
        host, port = self._socket.getsockname()[:2]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def models(self) -> list[str]:
        """The names a request's ``model`` field may take: the base, then the adapters."""
        return [self.base_name, *self.adapters]

    # --- the HTTP side (runs on uvicorn's event loop) ---

    def _build_app(self) -> FastAPI:
        app = FastAPI(title="ftcourse chat server", description="OpenAI-compatible chat completions for a base model and its adapters.",
                      strict_content_type=False)  # a JSON body without a Content-Type header is still read as JSON

        @app.middleware("http")
        async def gate(request: Request, call_next):
            """What every request passes before its body is read: the API key, then the declared body size."""
            if self.api_key and request.url.path.startswith("/v1/") and not self._authorized(request):
                return RequestError(401, "Missing or wrong API key; send the header 'Authorization: Bearer <key>'.", "invalid_api_key",
                                    {"WWW-Authenticate": "Bearer"}).response()
            if request.method == "POST":
                length = request.headers.get("content-length")
                if length is None:
                    return RequestError(411, "Send the body with a Content-Length header (chunked bodies are not accepted).", "length_required",
                                        _CLOSE).response()
                if int(length) > self.max_body_bytes:  # the HTTP parser has already refused a length that is not a number
                    return RequestError(413, f"The body is {length} bytes; this server accepts at most {self.max_body_bytes}.", "request_too_large",
                                        _CLOSE).response()
            return await call_next(request)

        @app.exception_handler(RequestError)
        async def request_error(_request: Request, error: RequestError) -> JSONResponse:
            return error.response()

        @app.exception_handler(RequestValidationError)
        async def invalid_body(_request: Request, error: RequestValidationError) -> JSONResponse:
            return RequestError(400, _validation_message(error)).response()

        @app.exception_handler(HTTPException)
        async def http_error(request: Request, error: HTTPException) -> JSONResponse:
            message, code = str(error.detail), "invalid_request_error"
            if error.status_code == 404:
                message, code = f"No route {request.method} {request.url.path}; the routes are {_ROUTES}.", "not_found"
            elif error.status_code == 405:
                message, code = f"{request.method} is not allowed on {request.url.path}; use {(error.headers or {}).get('Allow', 'another method')}.", "method_not_allowed"
            elif error.__cause__ is not None:  # FastAPI could not parse the body, e.g. JSON nested too deeply
                message = f"{message}: {type(error.__cause__).__name__}: {error.__cause__}"
            return RequestError(error.status_code, message, code, error.headers).response()

        @app.exception_handler(Exception)
        async def bug(_request: Request, error: Exception) -> JSONResponse:
            return RequestError(500, f"Internal error: {type(error).__name__}: {error}", "internal_error").response()

        @app.get("/health")
        async def health() -> dict[str, str]:
            return {"status": "ok"}

        @app.get("/v1/models")
        async def list_models() -> ModelList:
            return ModelList(data=[ModelCard(id=name) for name in self.models()])

        @app.post("/v1/chat/completions", responses={200: {"content": {"text/event-stream": {}}, "description": "with stream: chat.completion.chunk events"}})
        async def chat_completions(request: ChatRequest) -> ChatCompletion:
            events = self._submit(request).events()
            await anext(events)  # the prompt's token count: the worker took the prompt (a prompt too long raises here, a 400)
            if request.stream:
                return StreamingResponse(_sse(request, events), media_type="text/event-stream")
            done = [event async for event in events][-1]  # text pieces, then the whole answer
            return ChatCompletion(id=_completion_id(), created=int(time.time()), model=request.model, usage=done.usage,
                                  choices=[Choice(message=Message(role="assistant", content=done.text), finish_reason=done.finish_reason)])

        return app

    def _authorized(self, request: Request) -> bool:
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and secrets.compare_digest(key.encode(), self.api_key.encode())

    def _submit(self, request: ChatRequest) -> _Job:
        """Check what needs no tokenizer, then queue the request for the worker (503 when the queue is full)."""
        if request.model not in self.models():
            raise RequestError(404, f"Unknown model {request.model!r}; this server has: {', '.join(self.models())}.", "model_not_found")
        max_tokens = request.max_completion_tokens or request.max_tokens or min(64, self.max_new_tokens)
        if max_tokens > self.max_new_tokens:
            raise RequestError(400, f"'max_tokens' must be at most {self.max_new_tokens} on this server, got {max_tokens}.")
        if self._jobs.qsize() >= self.max_queued:  # only this event loop adds jobs, so the check cannot race
            raise RequestError(503, f"The server is busy: {self.max_queued} requests are waiting; retry shortly.", "server_busy", {"Retry-After": "1"})
        job = _Job(request, max_tokens)
        self._jobs.put(job)
        return job

    # --- the model side (runs in the worker thread) ---

    def _work(self) -> None:
        """The one thread that uses the tokenizer and the model: answers the queued jobs in order, until ``None``."""
        while (job := self._jobs.get()) is not None:
            if not job.cancelled and (reply := self._answer(job)) is not None:
                job.send(reply)

    def _answer(self, job: _Job) -> _Done | RequestError | None:
        """The reply to one job (``None`` when its client went away), its text sent piece by piece on the way."""
        request = job.request
        messages = [m.model_dump() for m in request.messages]
        try:
            prompt_tokens = len(encode_prompt(self.tokenizer, messages))
            if prompt_tokens > self.max_input_tokens:
                return RequestError(400, f"The messages are {prompt_tokens} tokens long; this server accepts at most {self.max_input_tokens}.",
                                    "context_length_exceeded")
            job.send(prompt_tokens)
            streamer = _PieceStreamer(self.tokenizer, job)
            with self._active(request.model):
                text = generate(self.model, self.tokenizer, [messages], max_new_tokens=job.max_tokens, progress=False, temperature=request.temperature or 0.0,
                                top_p=request.top_p or 1.0, seed=request.seed or 0, streamer=streamer)[0]
            ids = streamer.ids
        except _Cancelled:
            return None
        except Exception as exc:  # a bug must not take the worker down: the request gets a 500
            return RequestError(500, f"Internal error: {type(exc).__name__}: {exc}", "internal_error")
        finish = "stop" if ids and ids[-1] == self.tokenizer.eos_token_id else "length"
        return _Done(text, finish, Usage(prompt_tokens=prompt_tokens, completion_tokens=len(ids), total_tokens=prompt_tokens + len(ids)))

    def _active(self, name: str):
        if not self.adapters:
            return contextlib.nullcontext()
        return using_adapter(self.model, None if name == self.base_name else name)

    # --- starting and stopping ---

    def start(self) -> ChatServer:
        """Serve in background threads (uvicorn's and the worker); returns once uvicorn is up."""
        if self._uvicorn is None:
            # The pure-Python HTTP parser (h11) and event loop uvicorn always has: the same server with or without uvicorn[standard].
            config = uvicorn.Config(self.app, http=_H11Protocol, loop="asyncio", lifespan="off", log_config=uvicorn.config.LOGGING_CONFIG if self.log else None,
                                    log_level="info" if self.log else "error", access_log=self.log, timeout_graceful_shutdown=5)
            self._uvicorn = uvicorn.Server(config)  # not in the main thread: uvicorn installs no signal handlers
            self._worker = threading.Thread(target=self._work, name="ftcourse-serve-worker", daemon=True)
            self._http = threading.Thread(target=self._uvicorn.run, kwargs={"sockets": [self._socket]}, name=f"ftcourse-serve-{self.url}", daemon=True)
            self._worker.start()
            self._http.start()
            while not self._uvicorn.started:
                if not self._http.is_alive():
                    raise CourseError("The HTTP server stopped while starting.", "see the error printed above.")
                time.sleep(0.01)
        return self

    def serve_forever(self) -> None:
        """Serve until interrupted (Ctrl-C, or SIGTERM turned into ``KeyboardInterrupt``), then stop cleanly."""
        self.start()
        try:
            self._http.join()
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop serving (requests in flight get up to 5 s), stop the worker, wait for both threads and free the port."""
        if self._uvicorn is not None:
            self._uvicorn.should_exit = True
            self._http.join()
            self._jobs.put(None)  # after the requests uvicorn let finish: the worker stops
            self._worker.join()
            self._uvicorn = self._worker = self._http = None
        self._socket.close()

    def __enter__(self) -> ChatServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


_CLOSE = {"Connection": "close"}  # a body left unread must not be taken for the connection's next request
_ROUTES = "POST /v1/chat/completions, GET /v1/models, GET /health (docs at GET /docs)"


class _H11Protocol(H11Protocol):
    """uvicorn's pure-Python HTTP/1.1 protocol, whose answer to a request that is not valid HTTP (a negative or
    non-numeric Content-Length, a broken request line) is JSON in OpenAI's shape too, instead of plain text."""

    def send_400_response(self, msg: str) -> None:
        body = json.dumps(RequestError(400, f"{msg} Check the request line and headers (e.g. Content-Length).", "invalid_http").body()).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), (b"connection", b"close")]
        for event in (h11.Response(status_code=400, headers=headers, reason=b"Bad Request"), h11.Data(data=body), h11.EndOfMessage()):
            self.transport.write(self.conn.send(event))
        self.transport.close()


def _completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


async def _sse(request: ChatRequest, events: AsyncIterator[int | str | _Done]) -> AsyncIterator[str]:
    """Server-sent events as OpenAI sends them: a role chunk, a chunk per text piece, the finish, ``[DONE]``."""
    def chunk(delta: Delta, finish: str | None = None, usage: Usage | None = None, choices: bool = True) -> str:
        body = ChatCompletionChunk(id=reply_id, created=created, model=request.model, usage=usage,
                                   choices=[ChunkChoice(delta=delta, finish_reason=finish)] if choices else [])
        return f"data: {body.model_dump_json()}\n\n"

    reply_id, created = _completion_id(), int(time.time())
    yield chunk(Delta(role="assistant", content=""))
    try:
        async for event in events:
            if isinstance(event, str):
                yield chunk(Delta(content=event))
    except RequestError as error:  # the status line has gone out: the error travels as an event
        yield f"data: {json.dumps(error.body())}\n\n"
        return
    done = event  # the last event is the whole answer
    yield chunk(Delta(), finish=done.finish_reason)
    if request.stream_options and request.stream_options.include_usage:
        yield chunk(Delta(), usage=done.usage, choices=False)
    yield "data: [DONE]\n\n"


def _validation_message(error: RequestValidationError) -> str:
    """pydantic's errors as one sentence naming the fields, e.g. ``'messages[0].content': Input should be a valid string``."""
    problems = []
    for e in error.errors():
        if e["type"] == "json_invalid":
            return f"The body is not valid JSON ({e.get('ctx', {}).get('error', e['msg'])})."
        where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in e["loc"][1:]).lstrip(".")
        problems.append(f"'{where}': {e['msg']}" if where else f"The body must be a JSON object with 'model' and 'messages': {e['msg']}")
    return "; ".join(problems) + "."


def load_server(model: str, adapters: Mapping[str, str | Path] | None = None, **kwargs) -> ChatServer:
    """A :class:`ChatServer` for a base model (anything ``load_model`` takes) with adapters ``{name: folder}``."""
    base = load_model(model)
    served = load_adapters(adapters, base=base) if adapters else base
    return ChatServer(served, load_tokenizer(model), **kwargs)
