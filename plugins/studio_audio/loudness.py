"""Loudness (ITU-R BS.1770 integrated loudness, LUFS) and gain that never clips.

K-weighting is applied as a zero-phase filter in the frequency domain (the magnitude response of
the standard two biquads, re-derived for the file's sample rate); loudness is an energy measure, so
the phase of the filter does not change it beyond a few hundredths of a LU. Gating follows the
standard: 400 ms blocks with 75 % overlap, an absolute gate at -70 LUFS and a relative gate 10 LU
below the ungated level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Highest sample peak after any gain the studio applies: -1 dBFS leaves room for lossy encoders.
PEAK_CEILING = 10 ** (-1.0 / 20)
_ABSOLUTE_GATE = -70.0
_RELATIVE_GATE = -10.0


def _biquad_response(b: tuple[float, float, float], a: tuple[float, float, float], w: np.ndarray):
    z1 = np.exp(-1j * w)
    z2 = z1 * z1
    return (b[0] + b[1] * z1 + b[2] * z2) / (a[0] + a[1] * z1 + a[2] * z2)


def k_weighting_gain(rate: int, n_fft: int) -> np.ndarray:
    """|H(f)| of the BS.1770 K-weighting filter at the ``n_fft // 2 + 1`` rfft bins."""
    w = np.linspace(0.0, math.pi, n_fft // 2 + 1)
    # Stage 1: high shelf, +4 dB above ~1.5 kHz (head effects).
    gain_db, q, fc = 4.0, 1 / math.sqrt(2), 1500.0
    amp = 10 ** (gain_db / 40)
    w0 = 2 * math.pi * fc / rate
    alpha = math.sin(w0) / (2 * q)
    cos0, sq = math.cos(w0), 2 * math.sqrt(amp) * alpha
    shelf = _biquad_response(
        (
            amp * ((amp + 1) + (amp - 1) * cos0 + sq),
            -2 * amp * ((amp - 1) + (amp + 1) * cos0),
            amp * ((amp + 1) + (amp - 1) * cos0 - sq),
        ),
        (
            (amp + 1) - (amp - 1) * cos0 + sq,
            2 * ((amp - 1) - (amp + 1) * cos0),
            (amp + 1) - (amp - 1) * cos0 - sq,
        ),
        w,
    )
    # Stage 2: high pass at 38 Hz (the "RLB" curve).
    q, fc = 0.5, 38.0
    w0 = 2 * math.pi * fc / rate
    alpha = math.sin(w0) / (2 * q)
    cos0 = math.cos(w0)
    highpass = _biquad_response(
        ((1 + cos0) / 2, -(1 + cos0), (1 + cos0) / 2), (1 + alpha, -2 * cos0, 1 - alpha), w
    )
    return np.abs(shelf * highpass)


def integrated_loudness(samples: np.ndarray, rate: int) -> float:
    """Integrated loudness (LUFS) of (frames,) or (frames, channels) float audio; -inf if silent."""
    data = np.asarray(samples, dtype=np.float64)
    if data.ndim == 1:
        data = data[:, None]
    frames = data.shape[0]
    if frames == 0:
        return -math.inf
    pad = rate // 2  # keeps the circular convolution of the FFT filter from wrapping around
    n_fft = 1 << (frames + pad - 1).bit_length()
    gain = k_weighting_gain(rate, n_fft)
    weighted = np.fft.irfft(np.fft.rfft(data, n=n_fft, axis=0) * gain[:, None], n=n_fft, axis=0)
    weighted = weighted[:frames]
    block = max(1, round(0.4 * rate))
    step = max(1, round(0.1 * rate))
    if frames <= block:
        energies = np.mean(weighted**2, axis=0)[None, :]
    else:
        csum = np.concatenate([np.zeros((1, data.shape[1])), np.cumsum(weighted**2, axis=0)])
        starts = np.arange(0, frames - block + 1, step)
        energies = (csum[starts + block] - csum[starts]) / block
    power = energies.sum(axis=1)  # channel weights are 1 for L, R, C
    with np.errstate(divide="ignore"):
        levels = -0.691 + 10 * np.log10(power)
    gated = power[levels > _ABSOLUTE_GATE]
    if gated.size == 0:
        return -math.inf
    relative = -0.691 + 10 * math.log10(gated.mean()) + _RELATIVE_GATE
    final = power[(levels > _ABSOLUTE_GATE) & (levels > relative)]
    return float(-0.691 + 10 * math.log10(final.mean()))


def peak(samples: np.ndarray) -> float:
    data = np.asarray(samples)
    return float(np.max(np.abs(data))) if data.size else 0.0


@dataclass
class GainResult:
    """What :func:`normalize` did: the audio, the applied gain and a sentence for the user."""

    samples: np.ndarray
    gain_db: float
    loudness_before: float | None
    loudness_after: float | None
    message: str | None


def normalize(samples: np.ndarray, rate: int, mode: str, target_lufs: float = -16.0) -> GainResult:
    """Apply ``mode`` ("off", "peak", "loudness") with a gain that never pushes a peak past -1 dBFS.

    "off" leaves the audio alone unless it would clip (a peak above full scale), in which case it is
    scaled down to the ceiling. Silent audio is returned unchanged.
    """
    data = np.asarray(samples, dtype=np.float32)
    top = peak(data)
    if top == 0.0 or not math.isfinite(top):
        return GainResult(data, 0.0, None, None, None if mode == "off" else "audio is silent")
    limit_db = 20 * math.log10(PEAK_CEILING / top)
    message = None
    before = after = None
    if mode == "off":
        if top <= 1.0:
            return GainResult(data, 0.0, None, None, None)
        gain_db = limit_db
        message = (
            f"the audio peaked at {20 * math.log10(top):+.1f} dBFS; scaled down by "
            f"{-gain_db:.1f} dB so that the file does not clip"
        )
    elif mode == "peak":
        gain_db = limit_db
    elif mode == "loudness":
        before = integrated_loudness(data, rate)
        if not math.isfinite(before):
            return GainResult(data, 0.0, before, before, "audio too quiet to measure loudness")
        gain_db = target_lufs - before
        if gain_db > limit_db:
            gain_db = limit_db
            message = (
                f"loudness reached {before + gain_db:.1f} LUFS instead of {target_lufs:.1f} LUFS: "
                "more gain would clip (peaks are kept at -1 dBFS)"
            )
    else:
        raise ValueError(f"unknown normalisation mode {mode!r}")
    out = (data * np.float32(10 ** (gain_db / 20))).astype(np.float32)
    # float32 rounding must not leave a sample a hair above the ceiling.
    np.clip(out, -PEAK_CEILING, PEAK_CEILING, out=out)
    if before is not None:
        after = before + gain_db
    return GainResult(out, gain_db, before, after, message)
