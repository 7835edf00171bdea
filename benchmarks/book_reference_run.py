"""The book's own training code (chapter 5, appendix D), run on this machine as an oracle.

The notebooks' loss figures come from the author's hardware and PyTorch version. Running the
book's published package (``llms-from-scratch`` on PyPI) here, with the same seed, split and
hyperparameters, says which part of a gap to llmbricks is the method and which is the machine.

    .venv/bin/pip install --no-deps llms-from-scratch==1.0.19
    LLMBRICKS_DATA_DIR=../shared/data .venv/bin/python benchmarks/book_reference_run.py appD

``--no-deps`` keeps the resolver from replacing the pinned torch. GPT-2's encoding is resolved
offline by llmbricks' tiktoken plugin and handed to the book's code in place of
``tiktoken.get_encoding``, which would download it.
"""

from __future__ import annotations

import argparse
import sys
import time

import tiktoken
import torch

from llmbricks.core.store.datafiles import resolve_file
from llmbricks.plugins.data.corpora import THE_VERDICT
from llmbricks.plugins.tokenizers.tiktoken import load_encoding

GPT_124M = {"vocab_size": 50257, "context_length": 256, "emb_dim": 768, "n_heads": 12,
            "n_layers": 12, "drop_rate": 0.1, "qkv_bias": False}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chapter", choices=["ch05", "appD"])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    try:
        from llms_from_scratch.appendix_d import train_model
        from llms_from_scratch.ch02 import create_dataloader_v1
        from llms_from_scratch.ch04 import GPTModel
        from llms_from_scratch.ch05 import train_model_simple
    except ImportError:
        sys.exit("error: the book's package is missing; install it with "
                 "`.venv/bin/pip install --no-deps llms-from-scratch==1.0.19`")
    encoding = load_encoding("gpt2", None)
    tiktoken.get_encoding = lambda name: encoding  # the book's loaders call it; no network here
    torch.set_num_threads(args.threads)
    text = resolve_file(THE_VERDICT).read_text(encoding="utf-8")

    # The notebooks' order of seeding: the model first, then the loaders.
    torch.manual_seed(123)
    model = GPTModel(GPT_124M)
    model.eval()
    split = int(0.9 * len(text))
    torch.manual_seed(123)
    loader = dict(batch_size=2, max_length=256, stride=256, num_workers=0)
    train_loader = create_dataloader_v1(text[:split], drop_last=True, shuffle=True, **loader)
    val_loader = create_dataloader_v1(text[split:], drop_last=False, shuffle=False, **loader)

    start = time.perf_counter()
    if args.chapter == "appD":
        # As appendix-D.ipynb: no lr given, so train_model's peak is AdamW's default 1e-3, the
        # notebook's peak_lr.
        optimizer = torch.optim.AdamW(model.parameters(), weight_decay=0.1)
        total_steps = len(train_loader) * 15
        train_losses, val_losses, _, _ = train_model(
            model, train_loader, val_loader, optimizer, "cpu", n_epochs=15, eval_freq=5,
            eval_iter=1, start_context="Every effort moves you", tokenizer=encoding,
            warmup_steps=int(0.2 * total_steps), initial_lr=1e-5, min_lr=1e-5)
    else:
        optimizer = torch.optim.AdamW(model.parameters(), lr=0.0004, weight_decay=0.1)
        train_losses, val_losses, _ = train_model_simple(
            model, train_loader, val_loader, optimizer, "cpu", num_epochs=10, eval_freq=5,
            eval_iter=5, start_context="Every effort moves you", tokenizer=encoding)
    seconds = time.perf_counter() - start
    print(f"{args.chapter} (the book's code): final train {train_losses[-1]:.3f} "
          f"val {val_losses[-1]:.3f}; lowest val {min(val_losses):.3f}; {seconds:.0f} s")


if __name__ == "__main__":
    main()
