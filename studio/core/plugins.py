"""The plugin host: finds plugins through the ``studio.plugins`` entry points, isolates failures.

Environment variables (for plugin authors and for debugging):

``STUDIO_STRICT_PLUGINS=1``
    a plugin failure raises instead of being reported and skipped.
``STUDIO_LOAD_PLUGINS=name,name``
    load only the named plugins (entry-point names).
``STUDIO_DISABLE_PLUGIN_AUTOLOAD=1``
    load only the built-in plugins (the ones shipped with aigc-studio).
"""

from __future__ import annotations

import logging
import os
import traceback
from dataclasses import dataclass, field
from importlib import metadata
from types import ModuleType
from typing import Any

import pluggy

from studio.core import hookspecs
from studio.core.errors import InvalidRequest, PluginError
from studio.core.generator import Generator
from studio.core.training import Trainer

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "studio.plugins"
BUILTIN_DISTRIBUTION = "aigc-studio"
_REQUIRED_GENERATOR_ATTRS = ("id", "name", "modality", "task")
_MODALITIES = ("text", "image", "audio")


def strict_mode() -> bool:
    return os.environ.get("STUDIO_STRICT_PLUGINS", "").strip() not in ("", "0", "false", "no")


@dataclass
class PluginInfo:
    """One plugin as the listing shows it: name, version, what it registered, what went wrong."""

    name: str
    version: str
    module: str
    builtin: bool
    generators: list[str] = field(default_factory=list)
    trainers: list[str] = field(default_factory=list)
    error: str | None = None
    traceback: str | None = None
    enabled: bool = True

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "module": self.module,
            "builtin": self.builtin,
            "enabled": self.enabled,
            "generators": self.generators,
            "trainers": self.trainers,
            "error": self.error,
            "traceback": self.traceback,
        }


class PluginHost:
    """Loads plugins and keeps the registry of their generators and trainers."""

    def __init__(self, disabled: list[str] | None = None) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self.generators: dict[str, type[Generator]] = {}
        self.trainers: dict[str, type[Trainer]] = {}
        self.owner: dict[str, PluginInfo] = {}  # generator/trainer id -> plugin
        self.disabled = set(disabled or ())

    # -- loading -----------------------------------------------------------------------------
    def load_entry_points(self) -> None:
        """Import and register every plugin of the ``studio.plugins`` group (with the env rules)."""
        only = {
            n.strip() for n in os.environ.get("STUDIO_LOAD_PLUGINS", "").split(",") if n.strip()
        }
        builtins_only = os.environ.get("STUDIO_DISABLE_PLUGIN_AUTOLOAD", "") not in ("", "0")
        seen: set[str] = set()
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in seen:
                continue
            seen.add(ep.name)
            dist = ep.dist
            builtin = dist is not None and dist.metadata["Name"] == BUILTIN_DISTRIBUTION
            if only and ep.name not in only:
                continue
            if builtins_only and not builtin:
                continue
            version = dist.version if dist is not None else "unknown"
            info = PluginInfo(ep.name, version, ep.value, builtin)
            if ep.name in self.disabled:
                info.enabled = False
                self.plugins[ep.name] = info
                continue
            ok, module = self._guarded(info, ep.load, stage="import")
            if ok:
                self.register(module, info)
            else:  # listed with its error, so the user sees what broke
                self.plugins[ep.name] = info

    def register(self, plugin: ModuleType | object, info: PluginInfo | None = None) -> PluginInfo:
        """Register a plugin object/module directly (tests and embedding applications)."""
        if info is None:
            name = getattr(plugin, "__name__", type(plugin).__name__)
            info = PluginInfo(name, getattr(plugin, "__version__", "unknown"), name, False)
        self.plugins[info.name] = info
        ok, _ = self._guarded(info, lambda: self.pm.register(plugin, name=info.name), "register")
        if not ok:
            return info
        self._collect(info, plugin, "register_generators", self._add_generator)
        self._collect(info, plugin, "register_trainers", self._add_trainer)
        return info

    def unregister(self, name: str) -> None:
        """Remove a plugin and everything it registered."""
        info = self.plugins.pop(name, None)
        if self.pm.has_plugin(name):
            self.pm.unregister(name=name)
        if info is None:
            return
        for gid in info.generators:
            self.generators.pop(gid, None)
            self.owner.pop(gid, None)
        for tid in info.trainers:
            self.trainers.pop(tid, None)
            self.owner.pop(tid, None)

    def _guarded(self, info: PluginInfo, action: Any, stage: str) -> tuple[bool, Any]:
        """Run one loading step; on failure record it on ``info`` (or raise in strict mode)."""
        try:
            return True, action()
        except Exception as exc:
            if strict_mode():
                raise PluginError(f"plugin {info.name!r} failed at {stage}: {exc}") from exc
            info.error = f"failed at {stage}: {type(exc).__name__}: {exc}"
            info.traceback = traceback.format_exc()
            log.warning("plugin %s %s", info.name, info.error)
            return False, None

    def _collect(self, info: PluginInfo, plugin: object, hook: str, add: Any) -> None:
        impl = getattr(plugin, hook, None)
        if impl is None:
            return

        def register(cls: type) -> None:
            add(info, cls)

        self._guarded(info, lambda: impl(register=register), stage=hook)

    def _add_generator(self, info: PluginInfo, cls: type) -> None:
        if not (isinstance(cls, type) and issubclass(cls, Generator)):
            raise PluginError(f"register_generators got {cls!r}, not a studio.Generator subclass")
        missing = [a for a in _REQUIRED_GENERATOR_ATTRS if not getattr(cls, a, None)]
        if missing:
            raise PluginError(f"generator {cls.__name__} lacks class attribute(s) {missing}")
        if cls.modality not in _MODALITIES:
            raise PluginError(f"generator {cls.id!r}: modality must be one of {_MODALITIES}")
        if cls.id in self.generators:
            raise PluginError(
                f"generator id {cls.id!r} is already registered by {self.owner[cls.id].name!r}"
            )
        _check_imports(cls)
        self.generators[cls.id] = cls
        self.owner[cls.id] = info
        info.generators.append(cls.id)

    def _add_trainer(self, info: PluginInfo, cls: type) -> None:
        if not (isinstance(cls, type) and issubclass(cls, Trainer)):
            raise PluginError(f"register_trainers got {cls!r}, not a studio.Trainer subclass")
        if not getattr(cls, "id", None) or cls.id in self.trainers:
            raise PluginError(f"trainer {cls.__name__}: missing or duplicate id")
        _check_imports(cls)
        self.trainers[cls.id] = cls
        self.owner[cls.id] = info
        info.trainers.append(cls.id)

    # -- lookup ------------------------------------------------------------------------------
    def find_generator(self, id_or_task: str) -> type[Generator]:
        """A generator by id, or the first (built-ins first) that serves a task name."""
        if id_or_task in self.generators:
            return self.generators[id_or_task]
        for_task = [g for g in self.generators.values() if g.task == id_or_task]
        if for_task:
            for_task.sort(key=lambda g: (not self.owner[g.id].builtin, g.id))
            return for_task[0]
        known = sorted(set(self.generators) | {g.task for g in self.generators.values()})
        raise InvalidRequest(
            f"no generator or task named {id_or_task!r}; available: {', '.join(known) or '(none)'}"
        )

    def find_trainer(self, trainer_id: str) -> type[Trainer]:
        if trainer_id in self.trainers:
            return self.trainers[trainer_id]
        available = ", ".join(sorted(self.trainers)) or "(none)"
        raise InvalidRequest(f"no trainer named {trainer_id!r}; available: {available}")

    def plugin_of(self, component_id: str) -> PluginInfo:
        return self.owner[component_id]


def _check_imports(cls: type[Generator] | type[Trainer]) -> None:
    """``imports`` must be a tuple of module names (a bare string would import each letter)."""
    names = cls.imports
    if not isinstance(names, tuple) or not all(
        isinstance(name, str) and name.strip() for name in names
    ):
        raise PluginError(
            f"{cls.__name__}.imports must be a tuple of module names, like "
            f"('diffusers.pipelines',); got {names!r}"
        )
