"""Errors a user can act on.

Every error that reaches the CLI is a ``LlmbricksError`` whose message is one line naming what is
wrong and how to fix it. ``exit_code`` follows the CLI policy: 2 for usage and config mistakes,
1 for failures at run time.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class LlmbricksError(Exception):
    """Base class: a one-line, user-facing message."""

    exit_code: int = 1


class ConfigError(LlmbricksError):
    """The config (file, override or value) is wrong; fix the config."""

    exit_code = 2


class ComponentError(ConfigError):
    """A component name or its parameters do not resolve against the registry."""


class PluginError(LlmbricksError):
    """A plugin failed to load or registered something twice."""

    exit_code = 2


class DataError(LlmbricksError):
    """Input data is missing or malformed."""


class InputError(DataError):
    """Input the user must fix before anything can run: bad text encoding, too little data.

    A ``DataError`` (so handlers of data failures still catch it) that exits 2, like a config
    mistake: running again without changing the input or the config cannot succeed.
    """

    exit_code = 2


class CheckpointError(LlmbricksError):
    """A run or checkpoint on disk cannot be read."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return `` - did you mean 'x'?`` for the closest choice, or an empty string."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" - did you mean '{close[0]}'?" if close else ""
