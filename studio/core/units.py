"""Quantities for people: the one way the studio writes a size in bytes.

Every size the studio shows (the window, the command line, download progress, plugin messages
through ``studio.human_size``) goes through :func:`human_size`, so the same file never reads as
"1.5 KB" in one place and "1.5 kB" or "1.4 KB" in another.
"""

from __future__ import annotations

_UNITS = ("B", "kB", "MB", "GB", "TB")


def human_size(n: float | None, unknown: str = "?") -> str:
    """Bytes for people, in decimal (SI) units: ``512`` -> ``512 B``, ``1536`` -> ``1.5 kB``,
    ``3_200_000_000`` -> ``3.2 GB``; ``None`` -> ``unknown``.

    Decimal, powers of 1000 with the SI symbols (kB, MB, GB, TB), because that is how the sizes a
    user compares ours with are written: the Hugging Face hub and model cards, the model catalog
    and the guides, and the file managers of macOS and Linux desktops. Whole bytes are written as
    integers, everything larger with one decimal; ``TB`` is the largest unit.
    """
    if n is None:
        return unknown
    value = float(n)
    for unit in _UNITS:
        # compared as written (one decimal), so 999_960 is "1.0 MB", never "1000.0 kB"
        if abs(round(value, 1)) < 1000 or unit == _UNITS[-1]:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable: the last unit always returns")  # pragma: no cover
