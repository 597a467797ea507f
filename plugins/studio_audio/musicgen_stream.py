"""MusicGen generation with progress, audio previews and cancel, inside ``model.generate``.

A stopping criterion sees the whole token matrix after every generated step. It reports progress
per block of steps, stops the call within one step when the job is cancelled, and every few
seconds of audio decodes the newly completed frames with the EnCodec decoder into a preview chunk.

MusicGen predicts ``K`` codebooks with a delay pattern: codebook ``c`` of frame ``f`` sits in
column ``f + c + 1`` (column 0 is the start token), so after ``L`` columns the frames
``0 .. L - K - 1`` are complete in every codebook. Stereo models interleave left and right rows.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from studio import Preview, Progress
from studio_audio.modelinfo import MusicgenInfo

#: Frames decoded before a preview chunk as context, so that chunk edges sound continuous.
CONTEXT_SECONDS = 0.5


def complete_frames(length: int, info: MusicgenInfo) -> int:
    """Frames whose every codebook is generated once the token matrix has ``length`` columns."""
    return max(0, length - info.channel_codebooks)


def undelay(ids: Any, info: MusicgenInfo, start: int, stop: int) -> list[Any]:
    """Codes of frames ``start .. stop`` per audio channel, each shaped (batch, codebooks, frames).

    ``ids`` is the (batch * K, columns) matrix ``generate`` works on.
    """
    import torch

    k = info.num_codebooks
    grid = ids.reshape(-1, k, ids.shape[-1])
    channels = []
    for channel in range(info.audio_channels):
        rows = range(channel, k, info.audio_channels)
        codes = [grid[:, row, start + c + 1 : stop + c + 1] for c, row in enumerate(rows)]
        channels.append(torch.stack(codes, dim=1))
    return channels


def decode_frames(model: Any, ids: Any, info: MusicgenInfo, start: int, stop: int) -> np.ndarray:
    """Audio of frames ``start .. stop`` as float32 (samples,) or (samples, channels).

    Decodes from up to ``CONTEXT_SECONDS`` earlier and drops that lead-in, so that consecutive
    chunks join without a click.
    """
    import torch

    lead = min(start, math.ceil(CONTEXT_SECONDS * info.frame_rate))
    parts = []
    with torch.no_grad():
        for codes in undelay(ids, info, start - lead, stop):
            audio = model.audio_encoder.decode(codes[None], audio_scales=[None]).audio_values
            parts.append(audio[0, 0, lead * info.hop_length :])
    chunk = torch.stack(parts, dim=-1) if len(parts) > 1 else parts[0]
    return chunk.float().cpu().numpy()


def make_criteria(
    model: Any,
    info: MusicgenInfo,
    *,
    total_steps: int,
    emit: Callable[[Any], None],
    cancel: threading.Event,
    stopped: threading.Event,
    preview_every: float,
) -> Any:
    """A ``StoppingCriteriaList`` that reports progress and previews and honours cancel."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    block = max(1, math.ceil(total_steps / 100))
    preview_frames = round(preview_every * info.frame_rate)

    class StudioCriteria(StoppingCriteria):
        def __init__(self) -> None:
            self.first_length: int | None = None
            self.previewed = 0  # frames already sent as previews

        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            length = input_ids.shape[-1]
            if self.first_length is None:
                self.first_length = length - 1
            step = length - self.first_length
            if step % block == 0 or step >= total_steps:
                seconds = complete_frames(length, info) / info.frame_rate
                emit(Progress(step, total_steps, f"{seconds:.1f} s of music"))
            done = complete_frames(length, info)
            if preview_frames and done - self.previewed >= preview_frames:
                chunk = decode_frames(model, input_ids, info, self.previewed, done)
                emit(Preview(chunk, step=step, sample_rate=info.sampling_rate))
                self.previewed = done
            stop = cancel.is_set() or stopped.is_set()
            return torch.full(
                (input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device
            )

    return StoppingCriteriaList([StudioCriteria()])


def previewed_frames(criteria: Any) -> int:
    """How many frames the criteria already sent as previews."""
    return int(criteria[0].previewed)
