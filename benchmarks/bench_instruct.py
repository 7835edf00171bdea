"""The book's chapter 7, trained by llmbricks: instruction finetuning on its 1,100 records.

    LLMBRICKS_DATA_DIR=../shared/data .venv/bin/python benchmarks/bench_instruct.py [--threads 2]
        [--set train.trainer.mask_prompt=true ...]

Runs ``llmbricks train examples/configs/instruct.yaml`` as a user would (a 4-layer, 128-dim GPT
with GPT-2's tokenizer, from scratch; Alpaca prompts; 935 / 110 / 55 records; 2 epochs, batch 8),
prints its output, then reads the run: the evaluation curve (``metrics.jsonl``, drawn in
``loss.png``), the test loss and ``responses.json`` (one greedy response per test record).

The book judges responses with Llama 3 through ollama, which is not available here. As a rough,
reproducible stand-in this reports a SQuAD-style word F1 of each response against the record's
``output`` (lowercase, punctuation dropped), and the same score for the book's own GPT-2 medium
responses (``instruction-data-with-response.json``, 355M pretrained parameters; its 110 test
records are other records of the same file, so the number is a reference point, not a match).
Targets: the loss falls (last eval < first eval on both splits), responses.json has 55 entries.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path

try:
    from benchmarks.common import machine, table
except ImportError:  # run as a script from the repository root
    from common import machine, table

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "examples" / "configs" / "instruct.yaml"


def words(text: str) -> list[str]:
    text = text.lower().translate(str.maketrans("", "", string.punctuation))
    return re.sub(r"\s+", " ", text).split()


def word_f1(prediction: str, reference: str) -> float:
    """SQuAD's token F1: the harmonic mean of word precision and recall (bag of words)."""
    pred, ref = words(prediction), words(reference)
    common = sum((collections.Counter(pred) & collections.Counter(ref)).values())
    if not pred or not ref or not common:
        return float(pred == ref)
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def mean_f1(entries: list[dict[str, str]]) -> float:
    return sum(word_f1(e["model_response"], e["output"]) for e in entries) / max(1, len(entries))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--config", default=str(CONFIG))
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="dotted.path=value, passed to llmbricks train")
    parser.add_argument("--out", help="run directory (default: a temporary one)")
    parser.add_argument("--show", type=int, default=3, help="responses to print")
    args = parser.parse_args()

    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench-instruct-")) / "run"
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "COLUMNS": "100"}
    command = [sys.executable, "-m", "llmbricks", "train", args.config, "--out", str(out)]
    for override in args.overrides:
        command += ["--set", override]
    started = time.perf_counter()
    subprocess.run(command, check=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - started

    events = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [e for e in events if e["event"] == "eval"]
    results = json.loads((out / "results.json").read_text())
    responses = json.loads((out / "responses.json").read_text())
    print()
    print(f"machine: {machine()}")
    print(f"config: {Path(args.config).name} {' '.join(args.overrides)}".rstrip())
    print(table(["step", "tokens", "train loss", "val loss"],
                [[e["step"], f"{e['tokens']:,}", f"{e['train_loss']:.4f}", f"{e['val_loss']:.4f}"]
                 for e in evals]))
    print(f"test loss {results['test_loss']:.4f} on {results['test_records']} records; "
          f"wall {wall:.1f} s (training {evals[-1]['elapsed_s']:.1f} s); curves: {out / 'loss.png'}")
    print(f"responses.json: {len(responses)} entries, keys {sorted(responses[0]) if responses else []}")
    book_file = Path(os.environ.get("LLMBRICKS_DATA_DIR", "")) / "instruction-data-with-response.json"
    print(f"word F1 vs output: ours {mean_f1(responses):.3f}", end="")
    if book_file.is_file():
        book = json.loads(book_file.read_text(encoding="utf-8"))
        print(f"; the book's GPT-2 medium on its {len(book)} test records {mean_f1(book):.3f}")
    else:
        print()
    for entry in responses[:args.show]:
        print(f"- instruction: {entry['instruction']!r}, input: {entry['input']!r}\n"
              f"  output: {entry['output']!r}\n  model_response: {entry['model_response'][:160]!r}")
    falls = evals[-1]["train_loss"] < evals[0]["train_loss"] and evals[-1]["val_loss"] < evals[0]["val_loss"]
    print(f"loss falls: {'yes' if falls else 'NO'} (train {evals[0]['train_loss']:.3f} -> "
          f"{evals[-1]['train_loss']:.3f}, val {evals[0]['val_loss']:.3f} -> "
          f"{evals[-1]['val_loss']:.3f}); responses: {len(responses)} (target 55)")


if __name__ == "__main__":
    main()
