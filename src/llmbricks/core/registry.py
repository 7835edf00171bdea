"""The plugin registry: a pluggy manager over the ``llmbricks`` entry-point group.

Built-in plugins are entry points of our own distribution, so they load exactly like third-party
ones. Components are looked up by ``(kind, name)``; ``plugin:name`` picks one plugin's component
when two plugins register the same name.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy
from pydantic import BaseModel, ValidationError

from . import hookspecs
from .component import KINDS, Component, ComponentSpec
from .errors import ComponentError, PluginError, did_you_mean

ENTRY_POINT_GROUP = "llmbricks"
STRICT_ENV = "LLMBRICKS_STRICT_PLUGINS"
ONLY_ENV = "LLMBRICKS_LOAD_PLUGINS"


@dataclass(frozen=True)
class Registration:
    """One component class and the plugin that registered it."""

    kind: str
    name: str
    cls: type[Component]
    plugin: str


@dataclass
class PluginRecord:
    """What ``llmbricks plugins`` shows for one plugin."""

    name: str
    module: str
    distribution: str | None = None
    version: str | None = None
    components: list[tuple[str, str]] = field(default_factory=list)
    presets: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass(frozen=True)
class ParamInfo:
    name: str
    type: str
    default: Any
    required: bool
    description: str | None


@dataclass(frozen=True)
class ComponentInfo:
    kind: str
    name: str
    summary: str
    doc: str
    params: list[ParamInfo]
    plugin: str
    distribution: str | None
    version: str | None


def _env_truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _type_name(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if isinstance(annotation, type) else None
    return text or str(annotation).replace("typing.", "")


class Registry:
    """Components and presets of every loaded plugin."""

    def __init__(self, plugins: Mapping[str, object] | None = None, *, entry_points: bool = True,
                 strict: bool | None = None, only: list[str] | None = None) -> None:
        self.strict = _env_truthy(STRICT_ENV) if strict is None else strict
        env_only = os.environ.get(ONLY_ENV, "").strip()
        if only is None and env_only:
            only = [n.strip() for n in env_only.split(",") if n.strip()]
        self.only = only
        self.manager = pluggy.PluginManager(hookspecs.PROJECT)
        self.manager.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginRecord] = {}
        self._components: dict[tuple[str, str], list[Registration]] = {}
        self._presets: dict[str, tuple[str, dict[str, Any]]] = {}
        if entry_points:
            self._load_entry_points()
        for name, plugin in (plugins or {}).items():
            self.register(plugin, name=name)

    # --- loading ------------------------------------------------------------------------------

    def _load_entry_points(self) -> None:
        for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            if self.only is not None and ep.name not in self.only:
                continue
            dist = getattr(ep, "dist", None)
            record = PluginRecord(name=ep.name, module=ep.value,
                                  distribution=dist.name if dist else None,
                                  version=dist.version if dist else None)
            if ep.name in self.plugins:
                other = self.plugins[ep.name]
                self._fail(PluginRecord(name=f"{ep.name} ({record.distribution})", module=ep.value,
                                        distribution=record.distribution, version=record.version),
                           f"entry point name '{ep.name}' is already used by {other.distribution} "
                           f"({other.module}); one of the two packages must rename it")
                continue
            try:
                module = ep.load()
            except Exception as exc:  # any import failure is recorded, never fatal
                self._fail(record, f"failed to import {ep.value}: {type(exc).__name__}: {exc}")
                continue
            self.register(module, name=ep.name, record=record)

    def _fail(self, record: PluginRecord, message: str) -> None:
        record.error = message
        self.plugins[record.name] = record
        if self.strict:
            raise PluginError(f"plugin '{record.name}': {message} ({STRICT_ENV} is set)")

    def register(self, plugin: object, *, name: str, record: PluginRecord | None = None) -> None:
        """Register a plugin object (a module or any object with hookimpls) under ``name``."""
        record = record or PluginRecord(name=name, module=getattr(plugin, "__name__", repr(plugin)))
        if name in self.plugins and self.plugins[name].error is None:
            raise PluginError(f"two plugins are named '{name}'; rename one entry point")
        self.manager.register(plugin, name=name)
        self.plugins[name] = record
        try:
            components = [c for impl in self._impls("llmbricks_components", name)
                          for c in (impl() or [])]
            presets = [p for impl in self._impls("llmbricks_presets", name)
                       for p in (impl() or {}).items()]
        except Exception as exc:
            self.manager.unregister(name=name)
            self._fail(record, f"hook raised {type(exc).__name__}: {exc}")
            return
        for cls in components:
            problem = self._invalid(cls)
            if problem:
                self._fail(record, problem)
                continue
            key = (cls.kind, cls.name)
            self._components.setdefault(key, []).append(Registration(cls.kind, cls.name, cls, name))
            record.components.append(key)
            if len(self._components[key]) > 1 and self.strict:
                raise PluginError(self._duplicate_message(cls.kind, cls.name))
        for preset_name, fragment in presets:
            if preset_name in self._presets:
                other = self._presets[preset_name][0]
                self._fail(record, f"preset '{preset_name}' is already registered by plugin '{other}'")
                continue
            self._presets[preset_name] = (name, dict(fragment))
            record.presets.append(preset_name)

    def _impls(self, hook: str, plugin_name: str) -> list[Any]:
        caller = getattr(self.manager.hook, hook)
        return [impl.function for impl in caller.get_hookimpls() if impl.plugin_name == plugin_name]

    @staticmethod
    def _invalid(cls: Any) -> str | None:
        if not (isinstance(cls, type) and issubclass(cls, Component)):
            return f"{cls!r} is not a Component subclass"
        kind, name = getattr(cls, "kind", None), getattr(cls, "name", None)
        if kind not in KINDS:
            return f"{cls.__qualname__}.kind is {kind!r}; expected one of {', '.join(KINDS)}"
        if not isinstance(name, str) or not name or ":" in name:
            return f"{cls.__qualname__}.name must be a non-empty string without ':'"
        if not (isinstance(cls.Params, type) and issubclass(cls.Params, BaseModel)):
            return f"{cls.__qualname__}.Params must be a pydantic model"
        return None

    # --- lookup -------------------------------------------------------------------------------

    def kinds(self) -> list[str]:
        return list(KINDS)

    def names(self, kind: str) -> list[str]:
        self._check_kind(kind)
        return sorted(name for (k, name) in self._components if k == kind)

    def registrations(self, kind: str, name: str) -> list[Registration]:
        return list(self._components.get((kind, name), []))

    def duplicates(self) -> list[tuple[str, str, list[str]]]:
        return [(k, n, [r.plugin for r in regs])
                for (k, n), regs in sorted(self._components.items()) if len(regs) > 1]

    def _check_kind(self, kind: str) -> None:
        if kind not in KINDS:
            raise ComponentError(
                f"unknown kind '{kind}'{did_you_mean(kind, KINDS)} (kinds: {', '.join(KINDS)})")

    def _duplicate_message(self, kind: str, name: str) -> str:
        plugins = [r.plugin for r in self._components[(kind, name)]]
        quoted = " and ".join(f"'{p}'" for p in plugins)
        picks = " or ".join(f"'{p}:{name}'" for p in plugins)
        return f"{kind} '{name}' is registered by plugins {quoted}; choose one with {picks}"

    def get(self, kind: str, name: str) -> type[Component]:
        """The class registered as ``(kind, name)``; ``name`` may be ``plugin:name``."""
        return self.registration(kind, name).cls

    def registration(self, kind: str, name: str) -> Registration:
        self._check_kind(kind)
        plugin, _, bare = name.rpartition(":")
        regs = self._components.get((kind, bare), [])
        if plugin:
            regs = [r for r in regs if r.plugin == plugin]
        if not regs:
            raise ComponentError(self._unknown_message(kind, name))
        if len(regs) > 1:
            raise PluginError(self._duplicate_message(kind, bare))
        return regs[0]

    def _unknown_message(self, kind: str, name: str) -> str:
        names = self.names(kind)
        failed = sorted(r.name for r in self.plugins.values() if r.error)
        note = (f"; plugin(s) {', '.join(failed)} failed to load, see `llmbricks plugins`"
                if failed else "")
        if not names:
            return f"unknown {kind} '{name}': no {kind} component is installed{note}"
        return (f"unknown {kind} '{name}'{did_you_mean(name, names)} "
                f"(available: {', '.join(names)}; see `llmbricks components {kind}`{note})")

    def info(self, kind: str, name: str) -> ComponentInfo:
        reg = self.registration(kind, name)
        record = self.plugins.get(reg.plugin)
        params = []
        for pname, f in reg.cls.Params.model_fields.items():
            required = f.is_required()
            params.append(ParamInfo(pname, _type_name(f.annotation),
                                    None if required else f.get_default(call_default_factory=True),
                                    required, f.description))
        return ComponentInfo(kind=reg.kind, name=reg.name, summary=reg.cls.summary(),
                             doc=inspect.cleandoc(reg.cls.__doc__ or ""), params=params, plugin=reg.plugin,
                             distribution=record.distribution if record else None,
                             version=record.version if record else None)

    # --- presets ------------------------------------------------------------------------------

    def preset_names(self) -> list[str]:
        return sorted(self._presets)

    def preset(self, name: str) -> dict[str, Any]:
        if name not in self._presets:
            names = self.preset_names()
            raise ComponentError(f"unknown preset '{name}'{did_you_mean(name, names)} "
                                 f"(available: {', '.join(names) or 'none'})")
        return dict(self._presets[name][1])

    def preset_plugin(self, name: str) -> str:
        self.preset(name)
        return self._presets[name][0]

    # --- specs and building -------------------------------------------------------------------

    def resolve(self, kind: str, spec: Any, path: str = "") -> ComponentSpec:
        """Validate ``spec`` against the component's ``Params``; the result lists every default.

        Errors (unknown name or parameter, wrong type) are one line starting with ``path``.
        """
        spec, cls = self._lookup(kind, spec, path)
        params = self._params(kind, spec, cls, path)
        return ComponentSpec(name=spec.name, params=params.model_dump(mode="json"))

    def build(self, kind: str, spec: Any, **context: Any) -> Any:
        """Instantiate a component: ``cls(Params(**spec.params), **context)``."""
        spec, cls = self._lookup(kind, spec, "")
        return cls(self._params(kind, spec, cls, ""), **context)

    def _lookup(self, kind: str, spec: Any, path: str) -> tuple[ComponentSpec, type[Component]]:
        at = f"{path}: " if path else ""
        try:
            spec = ComponentSpec.parse(spec)
            return spec, self.get(kind, spec.name)
        except ValueError as exc:
            raise ComponentError(f"{at}{exc}") from None
        except (ComponentError, PluginError) as exc:
            raise type(exc)(f"{at}{exc}") from None

    @staticmethod
    def _params(kind: str, spec: ComponentSpec, cls: type[Component], path: str) -> Any:
        try:
            return cls.Params.model_validate(spec.params)
        except ValidationError as exc:
            raise ComponentError(describe_validation_error(
                exc, owner=f"{kind} '{spec.name}'", fields=list(cls.Params.model_fields),
                prefix=path)) from None

    def add_commands(self, cli: Any) -> None:
        """Let every plugin add its CLI verbs."""
        self.manager.hook.llmbricks_commands(cli=cli)

    def commands(self) -> dict[str, list[str]]:
        """The CLI verbs each plugin adds, found by letting it add them to a scratch group."""
        import click

        found: dict[str, list[str]] = {}
        for impl in self.manager.hook.llmbricks_commands.get_hookimpls():
            scratch = click.Group()
            try:
                impl.function(cli=scratch)
            except Exception as exc:
                record = self.plugins.get(impl.plugin_name)
                if record is not None and record.error is None:
                    record.error = f"llmbricks_commands raised {type(exc).__name__}: {exc}"
                continue
            found[impl.plugin_name] = sorted(scratch.commands)
        return found


def describe_validation_error(exc: ValidationError, *, owner: str, fields: list[str],
                              prefix: str = "") -> str:
    """Turn pydantic's report into one line: ``path: what is wrong - did you mean ...``."""
    errors = exc.errors()
    first = errors[0]
    loc = ".".join(str(p) for p in first["loc"])
    path = ".".join(p for p in (prefix, loc) if p)
    if first["type"] == "extra_forbidden":
        key = str(first["loc"][-1])
        choices = ", ".join(fields) or "none"
        text = f"unknown parameter '{key}' of {owner}{did_you_mean(key, fields)} (parameters: {choices})"
    elif first["type"] == "missing":
        text = f"missing required parameter of {owner}"
    elif first["type"] == "value_error":
        text = str(first.get("ctx", {}).get("error", first["msg"]))
    else:
        shown = " ".join(repr(first.get("input")).split())  # one line, however long the input
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        text = f"{first['msg'][0].lower()}{first['msg'][1:]}, got {shown}"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    text = " ".join(text.split())  # a message is one line, even when a validator's spans several
    return f"{path}: {text}{more}" if path else f"{text}{more}"


_default: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, loaded from entry points on first use."""
    global _default
    if _default is None:
        _default = Registry()
    return _default


def set_registry(registry: Registry | None) -> Registry | None:
    """Replace the process-wide registry (``None`` reloads on next use); returns the old one."""
    global _default
    old, _default = _default, registry
    return old


@contextlib.contextmanager
def use_registry(registry: Registry) -> Iterator[Registry]:
    old = set_registry(registry)
    try:
        yield registry
    finally:
        set_registry(old)
