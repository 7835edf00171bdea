"""Load test of `llmbricks serve`: continuous batching against one request at a time.

    .venv/bin/python benchmarks/bench_serve.py [--streams 1 4 16 64] [--new-tokens 128]

GPT-2 124M shape (random weights, HF's init, tiktoken's GPT-2 tokenizer), fp32, greedy. The
server runs in its own process on 127.0.0.1 (`llmbricks serve`, default batching options plus
`--max-len 512`); the official `openai` client (AsyncOpenAI) drives it with N concurrent
streams of `--new-tokens`-token completions, `--requests-per-stream` requests each, and
measures per request: time to first token (TTFT), time per output token after the first
(TPOT), errors, and requests that ended short of their tokens (dropped). Aggregate tokens/s is
completion tokens over the wall time of the whole level.

Baselines in the same run: the same server one request at a time (N = 1), the engine's Python
API one request at a time (no HTTP), and Hugging Face `GPT2LMHeadModel.generate` called
sequentially on the same weights. Then a burst of more requests than slots plus queue checks
back-pressure: the excess must be answered 503 at once and nothing else lost.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

try:
    from benchmarks.bench_generate import hf_twin
    from benchmarks.common import machine, table
except ImportError:
    from bench_generate import hf_twin
    from common import machine, table

MODEL = {"preset": "gpt2-small", "dropout": 0.0, "head": {"tie_weights": True},
         "arch": {"init": "normal"}, "tokenizer": "tiktoken"}
PROMPTS = ["The history of the city begins", "In a quiet village by the sea, an old man",
           "Here is a recipe for bread: first", "The theory of relativity says that",
           "Once upon a time there was a small robot who", "The stock market opened lower today as"]


def build(directory: Path):
    """Save the benchmark model as a model directory; return (config, model, tokenizer)."""
    from llmbricks.core.build import build_model
    from llmbricks.core.config import load_config
    from llmbricks.core.store.model_dir import save_model_dir
    from llmbricks.core.store.token_cache import ready_tokenizer

    config = load_config({"model": MODEL})
    tokenizer, _ = ready_tokenizer(config)
    torch.manual_seed(0)
    model = build_model(config, tokenizer=tokenizer).eval()
    save_model_dir(directory, config, model, tokenizer)
    return config, model, tokenizer


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def one_request(client, prompt: str, new_tokens: int) -> dict:
    start = time.perf_counter()
    first = last = None
    pieces = 0
    usage = None
    reason = None
    try:
        stream = await client.completions.create(
            model="bench", prompt=prompt, max_tokens=new_tokens, temperature=0, stream=True,
            stream_options={"include_usage": True})
        async for chunk in stream:
            now = time.perf_counter()
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices:
                if choice.text:
                    pieces += 1
                    first = first or now
                    last = now
                reason = choice.finish_reason or reason
    except Exception as exc:  # counted, not raised: the table reports errors
        return {"error": f"{type(exc).__name__}: {exc}"}
    tokens = usage.completion_tokens if usage else 0
    return {"ttft": (first or time.perf_counter()) - start, "tokens": tokens,
            "tpot": ((last - first) / (tokens - 1)) if first and last and tokens > 1 else None,
            "short": tokens < new_tokens and reason != "stop", "reason": reason}


async def level(url: str, streams: int, requests_each: int, new_tokens: int) -> dict:
    import openai

    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="bench", max_retries=0,
                                timeout=3600)

    async def worker(index: int) -> list[dict]:
        out = []
        for r in range(requests_each):
            out.append(await one_request(client, PROMPTS[(index + r) % len(PROMPTS)], new_tokens))
        return out

    start = time.perf_counter()
    results = [r for rs in await asyncio.gather(*(worker(i) for i in range(streams))) for r in rs]
    wall = time.perf_counter() - start
    await client.close()
    ok = [r for r in results if "error" not in r]
    return {"streams": streams, "requests": len(results), "wall": wall,
            "tokens": sum(r["tokens"] for r in ok), "errors": len(results) - len(ok),
            "dropped": sum(r["short"] for r in ok),
            "ttft": [r["ttft"] for r in ok], "tpot": [r["tpot"] for r in ok if r["tpot"]],
            "first_error": next((r["error"] for r in results if "error" in r), None)}


async def burst(url: str, count: int, new_tokens: int) -> dict:
    """``count`` requests at once; how many were served, refused with 503, or lost."""
    import httpx

    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(timeout=3600, limits=limits) as client:
        async def ask(i: int) -> tuple[int, float]:
            start = time.perf_counter()
            body = {"model": "bench", "prompt": PROMPTS[i % len(PROMPTS)],
                    "max_tokens": new_tokens, "temperature": 0}
            try:
                response = await client.post(f"{url}/v1/completions", json=body)
            except httpx.HTTPError:
                return -1, time.perf_counter() - start
            return response.status_code, time.perf_counter() - start

        answers = await asyncio.gather(*(ask(i) for i in range(count)))
    refused = [t for code, t in answers if code == 503]
    return {"sent": count, "ok": sum(code == 200 for code, _ in answers), "refused": len(refused),
            "lost": sum(code not in (200, 503) for code, _ in answers),
            "refused_ms": [1000 * percentile(refused, q) if refused else float("nan")
                           for q in (0.5, 0.95)]}


def start_server(directory: Path, port: int, args: argparse.Namespace) -> subprocess.Popen:
    import httpx

    command = [sys.executable, "-m", "llmbricks", "serve", str(directory), "--port", str(port),
               "--model-name", "bench", "--max-len", "512", "--max-batch", str(args.max_batch),
               "--max-queue", str(args.max_queue), "--log-level", "warning"]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    server = subprocess.Popen(command, env=env)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.5)
        if server.poll() is not None:
            raise SystemExit(f"the server exited with {server.returncode}")
    server.kill()
    raise SystemExit("the server did not come up")


def sequential_baselines(config, model, tokenizer, new_tokens: int, count: int) -> list[list[str]]:
    """The engine's Python API and HF generate, one request after another, same weights."""
    from llmbricks.core.tasks.engine import Engine

    prompts = [tokenizer.encode(p) for p in PROMPTS[:count]]
    rows = []
    with Engine(model, tokenizer, max_batch=1, max_len=512) as engine:
        engine.generate(prompts[0], engine.sampling(max_new_tokens=8))  # warm-up
        start = time.perf_counter()
        made = sum(len(engine.generate(p, engine.sampling(max_new_tokens=new_tokens)))
                   for p in prompts)
        rows.append(["engine Python API, one at a time", made / (time.perf_counter() - start)])
    hf = hf_twin(config, model)
    with torch.no_grad():
        hf.generate(torch.tensor([prompts[0]]), max_new_tokens=8, do_sample=False,
                    pad_token_id=50256)
        start = time.perf_counter()
        made = 0
        for p in prompts:
            out = hf.generate(torch.tensor([p]), max_new_tokens=new_tokens,
                              min_new_tokens=new_tokens, do_sample=False, pad_token_id=50256)
            made += out.shape[1] - len(p)
        rows.append(["HF generate, one at a time", made / (time.perf_counter() - start)])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--requests-per-stream", type=int, default=2)
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--max-queue", type=int, default=64)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "gpt2-124m-random"
        config, model, tokenizer = build(directory)
        url = f"http://127.0.0.1:{args.port}"
        server = start_server(directory, args.port, args)
        try:
            asyncio.run(level(url, 1, 1, 16))  # warm-up
            levels = [asyncio.run(level(url, n, args.requests_per_stream, args.new_tokens))
                      for n in args.streams]
            overflow = asyncio.run(burst(url, 2 * (args.max_batch + args.max_queue),
                                         args.new_tokens))
        finally:
            server.terminate()
            server.wait(timeout=60)
        baselines = sequential_baselines(config, model, tokenizer, args.new_tokens, 3)

    single = next((lv["tokens"] / lv["wall"] for lv in levels if lv["streams"] == 1), None)
    rows = []
    for lv in levels:
        rate = lv["tokens"] / lv["wall"]
        rows.append([lv["streams"], lv["requests"], f"{rate:.1f}",
                     f"{rate / single:.1f}x" if single else "-",
                     f"{1000 * percentile(lv['ttft'], 0.5):.0f} / {1000 * percentile(lv['ttft'], 0.95):.0f}",
                     f"{1000 * percentile(lv['tpot'], 0.5):.0f} / {1000 * percentile(lv['tpot'], 0.95):.0f}",
                     lv["errors"], lv["dropped"]])
    print(f"\nGPT-2 124M shape, fp32, greedy, {args.new_tokens}-token completions, "
          f"{args.requests_per_stream} requests per stream; server --max-batch {args.max_batch} "
          f"--max-queue {args.max_queue} --max-len 512")
    print(table(["streams", "requests", "tokens/s", "vs 1 stream", "TTFT ms p50 / p95",
                 "per-token ms p50 / p95", "errors", "dropped"], rows))
    print("\nOne request at a time, same weights (no HTTP):")
    print(table(["baseline", "tokens/s"], [[name, f"{rate:.1f}"] for name, rate in baselines]))
    for lv in levels:
        if lv["first_error"]:
            print(f"{lv['streams']} streams, first error: {lv['first_error']}")
    print(f"\nburst of {overflow['sent']} requests at once (capacity {args.max_batch} running + "
          f"{args.max_queue} waiting): {overflow['ok']} served, {overflow['refused']} answered "
          f"503 (p50 {overflow['refused_ms'][0]:.0f} ms, p95 {overflow['refused_ms'][1]:.0f} ms), "
          f"{overflow['lost']} lost")
    at16 = next((lv for lv in levels if lv["streams"] == 16), None)
    if at16 and single:
        ratio = at16["tokens"] / at16["wall"] / single
        met = ratio >= 6 and not any(lv["errors"] or lv["dropped"] for lv in levels)
        print(f"target: 16 streams >= 6x one stream, no errors or drops: "
              f"{'met' if met else 'NOT met'} ({ratio:.1f}x)")


if __name__ == "__main__":
    main()
