"""Importing a Hugging Face checkpoint: peak memory and seconds, llmbricks beside transformers.

    .venv/bin/python benchmarks/bench_import.py [--shape qwen2-0.5b] [--keep DIR]

Writes a random checkpoint of a real model's shape (Qwen2-0.5B: 24 layers x 896 dims, 14 heads
with 2 key/value heads, SwiGLU 4864, vocab 151,936, tied; fp32, sharded at 1 GB like
``save_pretrained``) one tensor at a time, then measures, each in a fresh process:

- ``llmbricks import hf FOLDER OUT`` (reads the shards memory-mapped into a meta-built model and
  writes a model directory);
- ``transformers.AutoModelForCausalLM.from_pretrained(FOLDER, dtype=float32)`` (loading only).

Peak resident memory is the process's ``ru_maxrss`` (from ``os.wait4``); the interpreter's own
share is measured by a process that imports the same libraries and loads nothing. The issue's
target: an import's peak is at most 1.3x the checkpoint's size on disk plus the interpreter.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

try:
    from benchmarks.common import machine, table
except ImportError:  # run as a script from the repository root
    from common import machine, table

SHAPES = {
    "qwen2-0.5b": {"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"],
                   "vocab_size": 151936, "hidden_size": 896, "intermediate_size": 4864,
                   "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2,
                   "max_position_embeddings": 32768, "rms_norm_eps": 1e-6,
                   "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0},
                   "tie_word_embeddings": True, "hidden_act": "silu", "use_sliding_window": False,
                   "torch_dtype": "float32"},
    "llama-tiny": {"model_type": "llama", "architectures": ["LlamaForCausalLM"],
                   "vocab_size": 32000, "hidden_size": 256, "intermediate_size": 688,
                   "num_hidden_layers": 4, "num_attention_heads": 8, "num_key_value_heads": 4,
                   "max_position_embeddings": 2048, "rms_norm_eps": 1e-5,
                   "tie_word_embeddings": False, "hidden_act": "silu", "torch_dtype": "float32"},
}
SHARD_BYTES = 1 << 30


def tensor_shapes(hf: dict) -> dict[str, tuple[int, ...]]:
    """Every tensor of a Llama/Qwen2 checkpoint of this config.json, by Hugging Face name."""
    d, f, v = hf["hidden_size"], hf["intermediate_size"], hf["vocab_size"]
    hd = d // hf["num_attention_heads"]
    kv = hf["num_key_value_heads"] * hd
    bias = hf["model_type"] == "qwen2"
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (v, d)}
    for i in range(hf["num_hidden_layers"]):
        p = f"model.layers.{i}."
        shapes.update({p + "input_layernorm.weight": (d,), p + "post_attention_layernorm.weight": (d,),
                       p + "self_attn.q_proj.weight": (d, d), p + "self_attn.k_proj.weight": (kv, d),
                       p + "self_attn.v_proj.weight": (kv, d), p + "self_attn.o_proj.weight": (d, d),
                       p + "mlp.gate_proj.weight": (f, d), p + "mlp.up_proj.weight": (f, d),
                       p + "mlp.down_proj.weight": (d, f)})
        if bias:
            shapes.update({p + "self_attn.q_proj.bias": (d,), p + "self_attn.k_proj.bias": (kv,),
                           p + "self_attn.v_proj.bias": (kv,)})
    shapes["model.norm.weight"] = (d,)
    if not hf["tie_word_embeddings"]:
        shapes["lm_head.weight"] = (v, d)
    return shapes


def write_checkpoint(folder: Path, hf: dict) -> int:
    """A random checkpoint in shards of about 1 GB with its index; returns the bytes on disk."""
    folder.mkdir(parents=True, exist_ok=True)
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    generator = torch.Generator().manual_seed(0)
    names = tensor_shapes(hf)
    for name, shape in names.items():
        tensor = torch.randn(shape, generator=generator) * 0.02
        if size + tensor.nbytes > SHARD_BYTES and shards[-1]:
            _flush(folder, shards, len(names))
            shards.append({})
            size = 0
        shards[-1][name] = tensor
        size += tensor.nbytes
    _flush(folder, shards, len(names))
    files = sorted(folder.glob("model-*.safetensors"))
    weight_map = {}
    for path in files:
        from safetensors import safe_open
        with safe_open(str(path), framework="pt") as handle:
            weight_map.update({name: path.name for name in handle.keys()})  # noqa: SIM118
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (folder / "config.json").write_text(json.dumps(hf, indent=2))
    return sum(p.stat().st_size for p in files)


def _flush(folder: Path, shards: list[dict[str, torch.Tensor]], _: int) -> None:
    index = len(shards)
    save_file(shards[-1], str(folder / f"model-{index:05d}.safetensors"), metadata={"format": "pt"})
    shards[-1].clear()


#: Run by a bare interpreter, so the measured process is forked from a small parent: Linux
#: carries a parent's resident size at fork into the child's ru_maxrss, even across exec.
_MEASURE = ("import os, subprocess, sys, time\n"
            "start = time.perf_counter()\n"
            "child = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)\n"
            "_, status, usage = os.wait4(child.pid, 0)\n"
            "print(os.waitstatus_to_exitcode(status), time.perf_counter() - start, usage.ru_maxrss)\n")


def peak_of(command: list[str]) -> tuple[float, float]:
    """(seconds, peak RSS in GiB) of a command run in a fresh process."""
    done = subprocess.run([sys.executable, "-S", "-c", _MEASURE, *command], capture_output=True,
                          text=True)
    code, seconds, peak_kib = done.stdout.split()
    if code != "0":
        raise SystemExit(f"{' '.join(command)} failed: {done.stderr[-2000:]}")
    return float(seconds), int(peak_kib) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="qwen2-0.5b")
    parser.add_argument("--keep", type=Path, default=None, help="write the checkpoint here and keep it")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-import-"))
    folder = args.keep or work / "hf"
    try:
        hf = SHAPES[args.shape]
        disk = write_checkpoint(folder, hf) if not (folder / "config.json").is_file() else \
            sum(p.stat().st_size for p in folder.glob("*.safetensors"))
        py = sys.executable
        base_ours = peak_of([py, "-c", "import llmbricks.plugins.weights.families, torch, safetensors"])[1]
        base_theirs = peak_of([py, "-c", "import transformers, torch; "
                               "from transformers import AutoModelForCausalLM"])[1]
        ours_s, ours_gib = peak_of([py, "-m", "llmbricks", "import", "hf", str(folder), str(work / "ours")])
        theirs_s, theirs_gib = peak_of([py, "-c", "import sys, torch; from transformers import "
                                        "AutoModelForCausalLM as A; A.from_pretrained(sys.argv[1], "
                                        "dtype=torch.float32)", str(folder)])
        disk_gib = disk / 2**30
        rows = [["llmbricks import hf", f"{ours_s:.1f}", f"{ours_gib:.2f}", f"{base_ours:.2f}",
                 f"{(ours_gib - base_ours) / disk_gib:.2f}"],
                ["transformers from_pretrained", f"{theirs_s:.1f}", f"{theirs_gib:.2f}",
                 f"{base_theirs:.2f}", f"{(theirs_gib - base_theirs) / disk_gib:.2f}"]]
        print(f"{args.shape}: {disk_gib:.2f} GiB on disk; {machine()}\n")
        print(table(["", "seconds", "peak RSS GiB", "interpreter GiB",
                     "(peak - interpreter) / size on disk"], rows))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
