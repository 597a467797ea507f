"""Turn generated samples into the studio's AudioOutput (level, format) with notes for the user."""

from __future__ import annotations

from typing import Any

import numpy as np

from studio import AudioOutput, Note
from studio_audio.loudness import normalize
from studio_audio.options import FORMATS, AudioFileOptions


def to_frames_channels(audio: Any) -> np.ndarray:
    """(channels, samples) model output -> float32 (samples,) for mono, (samples, channels) else."""
    data = np.asarray(audio, dtype=np.float32)
    if data.ndim == 1:
        return data
    if data.ndim != 2:
        raise ValueError(f"expected (channels, samples) audio, got shape {data.shape}")
    return np.ascontiguousarray(data[0] if data.shape[0] == 1 else data.T)


def build_output(
    samples: np.ndarray,
    sample_rate: int,
    options: AudioFileOptions,
    *,
    seed: int,
    recipe_extra: dict[str, Any] | None = None,
) -> tuple[AudioOutput, list[Note]]:
    """Level ``samples`` as the options ask (never clipping) and describe the file to write.

    ``recipe_extra`` (the run's ``ctx.recipe.extra``) receives the applied gain and loudness.
    """
    notes: list[Note] = []
    levelled = normalize(samples, sample_rate, options.normalize, options.loudness_target)
    if levelled.message:
        level = "warning" if options.normalize == "off" or "instead" in levelled.message else "info"
        notes.append(Note(levelled.message, level=level))  # type: ignore[arg-type]
    if recipe_extra is not None:
        recipe_extra["gain_db"] = round(levelled.gain_db, 3)
        if levelled.loudness_after is not None:
            recipe_extra["loudness_lufs"] = round(levelled.loudness_after, 2)
    fmt, subtype = FORMATS[options.format]
    frames = levelled.samples.shape[0]
    channels = 1 if levelled.samples.ndim == 1 else levelled.samples.shape[1]
    output = AudioOutput(
        samples=levelled.samples,
        sample_rate=int(sample_rate),
        seed=seed,
        index=0,
        extra={
            "format": fmt,
            "subtype": subtype,
            "channels": channels,
            "duration": round(frames / sample_rate, 4),
        },
    )
    return output, notes
