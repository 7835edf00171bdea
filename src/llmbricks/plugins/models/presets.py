"""Named model shapes, as data (litgpt-style): each fills ``model`` fields; explicit fields win."""

from __future__ import annotations

from typing import Any


def _gpt2(emb_dim: int, n_layers: int, n_heads: int) -> dict[str, Any]:
    # The book's GPTModel with GPT_CONFIG_124M's family of shapes: vocab 50257, context 1024,
    # dropout 0.1, qkv_bias false, PyTorch's default init and an untied output head (163M for
    # gpt2-small; set head.tie_weights: true for GPT-2's tied 124M).
    return {
        "vocab_size": 50257,
        "context_length": 1024,
        "emb_dim": emb_dim,
        "n_layers": n_layers,
        "n_heads": n_heads,
        "dropout": 0.1,
        "embedding": "token",
        "positional": "absolute",
        "attention": {"name": "sdpa", "qkv_bias": False},
        "norm": "layernorm",
        "feedforward": "gelu",
        "block": "gpt",
        "arch": {"name": "gpt", "init": "torch"},
        "head": {"name": "lm", "tie_weights": False},
    }


PRESETS: dict[str, dict[str, Any]] = {
    "gpt2-small": _gpt2(768, 12, 12),
    "gpt2-medium": _gpt2(1024, 24, 16),
    "gpt2-large": _gpt2(1280, 36, 20),
    "gpt2-xl": _gpt2(1600, 48, 25),
    # Karpathy's "baby GPT" shape for character-level shakespeare on a laptop.
    "nanogpt-baby": {
        "context_length": 64,
        "emb_dim": 128,
        "n_layers": 4,
        "n_heads": 4,
        "dropout": 0.0,
        "tokenizer": "char",
        "positional": "absolute",
        "attention": "sdpa",
        "norm": "layernorm",
        "feedforward": {"name": "gelu", "approximate": "none"},  # nanoGPT: nn.GELU()
        "head": {"name": "lm", "tie_weights": True},
    },
    # A small modern decoder (Llama-style): rotary positions, RMSNorm, SwiGLU, grouped-query
    # attention with 2 key/value heads, no biases, an untied head, a trained byte-level BPE.
    "llama-tiny": {
        "context_length": 256,
        "emb_dim": 256,
        "n_layers": 6,
        "n_heads": 8,
        "dropout": 0.0,
        "tokenizer": {"name": "bpe", "vocab_size": 4096},
        "positional": {"name": "rope", "theta": 10000.0},
        "attention": {"name": "sdpa", "n_kv_heads": 2, "qkv_bias": False},
        "norm": {"name": "rmsnorm", "eps": 1e-5},
        "feedforward": "swiglu",
        "head": {"name": "lm", "tie_weights": False},
    },
}
