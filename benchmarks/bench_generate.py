"""Generation throughput: 200 new tokens from a 16-token prompt, batch 1, GPT-2 124M shape.

    .venv/bin/python benchmarks/bench_generate.py [--threads 2] [--new-tokens 200] [--lookup 10]

fp32, greedy, random weights. Ours with the KV cache, with the cache and prompt-lookup decoding
(``prompt_lookup=10``), without the cache (the whole context recomputed each step, as in the
book's ``generate``); Hugging Face ``GPT2LMHeadModel.generate`` with its cache, plain and with its
own prompt lookup (``prompt_lookup_num_tokens=10``). HF runs the same weights (copied with the
GPT-2 export mapping), so both generate the same tokens and their lookups see the same text.

Two models: GPT-2 124M as HF initializes it (tied head, N(0, 0.02)), whose greedy text falls into
long runs of one repeated token, which prompt lookup predicts well; and the book's untrained
``gpt2-small`` (untied head, PyTorch's init, 163M), whose greedy text does not repeat, so lookup
has little to accept and shows its overhead. ``tokens/pass`` is new tokens per forward pass.
"""

from __future__ import annotations

import argparse
import time

import torch

from llmbricks.core.build import build_model
from llmbricks.core.config import load_config
from llmbricks.core.tasks.generation import generate_ids

try:
    from benchmarks.common import machine, table
except ImportError:
    from common import machine, table

SETTINGS = {
    "gpt2": ("GPT-2 124M, tied head, N(0, 0.02) init (HF's)",
             {"preset": "gpt2-small", "dropout": 0.0, "head": {"tie_weights": True},
              "arch": {"init": "normal"}}),
    "book": ("the book's gpt2-small: untied head, PyTorch init, 163M",
             {"preset": "gpt2-small", "dropout": 0.0}),
}


def hf_twin(config, model):
    """``GPT2LMHeadModel`` with ``model``'s weights."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from llmbricks.plugins.weights.gpt2_hf import hf_config_from, to_hf_state_dict

    hf_config = hf_config_from(config)
    hf = GPT2LMHeadModel(GPT2Config(**hf_config)).eval()
    tied = hf_config["tie_word_embeddings"]
    state = to_hf_state_dict(model.state_dict(), n_layers=config.model.n_layers, tied=tied)
    missing, unexpected = hf.load_state_dict(state, strict=False)
    assert not unexpected and set(missing) <= ({"lm_head.weight"} if tied else set()), (missing, unexpected)
    if tied:
        hf.tie_weights()
    return hf


def measure(name: str, args: argparse.Namespace, prompt: torch.Tensor) -> tuple[list[list[str]], str]:
    """Time every row for one model; return the table rows and a line about the ids."""
    n, lookup = args.new_tokens, args.lookup
    torch.manual_seed(0)
    config = load_config({"model": SETTINGS[name][1]})
    model = build_model(config).eval()
    hf = hf_twin(config, model)
    hf_kwargs = {"do_sample": False, "use_cache": True, "pad_token_id": 50256}

    def ours(**kwargs):
        return lambda tokens: generate_ids(model, prompt, max_new_tokens=tokens, **kwargs).tokens

    def theirs(**kwargs):
        return lambda tokens: hf.generate(prompt, max_new_tokens=tokens, min_new_tokens=tokens,
                                          **hf_kwargs, **kwargs)

    # (label, short name, module, generate(tokens) -> ids)
    runs = [("llmbricks, KV cache", "ours", model, ours()),
            (f"llmbricks, KV cache + lookup {lookup}", "ours lookup", model, ours(prompt_lookup=lookup))]
    if not args.skip_no_cache and name == "gpt2":
        runs.append(("llmbricks, no cache", "ours no cache", model, ours(use_cache=False)))
    runs += [("HF generate, cache", "HF", hf, theirs()),
             (f"HF generate, cache + lookup {lookup}", "HF lookup", hf,
              theirs(prompt_lookup_num_tokens=lookup))]
    seconds, passes, ids = {}, {}, {}
    with torch.no_grad():
        for _, short, module, fn in runs:
            fn(8)  # warm-up
            calls: list[int] = []  # one entry per forward pass
            hook = module.register_forward_hook(lambda *_, calls=calls: calls.append(1))
            start = time.perf_counter()
            ids[short] = fn(n)
            seconds[short] = time.perf_counter() - start
            passes[short] = len(calls)
            hook.remove()

    assert torch.equal(ids["ours lookup"], ids["ours"]), "prompt lookup changed the tokens"
    assert ids["ours"].shape[1] == prompt.shape[1] + n
    rows = []
    for label, short, _, _ in runs:
        t = seconds[short]
        no_cache = f"{seconds['ours no cache'] / t:.1f}x" if "ours no cache" in seconds else "-"
        rows.append([label, f"{n / t:.1f}", f"{n / passes[short]:.2f}", no_cache,
                     f"{seconds['HF'] / t:.2f}x", f"{seconds['HF lookup'] / t:.2f}x"])
    new = ids["ours"][0, prompt.shape[1]:].tolist()
    same = ", ".join(f"{short.removeprefix('ours ')} {'yes' if torch.equal(ids[short], ids['ours']) else 'NO'}"
                     for _, short, _, _ in runs[1:])
    return rows, f"{len(set(new))} distinct new tokens; same ids as ours plain: {same}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--new-tokens", type=int, default=200)
    parser.add_argument("--prompt-tokens", type=int, default=16)
    parser.add_argument("--lookup", type=int, default=10, help="draft tokens per pass (both)")
    parser.add_argument("--models", nargs="+", choices=sorted(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--skip-no-cache", action="store_true", help="skip the slow no-cache row")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    prompt = torch.randint(0, 50257, (1, args.prompt_tokens), generator=torch.Generator().manual_seed(0))
    print(f"machine: {machine()}")
    for name in args.models:
        rows, ids_line = measure(name, args, prompt)
        print(f"\n{SETTINGS[name][0]}\n{args.new_tokens} new tokens after a "
              f"{args.prompt_tokens}-token prompt, batch 1, fp32, greedy")
        print(ids_line)
        print(table(["model", "tokens/s", "tokens/pass", "vs no cache", "vs HF cache",
                     "vs HF lookup"], rows))


if __name__ == "__main__":
    main()
