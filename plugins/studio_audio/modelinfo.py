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

from studio import InvalidRequest, locate_model


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
    path = locate_model(ref)
    return path if path is not None and path.is_dir() else None


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
            hint = ""
            if _read_json(folder / "model_index.json").get("_class_name") == "StableAudioPipeline":
                hint = (
                    "; it is a Stable Audio pipeline: use the 'stable-audio' generator "
                    "(task text-to-audio)"
                )
            raise InvalidRequest(
                f"{folder.name}: model type {model_type!r} is not a MusicGen model "
                f"(text-to-music here supports 'musicgen' and 'musicgen_melody'){hint}"
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


#: Limits of hub models known without their files, so that ``check`` refuses a duration before
#: a download of several GB: (sample_size, hop length, sampling rate) of the released configs.
STABLE_AUDIO_KNOWN = {"stabilityai/stable-audio-open-1.0": (1024, 2048, 44100)}


@dataclass(frozen=True)
class StableAudioInfo:
    """A Stable Audio (Open) pipeline in diffusers layout, from its component configs."""

    #: latent frames the transformer denoises: the window every piece is cut from.
    sample_size: int
    #: samples per latent frame (product of the VAE's downsampling ratios).
    hop_length: int
    sampling_rate: int
    audio_channels: int
    #: range of the start/end seconds the projection model conditions on.
    max_conditioned_seconds: float
    scheduler: str | None

    @classmethod
    def read(cls, folder: Path) -> StableAudioInfo:
        index = _read_json(folder / "model_index.json")
        name = index.get("_class_name")
        if name != "StableAudioPipeline":
            what = (
                f"a diffusers {name}"
                if name
                else "a transformers model"
                if (folder / "config.json").is_file()
                else "not a diffusers pipeline (no model_index.json)"
            )
            raise InvalidRequest(
                f"{folder.name}: is {what}; the 'stable-audio' generator needs a Stable Audio "
                "pipeline in diffusers layout (model_index.json naming StableAudioPipeline), "
                "e.g. stabilityai/stable-audio-open-1.0"
            )
        transformer = _read_json(folder / "transformer" / "config.json")
        vae = _read_json(folder / "vae" / "config.json")
        projection = _read_json(folder / "projection_model" / "config.json")
        scheduler = index.get("scheduler")
        return cls(
            sample_size=int(transformer.get("sample_size", 1024)),
            hop_length=math.prod(int(r) for r in vae.get("downsampling_ratios", (2, 4, 4, 8, 8))),
            sampling_rate=int(vae.get("sampling_rate", 44100)),
            audio_channels=int(vae.get("audio_channels", 2)),
            max_conditioned_seconds=float(projection.get("max_value", 512)),
            scheduler=str(scheduler[1]) if isinstance(scheduler, list) and scheduler else None,
        )

    @classmethod
    def known(cls, ref: str) -> StableAudioInfo | None:
        """The limits of a released model that is not downloaded yet, when they are known."""
        sizes = STABLE_AUDIO_KNOWN.get(ref)
        if sizes is None:
            return None
        sample_size, hop, rate = sizes
        return cls(sample_size, hop, rate, 2, 512.0, "CosineDPMSolverMultistepScheduler")

    @property
    def max_seconds(self) -> float:
        """The longest piece: the window of ``sample_size`` latent frames (and what the
        projection model can condition on)."""
        window = self.sample_size * self.hop_length / self.sampling_rate
        return min(window, self.max_conditioned_seconds)

    def samples_for(self, seconds: float) -> int:
        """Samples the pipeline keeps of the window for ``seconds`` (it rounds down)."""
        return int(seconds * self.sampling_rate)

    def check_duration(self, seconds: float) -> None:
        if seconds > self.max_seconds:
            raise InvalidRequest(
                f"option 'duration': {seconds:g} s is over this model's maximum of "
                f"{math.floor(self.max_seconds * 100) / 100:g} s ({self.sample_size} latent frames "
                f"of {self.hop_length} samples at {self.sampling_rate} Hz); allowed: up to that "
                "length"
            )
        if self.samples_for(seconds) < 1:
            raise InvalidRequest(
                f"option 'duration': {seconds:g} s is shorter than one sample at "
                f"{self.sampling_rate} Hz; allowed: at least {1 / self.sampling_rate:.6f} s"
            )

    def check_scheduler(self) -> None:
        """The scheduler Stable Audio Open ships with needs the ``torchsde`` package."""
        if self.scheduler != "CosineDPMSolverMultistepScheduler":
            return
        import importlib.util

        if importlib.util.find_spec("torchsde") is None:
            raise InvalidRequest(
                "this model's scheduler (CosineDPMSolverMultistepScheduler) needs the 'torchsde' "
                "package: install it with `pip install torchsde`"
            )
