"""A bigram text generator: each next word is drawn from a table of word-pair scores.

The "model" is a folder holding ``config.json`` (the vocabulary) and ``model.safetensors`` (the
score table), found through the studio's model references and kept in the studio's model cache,
like any real model.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from studio import BaseOptions, GenerationRun, Generator, Partial, Progress, Result, TextOutput

if TYPE_CHECKING:
    from studio import RunContext


class BigramOptions(BaseOptions):
    """What the user can set (``--set KEY=VALUE`` on the command line, a form in the window)."""

    max_words: int = Field(24, ge=1, le=500, description="How many words to generate.")
    temperature: float = Field(
        1.0, gt=0.0, le=5.0, description="Higher is more surprising, lower more repetitive."
    )


class BigramGenerator(Generator):
    """Writes words one by one, each drawn from the score table row of the previous word."""

    id = "bigram-text"
    name = "Bigram text"
    modality = "text"
    task = "text-generation"
    default_model = None  # no published model: give --model FOLDER (see make_tiny_model)
    Options = BigramOptions
    description = "A toy bigram language model (the plugin guide's example)."

    def run(self, request: GenerationRun, ctx: RunContext) -> Iterator[Any]:
        import numpy as np  # model libraries are imported here, never at module level

        options: BigramOptions = request.options
        ctx.check_cancelled()  # cancelled before the start: do no work at all
        resolved = ctx.resolve_model(request.model)
        with ctx.use_model(
            resolved, kind="bigram-table", dtype="float32", loader=lambda: load(resolved.path)
        ) as model:
            vocab, scores = model["vocab"], model["scores"]
            rng = np.random.default_rng(request.seed)
            last = request.prompt.split()[-1].lower() if request.prompt.split() else ""
            word = vocab.index(last) if last in vocab else int(rng.integers(len(vocab)))
            words = []
            for step in range(1, options.max_words + 1):
                ctx.check_cancelled()
                logits = scores[word] / options.temperature
                probs = np.exp(logits - logits.max())
                word = int(rng.choice(len(vocab), p=probs / probs.sum()))
                words.append(vocab[word])
                yield Partial((" " if step > 1 else "") + vocab[word])
                yield Progress(step, options.max_words)
        yield Result(TextOutput(" ".join(words), seed=request.seed))


def load(folder: Path) -> dict[str, Any]:
    """Read a bigram model folder (the loader the model cache calls on a miss)."""
    from safetensors.numpy import load_file

    config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    scores = load_file(str(Path(folder) / "model.safetensors"))["scores"]
    return {"vocab": list(config["vocab"]), "scores": scores}
