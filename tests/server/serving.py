"""A tiny model directory and a live server on a free localhost port, for the serving tests."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import torch

#: Text the tiny byte-level BPE learns its merges from (any text still encodes: bytes remain).
CORPUS = "Hello there. The quick brown fox jumps over the lazy dog. " * 20


def tiny_model_dir(path: Path, *, context_length: int = 512, positional: str = "rope") -> Path:
    """A randomly initialized 2-layer model with a trained BPE tokenizer, saved as a model dir.

    The head is untied so greedy text wanders instead of repeating one token.
    """
    from llmbricks.core.build import build_model
    from llmbricks.core.config import load_config
    from llmbricks.core.registry import get_registry
    from llmbricks.core.store.model_dir import save_model_dir

    tokenizer = get_registry().build("tokenizer", {"name": "bpe", "vocab_size": 300})
    tokenizer.train([CORPUS])
    config = load_config({"model": {"context_length": context_length, "emb_dim": 32,
                                    "n_layers": 2, "n_heads": 4, "positional": positional,
                                    "tokenizer": {"name": "bpe", "vocab_size": 300},
                                    "head": {"tie_weights": False}}})
    torch.manual_seed(0)
    return save_model_dir(path, config, build_model(config, tokenizer=tokenizer), tokenizer)


@contextlib.contextmanager
def live_server(model_dir: Path, **options: Any) -> Iterator[tuple[str, Any]]:
    """Serve ``model_dir`` on 127.0.0.1 (a free port) in a thread; yields (base url, engine)."""
    import uvicorn

    from llmbricks.server.run import build_server

    app, engine = build_server(model_dir, **options)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url)
        yield url, engine
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
        engine.close()


def wait_until_up(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"the server at {url} did not come up")
        time.sleep(0.05)
