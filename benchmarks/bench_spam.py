"""SMS spam classification (the book's chapter 6) on 2 CPU cores, with no GPT-2 weights.

    .venv/bin/python benchmarks/bench_spam.py [--variant scratch|lora|both] [--threads 2]

Target: >= 95% accuracy on the balanced test split (300 messages) within 15 minutes.

- ``scratch``: examples/configs/finetune-spam.yaml: a 2-layer, 128-dim GPT with a BPE tokenizer
  trained on the messages, every weight trained from random init, each text's last real token
  pooled (``last_nonpad``), 5 epochs.
- ``lora``: first pretrain a base of the same shape (next-token loss) on the texts of the
  training split only (no labels; val and test texts unseen), then finetune it with LoRA
  (r=16, alpha=16, every Linear layer including the new head: the book's appendix E) while the
  base stays frozen.

Each variant prints its test accuracy, macro F1 and wall time, and the numbers go to
``--json`` if given.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import time
from pathlib import Path

import torch

from llmbricks.core.config import load_config
from llmbricks.core.registry import get_registry
from llmbricks.core.tasks.classification import balance_rows, labeled_rows, split_rows
from llmbricks.core.train.session import train

try:
    from benchmarks.common import machine, table
except ImportError:  # run as a script from the repository root
    from common import machine, table

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "configs" / "finetune-spam.yaml"
QUIET = {"loggers": [{"name": "console", "mode": "plain"}, "jsonl"]}


def run(config, out: Path) -> tuple[dict, float]:
    start = time.perf_counter()
    train(config, out=out)
    return json.loads((out / "results.json").read_text()), time.perf_counter() - start


def scratch(tmp: Path) -> tuple[dict, float]:
    return run(load_config(EXAMPLE, [f"train.loggers={json.dumps(QUIET['loggers'])}"]),
               tmp / "scratch")


def training_texts(path: Path, seed: int = 123) -> Path:
    """The training split's texts (the classify trainer's split, same seed), one per line."""
    rows = labeled_rows(get_registry().build("datasource", "sms_spam"))
    train_rows = split_rows(balance_rows(rows, seed), (0.7, 0.1, 0.2), seed)["train"]
    path.write_text("".join(" ".join(text.split()) + "\n" for text, _ in train_rows),
                    encoding="utf-8")
    return path


def lora(tmp: Path, base_steps: int) -> tuple[dict, float]:
    start = time.perf_counter()
    example = load_config(EXAMPLE).to_data()
    model = {k: example["model"][k] for k in ("context_length", "emb_dim", "n_layers",
                                                "n_heads", "dropout")}
    base = load_config({
        "name": "spam-base", "seed": 123,
        "model": {**model, "tokenizer": {"name": "bpe", "vocab_size": 2048}},
        "data": {"source": {"name": "text", "path": str(training_texts(tmp / "train.txt"))},
                 "val_fraction": 0.1, "sampler": "random"},
        "train": {"max_steps": base_steps, "batch_size": 16, "lr": 2e-3, "warmup_steps": 50,
                  "eval_every": base_steps, "log_every": 100, **QUIET}})
    train(base, out=tmp / "base")
    finetune = load_config({
        "name": "spam-lora", "seed": 123,
        "model": {**model, "tokenizer": {"name": "bpe", "vocab_size": 2048},
                  "head": {"name": "classification", "num_classes": 2,
                           "pooling": "last_nonpad"},
                  "adapters": [{"name": "lora", "r": 16, "alpha": 16, "targets": ["*"]}]},
        "data": {"source": "sms_spam"},
        "train": {"trainer": "classify", "init_from": str(tmp / "base"), "trainable": "auto",
                  "epochs": 3, "batch_size": 8, "lr": 3e-3, "warmup_steps": 50,
                  "eval_every": 130, "eval_batches": 5, "log_every": 50, **QUIET}})
    results, _ = run(finetune, tmp / "lora")
    return results, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=["scratch", "lora", "both"], default="both")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--base-steps", type=int, default=1500,
                        help="pretraining steps of the LoRA variant's base")
    parser.add_argument("--json", type=Path, help="write the numbers here")
    parser.add_argument("--keep", type=Path, help="train the runs in this directory and keep "
                        "them (default: a temporary one)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows, numbers = [], {}
    with (contextlib.nullcontext(str(args.keep)) if args.keep else
          tempfile.TemporaryDirectory()) as tmp:
        for variant in ("scratch", "lora"):
            if args.variant not in (variant, "both"):
                continue
            results, seconds = scratch(Path(tmp)) if variant == "scratch" else \
                lora(Path(tmp), args.base_steps)
            numbers[variant] = {"test_accuracy": results["test_accuracy"],
                                "test_macro_f1": results["test_macro_f1"],
                                "val_accuracy": results["val_accuracy"],
                                "train_accuracy": results["train_accuracy"],
                                "confusion": results["test"]["confusion"], "seconds": seconds}
            rows.append([variant, f"{results['train_accuracy']:.1%}",
                         f"{results['val_accuracy']:.1%}", f"{results['test_accuracy']:.1%}",
                         f"{results['test_macro_f1']:.3f}", f"{seconds / 60:.1f} min"])
    print(f"# {machine()}, {args.threads} threads")
    print(table(["variant", "train acc", "val acc", "test acc", "test macro F1", "wall time"], rows))
    if args.json:
        args.json.write_text(json.dumps(numbers, indent=2) + "\n")


if __name__ == "__main__":
    main()
