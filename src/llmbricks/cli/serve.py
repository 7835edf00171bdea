"""``llmbricks serve``: an OpenAI-compatible server over a run or model directory."""

from __future__ import annotations

import click

from llmbricks.cli.options import check_run_dir

API_KEY_ENV = "LLMBRICKS_API_KEY"


@click.command()
@click.argument("source", metavar="RUN")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (the default is this machine only).")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to listen on.")
@click.option("--api-key", envvar=API_KEY_ENV, help="Require 'Authorization: Bearer KEY' on /v1 "
              f"(also read from ${API_KEY_ENV}).")
@click.option("--model-name", help="The model id clients name (default: the directory's name).")
@click.option("--max-batch", default=32, show_default=True, type=int,
              help="Streams decoded together in one pass (each holds a cache slot).")
@click.option("--max-queue", default=256, show_default=True, type=int,
              help="Requests that may wait for a slot; past that, 503.")
@click.option("--max-len", type=int, help="Tokens per stream, prompt included (default: the "
              "model's context). Lower it to save cache memory.")
@click.option("--prefill-chunk", default=256, show_default=True, type=int,
              help="Prompt tokens cached per step: running streams wait at most one chunk.")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
def serve(source: str, host: str, port: int, api_key: str | None, model_name: str | None,
          max_batch: int, max_queue: int, max_len: int | None, prefill_chunk: int,
          log_level: str) -> None:
    """Serve RUN (a run or model directory) over HTTP with OpenAI's API: /v1/models,
    /v1/completions, /v1/chat/completions (streamed or not) and /health.

    Requests are batched continuously: each decode step serves every running stream."""
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise click.ClickException("serve needs FastAPI and uvicorn: pip install "
                                   "'llmbricks[serve]'") from None
    from llmbricks.server.run import is_loopback
    from llmbricks.server.run import serve as run

    check_run_dir(source)
    if not 0 <= port <= 65535:
        raise click.BadParameter(f"{port} is not a port (0 to 65535)", param_hint="--port")
    if api_key is not None and not api_key.strip():
        raise click.BadParameter("the key is empty", param_hint="--api-key")
    for flag, value in (("--max-batch", max_batch), ("--max-queue", max_queue),
                        ("--prefill-chunk", prefill_chunk)):
        if value < 1:
            raise click.BadParameter(f"{value}: must be >= 1", param_hint=flag)
    if max_len is not None and max_len < 2:
        raise click.BadParameter(f"{max_len}: must be >= 2", param_hint="--max-len")
    if not is_loopback(host) and api_key is None:
        click.echo(f"warning: listening on {host} without --api-key: anyone who can reach this "
                   "port can use the model", err=True)
    run(source, host=host, port=port, api_key=api_key, model_name=model_name,
        log_level=log_level, max_batch=max_batch, max_queue=max_queue, max_len=max_len,
        prefill_chunk=prefill_chunk)
