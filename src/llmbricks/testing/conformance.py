"""``check_component``: the per-kind contract checks."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from pydantic import ValidationError

from llmbricks.core.build import build_model
from llmbricks.core.component import Component, Dims
from llmbricks.core.config import COMPONENT_FIELDS, load_config
from llmbricks.core.registry import Registry, get_registry

#: A model small enough to check in milliseconds, big enough to have several heads and layers.
TINY_MODEL: dict[str, Any] = {
    "vocab_size": 37, "context_length": 16, "emb_dim": 32, "n_layers": 2, "n_heads": 4,
    "dropout": 0.0,
}
TOKENIZER_SAMPLES = [
    "Hello, world! It's a test.",
    "First Citizen:\nBefore we proceed any further, hear me speak.\r\n",
    "  runs   of spaces\tand tabs  ",
]
MODULE_KINDS = {"embedding", "positional", "attention", "norm", "feedforward", "block", "model", "head"}


class ConformanceError(AssertionError):
    """A component breaks its kind's contract; the message says which check and how."""


def _fail(kind: str, name: str, check: str, detail: str) -> ConformanceError:
    return ConformanceError(f"{kind} '{name}' fails '{check}': {detail}")


def check_component(kind: str, name: str, registry: Registry | None = None,
                    params: dict[str, Any] | None = None,
                    tokenizer_texts: list[str] | None = None) -> list[str]:
    """Run every check for ``(kind, name)``; return the names of the checks that passed.

    ``params`` overrides the component's defaults; ``tokenizer_texts`` replaces the sample texts
    a tokenizer is trained and round-tripped on.
    """
    registry = registry or get_registry()
    cls = registry.get(kind, name)
    passed = _check_metadata(kind, name, cls)
    if kind == "tokenizer":
        passed += _check_tokenizer(name, cls, params or {}, tokenizer_texts or TOKENIZER_SAMPLES)
    elif kind == "datasource":
        passed += _check_datasource(name, cls, params or {})
    elif kind == "optimizer":
        passed += _check_optimizer(name, cls, registry, params or {})
    elif kind == "schedule":
        passed += _check_schedule(name, cls, params or {})
    elif kind in MODULE_KINDS:
        passed += _check_module(kind, name, registry, params or {})
    return passed


# --- data sources -----------------------------------------------------------------------------


def _record_problem(records: str, item: Any) -> str | None:
    if records == "text":
        return None if isinstance(item, str) else f"a text source yielded {type(item).__name__}"
    if records == "labeled":
        ok = isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)
        return None if ok else f"a labeled source must yield (text, label) tuples, got {item!r:.60}"
    if records == "instruction":
        ok = isinstance(item, dict) and all(isinstance(item.get(k), str)
                                            for k in ("instruction", "input", "output"))
        return None if ok else f"an instruction record needs instruction/input/output strings: {item!r:.60}"
    return f"records is {records!r}; expected 'text', 'labeled' or 'instruction'"


def _check_datasource(name: str, cls: Any, params: dict[str, Any]) -> list[str]:
    import itertools

    source = cls(cls.Params.model_validate(params))
    first = list(itertools.islice(iter(source), 64))
    if not first:
        raise _fail("datasource", name, "yields data", "iterating gave nothing")
    for item in first:
        problem = _record_problem(cls.records, item)
        if problem:
            raise _fail("datasource", name, "record type", problem)
    if list(itertools.islice(iter(source), 64)) != first:
        raise _fail("datasource", name, "repeatable", "a second iteration gave other records")
    if not isinstance(source.describe(), str) or not source.describe():
        raise _fail("datasource", name, "describe", "describe() must say where the data comes from")
    return ["yields data", "record type", "repeatable", "describe"]


def _check_optimizer(name: str, cls: Any, registry: Registry, params: dict[str, Any]) -> list[str]:
    """It trains a tiny model on one batch, and its state_dict restores the same next step."""
    config = load_config({"model": {"vocab_size": 32, "context_length": 8, "emb_dim": 16,
                                    "n_layers": 1, "n_heads": 2, "dropout": 0.0}},
                         registry=registry)
    train = config.train

    def fresh() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
        torch.manual_seed(0)
        model = build_model(config, registry)
        recipe = cls(cls.Params.model_validate(params))
        return model, recipe.create(model, lr=1e-2, weight_decay=train.weight_decay,
                                    betas=tuple(train.betas), decay_embeddings=False,
                                    device=torch.device("cpu"))

    batch = torch.randint(0, 32, (4, 9), generator=torch.Generator().manual_seed(0))

    def step(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> float:
        logits = model(batch[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    model, optimizer = fresh()
    losses = [step(model, optimizer) for _ in range(8)]
    if not losses[-1] < losses[0]:
        raise _fail("optimizer", name, "trains", f"8 steps at lr 1e-2 did not lower the loss: {losses}")
    saved = copy.deepcopy(optimizer.state_dict())
    weights = copy.deepcopy(model.state_dict())
    step(model, optimizer)
    again, again_optimizer = fresh()
    again.load_state_dict(weights)
    again_optimizer.load_state_dict(saved)
    step(again, again_optimizer)
    if any(not torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                   again.state_dict().values(), strict=True)):
        raise _fail("optimizer", name, "state_dict round trip",
                    "a step after load_state_dict differs from the step it saved before")
    return ["trains", "state_dict round trip"]


def _check_schedule(name: str, cls: Any, params: dict[str, Any]) -> list[str]:
    """Warmup ends at the peak; every rate is finite, in [min_lr, lr] and a function of the step."""
    schedule = cls(cls.Params.model_validate(params))
    kw = {"lr": 1e-3, "total_steps": 100, "warmup_steps": 10, "min_lr": 1e-4}
    rates = [schedule.rate(step, **kw) for step in range(100)]
    if rates[9] != 1e-3:
        raise _fail("schedule", name, "warmup", f"the last warmup step must use the peak, got {rates[9]}")
    bad = [(s, r) for s, r in enumerate(rates)
           if not (isinstance(r, float) and 1e-4 - 1e-12 <= r <= 1e-3 + 1e-12)]
    if bad:
        raise _fail("schedule", name, "range", f"rates must be floats in [min_lr, lr]: {bad[:3]}")
    if [schedule.rate(step, **kw) for step in range(100)] != rates:
        raise _fail("schedule", name, "pure", "the same step gave another rate")
    return ["warmup", "range", "pure"]


def _check_metadata(kind: str, name: str, cls: type[Component]) -> list[str]:
    if not cls.summary():
        raise _fail(kind, name, "summary", "the class needs a docstring whose first line says what it is")
    try:
        cls.Params()
    except ValidationError as exc:
        raise _fail(kind, name, "defaults", f"every parameter needs a default: {exc.errors()[0]['loc']}") from None
    try:
        cls.Params.model_validate({"__no_such_param__": 1})
    except ValidationError:
        pass
    else:
        raise _fail(kind, name, "strict params", "Params must forbid unknown keys (subclass ParamsModel)")
    return ["summary", "defaults", "strict params"]


# --- tokenizers -------------------------------------------------------------------------------


def _check_tokenizer(name: str, cls: Any, params: dict[str, Any], texts: list[str]) -> list[str]:
    import tempfile

    tok = cls(cls.Params.model_validate(params))
    if cls.trainable and not tok.is_trained:
        tok.train(texts)
    for text in texts:
        ids = tok.encode(text)
        if any(not (0 <= i < tok.vocab_size) for i in ids):
            raise _fail("tokenizer", name, "id range", f"ids outside 0..{tok.vocab_size - 1}")
        if cls.lossless and tok.decode(ids) != text:
            raise _fail("tokenizer", name, "round trip", f"decode(encode({text!r})) != input")
        if not cls.lossless and tok.encode(tok.decode(ids)) != ids:
            # A lossy tokenizer (e.g. word-level) must at least be stable on its own output.
            raise _fail("tokenizer", name, "round trip", f"encode(decode(ids)) != ids for {text!r}")
    with tempfile.TemporaryDirectory() as tmp:
        tok.save(tmp)
        again = cls.load(tmp)
    if again.vocab_size != tok.vocab_size or any(again.encode(t) != tok.encode(t) for t in texts):
        raise _fail("tokenizer", name, "save/load", "a reloaded tokenizer encodes differently")
    return ["id range", "round trip", "save/load"]


# --- modules ----------------------------------------------------------------------------------


def _tiny_config(kind: str, name: str, params: dict[str, Any], registry: Registry) -> Any:
    slot = next(field for (section, field), k in COMPONENT_FIELDS.items()
                if k == kind and section == "model")
    model = dict(TINY_MODEL)
    model[slot] = {"name": name, **params}
    return load_config({"model": model}, registry=registry)


def _seeded(build: Callable[[], torch.nn.Module], seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build().eval()


def _check_module(kind: str, name: str, registry: Registry, params: dict[str, Any]) -> list[str]:
    config = _tiny_config(kind, name, params, registry)
    dims: Dims = config.model.dims()
    spec = getattr(config.model, next(f for (s, f), k in COMPONENT_FIELDS.items() if k == kind and s == "model"))
    passed: list[str] = []

    def build_model_() -> torch.nn.Module:
        return build_model(config, registry)

    # The component alone, where it has a standalone contract.
    if kind in {"norm", "feedforward"}:
        module = _seeded(lambda: registry.build(kind, spec, dims=dims))
        x = torch.randn(2, 5, dims.emb_dim)
        y = module(x)
        if y.shape != x.shape:
            raise _fail(kind, name, "shape", f"[2, 5, {dims.emb_dim}] in, {list(y.shape)} out")
        x2 = x.clone()
        x2[:, 3] += 1.0
        if not torch.allclose(module(x2)[:, :3], y[:, :3], atol=1e-6):
            raise _fail(kind, name, "position-wise", "changing one position changed the others")
        passed += ["shape", "position-wise"]
    if kind == "embedding":
        module = _seeded(lambda: registry.build(kind, spec, dims=dims))
        out = module(torch.randint(0, dims.vocab_size, (2, 5)))
        if out.shape != (2, 5, dims.emb_dim):
            raise _fail(kind, name, "shape", f"ids [2, 5] gave {list(out.shape)}")
        if tuple(module.weight.shape) != (dims.vocab_size, dims.emb_dim):
            raise _fail(kind, name, "weight", "weight must be the [vocab, D] table for tying")
        passed += ["shape", "weight"]

    # The component inside a whole model: what every kind must preserve.
    model = _seeded(build_model_)
    if not model.layout().head.per_token:
        return passed + _check_sequence_head(kind, name, model, build_model_, dims)
    ids = torch.randint(0, dims.vocab_size, (2, dims.context_length))
    with torch.no_grad():
        logits = model(ids)
    if logits.shape[:2] != ids.shape:
        raise _fail(kind, name, "model shape", f"ids {list(ids.shape)} gave logits {list(logits.shape)}")
    passed.append("model shape")

    changed = ids.clone()
    cut = dims.context_length // 2
    changed[:, cut:] = (changed[:, cut:] + 1) % dims.vocab_size
    with torch.no_grad():
        after = model(changed)
    if not torch.allclose(after[:, :cut], logits[:, :cut], atol=1e-5):
        raise _fail(kind, name, "causal", "changing later tokens changed earlier outputs")
    passed.append("causal")

    again = _seeded(build_model_)
    if any(not torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True)):
        raise _fail(kind, name, "seeded determinism", "two builds with the same seed differ")
    passed.append("seeded determinism")

    fresh = _seeded(build_model_, seed=1)
    fresh.load_state_dict(copy.deepcopy(model.state_dict()))
    with torch.no_grad():
        if not torch.allclose(fresh(ids), logits, atol=1e-6):
            raise _fail(kind, name, "state_dict round trip", "reloaded weights give other logits")
    passed.append("state_dict round trip")

    cache = model.new_cache(2, dims.context_length)
    with torch.no_grad():
        prefix = 5
        steps = [model(ids[:, :prefix], cache=cache)]
        for t in range(prefix, dims.context_length):
            steps.append(model(ids[:, t:t + 1], cache=cache))
    cached = torch.cat(steps, dim=1)
    if not torch.allclose(cached, logits, atol=1e-4, rtol=1e-4):
        diff = (cached - logits).abs().max().item()
        raise _fail(kind, name, "cache equivalence",
                    f"prefill + one token at a time differs from one full pass by {diff:.2e}")
    passed.append("cache equivalence")
    return passed


def _check_sequence_head(kind: str, name: str, model: torch.nn.Module,
                         build: Callable[[], torch.nn.Module], dims: Dims) -> list[str]:
    """A head with ``per_token = False``: one output ``[B, C]`` per right-padded sequence.

    ``lengths`` counts each row's real tokens. A head that reads only real tokens (its
    ``ignores_padding`` is true, the default) must give the same output whatever the padding
    holds; one that reads the padding on purpose (the book's ``last`` pooling) sets it false.
    """
    ids = torch.randint(0, dims.vocab_size, (3, dims.context_length))
    lengths = torch.tensor([dims.context_length, 5, 1])
    with torch.no_grad():
        out = model(ids, lengths=lengths)
        full = model(ids)
        stated = model(ids, lengths=torch.full((3,), dims.context_length))
    if out.dim() != 2 or out.shape[0] != 3:
        raise _fail(kind, name, "sequence shape", f"ids {list(ids.shape)} gave {list(out.shape)}, "
                    "expected one vector per sequence [3, C]")
    if not torch.allclose(full, stated, atol=1e-6):
        raise _fail(kind, name, "lengths", "lengths=None must mean every position is real")
    passed = ["sequence shape", "lengths"]
    if model.layout().head.ignores_padding:
        padded = ids.clone()
        for row, n in enumerate(lengths.tolist()):
            padded[row, n:] = (padded[row, n:] + 1) % dims.vocab_size
        with torch.no_grad():
            again = model(padded, lengths=lengths)
        if not torch.allclose(again, out, atol=1e-5):
            raise _fail(kind, name, "padding ignored", "changing tokens past lengths changed "
                        "the output")
        passed.append("padding ignored")
    other = _seeded(build)
    if any(not torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                 other.state_dict().values(), strict=True)):
        raise _fail(kind, name, "seeded determinism", "two builds with the same seed differ")
    fresh = _seeded(build, seed=1)
    fresh.load_state_dict(copy.deepcopy(model.state_dict()))
    with torch.no_grad():
        if not torch.allclose(fresh(ids, lengths=lengths), out, atol=1e-6):
            raise _fail(kind, name, "state_dict round trip", "reloaded weights give other outputs")
    return passed + ["seeded determinism", "state_dict round trip"]
