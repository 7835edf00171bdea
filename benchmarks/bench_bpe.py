"""BPE: training time and encoding throughput, ours beside Hugging Face tokenizers and tiktoken.

    .venv/bin/python benchmarks/bench_bpe.py [--data-dir DIR] [--repeats N]

Training: our ``bpe`` (pure Python, incremental) and Hugging Face ``tokenizers``' ByteLevel BPE
trainer (Rust, multi-threaded) learn vocabularies of 512, 1,024 and 4,096 tokens from tiny
shakespeare (the same text, the same special token, no minimum pair frequency), given the
corpus as one text and as 100-line documents (Hugging Face parallelizes over texts). Encoding: our
``bpe`` loaded from GPT-2's ``encoder.json`` + ``vocab.bpe``, tiktoken's ``gpt2`` (built from
``gpt2.tiktoken``) and Hugging Face's ``ByteLevelBPETokenizer`` from the same two GPT-2 files, on
the whole text in one call and as a batch of 100-line documents. Every figure is the best of ``--repeats``
runs measured in this process; the target is a training time within 3x of Hugging Face's at 4,096.
Needs ``pip install tokenizers`` for the Hugging Face columns (they are skipped without it).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import tiktoken
import tiktoken.load

from llmbricks.plugins.tokenizers.bpe import GPT2_PATTERN, BPETokenizer

EOT = "<|endoftext|>"
VOCAB_SIZES = (512, 1024, 4096)

try:
    import tokenizers as hf
except ImportError:  # optional: the bench extra installs it
    hf = None


def best_time(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def train_ours(texts: list[str], vocab_size: int) -> BPETokenizer:
    tok = BPETokenizer(BPETokenizer.Params(vocab_size=vocab_size, special_tokens=[EOT]))
    tok.train(texts)
    return tok


def train_hf(texts: list[str], vocab_size: int):
    tok = hf.ByteLevelBPETokenizer()
    tok.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=0, show_progress=False,
                            special_tokens=[EOT])
    return tok


def as_docs(text: str, lines_per_doc: int = 100) -> list[str]:
    lines = text.splitlines(keepends=True)
    return ["".join(lines[i:i + lines_per_doc]) for i in range(0, len(lines), lines_per_doc)]


def training_table(text: str, repeats: int) -> list[str]:
    rows = ["| vocab | input | ours (s) | HF tokenizers (s) | ours / HF | ours bytes/token "
            "| HF bytes/token |", "|---:|---|---:|---:|---:|---:|---:|"]
    n_bytes = len(text.encode("utf-8"))
    # HF parallelizes over texts: give it (and us) the corpus whole and as ~4 KB documents.
    for vocab_size in VOCAB_SIZES:
        for label, texts in (("one text", [text]), ("100-line docs", as_docs(text))):
            ours = best_time(lambda v=vocab_size, t=texts: train_ours(t, v), repeats)
            ours_ratio = n_bytes / len(train_ours(texts, vocab_size).encode(text))
            if hf is None:
                rows.append(f"| {vocab_size:,} | {label} | {ours:.3f} | - | - | {ours_ratio:.2f} | - |")
                continue
            theirs = best_time(lambda v=vocab_size, t=texts: train_hf(t, v), repeats)
            hf_ratio = n_bytes / len(train_hf(texts, vocab_size).encode(text).ids)
            rows.append(f"| {vocab_size:,} | {label} | {ours:.3f} | {theirs:.3f} | "
                        f"{ours / theirs:.2f}x | {ours_ratio:.2f} | {hf_ratio:.2f} |")
    return rows


def encoding_table(text: str, data_dir: Path, repeats: int) -> list[str]:
    ours = BPETokenizer(BPETokenizer.Params(gpt2_files=str(data_dir)))
    ranks = tiktoken.load.load_tiktoken_bpe(str(data_dir / "gpt2.tiktoken"))
    reference = tiktoken.Encoding(name="gpt2", pat_str=GPT2_PATTERN, mergeable_ranks=ranks,
                                  special_tokens={EOT: 50256})
    docs = as_docs(text)  # ~4 KB each
    megabytes = len(text.encode("utf-8")) / 1e6
    contenders: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {
        "llmbricks bpe (GPT-2 files)": (lambda: ours.encode(text), lambda: ours.encode_batch(docs)),
        "tiktoken gpt2": (lambda: reference.encode_ordinary(text),
                          lambda: reference.encode_ordinary_batch(docs)),
    }
    expected = reference.encode_ordinary(text)
    assert ours.encode(text) == expected, "bpe (GPT-2 files) and tiktoken gpt2 disagree"
    if hf is not None:
        hf_tok = hf.ByteLevelBPETokenizer(str(data_dir / "encoder.json"), str(data_dir / "vocab.bpe"))
        assert hf_tok.encode(text).ids == expected, "HF ByteLevelBPE and tiktoken gpt2 disagree"
        contenders["HF tokenizers ByteLevelBPE"] = (lambda: hf_tok.encode(text),
                                                    lambda: hf_tok.encode_batch(docs))
    speeds = {name: (megabytes / best_time(whole, repeats), megabytes / best_time(batch, repeats))
              for name, (whole, batch) in contenders.items()}
    tik_single, tik_batched = speeds["tiktoken gpt2"]
    rows = ["| encoder | one text (MB/s) | 100-line docs, batched (MB/s) | vs tiktoken (one text) "
            "| vs tiktoken (batched) |", "|---|---:|---:|---:|---:|"]
    for name, (single, batched) in speeds.items():
        rows.append(f"| {name} | {single:.1f} | {batched:.1f} | {single / tik_single:.2f}x "
                    f"| {batched / tik_batched:.2f}x |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("LLMBRICKS_DATA_DIR"),
                        help="folder with tinyshakespeare.txt, encoder.json, vocab.bpe, "
                        "gpt2.tiktoken (default: $LLMBRICKS_DATA_DIR)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure; the best counts")
    args = parser.parse_args()
    if not args.data_dir:
        parser.error("set --data-dir or $LLMBRICKS_DATA_DIR")
    data_dir = Path(args.data_dir)
    text = (data_dir / "tinyshakespeare.txt").read_text(encoding="utf-8")

    print("# BPE benchmark\n")
    print(f"- machine: {platform.machine()}, {os.cpu_count()} CPUs "
          f"({len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else '?'} usable), "
          f"{platform.system()} {platform.release()}")
    print(f"- python {platform.python_version()}, tiktoken {tiktoken.__version__}, "
          f"tokenizers {hf.__version__ if hf else 'not installed (pip install tokenizers)'}")
    print(f"- corpus: tinyshakespeare.txt, {len(text.encode('utf-8')):,} bytes; "
          f"best of {args.repeats} runs\n")
    print("## Training (tiny shakespeare)\n")
    print("\n".join(training_table(text, args.repeats)))
    print("\n## Encoding throughput (GPT-2 vocabulary, tiny shakespeare)\n")
    print("\n".join(encoding_table(text, data_dir, args.repeats)))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
