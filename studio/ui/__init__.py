"""The desktop window (PySide6). All Qt code of the studio lives in this package."""
