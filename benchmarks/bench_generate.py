"""Generation throughput: 200 new tokens from a 16-token prompt, batch 1, GPT-2 124M shape.

    .venv/bin/python benchmarks/bench_generate.py [--threads 2] [--new-tokens 200]

Random weights (N(0, 0.02)), fp32, greedy. Ours with the KV cache, ours without it (the whole
context recomputed each step, as in the book's ``generate``), and Hugging Face
``GPT2LMHeadModel.generate`` with its cache, measured in the same process.
"""

from __future__ import annotations

import argparse
import time

import torch

from llmbricks.core.build import build_model
from llmbricks.core.config import load_config
from llmbricks.core.generation import generate_ids

try:
    from benchmarks.common import machine, table
except ImportError:
    from common import machine, table


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--new-tokens", type=int, default=200)
    parser.add_argument("--prompt-tokens", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    n = args.new_tokens
    prompt = torch.randint(0, 50257, (1, args.prompt_tokens), generator=torch.Generator().manual_seed(0))

    torch.manual_seed(0)
    config = load_config({"model": {"preset": "gpt2-small", "dropout": 0.0,
                                    "head": {"tie_weights": True}, "arch": {"init": "normal"}}})
    model = build_model(config).eval()
    generate_ids(model, prompt, max_new_tokens=8)  # warm-up
    cached = timed(lambda: generate_ids(model, prompt, max_new_tokens=n))
    uncached = timed(lambda: generate_ids(model, prompt, max_new_tokens=n, use_cache=False))
    ours_ids = generate_ids(model, prompt, max_new_tokens=n).tokens

    from transformers import GPT2Config, GPT2LMHeadModel

    hf = GPT2LMHeadModel(GPT2Config(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)).eval()
    kwargs = {"max_new_tokens": n, "min_new_tokens": n, "do_sample": False, "use_cache": True,
              "pad_token_id": 50256}
    with torch.no_grad():
        hf.generate(prompt, **{**kwargs, "max_new_tokens": 8, "min_new_tokens": 8})
        hf_time = timed(lambda: hf.generate(prompt, **kwargs))
    rows = [
        ["llmbricks, KV cache", f"{n / cached:.1f}", f"{uncached / cached:.1f}x", f"{hf_time / cached:.2f}x"],
        ["llmbricks, no cache", f"{n / uncached:.1f}", "1.0x", f"{hf_time / uncached:.2f}x"],
        ["HF generate, cache", f"{n / hf_time:.1f}", f"{uncached / hf_time:.1f}x", "1.00x"],
    ]
    print(f"machine: {machine()}")
    print(f"{n} new tokens after a {args.prompt_tokens}-token prompt, batch 1, GPT-2 124M, fp32, greedy "
          f"(ours produced {ours_ids.shape[1] - args.prompt_tokens} tokens)")
    print(table(["model", "tokens/s", "vs no cache", "vs HF"], rows))


if __name__ == "__main__":
    main()
