"""Training-step throughput: forward + backward + AdamW, ours beside Hugging Face GPT-2.

    .venv/bin/python benchmarks/bench_train_step.py [--threads 2] [--steps 10]

Two shapes: "baby" (4 layers, 4 heads, 128 dims, context 64, batch 12, vocab 65) and "small"
(6 layers, 6 heads, 384 dims, context 256, batch 8, vocab 50,257). Both models use GPT-2's
N(0, 0.02) init, a tied head, dropout 0, AdamW (lr 3e-4, weight decay 0.1) and the same random
batches; ours runs with its defaults (``sdpa`` attention, fused AdamW where available). Reported:
tokens/s of the median step and the ratio ours / Hugging Face, measured in the same process.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from llmbricks.core.build import build_model
from llmbricks.core.config import load_config

try:
    from benchmarks.common import machine, table
except ImportError:  # run as a script from the repository root
    from common import machine, table

SHAPES = {
    "baby": {"n_layers": 4, "n_heads": 4, "emb_dim": 128, "context_length": 64, "batch": 12, "vocab": 65},
    "small": {"n_layers": 6, "n_heads": 6, "emb_dim": 384, "context_length": 256, "batch": 8, "vocab": 50257},
}


def ours(shape: dict, compile_model: bool = False):
    config = load_config({"model": {
        "vocab_size": shape["vocab"], "context_length": shape["context_length"],
        "emb_dim": shape["emb_dim"], "n_layers": shape["n_layers"], "n_heads": shape["n_heads"],
        "dropout": 0.0, "attention": "sdpa", "arch": {"name": "gpt", "init": "normal"}}})
    model = build_model(config)
    forward = torch.compile(model) if compile_model else model

    def loss(x, y):
        logits = forward(x)
        return torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())

    return model, loss


def huggingface(shape: dict):
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=shape["vocab"], n_positions=shape["context_length"],
                        n_embd=shape["emb_dim"], n_layer=shape["n_layers"], n_head=shape["n_heads"],
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    model = GPT2LMHeadModel(config)

    def loss(x, y):
        logits = model(input_ids=x).logits
        return torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())

    return model, loss


def adamw(model: torch.nn.Module) -> torch.optim.Optimizer:
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}]
    try:
        return torch.optim.AdamW(groups, lr=3e-4, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, lr=3e-4)


def steps_per_second(model, loss_fn, optimizer, batches) -> float:
    times = []
    for i, (x, y) in enumerate(batches):
        start = time.perf_counter()
        loss = loss_fn(x, y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if i >= 2:  # warm-up steps are not timed
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(name: str, shape: dict, steps: int, with_compile: bool) -> list:
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randint(0, shape["vocab"], (shape["batch"], shape["context_length"]), generator=g),
                torch.randint(0, shape["vocab"], (shape["batch"], shape["context_length"]), generator=g))
               for _ in range(steps + 2)]
    tokens = shape["batch"] * shape["context_length"]
    results = {}
    contenders = [("llmbricks", lambda: ours(shape)), ("HF GPT2LMHeadModel", lambda: huggingface(shape))]
    if with_compile:
        contenders.append(("llmbricks, compile", lambda: ours(shape, compile_model=True)))
    for label, make in contenders:
        torch.manual_seed(0)
        model, loss_fn = make()
        model.train()
        results[label] = tokens / steps_per_second(model, loss_fn, adamw(model), batches)
    hf = results["HF GPT2LMHeadModel"]
    return [[name, label, f"{tps:,.0f}", f"{tps / hf:.2f}x"] for label, tps in results.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--shapes", default="baby,small")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for name in args.shapes.split(","):
        rows += run(name, SHAPES[name], args.steps, args.compile)
    print(f"machine: {machine()}")
    print(table(["shape", "model", "tokens/s", "vs HF"], rows))


if __name__ == "__main__":
    main()
