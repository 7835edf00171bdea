"""The book's chapter 5 run, trained by llmbricks: GPT-2 124M shape on the-verdict, 10 epochs.

It trains examples/book/ch05-pretrain.yaml, as `llmbricks train` would, and tabulates the curve.

    .venv/bin/python benchmarks/bench_book_ch5.py [--threads 2]

The book's hyperparameters (ch05.ipynb): the GPTModel of chapter 4 (untied head, PyTorch's
default init, dropout 0.1, no qkv bias), tiktoken's GPT-2 encoding, context 256, stride 256,
90/10 split, batch 2, AdamW lr 4e-4 and weight decay 0.1, 10 epochs, evaluation every 5 steps on
5 batches, the sample "Every effort moves you" after each epoch. The book reports train 0.569 and
val 6.373 after epoch 10 (Ep1 9.817/9.924). Target: train < 1.0, val within 6.0-6.8.
"""

from __future__ import annotations

import argparse
import json
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

#: The run's settings live in the chapter's config, the one docs/book.md tells readers to run.
BOOK_CONFIG = Path(__file__).resolve().parent.parent / "examples" / "book" / "ch05-pretrain.yaml"
PLAIN_LOGS = "train.loggers=[{name: console, mode: plain}, jsonl]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, help="keep the run directory here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = load_config(BOOK_CONFIG, [PLAIN_LOGS])
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "book-ch5"
        start = time.perf_counter()
        result = train(config, out=out)
        seconds = time.perf_counter() - start
        events = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [e for e in events if e["event"] == "eval"]
    start_event = events[0]
    per_epoch = result.step // 10
    rows = [[e["step"], f"{e['step'] / per_epoch:.1f}", f"{e['tokens']:,}", f"{e['train_loss']:.3f}",
             f"{e['val_loss']:.3f}"] for e in evals]
    samples = [e for e in events if e["event"] == "sample"]
    print(f"machine: {machine()}")
    print(f"{start_event['params']:,} trainable parameters, {result.step} steps "
          f"({per_epoch} per epoch), {seconds:.0f} s wall ({seconds / 60:.1f} min)")
    print(table(["step", "epoch", "tokens seen", "train loss", "val loss"], rows))
    final = evals[-1]
    print(f"final: train {final['train_loss']:.3f} (book 0.569; target < 1.0), "
          f"val {final['val_loss']:.3f} (book 6.373; target 6.0-6.8)")
    print(f"last sample: {samples[-1]['prompt']}{samples[-1]['text']!r}")


if __name__ == "__main__":
    main()
