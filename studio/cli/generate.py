"""``aigc-studio generate`` and ``regenerate``: the request from the arguments, options help."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.cli._common import (
    EXIT_OK,
    PROG,
    CliUsageError,
    _hinted_errors,
    _pydantic_message,
    hint_failed_plugins,
    load_plugin_host,
    open_studio,
)
from studio.cli.output import run_job

if TYPE_CHECKING:
    from studio.core.generator import GenerationRequest, Generator
    from studio.core.plugins import GeneratorChoice
    from studio.core.studio import Studio
    from studio.core.training import Trainer


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
