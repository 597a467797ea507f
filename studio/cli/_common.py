"""What every command shares: exit codes, usage errors, messages, loading plugins, the studio."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from studio.core.plugins import PluginHost, PluginInfo
    from studio.core.studio import Studio


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
