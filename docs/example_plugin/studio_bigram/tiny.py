"""A tiny random bigram model, for tests and for trying the plugin out."""

from __future__ import annotations

import json
from pathlib import Path

_TEXT = """
the a quiet river moon fox runs under over bright old song of light and night sings slowly
wind tree stone cloud falls rises green blue small tall far near sea home
"""
#: The vocabulary of the tiny model: the text it writes is made of these words.
WORDS: tuple[str, ...] = tuple(_TEXT.split())


def make_tiny_model(folder: Path, seed: int = 0) -> Path:
    """Write ``config.json`` + ``model.safetensors`` (random scores) into ``folder``."""
    import numpy as np
    from safetensors.numpy import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    scores = rng.normal(0.0, 2.0, size=(len(WORDS), len(WORDS))).astype("float32")
    save_file({"scores": scores}, str(folder / "model.safetensors"))
    config = {"model_type": "bigram", "vocab": list(WORDS)}
    (folder / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    return folder
