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
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

# The commands live in modules by job; this module parses the arguments and dispatches. The names
# below are re-exported: tests and callers import them from ``studio.cli``.
from studio.cli._common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    JSON_SCHEMA,
    PROG,
    CliUsageError,
    _err,
    _Parser,
    _plugin_load_warnings_muted,
    _silence_stdout,
    _strict_plugin_failure,
    _usage_error,
)
from studio.cli.generate import (
    _maybe_extend_generate_help,
    build_request,
    cmd_generate,
    cmd_regenerate,
    options_help,
    trainer_options_help,
)
from studio.cli.gui import cmd_gui, display_problem
from studio.cli.library import cmd_adapters, cmd_datasets, cmd_jobs, cmd_models
from studio.cli.output import EventPrinter, duration_text, follow_job, run_job
from studio.cli.plugins import (
    _model_cell,
    cmd_install,
    cmd_plugins,
    cmd_uninstall,
    plugins_document,
)
from studio.cli.train import TrainingWatch, cmd_train, run_training

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "JSON_SCHEMA",
    "PROG",
    "CliUsageError",
    "EventPrinter",
    "TrainingWatch",
    "_model_cell",
    "build_parser",
    "build_request",
    "cmd_gui",
    "display_problem",
    "duration_text",
    "follow_job",
    "main",
    "options_help",
    "plugins_document",
    "run_job",
    "run_training",
    "trainer_options_help",
]


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
