"""Options of the audio generators: the one description the CLI and the GUI form are built from."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from studio import BaseOptions

#: file format choices -> (soundfile format, subtype) for the artifact writer.
FORMATS: dict[str, tuple[str, str]] = {
    "wav": ("wav", "PCM_16"),
    "wav-float": ("wav", "FLOAT"),
    "flac": ("flac", "PCM_16"),
}


class AudioFileOptions(BaseOptions):
    """Output settings shared by every audio generator."""

    format: Literal["wav", "wav-float", "flac"] = Field(
        "wav",
        description="File format: 'wav' (16-bit PCM), 'wav-float' (32-bit float WAV, no "
        "rounding) or 'flac' (16-bit, lossless and smaller).",
    )
    normalize: Literal["off", "peak", "loudness"] = Field(
        "off",
        description="Level the result: 'peak' raises the loudest sample to -1 dBFS, 'loudness' "
        "aims at the target loudness (LUFS). Never clips: peaks stay at or under -1 dBFS.",
    )
    loudness_target: float = Field(
        -16.0,
        ge=-40.0,
        le=-6.0,
        description="Target integrated loudness in LUFS when normalize is 'loudness' "
        "(-16 suits listening on devices, -23 is the broadcast norm).",
        json_schema_extra={"widget": "slider"},
    )


class _SpeechFields(BaseOptions):
    speaker: int | None = Field(
        None,
        ge=0,
        le=9999,
        description="Voice number for models with several speakers (0 to speakers - 1); "
        "leave unset for single-voice models.",
    )
    speaking_rate: float = Field(
        1.0,
        ge=0.25,
        le=4.0,
        description="Speed of speech: 2.0 is twice as fast, 0.5 half as fast.",
        json_schema_extra={"widget": "slider"},
    )
    noise_scale: float | None = Field(
        None,
        ge=0.0,
        le=2.0,
        description="Variation of the voice (the model's default when unset, usually 0.667); "
        "0 gives the flattest delivery.",
    )
    noise_scale_duration: float | None = Field(
        None,
        ge=0.0,
        le=2.0,
        description="Variation of the rhythm (the model's default when unset, usually 0.8).",
    )
    sentence_pause: float = Field(
        0.2,
        ge=0.0,
        le=3.0,
        description="Silence in seconds between sentences (text is spoken sentence by sentence).",
    )


class _MusicFields(BaseOptions):
    duration: float = Field(
        8.0,
        gt=0.0,
        le=300.0,
        description="Length of the music in seconds (checked against the model's maximum, "
        "about 40 s for MusicGen).",
    )
    guidance_scale: float = Field(
        3.0,
        ge=1.0,
        le=20.0,
        description="How closely the music follows the text (classifier-free guidance; 1 turns "
        "it off and halves the work).",
        json_schema_extra={"widget": "slider"},
    )
    temperature: float = Field(
        1.0,
        gt=0.0,
        le=4.0,
        description="Randomness of sampling: lower is more conservative.",
    )
    top_k: int = Field(
        250,
        ge=0,
        le=4096,
        description="Sample among the k most likely codes at each step (0: no limit).",
    )
    melody: Path | None = Field(
        None,
        description="A melody to follow (WAV, FLAC, OGG or MP3), for MusicGen-melody models only; "
        "resampled to the model's rate when needed.",
        json_schema_extra={"widget": "audio"},
    )
    preview_every: float = Field(
        2.0,
        ge=0.0,
        le=30.0,
        description="Send a playable preview chunk every this many seconds of generated audio "
        "(0: no previews).",
    )


class _StableAudioFields(BaseOptions):
    duration: float = Field(
        10.0,
        gt=0.0,
        le=600.0,
        description="Length of the sound in seconds (checked against the model's maximum, "
        "47.55 s for Stable Audio Open 1.0).",
    )
    negative_prompt: str = Field(
        "",
        max_length=2000,
        description="What the sound should not have ('low quality, distorted'). Empty: plain "
        "classifier-free guidance.",
        json_schema_extra={"widget": "multiline"},
    )
    steps: int = Field(
        100,
        ge=1,
        le=500,
        description="Denoising steps: more is cleaner and slower (100 to 200 suit Stable Audio "
        "Open).",
    )
    guidance_scale: float = Field(
        7.0,
        ge=1.0,
        le=20.0,
        description="How closely the sound follows the text (classifier-free guidance; 1 turns "
        "it off and halves the work).",
        json_schema_extra={"widget": "slider"},
    )


# The generator's own fields come first in forms and help, the file options after them (pydantic
# orders inherited fields from the last base to the first).
class SpeechOptions(AudioFileOptions, _SpeechFields):
    """Text-to-speech (VITS / MMS-TTS)."""


class MusicOptions(AudioFileOptions, _MusicFields):
    """Text-to-music (MusicGen, MusicGen-melody)."""


class StableAudioOptions(AudioFileOptions, _StableAudioFields):
    """Text-to-audio (Stable Audio Open, diffusers)."""
