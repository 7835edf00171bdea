"""The training-memory estimate beside the measured peak RSS of real `llmbricks train` runs.

    .venv/bin/python benchmarks/memory_estimate.py [--cases baby,small,gpt2-small] [--steps 3]

Each case writes a config and a generated corpus (a 1 MB text file) to a temporary folder, asks
`llmbricks model summary CONFIG --json` for the estimate (in its own process, as a user would
see it), then runs `llmbricks train CONFIG` for ``--steps`` optimizer steps (an evaluation and
a checkpoint at the end) in a fresh process and reads that process's peak resident memory
(``ru_maxrss`` from ``os.wait4``). Cases:

- baby: the quickstart's nanogpt-baby (4 layers x 128 dims, context 64, batch 12, vocab 65: tiny
  shakespeare's characters);
- small: 6 layers x 384 dims x 6 heads, context 256, batch 8, vocab 50,257, dropout 0;
- gpt2-small: examples/configs/gpt2-124m.yaml (124M, tied head, dropout 0.1), batch 1 at
  context 1024 (forward, backward and AdamW), vocab 50,257.

The char tokenizer stands in for GPT-2's BPE (``vocab_size: 50257`` sets the model's width), so
no download is needed; the memory of a model does not depend on which ids it is fed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

try:
    from benchmarks.common import machine, table
except ImportError:  # run as a script from the repository root
    from common import machine, table

ROOT = Path(__file__).resolve().parent.parent
TRAIN = {"batch_size": 12, "warmup_steps": 0, "eval_every": 1000, "eval_batches": 1,
         "log_every": 1, "loggers": ["jsonl"], "sample_prompt": None}
CASES = {
    "baby": {"model": {"preset": "nanogpt-baby", "vocab_size": 65}, "train": {"batch_size": 12}},
    "small": {"model": {"tokenizer": "char", "vocab_size": 50257, "context_length": 256,
                        "emb_dim": 384, "n_layers": 6, "n_heads": 6, "dropout": 0.0,
                        "head": {"name": "lm", "tie_weights": True}},
              "train": {"batch_size": 8}},
    "gpt2-small": {"model": {"preset": "gpt2-small", "tokenizer": "char", "vocab_size": 50257,
                             "head": {"name": "lm", "tie_weights": True},
                             "arch": {"name": "gpt", "init": "normal"}},
                   "train": {"batch_size": 1}},
}
#: Extra shapes that weigh one term each (not run by default): the attention weights CPU keeps
#: with dropout ("small-dropout"), reference attention ("small-mha"), blocks over logits ("deep").
CALIBRATION = {
    "small-dropout": {"model": {**CASES["small"]["model"], "dropout": 0.1}, "train": {"batch_size": 8}},
    "small-mha": {"model": {**CASES["small"]["model"], "attention": "mha"}, "train": {"batch_size": 8}},
    "deep": {"model": {"tokenizer": "char", "context_length": 256, "emb_dim": 512, "n_layers": 12,
                       "n_heads": 8, "dropout": 0.0}, "train": {"batch_size": 16}},
}


def write_case(name: str, folder: Path, steps: int) -> Path:
    """The case's config and a 1 MB corpus of words in ``folder``; returns the config's path."""
    rng = random.Random(0)
    words = "the king and queen of a far land rode out at dawn to see the sea".split()
    corpus = folder / "corpus.txt"
    corpus.write_text(" ".join(rng.choice(words) for _ in range(250_000)) + "\n", encoding="utf-8")
    case = {**CASES, **CALIBRATION}[name]
    config = {"name": name, "model": case["model"],
              "data": {"source": {"name": "text", "path": str(corpus)}, "val_fraction": 0.1},
              "train": {**TRAIN, **case["train"], "max_steps": steps}, "seed": 1}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def summary_json(config: Path, env: dict[str, str], cwd: Path) -> dict[str, object]:
    """`llmbricks model summary CONFIG --json`, run in a fresh process as a user would."""
    result = subprocess.run([sys.executable, "-m", "llmbricks", "model", "summary", str(config),
                             "--json"], cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"model summary {config} failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout)


def measure(name: str, steps: int, threads: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        config = write_case(name, folder, steps)
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONWARNINGS": "ignore",
               "LLMBRICKS_CACHE_DIR": str(folder / "cache"), "PYTHONPATH": str(ROOT / "src")}
        memory = summary_json(config, env, folder)["training_memory"]
        peak = peak_rss("train", str(config), "--out", str(folder / "run"), env=env, cwd=folder)
    estimate = memory["total_bytes"]
    return {"case": name, "estimate": estimate, "peak": peak, "parts": memory["parts_bytes"],
            "ratio": estimate / peak}


def peak_rss(*args: str, env: dict[str, str], cwd: Path) -> int:
    """The peak resident memory of one `llmbricks ARGS` process, from ``os.wait4``."""
    process = subprocess.Popen([sys.executable, "-m", "llmbricks", *args], cwd=cwd, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert process.stderr is not None
    err = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise SystemExit(f"llmbricks {' '.join(args)} failed:\n{err.decode()[-2000:]}")
    return usage.ru_maxrss * 1024  # Linux reports KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated: " + ", ".join([*CASES, *CALIBRATION]))
    parser.add_argument("--steps", type=int, default=3, help="optimizer steps per run")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    rows = []
    for name in args.cases.split(","):
        result = measure(name, args.steps, args.threads)
        parts = ", ".join(f"{k.replace('_', ' ')} {v / 2**20:,.0f}" for k, v in result["parts"].items()
                          if v)
        rows.append([name, f"{result['estimate'] / 2**20:,.0f}", f"{result['peak'] / 2**20:,.0f}",
                     f"{result['ratio']:.2f}", parts])
        print(f"{name}: estimate {result['estimate'] / 2**20:,.0f} MiB, peak RSS "
              f"{result['peak'] / 2**20:,.0f} MiB, ratio {result['ratio']:.2f}", flush=True)
    print()
    print(table(["case", "estimate (MiB)", "peak RSS (MiB)", "estimate / peak", "estimate's parts (MiB)"],
                rows))


if __name__ == "__main__":
    main()
