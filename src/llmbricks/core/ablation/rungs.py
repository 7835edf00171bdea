"""Successive halving's rungs: at which steps each variant's budget is cut (``halving.py`` runs
them). Apart from the runner so that planning an ablation needs nothing that reads its runs.

With R rungs a budget of S steps is cut at S/2^(R-1), ..., S/2, S; R is the number of halvings
that leave 2 variants (the baseline and the best other), plus the full rung. The asynchronous
mode (``--asha``, ``asha.py``) has the same rungs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError

#: ``plan.json``'s ``halving["mode"]`` with ``--asha``; a synchronous plan has no ``mode`` (so
#: the directories of plans written before ``--asha`` stay the same experiment).
ASYNC = "async"


def rung_count(variants: int) -> int:
    """Rungs that halve ``variants`` down to 2 (the baseline and the best other), plus one."""
    rungs, alive = 1, variants
    while alive > 2:
        alive -= alive // 2
        rungs += 1
    return rungs


def rung_steps(steps: int, rungs: int) -> list[int]:
    """The steps of each rung of a ``steps``-step budget: steps / 2^(R-1-r), at least 1."""
    return [max(1, round(steps / 2 ** (rungs - 1 - r))) for r in range(rungs)]


def plan_rungs(budgets: Mapping[str, int | None], asynchronous: bool = False) -> dict[str, Any]:
    """``plan.json``'s ``halving``: the rung count and each variant's rung steps, and ``"mode":
    "async"`` for ``--asha``."""
    flag = "--asha" if asynchronous else "--halving"
    unknown = [name for name, steps in budgets.items() if steps is None]
    if unknown:
        raise ConfigError(f"{flag} needs each variant's budget in steps; {unknown[0]} trains "
                          "for train.epochs: give train.max_steps or train.max_tokens")
    if len(budgets) < 3:
        raise ConfigError(f"{flag} needs 3 variants or more (this grid has {len(budgets)}: "
                          f"the baseline and one other both train to the end); drop {flag}")
    rungs = rung_count(len(budgets))
    steps = {name: rung_steps(int(total), rungs) for name, total in budgets.items()
             if total is not None}
    short = [name for name, ladder in steps.items() if len(set(ladder)) < rungs]
    if short:
        raise ConfigError(f"{flag}: {short[0]}'s {budgets[short[0]]} steps are too few for "
                          f"{rungs} rungs (each rung doubles the last); give more steps")
    return {**({"mode": ASYNC} if asynchronous else {}), "rungs": rungs, "steps": steps}


def halving_share(halving: Mapping[str, Any]) -> float:
    """The share of the grid's training steps a synchronous halving trains at most: at rung r the
    alive variants train from the last rung's step to this one's, and floor(n/2) stop after it.

        share = sum_r sum_{v alive at r} (steps_v[r] - steps_v[r-1]) / sum_v steps_v[-1]

    taking as alive at r the variants with the largest budgets (the worst case)."""
    ladders = sorted(halving["steps"].values(), key=lambda ladder: -ladder[-1])
    alive, trained = len(ladders), 0
    for r in range(halving["rungs"]):
        trained += sum(ladder[r] - (ladder[r - 1] if r else 0) for ladder in ladders[:alive])
        alive -= alive // 2
    return trained / sum(ladder[-1] for ladder in ladders)
