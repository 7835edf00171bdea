"""Quality race: nanoGPT's CPU recipe for tiny shakespeare (char level), trained by llmbricks.

    .venv/bin/python benchmarks/bench_nanogpt_race.py [--seeds 1] [--variant nanogpt ...]

The recipe (nanoGPT README, "I only have a macbook"): 4 layers, 4 heads, 128 dims, context 64,
batch 12, dropout 0, AdamW lr 1e-3 (betas 0.9/0.99, weight decay 0.1 on matrices), 100 warmup
steps, cosine to 1e-4 at 2,000 iterations, grad clip 1.0, evaluation every 250 iterations on 20
batches of each split. The peer is nanoGPT's own ``train.py`` with that command, measured on this
machine (it is not a pip package, so it is not rerun here): val 1.8857 in 110-130 s of wall time,
about 52 ms per iteration. Our wall time counts everything from the call to ``train`` to its
return: data preparation, the 2,000 steps, 9 evaluations and the checkpoints.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from llmbricks.core.config import load_config
from llmbricks.core.train.session import train

try:
    from benchmarks.common import machine, table
except ImportError:  # run as a script from the repository root
    from common import machine, table

NANOGPT = {"val": 1.8857, "seconds": (110.0, 130.0), "ms_per_iter": 52.0}
RECIPE = {
    "model": {"preset": "nanogpt-baby", "dropout": 0.0},
    "data": {"source": "tinyshakespeare", "val_fraction": 0.1, "sampler": "random"},
    "train": {"max_steps": 2000, "batch_size": 12, "lr": 1e-3, "min_lr": 1e-4,
              "warmup_steps": 100, "betas": [0.9, 0.99], "weight_decay": 0.1,
              "decay_embeddings": True, "grad_clip": 1.0, "eval_every": 250, "eval_batches": 20,
              "log_every": 250, "checkpoint_every": 2000, "keep_checkpoints": 1,
              "loggers": [{"name": "console", "mode": "plain"}, "jsonl"]},
}
#: Component swaps raced on the same recipe (same shape, same budget).
VARIANTS = {
    "nanogpt": {},
    "rope": {"model": {"positional": "rope"}},
}


def race(variant: str, seed: int, root: Path) -> dict:
    raw = {**RECIPE, "name": f"race-{variant}", "seed": seed}
    raw["model"] = {**RECIPE["model"], **VARIANTS[variant].get("model", {})}
    config = load_config(raw)
    start = time.perf_counter()
    result = train(config, out=root / f"{variant}-{seed}")
    seconds = time.perf_counter() - start
    steps = config.train.max_steps
    return {"variant": variant, "seed": seed, "val": result.metrics["val_loss"],
            "train": result.metrics["train_loss"], "seconds": seconds,
            "ms_per_iter": 1000 * seconds / steps,
            "tokens_per_s": steps * config.train.batch_size * config.model.context_length / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--variant", action="append", choices=sorted(VARIANTS))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    variants = args.variant or ["nanogpt"]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for variant in variants:
            for seed in range(1337, 1337 + args.seeds):
                results.append(race(variant, seed, Path(tmp)))
    reference = statistics.mean(NANOGPT["seconds"])
    rows = [[r["variant"], r["seed"], f"{r['val']:.4f}", f"{r['train']:.4f}", f"{r['seconds']:.1f}",
             f"{r['ms_per_iter']:.1f}", f"{r['tokens_per_s']:,.0f}",
             f"{r['seconds'] / reference:.2f}x"] for r in results]
    rows.append(["nanoGPT train.py (measured on this machine)", "1337", f"{NANOGPT['val']:.4f}", "",
                 "110-130", f"{NANOGPT['ms_per_iter']:.0f}", f"{768 / NANOGPT['ms_per_iter'] * 1000:,.0f}",
                 "1.00x"])
    print(f"machine: {machine()}")
    print("tiny shakespeare, char level, 4 layers x 4 heads x 128 dims, context 64, batch 12, "
          "2,000 iterations; wall time includes data, evaluation and checkpoints")
    print(table(["run", "seed", "val loss", "train loss", "wall s", "ms/iter", "tokens/s",
                 "time vs nanoGPT (120 s)"], rows))
    for variant in variants:
        vals = [r["val"] for r in results if r["variant"] == variant]
        secs = [r["seconds"] for r in results if r["variant"] == variant]
        print(f"{variant}: val {statistics.mean(vals):.4f} (target <= 1.88), "
              f"{statistics.mean(secs):.1f} s = {statistics.mean(secs) / NANOGPT['seconds'][0]:.2f}x "
              f"of nanoGPT's fastest 110 s (target <= 0.8x)")


if __name__ == "__main__":
    main()
