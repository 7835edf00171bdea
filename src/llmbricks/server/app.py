"""The OpenAI-compatible HTTP layer over an ``Engine``: routes, errors, server-sent events.

Everything that generates is the engine's (``core.tasks.engine``) and everything that turns
tokens into text is ``core.tasks.text_stream``; this module only speaks the API: request and
response shapes, status codes, the bearer token, and ``data: {...}`` events ending with
``data: [DONE]``.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException

from llmbricks import __version__
from llmbricks.core.errors import LlmbricksError
from llmbricks.core.store.text_input import check_text
from llmbricks.core.tasks.engine import Engine, PromptTooLong, QueueFull
from llmbricks.core.tasks.generation import GenerationError
from llmbricks.core.tasks.requests import Request as EngineRequest
from llmbricks.core.tasks.text_stream import TextStream
from llmbricks.server.schemas import ChatRequest, CompletionRequest, Unsupported

#: Renders chat messages (``[{"role", "content"}]``) to prompt ids and the ids that end an answer.
ChatPrompt = Callable[[list[dict[str, str]]], tuple[list[int], list[int]]]

#: OpenAI's default ``max_tokens`` for completions (chat defaults to the rest of the context).
DEFAULT_COMPLETION_TOKENS = 16


class APIError(Exception):
    """An error in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``."""

    def __init__(self, status: int, message: str, *, param: str | None = None,
                 code: str | None = None, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind

    def response(self) -> JSONResponse:
        headers = {"Retry-After": "1"} if self.status == 503 else None
        return JSONResponse({"error": {"message": self.message, "type": self.kind,
                                       "param": self.param, "code": self.code}},
                            status_code=self.status, headers=headers)


def create_app(engine: Engine, *, model_name: str, chat_prompt: ChatPrompt | None = None,
               stop_ids: list[int] | None = None, api_key: str | None = None) -> FastAPI:
    """The app serving ``engine`` as ``model_name``.

    ``stop_ids`` end a completion (the tokenizer's end-of-text); ``chat_prompt`` renders chat
    messages in the model's template (without it, ``/v1/chat/completions`` answers 400).
    ``api_key`` makes every ``/v1`` route require ``Authorization: Bearer <api_key>``.
    """
    app = FastAPI(title="llmbricks", version=__version__, docs_url=None, redoc_url=None)
    tokenizer = engine.tokenizer
    created = int(time.time())

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _bad_body(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = [str(p) for p in first.get("loc", ()) if p not in ("body",)]
        param = where[0] if where else None
        message = first.get("msg", "invalid request").removeprefix("Value error, ")
        if first.get("type") == "extra_forbidden":
            message = f"Unrecognized request argument supplied: {param}"
        elif first.get("type") == "json_invalid":
            message = "the request body is not valid JSON"
        text = f"{'.'.join(where)}: {message}" if where and first.get("type") != "extra_forbidden" \
            else message
        return APIError(400, text, param=param).response()

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        code = "not_found" if exc.status_code == 404 else None
        return APIError(exc.status_code, str(exc.detail), code=code).response()

    @app.middleware("http")
    async def _bearer(request: Request, call_next: Any) -> Any:
        if api_key is not None and request.url.path.startswith("/v1"):
            given = request.headers.get("authorization", "")
            scheme, _, token = given.partition(" ")
            if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip(), api_key):
                return APIError(401, "Incorrect API key provided: send it as 'Authorization: "
                                "Bearer <key>' (the server's --api-key)",
                                code="invalid_api_key").response()
        return await call_next(request)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": model_name, **engine.stats(),
                "batching": not engine.blockers}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [_model_card(model_name, created)]}

    @app.get("/v1/models/{name}")
    async def model(name: str) -> dict[str, Any]:
        _check_model(name, model_name)
        return _model_card(model_name, created)

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest) -> Any:
        _check(body, model_name)
        if isinstance(body.prompt, str):
            prompt = _encode(tokenizer, body.prompt)
        else:
            prompt = list(body.prompt)
        budget = body.max_tokens if body.max_tokens is not None else DEFAULT_COMPLETION_TOKENS
        request = _submit(engine, body, prompt, budget, stop_ids or [])
        echo = body.prompt if (body.echo and isinstance(body.prompt, str)) else ""
        reply = _Reply("cmpl", "text_completion", model_name, request, TextStream(tokenizer, body.stop))
        if body.stream:
            return _sse(reply.completion_events(echo, body.include_usage))
        text = echo + await reply.collect()
        return reply.body({"text": text, "index": 0, "logprobs": None,
                           "finish_reason": reply.finish_reason})

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatRequest) -> Any:
        _check(body, model_name)
        if chat_prompt is None:
            raise APIError(400, "this model has no chat format: use /v1/completions",
                           param="messages")
        try:
            messages = [{"role": "system" if m.role == "developer" else m.role,
                         "content": check_text(m.text(), "a message")} for m in body.messages]
            prompt, chat_stops = chat_prompt(messages)
        except (LlmbricksError, Unsupported) as exc:
            raise APIError(400, str(exc), param="messages") from None
        # By default an answer may use the rest of the context (at least a token: a prompt that
        # fills it is refused with the context's size).
        budget = body.budget if body.budget is not None else max(engine.max_len - len(prompt), 1)
        request = _submit(engine, body, prompt, budget, [*chat_stops, *(stop_ids or [])])
        reply = _Reply("chatcmpl", "chat.completion", model_name, request,
                       TextStream(tokenizer, body.stop))
        if body.stream:
            return _sse(reply.chat_events(body.include_usage))
        text = await reply.collect()
        return reply.body({"index": 0, "message": {"role": "assistant", "content": text},
                           "logprobs": None, "finish_reason": reply.finish_reason})

    return app


def _encode(tokenizer: Any, text: str) -> list[int]:
    """The prompt's ids; text the tokenizer cannot take (a lone surrogate, a character outside a
    char vocabulary) is a 400 naming the prompt."""
    try:
        return tokenizer.encode(check_text(text, "the prompt"), allowed_special="all")
    except LlmbricksError as exc:
        raise APIError(400, str(exc), param="prompt") from None


def _model_card(name: str, created: int) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": created, "owned_by": "llmbricks"}


def _check_model(name: str, served: str) -> None:
    if name != served:
        raise APIError(404, f"The model '{name}' does not exist: this server serves '{served}'",
                       param="model", code="model_not_found")


def _check(body: CompletionRequest | ChatRequest, served: str) -> None:
    _check_model(body.model, served)
    try:
        body.check_supported()
    except Unsupported as exc:
        raise APIError(400, str(exc), param=exc.param) from None


def _submit(engine: Engine, body: CompletionRequest | ChatRequest, prompt: list[int],
            budget: int, stops: list[int]) -> EngineRequest:
    """Hand the request to the engine; its refusals become 400 or 503."""
    try:
        sampling = engine.sampling(max_new_tokens=budget, temperature=body.temperature,
                                   top_k=body.top_k, top_p=body.top_p if body.top_p < 1 else None,
                                   seed=body.seed, stop_tokens=stops)
        return engine.submit(prompt, sampling)
    except PromptTooLong as exc:
        raise APIError(400, str(exc), param="messages" if isinstance(body, ChatRequest)
                       else "prompt", code="context_length_exceeded") from None
    except GenerationError as exc:
        raise APIError(400, str(exc)) from None
    except QueueFull as exc:
        raise APIError(503, f"the server is busy: {exc}", code="overloaded",
                       kind="server_error") from None


class _Reply:
    """One response in the making: the engine request, its text, and the response's ids."""

    def __init__(self, prefix: str, kind: str, model: str, request: EngineRequest,
                 text: TextStream) -> None:
        self.id = f"{prefix}-{uuid.uuid4().hex[:24]}"
        self.kind, self.model, self.request, self.text = kind, model, request, text
        self.created = int(time.time())

    @property
    def finish_reason(self) -> str:
        """OpenAI's word for why it ended: ``stop`` (a stop token or text) or ``length``."""
        reason = self.request.finish_reason
        if reason == "error":
            raise APIError(500, f"generation failed: {self.request.error}", kind="server_error")
        return "stop" if (self.text.stopped or reason == "stop") else "length"

    async def pieces(self) -> AsyncIterator[str]:
        """The text, piece by piece as it becomes final; a stop text cancels the request."""
        async for token in self.request.stream():
            piece = self.text.feed(token)
            if piece:
                yield piece
            if self.text.stopped:
                self.request.cancel("stop")
                break
        if not self.text.stopped:
            self.request.wait()  # the stream has ended: the reason is a moment away at most
        rest = self.text.flush()
        if rest:
            yield rest

    async def collect(self) -> str:
        return "".join([piece async for piece in self.pieces()])

    def usage(self) -> dict[str, int]:
        prompt, completion = len(self.request.prompt), self.request.generated
        return {"prompt_tokens": prompt, "completion_tokens": completion,
                "total_tokens": prompt + completion}

    def body(self, choice: dict[str, Any], **extra: Any) -> dict[str, Any]:
        return {"id": self.id, "object": self.kind, "created": self.created, "model": self.model,
                "choices": [choice], "usage": self.usage(), **extra}

    def _chunk(self, choices: list[dict[str, Any]], kind: str, **extra: Any) -> dict[str, Any]:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model,
                "choices": choices, **extra}

    async def completion_events(self, echo: str, include_usage: bool) -> AsyncIterator[dict]:
        kind = "text_completion"
        if echo:
            yield self._chunk([{"text": echo, "index": 0, "logprobs": None,
                                "finish_reason": None}], kind)
        async for piece in self.pieces():
            yield self._chunk([{"text": piece, "index": 0, "logprobs": None,
                                "finish_reason": None}], kind)
        yield self._chunk([{"text": "", "index": 0, "logprobs": None,
                            "finish_reason": self.finish_reason}], kind)
        if include_usage:
            yield self._chunk([], kind, usage=self.usage())

    async def chat_events(self, include_usage: bool) -> AsyncIterator[dict]:
        kind = "chat.completion.chunk"
        yield self._chunk([{"index": 0, "delta": {"role": "assistant", "content": ""},
                            "logprobs": None, "finish_reason": None}], kind)
        async for piece in self.pieces():
            yield self._chunk([{"index": 0, "delta": {"content": piece}, "logprobs": None,
                                "finish_reason": None}], kind)
        yield self._chunk([{"index": 0, "delta": {}, "logprobs": None,
                            "finish_reason": self.finish_reason}], kind)
        if include_usage:
            yield self._chunk([], kind, usage=self.usage())


def _sse(events: AsyncIterator[dict]) -> StreamingResponse:
    """Server-sent events: ``data: <json>`` per event, then ``data: [DONE]``. A failure after
    the headers went out is sent as an error event (the status is already 200)."""
    async def lines() -> AsyncIterator[str]:
        try:
            async for event in events:
                yield f"data: {json.dumps(event, ensure_ascii=False)}\n\n"
        except APIError as exc:
            error = {"error": {"message": exc.message, "type": exc.kind, "param": exc.param,
                               "code": exc.code}}
            yield f"data: {json.dumps(error)}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(lines(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
