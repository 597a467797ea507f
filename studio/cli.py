"""The ``aigc-studio`` command line: a thin shell over :mod:`studio.core`, like the GUI.

::

    aigc-studio [--screenshot FILE] [--panel NAME]       # the desktop window
    aigc-studio generate TASK_OR_GENERATOR_ID --prompt TEXT [--model REF] [--seed N]
                [--set KEY=VALUE ...] [--lora REF[:WEIGHT] ...] [--out DIR] [--json]
                [--parent ARTIFACT] [--help-options]
    aigc-studio regenerate ARTIFACT [--out DIR] [--allow-other-version] [--json]
    aigc-studio plugins [--json]
    aigc-studio plugins new NAME [--kind generator|trainer] [--dir DIR]
    aigc-studio plugins prefer TASK [GENERATOR_ID | --clear] [--json]
    aigc-studio install SPEC [SPEC ...] [--upgrade] [--editable]
    aigc-studio uninstall NAME [NAME ...] [--yes]
    aigc-studio models [--json]
    aigc-studio jobs [--json]
    aigc-studio train TRAINER --data DIR --name NAME [--base REF] [--set KEY=VALUE ...] [--json]
                [--help-options]
    aigc-studio train --resume JOB_ID [--json]
    aigc-studio adapters [--json]

Conventions (docs/cli.md is the reference): progress bars, streamed text, notes and pip's output
go to stderr; the result summary (artifact paths) goes to stdout; ``--json`` prints exactly one JSON
document on stdout (schema version 1) and keeps stderr quiet except for errors. Exit codes: 0
success, 1 the job (or pip) failed or an unexpected error, 2 bad input (one line
``aigc-studio: error: ...`` on stderr, nothing written), 130 cancelled with Ctrl-C (a training is
paused instead: ``train --resume`` goes on).

Plugin load errors are printed in full by ``aigc-studio plugins`` only; other commands that load
plugins print a one-line hint. With ``STUDIO_STRICT_PLUGINS=1`` a failing plugin stops the command
with its full traceback (exit 1).

Only the standard library is imported at module level: ``aigc-studio plugins`` must start fast
and never import torch, diffusers or transformers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import queue
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from studio.core.generator import GenerationRequest, Generator
    from studio.core.plugins import GeneratorChoice, PluginHost, PluginInfo
    from studio.core.records import AdapterRecord, JobRecord
    from studio.core.studio import Studio
    from studio.core.training import IngestReport, Trainer, TrainingRequest

PROG = "aigc-studio"
#: Version of every ``--json`` document's layout; bumped only on incompatible changes.
JSON_SCHEMA = 1

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class CliUsageError(Exception):
    """Bad command-line input detected by the CLI itself (reported as one line, exit 2)."""


class _Parser(argparse.ArgumentParser):
    """argparse, but errors become one line (``aigc-studio: error: ...``) instead of usage+exit."""

    def error(self, message: str) -> NoReturn:
        hint = f" (see '{self.prog} --help')"
        raise CliUsageError(message + hint)


# --- argument parsing ----------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (also used by docs and tests to check the documented flags)."""
    parser = _Parser(
        prog=PROG,
        description="A desktop creative studio: text, images and audio from local models. "
        "Without a command, opens the desktop window.",
        epilog="Environment: STUDIO_HOME (studio folder), STUDIO_STRICT_PLUGINS, "
        "STUDIO_LOAD_PLUGINS, STUDIO_DISABLE_PLUGIN_AUTOLOAD, HF_HOME, HF_HUB_CACHE, "
        "HF_HUB_OFFLINE. See docs/cli.md.",
    )
    parser.add_argument(
        "--screenshot",
        type=Path,
        metavar="FILE",
        help="open the window offscreen, wait until it is loaded, save a PNG to FILE and exit",
    )
    parser.add_argument(
        "--panel", metavar="NAME", help="the panel to show (with --screenshot, the one captured)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    gen = sub.add_parser(
        "generate",
        help="generate text, an image or audio",
        description="Run a generator (by id, or the first one serving a task such as "
        "text-to-image). Options are the generator's own: list them with "
        "'aigc-studio generate GENERATOR --help-options'.",
    )
    gen.add_argument("generator", metavar="TASK_OR_GENERATOR_ID", help="generator id or task name")
    gen.add_argument(
        "--prompt", help="what to generate (required unless the generator allows none)"
    )
    gen.add_argument(
        "--model",
        metavar="REF",
        help="hub id, local folder or .safetensors file (default: the generator's)",
    )
    gen.add_argument("--seed", type=int, metavar="N", help="random seed (default: a random one)")
    gen.add_argument(
        "--set",
        dest="set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a generator option (repeatable); see --help-options",
    )
    gen.add_argument(
        "--lora",
        action="append",
        default=[],
        metavar="REF[:WEIGHT]",
        help="apply an adapter with an optional weight (repeatable)",
    )
    gen.add_argument(
        "--out", type=Path, metavar="DIR", help="output folder (default: the studio's)"
    )
    gen.add_argument(
        "--parent",
        metavar="ARTIFACT",
        help="artifact id or file this request continues (chat history, variation)",
    )
    gen.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    gen.add_argument(
        "--help-options",
        action="store_true",
        help="list the generator's options (names, types, defaults, allowed values)",
    )

    regen = sub.add_parser(
        "regenerate",
        help="re-run the recipe of an artifact",
        description="Re-run the recipe stored in an artifact (an artifact id or a file written "
        "by the studio). On the same CPU the result is identical.",
    )
    regen.add_argument("artifact", metavar="ARTIFACT", help="artifact id or file path")
    regen.add_argument("--out", type=Path, metavar="DIR", help="output folder")
    regen.add_argument(
        "--allow-other-version",
        action="store_true",
        help="run it although the recorded plugin is installed in another version",
    )
    regen.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    _add_training_commands(sub)

    for name, text in (
        ("plugins", "installed plugins, their generators and trainers, load errors"),
        ("models", "models in the hub cache, the studio library and the catalog"),
        ("jobs", "recent jobs and their states"),
        ("datasets", "datasets trained on: folders, files, manifest hashes, when last used"),
    ):
        cmd = sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        cmd.add_argument("--json", action="store_true", help="print one JSON document on stdout")
        if name == "plugins":
            _add_plugins_subcommands(cmd)

    install = sub.add_parser(
        "install",
        help="install plugin packages with pip (the studio's own packages stay pinned)",
        description="Install plugin packages into the studio's Python environment with pip, "
        "as the Plugins panel does: torch, PySide6, the studio and its other core packages are "
        "pinned to their installed versions, so a plugin cannot change them.",
    )
    install.add_argument(
        "spec",
        nargs="+",
        metavar="SPEC",
        help="a package name or requirement (studio-palette, studio-palette>=1.0), a wheel or "
        "sdist file, a project folder or a URL",
    )
    install.add_argument(
        "-U", "--upgrade", action="store_true", help="upgrade to the newest allowed version"
    )
    install.add_argument(
        "-e",
        "--editable",
        action="store_true",
        help="install project folders in editable mode (for plugin authors)",
    )

    uninstall = sub.add_parser(
        "uninstall",
        help="uninstall plugin packages with pip",
        description="Uninstall plugin packages: NAME is a plugin's name as 'aigc-studio plugins' "
        "lists it, or the name of its package. Built-in plugins and the studio's core packages "
        "are never uninstalled (disable a plugin in the Plugins panel instead).",
    )
    uninstall.add_argument("name", nargs="+", metavar="NAME", help="plugin or package name")
    uninstall.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    return parser


def _add_training_commands(sub: Any) -> None:
    """``train`` (fine-tune an adapter on a folder of files, or resume one) and ``adapters``
    (the adapter library)."""
    train = sub.add_parser(
        "train",
        help="fine-tune an adapter on a folder of your files (or resume a training)",
        description="Train an adapter with a trainer (its id, as 'aigc-studio plugins' lists "
        "it) on the files in a folder: the ingest report (which files are used, which are "
        "skipped and why) is shown first, then the progress. Options are the trainer's own: "
        "list them with 'aigc-studio train TRAINER --help-options'. Ctrl-C pauses the training "
        "at its next step (a second Ctrl-C cancels it); 'aigc-studio train --resume JOB_ID' "
        "goes on from its last checkpoint.",
    )
    train.add_argument(
        "trainer", metavar="TRAINER", nargs="?", help="trainer id (not with --resume)"
    )
    train.add_argument(
        "--base",
        metavar="REF",
        help="the model to train on: hub id, local folder or .safetensors file (default: the "
        "trainer's; refused for a trainer that uses no base model)",
    )
    train.add_argument("--data", type=Path, metavar="DIR", help="the folder of files to learn from")
    train.add_argument(
        "--name", metavar="NAME", help="the adapter's name in the library (for --lora NAME)"
    )
    train.add_argument(
        "--set",
        dest="set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a trainer option (repeatable); see --help-options",
    )
    train.add_argument(
        "--resume",
        metavar="JOB_ID",
        help="go on with an interrupted, paused or cancelled training from its last checkpoint",
    )
    train.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    train.add_argument(
        "--help-options",
        action="store_true",
        help="list the trainer's options (names, types, defaults, allowed values)",
    )
    adapters = sub.add_parser(
        "adapters",
        help="the adapter library: what was trained, on what, and how to use it",
        description="The adapters in the studio's library, newest first: name, trainer, base "
        "model, the generators they are for, when they were made, where they are and a summary "
        "of their training.",
    )
    adapters.add_argument("--json", action="store_true", help="print one JSON document on stdout")


def _add_plugins_subcommands(plugins: argparse.ArgumentParser) -> None:
    """``plugins new`` (the scaffold of a plugin package) and ``plugins prefer`` (the generator
    used for a task that several serve)."""
    from studio.core.scaffold import KINDS, NAME_RULE

    sub = plugins.add_subparsers(dest="plugins_command", metavar="SUBCOMMAND")
    new = sub.add_parser(
        "new",
        help="write a new plugin package, ready to install, with its own tests",
        description="Write a new plugin package: pyproject.toml with the studio.plugins entry "
        "point, a module declaring the plugin API range it supports, one class (a generator "
        "that needs no model, or a small trainer) and tests using the studio's testing kit, "
        "which pass as written.",
    )
    new.add_argument("name", metavar="NAME", help=f"the plugin's name: {NAME_RULE}")
    new.add_argument(
        "--kind",
        choices=KINDS,
        default=KINDS[0],
        help=f"what the plugin contributes (default: {KINDS[0]})",
    )
    new.add_argument(
        "--dir",
        type=Path,
        metavar="DIR",
        help="the folder to write (default: ./studio-NAME); it must not exist or be empty",
    )
    prefer = sub.add_parser(
        "prefer",
        help="show or set the generator used when a task is named and several serve it",
        description="Show or set your preferred generator for a task: the one used when you name "
        "the task (aigc-studio generate TASK) and several installed generators serve it. Without "
        "a preference the studio uses a built-in generator, else the plugin installed first. "
        "With TASK alone, show which generator is used now and why.",
    )
    prefer.add_argument("task", metavar="TASK", help="a task, e.g. text-to-image")
    prefer.add_argument(
        "generator",
        metavar="GENERATOR_ID",
        nargs="?",
        help="the generator to use for TASK (one that serves it)",
    )
    prefer.add_argument(
        "--clear",
        action="store_true",
        help="forget the preference for TASK (back to built-in first, then install order)",
    )
    prefer.add_argument("--json", action="store_true", help="print one JSON document on stdout")


# --- entry point -------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (the console script passes it to exit)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    with _plugin_load_warnings_muted():
        try:
            try:
                _maybe_extend_generate_help(parser, args_list)
                args = parser.parse_args(args_list)
            except SystemExit as exc:  # --help / --version
                return int(exc.code or 0) if not isinstance(exc.code, str) else EXIT_USAGE
            if args.command is None:
                return cmd_gui(args, parser)
            handler: Callable[[argparse.Namespace], int] = {
                "generate": cmd_generate,
                "regenerate": cmd_regenerate,
                "plugins": cmd_plugins,
                "install": cmd_install,
                "uninstall": cmd_uninstall,
                "models": cmd_models,
                "jobs": cmd_jobs,
                "datasets": cmd_datasets,
                "train": cmd_train,
                "adapters": cmd_adapters,
            }[args.command]
            return handler(args)
        except CliUsageError as exc:
            return _usage_error(str(exc))
        except KeyboardInterrupt:
            _err("interrupted")
            return EXIT_INTERRUPTED
        except BrokenPipeError:  # `aigc-studio jobs | head`
            _silence_stdout()
            return EXIT_OK
        except Exception as exc:
            from studio.core.errors import PluginError, StudioError
            from studio.core.plugins import strict_mode

            if isinstance(exc, PluginError) and strict_mode():
                return _strict_plugin_failure(exc)
            if isinstance(exc, StudioError):  # InvalidRequest and the errors users can act on
                return _usage_error(str(exc))
            raise


@contextmanager
def _plugin_load_warnings_muted() -> Iterator[None]:
    """Keep the plugin host's load warnings off stderr: the CLI reports load errors itself
    (in full in ``plugins``, as a one-line hint elsewhere). They still reach the log file."""
    from studio.core import plugins

    logger = logging.getLogger(plugins.__name__)
    handler = logging.NullHandler()  # a handler is found: Python's last-resort printer is not used
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


def _strict_plugin_failure(exc: BaseException) -> int:
    """``STUDIO_STRICT_PLUGINS=1``: a plugin failed; show the full traceback (with the plugin's
    own exception as its cause), then the usual error line naming the exception type."""
    text = "".join(traceback.format_exception(exc))
    recorded = getattr(exc, "traceback", None)  # a traceback captured where the plugin ran
    if isinstance(recorded, str) and recorded.strip() and recorded.strip() not in text:
        text = recorded.rstrip("\n") + "\n\nThe above was reported as:\n\n" + text
    sys.stderr.write(text if text.endswith("\n") else text + "\n")
    _err(f"{type(exc).__name__}: {exc} (STUDIO_STRICT_PLUGINS is set: plugin failures stop)")
    return EXIT_FAILED


def _usage_error(message: str) -> int:
    _err(message)
    return EXIT_USAGE


def _err(message: str) -> None:
    """One line on stderr, the way every CLI error looks."""
    first = " ".join(str(message).split())
    print(f"{PROG}: error: {first}", file=sys.stderr, flush=True)


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _print_json(document: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(document, indent=2, default=_json_default) + "\n")
    sys.stdout.flush()


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, set | tuple):
        return list(value)
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    return str(value)


# --- the window ----------------------------------------------------------------------------


def display_problem() -> str | None:
    """Why no window can be shown here, or ``None`` if it can (checked without starting Qt)."""
    platform = os.environ.get("QT_QPA_PLATFORM", "")
    if platform.split(":")[0] in ("offscreen", "minimal", "vnc", "eglfs", "linuxfb"):
        return None
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        return "no display available (neither DISPLAY nor WAYLAND_DISPLAY is set)"
    return None


def cmd_gui(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """No command: open the desktop window (or save a screenshot of it and exit)."""
    if args.screenshot is not None and display_problem() is not None:
        # a screenshot needs no screen: render offscreen
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    problem = display_problem()
    if problem is None:
        try:
            import PySide6.QtWidgets  # noqa: F401 - fails early when Qt's libraries are missing

            from studio.ui.app import run_gui
        except ImportError as exc:
            problem = f"the desktop window is not available ({exc})"
    if problem is not None:
        print(f"{PROG}: {problem}; use a command below, or --screenshot FILE.", file=sys.stderr)
        parser.print_help(sys.stderr)
        return EXIT_FAILED
    return int(run_gui(screenshot=args.screenshot, panel=args.panel))


# --- plugins (fast: no Studio, no workers, no model library) -------------------------------


def load_plugin_host() -> PluginHost:
    """A plugin host with every installed plugin loaded (honouring disabled plugins and env)."""
    from studio.core.plugins import PluginHost
    from studio.core.studio import Studio

    host = PluginHost(disabled=list(Studio.saved_settings().disabled_plugins))
    host.load_entry_points()
    return host


def failed_plugins(host: PluginHost) -> list[PluginInfo]:
    """The plugins that failed to load (import, registration, a refused class), by name."""
    return sorted((i for i in host.plugins.values() if i.error), key=lambda i: i.name)


def load_errors_hint(host: PluginHost) -> str | None:
    """``1 plugin failed to load (name); see 'aigc-studio plugins'``, or ``None``."""
    failed = failed_plugins(host)
    if not failed:
        return None
    names = ", ".join(i.name for i in failed)
    count = f"{len(failed)} plugin{'s' * (len(failed) != 1)}"
    return f"{count} failed to load ({names}); see '{PROG} plugins'"


def hint_failed_plugins(host: PluginHost, *, quiet: bool = False) -> None:
    """One warning line on stderr when plugins failed to load (``plugins`` shows what and why).

    Printed once the request was accepted; a refused request carries the hint in its error line
    instead (:func:`_hinted_errors`), so bad input stays one line.
    """
    hint = load_errors_hint(host)
    if hint is not None and not quiet:
        print(f"{PROG}: warning: {hint}", file=sys.stderr, flush=True)


@contextmanager
def _hinted_errors(host: PluginHost) -> Iterator[None]:
    """A refused request's error line also says that plugins failed to load (the generator
    asked for may be in one of them)."""
    from studio.core.errors import PluginError, StudioError

    try:
        yield
    except PluginError:
        raise
    except (CliUsageError, StudioError) as exc:
        hint = load_errors_hint(host)
        if hint is None:
            raise
        raise CliUsageError(f"{exc}; note: {hint}") from exc


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


# --- install / uninstall (pip in this environment, the core pinned) ------------------------


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


def _table(headers: list[str], rows: list[list[str]], indent: int = 0) -> str:
    """A plain aligned text table (no dependency)."""
    cells = [headers, *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    pad = " " * indent
    lines = [
        pad + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells
    ]
    return "\n".join(lines) + "\n"


# --- options help --------------------------------------------------------------------------


def options_help(cls: type[Generator], width: int | None = None) -> str:
    """The text of ``generate GENERATOR --help-options``, derived from the Options model.

    Each option: name, kind, default, description and what it allows (``allowed_text``), so that
    nothing here restates what the Options model declares.
    """
    model = f"default model: {cls.default_model or '(none)'}"
    if not cls.uses_model:
        model = "uses no model (--model is refused)"
    lines = [
        f"{cls.id}: {cls.name} ({cls.task}, {cls.modality})",
        model + ("; accepts --lora" if cls.supports_lora else ""),
    ]
    return _options_text(lines, cls.description, cls.Options, "generator", width)


def trainer_options_help(cls: type[Trainer], width: int | None = None) -> str:
    """The text of ``train TRAINER --help-options``: as :func:`options_help`, for a trainer."""
    base = f"default base model: {cls.default_model or '(none: name one with --base REF)'}"
    if not cls.uses_model:
        base = "uses no base model (--base is refused)"
    lines = [f"{cls.id}: {cls.name} (trainer, {cls.modality})", base]
    return _options_text(lines, cls.description, cls.Options, "trainer", width)


def _options_text(
    lines: list[str], description: str, options: Any, what: str, width: int | None
) -> str:
    """``lines``, the description, then every option of the Options model ``options``."""
    import textwrap

    from studio.core.options import allowed_text, field_specs

    if width is None:
        width = min(shutil.get_terminal_size((100, 24)).columns, 100)

    def wrap(text: str) -> list[str]:
        return textwrap.wrap(text, width, initial_indent="      ", subsequent_indent="      ")

    lines = list(lines)
    if description:
        lines.append(description)
    specs = field_specs(options)
    if not specs:
        lines.append(f"\nThis {what} has no options.")
        return "\n".join(lines) + "\n"
    lines.append("\noptions (--set KEY=VALUE):")
    for spec in specs:
        lines.append(f"  {spec.name}  ({spec.kind}, {default_text(spec)})")
        if spec.description:
            lines.extend(wrap(spec.description))
        allowed = allowed_text(spec) + (", or none" if spec.optional else "")
        lines.extend(wrap(f"allowed: {allowed}"))
    return "\n".join(lines) + "\n"


def default_text(spec: Any) -> str:
    """``required``, ``default none`` or ``default <value>`` for an option's help line."""
    if spec.required:
        return "required"
    return "default none" if spec.default is None else f"default {spec.default!r}"


def _maybe_extend_generate_help(parser: argparse.ArgumentParser, argv: list[str]) -> None:
    """``generate X --help`` also lists X's options (when X names a known generator); so does
    ``train X --help`` for a trainer."""
    if not argv or argv[0] not in ("generate", "train") or not {"-h", "--help"} & set(argv):
        return
    target = next((a for a in argv[1:] if not a.startswith("-")), None)
    if target is None:
        return
    try:
        host = load_plugin_host()
        if argv[0] == "train":
            epilog = trainer_options_help(host.find_trainer(target))
        else:
            epilog = options_help(host.find_generator(target))
    except Exception:  # unknown id: plain help is still useful
        return
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    command_parser = subparsers.choices[argv[0]]
    command_parser.epilog = epilog
    command_parser.formatter_class = argparse.RawDescriptionHelpFormatter


# --- generate / regenerate -----------------------------------------------------------------


def build_request(args: argparse.Namespace) -> GenerationRequest:
    """A :class:`GenerationRequest` from ``generate`` arguments (syntax checks only)."""
    from pydantic import ValidationError

    from studio.core.generator import GenerationRequest, LoraSpec
    from studio.core.options import parse_set_pairs
    from studio.core.paths import check_out_dir

    options = parse_set_pairs(list(args.set))
    try:
        loras = [LoraSpec.parse(text) for text in args.lora]
    except ValidationError as exc:
        raise CliUsageError(f"--lora: {_pydantic_message(exc)}") from None
    try:
        return GenerationRequest(
            generator=args.generator,
            prompt=args.prompt or "",
            model=args.model,
            seed=args.seed,
            options=options,
            loras=loras,
            out_dir=check_out_dir(args.out),
            parent=args.parent,
        )
    except ValidationError as exc:
        raise CliUsageError(_pydantic_message(exc)) from None


def _pydantic_message(exc: Any) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ()))
    return f"{where + ': ' if where else ''}{err['msg'].lower()} (got {err.get('input')!r})"


@contextmanager
def open_studio(*, load_plugins: bool = True, start_workers: bool = True) -> Iterator[Studio]:
    """The studio on ``STUDIO_HOME`` (or the default home), closed on exit."""
    from studio.core.studio import Studio

    studio = Studio.open(load_plugins=load_plugins, start_workers=start_workers)
    try:
        yield studio
    finally:
        studio.close()


def _resolve_parent(studio: Studio, parent: str | None) -> str | None:
    """``--parent`` accepts an artifact id or a file the studio wrote."""
    if parent is None:
        return None
    path = Path(parent).expanduser()
    if path.is_file():
        record = studio.artifact_at(path)
        if record is None:
            raise CliUsageError(f"--parent {parent}: not an artifact of this studio")
        return record.id
    try:
        studio.artifact(parent)
    except KeyError:
        raise CliUsageError(f"--parent {parent!r}: no such artifact id or file") from None
    return parent


def cmd_generate(args: argparse.Namespace) -> int:
    """``aigc-studio generate``: validate, submit, show progress, print what was saved."""
    if args.help_options:
        host = load_plugin_host()
        with _hinted_errors(host):
            cls = host.find_generator(args.generator)
        hint_failed_plugins(host)
        sys.stdout.write(options_help(cls))
        return EXIT_OK
    request = build_request(args)
    with open_studio(start_workers=False) as studio:
        with _hinted_errors(studio.plugins):  # every check before anything is queued or runs
            choice = studio.plugins.choose_generator(
                request.generator, studio.settings.preferred_generators
            )
            cls = choice.generator
            if request.model and not cls.uses_model:
                raise CliUsageError(
                    f"generator {cls.id!r} uses no model: remove --model {request.model}"
                )
            parent = _resolve_parent(studio, request.parent)
            named = request.generator
            # the request carries the chosen id: a task name would resolve without the preference
            request = request.model_copy(update={"generator": cls.id, "parent": parent})
            studio.prepare(request)
        hint_failed_plugins(studio.plugins, quiet=args.json)
        say_which_generator(choice, named, quiet=args.json)
        studio.start(adopt_queue=False)  # a one-shot command runs only its own job
        return run_job(studio, lambda: studio.submit(request), as_json=args.json)


def say_which_generator(choice: GeneratorChoice, name: str, *, quiet: bool = False) -> None:
    """When a task is served by several generators, say on stderr which one runs and why (the
    host's rule: the user's preference, else built-ins first, then install order)."""
    cls = choice.generator
    if quiet:
        return
    if choice.warning and len(choice.candidates) == 1:
        print(f"{PROG}: warning: {choice.warning}", file=sys.stderr, flush=True)
    if name != cls.id and len(choice.candidates) > 1:
        print(
            f"{PROG}: {name}: using generator {cls.id!r} ({choice.reason})",
            file=sys.stderr,
            flush=True,
        )


def cmd_regenerate(args: argparse.Namespace) -> int:
    """``aigc-studio regenerate``: re-run the recipe of an artifact (id or file).

    Refused (exit 2, nothing run) when the recorded plugin is missing or another one now owns
    the generator id; when the plugin is installed in another version, unless
    ``--allow-other-version`` is given.
    """
    from studio.core.paths import check_out_dir

    out_dir = check_out_dir(args.out)
    target: str | Path = args.artifact
    path = Path(args.artifact).expanduser()
    if path.exists():
        target = path.resolve()
    with open_studio(start_workers=False) as studio:
        studio.start(adopt_queue=False)

        def submit() -> str:
            with _hinted_errors(studio.plugins):
                job_id = studio.regenerate(
                    target, out_dir=out_dir, allow_other_version=args.allow_other_version
                )
            hint_failed_plugins(studio.plugins, quiet=args.json)
            return job_id

        return run_job(studio, submit, as_json=args.json)


def run_job(studio: Studio, submit: Callable[[], str], *, as_json: bool) -> int:
    """Submit a job, render its events until it finishes, print the summary; Ctrl-C cancels."""
    from studio.core.events import ArtifactSaved, Note

    events: queue.Queue[Any] = queue.Queue()
    unsubscribe = studio.subscribe(events.put)
    printer = EventPrinter(sys.stderr, quiet=as_json)
    job_id: str | None = None
    saved: dict[str, ArtifactSaved] = {}
    notes: list[dict[str, str]] = []

    def handle(event: Any) -> None:
        if isinstance(event, ArtifactSaved):
            saved[event.artifact_id] = event
        elif isinstance(event, Note):
            notes.append({"level": event.level, "message": event.message})
        printer.handle(event)

    try:
        try:
            job_id = submit()  # events that come before it returns wait in the queue
            follow_job(studio, job_id, events, handle)
        except KeyboardInterrupt:
            printer.close()
            if job_id is None:
                raise
            return _cancel(studio, job_id, saved, notes, as_json)
        printer.close()
        record = studio.wait(job_id, timeout=10)
        return _report(studio, record, saved, notes, as_json)
    finally:
        unsubscribe()


def follow_job(
    studio: Studio,
    job_id: str,
    events: queue.Queue[Any],
    handle: Callable[[Any], None],
    until: Callable[[Any], bool] | None = None,
) -> Any:
    """Hand each event of ``job_id`` from ``events`` (a subscription's queue) to ``handle`` until
    the job reaches a state for which ``until`` is true (default: it ended); return that state.

    The database is polled too, so a lost event cannot hang the command. A job marked
    interrupted there while this process still runs it (another process opening the studio
    home) is not taken as ended: this process's own worker says when it ends.
    """
    from studio.core.events import JobState, JobStateChanged

    stop = until or (lambda state: state.finished)
    next_poll = time.monotonic() + 0.5
    while True:
        try:
            item = events.get(timeout=0.1)
        except queue.Empty:
            item = None
        if item is not None and item.job_id == job_id:
            handle(item.event)
            if isinstance(item.event, JobStateChanged) and stop(item.event.state):
                return item.event.state
        if time.monotonic() >= next_poll:  # never hang on a lost event
            state = studio.job(job_id).state
            next_poll = time.monotonic() + 0.5
            if stop(state) and state != JobState.INTERRUPTED:
                while True:  # what came before it still counts
                    try:
                        item = events.get_nowait()
                    except queue.Empty:
                        return state
                    if item.job_id == job_id:
                        handle(item.event)


def _cancel(
    studio: Studio,
    job_id: str,
    saved: dict[str, Any],
    notes: list[dict[str, str]],
    as_json: bool,
) -> int:
    """Ctrl-C: cancel the job and wait (briefly) until it stopped; a second Ctrl-C gives up.

    What the job saved before it stopped stays, and is reported like a finished job's output.
    """
    print(f"{PROG}: cancelling job {job_id} ...", file=sys.stderr, flush=True)
    try:
        studio.cancel(job_id)
        record = studio.wait(job_id, timeout=30)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except TimeoutError:
        _err(f"job {job_id} did not stop within 30 s; it ends when the studio closes")
        return EXIT_INTERRUPTED
    _report(studio, record, saved, notes, as_json)
    return EXIT_INTERRUPTED


def artifact_json(record: Any) -> dict[str, Any]:
    """One artifact of a ``generate --json`` document: id, path, kind (= modality), recipe."""
    return {
        "id": record.id if hasattr(record, "id") else record.artifact_id,
        "path": str(record.path),
        "kind": record.modality,
        "modality": record.modality,
        "recipe": record.recipe,
    }


def _report(
    studio: Studio,
    record: JobRecord,
    saved: dict[str, Any],
    notes: list[dict[str, str]],
    as_json: bool,
) -> int:
    """Print a finished job's outcome (paths, or the JSON document); return the exit code."""
    from studio.core.events import JobState

    artifacts: list[dict[str, Any]] = []
    for artifact_id in dict.fromkeys([*record.artifact_ids, *saved]):
        try:
            artifacts.append(artifact_json(studio.artifact(artifact_id)))
        except KeyError:
            if artifact_id in saved:
                artifacts.append(artifact_json(saved[artifact_id]))
    code = EXIT_OK if record.state == JobState.SUCCEEDED else EXIT_FAILED
    if record.state == JobState.CANCELLED:
        code = EXIT_INTERRUPTED
    if as_json:
        _print_json(
            {"schema": JSON_SCHEMA, "job": record.to_json(), "artifacts": artifacts, "notes": notes}
        )
    else:
        for artifact in artifacts:
            sys.stdout.write(f"{artifact['path']}\n")
        if record.state == JobState.SUCCEEDED:
            took = (record.finished or 0) - (record.started or record.finished or 0)
            count = len(artifacts)
            print(
                f"job {record.id} succeeded in {took:.1f} s: "
                f"{count} artifact{'s' * (count != 1)} saved",
                file=sys.stderr,
                flush=True,
            )
    if record.state == JobState.FAILED:
        _err(f"job {record.id} failed: {record.error or 'unknown error'}")
    elif record.state != JobState.SUCCEEDED and not as_json:
        print(f"{PROG}: job {record.id} {record.state}", file=sys.stderr, flush=True)
    return code


# --- progress and streamed text on stderr --------------------------------------------------


class EventPrinter:
    """Renders job events on a text stream (stderr): a progress bar, streamed text, notes.

    On a terminal the bar is redrawn in place (at most every ``tty_interval`` seconds); otherwise
    one line per update, at most every ``line_interval`` seconds plus the last one, so logs stay
    short. Streamed text (``Partial``) is written as it comes and replaces the bar.
    """

    def __init__(
        self,
        stream: IO[str],
        *,
        quiet: bool = False,
        tty: bool | None = None,
        width: int = 28,
        tty_interval: float = 0.05,
        line_interval: float = 1.0,
        eta: Callable[[], float | None] | None = None,
    ) -> None:
        self.stream = stream
        self.quiet = quiet
        #: seconds a training still needs (shown after its loss), when known
        self.eta = eta
        self._validation: float | None = None  # the last validation loss of a training
        self.tty = stream.isatty() if tty is None else tty
        self.width = width
        self.interval = tty_interval if self.tty else line_interval
        self._last_draw = 0.0
        self._bar_len = 0  # characters of the bar now on the terminal line (tty)
        self._streaming = False  # text has been streamed: no bar any more (it would overwrite)
        self._text_index: int | None = None
        self._text_open = False  # the streamed text does not end with a newline

    def handle(self, event: Any) -> None:
        """Show one event (plugin events and the core's; the others are ignored)."""
        if self.quiet:
            return
        from studio.core.events import ArtifactSaved, Note, Partial, Progress, Sample, TrainStep

        if isinstance(event, Progress):
            self.progress(event.step, event.total, event.message)
        elif isinstance(event, Partial):
            self.text(event.text, event.index)
        elif isinstance(event, Note):
            self.line(f"{event.level}: {event.message}")
        elif isinstance(event, TrainStep):
            self.train_step(event.step, event.total, event.loss, event.validation_loss)
        elif isinstance(event, Sample):
            self.sample(event)
        elif isinstance(event, ArtifactSaved) and _is_sample(event.recipe):
            self.line(f"  saved: {event.path}")

    def train_step(
        self, step: int, total: int, loss: float, validation_loss: float | None = None
    ) -> None:
        """A training step: the bar with the loss, the last validation loss and the ETA; each
        validation also gets a line of its own, so the terminal keeps the curve."""
        if validation_loss is not None:
            self._validation = validation_loss
            of = f"/{total}" if total > 0 else ""
            self.line(f"step {step}{of}: validation loss {validation_loss:.4f} (loss {loss:.4f})")
        parts = [f"loss {loss:.4f}"]
        if self._validation is not None:
            parts.append(f"val {self._validation:.4f}")
        eta = self.eta() if self.eta is not None else None
        if eta is not None and step < total:
            parts.append(f"ETA {duration_text(eta)}")
        self.progress(step, total, "  ".join(parts))

    def sample(self, event: Any) -> None:
        """A training sample: a text sample is shown whole (indented), others by their kind."""
        output = event.output
        extra = getattr(output, "extra", None) or {}
        prompt = extra.get("prompt")
        label = f"sample {output.index + 1} at step {event.step}"
        if prompt:
            label += f" ({_shorten(str(prompt), 60)!r})"
        text = getattr(output, "text", None)
        if isinstance(text, str):
            body = "\n".join("  " + line for line in (text.strip("\n") or "(empty)").splitlines())
            self.line(f"{label}:\n{body}")
        else:
            self.line(f"{label}: {output.modality}")

    def progress(self, step: int, total: int, message: str = "") -> None:
        """Show ``step`` of ``total`` (``total`` 0: unknown)."""
        if self._streaming:
            return
        now = time.monotonic()
        last = total > 0 and step >= total
        if not last and now - self._last_draw < self.interval:
            return
        self._last_draw = now
        text = self.format_bar(step, total, message)
        if self.tty:
            columns = shutil.get_terminal_size((80, 24)).columns - 1
            text = text[:columns]
            self.stream.write("\r" + text.ljust(self._bar_len))
            self._bar_len = len(text)
            if last:
                self.stream.write("\n")
                self._bar_len = 0
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def format_bar(self, step: int, total: int, message: str = "") -> str:
        """``[#######.....]  58% 7/12 message`` (or ``step 7 message`` when total is unknown, and
        the message alone, a status line, when nothing is counted yet)."""
        if total > 0:
            fraction = min(max(step / total, 0.0), 1.0)
            filled = int(fraction * self.width)
            bar = "#" * filled + "." * (self.width - filled)
            text = f"[{bar}] {fraction * 100:3.0f}% {step}/{total}"
        elif step > 0 or not message:
            text = f"step {step}"
        else:
            return message
        return f"{text} {message}".rstrip()

    def text(self, chunk: str, index: int = 0) -> None:
        """Stream a piece of generated text (candidate ``index``)."""
        self._clear_bar()
        if self._text_index is not None and index != self._text_index:
            self.stream.write("\n" if self._text_open else "")
            self._text_open = False
        if index != self._text_index and (index > 0 or self._text_index is not None):
            self.stream.write(f"--- candidate {index + 1} ---\n")
        self._text_index = index
        self._streaming = True
        if chunk:
            self.stream.write(chunk)
            self._text_open = not chunk.endswith("\n")
        self.stream.flush()

    def line(self, message: str) -> None:
        """A whole line (a note) between the bar and the streamed text."""
        self._clear_bar()
        if self._text_open:
            self.stream.write("\n")
            self._text_open = False
        self.stream.write(message + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End the output cleanly (newline after streamed text, no half-drawn bar)."""
        if self.quiet:
            return
        self._clear_bar()
        if self._text_open:
            self.stream.write("\n")
            self._text_open = False
        self.stream.flush()

    def _clear_bar(self) -> None:
        if self.tty and self._bar_len:
            self.stream.write("\r" + " " * self._bar_len + "\r")
            self._bar_len = 0


# --- train / adapters ----------------------------------------------------------------------

#: Skipped files listed on the terminal before a training (all of them are in ``--json``).
_SKIPPED_SHOWN = 20


def duration_text(seconds: float) -> str:
    """``42s``, ``3m05s`` or ``1h02m``: a duration to read at a glance (an ETA)."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _shorten(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _say(message: str, *, quiet: bool = False) -> None:
    """One line for people on stderr (``aigc-studio: ...``); nothing with ``--json``."""
    if not quiet:
        print(f"{PROG}: {message}", file=sys.stderr, flush=True)


def resume_command(job_id: str) -> str:
    return f"{PROG} train --resume {job_id}"


def ingest_json(report: IngestReport, dataset: Path) -> dict[str, Any]:
    """The ingest report in a ``train --json`` document: the folder, the usable files and the
    skipped ones (paths relative to the folder), the trainer's notes, the manifest's hash."""
    root = Path(report.root) if report.root is not None else dataset

    def relative(path: Path) -> str:
        try:
            return Path(path).relative_to(root).as_posix()
        except ValueError:
            return str(path)

    return {
        "dataset": str(root),
        "usable": [relative(p) for p in report.usable],
        "skipped": [{"path": name, "reason": why} for name, why in report.skipped.items()],
        "notes": list(report.notes),
        "manifest_sha256": report.manifest.sha256 if report.ok else None,
    }


def ingest_text(report: IngestReport, dataset: Path, trainer: str) -> str:
    """The ingest report for people: what is used, what is skipped and why, the notes."""
    root = Path(report.root) if report.root is not None else dataset
    used, skipped = len(report.usable), len(report.skipped)
    lines = [
        f"dataset {root} (trainer {trainer}): {used} usable file{'s' * (used != 1)}, "
        f"{skipped} skipped"
    ]
    for name, reason in list(report.skipped.items())[:_SKIPPED_SHOWN]:
        lines.append(f"  skipped {name}: {reason}")
    if skipped > _SKIPPED_SHOWN:
        lines.append(f"  ... and {skipped - _SKIPPED_SHOWN} more skipped (all of them in --json)")
    lines.extend(f"  note: {note}" for note in report.notes)
    return "\n".join(lines) + "\n"


def _no_usable_files(report: IngestReport, dataset: Path, trainer: str) -> str:
    if not report.skipped:
        return f"no usable files in {dataset} for trainer {trainer!r}: the folder is empty"
    shown = "; ".join(f"{k}: {v}" for k, v in list(report.skipped.items())[:5])
    more = len(report.skipped) - 5
    return f"no usable files in {dataset} for trainer {trainer!r}: skipped {shown}" + (
        f" (and {more} more)" if more > 0 else ""
    )


def cmd_train(args: argparse.Namespace) -> int:
    """``aigc-studio train``: check the request and the data (the ingest report), train with
    progress on stderr, print the adapter; Ctrl-C pauses. ``--resume JOB_ID`` goes on."""
    if args.resume is not None:
        return _train_resume(args)
    if args.trainer is None:
        raise CliUsageError(
            f"name the TRAINER to train with (its id, as '{PROG} plugins' lists it), or "
            "--resume JOB_ID"
        )
    if args.help_options:
        host = load_plugin_host()
        with _hinted_errors(host):
            cls = host.find_trainer(args.trainer)
        hint_failed_plugins(host)
        sys.stdout.write(trainer_options_help(cls))
        return EXIT_OK
    request = _training_request(args)
    with open_studio(start_workers=False) as studio:
        with _hinted_errors(studio.plugins):  # every check before anything is queued or runs
            cls = studio.plugins.find_trainer(request.trainer)
            if request.base_model and not cls.uses_model:
                raise CliUsageError(
                    f"trainer {cls.id!r} uses no base model (it learns from your files alone): "
                    f"remove --base {request.base_model}"
                )
            if cls.uses_model and not request.base_model and not cls.default_model:
                raise CliUsageError(
                    f"trainer {cls.id!r} has no default base model: name the model to train on "
                    "with --base REF (a hub id, a local folder or a .safetensors file)"
                )
            report = studio.check_training(request)
            if not report.ok:
                raise CliUsageError(_no_usable_files(report, request.dataset, cls.id))
        hint_failed_plugins(studio.plugins, quiet=args.json)
        if not args.json:
            sys.stderr.write(ingest_text(report, request.dataset, cls.id))
            sys.stderr.flush()
        if any(a.name == request.name for a in studio.adapters()):
            _say(
                f"warning: the library has an adapter named {request.name!r} already: --lora "
                f"{request.name} will mean the new one (the older one keeps its id)",
                quiet=args.json,
            )
        studio.start(adopt_queue=False)  # a one-shot command runs only its own job
        return run_training(
            studio, lambda: studio.submit_training(request), report=report, as_json=args.json
        )


def _training_request(args: argparse.Namespace) -> TrainingRequest:
    """A :class:`TrainingRequest` from ``train`` arguments (syntax checks only)."""
    from pydantic import ValidationError

    from studio.core.options import parse_set_pairs
    from studio.core.training import TrainingRequest

    missing = [
        flag for flag, value in (("--data DIR", args.data), ("--name NAME", args.name)) if not value
    ]
    if missing:
        raise CliUsageError(f"train {args.trainer}: give {' and '.join(missing)}")
    data = Path(args.data).expanduser()
    if not data.exists():
        raise CliUsageError(f"--data {args.data}: no such folder ({data.absolute()})")
    if not data.is_dir():
        raise CliUsageError(
            f"--data {args.data} is a file: give the folder holding the files to learn from"
        )
    options = parse_set_pairs(list(args.set))
    try:
        return TrainingRequest(
            trainer=args.trainer,
            base_model=args.base,
            dataset=data.resolve(),
            name=args.name.strip(),
            options=options,
        )
    except ValidationError as exc:
        raise CliUsageError(_pydantic_message(exc)) from None


def _train_resume(args: argparse.Namespace) -> int:
    """``train --resume JOB_ID``: re-queue a stopped training; it goes on from its last
    complete checkpoint (the trainer checks it was made by the same run)."""
    from pydantic import ValidationError

    from studio.core.events import JobState
    from studio.core.records import JobKind
    from studio.core.training import TrainingRequest

    given = [
        flag
        for flag, value in (
            ("TRAINER", args.trainer),
            ("--base", args.base),
            ("--data", args.data),
            ("--name", args.name),
            ("--set", args.set),
            ("--help-options", args.help_options),
        )
        if value
    ]
    if given:
        raise CliUsageError(
            f"--resume goes on with the training's own trainer, data and options: remove "
            f"{', '.join(given)}"
        )
    with open_studio(start_workers=False) as studio:
        record = _find_job(studio, args.resume)
        job_id = record.id
        if record.kind != JobKind.TRAIN:
            raise CliUsageError(
                f"job {job_id} is a {record.kind} job, not a training: only trainings resume"
            )
        checkpoint = studio.checkpoint_step(job_id)
        state = record.state
        if state == JobState.SUCCEEDED:
            raise CliUsageError(
                f"training job {job_id} has finished: its adapter is in the library "
                f"('{PROG} adapters')"
            )
        live = state in (JobState.QUEUED, JobState.RUNNING, JobState.PAUSED)
        if live or _running_elsewhere(studio, job_id):  # (marked interrupted, yet it runs)
            raise CliUsageError(
                f"training job {job_id} is {state if live else 'running'} in another studio "
                "process (the window, or another command): pause or resume it there"
            )
        if state in (JobState.FAILED, JobState.CANCELLED) and checkpoint is None:
            raise CliUsageError(
                f"training job {job_id} was {state} before its first checkpoint: nothing to "
                f"resume; start a new training ('{PROG} train {record.component} ...')"
            )
        try:
            request = TrainingRequest.model_validate(record.request)
        except ValidationError as exc:
            raise CliUsageError(f"the stored request of job {job_id} is damaged: {exc}") from None
        with _hinted_errors(studio.plugins):
            report = studio.check_training(request, job_id=job_id)
            if not report.ok:
                raise CliUsageError(_no_usable_files(report, request.dataset, request.trainer))
        hint_failed_plugins(studio.plugins, quiet=args.json)
        if not args.json:
            sys.stderr.write(ingest_text(report, request.dataset, request.trainer))
            where = (
                f"its checkpoint of step {checkpoint}"
                if checkpoint is not None
                else "the beginning (it has no checkpoint)"
            )
            _say(f"resuming training job {job_id} ({request.name!r}, {state}) from {where}")
        studio.start(adopt_queue=False)

        def submit() -> str:
            if not studio.resume(job_id):
                raise CliUsageError(f"training job {job_id} cannot be resumed now")
            return job_id

        return run_training(studio, submit, report=report, as_json=args.json)


def _find_job(studio: Studio, ref: str) -> JobRecord:
    """A job by its id, or by the start of it when that is unique among the recent jobs."""
    try:
        return studio.job(ref)
    except KeyError:
        pass
    found = [r for r in studio.jobs() if ref and r.id.startswith(ref)]
    if len(found) == 1:
        return found[0]
    if found:
        raise CliUsageError(
            f"job id {ref!r} is ambiguous: {', '.join(r.id for r in found[:5])}; give more of it"
        )
    raise CliUsageError(f"no job {ref!r}; '{PROG} jobs' lists them")


def _is_sample(recipe: Any) -> bool:
    """Whether a saved artifact's recipe is a training's sample."""
    from studio.core.records import SAMPLE_KIND

    return isinstance(recipe, dict) and recipe.get("kind") == SAMPLE_KIND


class TrainingWatch:
    """What a ``train`` command saw of its job: the last step, samples, notes, the adapter."""

    def __init__(self) -> None:
        self.step: dict[str, Any] | None = None
        self.validation_loss: float | None = None
        self.samples: list[dict[str, Any]] = []
        self.notes: list[dict[str, str]] = []
        self.adapter_id: str | None = None

    def add(self, event: Any) -> None:
        from studio.core.events import (
            AdapterOutput,
            ArtifactSaved,
            Note,
            Result,
            Sample,
            TextOutput,
            TrainStep,
        )

        if isinstance(event, TrainStep):
            if event.validation_loss is not None:
                self.validation_loss = event.validation_loss
            self.step = {
                "step": event.step,
                "total": event.total,
                "loss": event.loss,
                "lr": event.lr,
                "validation_loss": self.validation_loss,
            }
        elif isinstance(event, Note):
            self.notes.append({"level": event.level, "message": event.message})
        elif isinstance(event, Sample):
            output = event.output
            sample: dict[str, Any] = {
                "step": event.step,
                "index": output.index,
                "modality": output.modality,
                "seed": output.seed,
            }
            if isinstance(output, TextOutput):
                sample["text"] = output.text
            prompt = output.extra.get("prompt")
            if prompt is not None:
                sample["prompt"] = prompt
            sample["path"] = None  # until the studio saved it
            self.samples.append(sample)
        elif isinstance(event, ArtifactSaved) and _is_sample(event.recipe):
            training = event.recipe.get("training") or {}
            step, index = training.get("step"), event.recipe.get("index")
            for sample in reversed(self.samples):
                if sample["step"] == step and sample["index"] == index:
                    sample["path"] = str(event.path)
                    break
        elif isinstance(event, Result) and isinstance(event.output, AdapterOutput):
            adapter_id = event.output.extra.get("adapter_id")
            self.adapter_id = adapter_id if isinstance(adapter_id, str) else None


def run_training(
    studio: Studio, submit: Callable[[], str], *, report: IngestReport, as_json: bool
) -> int:
    """Submit (or resume) a training, show its progress until it ends, then the adapter.

    Ctrl-C pauses it at its next step boundary and says how to resume it; a second Ctrl-C
    (while it gets there) cancels it.
    """
    events: queue.Queue[Any] = queue.Queue()
    unsubscribe = studio.subscribe(events.put)
    watch = TrainingWatch()
    job_id: str | None = None

    def eta() -> float | None:
        return None if job_id is None else studio.eta(job_id)

    printer = EventPrinter(sys.stderr, quiet=as_json, eta=eta)

    def handle(event: Any) -> None:
        watch.add(event)
        printer.handle(event)

    with contextlib.ExitStack() as stack:
        stack.callback(unsubscribe)
        try:
            job_id = submit()  # events that come before it returns wait in the queue
            stack.enter_context(_running_here(studio, job_id))
            _say(
                f"training job {job_id}: Ctrl-C pauses it, '{resume_command(job_id)}' goes on",
                quiet=as_json,
            )
            follow_job(studio, job_id, events, handle)
        except KeyboardInterrupt:
            printer.close()
            if job_id is None:
                raise
            return _pause_training(studio, job_id, events, handle, printer, watch, report, as_json)
        printer.close()
        record = studio.wait(job_id, timeout=10)
        return _training_report(studio, record, watch, report, as_json)
    raise AssertionError("unreachable")  # for mypy: the with block returns or raises


def _run_lock(studio: Studio, job_id: str) -> Any:
    """The lock file a command holds while it runs training ``job_id``."""
    from studio.core.studio import HomeLock

    studio.paths.checkpoints.mkdir(parents=True, exist_ok=True)
    return HomeLock(studio.paths.checkpoints / f"{job_id}.running")


@contextmanager
def _running_here(studio: Studio, job_id: str) -> Iterator[None]:
    """Say (with a lock file) that this process runs training ``job_id``, while it does.

    Another command opening the studio home marks the jobs of a command that holds no queue as
    interrupted; ``train --resume`` must not start a second run of a training that still runs.
    """
    lock = _run_lock(studio, job_id)
    held = lock.acquire()
    try:
        yield
    finally:
        if held:
            lock.release()
            Path(lock.path).unlink(missing_ok=True)


def _running_elsewhere(studio: Studio, job_id: str) -> bool:
    """Whether another command holds training ``job_id``'s run lock (it is running there)."""
    lock = _run_lock(studio, job_id)
    if not lock.acquire():
        return True
    lock.release()
    return False


def _pause_training(
    studio: Studio,
    job_id: str,
    events: queue.Queue[Any],
    handle: Callable[[Any], None],
    printer: EventPrinter,
    watch: TrainingWatch,
    report: IngestReport,
    as_json: bool,
) -> int:
    """Ctrl-C: pause the training at its next step boundary; say how to resume it. A second
    Ctrl-C cancels it (its checkpoints stay: it can still be resumed)."""
    from studio.core.events import JobState

    _say(
        f"pausing training job {job_id} at its next step (Ctrl-C again cancels it) ...",
        quiet=as_json,
    )
    try:
        if studio.pause(job_id):
            state = follow_job(
                studio, job_id, events, handle, until=lambda s: s == JobState.PAUSED or s.finished
            )
        else:
            state = studio.job(job_id).state
    except KeyboardInterrupt:
        printer.close()
        return _cancel_training(studio, job_id, watch, report, as_json)
    printer.close()
    record = studio.job(job_id)
    if state.finished:  # it ended before it got to a step boundary: as it ended
        return _training_report(studio, record, watch, report, as_json)
    checkpoint = studio.checkpoint_step(job_id)
    if as_json:
        _print_json(_training_document(studio, record, watch, report, checkpoint))
    else:
        at = f"step {record.step} of {record.total}" if record.total else "its start"
        kept = (
            f"its last checkpoint is step {checkpoint}"
            + (" (the steps after it are trained again)" if checkpoint < record.step else "")
            if checkpoint is not None
            else "it has no checkpoint yet: a resume starts it from the beginning"
        )
        _say(f"paused training job {job_id} at {at}; {kept}")
        _say(f"resume it with: {resume_command(job_id)}")
    return EXIT_INTERRUPTED


def _cancel_training(
    studio: Studio, job_id: str, watch: TrainingWatch, report: IngestReport, as_json: bool
) -> int:
    """A second Ctrl-C: cancel the training (what it checkpointed stays, resumable)."""
    _say(f"cancelling training job {job_id} ...", quiet=as_json)
    try:
        studio.cancel(job_id)
        record = studio.wait(job_id, timeout=30)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except TimeoutError:
        _err(f"job {job_id} did not stop within 30 s; it ends when the studio closes")
        return EXIT_INTERRUPTED
    _training_report(studio, record, watch, report, as_json)
    return EXIT_INTERRUPTED


def _training_document(
    studio: Studio,
    record: JobRecord,
    watch: TrainingWatch,
    report: IngestReport,
    checkpoint: int | None,
) -> dict[str, Any]:
    """The ``train --json`` document (schema 1)."""
    from studio.core.events import JobState

    adapter = _adapter_of(studio, record.id, watch.adapter_id)
    resumable = record.state != JobState.SUCCEEDED and (
        checkpoint is not None or record.state in (JobState.PAUSED, JobState.INTERRUPTED)
    )
    dataset = Path(record.request.get("dataset") or ".")
    return {
        "schema": JSON_SCHEMA,
        "job": record.to_json(),
        "ingest": ingest_json(report, dataset),
        "progress": watch.step,
        "samples": watch.samples,
        "notes": watch.notes,
        "adapter": None if adapter is None else adapter_json(studio, adapter),
        "checkpoint_step": checkpoint,
        "resume": resume_command(record.id) if resumable else None,
    }


def _adapter_of(studio: Studio, job_id: str, adapter_id: str | None) -> AdapterRecord | None:
    """The adapter a training job saved (``None``: none yet)."""
    adapters = studio.adapters()
    found = next((a for a in adapters if adapter_id and a.id == adapter_id), None)
    return found or next((a for a in adapters if a.job_id == job_id), None)


def _training_report(
    studio: Studio,
    record: JobRecord,
    watch: TrainingWatch,
    report: IngestReport,
    as_json: bool,
) -> int:
    """Print how a training ended: the adapter and how to use it, or why it did not finish."""
    from studio.core.events import JobState

    checkpoint = None if record.state == JobState.SUCCEEDED else studio.checkpoint_step(record.id)
    code = {JobState.SUCCEEDED: EXIT_OK, JobState.CANCELLED: EXIT_INTERRUPTED}.get(
        record.state, EXIT_FAILED
    )
    if as_json:
        _print_json(_training_document(studio, record, watch, report, checkpoint))
    if record.state == JobState.SUCCEEDED:
        adapter = _adapter_of(studio, record.id, watch.adapter_id)
        if not as_json:
            _adapter_summary(studio, record, adapter)
        return code
    if record.state == JobState.FAILED:
        _err(f"job {record.id} failed: {record.error or 'unknown error'}")
    elif not as_json:
        _say(f"training job {record.id} {record.state}")
    if checkpoint is not None and not as_json:
        _say(f"its checkpoint of step {checkpoint} is kept: '{resume_command(record.id)}' goes on")
    return code


def _adapter_summary(studio: Studio, record: JobRecord, adapter: AdapterRecord | None) -> None:
    """stdout: the adapter's path; stderr: what it is, where, and how to use it."""
    took = (record.finished or 0) - (record.started or record.finished or 0)
    if adapter is None:
        print(
            f"job {record.id} succeeded in {took:.1f} s but saved no adapter",
            file=sys.stderr,
            flush=True,
        )
        return
    sys.stdout.write(f"{adapter.path}\n")
    sys.stdout.flush()
    info = adapter_json(studio, adapter)
    lines = [
        f"job {record.id} succeeded in {took:.1f} s: adapter {adapter.name!r} is in the library",
        f"  path: {adapter.path}",
    ]
    trained = _training_text(info["training"])
    if trained:
        lines.append(f"  training: {trained}")
    if info["use"]:
        lines.append(f"use it: {info['use']}")
    else:
        lines.append("no installed generator takes it (none accepts adapters of its kind)")
    print("\n".join(lines), file=sys.stderr, flush=True)


def _training_text(training: dict[str, Any]) -> str:
    """``120 steps, validation loss 2.3100 (best 2.2800)``: a training recipe's summary."""
    parts = []
    if training.get("steps") is not None:
        parts.append(f"{training['steps']} steps")
    final, best = training.get("validation_loss"), training.get("best_validation_loss")
    if final is not None:
        text = f"validation loss {final:.4f}"
        if best is not None and best != final:
            text += f" (best {best:.4f})"
        parts.append(text)
    return ", ".join(parts)


def training_summary(adapter: AdapterRecord, recipe: dict[str, Any] | None) -> dict[str, Any]:
    """Steps and the final and best validation losses of an adapter's training, from its
    training recipe (its ``result``) or, without one, from what the trainer reported."""
    result = (recipe or {}).get("result")
    result = result if isinstance(result, dict) else {}
    extra = adapter.extra

    def number(*values: Any) -> float | None:
        for value in values:
            if isinstance(value, int | float) and not isinstance(value, bool):
                return value
        return None

    steps = number(result.get("steps"), extra.get("steps"))
    return {
        "steps": None if steps is None else int(steps),
        "validation_loss": number(
            result.get("validation_last"),
            result.get("exported_validation"),
            extra.get("validation_loss"),
        ),
        "best_validation_loss": number(result.get("validation_best")),
        "best_step": number(result.get("best_step")),
    }


def _usable_with(studio: Studio, adapter: AdapterRecord) -> list[Any]:
    """The installed generators that apply ``adapter``: the ones it names, else those that
    load a model and take adapters of its modality."""
    generators = studio.plugins.generators
    if adapter.generators:
        found = [generators[g] for g in adapter.generators if g in generators]
    elif adapter.base_model is None:
        return []
    else:  # those loading a model, the ones whose default model is its base model first
        found = [g for g in generators.values() if g.modality == adapter.modality and g.uses_model]
        found.sort(key=lambda g: g.default_model != adapter.base_model)
    return [g for g in found if g.supports_lora]


def adapter_usage(studio: Studio, adapter: AdapterRecord) -> str | None:
    """The command that uses ``adapter`` (``aigc-studio generate GEN [--model BASE] --lora
    NAME``), or ``None`` when no installed generator takes it."""
    import shlex

    usable = _usable_with(studio, adapter)
    if not usable:
        return None
    cls = usable[0]
    newest = next((a for a in studio.adapters() if a.name == adapter.name), None)
    ref = adapter.name if newest is not None and newest.id == adapter.id else adapter.id
    parts = [PROG, "generate", cls.id]
    if adapter.base_model and cls.uses_model and adapter.base_model != cls.default_model:
        parts += ["--model", adapter.base_model]
    parts += ["--lora", ref]
    command = " ".join(shlex.quote(p) for p in parts)
    return command + (" --prompt TEXT" if cls.prompt_required else "")


def adapter_json(studio: Studio, adapter: AdapterRecord) -> dict[str, Any]:
    """One adapter as ``adapters --json`` (and ``train --json``) show it."""
    recipe = studio.training_recipe(adapter)
    trainer = (recipe or {}).get("trainer") or adapter.extra.get("trainer")
    if not trainer and adapter.job_id:
        try:
            trainer = studio.job(adapter.job_id).component
        except KeyError:
            trainer = None
    return {
        "id": adapter.id,
        "name": adapter.name,
        "trainer": trainer,
        "modality": adapter.modality,
        "base_model": adapter.base_model,
        "generators": list(adapter.generators),
        "usable_with": [g.id for g in _usable_with(studio, adapter)],
        "created": adapter.created,
        "path": str(adapter.path),
        "sha256": adapter.sha256,
        "job_id": adapter.job_id,
        "training": training_summary(adapter, recipe),
        "use": adapter_usage(studio, adapter),
        "recipe": recipe,
        "extra": adapter.extra,
    }


def cmd_adapters(args: argparse.Namespace) -> int:
    """``aigc-studio adapters``: the adapter library, newest first."""
    with open_studio(start_workers=False) as studio:
        documents = [adapter_json(studio, a) for a in studio.adapters()]
        hint_failed_plugins(studio.plugins, quiet=args.json)
    if args.json:
        _print_json({"schema": JSON_SCHEMA, "adapters": documents})
        return EXIT_OK
    if not documents:
        sys.stdout.write(f"no adapters; train one with '{PROG} train TRAINER ...'\n")
        return EXIT_OK
    rows = []
    for a in documents:
        training = a["training"]
        final, best = training["validation_loss"], training["best_validation_loss"]
        loss = "-" if final is None else f"{final:.4f}"
        if best is not None:
            loss += f" / {best:.4f}"
        rows.append(
            [
                a["name"],
                a["trainer"] or "-",
                a["base_model"] or "(none)",
                ", ".join(a["usable_with"] or a["generators"]) or "-",
                time.strftime("%Y-%m-%d %H:%M", time.localtime(a["created"])),
                "-" if training["steps"] is None else str(training["steps"]),
                loss,
                a["path"],
            ]
        )
    headers = [
        "name",
        "trainer",
        "base model",
        "for",
        "created",
        "steps",
        "val loss (final / best)",
        "path",
    ]
    sys.stdout.write(_table(headers, rows))
    return EXIT_OK


# --- models / jobs -------------------------------------------------------------------------


def cmd_models(args: argparse.Namespace) -> int:
    """``aigc-studio models``: the hub cache, the studio library, the catalog (not downloaded)."""
    from studio.core.units import human_size

    with open_studio(load_plugins=False, start_workers=False) as studio:
        entries = studio.models()
    if args.json:
        _print_json({"schema": JSON_SCHEMA, "models": [e.to_json() for e in entries]})
        return EXIT_OK
    if not entries:
        sys.stdout.write("no models found\n")
        return EXIT_OK
    rows = [
        [
            e.ref,
            e.source,
            e.kind or "-",
            e.modality or "-",
            human_size(e.size_bytes, unknown="-"),
            "yes" if e.downloaded else "no",
        ]
        for e in entries
    ]
    sys.stdout.write(_table(["ref", "source", "kind", "modality", "size", "downloaded"], rows))
    return EXIT_OK


def cmd_jobs(args: argparse.Namespace) -> int:
    """``aigc-studio jobs``: recent jobs, newest first."""
    with open_studio(load_plugins=False, start_workers=False) as studio:
        records = studio.jobs()
    if args.json:
        _print_json({"schema": JSON_SCHEMA, "jobs": [r.to_json() for r in records]})
        return EXIT_OK
    if not records:
        sys.stdout.write("no jobs\n")
        return EXIT_OK
    rows = []
    for r in records:
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.created))
        progress = f"{r.step}/{r.total}" if r.total else "-"
        error = (r.error or "").splitlines()[0][:60] if r.error else ""
        rows.append(
            [
                r.id,
                str(r.kind),
                str(r.state),
                r.component,
                created,
                progress,
                str(len(r.artifact_ids)),
                error,
            ]
        )
    headers = ["id", "kind", "state", "component", "created", "progress", "artifacts", "error"]
    sys.stdout.write(_table(headers, rows))
    return EXIT_OK


def cmd_datasets(args: argparse.Namespace) -> int:
    """``aigc-studio datasets``: the dataset library, most recently used first."""
    from studio.core.units import human_size

    with open_studio(load_plugins=False, start_workers=False) as studio:
        records = studio.datasets()
    if args.json:
        _print_json({"schema": JSON_SCHEMA, "datasets": [r.to_json() for r in records]})
        return EXIT_OK
    if not records:
        sys.stdout.write("no datasets (a training records the folder it learns from)\n")
        return EXIT_OK
    rows = [
        [
            r.id,
            r.name,
            str(r.files),
            human_size(r.bytes),
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.last_used)),
            r.manifest_sha256[:12],
            str(r.folder),
        ]
        for r in records
    ]
    headers = ["id", "name", "files", "size", "last used", "manifest", "folder"]
    sys.stdout.write(_table(headers, rows))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
