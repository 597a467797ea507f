"""What a model folder holds, read from its files alone: its layout and its modality.

Shared by :mod:`studio.core.refs` (a resolved model's layout) and :mod:`studio.core.hub` (the
models listed from the hub cache), which is why it is a module of its own: ``refs`` uses ``hub``,
and neither may import the other both ways. Nothing here imports a model library.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

Layout = Literal["diffusers", "transformers", "safetensors-file", "unknown"]

#: Words in a transformers config that mean an audio model.
_AUDIO_WORDS = ("musicgen", "bark", "speecht5", "vits", "encodec", "parler", "audio", "speech")


def detect_layout(path: Path) -> Layout:
    """``diffusers`` (model_index.json), ``transformers`` (config.json), a ``safetensors-file``,
    or ``unknown``."""
    path = Path(path)
    if path.is_file():
        # the one single-file format the studio loads (refs.SAFE_SUFFIXES)
        return "safetensors-file" if path.suffix.lower() == ".safetensors" else "unknown"
    if (path / "model_index.json").is_file():
        return "diffusers"
    if (path / "config.json").is_file():
        return "transformers"
    return "unknown"


def guess_modality(path: Path) -> str | None:
    """Best-effort modality (text, image, audio) of a model folder, from its config files."""
    text = ""
    for name in ("model_index.json", "config.json"):
        try:
            data = json.loads((Path(path) / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            text = " ".join(
                str(data.get(k, "")) for k in ("_class_name", "model_type", "architectures")
            ).lower()
            if name == "model_index.json":
                audio = any(w in text for w in ("audio", "music", "dance", "speech"))
                return "audio" if audio else "image"
            break
    if not text:
        return None
    if any(w in text for w in _AUDIO_WORDS):
        return "audio"
    if any(w in text for w in ("causallm", "lmhead", "seq2seq", "conditionalgeneration")):
        return "text"
    return None
