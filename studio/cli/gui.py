"""``aigc-studio`` with no command: the desktop window, after checking there is a display."""

from __future__ import annotations

import argparse
import os
import sys

from studio.cli._common import EXIT_FAILED, PROG


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
