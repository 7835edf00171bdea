"""Train/val/test fractions, cut as the book cuts its datasets (chapters 6 and 7).

``train = int(n * f_train)``, ``val = int(n * f_val)``, and test is the rest when the fractions
sum to 1, else ``int(n * f_test)``: 1,494 spam rows at 0.7/0.1/0.2 give 1045 / 149 / 300, 1,100
instruction records at 0.85/0.1/0.05 give 935 / 110 / 55.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from pydantic import AfterValidator

Fractions = tuple[float, float, float]


def check_fractions(fractions: Sequence[float]) -> Fractions:
    """Three fractions >= 0, train > 0, summing to at most 1; ``ValueError`` otherwise."""
    if len(fractions) != 3 or fractions[0] <= 0 or min(fractions) < 0 or sum(fractions) > 1 + 1e-6:
        raise ValueError(f"split {list(fractions)} must be 3 fractions >= 0 (train, val, test) "
                         "with train > 0 and a sum of at most 1, e.g. [0.7, 0.1, 0.2]")
    return (fractions[0], fractions[1], fractions[2])


#: A trainer param holding train/val/test fractions, checked when the config loads.
SplitFractions = Annotated[Fractions, AfterValidator(check_fractions)]


def split_sizes(n: int, fractions: Sequence[float]) -> tuple[int, int, int]:
    """How many of ``n`` items go to train, val and test."""
    train, val = int(n * fractions[0]), int(n * fractions[1])
    whole = abs(sum(fractions) - 1.0) < 1e-6
    return train, val, n - train - val if whole else int(n * fractions[2])
