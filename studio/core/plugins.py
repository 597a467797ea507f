"""The plugin host: finds plugins through the ``studio.plugins`` entry points, isolates failures.

Every hook is called through pluggy, one plugin at a time (``pm.subset_hook_caller``), so that
what a plugin registers, and what goes wrong, is always that plugin's. Loading a plugin is a
fixed sequence of steps; the first that fails ends it, and the plugin is listed with the error
(the others go on):

1. import its entry-point module;
2. check the plugin API range it declares (``studio_api = ">=1.0,<2"``) against
   :data:`studio.API_VERSION`: refused before any of its hooks runs;
3. register it with pluggy and check its hooks: a hook implementation that matches no hookspec
   (a misspelt ``register_generator``, found by ``pm.check_pending()``) or a function named like
   a hook without the ``@studio.hookimpl`` marker refuses the plugin;
4. call its hooks; each class it registers is checked (metadata, ``uses_model``, unique id).

Order (see docs/hooks.md): built-in plugins first, then third-party distributions in the order
they were installed, so the first to register an id keeps it and a later install can never take
it over. The same order chooses among several generators serving one task, unless the user's
``preferred_generators`` setting names one (:meth:`PluginHost.choose_generator`).

Environment variables (for plugin authors and for debugging):

``STUDIO_STRICT_PLUGINS=1``
    a plugin failure raises :class:`~studio.core.errors.PluginError` (chained to the original,
    with its ``traceback``) instead of being reported and skipped.
``STUDIO_LOAD_PLUGINS=name,name``
    load only the named plugins (entry-point names).
``STUDIO_DISABLE_PLUGIN_AUTOLOAD=1``
    load only the built-in plugins (the ones shipped with aigc-studio).
"""

from __future__ import annotations

import difflib
import inspect
import logging
import os
import sys
import traceback
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version

from studio.core import hookspecs
from studio.core.errors import InvalidRequest, PluginError
from studio.core.generator import Generator
from studio.core.options import BaseOptions
from studio.core.training import Trainer

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "studio.plugins"
BUILTIN_DISTRIBUTION = "aigc-studio"
#: The module attribute (or plugin object attribute) that declares the supported API range.
API_ATTRIBUTE = "studio_api"
_REQUIRED_GENERATOR_ATTRS = ("id", "name", "modality", "task")
_REQUIRED_TRAINER_ATTRS = ("id", "name", "modality")
_MODALITIES = ("text", "image", "audio")


def strict_mode() -> bool:
    """Whether ``STUDIO_STRICT_PLUGINS`` asks plugin failures to raise."""
    return os.environ.get("STUDIO_STRICT_PLUGINS", "").strip() not in ("", "0", "false", "no")


def api_range_hint() -> str:
    """The ``studio_api`` line a plugin written for this studio's API declares."""
    major = Version(hookspecs.API_VERSION).major
    return f'{API_ATTRIBUTE} = ">={major}.0,<{major + 1}"'


#: Every hookspec, in the order the host calls a plugin's implementations.
HOOK_ORDER = ("register_generators", "register_trainers")


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


@dataclass(frozen=True)
class GeneratorChoice:
    """Which generator :meth:`PluginHost.choose_generator` picked, and why (for the user).

    :param generator: the chosen class.
    :param reason: one sentence for the user, e.g. ``"built-in; also serving text-to-image:
        my.sketch (choose with 'aigc-studio plugins prefer')"``.
    :param candidates: ids of every generator serving the task, in the host's order (the
        chosen one included); just the id when it was asked for by id.
    :param warning: set when the user's preference could not be honoured (its generator is not
        installed, or serves another task): the choice fell back to the default order.
    """

    generator: type[Generator[Any]]
    reason: str
    candidates: tuple[str, ...] = ()
    warning: str | None = None


@dataclass(frozen=True)
class _Candidate:
    """An entry point found for loading, with what orders it."""

    entry_point: metadata.EntryPoint
    builtin: bool
    installed_ns: int
    distribution: str

    @property
    def sort_key(self) -> tuple[bool, int, str, str]:
        # built-ins first; then install time; the names only break exact ties (last resort).
        return (not self.builtin, self.installed_ns, self.distribution, self.entry_point.name)


class PluginHost:
    """Loads plugins and keeps the registry of their generators and trainers.

    ``plugins`` lists every plugin in load order (disabled and failed ones too, with their
    error); ``generators`` / ``trainers`` map ids to classes; ``owner`` maps an id to the plugin
    that registered it.
    """

    def __init__(self, disabled: list[str] | None = None) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self.generators: dict[str, type[Generator[Any]]] = {}
        self.trainers: dict[str, type[Trainer[Any]]] = {}
        self.owner: dict[str, PluginInfo] = {}  # generator/trainer id -> plugin
        self.disabled = set(disabled or ())
        self._rank: dict[str, int] = {}  # plugin name -> position in load order
        self._next_rank = 0

    # -- loading -----------------------------------------------------------------------------
    def load_entry_points(self) -> None:
        """Import and register every plugin of the ``studio.plugins`` group (with the env rules).

        Built-ins load first, then third-party distributions in install order (the time their
        ``*.dist-info`` folder was written), so that the first owner of an id keeps it.
        """
        only = {
            n.strip() for n in os.environ.get("STUDIO_LOAD_PLUGINS", "").split(",") if n.strip()
        }
        builtins_only = os.environ.get("STUDIO_DISABLE_PLUGIN_AUTOLOAD", "") not in ("", "0")
        candidates = []
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist
            builtin = dist is not None and dist.metadata["Name"] == BUILTIN_DISTRIBUTION
            if only and ep.name not in only:
                continue
            if builtins_only and not builtin:
                continue
            candidates.append(
                _Candidate(
                    ep,
                    builtin,
                    _installed_ns(dist),
                    (dist.metadata["Name"] or "") if dist is not None else "",
                )
            )
        for candidate in sorted(candidates, key=lambda c: c.sort_key):
            ep = candidate.entry_point
            dist = ep.dist
            if ep.name in self.plugins:  # two distributions claim one name: the first keeps it
                log.warning(
                    "plugin name %r of %s is taken by an earlier plugin; not loaded",
                    ep.name,
                    candidate.distribution or ep.value,
                )
                continue
            version = dist.version if dist is not None else "unknown"
            info = PluginInfo(ep.name, version, ep.value, candidate.builtin)
            if ep.name in self.disabled:
                info.enabled = False
                self._add_info(info)
                continue
            ok, module = self._guarded(info, ep.load, stage="import")
            if ok:
                self.register(module, info, module_name=ep.module)
            else:  # listed with its error, so the user sees what broke
                self._add_info(info)

    def register(
        self,
        plugin: types.ModuleType | object,
        info: PluginInfo | None = None,
        *,
        module_name: str | None = None,
    ) -> PluginInfo:
        """Register a plugin module or object directly (tests and embedding applications).

        The same checks as for an installed plugin apply, in the same order: API range, hooks,
        then each registered class. The plugin goes after every plugin registered before it.
        Returns its info; ``info.error`` says why it was refused or what failed.

        :param module_name: the module to read ``studio_api`` from when ``plugin`` itself does
            not declare it (the entry point's module, for ``module:object`` entry points).
        """
        if info is None:
            name = getattr(plugin, "__name__", type(plugin).__name__)
            info = PluginInfo(name, str(getattr(plugin, "__version__", "unknown")), name, False)
        if info.name in self.plugins:  # keep the registered one's info and components intact
            self._fail(
                info,
                "register",
                PluginError(f"a plugin named {info.name!r} is already registered"),
            )
            return info
        self._add_info(info)
        if not self._guarded(info, lambda: _check_api(plugin, module_name), "API check")[0]:
            return info
        if not self._guarded(info, lambda: self._register_hooks(plugin, info), "register")[0]:
            return info
        adders = {
            "register_generators": self._add_generator,
            "register_trainers": self._add_trainer,
        }
        for hook in HOOK_ORDER:
            self._call_hook(plugin, info, hook, adders[hook])
        return info

    def unregister(self, name: str) -> None:
        """Remove a plugin and everything it registered."""
        info = self.plugins.pop(name, None)
        self._rank.pop(name, None)
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

    def _add_info(self, info: PluginInfo) -> None:
        self.plugins[info.name] = info
        self._rank[info.name] = self._next_rank
        self._next_rank += 1

    def _guarded(self, info: PluginInfo, action: Callable[[], Any], stage: str) -> tuple[bool, Any]:
        """Run one loading step; on failure record it on ``info`` (or raise in strict mode)."""
        try:
            return True, action()
        except Exception as exc:
            self._fail(info, stage, exc)
            return False, None

    def _fail(self, info: PluginInfo, stage: str, exc: Exception) -> None:
        """Record ``exc`` as ``info``'s error; in strict mode raise a chained PluginError."""
        text = traceback.format_exc() if exc.__traceback__ is not None else None
        if isinstance(exc, PluginError):  # our own refusal: the message says it all
            message = f"refused at {stage}: {exc}"
        else:
            message = f"failed at {stage}: {type(exc).__name__}: {exc}"
        if strict_mode():
            raise PluginError(
                f"plugin {info.name!r} {message}", plugin=info.name, traceback=text
            ) from exc
        info.error = message if info.error is None else f"{info.error}; {message}"
        info.traceback = text if info.traceback is None else f"{info.traceback}\n{text or ''}"
        log.warning("plugin %s %s", info.name, message)

    def _register_hooks(self, plugin: object, info: PluginInfo) -> None:
        """Register with pluggy, then refuse unknown (misspelt) and unmarked hook functions."""
        try:
            hash(plugin)  # pluggy keeps plugins in sets; one that cannot be would break the rest
        except TypeError:
            raise PluginError(
                f"a plugin must be hashable (a module or a class instance), not "
                f"{type(plugin).__name__}"
            ) from None
        unmarked = _unmarked_hooks(self.pm, plugin)
        if unmarked:
            raise PluginError(_unmarked_message(unmarked))
        try:
            self.pm.register(plugin, name=info.name)
        except Exception:
            if self.pm.has_plugin(info.name):  # pluggy < 1.6 could leave it half registered
                self.pm.unregister(name=info.name)
            raise
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            unknown = self._unknown_hooks(info.name) or [str(exc)]
            self.pm.unregister(name=info.name)
            raise PluginError(_unknown_message(unknown)) from exc

    def _unknown_hooks(self, plugin_name: str) -> list[str]:
        """Hook implementations of ``plugin_name`` whose name matches no hookspec."""
        unknown = []
        for name, caller in vars(self.pm.hook).items():
            if name.startswith("_") or caller.has_spec():
                continue
            for impl in caller.get_hookimpls():
                if impl.plugin_name == plugin_name and not impl.optionalhook:
                    unknown.append(name)
        return sorted(set(unknown))

    def _call_hook(
        self,
        plugin: object,
        info: PluginInfo,
        hook: str,
        add: Callable[[PluginInfo, type], None],
    ) -> None:
        """Call ``hook`` of ``plugin`` only, through pluggy, with a register callback for it."""
        others = [p for name, p in self.pm.list_name_plugin() if name != info.name]
        caller = self.pm.subset_hook_caller(hook, remove_plugins=others)
        if not any(impl.plugin_name == info.name for impl in caller.get_hookimpls()):
            return

        def register(cls: type) -> None:
            add(info, cls)

        self._guarded(info, lambda: caller(register=register), stage=hook)

    def _add_generator(self, info: PluginInfo, cls: type) -> None:
        if not (isinstance(cls, type) and issubclass(cls, Generator)):
            raise PluginError(f"register_generators got {cls!r}, not a studio.Generator subclass")
        missing = [a for a in _REQUIRED_GENERATOR_ATTRS if not getattr(cls, a, None)]
        if missing:
            raise PluginError(f"generator {cls.__name__} lacks class attribute(s) {missing}")
        _check_component(cls, "generator")
        self._check_unique(cls, "generator")
        self._check_task_names(cls)
        _check_imports(cls)
        self.generators[cls.id] = cls
        self.owner[cls.id] = info
        info.generators.append(cls.id)

    def _add_trainer(self, info: PluginInfo, cls: type) -> None:
        if not (isinstance(cls, type) and issubclass(cls, Trainer)):
            raise PluginError(f"register_trainers got {cls!r}, not a studio.Trainer subclass")
        missing = [a for a in _REQUIRED_TRAINER_ATTRS if not getattr(cls, a, None)]
        if missing:
            raise PluginError(f"trainer {cls.__name__} lacks class attribute(s) {missing}")
        _check_component(cls, "trainer")
        self._check_unique(cls, "trainer")
        _check_imports(cls)
        self.trainers[cls.id] = cls
        self.owner[cls.id] = info
        info.trainers.append(cls.id)

    def _check_unique(self, cls: type[Generator[Any]] | type[Trainer[Any]], kind: str) -> None:
        """An id belongs to the plugin that registered it first (generators and trainers alike)."""
        owner = self.owner.get(cls.id)
        if owner is None:
            return
        what = "generator" if cls.id in self.generators else "trainer"
        raise PluginError(
            f"{kind} id {cls.id!r} is already registered by plugin {owner.name!r} "
            f"({what} {self._component(cls.id).__name__}); it stays theirs. Choose another id "
            f"(prefix it with your plugin's name, e.g. 'my-plugin.{cls.id}')"
        )

    def _check_task_names(self, cls: type[Generator[Any]]) -> None:
        """Ids and task names share one namespace (``generate NAME`` takes either), except that
        an id may equal its own task: neither may take the other's name, so that a plugin can
        never capture a task with an id."""
        if not isinstance(cls.task, str) or not cls.task.strip():
            raise PluginError(f"generator {cls.id!r}: task must be a non-empty string")
        if cls.id != cls.task:
            serving = [g.id for g in self.generators.values() if g.task == cls.id]
            if serving:
                raise PluginError(
                    f"generator id {cls.id!r} is the name of a task (served by "
                    f"{', '.join(serving)}): an id may only equal its own task; choose another id"
                )
        other = self.generators.get(cls.task)
        if other is not None and other.task != cls.task:
            raise PluginError(
                f"generator {cls.id!r}: task {cls.task!r} is the id of generator {other.id!r} "
                f"(plugin {self.owner[other.id].name!r}) of task {other.task!r}; name the task "
                "differently"
            )

    def _component(self, component_id: str) -> type:
        if component_id in self.generators:
            return self.generators[component_id]
        return self.trainers[component_id]

    # -- lookup ------------------------------------------------------------------------------
    def rank(self, plugin_name: str) -> tuple[bool, int]:
        """Where a plugin stands in the host's order: built-ins first, then load order."""
        info = self.plugins[plugin_name]
        return (not info.builtin, self._rank.get(plugin_name, sys.maxsize))

    def generators_for(self, task: str) -> list[type[Generator[Any]]]:
        """Every generator serving ``task``, in the host's order (built-ins, then installs)."""
        serving = [g for g in self.generators.values() if g.task == task]
        return sorted(serving, key=lambda g: self.rank(self.owner[g.id].name))

    def choose_generator(
        self, id_or_task: str, preferred: Mapping[str, str] | None = None
    ) -> GeneratorChoice:
        """The generator for an id or a task name, and why it was chosen.

        This is what a user's choice goes through (the command line's target, a task picked in
        the window); the request then carries the chosen id, which :meth:`find_generator`
        resolves exactly. A task name (ids and task names never clash, except an id equal to its
        own task, as the built-ins' are) is resolved as a task: the user's preference
        (``preferred``, the ``preferred_generators`` setting: task -> generator id) when it names
        an installed generator of that task; otherwise the first in the host's order: built-in
        plugins first, then plugins in install order. A preference that cannot be honoured does
        not fail the request: the choice falls back to that order and carries a ``warning``
        (also logged). Any other name is a generator id.

        :raises InvalidRequest: no generator has that id and none serves that task.
        """
        serving = self.generators_for(id_or_task)
        if not serving:
            if id_or_task in self.generators:
                cls = self.generators[id_or_task]
                return GeneratorChoice(cls, f"asked for by id ({cls.name})", (cls.id,))
            raise InvalidRequest(
                f"no generator or task named {id_or_task!r}; available: "
                f"{', '.join(self._names()) or '(none)'}"
            )
        task = id_or_task
        ids = tuple(g.id for g in serving)
        warning = None
        wanted = (preferred or {}).get(task)
        if wanted:
            chosen = self.generators.get(wanted)
            if chosen is not None and chosen.task == task:
                return GeneratorChoice(
                    chosen,
                    f"your preferred generator for {task!r} (setting preferred_generators)",
                    ids,
                )
            if chosen is None:
                warning = (
                    f"preferred generator {wanted!r} for {task!r} (setting preferred_generators) "
                    f"is not installed or failed to load; serving {task!r}: {', '.join(ids)}"
                )
            else:
                warning = (
                    f"preferred generator {wanted!r} (setting preferred_generators) serves "
                    f"{chosen.task!r}, not {task!r}; serving {task!r}: {', '.join(ids)}"
                )
            log.warning("%s", warning)
        first = serving[0]
        others = ids[1:]
        if not others:
            reason = f"the only generator for {task!r}"
        else:
            rule = "built-in" if self.owner[first.id].builtin else "installed first"
            reason = (
                f"{rule}; also serving {task!r}: {', '.join(others)} "
                "(choose with 'aigc-studio plugins prefer')"
            )
        if warning:
            reason = f"{reason}; your preference was not used: {warning}"
        return GeneratorChoice(first, reason, ids, warning)

    def find_generator(self, id_or_task: str) -> type[Generator[Any]]:
        """A generator by its id, else the first (built-ins, then install order) serving a task.

        Exact for ids (what a stored request or a recipe names); user preferences play no part
        here: resolve a user's task with :meth:`choose_generator`, then pass the id on.
        """
        if id_or_task in self.generators:
            return self.generators[id_or_task]
        serving = self.generators_for(id_or_task)
        if serving:
            return serving[0]
        raise InvalidRequest(
            f"no generator or task named {id_or_task!r}; available: "
            f"{', '.join(self._names()) or '(none)'}"
        )

    def _names(self) -> list[str]:
        return sorted(set(self.generators) | {g.task for g in self.generators.values()})

    def find_trainer(self, trainer_id: str) -> type[Trainer[Any]]:
        """A trainer by id (:class:`InvalidRequest` naming the available ones)."""
        if trainer_id in self.trainers:
            return self.trainers[trainer_id]
        available = ", ".join(sorted(self.trainers)) or "(none)"
        raise InvalidRequest(f"no trainer named {trainer_id!r}; available: {available}")

    def plugin_of(self, component_id: str) -> PluginInfo:
        """The plugin that registered a generator or trainer id."""
        return self.owner[component_id]


# -- loading steps ------------------------------------------------------------------------------


def _installed_ns(dist: metadata.Distribution | None) -> int:
    """When ``dist`` was installed: its ``*.dist-info`` folder's mtime (written once, by pip).

    Unknown (no distribution, no folder) sorts last.
    """
    # PathDistribution (every pip, uv or conda install) keeps the folder in ``_path``; other
    # finders have none, and their distributions go last, ordered by name.
    folder = getattr(dist, "_path", None)
    try:
        return os.stat(folder).st_mtime_ns if folder is not None else sys.maxsize
    except (OSError, TypeError):
        return sys.maxsize


def _declared_api(plugin: object, module_name: str | None) -> object:
    """The ``studio_api`` a plugin declares: on the plugin itself, else on its module."""
    declared = inspect.getattr_static(plugin, API_ATTRIBUTE, None)
    if declared is None:
        name = module_name or getattr(type(plugin), "__module__", None)
        module = sys.modules.get(name) if isinstance(name, str) else None
        if module is not None and module is not plugin:
            declared = getattr(module, API_ATTRIBUTE, None)
    return declared


def _check_api(plugin: object, module_name: str | None = None) -> None:
    """Refuse a plugin whose declared API range excludes :data:`studio.API_VERSION`."""
    declared = _declared_api(plugin, module_name)
    api = hookspecs.API_VERSION
    if declared is None:
        raise PluginError(
            f"the plugin declares no supported plugin API; this studio's plugin API is {api}: "
            f"write {api_range_hint()} in the plugin's module (a PEP 440 version range)"
        )
    try:
        if not isinstance(declared, str) or not declared.strip():
            raise InvalidSpecifier(repr(declared))
        spec = SpecifierSet(declared)
    except InvalidSpecifier:
        raise PluginError(
            f"{API_ATTRIBUTE} = {declared!r} is not a version range; write a PEP 440 range "
            f"such as {api_range_hint()} (this studio's plugin API is {api})"
        ) from None
    if not spec.contains(Version(api), prereleases=True):
        raise PluginError(
            f"the plugin supports plugin API {declared} but this studio's plugin API is {api}; "
            f"install a version of the plugin made for API {api}"
        )


def _unmarked_hooks(pm: pluggy.PluginManager, plugin: object) -> list[str]:
    """Top-level functions named like a hook (a hookspec or ``register_*``) with no marker.

    pluggy ignores them silently, so a forgotten ``@hookimpl`` would register nothing.
    """
    specs = set(HOOK_ORDER)
    found = []
    for name in dir(plugin):
        if name.startswith("_") or not (name in specs or name.startswith("register_")):
            continue
        try:
            value = inspect.getattr_static(plugin, name)
        except AttributeError:
            continue
        if isinstance(value, (staticmethod, classmethod)):
            value = value.__func__
        if not inspect.isroutine(value) or isinstance(value, type):
            continue
        if pm.parse_hookimpl_opts(plugin, name) is None:
            found.append(name)
    return found


def _did_you_mean(name: str) -> str:
    close = difflib.get_close_matches(name, HOOK_ORDER, n=1)
    return f" (did you mean {close[0]!r}?)" if close and close[0] != name else ""


def _unmarked_message(names: list[str]) -> str:
    parts = []
    for name in names:
        known = (
            "" if name in HOOK_ORDER else f"; {name!r} is not a studio hook{_did_you_mean(name)}"
        )
        parts.append(f"{name}(){known}")
    return (
        f"{', '.join(parts)} looks like a hook implementation but lacks the @studio.hookimpl "
        "marker, so it would never be called: decorate it with @studio.hookimpl "
        "(from studio import hookimpl); top-level names starting with 'register_' are reserved "
        f"for hooks (known hooks: {', '.join(HOOK_ORDER)})"
    )


def _unknown_message(names: list[str]) -> str:
    parts = [f"{name!r}{_did_you_mean(name)}" for name in names]
    return (
        f"unknown hook {', '.join(parts)}: no studio hook has that name, so it would never be "
        f"called (known hooks: {', '.join(HOOK_ORDER)}; see docs/hooks.md)"
    )


# -- component checks ---------------------------------------------------------------------------


def _check_component(cls: type[Generator[Any]] | type[Trainer[Any]], kind: str) -> None:
    """Class-level metadata a generator or trainer must get right to be registered."""
    if not isinstance(cls.id, str) or any(c.isspace() for c in cls.id):
        raise PluginError(
            f"{kind} {cls.__name__}: id must be a string without spaces, got {cls.id!r}"
        )
    if cls.modality not in _MODALITIES:
        raise PluginError(
            f"{kind} {cls.id!r}: modality must be one of {_MODALITIES}, got {cls.modality!r}"
        )
    options = cls.Options
    if not (isinstance(options, type) and issubclass(options, BaseOptions)):
        raise PluginError(
            f"{kind} {cls.id!r}: Options must be a studio.BaseOptions subclass, got {options!r}"
        )
    parameter = _options_parameter(cls)
    if parameter is not None and not issubclass(options, parameter):
        raise PluginError(
            f"{kind} {cls.id!r} is declared {_base_name(cls)}[{parameter.__name__}] but its "
            f"Options is {options.__name__}: set Options = {parameter.__name__}"
        )
    default = cls.default_model
    if default is not None and (not isinstance(default, str) or not default.strip()):
        raise PluginError(
            f"{kind} {cls.id!r}: default_model must be a model reference or None, got {default!r}"
        )
    uses_model = cls.uses_model
    if not isinstance(uses_model, bool):
        raise PluginError(f"{kind} {cls.id!r}: uses_model must be True or False")
    if not uses_model and default is not None:
        raise PluginError(
            f"{kind} {cls.id!r} sets uses_model = False and default_model = {default!r}: one "
            "that uses no model has no default model. Remove default_model (or set uses_model "
            "= True)"
        )


def _base_name(cls: type) -> str:
    return "Generator" if issubclass(cls, Generator) else "Trainer"


def _options_parameter(cls: type) -> type | None:
    """The concrete ``OptionsT`` of ``class X(Generator[MyOptions])`` (or Trainer), if any."""
    for klass in cls.__mro__:
        for base in getattr(klass, "__orig_bases__", ()):
            origin = typing.get_origin(base)
            if origin in (Generator, Trainer):
                args = typing.get_args(base)
                if args and isinstance(args[0], type):
                    return args[0]
    return None


def _check_imports(cls: type[Generator[Any]] | type[Trainer[Any]]) -> None:
    """``imports`` must be a tuple of module names (a bare string would import each letter)."""
    names = cls.imports
    if not isinstance(names, tuple) or not all(
        isinstance(name, str) and name.strip() for name in names
    ):
        raise PluginError(
            f"{cls.__name__}.imports must be a tuple of module names, like "
            f"('diffusers.pipelines',); got {names!r}"
        )
