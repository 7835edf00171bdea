"""Pytest fixtures for plugin authors (loaded through the ``pytest11`` entry point).

- ``isolated_registry``: an empty registry (no entry points) installed as the process default for
  the test; register plugin objects on it with ``.register(module, name="...")``.
- ``registry_with``: a factory ``registry_with({"name": plugin, ...}, entry_points=True)`` that
  builds a registry (the installed plugins plus the given ones) and installs it for the test.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest


@pytest.fixture
def isolated_registry() -> Iterator[Any]:
    from llmbricks.core.registry import Registry, set_registry

    registry = Registry(entry_points=False, strict=False, only=None)
    old = set_registry(registry)
    try:
        yield registry
    finally:
        set_registry(old)


@pytest.fixture
def registry_with() -> Iterator[Any]:
    from llmbricks.core.registry import Registry, set_registry

    old = set_registry(None)

    def make(plugins: Mapping[str, object] | None = None, *, entry_points: bool = True,
             strict: bool = False) -> Registry:
        registry = Registry(plugins, entry_points=entry_points, strict=strict)
        set_registry(registry)
        return registry

    try:
        yield make
    finally:
        set_registry(old)
