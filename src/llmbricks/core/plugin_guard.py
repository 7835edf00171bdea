"""Running third-party plugin code so that nothing it does can take the CLI down.

A plugin's import and hooks run inside :func:`run_plugin_code`: whatever they raise, ``SystemExit``
and ``KeyboardInterrupt`` included, comes back as :class:`PluginRaised`, which the registry
records as that plugin's failure. A real Ctrl-C of the user is told apart by a SIGINT handler
installed for the duration of the call: an interrupt that arrived as a signal is re-raised, one
the plugin raised by itself is only a failure of that plugin. The checks here also describe
malformed hook results (a preset that is not a mapping, a field a config cannot hold) in one line.
"""

from __future__ import annotations

import inspect
import signal
import threading
from collections.abc import Callable, Mapping
from types import FrameType
from typing import Any

#: The value types a preset fragment may hold: what a YAML or JSON config can hold.
PLAIN_SCALARS = (str, int, float, bool, type(None))
MAX_PRESET_DEPTH = 32


class PluginRaised(Exception):
    """Plugin code raised ``error`` (any ``BaseException``); the message says what, as a phrase."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(describe_exception(error))
        self.error = error


class _SigintWatch:
    """Notes a SIGINT that arrives while plugin code runs, then lets the usual handler act."""

    def __init__(self) -> None:
        self.seen = False
        self._previous: Callable[[int, FrameType | None], Any] | None = None

    def __enter__(self) -> _SigintWatch:
        # Signals reach only the main thread, so elsewhere every interrupt is the plugin's own.
        # Under SIG_IGN or SIG_DFL no KeyboardInterrupt can come from a signal either.
        if threading.current_thread() is threading.main_thread():
            previous = signal.getsignal(signal.SIGINT)
            if callable(previous):
                self._previous = previous
                signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        self.seen = True
        if self._previous is not None:
            self._previous(signum, frame)

    def __exit__(self, *exc_info: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def run_plugin_code(function: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """Call plugin code; anything it raises becomes :class:`PluginRaised`, except a real Ctrl-C.

    Only what the call raises synchronously counts as the plugin's failure: a SIGINT that arrives
    meanwhile stays a ``KeyboardInterrupt``, even when the plugin catches and swallows it.
    """
    watch = _SigintWatch()
    with watch:
        try:
            result = function(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - a plugin must not be able to abort llmbricks
            if watch.seen:
                raise
            raise PluginRaised(exc) from exc
    if watch.seen:
        raise KeyboardInterrupt
    return result


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of ``str(exc)``, shortened; an exception whose ``__str__`` fails gives ''."""
    try:
        text = str(exc).strip()
    except BaseException:  # noqa: BLE001 - a hostile __str__ must not escape either
        return ""
    line = text.splitlines()[0] if text else ""
    return line if len(line) <= limit else line[:limit - 3] + "..."


def describe_exception(exc: BaseException) -> str:
    """What plugin code raised, as a phrase: ``failed: MESSAGE``, ``called sys.exit(3)``, ...

    An ordinary exception with a message is described by its message alone; its class is only
    named when there is nothing else to say, or when it is not an ``Exception`` at all.
    """
    if isinstance(exc, SystemExit):
        code = "" if exc.code is None else short_repr(exc.code)
        return f"called sys.exit({code})"
    message = first_line(exc)
    if isinstance(exc, Exception) and message:
        return f"failed: {message}"
    name = type(exc).__name__
    return f"raised {name}: {message}" if message else f"raised {name}"


def short_repr(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters; never raises."""
    try:
        text = repr(value)
    except BaseException:  # noqa: BLE001
        text = f"<{type(value).__name__} object>"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def kind_of(value: Any) -> str:
    """``a dict``, ``a str 'x'``, ``None``: how a wrong value is named in a message."""
    if value is None:
        return "None"
    name = type(value).__name__
    article = "an" if name[:1].lower() in "aeiou" else "a"
    if isinstance(value, (str, int, float)):
        return f"{article} {name} {short_repr(value)}"
    return f"{article} {name}"


def required_args(function: Any) -> list[str] | None:
    """The positional arguments a hook implementation needs (pluggy passes only these)."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return None
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [p.name for p in signature.parameters.values()
            if p.kind in positional and p.default is inspect.Parameter.empty]


def preset_problem(name: Any, fragment: Any) -> str | None:
    """Why a preset cannot be registered, or None: a string name, a mapping of plain values."""
    if not isinstance(name, str) or not name.strip():
        return f"preset name {short_repr(name)} is not a non-empty string"
    if not isinstance(fragment, Mapping):
        return f"preset '{name}' is {kind_of(fragment)}, not a mapping of model fields"
    where = plain_problem(fragment, "", 0)
    return f"preset '{name}': {where}" if where else None


def plain_problem(value: Any, path: str, depth: int) -> str | None:
    """Where ``value`` holds something a config file cannot (a set, an object, a non-str key)."""
    at = f"field '{path}'" if path else "the preset"
    if depth > MAX_PRESET_DEPTH:
        return f"{at} nests deeper than {MAX_PRESET_DEPTH} levels"
    if isinstance(value, PLAIN_SCALARS):
        return None
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{at} has the key {short_repr(key)}; keys must be strings"
            problem = plain_problem(item, f"{path}.{key}" if path else key, depth + 1)
            if problem:
                return problem
        return None
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            problem = plain_problem(item, f"{path}[{index}]", depth + 1)
            if problem:
                return problem
        return None
    return f"{at} holds {kind_of(value)}, which a config cannot hold"


def plain_copy(value: Any) -> Any:
    """A deep copy of a value :func:`plain_problem` accepted (tuples become lists)."""
    if isinstance(value, Mapping):
        return {key: plain_copy(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_copy(item) for item in value]
    return value
