"""Compute-matched budgets (``ablate --match``): every variant gets the baseline's budget.

The baseline trains ``S_b`` optimizer steps (``train.max_steps``, or ``max_tokens`` in steps:
``estimate.planned_steps``). In the chosen unit that budget is::

    steps   B = S_b                                   each variant keeps its own budget
    tokens  B = S_b x tokens_per_step_b
    flops   B = S_b x tokens_per_step_b x flops_per_token_b
    time    B = S_b x step_s_b                        seconds, measured

and variant ``v`` trains ``max(1, round(B / cost_v))`` steps, ``cost_v`` being one of its own
steps in that unit (``tokens_per_step_v``, ``tokens_per_step_v x flops_per_token_v`` or
``step_s_v``), with ``max_tokens`` and ``epochs`` cleared. So a model that costs twice the FLOPs
per step trains half the steps under ``flops``, and the baseline keeps ``S_b``.

- ``tokens_per_step = batch_size x grad_accum x context_length``;
- ``flops_per_token = 6N + 12 sum_l H Q T_l``, forward + backward (``core.flops``), counted on
  the meta device;
- ``step_s``: the median of a few timed steps (``estimate.estimate_variant``), with the threads
  one of ``jobs`` runs gets. Timing is not reproducible, so a directory planned with ``time``
  keeps its steps: ``make_plan(directory=...)`` hands the stored match back here, and it is
  reused while the baseline's budget is the same.

Every plan records its match (``plan.json``'s ``"match"``), ``steps`` included, with the FLOPs per
token and tokens per step of every variant: the report draws curves against tokens and FLOPs.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from ..build import build_model
from ..config import MAX_STEPS, Config, resolve_config
from ..errors import ConfigError, DataError, LlmbricksError
from ..flops import train_flops_per_token
from ..registry import Registry, get_registry
from ..train.memory import available_memory
from .estimate import (
    estimate_variant,
    planned_steps,
    threads_per_run,
    tokens_per_step,
    variant_vocab,
)

UNITS = ("steps", "tokens", "flops", "time")


def apply_match(plan: Any, unit: str, registry: Registry | None = None, *, jobs: int = 1,
                stored: Mapping[str, Any] | None = None) -> Any:
    """``plan`` with ``match`` recorded and, unless ``unit`` is ``steps``, every variant's config
    given its matched ``train.max_steps``.

    ``stored`` is the ``"match"`` of the directory's plan.json when it is the same experiment:
    with ``time``, its steps are reused (nothing is timed) while the baseline's budget is
    unchanged. ``jobs`` (runs at a time) sets the threads a timed step gets.
    """
    if unit not in UNITS:
        raise ConfigError(f"--match {unit}: choose one of {', '.join(UNITS)}")
    registry = registry or get_registry()
    configs = {v.name: v.config for v in plan.variants}
    tokens = {name: tokens_per_step(config) for name, config in configs.items()}
    flops = _flops_per_token(configs, registry, needed=unit == "flops")
    base_steps = planned_steps(configs[plan.baseline])
    record: dict[str, Any] = {"unit": unit, "budget": base_steps, "baseline_steps": base_steps,
                              "steps": {name: planned_steps(c) for name, c in configs.items()},
                              "flops_per_token": flops, "tokens_per_step": tokens}
    if unit == "steps":  # each variant keeps the budget its config gives it
        return dataclasses.replace(plan, match=record)
    if base_steps is None:
        raise ConfigError(f"--match {unit}: the baseline {plan.baseline} budgets its training in "
                          "train.epochs, whose steps depend on the data's size; give it "
                          "train.max_steps or train.max_tokens")
    step_s: dict[str, float] = {}
    reused = _reused(stored, base_steps, configs) if unit == "time" else None
    if unit == "tokens":
        cost: dict[str, float] = {name: tokens[name] for name in configs}
    elif unit == "flops":
        cost = {name: tokens[name] * (flops[name] or 0) for name in configs}
    else:
        step_s = reused[0] if reused else _time_steps(configs, registry, jobs)
        cost = step_s
    budget = base_steps * cost[plan.baseline]
    steps = reused[1] if reused else {name: max(1, round(budget / cost[name])) for name in configs}
    steps[plan.baseline] = base_steps  # B / cost_b, without a float's rounding
    variants = [dataclasses.replace(v, config=_with_steps(v.name, v.config, steps[v.name], unit,
                                                          registry))
                for v in plan.variants]
    record.update(budget=budget, steps=steps)
    if unit == "time":
        record["step_s"] = step_s
    return dataclasses.replace(plan, variants=variants, match=record)


def _flops_per_token(configs: Mapping[str, Config], registry: Registry, *,
                     needed: bool) -> dict[str, int | None]:
    """Each variant's model built on the meta device; a learned vocabulary is readied once per
    tokenizer and data source.

    Only ``flops`` needs the figure to plan: for the other units a vocabulary whose data cannot
    be read leaves it ``None`` (the runs meet the same data with their own error), so a plan
    still expands without the data.
    """
    vocabs: dict[str, Any] = {}
    flops: dict[str, int | None] = {}
    for name, config in configs.items():
        key = json.dumps([config.model.tokenizer and config.model.tokenizer.to_data(),
                          config.data.model_dump(mode="json"), config.train.init_from,
                          config.model.vocab_size], sort_keys=True, default=str)
        if key not in vocabs:
            try:
                vocabs[key] = variant_vocab(config, registry)
            except DataError:
                if needed:
                    raise
                vocabs[key] = None
        if vocabs[key] is None:
            flops[name] = None
            continue
        model_config = config.model.model_copy(update={"vocab_size": vocabs[key]})
        model = build_model(model_config, registry, device="meta")
        flops[name] = train_flops_per_token(model, config.model.context_length)
    return flops


def _reused(stored: Mapping[str, Any] | None, base_steps: int, configs: Mapping[str, Config]
            ) -> tuple[dict[str, float], dict[str, int]] | None:
    """The stored timings and steps, when the stored plan matched time from the same budget."""
    if not stored or stored.get("unit") != "time" or stored.get("baseline_steps") != base_steps:
        return None
    step_s, steps = stored.get("step_s"), stored.get("steps")
    if not isinstance(step_s, dict) or not isinstance(steps, dict):
        return None
    if set(step_s) != set(configs) or set(steps) != set(configs):
        return None
    try:
        return ({name: float(step_s[name]) for name in configs},
                {name: int(steps[name]) for name in configs})
    except (TypeError, ValueError):
        return None


def _time_steps(configs: Mapping[str, Config], registry: Registry, jobs: int) -> dict[str, float]:
    """Seconds per optimizer step of every variant, timed with one run's share of the machine."""
    available = available_memory("cpu")
    room = None if available is None else available // jobs
    step_s = {}
    for name, config in configs.items():
        guess = estimate_variant(config, registry, threads=threads_per_run(jobs), memory_room=room)
        if guess.step_s is None:
            raise ConfigError(f"--match time: variant {name} would not fit in memory beside "
                              f"{jobs - 1} other run(s), so its step cannot be timed; use a "
                              "smaller train.batch_size, fewer --jobs or another --match")
        step_s[name] = guess.step_s
    return step_s


def _with_steps(name: str, config: Config, steps: int, unit: str, registry: Registry) -> Config:
    """``config`` training ``steps`` optimizer steps and nothing else (validated as a run's)."""
    if steps > MAX_STEPS:
        raise ConfigError(f"variant {name}: --match {unit} gives it {steps:,} steps, above the "
                          f"largest train.max_steps ({MAX_STEPS:,}); lower the baseline's budget")
    data = config.to_data()
    data["train"].update(max_steps=steps, max_tokens=None, epochs=None)
    try:
        matched = resolve_config(data, registry)
    except LlmbricksError as exc:
        raise ConfigError(f"variant {name} (--match {unit}, {steps:,} steps): {exc}") from None
    matched.ablation = None
    return matched
