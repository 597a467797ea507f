"""Audio generation: the studio's generators against bare transformers calls, audio seconds/s.

Models: random weights built offline by :mod:`studio.testing.models_audio`, sized to make the
arithmetic realistic rather than trivial:

- MusicGen: the tiny T5 encoder and 8 kHz EnCodec of the test models (50 frames/s, 4 codebooks
  like the released models), with a decoder of 6 layers, hidden 512 (2 and 256 with ``quick``).
- VITS: the default VitsConfig architecture (the size of the released voices, ~36M weights);
  a tiny one with ``quick``.
- Stable Audio: the tiny pipeline of the tests (8 kHz stereo, 2 s window, Oobleck VAE) with a
  DiT of 4 layers x 8 heads x 32 (2 x 4 x 16 with ``quick``); 20 steps (10), guidance on.

Same prompt, seed and settings on both sides. MusicGen: the studio picks exactly the codes bare
``generate`` picks with the same seed (tested), so both sides make the same audio; the studio runs
with its default previews (a chunk decoded every 2 s of audio) and progress events. VITS: the
studio speaks sentence by sentence, so bare makes the same ``model(**inputs)`` call per sentence
with the same seed (the same audio; no pause between sentences, so only speech counts).
Stable Audio: bare is ``pipe(**pipeline_kwargs(...))``, the very call the plugin makes (minus its
step callback), which gives the same samples (tested).

Two levels per model:

- ``plugin``: iterating the generator's ``run`` with a run context (model warm in the cache).
- ``studio``: a job through :class:`~studio.core.studio.Studio` (submit, queue, worker, events,
  the WAV and its recipe written), timed from ``submit`` to the job's end.

Goal (issue 5): seconds of audio per second, studio / bare >= 0.98. Medians of interleaved runs.
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

GOAL_RATIO = 0.98
MUSIC_PROMPT = "an upbeat electronic track with a warm bass line and bright synth chords"
MUSIC_OPTIONS = {"duration": 8.0, "guidance_scale": 3.0, "temperature": 1.0, "top_k": 250}
SOUND_PROMPT = "rain on a tin roof with distant thunder"
SOUND_OPTIONS = {"duration": 2.0, "guidance_scale": 7.0, "negative_prompt": "low quality"}
SPEECH_TEXT = (
    "The studio reads this paragraph aloud. It has a few sentences of ordinary length, so that "
    "the voice works on a realistic amount of text. Each sentence is spoken in turn, and the "
    "result is one file. That is all there is to it."
)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


class _BareMusic:
    def __init__(self, folder: Path, device: str, dtype: str) -> None:
        import torch
        from transformers import AutoTokenizer, MusicgenForConditionalGeneration

        from studio.core.devices import torch_dtype
        from studio_audio.modelinfo import MusicgenInfo

        self.torch, self.device = torch, device
        self.info = MusicgenInfo.read(folder)
        self.tok = AutoTokenizer.from_pretrained(folder)
        model: Any = MusicgenForConditionalGeneration.from_pretrained(
            folder, dtype=torch_dtype(dtype)
        )
        self.model = model.to(device).eval()

    def __call__(self, seed: int, duration: float) -> tuple[float, float]:
        """(audio seconds, wall seconds) of tokenize + generate + audio to numpy."""
        _sync(self.device)
        started = time.perf_counter()
        inputs = self.tok([MUSIC_PROMPT], return_tensors="pt", padding=True).to(self.device)
        self.torch.manual_seed(seed)
        audio = self.model.generate(
            **inputs,
            do_sample=True,
            guidance_scale=MUSIC_OPTIONS["guidance_scale"],
            temperature=MUSIC_OPTIONS["temperature"],
            top_k=MUSIC_OPTIONS["top_k"],
            max_new_tokens=self.info.tokens_for(duration),
        )
        samples = audio[0].float().cpu().numpy()
        elapsed = time.perf_counter() - started
        return samples.shape[-1] / self.info.sampling_rate, elapsed


class _BareSpeech:
    def __init__(self, folder: Path, device: str) -> None:
        import torch
        from transformers import AutoTokenizer, VitsModel

        self.torch, self.device = torch, device
        self.tok = AutoTokenizer.from_pretrained(folder)
        model: Any = VitsModel.from_pretrained(folder, dtype=torch.float32)
        self.model = model.to(device).eval()

    def __call__(self, seed: int) -> tuple[float, float]:
        """(audio seconds, wall seconds) of speaking the sentences one call each, as the studio."""
        import numpy as np

        from studio_audio.text import split_sentences

        _sync(self.device)
        started = time.perf_counter()
        self.torch.manual_seed(seed)
        pieces = []
        for sentence in split_sentences(SPEECH_TEXT):
            inputs = self.tok(sentence, return_tensors="pt").to(self.device)
            with self.torch.inference_mode():
                out = self.model(**inputs)
            pieces.append(out.waveform[0, : int(out.sequence_lengths[0])].float().cpu().numpy())
        samples = np.concatenate(pieces)
        elapsed = time.perf_counter() - started
        return samples.shape[0] / self.model.config.sampling_rate, elapsed


class _BareSound:
    def __init__(self, folder: Path, device: str, dtype: str) -> None:
        from diffusers import StableAudioPipeline

        from studio.core.devices import torch_dtype

        pipe: Any = StableAudioPipeline.from_pretrained(
            folder, dtype=torch_dtype(dtype), use_safetensors=True
        )
        pipe.set_progress_bar_config(disable=True)
        self.pipe, self.device = pipe.to(device), device

    def __call__(self, seed: int, options: Any) -> tuple[float, float]:
        """(audio seconds, wall seconds) of the pipeline call + audio to numpy."""
        from studio_audio.stable_audio import ignore_known_warnings, pipeline_kwargs

        ignore_known_warnings()
        _sync(self.device)
        started = time.perf_counter()
        audio = self.pipe(**pipeline_kwargs(SOUND_PROMPT, options, seed)).audios
        samples = audio[0].float().cpu().numpy()
        elapsed = time.perf_counter() - started
        return samples.shape[-1] / self.pipe.vae.config.sampling_rate, elapsed


def _plugin(generator: Any, ctx: Any, request: Any) -> tuple[float, float]:
    from studio.core.events import Result

    ctx.cancel_event.clear()
    _sync(ctx.device)
    started = time.perf_counter()
    output: Any = None
    for event in generator.run(request, ctx):
        if isinstance(event, Result):
            output = event.output
    _sync(ctx.device)
    elapsed = time.perf_counter() - started
    assert output is not None
    return output.samples.shape[0] / output.sample_rate, elapsed


def _studio(app: Any, request: Any) -> tuple[float, float]:
    from studio.core.events import JobState

    started = time.perf_counter()
    job = app.submit(request)
    record = app.wait(job, timeout=900)
    elapsed = time.perf_counter() - started
    if record.state != JobState.SUCCEEDED:
        raise RuntimeError(f"benchmark job {job} {record.state}: {record.error}")
    artifact = app.store.get_artifact(record.artifact_ids[0])
    seconds = float(artifact.recipe.get("extra", {}).get("duration", 0.0))
    return seconds, elapsed


def _row(name: str, studio: list[float], bare: list[float], notes: str) -> dict:
    s, b = statistics.median(studio), statistics.median(bare)
    ratio = s / b if b else 0.0
    # The best runs too: on a shared machine, load only ever slows a run down.
    best = max(studio) / max(bare) if bare else 0.0
    notes = f"{notes}; best-run ratio {best:.3f}"
    return {
        "name": name,
        "studio": round(s, 3),
        "bare": round(b, 3),
        "unit": "audio s/s",
        "ratio": round(ratio, 4),
        "goal": f">= {GOAL_RATIO}",
        "met": ratio >= GOAL_RATIO,
        "notes": notes,
    }


def run(quick: bool = False) -> list[dict]:
    import studio_audio
    from studio.core.context import RunContext
    from studio.core.devices import configure_cpu_threads, default_dtype
    from studio.core.generator import GenerationRequest, GenerationRun
    from studio.core.options import validate_options
    from studio.core.studio import Studio
    from studio.testing.models_audio import tiny_musicgen, tiny_stable_audio, tiny_vits
    from studio_audio.music import TextToMusic
    from studio_audio.stable_audio import TextToAudio
    from studio_audio.tts import TextToSpeech

    repeats = 3 if quick else 5
    duration = 4.0 if quick else MUSIC_OPTIONS["duration"]
    music_options = {**MUSIC_OPTIONS, "duration": duration}
    speech_options = {"sentence_pause": 0.0}
    sound_options = {**SOUND_OPTIONS, "steps": 10 if quick else 20}
    dit: dict[str, int] = (
        {"num_layers": 2, "heads": 4, "head_dim": 16}
        if quick
        else {"num_layers": 4, "heads": 8, "head_dim": 32}
    )
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-audio-") as tmp:
        root = Path(tmp)
        size: dict[str, Any] = (
            {"hidden_size": 256, "num_layers": 2}
            if quick
            else {"hidden_size": 512, "num_layers": 6}
        )
        music_dir = tiny_musicgen(root / "musicgen", max_positions=2048, **size)
        speech_dir = tiny_vits(root / "vits", full_size=not quick)
        sound_dir = tiny_stable_audio(root / "stable-audio", **dit)
        app = Studio.open(root / "home", load_plugins=False)
        try:
            app.plugins.register(studio_audio)
            music_req = GenerationRequest(
                generator="musicgen",
                prompt=MUSIC_PROMPT,
                model=str(music_dir),
                seed=1,
                options=music_options,
            )
            speech_req = GenerationRequest(
                generator="vits",
                prompt=SPEECH_TEXT,
                model=str(speech_dir),
                seed=1,
                options=speech_options,
            )
            sound_req = GenerationRequest(
                generator="stable-audio",
                prompt=SOUND_PROMPT,
                model=str(sound_dir),
                seed=1,
                options=sound_options,
            )
            _studio(app, music_req)  # warm up: the worker picks its device, the cache loads
            _studio(app, speech_req)
            _studio(app, sound_req)
            device = app.device
            dtype = default_dtype(device)
            # torch's CPU thread count is per thread: give this thread the worker's count, so
            # that the bare calls and the plugin runs here compute like the worker does.
            threads = configure_cpu_threads(app.settings.cpu_threads)
            ctx = RunContext(
                job_id="bench",
                device=device,
                cache=app.cache,
                settings=app.settings,
                scratch=root / "scratch",
                log=logging.getLogger("bench-audio"),
            )
            bare_music = _BareMusic(music_dir, device, dtype)
            bare_speech = _BareSpeech(speech_dir, device)
            bare_sound = _BareSound(sound_dir, device, dtype)
            music_run = GenerationRun(
                "musicgen",
                MUSIC_PROMPT,
                str(music_dir),
                1,
                validate_options(TextToMusic.Options, music_options),
            )
            speech_run = GenerationRun(
                "vits",
                SPEECH_TEXT,
                str(speech_dir),
                1,
                validate_options(TextToSpeech.Options, speech_options),
            )
            sound_run = GenerationRun(
                "stable-audio",
                SOUND_PROMPT,
                str(sound_dir),
                1,
                validate_options(TextToAudio.Options, sound_options),
            )
            bare_music(1, duration)
            bare_speech(1)
            bare_sound(1, sound_run.options)
            results: dict[str, list[float]] = {
                k: []
                for k in (
                    "music_bare",
                    "music_plugin",
                    "music_studio",
                    "speech_bare",
                    "speech_plugin",
                    "speech_studio",
                    "sound_bare",
                    "sound_plugin",
                    "sound_studio",
                )
            }
            for _ in range(repeats):  # interleaved, so that load changes hit every side alike
                for key, call in (
                    ("music_bare", lambda: bare_music(1, duration)),
                    ("music_plugin", lambda: _plugin(TextToMusic(), ctx, music_run)),
                    ("music_studio", lambda: _studio(app, music_req)),
                    ("speech_bare", lambda: bare_speech(1)),
                    ("speech_plugin", lambda: _plugin(TextToSpeech(), ctx, speech_run)),
                    ("speech_studio", lambda: _studio(app, speech_req)),
                    ("sound_bare", lambda: bare_sound(1, sound_run.options)),
                    ("sound_plugin", lambda: _plugin(TextToAudio(), ctx, sound_run)),
                    ("sound_studio", lambda: _studio(app, sound_req)),
                ):
                    seconds, elapsed = call()
                    results[key].append(seconds / elapsed)
        finally:
            app.close()
    where = f"{device}, {dtype}, {threads} CPU thread(s), {repeats} interleaved runs"
    music_note = (
        f"MusicGen decoder {size['num_layers']}x{size['hidden_size']} (random), "
        f"{duration:g} s, previews every 2 s; {where}"
    )
    speech_note = f"VITS {'full-size' if not quick else 'tiny'} (random); {where}"
    rows.append(
        _row(
            "audio: musicgen plugin run", results["music_plugin"], results["music_bare"], music_note
        )
    )
    rows.append(
        _row(
            "audio: musicgen studio job",
            results["music_studio"],
            results["music_bare"],
            music_note + "; job incl. queue and file",
        )
    )
    rows.append(
        _row(
            "audio: vits plugin run",
            results["speech_plugin"],
            results["speech_bare"],
            speech_note + "; one call per sentence on both sides",
        )
    )
    rows.append(
        _row(
            "audio: vits studio job",
            results["speech_studio"],
            results["speech_bare"],
            speech_note + "; job incl. queue and file",
        )
    )
    sound_note = (
        f"Stable Audio DiT {dit['num_layers']}x{dit['heads']}x{dit['head_dim']} (random), "
        f"{sound_options['duration']:g} s, {sound_options['steps']} steps; {where}"
    )
    rows.append(
        _row(
            "audio: stable-audio plugin run",
            results["sound_plugin"],
            results["sound_bare"],
            sound_note,
        )
    )
    rows.append(
        _row(
            "audio: stable-audio studio job",
            results["sound_studio"],
            results["sound_bare"],
            sound_note + "; job incl. queue and file",
        )
    )
    return rows


if __name__ == "__main__":
    for row in run(quick=True):
        print(row)
