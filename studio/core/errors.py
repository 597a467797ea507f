"""Errors the studio raises on purpose. Each message names the problem and what is allowed."""

from __future__ import annotations


class StudioError(Exception):
    """Base class: an error the user can act on (shown as one line, no traceback)."""


class InvalidRequest(StudioError):
    """The request is wrong before any model work starts (unknown generator, bad options, ...)."""


class UsageError(InvalidRequest):
    """The command line or API was called wrongly (a malformed argument)."""


class OptionsError(InvalidRequest):
    """Options failed validation. ``field`` names the offending option (``None`` for the whole)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class PluginVersionMismatch(InvalidRequest):
    """A recipe's plugin is installed in another version: the output may differ.

    ``plugin`` is the plugin's name, ``recorded`` the version in the recipe, ``installed`` the
    version now installed. ``Studio.regenerate(..., allow_other_version=True)`` proceeds anyway.
    """

    def __init__(self, message: str, *, plugin: str, recorded: str, installed: str) -> None:
        super().__init__(message)
        self.plugin = plugin
        self.recorded = recorded
        self.installed = installed


class ModelNotFound(StudioError):
    """A model reference does not resolve to weights (not cached offline, missing folder, ...)."""


class UnsafeWeightsError(StudioError):
    """Pickle-based weights were refused (they can run arbitrary code when loaded)."""


class PluginError(StudioError):
    """A plugin failed to import, register or run.

    ``plugin`` names the plugin when known. In strict mode (``STUDIO_STRICT_PLUGINS=1``) the
    error is chained (``raise ... from``) to the original exception and ``traceback`` holds that
    exception's formatted traceback, for the command line to print.
    """

    def __init__(
        self, message: str, *, plugin: str | None = None, traceback: str | None = None
    ) -> None:
        super().__init__(message)
        self.plugin = plugin
        self.traceback = traceback


class Cancelled(Exception):
    """Raised inside a job when its cancel flag is set; the job ends as cancelled."""


def one_line(exc: BaseException) -> str:
    """An exception as one line for the user: the message (with its type unless ours)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, StudioError) and text:
        return text
    name = type(exc).__name__
    return f"{name}: {text}" if text else name
