"""Melody conditioning for MusicGen-melody: read the file, check it, resample, make chroma.

Reading and checking happen in ``Generator.check`` (no model library needed), so a missing,
unreadable, empty or unsupported file is refused before any model work. The chroma features are
computed here rather than by transformers' feature extractor, which needs torchaudio: the
computation is the same (power spectrogram with a normalised Hann window, librosa's chroma filter
bank, the strongest pitch class of each frame set to one).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from studio import InvalidRequest, sha256_file
from studio_audio.resample import resample

if TYPE_CHECKING:
    import torch

#: The defaults of transformers' MusicgenMelodyFeatureExtractor (overridden by the model's file).
FEATURE_DEFAULTS: dict[str, Any] = {
    "sampling_rate": 32000,
    "hop_length": 4096,
    "chunk_length": 30,
    "n_fft": 16384,
    "num_chroma": 12,
}


def supported_formats() -> str:
    import soundfile as sf

    return ", ".join(sorted(sf.available_formats()))


@dataclass
class MelodyAudio:
    """A melody ready for chroma extraction: mono float32 at the feature rate."""

    samples: np.ndarray
    sample_rate: int
    source_rate: int
    sha256: str
    notes: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return self.samples.shape[0] / self.sample_rate


def read_melody(path: Path, max_seconds: float | None = None) -> tuple[np.ndarray, int, int]:
    """Read ``path`` with soundfile: float32 (frames, channels), its rate and its total frames.

    Only the first ``max_seconds`` are decoded (a long file is not read whole just to be cut).
    Missing, unreadable, unsupported, empty or NaN-holding files raise :class:`InvalidRequest`.
    """
    import soundfile as sf

    path = Path(path).expanduser()
    if not path.exists():
        raise InvalidRequest(f"option 'melody': file not found: {path}")
    if not path.is_file():
        raise InvalidRequest(f"option 'melody': {path} is not a file")
    try:
        with sf.SoundFile(str(path)) as fh:
            rate, total = int(fh.samplerate), int(fh.frames)
            limit = total if max_seconds is None else min(total, math.ceil(max_seconds * rate))
            data = fh.read(frames=limit, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise InvalidRequest(
            f"option 'melody': cannot read {path.name} as audio ({exc}); supported formats: "
            f"{supported_formats()}"
        ) from None
    if data.shape[0] == 0:
        raise InvalidRequest(f"option 'melody': {path.name} has no audio (zero length)")
    if not np.all(np.isfinite(data)):
        raise InvalidRequest(f"option 'melody': {path.name} contains invalid samples (NaN or inf)")
    return data, rate, max(total, data.shape[0])


def prepare_melody(path: Path, features: dict[str, Any] | None = None) -> MelodyAudio:
    """Read, down-mix, trim and resample a melody file to the model's feature rate."""
    params = {**FEATURE_DEFAULTS, **(features or {})}
    target_rate = int(params["sampling_rate"])
    max_seconds = float(params["chunk_length"])
    data, rate, total = read_melody(path, max_seconds)
    digest = sha256_file(Path(path).expanduser())
    notes: list[str] = []
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if total > mono.shape[0]:
        notes.append(
            f"the melody is {total / rate:.1f} s long; only its first {max_seconds:g} s "
            "condition the model"
        )
    if rate != target_rate:
        try:
            mono = resample(mono, rate, target_rate)
        except ValueError as exc:
            raise InvalidRequest(f"option 'melody': {exc}") from None
        notes.append(f"the melody was resampled from {rate} Hz to the model's {target_rate} Hz")
    if float(np.max(np.abs(mono))) == 0.0:
        notes.append("the melody file is silent: it gives the model no melody to follow")
    return MelodyAudio(
        samples=np.ascontiguousarray(mono, dtype=np.float32),
        sample_rate=target_rate,
        source_rate=rate,
        sha256=digest,
        notes=notes,
    )


def chroma_features(melody: MelodyAudio, features: dict[str, Any] | None = None) -> torch.Tensor:
    """One-hot chroma of shape (1, frames, num_chroma), as MusicGen-melody was trained with."""
    import torch
    from transformers.audio_utils import chroma_filter_bank

    params = {**FEATURE_DEFAULTS, **(features or {})}
    n_fft, hop = int(params["n_fft"]), int(params["hop_length"])
    num_chroma = int(params["num_chroma"])
    wave = torch.from_numpy(melody.samples).float()[None, :]
    if wave.shape[-1] < n_fft:  # centre-pad short melodies to one window, as the extractor does
        pad = n_fft - wave.shape[-1]
        wave = torch.nn.functional.pad(wave, (pad // 2, pad // 2 + pad % 2))
    window = torch.hann_window(n_fft)
    spec = torch.stft(
        wave,
        n_fft=n_fft,
        hop_length=hop,
        win_length=n_fft,
        window=window,
        center=True,
        pad_mode="reflect",
        normalized=False,
        onesided=True,
        return_complex=True,
    )
    spec = (spec / window.pow(2).sum().sqrt()).abs().pow(2)  # torchaudio's normalized=True
    filters = torch.from_numpy(
        chroma_filter_bank(
            sampling_rate=melody.sample_rate,
            num_frequency_bins=n_fft,
            tuning=0,
            num_chroma=num_chroma,
        )
    ).float()
    raw = torch.einsum("cf,...ft->...ct", filters, spec)
    norm = torch.nn.functional.normalize(raw, p=float("inf"), dim=-2, eps=1e-6).transpose(1, 2)
    onehot = torch.zeros_like(norm)
    onehot.scatter_(dim=-1, index=norm.argmax(-1, keepdim=True), value=1.0)
    return onehot
