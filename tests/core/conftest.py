"""Fixtures shared by the core tests: a studio running the fake plugin, a tiny dataset."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from studio.core.studio import Studio
from studio.testing.fake_plugin import open_fake_studio


@pytest.fixture
def app(studio_home: Path) -> Iterator[Studio]:
    """A started studio with only the fake plugin."""
    studio = open_fake_studio(studio_home)
    yield studio
    studio.close()


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """A training folder: one usable image and caption, and one file a trainer skips."""
    from PIL import Image

    folder = tmp_path / "dataset"
    folder.mkdir()
    Image.new("RGB", (8, 8), (40, 90, 160)).save(folder / "one.png")
    (folder / "one.txt").write_text("a caption")
    (folder / "notes.md").write_text("not training data")
    return folder
