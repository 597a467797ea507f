"""The image plugin's pieces that need no pipeline: options, emphasis parsing and prompt chunks,
input images, checkpoint checks, schedulers, previews, and the plugin's import weight."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from studio.core.errors import InvalidRequest, ModelNotFound, OptionsError
from studio.core.options import field_specs, validate_options
from studio.testing.models_image import tiny_clip_tokenizer
from studio_image import images as imageio
from studio_image.generators import seeds_for
from studio_image.loading import read_header
from studio_image.options import ImageToImageOptions, InpaintingOptions, TextToImageOptions
from studio_image.prompts import Fragment, chunk_tokens, dropped_text, parse_emphasis
from studio_image.schedulers import SCHEDULERS, scheduler_names

# numpy 2 deprecations raised by diffusers' schedulers (torch tensors through numpy): not ours
pytestmark = [
    pytest.mark.filterwarnings("ignore:__array_wrap__ must accept:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't:DeprecationWarning"),
]


def test_importing_the_plugin_imports_no_model_library() -> None:
    code = (
        "import sys, studio_image\n"
        "from studio.core.plugins import PluginHost\n"
        "host = PluginHost(); host.register(studio_image)\n"
        "assert set(host.generators) >= {'text-to-image', 'image-to-image', 'inpainting'}\n"
        "heavy = [m for m in ('torch', 'diffusers', 'transformers', 'peft', 'PIL') "
        "if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


# --- options -----------------------------------------------------------------------------------


def test_size_must_be_a_multiple_of_8_and_in_range() -> None:
    with pytest.raises(OptionsError) as info:
        validate_options(TextToImageOptions, {"width": "500"})
    assert info.value.field == "width"
    assert "multiple of 8" in str(info.value)
    with pytest.raises(OptionsError) as info:
        validate_options(TextToImageOptions, {"height": 8192})
    assert info.value.field == "height" and "4096" in str(info.value)
    assert validate_options(TextToImageOptions, {"width": "512", "height": 768}).width == 512


def test_steps_zero_and_bad_choices_are_rejected() -> None:
    with pytest.raises(OptionsError) as info:
        validate_options(TextToImageOptions, {"steps": 0})
    assert info.value.field == "steps" and ">= 1" in str(info.value)
    with pytest.raises(OptionsError) as info:
        validate_options(TextToImageOptions, {"scheduler": "Euler b"})
    assert info.value.field == "scheduler" and "DPM++ 2M Karras" in str(info.value)


def test_family_defaults_are_none_and_documented() -> None:
    specs = {s.name: s for s in field_specs(TextToImageOptions)}
    for name in ("width", "height", "steps", "guidance_scale", "clip_skip"):
        assert specs[name].default is None and specs[name].optional
    assert "SDXL 1024" in specs["width"].description
    assert specs["width"].multiple_of == 8
    assert all(s.description for s in specs.values())


def test_init_and_mask_images_are_required_where_needed() -> None:
    with pytest.raises(OptionsError) as info:
        validate_options(ImageToImageOptions, {})
    assert info.value.field == "init_image"
    with pytest.raises(OptionsError) as info:
        validate_options(InpaintingOptions, {"init_image": "a.png"})
    assert info.value.field == "mask_image"
    specs = {s.name: s for s in field_specs(InpaintingOptions)}
    assert specs["init_image"].widget == "image" and specs["mask_image"].widget == "mask"
    assert specs["strength"].default == 1.0
    assert {s.name: s for s in field_specs(ImageToImageOptions)}["strength"].default == 0.75


def test_scheduler_choices_are_the_curated_list() -> None:
    names = scheduler_names()
    assert names[0] == "default"
    assert set(names[1:]) == set(SCHEDULERS)
    for wanted in ("Euler", "Euler a", "DPM++ 2M", "DPM++ 2M Karras", "DDIM", "UniPC", "LCM"):
        assert wanted in names


def test_batch_seeds_are_consecutive_and_wrap() -> None:
    assert seeds_for(10, 3) == [10, 11, 12]
    assert seeds_for(2**32 - 1, 2) == [2**32 - 1, 0]


# --- emphasis syntax ---------------------------------------------------------------------------


def _weights(text: str) -> list[tuple[str, float]]:
    return [(f.text, round(f.weight, 4)) for f in parse_emphasis(text) if not f.brk]


def test_emphasis_syntax() -> None:
    assert _weights("a cat") == [("a cat", 1.0)]
    assert _weights("a (red) cat") == [("a ", 1.0), ("red", 1.1), (" cat", 1.0)]
    assert _weights("((red))") == [("red", 1.21)]
    assert _weights("[blue] sky") == [("blue", round(1 / 1.1, 4)), (" sky", 1.0)]
    assert _weights("(red cat:1.5), dog") == [("red cat", 1.5), (", dog", 1.0)]
    assert _weights("(a (b:2) c:0.5)") == [("a ", 0.5), ("b", 1.0), (" c", 0.5)]
    assert _weights(r"\(literal\) x") == [("(literal) x", 1.0)]
    assert _weights("time: noon") == [("time: noon", 1.0)]


def test_unbalanced_brackets_are_forgiven() -> None:
    assert _weights("(open") == [("open", 1.1)]
    assert _weights("close) here") == [("close) here", 1.0)]


def test_break_splits_fragments() -> None:
    frags = parse_emphasis("a cat BREAK a dog")
    assert [f.brk for f in frags] == [False, True, False]
    assert frags[0].text == "a cat" and frags[2].text == "a dog"


# --- chunks ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory):
    return tiny_clip_tokenizer(tmp_path_factory.mktemp("tok"))


def test_short_prompt_is_one_window_like_the_pipeline(tokenizer) -> None:
    chunks = chunk_tokens(tokenizer, [Fragment("a photo of a cat")])
    expected = tokenizer(
        "a photo of a cat", padding="max_length", max_length=77, truncation=True
    ).input_ids
    assert chunks.ids == [expected]
    assert chunks.weights == [[1.0] * 77]


def test_long_prompt_is_chunked_not_cut(tokenizer) -> None:
    words = ["word"] * 200  # 'word' is no merged token: several tokens each
    per_word = len(tokenizer("word", add_special_tokens=False).input_ids)
    assert per_word > 1
    chunks = chunk_tokens(tokenizer, [Fragment(" ".join(words))])
    assert chunks.token_count == 200 * per_word
    assert len(chunks.ids) == -(-200 * per_word // 75)
    assert all(len(ids) == 77 for ids in chunks.ids)
    body = [t for ids in chunks.ids for t in ids[1:-1] if t != tokenizer.pad_token_id]
    assert len(body) == 200 * per_word  # every token is somewhere
    assert dropped_text(tokenizer, " ".join(words)).startswith("w")


def test_chunks_break_after_a_late_comma_and_at_break(tokenizer) -> None:
    text = "cat " * 70 + ", " + "dog " * 20
    chunks = chunk_tokens(tokenizer, [Fragment(text)])
    comma = tokenizer.get_vocab()[",</w>"]
    first = chunks.ids[0][1:-1]
    assert first[70] == comma and first[71] == tokenizer.pad_token_id  # ended at the comma
    assert chunks.ids[1][1:21] == [tokenizer.get_vocab()["dog</w>"]] * 20

    split = chunk_tokens(tokenizer, parse_emphasis("cat BREAK dog"))
    assert len(split.ids) == 2
    assert split.ids[0][1] == tokenizer.get_vocab()["cat</w>"]
    assert split.ids[1][1] == tokenizer.get_vocab()["dog</w>"]


def test_weights_follow_their_tokens(tokenizer) -> None:
    chunks = chunk_tokens(tokenizer, parse_emphasis("a (cat:1.5)"))
    cat = tokenizer.get_vocab()["cat</w>"]
    i = chunks.ids[0].index(cat)
    assert chunks.weights[0][i] == 1.5 and chunks.weights[0][i - 1] == 1.0


# --- input images ------------------------------------------------------------------------------


def _save(path: Path, mode: str, size=(64, 48), **info) -> Path:
    from PIL import Image

    img = Image.new(mode, size)
    img.save(path, **info)
    return path


def test_supported_modes_are_converted_to_rgb(tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    grey16 = tmp_path / "grey16.png"
    Image.fromarray(np.full((48, 64), 65535, dtype=np.uint16)).save(grey16)
    loaded = imageio.load_rgb(grey16)
    assert loaded.image.mode == "RGB" and loaded.image.getpixel((0, 0)) == (255, 255, 255)
    assert any("16-bit" in n for n in loaded.notes)

    palette = tmp_path / "palette.png"
    Image.new("RGB", (64, 48), (10, 200, 30)).convert("P", palette=Image.Palette.ADAPTIVE).save(
        palette
    )
    assert imageio.load_rgb(palette).image.getpixel((3, 3)) == (10, 200, 30)

    grey = _save(tmp_path / "grey.png", "L")
    assert imageio.load_rgb(grey).image.mode == "RGB"


def test_transparency_is_flattened_or_refused(tmp_path: Path) -> None:
    from PIL import Image

    path = tmp_path / "alpha.png"
    Image.new("RGBA", (64, 48), (255, 0, 0, 0)).save(path)
    white = imageio.load_rgb(path, transparent="white")
    assert white.image.getpixel((0, 0)) == (255, 255, 255)
    assert any("flattened onto white" in n for n in white.notes)
    assert imageio.load_rgb(path, transparent="black").image.getpixel((0, 0)) == (0, 0, 0)
    with pytest.raises(InvalidRequest, match="transparency"):
        imageio.inspect_image(path, transparent="error")


def test_refused_and_broken_images(tmp_path: Path) -> None:
    cmyk = _save(tmp_path / "cmyk.jpg", "CMYK")
    with pytest.raises(InvalidRequest, match="CMYK"):
        imageio.inspect_image(cmyk)
    with pytest.raises(InvalidRequest, match="does not exist"):
        imageio.inspect_image(tmp_path / "missing.png")
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image at all")
    with pytest.raises(InvalidRequest, match="not an image"):
        imageio.inspect_image(junk)
    good = _save(tmp_path / "good.png", "RGB", size=(256, 256))
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:60])
    with pytest.raises(InvalidRequest):
        imageio.inspect_image(truncated)


def test_mask_must_match_the_init_image(tmp_path: Path) -> None:
    init = imageio.inspect_image(_save(tmp_path / "init.png", "RGB", size=(64, 64)))
    mask = imageio.inspect_image(_save(tmp_path / "mask.png", "L", size=(64, 32)), "mask image")
    with pytest.raises(InvalidRequest, match="must be the same size"):
        imageio.check_mask_matches(init, mask)


def test_target_size_rules() -> None:
    assert imageio.target_size(None, None, None, 512) == (512, 512)
    assert imageio.target_size(None, None, (333, 250), 512) == (328, 248)
    assert imageio.target_size(256, None, (400, 200), 512) == (256, 128)
    assert imageio.target_size(640, 512, (400, 200), 512) == (640, 512)


# --- checkpoints -------------------------------------------------------------------------------


def test_damaged_safetensors_are_named(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    good = tmp_path / "good.safetensors"
    save_file({"w": torch.zeros(64, 64)}, str(good))
    assert set(read_header(good)) == {"w"}
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[:-100])
    with pytest.raises(ModelNotFound, match="truncated"):
        read_header(truncated)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(json.dumps({"a": 1}).encode() * 3)
    with pytest.raises(ModelNotFound, match=r"not a valid \.safetensors"):
        read_header(garbage)


# --- schedulers and previews -------------------------------------------------------------------


@pytest.mark.parametrize("name", scheduler_names())
def test_every_scheduler_builds_from_an_sd_config(name: str) -> None:
    from diffusers import PNDMScheduler

    from studio_image.schedulers import display_name, make_scheduler

    base = PNDMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        skip_prk_steps=True,
        steps_offset=1,
    )
    made = make_scheduler(name, base)
    made.set_timesteps(4)
    assert made.config.num_train_timesteps == base.config.num_train_timesteps
    if name != "default":
        assert display_name(made) == name


def test_flow_matching_models_take_only_default() -> None:
    from diffusers import FlowMatchEulerDiscreteScheduler

    from studio_image.schedulers import make_scheduler

    with pytest.raises(OptionsError, match="flow-matching") as info:
        make_scheduler("DDIM", FlowMatchEulerDiscreteScheduler())
    assert info.value.field == "scheduler"


def test_previews_are_small_rgb_images() -> None:
    import torch

    from studio_image.previews import latents_to_images

    latents = torch.randn(2, 4, 16, 24, generator=torch.Generator().manual_seed(0)) * 14
    images = latents_to_images(latents, "sd")
    assert [(im.mode, im.size) for im in images] == [("RGB", (48, 32))] * 2
    assert latents_to_images(torch.randn(1, 16, 8, 8), "generic")[0].size == (16, 16)
    assert latents_to_images(torch.randn(1, 64, 32), "generic") == []  # packed latents


def test_other_families_report_the_dropped_words(tokenizer) -> None:
    from studio_image.prompts import plan_prompts

    class TextOnlyPipeline:  # a family this module does not encode itself (no CLIP encoder)
        def __init__(self) -> None:
            self.tokenizer = tokenizer

        def __call__(self, prompt: str, negative_prompt: str = "", clip_skip: int = 0) -> None:
            raise AssertionError("not called")

    words = " ".join(["cat"] * 70 + ["dog"] * 10)
    plan = plan_prompts(TextOnlyPipeline(), words, "", weighting=True, clip_skip=2)
    assert not plan.own_encoding
    assert plan.kwargs == {"prompt": words, "negative_prompt": "", "clip_skip": 1}
    (note,) = plan.notes
    assert "80 tokens" in note and "reads 75" in note and "dog dog dog dog dog" in note
    plan = plan_prompts(TextOnlyPipeline(), "a (cat:1.2)", "", weighting=True, clip_skip=None)
    assert any("emphasis" in n for n in plan.notes)
