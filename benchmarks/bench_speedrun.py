"""The CPU speedrun (docs/speedrun.md): ``llmbricks train`` on the record config, timed beside a
reference in the same session.

    LLMBRICKS_DATA_DIR=../shared/data [NANOGPT_DIR=~/nanoGPT] \\
        .venv/bin/python benchmarks/bench_speedrun.py [--runs 3] [--config CONFIG]

The reference is nanoGPT's baby recipe, ``train.py config/train_shakespeare_char.py`` with the
README's CPU flags, when ``NANOGPT_DIR`` points to a checkout of karpathy/nanoGPT (its data is
prepared there once, untimed, as its README does). Otherwise it is llmbricks' nanoGPT-identical
stand-in, ``examples/configs/quickstart.yaml`` without samples (the same model, recipe and
evaluations). Reference and record alternate, round by round, so the machine's noise falls on
both; the ratio of each round is the record's wall time over the reference's. Round ``k`` trains
the record with the config's seed + ``k``: a record holds over seeds.

The rules: the time is the wall time of the whole training command (start-up, data, training,
evaluations, checkpoints), 2 threads; the score is the validation loss over the whole
validation split (the last 10% of the text), in windows of 64 characters, as nanoGPT cuts its
``val.bin``. Each run is scored by the same judge: ``llmbricks eval RUN`` for ours, the same
windows through nanoGPT's own model and checkpoint for nanoGPT (its ``train.py`` prints an
estimate over 20 random batches, shown beside).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import shutil
import statistics
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
RECORD = ROOT / "examples/configs/speedrun-cpu.yaml"
STAND_IN = ROOT / "examples/configs/quickstart.yaml"
NANOGPT_FLAGS = ["config/train_shakespeare_char.py", "--device=cpu", "--compile=False",
                 "--eval_iters=20", "--log_interval=1", "--block_size=64", "--batch_size=12",
                 "--n_layer=4", "--n_head=4", "--n_embd=128", "--max_iters=2000",
                 "--lr_decay_iters=2000", "--dropout=0.0"]
TARGET_LOSS, TARGET_RATIO, THREADS = 1.88, 0.5, 2
WINDOW, VAL_WINDOWS = 64, 1742  # (111,540 - 1) // 64 windows of tiny shakespeare's validation split


def thread_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": str(THREADS), "MKL_NUM_THREADS": str(THREADS)}


def timed(command: list[str], cwd: Path, log: Path) -> float:
    """Wall seconds of ``command``; its output goes to ``log``; a failure stops the benchmark."""
    start = time.perf_counter()
    with log.open("w") as out:
        code = subprocess.call(command, cwd=cwd, env=thread_env(), stdout=out,
                               stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - start
    if code:
        sys.exit(f"{' '.join(command[:4])}... failed with exit {code}; see {log}")
    return seconds


def llmbricks_run(config: Path, run: Path, extra: list[str]) -> dict:
    """``llmbricks train CONFIG`` with a fresh token cache (so its data preparation is timed)."""
    cli = str(Path(sys.executable).with_name("llmbricks"))
    seconds = timed([cli, "train", str(config), "--out", str(run), "--set",
                     f"data.cache_dir={run.parent / (run.name + '-tokens')}", *extra],
                    ROOT, run.with_suffix(".log"))
    report = json.loads(subprocess.check_output(
        [cli, "eval", str(run), "--batch-size", "64", "--json"], cwd=ROOT, env=thread_env()))
    if report["tokens"] != VAL_WINDOWS * WINDOW:  # the rules: every 64-character window of val
        sys.exit(f"{config} scored {report['tokens']:,} validation tokens, not the "
                 f"{VAL_WINDOWS:,} windows of {WINDOW} characters of tiny shakespeare's split: "
                 "the speedrun keeps nanoGPT's data, vocabulary, split and context")
    return {"seconds": seconds, "val": report["loss"], "printed": None}


def prepare_nanogpt(nanogpt: Path) -> None:
    """nanoGPT's own data step, once and untimed: input.txt -> train.bin, val.bin, meta.pkl."""
    data = nanogpt / "data/shakespeare_char"
    if (data / "val.bin").is_file():
        return
    if not (data / "input.txt").is_file():
        from llmbricks.core.store.datafiles import resolve_file
        from llmbricks.plugins.data.corpora import TINYSHAKESPEARE
        shutil.copy(resolve_file(TINYSHAKESPEARE), data / "input.txt")
    subprocess.check_call([sys.executable, "prepare.py"], cwd=data, env=thread_env(),
                          stdout=subprocess.DEVNULL)


def nanogpt_run(nanogpt: Path, out: Path) -> dict:
    seconds = timed([sys.executable, "train.py", *NANOGPT_FLAGS, f"--out_dir={out}"], nanogpt,
                    out.with_suffix(".log"))
    printed = re.findall(r"val loss ([0-9.]+)", out.with_suffix(".log").read_text())
    return {"seconds": seconds, "val": nanogpt_val_loss(nanogpt, out / "ckpt.pt"),
            "printed": float(printed[-1]) if printed else None}


def nanogpt_val_loss(nanogpt: Path, checkpoint: Path) -> float:
    """The judge on nanoGPT's checkpoint: mean loss of every 64-token window of its val.bin."""
    import numpy as np
    import torch

    sys.path.insert(0, str(nanogpt))
    try:
        from model import GPT, GPTConfig  # nanoGPT's model.py
    finally:
        sys.path.remove(str(nanogpt))
    saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
    with contextlib.redirect_stdout(io.StringIO()):  # it prints its parameter count
        model = GPT(GPTConfig(**saved["model_args"]))
    model.load_state_dict({k.removeprefix("_orig_mod."): v for k, v in saved["model"].items()})
    model.eval()
    val = np.fromfile(nanogpt / "data/shakespeare_char/val.bin", dtype=np.uint16).astype(np.int64)
    windows = (len(val) - 1) // WINDOW
    x = torch.from_numpy(val[:windows * WINDOW]).view(windows, WINDOW)
    y = torch.from_numpy(val[1:windows * WINDOW + 1]).view(windows, WINDOW)
    losses = []
    with torch.no_grad():
        for start in range(0, windows, 64):
            _, loss = model(x[start:start + 64], y[start:start + 64])
            losses.append(float(loss) * len(x[start:start + 64]))
    return sum(losses) / windows


def spread(values: list[float], fmt: str) -> str:
    return " / ".join(format(v, fmt) for v in (min(values), statistics.median(values), max(values)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="rounds (reference, then record)")
    parser.add_argument("--config", type=Path, default=RECORD, help="the record's config")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(THREADS)  # what machine() reports; each run is a process of its own
    nanogpt = Path(os.environ["NANOGPT_DIR"]).expanduser() if os.environ.get("NANOGPT_DIR") else None
    if nanogpt is not None:
        if not (nanogpt / "train.py").is_file():
            sys.exit(f"NANOGPT_DIR={nanogpt} holds no train.py: point it to a checkout of "
                     "karpathy/nanoGPT, or unset it for the llmbricks stand-in")
        prepare_nanogpt(nanogpt)
    reference_name = "nanoGPT train.py" if nanogpt else "stand-in (quickstart.yaml)"
    from llmbricks.core.config import load_config

    record_seed = load_config(args.config).seed
    rows, rounds = [], []
    # Runs and their logs stay on a failure (the error names the log), and go on success.
    tmp = tempfile.mkdtemp(prefix="speedrun-")
    for k in range(args.runs):
        if nanogpt is not None:
            ref = nanogpt_run(nanogpt, Path(tmp) / f"nanogpt-{k}")
        else:
            ref = llmbricks_run(STAND_IN, Path(tmp) / f"stand-in-{k}",
                                ["--set", "train.sample_prompt=null"])
        # A record holds over seeds: round k trains with the config's seed + k.
        ours = llmbricks_run(args.config, Path(tmp) / f"record-{k}",
                             ["--set", f"seed={record_seed + k}"])
        ratio = ours["seconds"] / ref["seconds"]
        rounds.append({"round": k + 1, "reference": ref, "record": ours, "ratio": ratio})
        printed = f" (printed {ref['printed']:.4f})" if ref["printed"] is not None else ""
        rows.append([k + 1, reference_name, f"{ref['val']:.4f}{printed}", f"{ref['seconds']:.1f}", ""])
        rows.append([k + 1, f"{args.config.name}, seed {record_seed + k}", f"{ours['val']:.4f}",
                     f"{ours['seconds']:.1f}", f"{ratio:.2f}x"])
        print(f"round {k + 1}: reference {ref['seconds']:.1f} s, record {ours['seconds']:.1f} s, "
              f"val {ours['val']:.4f}", flush=True)
    shutil.rmtree(tmp, ignore_errors=True)
    vals = [r["record"]["val"] for r in rounds]
    walls = [r["record"]["seconds"] for r in rounds]
    ratios = [r["ratio"] for r in rounds]
    met = max(vals) <= TARGET_LOSS and max(ratios) <= TARGET_RATIO
    print(f"machine: {machine()}; {THREADS} threads per run")
    print(table(["round", "run", "val loss (whole split)", "wall s", "record / reference"], rows))
    print(table(["", "min / median / max"], [
        ["record val loss", spread(vals, ".4f")], ["record wall s", spread(walls, ".1f")],
        ["reference wall s", spread([r["reference"]["seconds"] for r in rounds], ".1f")],
        ["reference val loss", spread([r["reference"]["val"] for r in rounds], ".4f")],
        ["ratio", spread(ratios, ".2f")]]))
    print(f"target (every run): val <= {TARGET_LOSS} and wall <= {TARGET_RATIO}x the reference: "
          f"{'met' if met else 'NOT met'}")
    if args.json:
        args.json.write_text(json.dumps({"reference": reference_name, "rounds": rounds,
                                         "machine": machine(), "met": met}, indent=2))


if __name__ == "__main__":
    main()
