"""The audio plugin's signal helpers: resampling, loudness, melody files, text splitting.

No model is loaded here; these are the pieces the generators rely on to refuse bad input early and
to write files that never clip.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from studio.core.errors import InvalidRequest
from studio_audio.loudness import PEAK_CEILING, integrated_loudness, normalize, peak
from studio_audio.melody import chroma_features, prepare_melody, read_melody
from studio_audio.resample import resample
from studio_audio.text import split_sentences


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Any:
    """Tiny models: one CPU thread is fastest, and fair to the machine's other tests.

    torch's thread count is per thread; the previous count comes back after this module.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def sine(freq: float, rate: int, seconds: float, amp: float = 1.0) -> np.ndarray:
    return amp * np.sin(2 * np.pi * freq * np.arange(round(rate * seconds)) / rate)


# --- resampling ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("orig", "new"), [(44100, 32000), (48000, 32000), (16000, 32000), (22050, 8000), (32000, 24000)]
)
def test_resample_keeps_a_tone_and_the_length(orig: int, new: int) -> None:
    out = resample(sine(440, orig, 1.0), orig, new)
    assert out.dtype == np.float32
    assert out.shape == (math.ceil(orig * new / orig),)
    expected = sine(440, new, 1.0)
    inner = slice(new // 10, -new // 10)  # edges see the zero padding
    assert np.max(np.abs(out[inner] - expected[inner])) < 1e-3


def test_resample_removes_what_the_new_rate_cannot_hold() -> None:
    out = resample(sine(15000, 44100, 1.0), 44100, 16000)  # above the new Nyquist (8 kHz)
    assert np.sqrt(np.mean(out[1000:-1000] ** 2)) < 1e-3


def test_resample_stereo_and_identity() -> None:
    stereo = np.stack([sine(300, 48000, 0.5), -sine(300, 48000, 0.5)], axis=1)
    out = resample(stereo, 48000, 32000)
    assert out.shape == (16000, 2)
    np.testing.assert_allclose(out[:, 0], -out[:, 1], atol=1e-6)
    same = resample(stereo, 48000, 48000)
    np.testing.assert_allclose(same, stereo.astype(np.float32))


def test_resample_refuses_bad_rates() -> None:
    with pytest.raises(ValueError, match="positive"):
        resample(np.zeros(10), 0, 16000)
    with pytest.raises(ValueError, match="common rate"):
        resample(np.zeros(10), 44101, 32000)


# --- loudness --------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [48000, 44100, 32000, 16000])
def test_full_scale_sine_measures_minus_3_lufs(rate: int) -> None:
    # BS.1770: a 0 dBFS 997 Hz sine in one channel reads -3.01 LUFS.
    assert integrated_loudness(sine(997, rate, 3.0), rate) == pytest.approx(-3.01, abs=0.1)
    assert integrated_loudness(sine(997, rate, 3.0, 0.1), rate) == pytest.approx(-23.01, abs=0.1)


def test_loudness_of_silence_is_minus_infinity() -> None:
    assert integrated_loudness(np.zeros(16000), 16000) == -math.inf
    result = normalize(np.zeros(16000), 16000, "loudness")
    assert result.gain_db == 0.0
    assert not np.any(result.samples)


def test_loudness_normalisation_reaches_the_target() -> None:
    quiet = sine(997, 32000, 3.0, 0.01)
    result = normalize(quiet, 32000, "loudness", -16.0)
    assert integrated_loudness(result.samples, 32000) == pytest.approx(-16.0, abs=0.05)
    assert result.message is None
    assert peak(result.samples) <= PEAK_CEILING


def test_loudness_normalisation_never_clips() -> None:
    # A spiky signal: reaching -6 LUFS would push its peaks far over full scale.
    spiky = np.zeros(32000 * 2, dtype=np.float32)
    spiky[::4000] = 0.5
    spiky += sine(997, 32000, 2.0, 0.01).astype(np.float32)
    result = normalize(spiky, 32000, "loudness", -6.0)
    assert peak(result.samples) <= PEAK_CEILING + 1e-7
    assert result.message is not None and "would clip" in result.message
    assert result.loudness_after is not None and result.loudness_after < -6.0


def test_peak_normalisation_and_the_clip_guard() -> None:
    result = normalize(sine(100, 8000, 1.0, 0.25), 8000, "peak")
    assert peak(result.samples) == pytest.approx(PEAK_CEILING, rel=1e-5)
    loud = sine(100, 8000, 1.0, 1.7)
    guarded = normalize(loud, 8000, "off")
    assert peak(guarded.samples) <= PEAK_CEILING
    assert guarded.message is not None and "does not clip" in guarded.message
    untouched = normalize(sine(100, 8000, 1.0, 0.5), 8000, "off")
    assert untouched.gain_db == 0.0 and untouched.message is None
    with pytest.raises(ValueError, match="unknown"):
        normalize(loud, 8000, "louder")


# --- melody files ----------------------------------------------------------------------------


def test_melody_file_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match="file not found"):
        read_melody(tmp_path / "missing.wav")
    with pytest.raises(InvalidRequest, match="is not a file"):
        read_melody(tmp_path)
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"this is not audio at all" * 10)
    with pytest.raises(InvalidRequest, match=r"cannot read junk\.wav as audio.*supported formats"):
        read_melody(junk)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros((0, 1)), 16000)
    with pytest.raises(InvalidRequest, match="zero length"):
        read_melody(empty)
    broken = tmp_path / "nan.wav"
    sf.write(broken, np.array([0.0, np.nan, 0.1], dtype=np.float32), 16000, subtype="FLOAT")
    with pytest.raises(InvalidRequest, match="NaN"):
        read_melody(broken)


def test_melody_is_downmixed_resampled_and_trimmed_with_notes(tmp_path: Path) -> None:
    path = tmp_path / "tune.flac"
    tone = sine(440, 44100, 3.0, 0.5)
    sf.write(path, np.stack([tone, tone], axis=1), 44100)
    melody = prepare_melody(path, {"sampling_rate": 32000, "chunk_length": 2})
    assert melody.sample_rate == 32000 and melody.source_rate == 44100
    assert melody.samples.shape == (64000,)  # trimmed to 2 s, then resampled
    assert any("resampled from 44100 Hz" in n for n in melody.notes)
    assert any("first 2 s" in n for n in melody.notes)
    assert len(melody.sha256) == 64
    same_rate = tmp_path / "same.wav"
    sf.write(same_rate, sine(440, 32000, 1.0, 0.5), 32000)
    assert prepare_melody(same_rate).notes == []


def test_melody_chroma_finds_the_pitch_class(tmp_path: Path) -> None:
    path = tmp_path / "a440.wav"
    sf.write(path, sine(440, 32000, 3.0, 0.5), 32000)
    melody = prepare_melody(path)
    chroma = chroma_features(melody)
    frames = 1 + melody.samples.shape[0] // 4096  # centred STFT frames at hop 4096
    assert tuple(chroma.shape) == (1, frames, 12)
    assert bool((chroma.sum(-1) == 1).all())  # one pitch class per frame
    assert set(chroma[0].argmax(-1).tolist()) == {9}  # A, counting from C


def test_silent_melody_gets_a_note(tmp_path: Path) -> None:
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(8000), 8000)
    assert any("silent" in n for n in prepare_melody(path, {"sampling_rate": 8000}).notes)


# --- text --------------------------------------------------------------------------------------


def test_split_sentences() -> None:
    assert split_sentences("Hello there. How are you?  Fine!\n\nNext line") == [
        "Hello there.",
        "How are you?",
        "Fine!",
        "Next line",
    ]
    assert split_sentences("   \n  ") == []
    pieces = split_sentences("word, " * 200, limit=50)
    assert len(pieces) > 1 and all(len(p) <= 50 for p in pieces)
