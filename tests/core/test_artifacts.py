"""Artifacts: recipes, the A1111 text, PNG/WAV/FLAC/TXT files that carry them, and reading back."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from PIL import Image
from pydantic import Field

from studio.core.artifacts import (
    RECIPE_SCHEMA,
    a1111_parameters,
    artifact_files,
    artifact_stem,
    build_recipe,
    library_versions,
    read_recipe,
    sidecar_path,
    write_artifact,
)
from studio.core.context import RecipeNotes
from studio.core.errors import InvalidRequest
from studio.core.events import AdapterOutput, AudioOutput, ImageOutput, TextOutput
from studio.core.generator import GenerationRun, Generator, LoraSpec
from studio.core.options import BaseOptions

SHA = "0123456789abcdef" * 4


class ImageOptions(BaseOptions):
    steps: int = Field(20, ge=1)
    scheduler: str = "Euler a"
    guidance_scale: float = 7.0
    width: int = 512
    height: int = 512
    negative_prompt: str = ""
    init_image: Path | None = None


class FakeImageGenerator(Generator):
    id = "fake-image"
    name = "Fake image"
    modality = "image"
    task = "text-to-image"
    Options = ImageOptions


def image_recipe(**options: Any) -> dict[str, Any]:
    """A recipe as build_recipe makes it for a known request."""
    request = GenerationRun(
        generator="fake-image",
        prompt="a lighthouse at dusk, oil painting",
        model="org/tiny-sd",
        seed=123,
        options=ImageOptions(**options),
        loras=[LoraSpec(ref="my-style", weight=0.8)],
    )
    notes = RecipeNotes(
        model={"ref": "org/tiny-sd", "source": "hub", "revision": "c0ffee", "sha256": SHA},
        dtype="float32",
        extra={"scheduler_class": "EulerAncestralDiscreteScheduler"},
    )
    output = ImageOutput(image=Image.new("RGB", (64, 48), "teal"), seed=124, index=1)
    return build_recipe(
        plugin_name="fake",
        plugin_version="1.2.3",
        generator_cls=FakeImageGenerator,
        task="text-to-image",
        request=request,
        notes=notes,
        device="cpu",
        output=output,
        threads=3,
        device_name="Some CPU",
    )


# --- recipe -------------------------------------------------------------------------------------


def test_build_recipe_has_every_key_and_is_json(tmp_path: Path) -> None:
    recipe = image_recipe(init_image=tmp_path / "start.png", negative_prompt="blurry")
    assert json.loads(json.dumps(recipe)) == recipe  # JSON-able as it is
    assert recipe["schema"] == RECIPE_SCHEMA == 2
    assert recipe["plugin"] == {"name": "fake", "version": "1.2.3"}
    assert (recipe["generator"], recipe["task"], recipe["modality"]) == (
        "fake-image",
        "text-to-image",
        "image",
    )
    assert recipe["model"] == {
        "ref": "org/tiny-sd",
        "source": "hub",
        "revision": "c0ffee",
        "sha256": SHA,
    }
    # the plugin recorded no adapter hashes: the request's adapters are kept
    assert recipe["adapters"] == [{"ref": "my-style", "weight": 0.8, "sha256": None}]
    assert recipe["prompt"] == "a lighthouse at dusk, oil painting"
    assert recipe["options"]["init_image"] == str(tmp_path / "start.png")
    assert recipe["options"]["negative_prompt"] == "blurry"
    assert (recipe["seed"], recipe["index"]) == (124, 1)  # this output's seed, not the request's
    assert (recipe["device"], recipe["dtype"]) == ("cpu", "float32")
    assert (recipe["threads"], recipe["device_name"]) == (3, "Some CPU")
    assert recipe["extra"] == {"scheduler_class": "EulerAncestralDiscreteScheduler"}
    created = dt.datetime.fromisoformat(recipe["created"])
    assert created.tzinfo is not None
    assert abs((dt.datetime.now().astimezone() - created).total_seconds()) < 60
    libraries = recipe["libraries"]
    for name in ("studio", "python", "torch", "diffusers", "transformers", "peft", "numpy"):
        assert name in libraries
    assert libraries["Pillow"] == Image.__version__
    assert libraries["soundfile"] == sf.__version__


def test_the_options_the_run_chose_replace_the_requested_ones() -> None:
    request = GenerationRun(
        generator="fake-image", prompt="", model="org/tiny-sd", seed=1, options=ImageOptions()
    )
    notes = RecipeNotes(options={"scheduler": "DPM++ 2M", "steps": 30})
    output = ImageOutput(image=Image.new("RGB", (8, 8)), seed=1)
    recipe = build_recipe(
        plugin_name="fake",
        plugin_version="1",
        generator_cls=FakeImageGenerator,
        task="text-to-image",
        request=request,
        notes=notes,
        device="cpu",
        output=output,
    )
    assert recipe["options"]["scheduler"] == "DPM++ 2M" and recipe["options"]["steps"] == 30
    assert recipe["options"]["width"] == 512  # the requested values stay where none was chosen
    assert request.options.steps == 20  # the request itself is left alone
    assert recipe["model"] == {
        "ref": "org/tiny-sd",
        "source": None,
        "revision": None,
        "sha256": None,
    }
    assert recipe["threads"] is None  # not told: unknown


def test_a_run_without_a_model_records_none() -> None:
    request = GenerationRun(
        generator="fake-image", prompt="", model=None, seed=1, options=ImageOptions()
    )
    output = ImageOutput(image=Image.new("RGB", (8, 8)), seed=1)
    recipe = build_recipe(
        plugin_name="fake",
        plugin_version="1",
        generator_cls=FakeImageGenerator,
        task="text-to-image",
        request=request,
        notes=RecipeNotes(),
        device="cpu",
        output=output,
    )
    assert recipe["model"] is None
    assert "Model" not in a1111_parameters(recipe)


def test_recipes_and_artifact_modules_import_no_model_library() -> None:
    code = (
        "import sys\n"
        "import studio.core.artifacts, studio.core.store, studio.core.atomic\n"
        "from studio.core.artifacts import library_versions\n"
        "assert library_versions()['torch']\n"
        "heavy = {'torch', 'diffusers', 'transformers', 'peft', 'PIL', 'soundfile', 'PySide6'}\n"
        "loaded = heavy & set(sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_library_versions_are_a_fresh_copy() -> None:
    versions = library_versions()
    versions["studio"] = "changed"
    assert library_versions()["studio"] != "changed"


def test_artifact_stem_is_readable_and_unique_per_output() -> None:
    when = dt.datetime(2026, 11, 22, 18, 15, 0)
    assert artifact_stem("3f2a9c1e-77aa-4bb0", 0, when) == "20261122-181500-3f2a9c1e-0"
    assert artifact_stem("3f2a9c1e-77aa-4bb0", 2, when.timestamp()) == (
        "20261122-181500-3f2a9c1e-2"
    )
    assert artifact_stem(None, 0, when).startswith("20261122-181500-nojob-")
    assert artifact_stem("../x", 0, when) == "20261122-181500-x-0"


# --- A1111 parameters ---------------------------------------------------------------------------


def test_a1111_parameters_exact_text() -> None:
    recipe = image_recipe(negative_prompt="blurry, low quality")
    assert a1111_parameters(recipe) == (
        "a lighthouse at dusk, oil painting\n"
        "Negative prompt: blurry, low quality\n"
        "Steps: 20, Sampler: Euler a, CFG scale: 7.0, Seed: 124, Size: 512x512, "
        "Model hash: 0123456789, Model: tiny-sd"
    )


def test_a1111_parameters_without_negative_prompt_or_absent_keys() -> None:
    recipe = image_recipe(guidance_scale=4.5, width=640, height=384)
    assert a1111_parameters(recipe) == (
        "a lighthouse at dusk, oil painting\n"
        "Steps: 20, Sampler: Euler a, CFG scale: 4.5, Seed: 124, Size: 640x384, "
        "Model hash: 0123456789, Model: tiny-sd"
    )
    sparse = {
        "prompt": "a cat",
        "seed": 5,
        "options": {"num_inference_steps": 4},
        "model": {"ref": "/models/dream.safetensors", "sha256": None},
    }
    assert a1111_parameters(sparse) == "a cat\nSeed: 5, Model: dream"
    assert a1111_parameters(sparse, size=(64, 48)) == "a cat\nSeed: 5, Size: 64x48, Model: dream"
    assert a1111_parameters({"prompt": "", "seed": 1}) == "Seed: 1"


def test_a1111_parameters_quote_values_with_separators() -> None:
    recipe = {
        "prompt": "line one\nline two",
        "seed": 9,
        "options": {"scheduler": "DPM++ 2M, Karras", "steps": 30.0},
        "model": {"ref": "C:\\models\\my:model.safetensors"},
    }
    assert a1111_parameters(recipe) == (
        'line one\nline two\nSteps: 30, Sampler: "DPM++ 2M, Karras", Seed: 9, Model: "my:model"'
    )


# --- images -------------------------------------------------------------------------------------


def png_text(image: Image.Image) -> dict[str, str]:
    """The text chunks of an opened PNG (PngImageFile.text, untyped in Pillow's stubs)."""
    text: dict[str, str] = getattr(image, "text")  # noqa: B009
    return text


def test_png_carries_the_a1111_text_and_the_full_recipe(tmp_path: Path) -> None:
    recipe = image_recipe(negative_prompt="blurry")
    output = ImageOutput(image=Image.new("RGB", (64, 48), "teal"), seed=124, index=1)
    path = write_artifact(output, recipe, tmp_path / "out", "20261122-181500-abc-1")
    assert path == tmp_path / "out" / "20261122-181500-abc-1.png"
    assert artifact_files(path) == [path]  # images need no sidecar
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (64, 48) and image.mode == "RGB"
        assert image.getpixel((0, 0)) == (0, 128, 128)
        assert png_text(image)["parameters"] == a1111_parameters(recipe)
        assert json.loads(png_text(image)["studio_recipe"]) == recipe
    assert b"tEXtparameters\x00a lighthouse" in path.read_bytes()  # a plain tEXt chunk
    assert read_recipe(path) == recipe
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [path.name]  # no temp files


def test_png_with_non_latin_prompt_and_odd_mode(tmp_path: Path) -> None:
    recipe = image_recipe()
    recipe["prompt"] = "灯台 — phare"
    output = ImageOutput(image=Image.new("CMYK", (8, 8)), seed=1)
    path = write_artifact(output, recipe, tmp_path, "x")
    with Image.open(path) as image:
        assert image.mode == "RGB"
        assert png_text(image)["parameters"].startswith("灯台 — phare\nSteps: 20")
    assert read_recipe(path)["prompt"] == "灯台 — phare"


def test_existing_files_are_never_overwritten(tmp_path: Path) -> None:
    recipe = image_recipe()
    first = write_artifact(ImageOutput(image=Image.new("L", (4, 4), 0)), recipe, tmp_path, "s")
    second = write_artifact(ImageOutput(image=Image.new("L", (4, 4), 255)), recipe, tmp_path, "s")
    assert (first.name, second.name) == ("s.png", "s-1.png")
    with Image.open(first) as image:
        assert image.getpixel((0, 0)) == 0
    # an orphan sidecar also holds its name
    (tmp_path / "t.txt.json").write_text("{}")
    text = write_artifact(TextOutput(text="hi"), recipe, tmp_path, "t")
    assert text.name == "t-1.txt"
    assert (tmp_path / "t.txt.json").read_text() == "{}"


def test_bad_outputs_and_stems_are_refused(tmp_path: Path) -> None:
    recipe = image_recipe()
    with pytest.raises(InvalidRequest, match="PIL image"):
        write_artifact(ImageOutput(image=np.zeros((4, 4))), recipe, tmp_path, "x")
    adapter = AdapterOutput(path=tmp_path, base_model="m", name="a", modality="image")
    with pytest.raises(InvalidRequest, match="AdapterOutput"):
        write_artifact(adapter, recipe, tmp_path, "x")
    for stem in ("", "../escape", "a/b", ".hidden"):
        with pytest.raises(InvalidRequest, match="stem"):
            write_artifact(TextOutput(text="x"), recipe, tmp_path, stem)
    assert list(tmp_path.iterdir()) == []


# --- audio --------------------------------------------------------------------------------------


def audio_recipe() -> dict[str, Any]:
    recipe = image_recipe()
    recipe.update(generator="fake-audio", task="text-to-music", modality="audio")
    recipe["options"] = {"duration": 0.5, "init_audio": "/tmp/é.wav"}
    return recipe


@pytest.mark.parametrize(
    ("fmt", "subtype", "channels"),
    [("wav", "PCM_16", 1), ("wav", "FLOAT", 2), ("flac", "PCM_24", 2), ("flac", None, 1)],
)
def test_audio_round_trip(tmp_path: Path, fmt: str, subtype: str | None, channels: int) -> None:
    rng = np.random.default_rng(0)
    frames = 4000
    shape = (frames,) if channels == 1 else (frames, channels)
    samples = rng.uniform(-0.5, 0.5, size=shape).astype(np.float32)
    extra = {"format": fmt} | ({"subtype": subtype} if subtype else {})
    recipe = audio_recipe()
    output = AudioOutput(samples=samples, sample_rate=16000, seed=3, extra=extra)
    path = write_artifact(output, recipe, tmp_path, "clip")
    assert path.name == f"clip.{fmt}"
    assert artifact_files(path) == [path, sidecar_path(path)]
    assert sidecar_path(path).name == f"clip.{fmt}.json"
    assert json.loads(sidecar_path(path).read_text(encoding="utf-8")) == recipe

    info = sf.info(path)
    assert (info.samplerate, info.frames, info.channels) == (16000, frames, channels)
    assert info.subtype == (subtype or "PCM_16")
    data, rate = sf.read(path, dtype="float32")
    assert data.shape == shape and rate == 16000
    assert np.allclose(data, samples, atol=1e-3 if subtype != "FLOAT" else 0)

    assert read_recipe(path) == recipe  # from the sidecar
    sidecar_path(path).unlink()
    assert read_recipe(path) == recipe  # from the file's own metadata


def test_audio_comment_metadata_holds_the_recipe(tmp_path: Path) -> None:
    recipe = audio_recipe()
    samples = np.zeros(100, dtype=np.float32)
    flac = write_artifact(
        AudioOutput(samples=samples, sample_rate=8000, extra={"format": "flac"}),
        recipe,
        tmp_path,
        "a",
    )
    with sf.SoundFile(flac) as fh:
        assert json.loads(fh.comment) == recipe
    # a long recipe (WAV comments over ~2 KB are written but not read back by libsndfile)
    recipe["prompt"] = "a very long prompt " * 400
    wav = write_artifact(AudioOutput(samples=samples, sample_rate=8000), recipe, tmp_path, "b")
    sidecar_path(wav).unlink()
    assert read_recipe(wav) == recipe


def test_float_audio_is_clipped_only_at_write(tmp_path: Path) -> None:
    samples = np.array([0.0, 2.0, -3.0, 0.25, np.nan], dtype=np.float64)
    output = AudioOutput(samples=samples, sample_rate=8000)
    path = write_artifact(output, audio_recipe(), tmp_path, "loud")
    data, _ = sf.read(path, dtype="float64")
    assert data[1] == pytest.approx(1.0, abs=1e-4) and data[2] == -1.0
    assert data[3] == pytest.approx(0.25, abs=1e-4) and data[4] == 0.0
    assert samples[1] == 2.0  # the caller's array is untouched


def test_integer_audio_is_written_as_is(tmp_path: Path) -> None:
    samples = np.array([[0, 1000], [-32768, 32767]], dtype=np.int16)
    path = write_artifact(AudioOutput(samples=samples, sample_rate=22050), {}, tmp_path, "i")
    data, _ = sf.read(path, dtype="int16")
    assert np.array_equal(data, samples)


@pytest.mark.parametrize(
    ("samples", "rate", "extra", "message"),
    [
        (np.zeros(10), 8000, {"format": "mp3"}, "use one of wav, flac"),
        (np.zeros(10), 8000, {"format": "flac", "subtype": "FLOAT"}, "PCM_16"),
        (np.zeros((2, 3, 4)), 8000, {}, r"\(frames,\) or \(frames, channels\)"),
        (np.zeros(10, dtype=np.int64), 8000, {}, "int16 or int32"),
        (np.zeros(10), 0, {}, "sample rate must be positive"),
        (np.zeros((10, 9)), 8000, {"format": "flac"}, "9-channel audio"),
    ],
)
def test_bad_audio_is_refused_with_a_clear_message(
    tmp_path: Path, samples: np.ndarray, rate: int, extra: dict[str, str], message: str
) -> None:
    output = AudioOutput(samples=samples, sample_rate=rate, extra=extra)
    with pytest.raises(InvalidRequest, match=message):
        write_artifact(output, audio_recipe(), tmp_path, "bad")
    assert list(tmp_path.iterdir()) == []


# --- text ---------------------------------------------------------------------------------------


def test_text_and_sidecar(tmp_path: Path) -> None:
    recipe = image_recipe()
    recipe.update(generator="fake-text", modality="text")
    path = write_artifact(TextOutput(text="Once upon a time…\r\nThe end."), recipe, tmp_path, "t")
    assert path.name == "t.txt"
    assert path.read_bytes() == "Once upon a time…\r\nThe end.".encode()
    side = tmp_path / "t.txt.json"
    assert json.loads(side.read_text(encoding="utf-8")) == recipe
    assert read_recipe(path) == recipe
    assert read_recipe(side) == recipe
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.txt", "t.txt.json"]


# --- reading errors -----------------------------------------------------------------------------


def test_files_without_a_recipe_say_so(tmp_path: Path) -> None:
    plain_png = tmp_path / "plain.png"
    Image.new("RGB", (4, 4)).save(plain_png)
    plain_txt = tmp_path / "plain.txt"
    plain_txt.write_text("hello")
    plain_wav = tmp_path / "plain.wav"
    sf.write(plain_wav, np.zeros(10), 8000)
    commented = tmp_path / "commented.flac"
    with sf.SoundFile(commented, "w", 8000, 1, format="FLAC") as fh:
        fh.comment = "recorded in my kitchen"
        fh.write(np.zeros(10))
    for path in (plain_png, plain_txt, plain_wav, commented):
        with pytest.raises(InvalidRequest, match="has no studio recipe"):
            read_recipe(path)
    with pytest.raises(InvalidRequest, match="does not exist"):
        read_recipe(tmp_path / "missing.png")
    fake_png = tmp_path / "fake.png"
    fake_png.write_text("not a png")
    with pytest.raises(InvalidRequest, match="not a readable PNG"):
        read_recipe(fake_png)


def test_a_damaged_sidecar_is_reported(tmp_path: Path) -> None:
    path = write_artifact(TextOutput(text="x"), image_recipe(), tmp_path, "t")
    sidecar_path(path).write_text('{"generator": "fake-te')
    with pytest.raises(InvalidRequest, match="damaged studio recipe"):
        read_recipe(path)
    sidecar_path(path).write_text('["just", "a", "list"]')
    with pytest.raises(InvalidRequest, match="does not hold a studio recipe"):
        read_recipe(path)
