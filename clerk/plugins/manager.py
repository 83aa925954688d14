"""Build the pluggy plugin manager and the registry of filters, actions, classifiers.

Load order: the built-ins (`DEFAULT_PLUGINS`), then entry points of group `clerk`, then
loose `*.py` files in the configured plugins dir. A registration made later wins, so a
third-party plugin can replace a built-in filter of the same name. A plugin that fails
to import is reported by name and skipped (or is fatal with `plugins.strict: true`).

Environment:
- `CLERK_LOAD_PLUGINS=a,b`: load only these third-party plugins (empty: none);
- `CLERK_DISABLE_PLUGIN_AUTOLOAD=1`: no entry points, no plugins dir (tests, lockdown);
- `CLERK_TRACE_PLUGINS=1`: log every hook call at debug level.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from clerk.errors import ClerkError
from clerk.plugins import hookspecs

log = logging.getLogger("clerk.plugins")

DEFAULT_PLUGINS: tuple[str, ...] = (
    "clerk.plugins.builtin.filters",
    "clerk.plugins.builtin.actions",
    "clerk.plugins.builtin.classifiers",
    "clerk.plugins.builtin.executors",
)


class PluginError(ClerkError):
    pass


@dataclass
class PluginFailure:
    name: str
    source: str
    error: str

    def __str__(self) -> str:
        return f"plugin {self.name!r} ({self.source}) failed to load: {self.error}"


@dataclass
class PluginInfo:
    name: str
    source: str  # builtin | entrypoint | file
    version: str | None
    hooks: list[str]


@dataclass
class Registry:
    """Everything plugins registered, by name, with which plugin provided it."""

    filters: dict[str, type] = field(default_factory=dict)
    actions: dict[str, type] = field(default_factory=dict)
    classifiers: dict[str, Any] = field(default_factory=dict)
    executors: dict[str, type] = field(default_factory=dict)
    origin: dict[str, str] = field(default_factory=dict)  # "filter:name" -> plugin
    errors: list[str] = field(default_factory=list)


class ClerkPluginManager(pluggy.PluginManager):
    def __init__(self) -> None:
        super().__init__("clerk")
        self.add_hookspecs(hookspecs)
        self.failures: list[PluginFailure] = []
        self.sources: dict[str, str] = {}
        self.versions: dict[str, str | None] = {}
        self._registry: Registry | None = None

    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = build_registry(self)
        return self._registry

    def plugin_infos(self) -> list[PluginInfo]:
        infos = []
        for name, plugin in self.list_name_plugin():
            if plugin is None:
                continue
            hooks = sorted(h.name for h in self.get_hookcallers(plugin) or [])
            infos.append(
                PluginInfo(name, self.sources.get(name, "?"), self.versions.get(name), hooks)
            )
        return infos


def make_plugin_manager(
    *,
    allow: list[str] | None = None,
    deny: list[str] | None = None,
    autoload: bool = True,
    plugins_dir: Path | None = None,
    strict: bool = False,
    settings: Mapping[str, Mapping[str, Any]] | None = None,
) -> ClerkPluginManager:
    """Load the built-ins, then entry-point and loose-file plugins, and configure them.

    `settings` is `plugins.settings` from config.yaml: each plugin's `configure` hook
    gets its own section.
    """
    pm = ClerkPluginManager()
    from clerk import __version__

    for module_name in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(module_name), name=module_name)
        pm.sources[module_name] = "builtin"
        pm.versions[module_name] = __version__
    if os.environ.get("CLERK_DISABLE_PLUGIN_AUTOLOAD") or not autoload:
        _finish(pm, strict, settings or {})
        return pm
    env_allow = os.environ.get("CLERK_LOAD_PLUGINS")
    if env_allow is not None:
        allow = [n.strip() for n in env_allow.split(",") if n.strip()]
    denied = set(deny or ())

    def wanted(name: str) -> bool:
        return name not in denied and (allow is None or name in allow)

    for ep in entry_points(group="clerk"):
        if not wanted(ep.name) or pm.has_plugin(ep.name):
            continue
        version = ep.dist.version if ep.dist else None
        _register(pm, ep.name, "entrypoint", version, ep.load)
    if plugins_dir and plugins_dir.is_dir():
        for path in sorted(plugins_dir.glob("*.py")):
            if path.name.startswith("_") or not wanted(path.stem):
                continue
            _register(pm, path.stem, f"file:{path}", None, partial(_load_file, path))
    _finish(pm, strict, settings or {})
    return pm


def _register(
    pm: ClerkPluginManager,
    name: str,
    source: str,
    version: str | None,
    load: Callable[[], Any],
) -> None:
    try:
        plugin = load()
        pm.register(plugin, name=name)
        pm.sources[name] = source
        pm.versions[name] = version
    except Exception as exc:  # a broken plugin must never take clerk down with it
        pm.failures.append(PluginFailure(name, source, f"{type(exc).__name__}: {exc}"))
        log.error("plugin %s failed to load: %s", name, exc)


def _load_file(path: Path) -> ModuleType:
    module_name = f"clerk_plugin_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def _finish(
    pm: ClerkPluginManager, strict: bool, settings: Mapping[str, Mapping[str, Any]]
) -> None:
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        plugin_name = pm.get_name(exc.plugin) if exc.plugin else "?"
        if plugin_name:
            pm.unregister(name=plugin_name)
        pm.failures.append(PluginFailure(plugin_name or "?", "validation", str(exc)))
    _configure(pm, settings)
    if os.environ.get("CLERK_TRACE_PLUGINS"):
        pm.trace.root.setwriter(lambda text: log.debug("%s", text.rstrip()))
        pm.enable_tracing()
    if strict and pm.failures:
        raise PluginError("\n".join(str(f) for f in pm.failures))


def _configure(pm: ClerkPluginManager, settings: Mapping[str, Mapping[str, Any]]) -> None:
    """Give each plugin its own settings; a plugin that refuses them is dropped."""
    for impl in pm.hook.configure.get_hookimpls():
        try:
            impl.function(settings=dict(settings.get(impl.plugin_name) or {}))
        except Exception as exc:
            source = pm.sources.get(impl.plugin_name, "?")
            pm.unregister(name=impl.plugin_name)
            pm.failures.append(
                PluginFailure(impl.plugin_name, source, f"configure: {type(exc).__name__}: {exc}")
            )
            log.error("plugin %s refused its settings: %s", impl.plugin_name, exc)


def build_registry(pm: pluggy.PluginManager) -> Registry:
    """Call every `register_*` hook; implementations called later override earlier."""
    registry = Registry()
    collections: dict[str, tuple[str, dict[str, Any]]] = {
        "register_filters": ("filter", registry.filters),
        "register_actions": ("action", registry.actions),
        "register_executors": ("executor", registry.executors),
    }
    for hook_name, (kind, table) in collections.items():
        caller = getattr(pm.hook, hook_name)
        for impl in caller.get_hookimpls():  # in registration order, built-ins first

            def register(name: str, cls: Any, _kind: str = kind, _table: Any = table,
                         _plugin: str = impl.plugin_name) -> None:  # fmt: skip
                if not isinstance(name, str) or not isinstance(cls, type):
                    registry.errors.append(
                        f"plugin {_plugin}: register({name!r}, {cls!r}) wants a name and a class"
                    )
                    return
                _table[name] = cls
                registry.origin[f"{_kind}:{name}"] = _plugin

            _call_impl(registry, impl, register=register)
    for impl in pm.hook.register_classifiers.get_hookimpls():

        def register_classifier(classifier: Any, _plugin: str = impl.plugin_name) -> None:
            namespace = getattr(classifier, "namespace", None)
            if not isinstance(namespace, str) or not namespace:
                registry.errors.append(f"plugin {_plugin}: classifier without a namespace")
                return
            registry.classifiers[namespace] = classifier
            registry.origin[f"classifier:{namespace}"] = _plugin

        _call_impl(registry, impl, register=register_classifier)
    return registry


def _call_impl(registry: Registry, impl: Any, **kwargs: Any) -> None:
    try:
        impl.function(**kwargs)
    except Exception as exc:
        registry.errors.append(f"plugin {impl.plugin_name}: {type(exc).__name__}: {exc}")
