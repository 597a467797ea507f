"""The audio plugin through the studio and the command line, offline, on tiny models.

Checks what the user gets: WAV/FLAC files readable with soundfile at the model's rate and length,
the recipe in the file's metadata and in a sidecar, regeneration that reproduces the file, cancel,
and one-line errors with nothing written for bad requests.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from studio.core.artifacts import read_recipe, sidecar_path
from studio.core.errors import InvalidRequest
from studio.core.events import JobEvent, JobState, Progress
from studio.core.generator import GenerationRequest
from studio.testing import models_audio

pytestmark = pytest.mark.slow

#: studio_app loads the installed plugins (the audio plugin through its entry point).
studio_load_plugins = True


@pytest.fixture(scope="module")
def tiny_folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("audio-studio-models")
    return {
        "vits": models_audio.tiny_vits(root / "vits"),
        "musicgen": models_audio.tiny_musicgen(root / "musicgen"),
    }


@pytest.fixture
def hub_models(tiny_folders: dict[str, Path], hub_cache: Path) -> dict[str, str]:
    """The tiny models as hub ids in the test's offline hub cache."""
    models_audio.to_hub_cache(tiny_folders["vits"], "tiny-org/vits", hub_cache)
    models_audio.to_hub_cache(tiny_folders["musicgen"], "tiny-org/musicgen", hub_cache)
    return {"vits": "tiny-org/vits", "musicgen": "tiny-org/musicgen"}


def finish(app: Any, job_id: str) -> Any:
    record = app.wait(job_id, timeout=120)
    assert record.state == JobState.SUCCEEDED, record.error
    return record


def test_speech_file_and_recipe(studio_app: Any, hub_models: dict[str, str]) -> None:
    job = studio_app.submit(
        GenerationRequest(
            generator="text-to-speech",
            prompt="Hello from the studio. Goodbye.",
            model=hub_models["vits"],
            seed=9,
            options={"format": "flac"},
        )
    )
    record = finish(studio_app, job)
    (artifact,) = [studio_app.store.get_artifact(a) for a in record.artifact_ids]
    path = Path(artifact.path)
    assert path.suffix == ".flac" and artifact.modality == "audio"
    info = sf.info(str(path))
    assert info.samplerate == models_audio.VITS_SAMPLING_RATE and info.channels == 1
    assert info.format == "FLAC" and info.subtype == "PCM_16"
    recipe = read_recipe(path)
    assert recipe["generator"] == "vits" and recipe["seed"] == 9
    assert recipe["model"]["ref"] == "tiny-org/vits" and recipe["model"]["source"] == "hub"
    assert recipe["options"]["format"] == "flac"
    assert json.loads(sidecar_path(path).read_text())["generator"] == "vits"
    assert "vits" in sf.SoundFile(str(path)).comment  # the recipe travels inside the file too


def test_music_regenerates_identically(studio_app: Any, hub_models: dict[str, str]) -> None:
    job = studio_app.submit(
        GenerationRequest(
            generator="text-to-music",
            prompt="bright synth arpeggio",
            model=hub_models["musicgen"],
            seed=21,
            options={"duration": 1.5, "format": "wav-float", "normalize": "loudness"},
        )
    )
    first = Path(studio_app.store.get_artifact(finish(studio_app, job).artifact_ids[0]).path)
    data, rate = sf.read(str(first), dtype="float32")
    assert rate == models_audio.MUSICGEN_SAMPLING_RATE
    assert data.shape == (int(1.5 * rate),)
    assert sf.info(str(first)).subtype == "FLOAT"
    assert float(np.max(np.abs(data))) <= 10 ** (-1 / 20) + 1e-6  # never clips
    again = finish(studio_app, studio_app.regenerate(first))
    second = Path(studio_app.store.get_artifact(again.artifact_ids[0]).path)
    assert second != first
    np.testing.assert_array_equal(sf.read(str(second), dtype="float32")[0], data)


def test_bad_requests_are_refused_before_any_job(
    studio_app: Any, hub_models: dict[str, str], tmp_path: Path
) -> None:
    junk = tmp_path / "melody.wav"
    junk.write_bytes(b"RIFF....WAVEjunk")
    bad = [
        ("text-to-music", "x", {"duration": 30}, "maximum"),
        ("text-to-music", "x", {"melody": str(junk)}, "cannot read melody.wav"),
        ("text-to-music", "x", {"top_k": -1}, "top_k"),
        ("text-to-speech", "   ", {}, "prompt"),
        ("text-to-speech", "hi", {"speaker": 4}, "single voice"),
        ("text-to-speech", "hi", {"format": "mp3"}, "'wav', 'wav-float', 'flac'"),
    ]
    for task, prompt, options, message in bad:
        model = hub_models["musicgen" if task == "text-to-music" else "vits"]
        with pytest.raises(InvalidRequest, match=message):
            studio_app.submit(
                GenerationRequest(generator=task, prompt=prompt, model=model, options=options)
            )
    assert studio_app.jobs() == []


def test_cancel_a_running_music_job(studio_app: Any, hub_models: dict[str, str]) -> None:
    started = threading.Event()

    def on_event(event: JobEvent) -> None:
        if isinstance(event.event, Progress) and event.event.step > 0:
            started.set()

    unsubscribe = studio_app.subscribe(on_event)
    try:
        job = studio_app.submit(
            GenerationRequest(
                generator="musicgen",
                prompt="a long piece",
                model=hub_models["musicgen"],
                options={"duration": 5.0, "preview_every": 0.5},
            )
        )
        assert started.wait(60)
        assert studio_app.cancel(job)
        record = studio_app.wait(job, timeout=60)
    finally:
        unsubscribe()
    assert record.state == JobState.CANCELLED
    assert record.step < record.total and record.artifact_ids == []


def test_command_line_end_to_end(
    hub_models: dict[str, str], studio_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from studio.cli import main

    code = main(
        [
            "generate",
            "text-to-music",
            "--prompt",
            "calm strings",
            "--model",
            hub_models["musicgen"],
            "--seed",
            "4",
            "--set",
            "duration=1",
            "--set",
            "format=flac",
            "--json",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    document = json.loads(captured.out)
    (artifact,) = document["artifacts"]
    path = Path(artifact["path"])
    assert path.suffix == ".flac" and path.is_file()
    assert sf.info(str(path)).frames == models_audio.MUSICGEN_SAMPLING_RATE
    assert (
        main(
            [
                "generate",
                "text-to-speech",
                "--prompt",
                "Hello there.",
                "--model",
                hub_models["vits"],
            ]
        )
        == 0
    )
    assert capsys.readouterr().out.strip().endswith(".wav")
    outputs = sorted((studio_home / "outputs").glob("*.*"))
    assert (
        main(
            [
                "generate",
                "text-to-music",
                "--prompt",
                "x",
                "--model",
                hub_models["musicgen"],
                "--set",
                "duration=60",
            ]
        )
        == 2
    )
    assert "over this model's maximum" in capsys.readouterr().err
    assert sorted((studio_home / "outputs").glob("*.*")) == outputs  # nothing written
