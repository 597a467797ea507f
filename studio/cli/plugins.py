"""``aigc-studio plugins`` (list, new, prefer), ``install``, ``uninstall``: no model library."""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.cli._common import (
    EXIT_FAILED,
    EXIT_OK,
    JSON_SCHEMA,
    PROG,
    CliUsageError,
    _err,
    _hinted_errors,
    failed_plugins,
    hint_failed_plugins,
    load_plugin_host,
    open_studio,
)
from studio.cli.output import _print_json, _table

if TYPE_CHECKING:
    from studio.core.generator import Generator
    from studio.core.plugins import PluginHost


def generator_json(cls: type[Generator]) -> dict[str, Any]:
    """A generator's class-level metadata as the ``plugins --json`` document shows it."""
    return {
        "id": cls.id,
        "name": cls.name,
        "task": cls.task,
        "modality": cls.modality,
        "default_model": cls.default_model,
        "uses_model": bool(cls.uses_model),
        "supports_lora": bool(cls.supports_lora),
        "description": cls.description,
    }


def plugins_document(
    host: PluginHost, preferred: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The ``plugins --json`` document (schema 1) for a loaded host; ``preferred`` is the
    ``preferred_generators`` setting (its ``tasks`` list shows how each shared task is chosen)."""
    plugins = []
    for info in sorted(host.plugins.values(), key=lambda i: (not i.builtin, i.name)):
        entry = info.to_json()
        entry["generators"] = [
            generator_json(host.generators[g]) for g in info.generators if g in host.generators
        ]
        entry["trainers"] = [
            {
                "id": t.id,
                "name": t.name,
                "modality": t.modality,
                "default_model": t.default_model,
                "uses_model": bool(t.uses_model),
                "description": t.description,
            }
            for t in (host.trainers[tid] for tid in info.trainers if tid in host.trainers)
        ]
        plugins.append(entry)
    return {
        "schema": JSON_SCHEMA,
        "plugins": plugins,
        "tasks": shared_tasks(host, preferred or {}),
    }


#: How the generator for a task was chosen (``rule`` in the JSON documents), for people.
RULE_TEXT = {
    "preferred": "your preference",
    "only": "the only one",
    "builtin": "built-in",
    "install-order": "installed first",
}


def task_choice(host: PluginHost, task: str, preferred: Mapping[str, str]) -> dict[str, Any]:
    """How the studio chooses the generator for ``task`` (:meth:`PluginHost.choose_generator`).

    ``generators``: every generator serving it, in the host's order; ``chosen``: the one used
    now (``None`` when none serves it); ``rule``: why (``preferred``, ``only``, ``builtin``,
    ``install-order``); ``preferred``: the user's preference, if any; ``warning``: set when
    that preference cannot be used.
    """
    wanted = preferred.get(task)
    serving = [g.id for g in host.generators_for(task)]
    entry: dict[str, Any] = {
        "task": task,
        "generators": serving,
        "chosen": None,
        "rule": None,
        "preferred": wanted,
        "warning": None,
    }
    if not serving:
        entry["warning"] = (
            f"preferred generator {wanted!r} for {task!r} (setting preferred_generators): no "
            f"installed generator serves {task!r}; clear it with '{PROG} plugins prefer {task} "
            "--clear'"
        )
        return entry
    choice = host.choose_generator(task, preferred)
    chosen = choice.generator.id
    if chosen == wanted:
        rule = "preferred"
    elif len(serving) == 1:
        rule = "only"
    else:
        rule = "builtin" if host.owner[chosen].builtin else "install-order"
    entry.update(chosen=chosen, rule=rule, warning=choice.warning)
    return entry


def shared_tasks(host: PluginHost, preferred: Mapping[str, str]) -> list[dict[str, Any]]:
    """:func:`task_choice` for every task several generators serve or a preference names."""
    counts: dict[str, int] = {}
    for cls in host.generators.values():
        counts[cls.task] = counts.get(cls.task, 0) + 1
    tasks = {t for t, n in counts.items() if n > 1} | set(preferred)
    return [task_choice(host, task, preferred) for task in sorted(tasks)]


def _choice_line(entry: dict[str, Any]) -> str:
    """``text-to-image: sketch (your preference; serving: fake-image, sketch)``."""
    if entry["chosen"] is None:
        return f"{entry['task']}: no installed generator serves it"
    return (
        f"{entry['task']}: {entry['chosen']} ({RULE_TEXT[entry['rule']]}; serving: "
        f"{', '.join(entry['generators'])})"
    )


def cmd_plugins(args: argparse.Namespace) -> int:
    """``aigc-studio plugins``: what is installed, what it contributes, what failed to load.

    The listing goes to stdout; each load error also goes to stderr as an error line. The
    listing succeeded, so the exit code is 0 even then (``STUDIO_STRICT_PLUGINS=1`` fails).
    """
    command = getattr(args, "plugins_command", None)
    if command == "new":
        return cmd_plugins_new(args)
    if command == "prefer":
        return cmd_plugins_prefer(args)
    from studio.core.studio import Studio

    host = load_plugin_host()
    document = plugins_document(host, Studio.saved_settings().preferred_generators)
    if args.json:
        _print_json(document)
        return EXIT_OK
    out = sys.stdout
    if not document["plugins"]:
        out.write("no plugins installed\n")
    for p in document["plugins"]:
        kind = "built-in" if p["builtin"] else "third-party"
        state = "" if p["enabled"] else "  [disabled]"
        if p["error"]:
            state = "  [failed to load]"
        out.write(f"{p['name']} {p['version']} ({kind}, {p['module']}){state}\n")
        if p["error"]:
            out.write(f"  error: {p['error']}\n")
        rows = [[g["id"], g["task"], g["modality"], _model_cell(g)] for g in p["generators"]]
        if rows:
            out.write("  generators:\n")
            out.write(_table(["id", "task", "modality", "default model"], rows, indent=4))
        rows = [[t["id"], t["modality"], _model_cell(t)] for t in p["trainers"]]
        if rows:
            out.write("  trainers:\n")
            out.write(_table(["id", "modality", "base model"], rows, indent=4))
    if document["tasks"]:
        out.write(
            f"which generator serves a task ('{PROG} plugins prefer TASK GENERATOR_ID' chooses):\n"
        )
        rows = [
            [
                t["task"],
                t["chosen"] or "-",
                RULE_TEXT.get(t["rule"], "-"),
                ", ".join(t["generators"]),
            ]
            for t in document["tasks"]
        ]
        out.write(_table(["task", "uses", "because", "serving"], rows, indent=2))
    out.flush()
    for task in document["tasks"]:
        if task["warning"]:
            print(f"{PROG}: warning: {task['warning']}", file=sys.stderr, flush=True)
    for info in failed_plugins(host):
        _err(f"plugin {info.name!r} {info.error}")
    if failed_plugins(host):
        print(
            f"{PROG}: the tracebacks are in '{PROG} plugins --json'; STUDIO_STRICT_PLUGINS=1 "
            "stops at the first failure with its traceback",
            file=sys.stderr,
            flush=True,
        )
    return EXIT_OK


def _model_cell(component: dict[str, Any]) -> str:
    """The default-model column: the model, ``-`` when the user must name one, or
    ``(uses none)`` for a model-free generator or trainer."""
    if not component.get("uses_model", True):
        return "(uses none)"
    return component["default_model"] or "-"


def cmd_plugins_new(args: argparse.Namespace) -> int:
    """``aigc-studio plugins new NAME``: write a plugin package (:mod:`studio.core.scaffold`)."""
    from studio.core.scaffold import create_plugin

    created = create_plugin(args.name, kind=args.kind, target=args.dir)
    sys.stdout.write(f"{created.folder}\n")
    try:
        shown = created.folder.relative_to(Path.cwd())
    except ValueError:
        shown = created.folder
    steps = [
        f"created plugin {created.name!r} ({args.kind} {created.component_id!r}, "
        f"package {created.distribution}) in {created.folder}",
        "next: run its tests, install it (editable) into the studio, see it listed:",
        f"  (cd {shown} && python -m pytest)",
        f"  {PROG} install --editable {shown}",
        f"  {PROG} plugins",
    ]
    print("\n".join(steps), file=sys.stderr, flush=True)
    return EXIT_OK


def cmd_plugins_prefer(args: argparse.Namespace) -> int:
    """``aigc-studio plugins prefer TASK [GENERATOR_ID | --clear]``: show, set or clear the
    preferred generator for a task (saved with :meth:`Studio.set_preferred_generator`)."""
    from studio.core.studio import Studio

    if args.generator is not None and args.clear:
        raise CliUsageError("give GENERATOR_ID or --clear, not both")
    if args.generator is None and not args.clear:  # show: read only, no Studio opened
        host = load_plugin_host()
        preferred = Studio.saved_settings().preferred_generators
        with _hinted_errors(host):
            if not host.generators_for(args.task) and args.task not in preferred:
                tasks = sorted({g.task for g in host.generators.values()})
                known = host.generators.get(args.task)
                hint = (
                    f" ({args.task!r} is a generator id; its task is {known.task!r})"
                    if known
                    else ""
                )
                raise CliUsageError(
                    f"no installed generator serves the task {args.task!r}{hint}; tasks: "
                    f"{', '.join(tasks) or '(none)'}"
                )
        entry = task_choice(host, args.task, preferred)
    else:
        with open_studio(start_workers=False) as studio:
            host = studio.plugins
            with _hinted_errors(host):
                settings = studio.set_preferred_generator(
                    args.task, None if args.clear else args.generator
                )
            entry = task_choice(host, args.task, settings.preferred_generators)
    if args.json:
        _print_json({"schema": JSON_SCHEMA, **entry})
        return EXIT_OK
    hint_failed_plugins(host)
    if entry["warning"]:
        print(f"{PROG}: warning: {entry['warning']}", file=sys.stderr, flush=True)
    sys.stdout.write(_choice_line(entry) + "\n")
    sys.stdout.flush()
    return EXIT_OK


def _plugin_packages() -> dict[str, tuple[str, list[str]]]:
    """Installed plugin distributions: name -> (version, entry-point names)."""
    from studio.core.installer import installed_version, plugin_distributions

    packages: dict[str, tuple[str, list[str]]] = {}
    for plugin, dist in plugin_distributions().items():
        version, names = packages.get(dist, (installed_version(dist) or "?", []))
        packages[dist] = (version, [*names, plugin])
    return packages


def cmd_install(args: argparse.Namespace) -> int:
    """``aigc-studio install SPEC ...``: pip install with the core packages pinned."""
    from studio.core.installer import (
        install_arguments,
        installed_version,
        is_core,
        run_pip,
        spec_distribution,
    )

    before = _plugin_packages()
    with tempfile.TemporaryDirectory(prefix="aigc-studio-pip-") as scratch:
        pip_args = install_arguments(
            args.spec,
            Path(scratch) / "constraints.txt",
            upgrade=args.upgrade,
            editable=args.editable,
        )
        code = run_pip(pip_args)
    if code != 0:
        _err(
            f"pip install failed (exit code {code}); pip's output is above. The studio's core "
            "packages are pinned: a plugin that needs other versions of them cannot be installed"
        )
        return EXIT_FAILED
    after = _plugin_packages()
    changed = {d: v for d, v in after.items() if before.get(d) != v}
    for dist, (version, names) in sorted(changed.items()):
        plural = "s" * (len(names) != 1)
        sys.stdout.write(f"{dist} {version}: plugin{plural} {', '.join(sorted(names))}\n")
    for spec in args.spec:
        named = spec_distribution(spec)
        if named is None or is_core(named) or installed_version(named) is None:
            continue
        if not any(_same_name(named, d) for d in after):
            print(
                f"{PROG}: warning: {named} is installed but declares no 'studio.plugins' entry "
                "point: it is not a studio plugin, and nothing loads it",
                file=sys.stderr,
                flush=True,
            )
    if not changed:
        print(f"{PROG}: no plugin was added or changed", file=sys.stderr, flush=True)
    return EXIT_OK


def _same_name(a: str, b: str) -> bool:
    from packaging.utils import canonicalize_name

    return canonicalize_name(a) == canonicalize_name(b)


def cmd_uninstall(args: argparse.Namespace) -> int:
    """``aigc-studio uninstall NAME ...``: pip uninstall of plugin packages (asks first)."""
    from studio.core.installer import resolve_uninstall, run_pip, uninstall_arguments

    packages = _plugin_packages()
    dists = list(dict.fromkeys(resolve_uninstall(name) for name in args.name))
    described = [
        f"{d} {packages[d][0]} (plugin {', '.join(sorted(packages[d][1]))})" if d in packages else d
        for d in dists
    ]
    if not args.yes:
        if not sys.stdin or not sys.stdin.isatty():
            raise CliUsageError(
                f"uninstall {', '.join(described)}: confirm with --yes (no terminal to ask on)"
            )
        sys.stderr.write(f"Uninstall {', '.join(described)}? [y/N] ")
        sys.stderr.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            print(f"{PROG}: nothing uninstalled", file=sys.stderr, flush=True)
            return EXIT_FAILED
    code = run_pip(uninstall_arguments(dists))
    if code != 0:
        _err(f"pip uninstall failed (exit code {code}); pip's output is above")
        return EXIT_FAILED
    for text in described:
        sys.stdout.write(f"uninstalled {text}\n")
    return EXIT_OK
