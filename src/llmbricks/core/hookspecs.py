"""The three hooks a plugin may implement (pluggy project name: ``llmbricks``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click

    from .component import Component

PROJECT = "llmbricks"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def llmbricks_components() -> list[type[Component]]:
    """Return the component classes this plugin provides."""


@hookspec
def llmbricks_presets() -> dict[str, dict[str, Any]]:
    """Return named ``model`` config fragments, e.g. ``{"gpt2-small": {...}}``."""


@hookspec
def llmbricks_commands(cli: click.Group) -> None:
    """Add CLI verbs to the ``llmbricks`` group."""
