"""What the plugin needs to know about a model before loading it, read from its JSON files.

Reading ``config.json`` and friends is cheap and imports no model library, so ``Generator.check``
can reject a request (speaker out of range, duration over the model's limit, melody for a model
that takes none) before any weights are touched.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio.core.errors import InvalidRequest, StudioError


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise InvalidRequest(f"cannot read {path}: {exc}") from None
    return data if isinstance(data, dict) else {}


def peek_model_folder(ref: str) -> Path | None:
    """The local folder of ``ref`` when it is available without downloading, else ``None``.

    Used by ``check``: nothing is downloaded and no weights are loaded; a model that is not here
    yet is checked again in ``run`` once it is.
    """
    try:
        from studio.core.refs import resolve

        resolved = resolve(ref, allow_pickle=True, allow_download=False)
    except (StudioError, OSError, ValueError):
        return None
    path = Path(resolved.path)
    return path if path.is_dir() else None


def require_folder(path: Path, what: str) -> Path:
    """``path`` if it is a model folder; a clear error for a single weights file."""
    if not path.is_dir():
        raise InvalidRequest(
            f"{what} needs a model folder (config.json, weights and tokenizer files), not the "
            f"single file {path}"
        )
    return path


@dataclass(frozen=True)
class VitsInfo:
    """A VITS / MMS-TTS checkpoint, from config.json and tokenizer_config.json."""

    sampling_rate: int
    num_speakers: int
    speaking_rate: float
    noise_scale: float
    noise_scale_duration: float
    phonemize: bool
    uroman: bool
    language: str | None

    @classmethod
    def read(cls, folder: Path) -> VitsInfo:
        config = _read_json(folder / "config.json")
        model_type = config.get("model_type")
        if model_type != "vits":
            raise InvalidRequest(
                f"{folder.name}: model type {model_type!r} is not a VITS / MMS-TTS model "
                "(text-to-speech here supports config model_type 'vits')"
            )
        tok = _read_json(folder / "tokenizer_config.json")
        return cls(
            sampling_rate=int(config.get("sampling_rate", 16000)),
            num_speakers=int(config.get("num_speakers", 1)),
            speaking_rate=float(config.get("speaking_rate", 1.0)),
            noise_scale=float(config.get("noise_scale", 0.667)),
            noise_scale_duration=float(config.get("noise_scale_duration", 0.8)),
            phonemize=bool(tok.get("phonemize", False)),
            uroman=bool(tok.get("is_uroman", False)),
            language=tok.get("language"),
        )

    def check_speaker(self, speaker: int | None) -> None:
        if speaker is None:
            return
        if self.num_speakers <= 1:
            if speaker != 0:
                raise InvalidRequest(
                    f"option 'speaker': this model has a single voice; got speaker {speaker} "
                    "(allowed: leave it unset, or 0)"
                )
            return
        if not 0 <= speaker < self.num_speakers:
            raise InvalidRequest(
                f"option 'speaker': {speaker} is out of range; this model has "
                f"{self.num_speakers} speakers (allowed: 0 to {self.num_speakers - 1})"
            )

    def check_phonemizer(self) -> None:
        """Models trained on phonemes need the ``phonemizer`` package (and espeak-ng)."""
        if not self.phonemize:
            return
        import importlib.util

        if importlib.util.find_spec("phonemizer") is None:
            raise InvalidRequest(
                "this voice reads phonemes: install the 'phonemizer' package and the espeak-ng "
                "program (e.g. `pip install phonemizer` and `apt install espeak-ng`), or choose "
                "a character-based voice such as facebook/mms-tts-eng"
            )


@dataclass(frozen=True)
class MusicgenInfo:
    """A MusicGen (or MusicGen-melody) checkpoint, from config.json and its companions."""

    melody: bool
    sampling_rate: int
    frame_rate: int
    hop_length: int
    num_codebooks: int
    audio_channels: int
    max_positions: int
    chroma_length: int
    default_guidance: float | None
    #: melody feature extractor settings (preprocessor_config.json), melody models only.
    features: dict[str, Any]

    @classmethod
    def read(cls, folder: Path) -> MusicgenInfo:
        config = _read_json(folder / "config.json")
        model_type = config.get("model_type")
        if model_type not in ("musicgen", "musicgen_melody"):
            raise InvalidRequest(
                f"{folder.name}: model type {model_type!r} is not a MusicGen model "
                "(text-to-music here supports 'musicgen' and 'musicgen_melody')"
            )
        audio = config.get("audio_encoder") or {}
        decoder = config.get("decoder") or {}
        sampling_rate = int(audio.get("sampling_rate", 32000))
        hop = math.prod(int(r) for r in audio.get("upsampling_ratios", (8, 5, 4, 2)))
        generation = _read_json(folder / "generation_config.json")
        melody = model_type == "musicgen_melody"
        return cls(
            melody=melody,
            sampling_rate=sampling_rate,
            frame_rate=math.ceil(sampling_rate / hop),
            hop_length=hop,
            num_codebooks=int(decoder.get("num_codebooks", 4)),
            audio_channels=int(decoder.get("audio_channels", 1)),
            max_positions=int(decoder.get("max_position_embeddings", 2048)),
            chroma_length=int(config.get("chroma_length", 235)) if melody else 0,
            default_guidance=generation.get("guidance_scale"),
            features=_read_json(folder / "preprocessor_config.json") if melody else {},
        )

    @property
    def channel_codebooks(self) -> int:
        """Codebooks per audio channel (stereo models interleave left and right)."""
        return self.num_codebooks // 2 if self.audio_channels == 2 else self.num_codebooks

    @property
    def max_frames(self) -> int:
        """Audio frames that fit the decoder's positions (BOS, delay pattern, melody prefix)."""
        return self.max_positions - self.chroma_length - self.channel_codebooks

    @property
    def max_seconds(self) -> float:
        return self.max_frames / self.frame_rate

    def frames_for(self, seconds: float) -> int:
        return max(1, round(seconds * self.frame_rate))

    def tokens_for(self, seconds: float) -> int:
        """``max_new_tokens`` giving ``seconds`` of audio: the delay pattern costs K-1 steps."""
        return self.frames_for(seconds) + self.channel_codebooks - 1

    def check_duration(self, seconds: float) -> None:
        if self.frames_for(seconds) > self.max_frames:
            raise InvalidRequest(
                f"option 'duration': {seconds:g} s is over this model's maximum of "
                f"{math.floor(self.max_seconds * 10) / 10:g} s ({self.max_positions} positions at "
                f"{self.frame_rate} frames per second); allowed: up to that length"
            )

    def check_melody(self, melody: Path | None) -> None:
        if melody is not None and not self.melody:
            raise InvalidRequest(
                "option 'melody': this model does not take a melody; use a MusicGen-melody model "
                "(e.g. facebook/musicgen-melody) or leave melody unset"
            )
