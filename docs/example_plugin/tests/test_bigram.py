"""The plugin's own tests: the studio's generator contract, run on a tiny model.

The fixtures (``studio_app``, ``studio_home``, ...) come from aigc-studio's pytest plugin, which is
active as soon as aigc-studio is installed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from studio_bigram.generator import BigramGenerator
from studio_bigram.tiny import WORDS, make_tiny_model

from studio.testing.contract import GeneratorContract, run_generator


class TestBigramGenerator(GeneratorContract):
    generator_cls = BigramGenerator
    options = {"max_words": 8}

    @pytest.fixture
    def model_ref(self, tmp_path: Path) -> str:
        return str(make_tiny_model(tmp_path / "tiny-bigram"))


def test_streams_known_words(studio_app, tmp_path: Path) -> None:
    model = str(make_tiny_model(tmp_path / "m"))
    events, artifacts = run_generator(
        BigramGenerator, "the moon", model, {"max_words": 5}, 7, studio_app
    )
    chunks = [e.text for e in events if type(e).__name__ == "Partial"]
    text = Path(artifacts[0].path).read_text(encoding="utf-8")
    assert "".join(chunks) == text
    assert len(text.split()) == 5 and set(text.split()) <= set(WORDS)
