"""Text to audio with Stable Audio Open (diffusers StableAudioPipeline), offline, on a tiny model.

The tiny pipeline (studio.testing.models_audio.tiny_stable_audio) makes 8 kHz stereo noise in a
2 s window; runs use 2 denoising steps. Checked: the file the studio writes (rate, length,
channels, recipe), progress per step, regeneration bit for bit on the CPU, equality with a bare
diffusers call, cancel within one step, bad requests refused before any model work, and that
`text-to-music` still means MusicGen.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from studio.core.artifacts import read_recipe
from studio.core.cache import ModelCache
from studio.core.context import RunContext
from studio.core.errors import Cancelled, InvalidRequest
from studio.core.events import AudioOutput, JobEvent, JobState, Note, Progress, Result
from studio.core.generator import GenerationRequest, GenerationRun
from studio.core.options import field_specs, validate_options
from studio.core.settings import Settings
from studio.testing import models_audio
from studio.testing.contract import GeneratorContract
from studio_audio.loudness import normalize
from studio_audio.stable_audio import TextToAudio, pipeline_kwargs

pytestmark = pytest.mark.slow

#: studio_app loads the installed plugins (the audio plugin through its entry point).
studio_load_plugins = True

RATE = models_audio.STABLE_AUDIO_SAMPLING_RATE
REPO = "tiny-org/stable-audio"
FAST = {"steps": 2, "duration": 1.5}


#: How far the studio's samples may be from a bare diffusers call's: float sums split over other
#: threads round differently (measured between 1 and 2 threads: about 4e-7; samples reach 1).
SAMPLES_ATOL = 1e-5


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Any:
    """A tiny model: one CPU thread is fastest, and fair to the machine's other tests.

    The generator's helper thread takes this count too, so the bare comparison runs both sides
    with one thread; it still compares with a tolerance (``SAMPLES_ATOL``)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("stable-audio-models")
    return {
        "stable": models_audio.tiny_stable_audio(root / "stable-audio"),
        "musicgen": models_audio.tiny_musicgen(root / "musicgen"),
    }


@pytest.fixture
def hub_model(folders: dict[str, Path], hub_cache: Path) -> str:
    models_audio.to_hub_cache(folders["stable"], REPO, hub_cache)
    return REPO


@pytest.fixture(scope="module")
def cache() -> ModelCache:
    return ModelCache()


def make_ctx(cache: ModelCache, tmp_path: Path, cancel: threading.Event | None = None) -> Any:
    ctx = RunContext(
        job_id="test",
        device="cpu",
        cache=cache,
        settings=Settings(),
        scratch=tmp_path,
        log=logging.getLogger("test-stable-audio"),
    )
    if cancel is not None:
        ctx.cancel_event = cancel
    return ctx


def request(
    model: Path | str, prompt: str = "rain on a tin roof", seed: int = 1, **options: Any
) -> GenerationRun:
    opts = validate_options(TextToAudio.Options, {**FAST, **options})
    return GenerationRun(TextToAudio.id, prompt, str(model), seed, opts)


def output_of(events: list[Any]) -> AudioOutput:
    results = [e for e in events if isinstance(e, Result)]
    assert len(results) == 1 and events[-1] is results[0]
    assert isinstance(results[0].output, AudioOutput)
    return results[0].output


def finish(app: Any, job_id: str) -> Any:
    record = app.wait(job_id, timeout=120)
    assert record.state == JobState.SUCCEEDED, record.error
    return record


# --- through the studio ------------------------------------------------------------------------


def test_file_progress_and_regenerate(studio_app: Any, hub_model: str) -> None:
    progress: list[Progress] = []

    def on_event(event: JobEvent) -> None:
        if isinstance(event.event, Progress):
            progress.append(event.event)

    unsubscribe = studio_app.subscribe(on_event)
    try:
        job = studio_app.submit(
            GenerationRequest(
                generator="text-to-audio",
                prompt="rain on a tin roof",
                model=hub_model,
                seed=5,
                options={**FAST, "format": "wav-float", "negative_prompt": "low quality"},
            )
        )
        record = finish(studio_app, job)
    finally:
        unsubscribe()
    assert [(p.step, p.total) for p in progress] == [(0, 2), (1, 2), (2, 2)]
    path = Path(studio_app.store.get_artifact(record.artifact_ids[0]).path)
    info = sf.info(str(path))
    assert path.suffix == ".wav" and info.subtype == "FLOAT"
    assert info.samplerate == RATE and info.channels == 2 and info.frames == int(1.5 * RATE)
    data, _ = sf.read(str(path), dtype="float32")
    assert float(np.max(np.abs(data))) <= 10 ** (-1 / 20) + 1e-6  # levelled, never clips
    recipe = read_recipe(path)
    assert recipe["generator"] == "stable-audio" and recipe["seed"] == 5
    assert recipe["model"]["ref"] == REPO and recipe["model"]["source"] == "hub"
    assert recipe["options"]["steps"] == 2 and recipe["options"]["negative_prompt"] == "low quality"
    assert recipe["extra"]["scheduler"] == "CosineDPMSolverMultistepScheduler"
    assert json.loads(path.with_name(path.name + ".json").read_text())["task"] == "text-to-audio"

    again = finish(studio_app, studio_app.regenerate(path))
    second = Path(studio_app.store.get_artifact(again.artifact_ids[0]).path)
    assert second != path
    np.testing.assert_array_equal(sf.read(str(second), dtype="float32")[0], data)


def test_cancel_a_running_job(studio_app: Any, hub_model: str) -> None:
    started = threading.Event()

    def on_event(event: JobEvent) -> None:
        if isinstance(event.event, Progress) and event.event.step > 0:
            started.set()

    unsubscribe = studio_app.subscribe(on_event)
    try:
        job = studio_app.submit(
            GenerationRequest(
                generator="stable-audio",
                prompt="a long drone",
                model=hub_model,
                options={"duration": 2.0, "steps": 400},
            )
        )
        assert started.wait(60)
        assert studio_app.cancel(job)
        record = studio_app.wait(job, timeout=60)
    finally:
        unsubscribe()
    assert record.state == JobState.CANCELLED
    assert record.step < record.total == 400 and record.artifact_ids == []


def test_bad_requests_are_refused_before_any_model_work(
    studio_app: Any, hub_model: str, folders: dict[str, Path]
) -> None:
    limit = models_audio.STABLE_AUDIO_MAX_SECONDS  # 2 s
    bad = [
        (hub_model, "x", {"duration": limit + 0.5}, r"over this model's maximum of 2 s"),
        # the released model's limit is known without downloading its 5 GB
        ("stabilityai/stable-audio-open-1.0", "x", {"duration": 60}, "maximum of 47.55 s"),
        (hub_model, "   ", {}, "prompt"),
        (hub_model, "x", {"steps": 0}, "steps"),
        (hub_model, "x", {"format": "mp3"}, "'wav', 'wav-float', 'flac'"),
        (str(folders["musicgen"]), "x", {}, "needs a Stable Audio pipeline"),
    ]
    for model, prompt, options, message in bad:
        with pytest.raises(InvalidRequest, match=message):
            studio_app.submit(
                GenerationRequest(
                    generator="stable-audio", prompt=prompt, model=model, options=options
                )
            )
    assert studio_app.jobs() == []
    assert studio_app.cache.stats().misses == 0  # nothing was loaded
    # MusicGen given the Stable Audio model says which generator takes it
    with pytest.raises(InvalidRequest, match="use the 'stable-audio' generator"):
        studio_app.submit(GenerationRequest(generator="text-to-music", prompt="x", model=hub_model))


def test_text_to_music_still_means_musicgen(studio_app: Any) -> None:
    assert studio_app.find_generator("text-to-music").id == "musicgen"
    assert studio_app.find_generator("text-to-audio").id == "stable-audio"
    prepared = studio_app.prepare(GenerationRequest(generator="text-to-music", prompt="x"))
    assert prepared.generator == "musicgen" and prepared.model == "facebook/musicgen-small"
    prepared = studio_app.prepare(GenerationRequest(generator="text-to-audio", prompt="x"))
    assert prepared.generator == "stable-audio"
    assert prepared.model == "stabilityai/stable-audio-open-1.0"


def test_command_line(
    hub_model: str, studio_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from studio.cli import main

    args = ["generate", "text-to-audio", "--prompt", "door creak", "--model", hub_model]
    code = main([*args, "--seed", "3", "--set", "duration=1", "--set", "steps=2", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    (artifact,) = json.loads(captured.out)["artifacts"]
    info = sf.info(artifact["path"])
    assert (info.frames, info.channels, info.samplerate) == (RATE, 2, RATE)
    assert main([*args, "--set", "duration=3"]) == 2
    assert "over this model's maximum" in capsys.readouterr().err


# --- the generator directly --------------------------------------------------------------------


def test_equals_a_bare_diffusers_call(
    folders: dict[str, Path], cache: ModelCache, tmp_path: Path
) -> None:
    from diffusers import StableAudioPipeline

    req = request(folders["stable"], seed=7, guidance_scale=3.0, negative_prompt="hiss")
    ctx = make_ctx(cache, tmp_path)
    gen = TextToAudio()
    gen.check(req)
    out = output_of(list(gen.run(req, ctx)))
    pipe = StableAudioPipeline.from_pretrained(str(folders["stable"]), use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)
    bare = pipe(**pipeline_kwargs(req.prompt, req.options, req.seed)).audios[0].numpy().T
    assert out.samples.shape == bare.shape == (int(1.5 * RATE), 2)
    # the studio only levels it (normalize=off scales a clipping result down to -1 dBFS)
    levelled = normalize(np.ascontiguousarray(bare), RATE, "off").samples
    np.testing.assert_allclose(out.samples, levelled, rtol=0, atol=SAMPLES_ATOL)
    assert ctx.recipe.dtype == "float32" and ctx.recipe.model["source"] == "folder"
    other = output_of(list(gen.run(request(folders["stable"], seed=8), ctx)))
    assert not np.array_equal(other.samples, out.samples)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_a_prompt_longer_than_the_model_reads_gets_a_note(
    folders: dict[str, Path], cache: ModelCache, tmp_path: Path
) -> None:
    # the tiny tokenizer reads letters, 63 of them at most
    prompt = "waves on pebbles and gulls " * 3 + "far away"
    req = request(folders["stable"], prompt, normalize="peak")
    pipeline_log = logging.getLogger("diffusers.pipelines.stable_audio.pipeline_stable_audio")
    records = _Records()
    pipeline_log.addHandler(records)
    try:
        events = list(TextToAudio().run(req, make_ctx(cache, tmp_path)))
    finally:
        pipeline_log.removeHandler(records)
    notes = [e for e in events if isinstance(e, Note)]
    assert [n.level for n in notes] == ["warning"]
    assert "longer than this model reads (63 tokens)" in notes[0].message
    assert notes[0].message.endswith("gulls far away'")
    # said once, by the studio, not also by the pipeline's log
    assert not [m for m in records.messages if "truncated" in m]
    req = request(folders["stable"], "waves", normalize="peak")
    short = list(TextToAudio().run(req, make_ctx(cache, tmp_path)))
    assert not [e for e in short if isinstance(e, Note)]


class _CancelOnThirdStep(threading.Event):
    """A cancel flag that the pipeline's helper thread finds set at its third step callback."""

    def __init__(self) -> None:
        super().__init__()
        self.checks = 0

    def is_set(self) -> bool:
        if threading.current_thread().name == "stable-audio":
            self.checks += 1
            if self.checks == 3:
                self.set()
        return super().is_set()


def test_cancel_stops_within_one_step(
    folders: dict[str, Path], cache: ModelCache, tmp_path: Path
) -> None:
    ctx = make_ctx(cache, tmp_path, cancel=_CancelOnThirdStep())
    seen: list[Progress] = []
    with pytest.raises(Cancelled):
        for event in TextToAudio().run(request(folders["stable"], steps=50), ctx):
            if isinstance(event, Progress):
                seen.append(event)
    # steps 1 and 2 were reported; the callback after step 3 stopped the call
    assert [p.step for p in seen] == [0, 1, 2]
    ctx = make_ctx(cache, tmp_path)
    ctx.cancel_event.set()
    with pytest.raises(Cancelled):
        list(TextToAudio().run(request(folders["stable"]), ctx))


def test_options_describe_the_form() -> None:
    specs = {s.name: s for s in field_specs(TextToAudio.Options)}
    assert list(specs)[:4] == ["duration", "negative_prompt", "steps", "guidance_scale"]
    assert specs["negative_prompt"].widget == "multiline"
    assert specs["steps"].default == 100 and specs["guidance_scale"].default == 7.0
    assert specs["format"].choices == ("wav", "wav-float", "flac")


# --- the shared generator contract -------------------------------------------------------------


class TestStableAudioContract(GeneratorContract):
    generator_cls = TextToAudio
    options = FAST
    prompt = "footsteps on gravel"

    @pytest.fixture
    def model_ref(self, folders: dict[str, Path]) -> str:
        return str(folders["stable"])
