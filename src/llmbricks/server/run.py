"""Serving a model from Python: ``build_server`` (the app and its engine) and ``serve`` (uvicorn).

``llmbricks serve`` is a thin Click layer over ``serve``; tests and notebooks use
``build_server`` and run the app however they like.
"""

from __future__ import annotations

import ipaddress
import socket
import sys
from pathlib import Path
from typing import Any

import torch

from llmbricks.core.errors import ConfigError, LlmbricksError
from llmbricks.core.tasks.chat import ChatFormat
from llmbricks.core.tasks.engine import Engine
from llmbricks.core.tasks.generation import stop_token_id
from llmbricks.core.tasks.instruction import end_token_id, prompt_template
from llmbricks.server.app import ChatPrompt, create_app


def chat_format(engine: Engine) -> ChatPrompt | None:
    """How chat messages become a prompt for this model: the run's template (``data.prompt``),
    else the model's own chat template, else alpaca, as ``llmbricks chat`` renders them; the
    template's end token stops the answer. ``None`` without a config to pick the template."""
    config = getattr(engine, "config", None)
    if config is None or engine.tokenizer is None:
        return None
    template = prompt_template(config, tokenizer=engine.tokenizer)
    stops = [end_token_id(engine.tokenizer, template)]
    form = ChatFormat(engine.tokenizer, template)

    def render(messages: list[dict[str, str]]) -> tuple[list[int], list[int]]:
        return form.messages_ids(messages), stops

    return render


def build_server(path: str | Path, *, api_key: str | None = None, model_name: str | None = None,
                 device: torch.device | str = "cpu", **engine_options: Any) -> tuple[Any, Engine]:
    """The FastAPI app serving the run or model directory at ``path``, and its running engine
    (``engine.close()`` when done). ``engine_options`` go to ``Engine``: ``max_batch``,
    ``max_queue``, ``max_len``, ``prefill_chunk``."""
    engine = Engine.load(path, device, **engine_options)
    try:
        end = stop_token_id(engine.tokenizer, None) if engine.tokenizer is not None else None
        stops = [] if end is None else [end]
        app = create_app(engine, model_name=model_name or Path(path).resolve().name,
                         chat_prompt=chat_format(engine), stop_ids=stops, api_key=api_key)
    except BaseException:
        engine.close()
        raise
    return app, engine


def is_loopback(host: str) -> bool:
    """Whether ``host`` only listens on this machine (``localhost``, ``127.x``, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``; a port in use or an unknown host is one line.

    Bound here rather than by uvicorn, which logs the failure and exits with its own code.
    """
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port {port}: a port is 0 to 65535")
    try:
        family, kind, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise ConfigError(f"--host {host}: not an address of this machine ({exc.strerror}); "
                          "give one such as 127.0.0.1 or 0.0.0.0") from None
    sock = socket.socket(family, kind)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise LlmbricksError(f"cannot listen on {host}:{port}: {exc.strerror or exc} (another "
                             "server there? pick another --port)") from None
    return sock


def serve(path: str | Path, *, host: str = "127.0.0.1", port: int = 8000,
          api_key: str | None = None, model_name: str | None = None, log_level: str = "info",
          **engine_options: Any) -> None:
    """Serve until interrupted (Ctrl-C); the engine stops with the server."""
    import uvicorn

    sock = listen(host, port)
    try:
        app, engine = build_server(path, api_key=api_key, model_name=model_name, **engine_options)
        try:
            bound = sock.getsockname()[1]
            print(f"serving {path} on http://{host}:{bound}/v1 (max {engine.max_batch} streams; "
                  "Ctrl-C stops)", file=sys.stderr, flush=True)
            config = uvicorn.Config(app, log_level=log_level, timeout_graceful_shutdown=5)
            try:
                uvicorn.Server(config).run(sockets=[sock])
            except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it shut down on: done
                pass
        finally:
            engine.close()
    finally:
        sock.close()
