"""The one human_size: decimal (SI) units everywhere the studio shows a size."""

from __future__ import annotations

import pytest

import studio
from studio.core.units import human_size


@pytest.mark.parametrize(
    ("n", "shown"),
    [
        (0, "0 B"),
        (999, "999 B"),
        (1000, "1.0 kB"),
        (1536, "1.5 kB"),
        (999_949, "999.9 kB"),
        (999_960, "1.0 MB"),  # rounded as written: never "1000.0 kB"
        (724_000_000, "724.0 MB"),  # as the hub and the catalog write the model's size
        (3_200_000_000, "3.2 GB"),
        (2 * 10**15, "2000.0 TB"),  # the largest unit
        (-2048, "-2.0 kB"),
        (1.5e9, "1.5 GB"),
    ],
)
def test_sizes_are_written_in_decimal_units(n: float, shown: str) -> None:
    assert human_size(n) == shown


def test_an_unknown_size_and_the_public_name() -> None:
    assert human_size(None) == "?"
    assert human_size(None, unknown="-") == "-"
    assert studio.human_size is human_size  # what plugins use
