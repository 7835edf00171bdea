"""An ablation plan: a grid of config changes, expanded into named variants, each run over seeds.

``--grid model.positional=absolute,rope`` gives two variants. Several grids multiply (their
cartesian product). Instead of a grid, ``ablation.variants`` names each variant and its changes
(a leave-one-out ablation changes a different path in each). Each value is parsed like a ``--set`` value and applied with the same
``set_path``, so a component name alone is a valid value and drops the old component's params.
Every variant is resolved (validated) before anything runs.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import (
    MAX_SEED,
    MAX_SEEDS,
    Config,
    check_path,
    parse_override,
    resolve_config,
    set_path,
)
from ..config_io import dump_yaml, parse_yaml, read_config_file
from ..errors import ConfigError, LlmbricksError
from ..registry import Registry, get_registry
from ..store.atomic import write_atomic
from .match import apply_match

PLAN_FILE = "plan.json"
RUNS_DIR = "runs"
CONFIGS_DIR = "configs"
#: Characters kept in a variant's directory name; anything else becomes "_".
_UNSAFE = re.compile(r"[^A-Za-z0-9._=,+-]")


@dataclass(frozen=True)
class Variant:
    """One point of the grid: its name (also its directory) and the config changes it makes."""

    name: str
    overrides: dict[str, Any]
    config: Config

    def to_data(self) -> dict[str, Any]:
        return {"name": self.name, "overrides": self.overrides}


@dataclass
class AblationPlan:
    """What ``llmbricks ablate`` runs: variants x seeds, and the baseline to compare with."""

    source: str
    grid: dict[str, list[Any]]
    seeds: list[int]
    baseline: str
    variants: list[Variant]
    command: str = ""
    vary: str = "all"
    created_at: float = field(default_factory=time.time)
    #: The budgets' match (``--match``, ``core/ablation/match.py``): unit, budget, each variant's
    #: steps, FLOPs per token and tokens per step. ``make_plan`` always sets it.
    match: dict[str, Any] | None = None
    #: Successive halving (``--halving``, ``core/ablation/halving.py``): the rung count and each
    #: variant's rung steps, and ``"mode": "async"`` with ``--asha`` (``asha.py``; a synchronous
    #: plan has no mode); None trains every run to its end.
    halving: dict[str, Any] | None = None

    def seed_sets(self, k: int) -> list[str]:
        """The ``--set`` values that give run ``k`` its seeds: the k-th seed for what varies,
        the first seed for what ``vary`` holds still."""
        sets = [f"seed={self.seeds[k]}"]
        if self.vary == "init":
            sets.append(f"seed_sources.data={self.seeds[0]}")
        elif self.vary == "data":
            sets += [f"seed_sources.init={self.seeds[0]}", f"seed_sources.dropout={self.seeds[0]}"]
        return sets

    def jobs(self) -> list[tuple[Variant, int]]:
        """``(variant, seed index)`` for every run, variant by variant."""
        return [(v, k) for v in self.variants for k in range(len(self.seeds))]

    def to_data(self) -> dict[str, Any]:
        return {"version": 1, "config": self.source, "grid": self.grid, "seeds": self.seeds,
                "vary": self.vary, "baseline": self.baseline,
                "variants": [v.to_data() for v in self.variants],
                "created_at": self.created_at, "command": self.command,
                **({"match": self.match} if self.match is not None else {}),
                **({"halving": self.halving} if self.halving is not None else {})}

    @property
    def match_unit(self) -> str:
        return match_unit({"match": self.match})

    def same_experiment(self, stored: Mapping[str, Any]) -> bool:
        """Whether a ``plan.json`` describes these runs (so they may be skipped or resumed)."""
        mine = self.to_data()
        return (all(stored.get(key) == mine[key] for key in ("grid", "seeds", "variants"))
                and stored.get("vary", "all") == self.vary  # plans before `vary`: all
                and match_unit(stored) == self.match_unit  # plans before `match`: steps
                and stored.get("halving") == self.halving)

    def changed_configs(self, directory: Path) -> list[str]:
        """The variants whose resolved config differs from the one their runs were trained with.

        The base config file may have been edited since: its runs would mix two experiments.
        """
        changed = []
        for variant in self.variants:
            path = directory / CONFIGS_DIR / f"{variant.name}.yaml"
            if path.is_file() and path.read_text(encoding="utf-8") != variant_yaml(variant):
                changed.append(variant.name)
        return changed


def match_unit(data: Mapping[str, Any]) -> str:
    """The unit a plan.json's budgets were matched in; ``steps`` for plans written before
    ``--match`` (each variant kept its own budget)."""
    match = data.get("match")
    return str(match.get("unit", "steps")) if isinstance(match, Mapping) else "steps"


def split_values(text: str) -> list[str]:
    """``a,{name: b, x: 1},[1, 2]`` -> three values: commas inside brackets or quotes stay."""
    values, depth, quote, start = [], 0, "", 0
    for i, char in enumerate(text):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[{(":
            depth += 1
        elif char in "]})":
            depth -= 1
        elif char == "," and depth == 0:
            values.append(text[start:i])
            start = i + 1
    values.append(text[start:])
    return [v.strip() for v in values]


def parse_grid(option: str) -> tuple[str, list[Any]]:
    """``"model.positional=rope,alibi"`` -> ``("model.positional", ["rope", "alibi"])``."""
    path, sep, text = option.partition("=")
    path = path.strip()
    if not sep or not path or not text.strip():
        raise ConfigError(f"--grid {option}: expected PATH=V1,V2,... "
                          "(e.g. --grid model.positional=rope,alibi)")
    check_path(path, "--grid")
    values = [parse_yaml(v, f"--grid {path}") if v else None for v in split_values(text)]
    if len(values) != len({_identity(v) for v in values}):
        raise ConfigError(f"--grid {path}: a value is listed twice")
    return path, values


def _identity(value: Any) -> str:
    """A value's canonical text, to spot a grid value listed twice (mixed key types included)."""
    try:
        return json.dumps(value, sort_keys=True, default=str)
    except TypeError:  # keys of mixed types cannot be sorted
        return repr(value)


def value_label(value: Any) -> str:
    """A short text for a grid value: a component's name (and params), or the value itself."""
    if isinstance(value, Mapping):
        name = value.get("name")
        params = "-".join(f"{k}={value_label(v)}" for k, v in value.items() if k != "name")
        return f"{name}-{params}" if name and params else str(name) if name else params
    if isinstance(value, (list, tuple)):
        return "+".join(value_label(v) for v in value)
    return "null" if value is None else str(value)


def variant_names(grid: Mapping[str, Sequence[Any]], combos: Iterable[tuple[Any, ...]]) -> list[str]:
    """``positional=rope,lr=0.001``: each grid's last path part (the full path if two share
    it) and the value label, made safe for a directory name and unique."""
    paths = list(grid)
    lasts = [p.rsplit(".", 1)[-1] for p in paths]
    keys = [last if lasts.count(last) == 1 else path for path, last in zip(paths, lasts, strict=True)]
    names: list[str] = []
    for combo in combos:
        name = ",".join(f"{k}={value_label(v)}" for k, v in zip(keys, combo, strict=True)) or "base"
        name = _UNSAFE.sub("_", name)[:120]
        unique, n = name, 2
        while unique in names:
            unique, n = f"{name}-{n}", n + 1
        names.append(unique)
    return names


def make_plan(source: str | Path, *, grid: Sequence[str] = (), seeds: int | None = None,
              baseline: str | None = None, overrides: Sequence[str] = (), command: str = "",
              registry: Registry | None = None, vary: str | None = None,
              match: str | None = None, directory: str | Path | None = None,
              jobs: int = 1, halving: bool = False, asha: bool = False) -> AblationPlan:
    """Expand the config's ``ablation`` section and the CLI's ``--grid`` into resolved variants.

    ``--grid`` replaces the section's grid for the same path and adds new paths; ``seeds``,
    ``baseline``, ``vary`` and ``match`` replace the section's. Every variant is validated here:
    an invalid one raises ``ConfigError`` naming the variant, its path and the reason, and
    nothing runs. ``match`` gives every variant the baseline's budget in steps, tokens, FLOPs or
    time (``match.py``); with ``time``, the steps of the same experiment already planned in
    ``directory`` are reused rather than timed again (timed with the threads one of ``jobs``
    runs gets). ``halving``: successive halving over rungs of each budget; ``asha``: its
    asynchronous mode (implies ``halving``).
    """
    registry = registry or get_registry()
    raw = read_config_file(source)
    for override in overrides:
        path, value = parse_override(override)
        set_path(raw, path, value)
    section = resolve_config({"ablation": raw.pop("ablation", None) or {}}, registry).ablation
    assert section is not None
    merged: dict[str, list[Any]] = {}
    for path, values in section.grid.items():  # paths checked by the config (AblationConfig)
        merged[path] = list(values)
    for option in grid:
        path, values = parse_grid(option)
        merged[path] = values
    if section.variants and merged:
        raise ConfigError("ablation: give a grid (--grid, ablation.grid) or named "
                          "ablation.variants, not both")
    if section.variants:  # named variants, each its own set of changes (leave-one-out)
        named = [(name, dict(changes)) for name, changes in section.variants.items()]
    else:
        combos = list(itertools.product(*merged.values())) if merged else [()]
        named = [(name, dict(zip(merged, combo, strict=True)))
                 for name, combo in zip(variant_names(merged, combos), combos, strict=True)]
    variants = [Variant(name, changes, _resolve_variant(raw, name, changes, registry))
                for name, changes in named]
    count = seeds if seeds is not None else section.seeds
    if not 1 <= count <= MAX_SEEDS:
        raise ConfigError(f"--seeds {count}: give 1 to {MAX_SEEDS:,}")
    first_seed = variants[0].config.seed
    if first_seed + count - 1 > MAX_SEED:
        raise ConfigError(f"--seeds {count}: seed {first_seed} + {count} runs past the largest "
                          f"seed ({MAX_SEED}); lower seed")
    chosen = _pick_baseline(baseline if baseline is not None else section.baseline, variants, merged)
    plan = AblationPlan(source=str(source), grid=merged, seeds=[first_seed + k for k in range(count)],
                        baseline=chosen, variants=variants, command=command,
                        vary=vary if vary is not None else section.vary)
    unit = match if match is not None else section.match
    plan.match = {"unit": unit}
    plan = apply_match(plan, unit, registry, jobs=jobs, stored=_stored_match(plan, directory))
    if halving or asha:  # rungs of each variant's (matched) budget
        from .estimate import planned_steps
        from .rungs import plan_rungs

        plan.halving = plan_rungs({v.name: planned_steps(v.config) for v in plan.variants},
                                  asynchronous=asha)
    return plan


def _stored_match(plan: AblationPlan, directory: str | Path | None) -> dict[str, Any] | None:
    """The ``match`` of the plan.json in ``directory`` when it plans the same experiment."""
    if directory is None or not (Path(directory) / PLAN_FILE).is_file():
        return None
    try:
        stored = load_plan_data(directory)
    except ConfigError:
        return None  # prepare names the unreadable file
    match = stored.get("match")
    # The rungs of --halving follow from the matched steps: not set yet, so not compared.
    same = plan.same_experiment({**stored, "halving": plan.halving})
    return match if isinstance(match, dict) and same else None


def _resolve_variant(raw: Mapping[str, Any], name: str, changes: Mapping[str, Any],
                     registry: Registry) -> Config:
    data = copy.deepcopy(dict(raw))  # YAML may hold dates or sets, which JSON cannot copy
    try:
        for path, value in changes.items():
            set_path(data, path, value)
        config = resolve_config(data, registry)
    except LlmbricksError as exc:
        raise ConfigError(f"variant {name}: {exc}") from None
    config.ablation = None
    return config


def _pick_baseline(wanted: str | None, variants: list[Variant], grid: Mapping[str, Any]) -> str:
    """The variant named ``wanted`` (or whose only differing value is ``wanted``); default first."""
    if wanted is None:
        return variants[0].name
    names = [v.name for v in variants]
    if wanted in names:
        return wanted
    by_value = [v.name for v in variants
                if any(value_label(val) == wanted for val in v.overrides.values())]
    if len(by_value) == 1:
        return by_value[0]
    if by_value:
        raise ConfigError(f"baseline {wanted!r} matches {len(by_value)} variants "
                          f"({', '.join(by_value)}); give one variant's full name")
    raise ConfigError(f"baseline {wanted!r} is not one variant of the grid (variants: "
                      f"{', '.join(names)})")


def variant_yaml(variant: Variant) -> str:
    """The text of ``ABL/configs/VARIANT.yaml``."""
    return dump_yaml(variant.config.to_data())


def write_variant_configs(plan: AblationPlan, directory: Path) -> dict[str, Path]:
    """``ABL/configs/VARIANT.yaml``: the resolved config each of the variant's runs trains."""
    out = directory / CONFIGS_DIR
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for variant in plan.variants:
        path = out / f"{variant.name}.yaml"
        write_atomic(path, variant_yaml(variant))
        paths[variant.name] = path
    return paths


def load_plan_data(directory: str | Path) -> dict[str, Any]:
    """``ABL/plan.json`` as written, or a clear error."""
    path = Path(directory) / PLAN_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{directory} is not an ablation directory ({PLAN_FILE} is missing)") from None
    except ValueError as exc:
        raise ConfigError(f"{path} is unreadable: {exc}") from None
