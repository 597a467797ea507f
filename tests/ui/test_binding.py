"""The Qt binding in use must not leak references to None (PySide6 6.12.0 on CPython 3.11 does,
and the process then aborts with 'none_dealloc' after a few thousand calls)."""

from __future__ import annotations

import sys

import pytest
from PySide6.QtCore import QObject


@pytest.mark.skipif(
    sys.version_info >= (3, 12),
    reason="None is immortal from Python 3.12 (PEP 683): its reference count never changes, so "
    "a binding that drops references to it can neither abort the process nor be seen here",
)
def test_void_methods_do_not_drop_references_to_none() -> None:
    probe = QObject()
    before = sys.getrefcount(None)
    for _ in range(2000):
        probe.setObjectName("probe")
    assert sys.getrefcount(None) >= before, "this PySide6 build leaks None: see constraints.txt"
