"""The audio plugin on tiny random models: text to speech (VITS) and text to music (MusicGen).

The generators run directly against a RunContext here (fast, one shared model cache); the studio
and command-line paths are in test_audio_studio.py. Random weights give noise, so the tests check
shapes, rates, lengths, determinism, events, errors and equality with a bare transformers call.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from studio.core.cache import ModelCache
from studio.core.context import RunContext
from studio.core.errors import Cancelled, InvalidRequest, ModelNotFound
from studio.core.events import AudioOutput, Note, Preview, Progress, Result
from studio.core.generator import GenerationRun, Generator
from studio.core.options import field_specs, validate_options
from studio.core.settings import Settings
from studio.testing import models_audio
from studio_audio.loudness import PEAK_CEILING
from studio_audio.music import TextToMusic, generation_kwargs
from studio_audio.tts import TextToSpeech

pytestmark = pytest.mark.slow


#: How far the studio's samples may be from a bare library call's. Both sides run with the same
#: CPU thread count (``_one_torch_thread``; the plugin's helper thread takes its caller's), so
#: the sampled MusicGen tokens are the same; the decoded floats may still differ in the last bits
#: where a kernel's summation order differs (measured: about 1e-7; samples reach 0.05 and more).
SAMPLES_ATOL = 1e-5


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Any:
    """One CPU thread on this thread, for the generators and the bare calls alike.

    Tiny models: one thread is fastest and fair to the machine's other tests; and sampled
    tokens match a bare call's only when both run with the same thread count (float sums split
    over other threads round differently, which can flip a sampled token). torch's thread count
    is per thread; the previous count comes back after this module.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@dataclass(frozen=True)
class Models:
    vits: Path
    vits_speakers: Path  # three voices
    vits_phonemes: Path  # asks for the phonemizer package
    musicgen: Path
    stereo: Path
    melody: Path


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    root = tmp_path_factory.mktemp("audio-models")
    return Models(
        vits=models_audio.tiny_vits(root / "vits"),
        vits_speakers=models_audio.tiny_vits(root / "vits-3", num_speakers=3),
        vits_phonemes=models_audio.tiny_vits(root / "vits-ph", phonemize=True),
        musicgen=models_audio.tiny_musicgen(root / "musicgen"),
        stereo=models_audio.tiny_musicgen(root / "musicgen-stereo", stereo=True),
        melody=models_audio.tiny_musicgen(root / "musicgen-melody", melody=True),
    )


@pytest.fixture(scope="session")
def cache() -> ModelCache:
    return ModelCache()


@pytest.fixture
def make_ctx(cache: ModelCache, tmp_path: Path) -> Any:
    def make() -> RunContext:
        return RunContext(
            job_id="test",
            device="cpu",
            cache=cache,
            settings=Settings(),
            scratch=tmp_path,
            log=logging.getLogger("test-audio"),
        )

    return make


def request(
    gen: type[Generator], prompt: str, model: Path | str, seed: int = 1, **options: Any
) -> GenerationRun:
    opts = validate_options(gen.Options, options)
    return GenerationRun(gen.id, prompt, str(model), seed, opts)


def run(gen: Generator, req: GenerationRun, ctx: RunContext) -> list[Any]:
    gen.check(req)
    return list(gen.run(req, ctx))


def result(events: list[Any]) -> AudioOutput:
    results = [e for e in events if isinstance(e, Result)]
    assert len(results) == 1 and events[-1] is results[0]
    output = results[0].output
    assert isinstance(output, AudioOutput)
    return output


# --- plugin ------------------------------------------------------------------------------------


def test_plugin_registers_both_generators_without_heavy_imports() -> None:
    code = (
        "import sys\n"
        "from studio.core.plugins import PluginHost\n"
        "import studio_audio\n"
        "host = PluginHost()\n"
        "info = host.register(studio_audio)\n"
        "assert info.error is None, info.error\n"
        "assert sorted(info.generators) == ['musicgen', 'stable-audio', 'vits'], info.generators\n"
        "assert host.find_generator('text-to-speech').id == 'vits'\n"
        "assert host.find_generator('text-to-music').id == 'musicgen'\n"
        "heavy = [m for m in ('torch', 'transformers', 'diffusers', 'numpy') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_options_describe_the_form() -> None:
    music = {s.name: s for s in field_specs(TextToMusic.Options)}
    assert music["melody"].kind == "path" and music["melody"].widget == "audio"
    assert music["format"].choices == ("wav", "wav-float", "flac")
    assert music["duration"].maximum == 300.0
    speech = {s.name: s for s in field_specs(TextToSpeech.Options)}
    assert speech["speaker"].optional and speech["speaking_rate"].minimum == 0.25


# --- text to speech ----------------------------------------------------------------------------


def test_speech_end_to_end(models: Models, make_ctx: Any) -> None:
    ctx = make_ctx()
    req = request(
        TextToSpeech, "Hello there. How are you today?", models.vits, 7, sentence_pause=0.25
    )
    events = run(TextToSpeech(), req, ctx)
    out = result(events)
    progress = [e for e in events if isinstance(e, Progress)]
    previews = [e for e in events if isinstance(e, Preview)]
    assert [p.step for p in progress] == [0, 1, 2] and progress[-1].total == 2
    assert len(previews) == 2 and all(p.sample_rate == 16000 for p in previews)
    pause = int(0.25 * 16000)
    assert out.samples.shape == (sum(len(p.data) for p in previews) + pause,)
    assert out.samples.dtype == np.float32 and out.sample_rate == 16000 and out.seed == 7
    # VITS output lengths are whole frames of the vocoder's hop
    assert all(len(p.data) % models_audio.VITS_HOP == 0 for p in previews)
    assert out.extra["format"] == "wav" and out.extra["subtype"] == "PCM_16"
    assert ctx.recipe.model is not None and ctx.recipe.model["source"] == "folder"
    assert ctx.recipe.dtype == "float32" and ctx.recipe.extra["sentences"] == 2


def test_speech_is_deterministic_with_a_seed(models: Models, make_ctx: Any) -> None:
    gen = TextToSpeech()
    first = result(run(gen, request(TextToSpeech, "Same words.", models.vits, 3), make_ctx()))
    again = result(run(gen, request(TextToSpeech, "Same words.", models.vits, 3), make_ctx()))
    other = result(run(gen, request(TextToSpeech, "Same words.", models.vits, 4), make_ctx()))
    np.testing.assert_array_equal(first.samples, again.samples)
    assert first.samples.shape != other.samples.shape or not np.array_equal(
        first.samples, other.samples
    )


def test_speech_options_take_effect(models: Models, make_ctx: Any, cache: ModelCache) -> None:
    gen = TextToSpeech()
    text = "a slow and steady voice"

    def speak(model: Path, **options: Any) -> np.ndarray:
        return result(
            run(gen, request(TextToSpeech, text, model, 5, **options), make_ctx())
        ).samples

    fast = speak(models.vits, speaking_rate=3.0, noise_scale_duration=0.0)
    slow = speak(models.vits, speaking_rate=0.5, noise_scale_duration=0.0)
    assert len(slow) > len(fast)
    voice0 = speak(models.vits_speakers, speaker=0)
    voice2 = speak(models.vits_speakers, speaker=2)
    assert voice0.shape != voice2.shape or not np.array_equal(voice0, voice2)
    flat = speak(models.vits, noise_scale=0.0, noise_scale_duration=0.0)
    flat_again = speak(models.vits, noise_scale=0.0, noise_scale_duration=0.0, sentence_pause=0)
    np.testing.assert_array_equal(flat, flat_again)  # one sentence: no pause; no noise: same
    # the shared, cached model keeps its own defaults after a run that changed them
    for entry in cache.stats().entries:
        if entry.key.kind == "transformers-vits":
            with cache.acquire(entry.key, lambda: None) as model:
                assert model is not None
                assert model.noise_scale == pytest.approx(0.667)
                assert model.noise_scale_duration == pytest.approx(0.8)


@pytest.mark.parametrize(
    ("fmt", "subtype"), [("wav", "PCM_16"), ("wav-float", "FLOAT"), ("flac", "PCM_16")]
)
def test_speech_formats(models: Models, make_ctx: Any, fmt: str, subtype: str) -> None:
    out = result(
        run(TextToSpeech(), request(TextToSpeech, "ok", models.vits, format=fmt), make_ctx())
    )
    assert out.extra["format"] == fmt.split("-")[0] and out.extra["subtype"] == subtype


def test_speech_bad_input_is_refused_before_model_work(
    models: Models, make_ctx: Any, cache: ModelCache
) -> None:
    gen = TextToSpeech()
    with pytest.raises(InvalidRequest, match="empty"):
        gen.check(request(TextToSpeech, "  \n ", models.vits))
    with pytest.raises(InvalidRequest, match=r"3 speakers \(allowed: 0 to 2\)"):
        gen.check(request(TextToSpeech, "hi", models.vits_speakers, speaker=3))
    with pytest.raises(InvalidRequest, match="single voice"):
        gen.check(request(TextToSpeech, "hi", models.vits, speaker=1))
    with pytest.raises(InvalidRequest, match="phonemizer"):
        gen.check(request(TextToSpeech, "hi", models.vits_phonemes))
    with pytest.raises(InvalidRequest, match="not a VITS"):
        gen.check(request(TextToSpeech, "hi", models.musicgen))
    misses = cache.stats().misses
    with pytest.raises(InvalidRequest, match="no characters this voice can speak"):
        list(gen.run(request(TextToSpeech, "1234 ### 5678", models.vits), make_ctx()))
    assert cache.stats().misses == misses  # the model was not loaded for it


def test_speech_skips_unspeakable_pieces_with_a_note(models: Models, make_ctx: Any) -> None:
    events = run(
        TextToSpeech(), request(TextToSpeech, "Hello.\n12345\nBye.", models.vits), make_ctx()
    )
    notes = [e for e in events if isinstance(e, Note)]
    assert any("1 piece(s)" in n.message for n in notes)
    assert len([e for e in events if isinstance(e, Preview)]) == 2


def test_speech_cancel(models: Models, make_ctx: Any) -> None:
    ctx = make_ctx()
    events = TextToSpeech().run(request(TextToSpeech, "One. Two. Three. Four.", models.vits), ctx)
    seen = []
    with pytest.raises(Cancelled):
        for event in events:
            seen.append(event)
            if isinstance(event, Preview):
                ctx.cancel_event.set()
    assert len([e for e in seen if isinstance(e, Preview)]) == 1  # stopped at the next sentence


# --- text to music -----------------------------------------------------------------------------


def bare_musicgen(model_dir: Path, prompt: str, seed: int, req: GenerationRun, **extra: Any) -> Any:
    """The same generation as a plain transformers call."""
    import torch
    from transformers import AutoTokenizer, MusicgenForConditionalGeneration

    from studio_audio.modelinfo import MusicgenInfo

    model = MusicgenForConditionalGeneration.from_pretrained(str(model_dir)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    inputs = tokenizer([prompt], return_tensors="pt", padding=True)
    torch.manual_seed(seed)
    kwargs = generation_kwargs(req.options, MusicgenInfo.read(model_dir))
    return model.generate(**inputs, **extra, **kwargs)[0].numpy()


def test_music_equals_a_bare_transformers_call(models: Models, make_ctx: Any) -> None:
    req = request(
        TextToMusic,
        "warm lo-fi piano",
        models.musicgen,
        11,
        duration=1.5,
        guidance_scale=2.5,
        temperature=0.9,
        top_k=20,
    )
    out = result(run(TextToMusic(), req, make_ctx()))
    assert out.sample_rate == models_audio.MUSICGEN_SAMPLING_RATE
    assert out.samples.shape == (int(1.5 * models_audio.MUSICGEN_SAMPLING_RATE),)
    bare = bare_musicgen(models.musicgen, "warm lo-fi piano", 11, req)
    np.testing.assert_allclose(out.samples, bare[0], rtol=0, atol=SAMPLES_ATOL)


def test_music_progress_previews_and_determinism(models: Models, make_ctx: Any) -> None:
    gen = TextToMusic()
    req = request(TextToMusic, "drums", models.musicgen, 5, duration=2.0, preview_every=0.5)
    events = run(gen, req, make_ctx())
    out = result(events)
    progress = [e for e in events if isinstance(e, Progress)]
    steps = [p.step for p in progress]
    assert steps == sorted(steps) and steps[-1] == progress[-1].total
    assert progress[-1].total == 100 + models_audio.MUSICGEN_CODEBOOKS - 1  # delay pattern
    previews = [e for e in events if isinstance(e, Preview)]
    assert len(previews) >= 4 and all(p.sample_rate == out.sample_rate for p in previews)
    joined = np.concatenate([p.data for p in previews])
    assert joined.shape == out.samples.shape  # previews cover the whole piece, in order
    again = result(run(gen, req, make_ctx()))
    np.testing.assert_array_equal(out.samples, again.samples)
    other = result(
        run(gen, request(TextToMusic, "drums", models.musicgen, 6, duration=2.0), make_ctx())
    )
    assert not np.array_equal(out.samples, other.samples)
    silent = run(
        gen,
        request(TextToMusic, "drums", models.musicgen, 5, duration=1.0, preview_every=0),
        make_ctx(),
    )
    assert not [e for e in silent if isinstance(e, Preview)]


def test_music_stereo_keeps_both_channels(models: Models, make_ctx: Any) -> None:
    out = result(
        run(
            TextToMusic(),
            request(TextToMusic, "wide pads", models.stereo, 2, duration=1.0, format="flac"),
            make_ctx(),
        )
    )
    assert out.samples.shape == (models_audio.MUSICGEN_SAMPLING_RATE, 2)
    assert out.extra["channels"] == 2 and out.extra["format"] == "flac"


def test_music_loudness_option_never_clips(models: Models, make_ctx: Any) -> None:
    ctx = make_ctx()
    out = result(
        run(
            TextToMusic(),
            request(TextToMusic, "loud", models.musicgen, 3, duration=1.0, normalize="peak"),
            ctx,
        )
    )
    assert float(np.max(np.abs(out.samples))) == pytest.approx(PEAK_CEILING, rel=1e-4)
    assert "gain_db" in ctx.recipe.extra


def test_music_cancel_stops_within_a_block(models: Models, make_ctx: Any) -> None:
    ctx = make_ctx()
    req = request(TextToMusic, "long piece", models.musicgen, 1, duration=4.5)
    seen: list[Progress] = []
    with pytest.raises(Cancelled):
        for event in TextToMusic().run(req, ctx):
            if isinstance(event, Progress):
                seen.append(event)
                if event.step > 0:
                    ctx.cancel_event.set()
    assert seen[-1].step < seen[-1].total
    ctx = make_ctx()
    ctx.cancel_event.set()
    with pytest.raises(Cancelled):
        list(TextToMusic().run(req, ctx))


def test_music_bad_input_is_refused_by_check(models: Models, tmp_path: Path) -> None:
    gen = TextToMusic()
    with pytest.raises(InvalidRequest, match="description is empty"):
        gen.check(request(TextToMusic, " ", models.musicgen))
    with pytest.raises(InvalidRequest, match=r"over this model's maximum of 5 s"):
        gen.check(request(TextToMusic, "x", models.musicgen, duration=6.0))
    tune = tmp_path / "tune.wav"
    sf.write(tune, np.zeros(800) + 0.1, 8000)
    with pytest.raises(InvalidRequest, match="does not take a melody"):
        gen.check(request(TextToMusic, "x", models.musicgen, melody=str(tune)))
    junk = tmp_path / "junk.mp3"
    junk.write_bytes(b"\x00\x01" * 100)
    with pytest.raises(InvalidRequest, match=r"cannot read junk\.mp3"):
        gen.check(request(TextToMusic, "x", models.melody, melody=str(junk)))
    with pytest.raises(InvalidRequest, match="file not found"):
        gen.check(request(TextToMusic, "x", models.melody, melody=str(tmp_path / "no.wav")))
    with pytest.raises(InvalidRequest, match="not a MusicGen"):
        gen.check(request(TextToMusic, "x", models.vits))


def test_music_melody_is_resampled_and_followed(
    models: Models, make_ctx: Any, tmp_path: Path
) -> None:
    tune = tmp_path / "tune.wav"
    rate = 22050
    sf.write(tune, 0.5 * np.sin(2 * np.pi * 440 * np.arange(rate * 2) / rate), rate)
    ctx = make_ctx()
    req = request(TextToMusic, "follow the tune", models.melody, 4, duration=1.0, melody=str(tune))
    events = run(TextToMusic(), req, ctx)
    notes = [e.message for e in events if isinstance(e, Note)]
    assert any(f"resampled from {rate} Hz" in n for n in notes)
    out = result(events)
    assert out.samples.shape == (models_audio.MUSICGEN_SAMPLING_RATE,)
    assert ctx.recipe.extra["melody"]["sample_rate"] == rate
    assert len(ctx.recipe.extra["melody"]["sha256"]) == 64
    # the melody conditions the music: without it the same seed gives other audio
    plain = result(
        run(
            TextToMusic(),
            request(TextToMusic, "follow the tune", models.melody, 4, duration=1.0),
            make_ctx(),
        )
    )
    assert not np.array_equal(plain.samples, out.samples)


def test_music_records_the_melody_as_an_absolute_path(
    models: Models, make_ctx: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative melody replays from anywhere: the run records its absolute path through
    ``ctx.record_options``; the request's options are left as asked, in check and in run."""
    rate = 16000
    sf.write(tmp_path / "tune.wav", 0.5 * np.sin(2 * np.pi * 330 * np.arange(rate) / rate), rate)
    monkeypatch.chdir(tmp_path)
    ctx = make_ctx()
    req = request(TextToMusic, "tune", models.melody, 2, duration=0.5, melody="tune.wav")
    result(run(TextToMusic(), req, ctx))
    absolute = str(Path.cwd() / "tune.wav")
    assert req.options.melody == Path("tune.wav")
    assert ctx.recipe.options == {"melody": absolute}
    assert ctx.recipe.extra["melody"]["path"] == absolute


# --- hub ids, offline --------------------------------------------------------------------------


def test_hub_ids_resolve_offline(models: Models, make_ctx: Any, hub_cache: Path) -> None:
    snapshot = models_audio.to_hub_cache(models.vits_speakers, "tiny-org/vits-3", hub_cache)
    models_audio.to_hub_cache(models.musicgen, "tiny-org/musicgen", hub_cache)
    gen = TextToSpeech()
    with pytest.raises(InvalidRequest, match="allowed: 0 to 2"):  # check reads the cached config
        gen.check(request(TextToSpeech, "hi", "tiny-org/vits-3", speaker=9))
    ctx = make_ctx()
    out = result(run(gen, request(TextToSpeech, "Hi there.", "tiny-org/vits-3", speaker=1), ctx))
    assert out.samples.size > 0
    assert ctx.recipe.model is not None
    assert ctx.recipe.model["source"] == "hub" and ctx.recipe.model["revision"] == snapshot.name
    with pytest.raises(InvalidRequest, match="maximum"):
        TextToMusic().check(request(TextToMusic, "x", "tiny-org/musicgen", duration=10))
    ctx = make_ctx()
    out = result(
        run(TextToMusic(), request(TextToMusic, "x", "tiny-org/musicgen", duration=0.5), ctx)
    )
    assert out.samples.shape == (4000,)
    with pytest.raises(ModelNotFound):
        list(gen.run(request(TextToSpeech, "hi", "tiny-org/not-downloaded"), make_ctx()))


# --- accelerator -------------------------------------------------------------------------------


@pytest.mark.gpu
def test_both_generators_on_cuda(models: Models, tmp_path: Path) -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    from studio.core.devices import default_dtype

    def ctx() -> RunContext:
        return RunContext(
            job_id="gpu",
            device="cuda:0",
            cache=gpu_cache,
            settings=Settings(),
            scratch=tmp_path,
            log=logging.getLogger("test-audio"),
        )

    gpu_cache = ModelCache()
    speech = result(
        run(TextToSpeech(), request(TextToSpeech, "On the GPU.", models.vits, 2), ctx())
    )
    assert speech.samples.size > 0 and np.all(np.isfinite(speech.samples))
    run_ctx = ctx()
    req = request(TextToMusic, "gpu beat", models.melody, 3, duration=1.0, preview_every=0.5)
    events = run(TextToMusic(), req, run_ctx)
    music = result(events)
    assert music.samples.shape == (models_audio.MUSICGEN_SAMPLING_RATE,)
    assert np.all(np.isfinite(music.samples))
    assert run_ctx.recipe.dtype == default_dtype("cuda:0")  # half precision on the accelerator
    joined = np.concatenate([e.data for e in events if isinstance(e, Preview)])
    assert joined.shape == music.samples.shape
    again = result(run(TextToMusic(), req, ctx()))
    np.testing.assert_array_equal(music.samples, again.samples)
