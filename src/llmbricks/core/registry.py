"""The plugin registry: a pluggy manager over the ``llmbricks`` entry-point group.

Built-in plugins are entry points of our own distribution, so they load exactly like third-party
ones. Components are looked up by ``(kind, name)``; ``plugin:name`` picks one plugin's component
when two plugins register the same name.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy
from pydantic import BaseModel, ValidationError

from . import hookspecs
from .component import KINDS, Component, ComponentSpec
from .errors import ComponentError, LlmbricksError, PluginError, did_you_mean
from .plugin_guard import (
    PluginRaised,
    kind_of,
    plain_copy,
    preset_problem,
    required_args,
    run_plugin_code,
    short_repr,
)

ENTRY_POINT_GROUP = "llmbricks"
STRICT_ENV = "LLMBRICKS_STRICT_PLUGINS"
ONLY_ENV = "LLMBRICKS_LOAD_PLUGINS"
HOOKS = ("llmbricks_components", "llmbricks_presets", "llmbricks_commands")


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


class _HookFailed(Exception):
    """A plugin's hook raised; the message names the hook and what it raised."""


def _record_for(ep: metadata.EntryPoint) -> PluginRecord:
    """The record of an entry point, with its distribution when that can be read."""
    try:
        dist = getattr(ep, "dist", None)
        name, version = (dist.name, dist.version) if dist else (None, None)
    except Exception:  # a broken dist-info is the plugin's failure, reported when it loads
        name = version = None
    return PluginRecord(name=ep.name, module=ep.value, distribution=name, version=version)


def _module_name(plugin: object) -> str:
    try:
        name = getattr(plugin, "__name__", None)
    except Exception:  # an object whose attributes raise: named by its repr
        name = None
    return name if isinstance(name, str) else short_repr(plugin)


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
        self._commands: dict[str, list[tuple[str, Any]]] | None = None
        if entry_points:
            self._load_entry_points()
        for name, plugin in (plugins or {}).items():
            self.register(plugin, name=name)

    # --- loading ------------------------------------------------------------------------------

    def _load_entry_points(self) -> None:
        for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            if self.only is not None and ep.name not in self.only:
                continue
            record = _record_for(ep)
            if ep.name in self.plugins:
                other = self.plugins[ep.name]
                self._fail(PluginRecord(name=f"{ep.name} ({record.distribution})", module=ep.value,
                                        distribution=record.distribution, version=record.version),
                           f"entry point name '{ep.name}' is already used by {other.distribution} "
                           f"({other.module}); one of the two packages must rename it")
                continue
            try:
                module = run_plugin_code(ep.load)
            except PluginRaised as exc:  # any import failure is recorded, never fatal
                self._fail(record, f"import {ep.value} {exc}", cause=exc.error)
                continue
            self.register(module, name=ep.name, record=record)

    def _fail(self, record: PluginRecord, message: str, cause: BaseException | None = None) -> None:
        """Record ``message`` as the plugin's error (strict mode: raise it, naming the plugin)."""
        if record.error is None:
            record.error = message
        elif message not in record.error.split("; "):
            record.error = f"{record.error}; {message}"
        self.plugins[record.name] = record
        if self.strict:
            raise PluginError(f"plugin '{record.name}': {message} ({STRICT_ENV} is set)") from cause

    def register(self, plugin: object, *, name: str, record: PluginRecord | None = None) -> None:
        """Register a plugin object (a module or any object with hookimpls) under ``name``.

        A plugin whose hooks are misdeclared or raise is recorded as failed and left out; a
        malformed component or preset is recorded and skipped, the plugin's valid ones register.
        """
        record = record or PluginRecord(name=name, module=_module_name(plugin))
        if name in self.plugins and self.plugins[name].error is None:
            raise PluginError(f"two plugins are named '{name}'; rename one entry point")
        self.plugins[name] = record
        problem = self._add_to_manager(plugin, name)
        if problem is not None:
            self._fail(record, problem)
            return
        try:
            components = self._call_hook(name, "llmbricks_components")
            presets = self._call_hook(name, "llmbricks_presets")
        except _HookFailed as exc:
            self.manager.unregister(name=name)
            self._fail(record, str(exc), cause=exc.__cause__)
            return
        for result in components:
            self._add_components(record, result)
        for result in presets:
            self._add_presets(record, result)

    def _add_to_manager(self, plugin: object, name: str) -> str | None:
        """Register the plugin's hooks with pluggy; the reason it cannot be, or None."""
        other = self.manager.get_name(plugin) if self.manager.is_registered(plugin) else None
        if other is not None:
            return (f"{_module_name(plugin)} is already loaded as plugin '{other}'; "
                    "a package may declare one entry point per plugin module")
        try:
            problem = run_plugin_code(self._hook_definition_problem, plugin)
            if problem is None:
                run_plugin_code(self.manager.register, plugin, name=name)
        except PluginRaised as exc:
            with contextlib.suppress(Exception):
                self.manager.unregister(name=name)
            detail = str(exc).removeprefix("failed: ")
            return f"its hooks cannot be registered: {detail}"
        return problem

    def _hook_definition_problem(self, plugin: object) -> str | None:
        """A hook implementation pluggy would refuse or never call, in words (or None)."""
        marker = f"{hookspecs.PROJECT}_impl"
        for attr in dir(plugin):
            function = getattr(plugin, attr, None)
            if not callable(function) or getattr(function, marker, None) is None:
                continue
            hook = (getattr(function, marker) or {}).get("specname") or attr
            if hook not in HOOKS:
                return (f"{hook} is not an llmbricks hook{did_you_mean(hook, HOOKS)} "
                        f"(hooks: {', '.join(HOOKS)})")
            spec = list(getattr(self.manager.hook, hook).spec.argnames)
            extra = [a for a in (required_args(function) or []) if a not in spec]
            if extra:
                return (f"{hook} takes {', '.join(repr(a) for a in extra)}, which llmbricks does not "
                        f"pass; declare it as def {hook}({', '.join(spec)})")
        return None

    def _call_hook(self, plugin: str, hook: str, **kwargs: Any) -> list[Any]:
        """What each of the plugin's implementations of ``hook`` returned (None left out)."""
        results = []
        for impl in getattr(self.manager.hook, hook).get_hookimpls():
            if impl.plugin_name != plugin:
                continue
            try:
                result = run_plugin_code(impl.function, *(kwargs[a] for a in impl.argnames))
            except PluginRaised as exc:
                raise _HookFailed(f"{hook} {exc}") from exc.error
            if result is not None:
                results.append(result)
        return results

    def _add_components(self, record: PluginRecord, result: Any) -> None:
        hook = "llmbricks_components"
        if not isinstance(result, (list, tuple)):
            self._fail(record, f"{hook} returned {kind_of(result)}, not a list of Component classes")
            return
        for cls in result:
            try:
                problem = run_plugin_code(self._invalid, cls)
            except PluginRaised as exc:
                problem = f"{short_repr(cls)} cannot be inspected: {exc}"
            if problem:
                self._fail(record, f"{hook}: {problem}")
                continue
            key = (cls.kind, cls.name)
            if key in record.components:
                self._fail(record, f"{hook}: {cls.kind} '{cls.name}' is listed twice; the first is kept")
                continue
            self._components.setdefault(key, []).append(Registration(cls.kind, cls.name, cls, record.name))
            record.components.append(key)
            if len(self._components[key]) > 1 and self.strict:
                raise PluginError(self._duplicate_message(cls.kind, cls.name))

    def _add_presets(self, record: PluginRecord, result: Any) -> None:
        hook = "llmbricks_presets"
        if not isinstance(result, Mapping):
            self._fail(record, f"{hook} returned {kind_of(result)}, not a mapping of preset names "
                               "to model fields")
            return
        for preset_name, fragment in list(result.items()):
            problem = preset_problem(preset_name, fragment)
            if problem is None and preset_name in self._presets:
                other = self._presets[preset_name][0]
                problem = f"preset '{preset_name}' is already registered by plugin '{other}'"
            if problem:
                self._fail(record, f"{hook}: {problem}")
                continue
            self._presets[preset_name] = (record.name, plain_copy(fragment))
            record.presets.append(preset_name)

    @staticmethod
    def _invalid(cls: Any) -> str | None:
        if not (isinstance(cls, type) and issubclass(cls, Component)):
            return f"{short_repr(cls)} is not a Component subclass"
        kind, name = getattr(cls, "kind", None), getattr(cls, "name", None)
        if kind not in KINDS:
            return f"{cls.__qualname__}.kind is {short_repr(kind)}; expected one of {', '.join(KINDS)}"
        if not isinstance(name, str) or not name or ":" in name:
            return f"{cls.__qualname__}.name must be a non-empty string without ':'"
        if not (isinstance(cls.Params, type) and issubclass(cls.Params, BaseModel)):
            return f"{cls.__qualname__}.Params must be a pydantic model"
        if not isinstance(cls.summary(), str):
            return f"{cls.__qualname__}.summary() must return a string"
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
        """Instantiate a component: ``cls(Params(**spec.params), **context)``.

        A constructor that raises something other than an llmbricks error is reported naming the
        component and its plugin: a ``ValueError`` as a parameter problem (exit 2), anything else
        as a failure at run time (exit 1).
        """
        spec, cls = self._lookup(kind, spec, "")
        params = self._params(kind, spec, cls, "")
        return self.call_component(kind, spec.name, "constructor", cls, params, **context)

    def call_component(self, kind: str, name: str, what: str, function: Any, /, *args: Any,
                       **kwargs: Any) -> Any:
        """Call a component's own code (its constructor, ``check``, ``known_vocab_size``).

        Whatever it raises is named with the component and its plugin: an llmbricks error passes
        through, a ``ValueError`` is a parameter problem (:class:`ComponentError`, exit 2), and
        anything else a failure at run time (exit 1), never a bare ``RuntimeError: ...``.
        """
        try:
            return run_plugin_code(function, *args, **kwargs)
        except PluginRaised as exc:
            if isinstance(exc.error, LlmbricksError):
                raise exc.error from None
            plugin = self.registration(kind, name).plugin
            owner = f"{kind} '{name}' (plugin '{plugin}')"
            if isinstance(exc.error, ValueError):
                raise ComponentError(f"{owner} rejected its parameters: "
                                     f"{str(exc).removeprefix('failed: ')}") from exc.error
            raise LlmbricksError(f"{owner} could not be built: its {what} {exc}") from exc.error

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

    def add_commands(self, cli: Any, reserved: Iterable[str] = ()) -> dict[str, str]:
        """Add every plugin's CLI verbs to ``cli``; a verb named in ``reserved`` stays built in.

        Returns the verbs added, each with its plugin's name.
        """
        added: dict[str, str] = {}
        for plugin, verbs in self._plugin_commands(set(reserved)).items():
            for verb, command in verbs.items():
                if verb not in cli.commands:
                    cli.add_command(command, verb)
                    added[verb] = plugin
        return added

    def commands(self, reserved: Iterable[str] = ()) -> dict[str, list[str]]:
        """The CLI verbs each plugin adds (a plugin's verb named in ``reserved`` is refused)."""
        return {plugin: sorted(verbs) for plugin, verbs in self._plugin_commands(set(reserved)).items()}

    def _plugin_commands(self, reserved: set[str]) -> dict[str, dict[str, Any]]:
        """Each plugin's usable verbs; a verb that shadows a built-in or another plugin's is refused.

        The first plugin (by name) to add a verb keeps it; the other is recorded as failing.
        """
        taken: dict[str, str] = {}
        usable: dict[str, dict[str, Any]] = {}
        for plugin, verbs in sorted(self._collect_commands().items()):
            usable[plugin] = {}
            for verb, command in verbs:
                if verb in reserved:
                    problem = f"adds the verb '{verb}', which is built in; rename it (the built-in one runs)"
                elif verb in taken:
                    problem = f"adds the verb '{verb}', which plugin '{taken[verb]}' adds too; rename it"
                else:
                    taken[verb] = plugin
                    usable[plugin][verb] = command
                    continue
                self._fail(self.plugins[plugin], f"llmbricks_commands {problem}")
        return usable

    def _collect_commands(self) -> dict[str, list[tuple[str, Any]]]:
        """Let each plugin add its verbs to a scratch group, once; record what goes wrong."""
        if self._commands is not None:
            return self._commands
        import click

        hook = "llmbricks_commands"
        found: dict[str, list[tuple[str, Any]]] = {}
        for plugin in sorted({impl.plugin_name for impl in self.manager.hook.llmbricks_commands.get_hookimpls()}):
            record = self.plugins.setdefault(plugin, PluginRecord(name=plugin, module=plugin))
            scratch = click.Group(name="llmbricks")
            try:
                returned = self._call_hook(plugin, hook, cli=scratch)
            except _HookFailed as exc:
                self._fail(record, str(exc), cause=exc.__cause__)
                continue
            if returned:
                self._fail(record, f"{hook} returned {kind_of(returned[0])}; it should add its verbs "
                                   "with cli.add_command(...) and return None")
            found[plugin] = []
            for verb, command in list(scratch.commands.items()):
                if not isinstance(command, click.Command) or not isinstance(verb, str) or not verb.strip():
                    self._fail(record, f"{hook} added {kind_of(command)} as the verb {short_repr(verb)}, "
                                       "not a Click command")
                    continue
                found[plugin].append((verb, command))
        self._commands = found
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
