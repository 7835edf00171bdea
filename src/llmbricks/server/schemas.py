"""The subset of OpenAI's request bodies the server accepts, validated by pydantic.

Fields a client library sends with their neutral values (``n: 1``, ``presence_penalty: 0``,
``logprobs: null``...) are accepted; a value the server cannot honour is refused with a 400
naming the parameter, rather than silently ignored. Unknown fields are refused too, as OpenAI
does ("Unrecognized request argument supplied").
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: OpenAI's limit on stop sequences.
MAX_STOP = 4


class Unsupported(ValueError):
    """A parameter this server does not implement, at a value that would need it."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: bool = False


class _Common(BaseModel):
    """What completions and chat completions share: sampling, stop, streaming."""

    model_config = ConfigDict(extra="forbid")

    model: str
    max_tokens: int | None = Field(None, ge=0)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int | None = Field(None, ge=1)      # not OpenAI's, but vLLM's and llama.cpp's
    n: int = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = Field(None, validate_default=True)  # a list once validated
    seed: int | None = Field(None, ge=0, le=2**63 - 1)
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: dict[str, float] | None = None
    user: str | None = None

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, value: str | list[str] | None) -> list[str]:
        stops = [value] if isinstance(value, str) else list(value or [])
        if len(stops) > MAX_STOP:
            raise ValueError(f"at most {MAX_STOP} stop sequences, got {len(stops)}")
        if any(not s for s in stops):
            raise ValueError("a stop sequence must not be empty")
        return stops

    def check_supported(self) -> None:
        """Refuse values this server would have to ignore."""
        if self.n != 1:
            raise Unsupported("n", f"n must be 1 (one choice per request), got {self.n}")
        for name in ("presence_penalty", "frequency_penalty"):
            if getattr(self, name):
                raise Unsupported(name, f"{name} is not supported by this server; leave it at 0")
        if self.logit_bias:
            raise Unsupported("logit_bias", "logit_bias is not supported by this server")

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class CompletionRequest(_Common):
    """``POST /v1/completions``: continue ``prompt`` (text, or a list of token ids)."""

    prompt: str | list[int] | list[str]
    echo: bool = False
    logprobs: int | None = None
    best_of: int | None = None
    suffix: str | None = None

    @model_validator(mode="after")
    def _one_prompt(self) -> CompletionRequest:
        if isinstance(self.prompt, list) and self.prompt and isinstance(self.prompt[0], str):
            if len(self.prompt) != 1:
                raise ValueError("give one prompt per request (a string), not a list of prompts")
            self.prompt = self.prompt[0]
        if not self.prompt:
            raise ValueError("prompt is empty: give some text to continue")
        return self

    def check_supported(self) -> None:
        super().check_supported()
        if self.logprobs is not None:
            raise Unsupported("logprobs", "logprobs is not supported by this server")
        if self.best_of not in (None, 1):
            raise Unsupported("best_of", "best_of must be 1")
        if self.suffix:
            raise Unsupported("suffix", "suffix (insertion) is not supported by this server")


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")  # name, tool_call_id...: carried, not used

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[dict[str, Any]]

    def text(self) -> str:
        """The content as text; a list of parts may hold text parts only."""
        if isinstance(self.content, str):
            return self.content
        texts = []
        for part in self.content:
            if part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise Unsupported("messages", "only text content parts are supported, got a "
                                  f"{part.get('type')!r} part")
            texts.append(part["text"])
        return "".join(texts)


class ChatRequest(_Common):
    """``POST /v1/chat/completions``: answer the conversation in the model's chat format."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=0)
    logprobs: bool = False
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    response_format: dict[str, Any] | None = None

    def check_supported(self) -> None:
        super().check_supported()
        if self.logprobs:
            raise Unsupported("logprobs", "logprobs is not supported by this server")
        if self.tools:
            raise Unsupported("tools", "tools (function calling) are not supported by this server")
        if self.response_format and self.response_format.get("type") not in (None, "text"):
            raise Unsupported("response_format", "only response_format {'type': 'text'} is supported")
        if self.messages[-1].role == "assistant":
            raise Unsupported("messages", "the last message must not be the assistant's: the "
                              "server writes the next assistant turn")

    @property
    def budget(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens
