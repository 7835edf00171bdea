"""Token-cache build on a large synthetic corpus: throughput and peak memory.

    .venv/bin/python benchmarks/bench_token_cache.py --mb 200

Writes a synthetic corpus (words drawn from tiny shakespeare's vocabulary with a fixed seed) of
``--mb`` megabytes, then builds the token cache with tiktoken ``gpt2`` in a fresh process and
reports its throughput and peak RSS. The target is a peak RSS under 600 MB, whatever the size.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = """
import json, resource, sys, time
from llmbricks.core.store.token_cache import build_token_cache
from llmbricks.core.registry import get_registry
registry = get_registry()
source = registry.build("datasource", {"name": "text", "path": sys.argv[1]})
tokenizer = registry.build("tokenizer", "tiktoken")
start = time.perf_counter()
cache = build_token_cache(source, tokenizer, sys.argv[2])
seconds = time.perf_counter() - start
print(json.dumps({"tokens": len(cache), "seconds": seconds,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def write_corpus(path: Path, megabytes: int, data_dir: Path) -> int:
    words = (data_dir / "tinyshakespeare.txt").read_text(encoding="utf-8").split()
    rng = random.Random(0)
    target = megabytes * 1_000_000
    written = 0
    with open(path, "w", encoding="utf-8") as out:
        while written < target:
            line = " ".join(rng.choices(words, k=rng.randint(3, 14))) + "\n"
            out.write(line)
            written += len(line.encode("utf-8"))
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200, help="corpus size in MB (default 200)")
    parser.add_argument("--data-dir", default=os.environ.get("LLMBRICKS_DATA_DIR", "../shared/data"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.txt"
        t0 = time.perf_counter()
        size = write_corpus(corpus, args.mb, Path(args.data_dir))
        print(f"corpus: {size / 1e6:.1f} MB written in {time.perf_counter() - t0:.1f} s")
        result = subprocess.run([sys.executable, "-c", CHILD, str(corpus), str(Path(tmp) / "cache")],
                                capture_output=True, text=True, check=True)
        figures = json.loads(result.stdout.strip().splitlines()[-1])
    mb_per_s = size / 1e6 / figures["seconds"]
    print("| corpus | tokens | build time | throughput | peak RSS | target |")
    print("|---|---|---|---|---|---|")
    verdict = "met" if figures["peak_rss_mb"] < 600 else "MISSED"
    print(f"| {size / 1e6:.0f} MB | {figures['tokens']:,} | {figures['seconds']:.1f} s | "
          f"{mb_per_s:.1f} MB/s | {figures['peak_rss_mb']:.0f} MB | < 600 MB: {verdict} |")
    print(f"(cpus: {os.cpu_count()}, python {sys.version.split()[0]}; "
          f"this process peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB)")


if __name__ == "__main__":
    main()
