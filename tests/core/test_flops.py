"""Training FLOPs per token, 6N + 12 L H Q T (core/flops.py), checked against hand arithmetic."""

from __future__ import annotations

import pytest

from llmbricks.core.build import build_model, summarize
from llmbricks.core.config import load_config
from llmbricks.core.flops import (
    estimate_flops,
    format_flops,
    forward_flops_per_token,
    train_flops_per_token,
)
from tests.conftest import ROOT

TINY = {"vocab_size": 10, "context_length": 8, "emb_dim": 4, "n_layers": 2, "n_heads": 2,
        "positional": "absolute", "head": {"name": "lm", "tie_weights": False}}


def tiny(**changes):
    return build_model(load_config({"model": {**TINY, **changes}}), device="meta")


def test_a_tiny_gpt_by_hand():
    model = tiny()
    assert next(model.parameters()).device.type == "meta"  # counted from shapes alone
    # One block (D = 4, feed-forward 4D = 16, no qkv bias, biased out_proj and MLP):
    #   attn_norm 2 x 4 = 8; q, k, v 3 x 4 x 4 = 48; out_proj 4 x 4 + 4 = 20;
    #   ff_norm 8; up 4 x 16 + 16 = 80; down 16 x 4 + 4 = 68           -> 232 per block
    # N = 2 blocks x 232 + final norm 8 + untied head 10 x 4 = 464 + 8 + 40 = 512; the token
    # table (10 x 4) and the learned position table (8 x 4) are lookups, not counted.
    # Attention: L x H x Q x T = 2 x 2 x 2 x 8 = 64.
    # Training: 6 x 512 + 12 x 64 = 3,072 + 768 = 3,840; forward: 2 x 512 + 4 x 64 = 1,280.
    estimate = estimate_flops(model)
    assert (estimate.matmul_params, estimate.attention) == (512, 64)
    assert train_flops_per_token(model) == 3840
    assert forward_flops_per_token(model) == 1280 == 3840 // 3
    assert summarize(model).total == 512 + 40 + 32  # the tables are parameters all the same
    # At a shorter sequence only the attention term shrinks: 6 x 512 + 12 x (2 x 2 x 2 x 4).
    assert train_flops_per_token(model, context_length=4) == 3072 + 384


def test_a_tied_head_counts_the_table_once_and_costs_what_an_untied_one_does():
    untied, tied = tiny(), tiny(head={"name": "lm", "tie_weights": True})
    assert summarize(untied).total - summarize(tied).total == 40  # one 10 x 4 matrix fewer
    # Untied: the head's 40 count, the token table's do not. Tied: the one table is the head's
    # matmul, so it counts (once). Either way the logits cost one 10 x 4 multiply per token.
    assert estimate_flops(tied).matmul_params == estimate_flops(untied).matmul_params == 512
    assert train_flops_per_token(tied) == train_flops_per_token(untied) == 3840


def test_a_sliding_window_counts_only_the_keys_it_sees():
    everywhere = tiny(attention={"name": "sdpa", "window": 4})
    assert estimate_flops(everywhere).attention == 2 * 2 * 2 * 4  # T_eff = 4 in both layers
    assert train_flops_per_token(everywhere) == 6 * 512 + 12 * 32 == 3456
    local = tiny(local_layers=[1], local_attention={"name": "sdpa", "window": 2})
    assert estimate_flops(local).attention == 2 * 2 * 8 + 2 * 2 * 2  # layer 0: T, layer 1: 2
    assert train_flops_per_token(local) < train_flops_per_token(tiny())
    wide = tiny(attention={"name": "sdpa", "window": 100})  # wider than the context: T
    assert train_flops_per_token(wide) == 3840


def test_gpt2_124m_is_nanogpts_estimate_mfu_figure():
    config = load_config(ROOT / "examples" / "configs" / "gpt2-124m.yaml")
    model = build_model(config, device="meta")
    # nanoGPT's estimate_mfu: flops_per_token = 6N + 12 L H Q T, N = get_num_params(), i.e. every
    # parameter but the position table (wpe), the tied token table (wte) counted once.
    d, layers, heads, t, vocab = 768, 12, 12, 1024, 50257
    block = (2 * d              # ln_1
             + 3 * d * d        # q, k, v (this preset has no qkv bias)
             + d * d + d        # attention out_proj
             + 2 * d            # ln_2
             + d * 4 * d + 4 * d  # MLP up
             + 4 * d * d + d)   # MLP down
    n = layers * block + vocab * d + 2 * d  # blocks, wte (the tied head), ln_f
    assert n == 123_625_728 == summarize(model).total - t * d  # the total less wpe
    q = d // heads
    assert train_flops_per_token(model) == 6 * n + 12 * layers * heads * q * t == 855_000_576
    assert forward_flops_per_token(model) == 855_000_576 // 3


@pytest.mark.parametrize("value, text", [
    (0, "0"), (512, "512"), (1_234, "1.23K"), (999_600, "1.00M"), (5_193_984, "5.19M"),
    (855_000_576, "855M"), (28_016_658_874_368, "28.0T"),
])
def test_flops_read_with_three_digits(value, text):
    assert format_flops(value) == text
