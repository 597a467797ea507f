"""The Qt binding in use must not leak references to None (PySide6 6.12.0 on CPython 3.11 does,
and the process then aborts with 'none_dealloc' after a few thousand calls)."""

from __future__ import annotations

import sys

from PySide6.QtCore import QObject


def test_void_methods_do_not_drop_references_to_none() -> None:
    probe = QObject()
    before = sys.getrefcount(None)
    for _ in range(2000):
        probe.setObjectName("probe")
    assert sys.getrefcount(None) >= before, "this PySide6 build leaks None: see constraints.txt"
