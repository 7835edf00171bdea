"""The continuous-batching engine: a request's tokens do not depend on who else is running.

The oracle is ``generate_ids`` on the request alone. Models run in float64 so that the only
thing a batch may change, the order of floating point sums inside a matmul, cannot flip an
argmax; one float32 case checks the everyday dtype too. Untied heads make random models wander
instead of repeating their last token, so a wrong position or mask would show.
"""

from __future__ import annotations

import time

import pytest
import torch

from llmbricks.core.errors import LlmbricksError
from llmbricks.core.slot_cache import SlotKVCache
from llmbricks.core.tasks.engine import Engine, PromptTooLong, QueueFull, batching_blockers
from llmbricks.core.tasks.generation import GenerationError, generate_ids
from tests.core.test_generation import KINDS, tiny

VOCAB = 61


def model(positional: str = "rope", n_kv_heads: int | None = None, dtype=torch.float64, **shape):
    shape = {"context_length": 64, **shape}
    return tiny(positional, n_kv_heads, head={"tie_weights": False}, **shape).to(dtype)


def prompts(lengths=(3, 11, 1, 17, 6, 9)) -> list[list[int]]:
    g = torch.Generator().manual_seed(5)
    return [torch.randint(0, VOCAB, (n,), generator=g).tolist() for n in lengths]


def alone(m, prompt: list[int], n: int, **sampling) -> list[int]:
    return generate_ids(m, [prompt], max_new_tokens=n, **sampling).new_tokens[0]


def record_passes(m) -> list[tuple[int, int]]:
    """The shape of the ids of every forward pass of ``m`` from now on."""
    fed: list[tuple[int, int]] = []
    hidden = m.hidden

    def recorded(ids, *args, **kwargs):
        fed.append(tuple(ids.shape))
        return hidden(ids, *args, **kwargs)

    m.hidden = recorded
    return fed


def wait_for(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def staggered(engine: Engine, batch: list[list[int]], n: int, **sampling) -> list[list[int]]:
    """Submit each prompt once the previous request has produced a token or two, so requests
    join a running batch at different steps (and some finish while others run)."""
    requests = []
    for i, prompt in enumerate(batch):
        if requests:
            wait_for(lambda last=requests[-1], enough=1 + i % 2:
                     len(last.tokens) >= enough or last.done)
        requests.append(engine.submit(prompt, engine.sampling(max_new_tokens=n, **sampling)))
    return [r.wait() for r in requests]


@pytest.mark.parametrize("positional,n_kv_heads", KINDS, ids=[f"{p}-kv{k}" for p, k in KINDS])
def test_batched_greedy_equals_greedy_alone(positional, n_kv_heads):
    m = model(positional, n_kv_heads)
    batch = prompts()
    with Engine(m, max_batch=4, prefill_chunk=4) as engine:
        got = staggered(engine, batch, 12)
        assert engine.steps < sum(12 + len(p) // 4 + 1 for p in batch)  # streams shared passes
    assert got == [alone(m, p, 12) for p in batch]


@pytest.mark.parametrize("positional,n_kv_heads", KINDS, ids=[f"{p}-kv{k}" for p, k in KINDS])
def test_prompts_arriving_together_are_prefilled_together_right_padded(positional, n_kv_heads):
    m = model(positional, n_kv_heads)
    batch = prompts()  # 3, 11, 1, 17, 6 and 9 tokens
    fed = record_passes(m)
    with Engine(m, max_batch=6, prefill_chunk=60) as engine:
        with engine._lock:  # all queued before the engine looks
            requests = [engine.submit(p, engine.sampling(max_new_tokens=8)) for p in batch]
        got = [r.wait() for r in requests]
    assert fed[0] == (6, 10)  # every prompt's first 10 tokens (or fewer, padded) in one pass
    assert got == [alone(m, p, 8) for p in batch]


@pytest.mark.parametrize("attention", ["mha", "sdpa"])
def test_sliding_windows_and_the_reference_attention_batch_exactly(attention):
    m = tiny("alibi", 2, attention=attention, context_length=64, head={"tie_weights": False})
    m = m.double()
    for block in m.layout().blocks:  # every layer sees only its last 5 keys
        for module in block.modules():
            if hasattr(module, "params") and hasattr(module.params, "window"):
                module.params = module.params.model_copy(update={"window": 5})
    batch = prompts()
    with Engine(m, max_batch=3, prefill_chunk=5) as engine:
        got = staggered(engine, batch, 10)
    assert got == [alone(m, p, 10) for p in batch]


def test_float32_batches_give_the_same_greedy_tokens():
    m = model("rope", 2, dtype=torch.float32)
    batch = prompts()
    with Engine(m, max_batch=6) as engine:
        got = staggered(engine, batch, 16)
    assert got == [alone(m, p, 16) for p in batch]


def test_a_long_prompt_is_prefilled_in_chunks_between_decode_steps():
    m = model("rope")
    short, long = prompts((2, 40))
    expected = alone(m, short, 20), alone(m, long, 5)
    fed = record_passes(m)
    with Engine(m, max_batch=2, prefill_chunk=8) as engine:
        first = engine.submit(short, engine.sampling(max_new_tokens=20))
        wait_for(lambda: len(first.tokens) >= 2)
        second = engine.submit(long, engine.sampling(max_new_tokens=5))
        assert (first.wait(), second.wait()) == expected
    chunks = [i for i, shape in enumerate(fed) if shape[1] > 1 and i > 0]
    assert [fed[i] for i in chunks] == [(1, 8)] * 5  # 40 tokens, 8 at a time
    # The running stream decoded a token between every two chunks of the new prompt.
    assert all(fed[i + 1] == (1, 1) for i in chunks[:-1])


def test_seeded_sampling_is_the_same_alone_and_in_a_batch():
    m = model("t5")
    batch = prompts()
    options = dict(temperature=0.9, top_k=20, seed=7)
    with Engine(m, max_batch=1) as engine:
        solo = [engine.generate(p, engine.sampling(max_new_tokens=10, **options)) for p in batch]
    with Engine(m, max_batch=6) as engine:
        assert staggered(engine, batch, 10, **options) == solo
    assert solo == [alone(m, p, 10, **options) for p in batch]


def test_a_stop_token_ends_a_request_and_is_not_in_its_tokens():
    m = model("rope")
    prompt = prompts()[1]
    expected = alone(m, prompt, 12)
    stop = expected[4]
    with Engine(m) as engine:
        request = engine.submit(prompt, engine.sampling(max_new_tokens=12, stop_tokens=[stop]))
        tokens = request.wait()
    assert request.finish_reason == "stop"
    assert tokens == expected[:expected.index(stop)]
    assert request.generated == len(tokens) + 1


def test_cancelling_frees_the_slot_and_the_others_go_on():
    m = model("rope", context_length=512)
    a, b = prompts((4, 5))
    with Engine(m, max_batch=2) as engine:
        keep = engine.submit(a, engine.sampling(max_new_tokens=30))
        drop = engine.submit(b, engine.sampling(max_new_tokens=400))
        wait_for(lambda: len(drop.tokens) >= 3)
        drop.cancel()
        assert keep.wait() == alone(m, a, 30)
        wait_for(lambda: drop.done)
        assert drop.finish_reason == "cancelled" and len(drop.tokens) < 400
        wait_for(lambda: engine.stats()["running"] == 0)


def test_the_queue_is_bounded():
    m = model("rope", context_length=512)
    with Engine(m, max_batch=1, max_queue=1) as engine:
        running = engine.submit([1, 2], engine.sampling(max_new_tokens=500))
        wait_for(lambda: len(running.tokens) >= 1)
        waiting = engine.submit([3], engine.sampling(max_new_tokens=5))
        with pytest.raises(QueueFull, match="queue is full"):
            engine.submit([4], engine.sampling(max_new_tokens=5))
        running.cancel()
        assert len(waiting.wait()) == 5


def test_free_slots_do_not_count_against_the_queue():
    m = model("rope")
    with Engine(m, max_batch=4, max_queue=1) as engine:
        with engine._lock:  # a burst, all before the engine's next step
            burst = [engine.submit([i + 1], engine.sampling(max_new_tokens=3)) for i in range(5)]
            with pytest.raises(QueueFull):
                engine.submit([9], engine.sampling(max_new_tokens=3))
        assert [len(r.wait()) for r in burst] == [3] * 5


def test_refusals_are_one_line():
    m = model("absolute", context_length=16)
    with Engine(m) as engine:
        with pytest.raises(PromptTooLong, match="context is 16 tokens, but the request needs 25"):
            engine.submit(list(range(10)), engine.sampling(max_new_tokens=15))
        with pytest.raises(GenerationError, match="empty"):
            engine.submit([])
        with pytest.raises(GenerationError, match="outside the vocabulary"):
            engine.submit([VOCAB])
        with pytest.raises(GenerationError, match="top_p must be in"):
            engine.sampling(top_p=1.5)
        # Prompt plus budget fit exactly: the last token is never fed back.
        assert len(engine.generate(list(range(10)), engine.sampling(max_new_tokens=7))) == 7
    with pytest.raises(LlmbricksError, match="closed"):
        engine.submit([1])


def test_components_that_do_not_declare_per_row_positions_are_served_one_at_a_time(monkeypatch):
    from llmbricks.plugins.positional.rope import RotaryPositional

    monkeypatch.setattr(RotaryPositional, "per_row_positions", False)
    m = model("rope")
    assert batching_blockers(m) == ["positional 'rope'"]
    batch = prompts()
    with Engine(m, max_batch=8) as engine:
        assert engine.max_batch == 1
        assert staggered(engine, batch, 6) == [alone(m, p, 6) for p in batch]


def test_a_failing_pass_fails_its_requests_not_the_engine(monkeypatch):
    m = model("rope")
    with Engine(m) as engine:
        original = engine._decode

        def broken() -> None:
            raise RuntimeError("boom")

        monkeypatch.setattr(engine, "_decode", broken)
        failed = engine.submit([1, 2], engine.sampling(max_new_tokens=5))
        failed.wait()
        assert failed.finish_reason == "error" and "boom" in failed.error
        monkeypatch.setattr(engine, "_decode", original)
        assert engine.generate([1, 2], engine.sampling(max_new_tokens=5)) == alone(m, [1, 2], 5)


def test_slot_moves_keep_a_stream_intact():
    cache = SlotKVCache(n_layers=1, slots=3, n_kv_heads=1, max_len=4, head_dim=2)
    rows = cache.rows(2, 3)
    q, k = rows.positions(3, "cpu")
    assert q.tolist() == [0, 1, 2] and k.tolist() == [0, 1, 2]
    rows.layer(0).update(torch.ones(1, 1, 3, 2), torch.full((1, 1, 3, 2), 2.0))
    rows.advance(3)
    cache.move(2, 0)
    assert cache.lengths == [3, 0, 0]
    assert cache.keys[0][0, 0, :3].eq(1).all() and cache.values[0][0, 0, :3].eq(2).all()
    both = cache.rows(0, 2)
    q, k = both.positions(1, "cpu")
    assert q.tolist() == [[3], [0]] and k.tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="slot cache is full"):
        cache.rows(0, 1).positions(2, "cpu")
