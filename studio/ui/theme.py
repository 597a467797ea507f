"""Light and dark themes (Fusion style, a palette, and a small stylesheet from resources/styles).

``system`` follows the desktop's colour scheme when Qt can tell it, light otherwise.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication

from studio.core.paths import resources_dir


def effective_theme(theme: str) -> str:
    """``light`` or ``dark`` for a setting of ``system``, ``light`` or ``dark``."""
    if theme in ("light", "dark"):
        return theme
    app = QGuiApplication.instance()
    if isinstance(app, QGuiApplication):
        scheme = app.styleHints().colorScheme()
        if scheme == Qt.ColorScheme.Dark:
            return "dark"
    return "light"


def palette_for(theme: str) -> QPalette:
    pal = QPalette()
    if theme == "dark":
        colors = {
            QPalette.ColorRole.Window: "#23262c",
            QPalette.ColorRole.WindowText: "#e6e6e6",
            QPalette.ColorRole.Base: "#1b1d22",
            QPalette.ColorRole.AlternateBase: "#272a31",
            QPalette.ColorRole.Text: "#e6e6e6",
            QPalette.ColorRole.Button: "#2d3138",
            QPalette.ColorRole.ButtonText: "#e6e6e6",
            QPalette.ColorRole.Highlight: "#3d7eff",
            QPalette.ColorRole.HighlightedText: "#ffffff",
            QPalette.ColorRole.ToolTipBase: "#2d3138",
            QPalette.ColorRole.ToolTipText: "#e6e6e6",
            QPalette.ColorRole.PlaceholderText: "#8a8f98",
            QPalette.ColorRole.Link: "#7aa7ff",
            QPalette.ColorRole.Mid: "#3a3e46",
            QPalette.ColorRole.Dark: "#15171b",
            QPalette.ColorRole.Light: "#3a3e46",
        }
    else:
        colors = {
            QPalette.ColorRole.Window: "#f3f4f6",
            QPalette.ColorRole.WindowText: "#1d1f23",
            QPalette.ColorRole.Base: "#ffffff",
            QPalette.ColorRole.AlternateBase: "#f0f2f5",
            QPalette.ColorRole.Text: "#1d1f23",
            QPalette.ColorRole.Button: "#e9ebef",
            QPalette.ColorRole.ButtonText: "#1d1f23",
            QPalette.ColorRole.Highlight: "#2f6fed",
            QPalette.ColorRole.HighlightedText: "#ffffff",
            QPalette.ColorRole.ToolTipBase: "#ffffff",
            QPalette.ColorRole.ToolTipText: "#1d1f23",
            QPalette.ColorRole.PlaceholderText: "#8a8f98",
            QPalette.ColorRole.Link: "#2f6fed",
            QPalette.ColorRole.Mid: "#c9cdd4",
            QPalette.ColorRole.Dark: "#a0a4ab",
            QPalette.ColorRole.Light: "#ffffff",
        }
    for role, color in colors.items():
        pal.setColor(role, QColor(color))
    for role in (
        QPalette.ColorRole.Text,
        QPalette.ColorRole.WindowText,
        QPalette.ColorRole.ButtonText,
    ):
        pal.setColor(
            QPalette.ColorGroup.Disabled, role, QColor("#6b7079" if theme == "dark" else "#a3a7ae")
        )
    return pal


def stylesheet_for(theme: str) -> str:
    """resources/styles/common.qss followed by the theme's own file (missing files are skipped)."""
    parts = []
    try:
        styles = resources_dir() / "styles"
    except FileNotFoundError:
        return ""
    for name in ("common.qss", f"{theme}.qss"):
        path = styles / name
        if path.is_file():
            parts.append(path.read_text(encoding="utf-8"))
    return "\n".join(parts)


def apply_theme(theme: str, app: QApplication | None = None) -> str:
    """Apply ``system`` / ``light`` / ``dark`` to the application; returns the one applied."""
    app = app or QApplication.instance()  # type: ignore[assignment]
    if not isinstance(app, QApplication):
        return "light"
    chosen = effective_theme(theme)
    app.setStyle("Fusion")
    app.setPalette(palette_for(chosen))
    app.setStyleSheet(stylesheet_for(chosen))
    return chosen
