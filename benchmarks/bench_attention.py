"""What each attention and positional component costs: forward + backward of one layer's attention.

    .venv/bin/python benchmarks/bench_attention.py [--threads 2]

Batch 4, 384 dims, 6 heads, T = 256 and 1,024. ``mha`` (explicit softmax) and ``sdpa`` (fused)
with no positional bias, then ``sdpa`` with each positional kind (the model's ``context`` call,
which computes rotations and biases once per pass, is included in the time).
"""

from __future__ import annotations

import argparse

import torch

from llmbricks.core.component import Dims
from llmbricks.core.registry import get_registry

try:
    from benchmarks.common import best_of, machine, table
except ImportError:
    from common import best_of, machine, table


def cost(attention: str, positional: str, t: int, repeats: int) -> float:
    registry = get_registry()
    dims = Dims(vocab_size=1, context_length=t, emb_dim=384, n_heads=6, n_kv_heads=6, n_layers=1,
                dropout=0.0)
    attn = registry.build("attention", attention, dims=dims)
    pos = registry.build("positional", positional, dims=dims)
    x = torch.randn(4, t, 384, requires_grad=True)
    positions = torch.arange(t)

    def step() -> None:
        out = attn(x, pos, pos.context(positions, positions))
        out.sum().backward()

    return best_of(step, repeats) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    registry = get_registry()
    variants = [("mha", "none"), ("sdpa", "none")]
    variants += [("sdpa", p) for p in registry.names("positional") if p != "none"]
    rows = []
    for attention, positional in variants:
        times = [cost(attention, positional, t, args.repeats) for t in (256, 1024)]
        rows.append([attention, positional, *(f"{ms:.1f}" for ms in times)])
    print(f"machine: {machine()}")
    print(table(["attention", "positional", "T=256 (ms)", "T=1024 (ms)"], rows))


if __name__ == "__main__":
    main()
