"""No positional information at all (NoPE): causal masking alone orders the tokens."""

from __future__ import annotations

from llmbricks.core.interfaces import PositionalEncoding


class NoPositional(PositionalEncoding):
    """No positional encoding (NoPE): the causal mask is the only source of order."""

    name = "none"
    per_row_positions = True
