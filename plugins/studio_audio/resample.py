"""Band-limited resampling in numpy (windowed sinc, polyphase), for conditioning audio.

The studio has no scipy or torchaudio dependency, so this module implements the classic
windowed-sinc resampler (the algorithm torchaudio's ``resample`` uses): the ratio is reduced by the
gcd of the two rates, one low-pass sinc filter per output phase is built with a Hann window, and the
signal is convolved with every phase at a stride of the input rate. The cut-off sits at
``rolloff`` times the lower Nyquist frequency, so downsampling does not alias.
"""

from __future__ import annotations

import math

import numpy as np

#: Zero crossings of the sinc on each side: sharper cut-off for more compute.
LOWPASS_FILTER_WIDTH = 16
#: Cut-off as a fraction of the lower of the two Nyquist frequencies.
ROLLOFF = 0.95
#: Reduced rates above this would build very large filter banks (odd rates such as 44101 Hz).
_MAX_PHASES = 4096


def _sinc_kernels(orig: int, new: int, width_zeros: int, rolloff: float) -> tuple[np.ndarray, int]:
    """Filter bank of shape (new, 2*width + orig) for reduced rates ``orig`` -> ``new``."""
    base_freq = min(orig, new) * rolloff
    width = math.ceil(width_zeros * orig / base_freq)
    idx = np.arange(-width, width + orig, dtype=np.float64) / orig
    t = (np.arange(0, -new, -1, dtype=np.float64)[:, None] / new + idx[None, :]) * base_freq
    t = np.clip(t, -width_zeros, width_zeros)
    window = np.cos(t * math.pi / width_zeros / 2) ** 2
    t *= math.pi
    with np.errstate(divide="ignore", invalid="ignore"):
        kernels = np.where(t == 0, 1.0, np.sin(t) / t)
    kernels *= window * (base_freq / orig)
    return kernels, width


def resample(
    samples: np.ndarray,
    orig_rate: int,
    new_rate: int,
    *,
    lowpass_filter_width: int = LOWPASS_FILTER_WIDTH,
    rolloff: float = ROLLOFF,
) -> np.ndarray:
    """Resample ``samples`` (frames,) or (frames, channels) from ``orig_rate`` to ``new_rate``.

    Returns float32 with ``ceil(frames * new_rate / orig_rate)`` frames and the same channels.
    """
    if orig_rate <= 0 or new_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_rate} and {new_rate}")
    data = np.asarray(samples, dtype=np.float64)
    if orig_rate == new_rate:
        return data.astype(np.float32)
    gcd = math.gcd(int(orig_rate), int(new_rate))
    orig, new = int(orig_rate) // gcd, int(new_rate) // gcd
    if max(orig, new) > _MAX_PHASES:
        raise ValueError(
            f"cannot resample {orig_rate} Hz -> {new_rate} Hz exactly (ratio {orig}:{new} too "
            "fine); convert the file to a common rate (e.g. 32000, 44100 or 48000 Hz) first"
        )
    mono = data.ndim == 1
    channels = data[:, None] if mono else data
    frames = channels.shape[0]
    kernels, width = _sinc_kernels(orig, new, lowpass_filter_width, rolloff)
    taps = kernels.shape[1]
    target = math.ceil(new * frames / orig)
    out = np.empty((target, channels.shape[1]), dtype=np.float32)
    for c in range(channels.shape[1]):
        padded = np.pad(channels[:, c], (width, width + orig))
        # Each output block of `new` samples reads `taps` input samples starting every `orig`.
        windows = np.lib.stride_tricks.sliding_window_view(padded, taps)[::orig]
        blocks = windows @ kernels.T  # (n_blocks, new)
        out[:, c] = blocks.reshape(-1)[:target]
    return out[:, 0] if mono else out
