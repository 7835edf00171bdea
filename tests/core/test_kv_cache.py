"""The KV cache: full layers keep every position, sliding-window layers only about their window,
and either way cached decoding equals one uncached pass."""

from __future__ import annotations

import pytest
import torch

from llmbricks.core.build import build_model
from llmbricks.core.config import load_config
from llmbricks.core.kv_cache import MIN_ROOM, KVCache
from llmbricks.core.registry import Registry

REGISTRY = Registry()
SHAPE = {"vocab_size": 97, "context_length": 128, "emb_dim": 32, "n_layers": 2, "n_heads": 4,
         "dropout": 0.0}
WINDOW = 8


def windowed_model(attention: str, positional: str, *, local_only: bool = False):
    """Both layers windowed, or (``local_only``) layer 0 windowed and layer 1 full, as Gemma."""
    spec = {"name": attention, "n_kv_heads": 2, "window": WINDOW}
    model = {**SHAPE, "positional": positional, "attention": spec}
    if local_only:
        model.update(attention={"name": attention, "n_kv_heads": 2}, local_layers=[0],
                     local_attention=spec)
    torch.manual_seed(0)
    return build_model(load_config({"model": model}, registry=REGISTRY), REGISTRY).eval()


def decode_in_steps(model, ids: torch.Tensor, chunks: list[int]):
    """Logits of ``ids`` fed through a cache in chunks of the given sizes, then one at a time."""
    cache = model.new_cache(ids.shape[0], ids.shape[1])
    outputs, start = [], 0
    for size in chunks + [1] * (ids.shape[1] - sum(chunks)):
        outputs.append(model(ids[:, start:start + size], cache=cache))
        start += size
    return torch.cat(outputs, dim=1), cache


@pytest.mark.parametrize("positional", ["rope", "alibi", "t5", "absolute", "none"])
@pytest.mark.parametrize("attention", ["mha", "sdpa"])
@torch.no_grad()
def test_windowed_cache_equals_one_full_pass(attention, positional):
    """A prompt longer than the window, chunks, then 100 single tokens (the cache slides often):
    every logit equals the uncached pass, which masks the window instead."""
    model = windowed_model(attention, positional)
    ids = torch.randint(0, 97, (2, 128))
    cached, cache = decode_in_steps(model, ids, [20, 3, 5])
    torch.testing.assert_close(cached, model(ids), atol=1e-5, rtol=1e-5)
    # Memory: each layer holds about the window, not the 128 positions.
    assert all(layer.slots <= WINDOW - 1 + MIN_ROOM for layer in cache.layers)
    assert cache.slots() < 128


@pytest.mark.parametrize("attention", ["mha", "sdpa"])
@torch.no_grad()
def test_local_and_global_layers_keep_their_own_lengths(attention):
    model = windowed_model(attention, "rope", local_only=True)
    ids = torch.randint(0, 97, (1, 100))
    cached, cache = decode_in_steps(model, ids, [30])
    torch.testing.assert_close(cached, model(ids), atol=1e-5, rtol=1e-5)
    local, full = cache.layers
    assert (local.window, full.window) == (WINDOW, None)
    assert local.slots <= WINDOW - 1 + MIN_ROOM
    assert full.slots == 100 and full.start == 0


def test_the_window_changes_the_result():
    """The windowed model is not secretly full attention: past the window its logits move."""
    ids = torch.randint(0, 97, (1, 40))
    windowed = windowed_model("sdpa", "rope")
    config = load_config({"model": {**SHAPE, "positional": "rope",
                                    "attention": {"name": "sdpa", "n_kv_heads": 2}}},
                         registry=REGISTRY)
    full = build_model(config, REGISTRY).eval()
    full.load_state_dict(windowed.state_dict())
    with torch.no_grad():
        a, b = windowed(ids), full(ids)
    torch.testing.assert_close(a[:, :WINDOW], b[:, :WINDOW])
    assert (a[:, WINDOW:] - b[:, WINDOW:]).abs().max() > 1e-3


def test_a_long_prefill_is_held_whole_then_slides_back_to_the_window():
    cache = KVCache(1, 1, 1, 64, 2, windows=[4])
    layer = cache.layer(0)
    k = torch.arange(40.0).view(1, 1, 40, 1).expand(1, 1, 40, 2)
    keys, _ = layer.update(k, k)
    assert keys.shape[-2] == 40  # the prompt's own queries need all of it
    cache.advance(40)
    for position in range(40, 64):
        one = torch.full((1, 1, 1, 2), float(position))
        keys, _ = layer.update(one, one)
        cache.advance(1)
        # Contiguous keys ending at the newest, the last W - 1 earlier ones included.
        held = keys[0, 0, :, 0].tolist()
        assert held == [float(p) for p in range(layer.start, position + 1)]
        assert layer.start <= position - 3
    assert layer.slots == 3 + MIN_ROOM


def test_truncate_within_the_last_pass_and_refuse_past_the_window():
    cache = KVCache(1, 1, 1, 64, 2, windows=[4])
    for _ in range(30):
        cache.layer(0).update(torch.zeros(1, 1, 1, 2), torch.zeros(1, 1, 1, 2))
        cache.advance(1)
    cache.layer(0).update(torch.zeros(1, 1, 5, 2), torch.zeros(1, 1, 5, 2))  # 5 drafts
    cache.advance(5)
    cache.truncate(31)  # reject 4 of them: the keys before stay
    assert cache.length == 31
    with pytest.raises(ValueError, match="4-token window no longer holds"):
        cache.truncate(2)


def test_windows_must_name_every_layer():
    with pytest.raises(ValueError, match="windows names 1 layers but the cache has 2"):
        KVCache(2, 1, 1, 8, 2, windows=[4])
