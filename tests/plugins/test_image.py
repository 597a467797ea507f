"""The image generators on tiny random-weight diffusers pipelines, end to end and offline.

Models are built once per session from configs (tokenizer files written by the factory, weights
random) and saved in the diffusers layout, as a single-file checkpoint and in a temporary hub
cache; LoRA adapters are built for their shapes in the kohya and diffusers formats. Random weights
paint noise, so the checks look at shapes, determinism, events, recipes, cache statistics, weights
and errors, and compare with the bare diffusers pipeline where that means something.
"""

from __future__ import annotations

import gc
import json
import logging
import shutil
import weakref
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import studio_image.running as running_mod
from studio.core.cache import ModelCache
from studio.core.context import RunContext
from studio.core.errors import Cancelled, InvalidRequest, ModelNotFound, OptionsError
from studio.core.events import JobState, Note, Preview, Progress, Result
from studio.core.generator import GenerationRequest, GenerationRun, LoraSpec
from studio.core.options import validate_options
from studio.core.refs import sha256_file
from studio.core.settings import Settings
from studio.testing.contract import (
    GeneratorContract,
    GeneratorRunFailed,
    artifact_content,
    run_generator,
)
from studio.testing.hub import save_to_hub_cache
from studio.testing.models_image import (
    save_diffusers_lora,
    save_kohya_lora,
    save_peft_lora,
    save_single_file,
    save_tiny_sd,
    save_tiny_sdxl,
)
from studio_image import ImageToImage, Inpainting, TextToImage
from studio_image.prompts import plan_prompts

# the built-in plugins are loaded through their entry points, as in the application
studio_load_plugins = True

pytestmark = [
    pytest.mark.filterwarnings("ignore:__array_wrap__ must accept:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
]

SMALL = {"steps": 2, "width": 64, "height": 64}
LONG_PROMPT = ", ".join(["a watercolor painting of a red fox in a snowy forest"] * 12)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


needs_cuda = pytest.mark.skipif(not _cuda(), reason="needs a CUDA device")


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """Tiny SD 1.x and SDXL pipelines, a single-file checkpoint, LoRAs and input images."""
    from diffusers import DiffusionPipeline
    from PIL import Image

    root = tmp_path_factory.mktemp("image-models")
    sd = save_tiny_sd(root / "tiny-sd", seed=0)
    sdxl = save_tiny_sdxl(root / "tiny-sdxl", seed=0)
    pipe = DiffusionPipeline.from_pretrained(str(sd), local_files_only=True)
    kohya = save_kohya_lora(pipe, root / "kohya-style.safetensors", seed=1)
    diffusers_lora = save_diffusers_lora(pipe, root / "diffusers-lora", seed=2).parent
    peft_lora = save_peft_lora(pipe, root / "peft-lora", seed=3)
    single = save_single_file(pipe, root / "tiny-sd.safetensors")
    init = root / "init.png"
    Image.new("RGB", (64, 64), (180, 40, 40)).save(init)
    mask = root / "mask.png"
    Image.new("L", (64, 64), 255).save(mask)
    return SimpleNamespace(
        root=root,
        sd=sd,
        sdxl=sdxl,
        kohya=kohya,
        diffusers_lora=diffusers_lora,
        peft_lora=peft_lora,
        single=single,
        init=init,
        mask=mask,
    )


def _run(
    app: Any,
    cls: Any,
    model: Path | str,
    options: dict[str, Any],
    *,
    seed: int = 1,
    prompt: str = "a photo of a cat",
    loras: tuple[str, ...] = (),
) -> tuple[list, list]:
    return run_generator(cls, prompt, str(model), options, seed, app, loras=loras, timeout=120)


def _results(events: list) -> list[Result]:
    return [e for e in events if isinstance(e, Result)]


def _cached_pipeline(app: Any) -> Any:
    """Peek at the cached base pipeline (the worker is idle between jobs)."""
    (entry,) = [e for e in app.cache.stats().entries if e.key.kind == "diffusers-pipeline"]
    with app.cache.acquire(entry.key, lambda: pytest.fail("the pipeline is not cached")) as pipe:
        return pipe


def _direct_context(tmp_path: Path, cache: ModelCache | None = None) -> RunContext:
    return RunContext(
        job_id="direct",
        device="cpu",
        cache=cache or ModelCache(),
        settings=Settings(),
        scratch=tmp_path,
        log=logging.getLogger("test.image"),
    )


def _request(cls: Any, model: Path, options: dict[str, Any], seed: int = 1) -> GenerationRun:
    return GenerationRun(
        generator=cls.id,
        prompt="a photo of a cat",
        model=str(model),
        seed=seed,
        options=validate_options(cls.Options, options),
    )


# --- the shared generator contract --------------------------------------------------------------


class TestTextToImageContract(GeneratorContract):
    generator_cls = TextToImage
    options = SMALL

    @pytest.fixture
    def model_ref(self, tiny: SimpleNamespace) -> str:
        return str(tiny.sd)


class TestImageToImageContract(GeneratorContract):
    generator_cls = ImageToImage

    @pytest.fixture(autouse=True)
    def _inputs(self, tiny: SimpleNamespace) -> None:
        self.options = {"steps": 2, "init_image": str(tiny.init)}

    @pytest.fixture
    def model_ref(self, tiny: SimpleNamespace) -> str:
        return str(tiny.sd)


class TestInpaintingContract(GeneratorContract):
    generator_cls = Inpainting

    @pytest.fixture(autouse=True)
    def _inputs(self, tiny: SimpleNamespace) -> None:
        self.options = {"steps": 2, "init_image": str(tiny.init), "mask_image": str(tiny.mask)}

    @pytest.fixture
    def model_ref(self, tiny: SimpleNamespace) -> str:
        return str(tiny.sd)


# --- text-to-image -----------------------------------------------------------------------------


def test_family_defaults_resolve_into_the_recipe_and_a1111_text(studio_app, tiny) -> None:
    from PIL import Image

    _, arts = _run(studio_app, TextToImage, tiny.sd, {"steps": 2}, seed=7)
    (art,) = arts
    options = art.recipe["options"]
    # tiny SD: sample_size 32 x VAE factor 2 = 64; SD pipelines default to CFG 7.5
    assert (options["width"], options["height"], options["guidance_scale"]) == (64, 64, 7.5)
    assert options["scheduler"] == "DDIM"  # the model's own scheduler, named
    assert art.recipe["extra"]["pipeline"] == "StableDiffusionPipeline"
    assert art.recipe["extra"]["family"] == "sd1"
    assert art.recipe["dtype"] == "float32" and art.recipe["device"] == "cpu"
    with Image.open(art.path) as png:
        assert png.size == (64, 64) and png.mode == "RGB"
        params = png.info["parameters"]
    assert params.startswith("a photo of a cat\n")
    for part in (
        "Steps: 2",
        "Sampler: DDIM",
        "CFG scale: 7.5",
        "Seed: 7",
        "Size: 64x64",
        "Model: tiny-sd",
    ):
        assert part in params
    assert json.loads(Image.open(art.path).info["studio_recipe"])["seed"] == 7
    # the resolved values replay to the same pixels
    job = studio_app.wait(studio_app.regenerate(art.path), timeout=120)
    (again,) = [studio_app.store.get_artifact(i) for i in job.artifact_ids]
    assert again.recipe["options"] == options
    assert artifact_content(again.path, "image") == artifact_content(art.path, "image")


def test_chosen_values_are_recorded_not_written_into_the_request(tiny, tmp_path) -> None:
    """One channel into the recipe: ``ctx.record_options``; the run's options stay as asked."""
    request = _request(TextToImage, tiny.sd, {"steps": 2})
    asked = request.options.model_dump()
    ctx = _direct_context(tmp_path)
    assert len(_results(list(TextToImage().run(request, ctx)))) == 1
    assert request.options.model_dump() == asked  # width, height, guidance, scheduler: as asked
    assert (asked["width"], asked["guidance_scale"], asked["scheduler"]) == (None, None, "default")
    assert ctx.recipe.options == {
        "width": 64,
        "height": 64,
        "steps": 2,
        "guidance_scale": 7.5,
        "scheduler": "DDIM",
    }


def test_sdxl_defaults_long_weighted_prompt_and_clip_skip(studio_app, tiny) -> None:
    options = {"steps": 2, "clip_skip": 2, "negative_prompt": "(blurry:1.3), lowres"}
    events, (art,) = _run(studio_app, TextToImage, tiny.sdxl, options, prompt=LONG_PROMPT)
    assert art.recipe["options"]["guidance_scale"] == 5.0  # SDXL's own default
    assert art.recipe["extra"]["family"] == "sdxl"
    assert art.recipe["extra"]["prompt_chunks"] >= 2
    notes = [e.message for e in events if isinstance(e, Note)]
    assert any("encoded in" in n and "chunks" in n for n in notes), notes


def test_progress_each_step_and_previews_every_n(studio_app, tiny) -> None:
    events, _ = _run(studio_app, TextToImage, tiny.sd, {**SMALL, "steps": 4, "preview_every": 2})
    steps = [e.step for e in events if isinstance(e, Progress) and e.message == "denoising"]
    assert steps == [1, 2, 3, 4]
    totals = {e.total for e in events if isinstance(e, Progress) and e.message == "denoising"}
    assert totals == {4}
    previews = [e for e in events if isinstance(e, Preview)]
    assert [(p.step, p.index) for p in previews] == [(2, 0)]  # the last step is the result
    assert previews[0].data.mode == "RGB" and previews[0].data.size == (64, 64)

    events, _ = _run(studio_app, TextToImage, tiny.sd, {**SMALL, "preview_every": 0})
    assert not [e for e in events if isinstance(e, Preview)]


def test_batch_has_consecutive_seeds_and_regenerates_bit_for_bit(studio_app, tiny) -> None:
    from PIL import Image

    options = {**SMALL, "batch_size": 3, "scheduler": "Euler a"}
    events, arts = _run(studio_app, TextToImage, tiny.sd, options, seed=100)
    assert [(a.recipe["seed"], a.recipe["index"]) for a in arts] == [(100, 0), (101, 1), (102, 2)]
    assert [(r.output.seed, r.output.index) for r in _results(events)] == [
        (100, 0),
        (101, 1),
        (102, 2),
    ]
    assert "Seed: 101" in Image.open(arts[1].path).info["parameters"]
    assert len({artifact_content(a.path, "image") for a in arts}) == 3

    job = studio_app.wait(studio_app.regenerate(arts[1].id), timeout=120)
    assert job.state == JobState.SUCCEEDED, job.error
    (again,) = [studio_app.store.get_artifact(i) for i in job.artifact_ids]
    assert again.recipe["seed"] == 101 and again.recipe["index"] == 1
    assert artifact_content(again.path, "image") == artifact_content(arts[1].path, "image")

    # one generator per image: seed 101 alone draws the same noise as image 1 of the batch
    import numpy as np

    _, (alone,) = _run(studio_app, TextToImage, tiny.sd, {**options, "batch_size": 1}, seed=101)
    a = np.asarray(Image.open(alone.path), dtype=int)
    b = np.asarray(Image.open(arts[1].path), dtype=int)
    assert np.abs(a - b).max() <= 2  # float rounding of a batch of 3 vs 1, no other difference


@pytest.mark.parametrize(
    "scheduler",
    ["Euler", "DPM++ 2M Karras", "UniPC", "LCM", "Heun", "LMS Karras", "DPM++ 2M SDE"],
)
def test_schedulers_run(studio_app, tiny, scheduler: str) -> None:
    _, (art,) = _run(studio_app, TextToImage, tiny.sd, {**SMALL, "scheduler": scheduler})
    assert art.recipe["options"]["scheduler"] == scheduler
    assert art.recipe["extra"]["sampler"] == scheduler


def test_same_as_the_bare_pipeline(studio_app, tiny) -> None:
    """The studio adds nothing to the pixels: same model, seed and settings as bare diffusers.

    The studio's run uses the worker's CPU thread count (cores - 1), the bare call this thread's:
    float sums split over other threads round differently, so a pixel may land one step away
    after the uint8 conversion. Compared as diffusers' own pipeline tests do, with a stated
    tolerance: every channel of every pixel within 1 of the bare one.
    """
    import numpy as np
    import torch
    from diffusers import DiffusionPipeline
    from PIL import Image

    _, (art,) = _run(studio_app, TextToImage, tiny.sd, {**SMALL, "guidance_scale": 6.0}, seed=11)
    pipe = DiffusionPipeline.from_pretrained(str(tiny.sd), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    bare = pipe(
        "a photo of a cat",
        num_inference_steps=2,
        guidance_scale=6.0,
        width=64,
        height=64,
        generator=[torch.Generator().manual_seed(11)],
    ).images[0]
    ours = np.asarray(Image.open(art.path)).astype(np.int16)
    theirs = np.asarray(bare).astype(np.int16)
    assert ours.shape == theirs.shape == (64, 64, 3)
    assert np.abs(ours - theirs).max() <= 1


# --- image-to-image and inpainting -------------------------------------------------------------


def test_switching_task_loads_nothing_new(studio_app, tiny) -> None:
    _run(studio_app, TextToImage, tiny.sd, SMALL)
    _run(studio_app, ImageToImage, tiny.sd, {"steps": 2, "init_image": str(tiny.init)})
    _run(
        studio_app,
        Inpainting,
        tiny.sd,
        {"steps": 2, "init_image": str(tiny.init), "mask_image": str(tiny.mask)},
    )
    stats = studio_app.cache.stats()
    assert (stats.misses, stats.hits, len(stats.entries)) == (1, 2, 1)
    assert _cached_pipeline(studio_app).__class__.__name__ == "StableDiffusionPipeline"


def test_image_to_image_converts_the_init_image(studio_app, tiny, tmp_path) -> None:
    from PIL import Image

    init = tmp_path / "alpha.png"
    Image.new("RGBA", (100, 70), (0, 0, 255, 0)).save(init)  # transparent, not a multiple of 8
    events, (art,) = _run(
        studio_app, ImageToImage, tiny.sd, {"steps": 4, "strength": 0.5, "init_image": str(init)}
    )
    assert Image.open(art.path).size == (96, 64)
    assert (art.recipe["options"]["width"], art.recipe["options"]["height"]) == (96, 64)
    notes = [e.message for e in events if isinstance(e, Note)]
    assert any("flattened onto white" in n for n in notes)
    steps = [e.step for e in events if isinstance(e, Progress) and e.message == "denoising"]
    assert steps == [1, 2]  # strength 0.5 of 4 steps


def test_inpainting_with_a_blurred_rgb_mask(studio_app, tiny, tmp_path) -> None:
    from PIL import Image

    mask = tmp_path / "mask.png"
    Image.new("RGB", (64, 64), (255, 255, 255)).save(mask)
    events, (art,) = _run(
        studio_app,
        Inpainting,
        tiny.sd,
        {
            "steps": 2,
            "init_image": str(tiny.init),
            "mask_image": str(mask),
            "mask_blur": 4,
        },
    )
    assert Image.open(art.path).size == (64, 64)
    assert art.recipe["extra"]["pipeline"] == "StableDiffusionInpaintPipeline"
    assert any("read as greyscale" in e.message for e in events if isinstance(e, Note))


# --- bad input, before any model work ------------------------------------------------------------


def _bad_cases(tiny: SimpleNamespace, tmp: Path) -> list[tuple[str, dict, str, type, str]]:
    from PIL import Image

    cmyk = tmp / "cmyk.jpg"
    Image.new("CMYK", (64, 64)).save(cmyk)
    small_mask = tmp / "small-mask.png"
    Image.new("L", (32, 64), 255).save(small_mask)
    broken = tmp / "broken.safetensors"
    broken.write_bytes(tiny.single.read_bytes()[:-500])
    not_diffusers = tmp / "transformers-model"
    not_diffusers.mkdir()
    (not_diffusers / "config.json").write_text("{}")
    return [
        ("text-to-image", {"width": 500}, str(tiny.sd), OptionsError, "multiple of 8"),
        ("text-to-image", {"steps": 0}, str(tiny.sd), OptionsError, "steps"),
        ("image-to-image", {"init_image": str(cmyk)}, str(tiny.sd), InvalidRequest, "CMYK"),
        (
            "image-to-image",
            {"init_image": str(tmp / "nope.png")},
            str(tiny.sd),
            InvalidRequest,
            "does not exist",
        ),
        (
            "inpainting",
            {"init_image": str(tiny.init), "mask_image": str(small_mask)},
            str(tiny.sd),
            InvalidRequest,
            "same size",
        ),
        (
            "image-to-image",
            {"init_image": str(tiny.init), "steps": 2, "strength": 0.2},
            str(tiny.sd),
            OptionsError,
            "strength",
        ),
        # a missing local path: refused by the studio itself, before the generator's check
        ("text-to-image", {}, str(tmp / "missing.safetensors"), InvalidRequest, "no such file"),
        ("text-to-image", {}, str(broken), ModelNotFound, "truncated"),
        ("text-to-image", {}, str(not_diffusers), ModelNotFound, "not a diffusers pipeline"),
    ]


def test_bad_input_is_refused_before_model_work(studio_app, tiny, tmp_path) -> None:
    for generator, options, model, error, words in _bad_cases(tiny, tmp_path):
        request = GenerationRequest(generator=generator, prompt="x", model=model, options=options)
        with pytest.raises(error) as info:
            studio_app.submit(request)
        assert words in str(info.value), (generator, options, str(info.value))
    assert studio_app.jobs() == []
    assert studio_app.cache.stats().misses == 0  # nothing was loaded


def test_missing_lora_is_refused_before_model_work(studio_app, tiny) -> None:
    request = GenerationRequest(
        generator="text-to-image",
        prompt="x",
        model=str(tiny.sd),
        options=SMALL,
        loras=[LoraSpec(ref=str(tiny.root / "nope.safetensors"))],
    )
    with pytest.raises(InvalidRequest, match="not found"):
        studio_app.submit(request)


def test_an_inpainting_model_is_not_used_for_text_to_image(tmp_path, tiny) -> None:
    import torch
    from diffusers import DiffusionPipeline, StableDiffusionInpaintPipeline, UNet2DConditionModel

    pipe = DiffusionPipeline.from_pretrained(str(tiny.sd), local_files_only=True)
    config = dict(pipe.unet.config)
    config["in_channels"] = 9
    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config(config)
    folder = tmp_path / "inpaint-model"
    StableDiffusionInpaintPipeline(**{**pipe.components, "unet": unet}).save_pretrained(folder)
    with pytest.raises(InvalidRequest, match="inpainting model"):
        list(TextToImage().run(_request(TextToImage, folder, SMALL), _direct_context(tmp_path)))
    events = list(
        Inpainting().run(
            _request(
                Inpainting,
                folder,
                {"steps": 2, "init_image": str(tiny.init), "mask_image": str(tiny.mask)},
            ),
            _direct_context(tmp_path),
        )
    )
    assert len(_results(events)) == 1


# --- cancel ------------------------------------------------------------------------------------


def test_cancel_stops_within_one_step_and_frees_the_latents(tiny, tmp_path, monkeypatch) -> None:
    ctx = _direct_context(tmp_path)
    seen: list[weakref.ref] = []
    real = running_mod.latents_to_images

    def spy(latents: Any, fmt: str, scale: int = 2) -> list:
        seen.append(weakref.ref(latents))
        if len(seen) == 2:
            ctx.cancel_event.set()  # the user cancels during step 2
        return real(latents, fmt, scale)

    monkeypatch.setattr(running_mod, "latents_to_images", spy)
    request = _request(TextToImage, tiny.sd, {**SMALL, "steps": 30})
    events: list = []
    with pytest.raises(Cancelled):
        for event in TextToImage().run(request, ctx):
            events.append(event)
    steps = [e.step for e in events if isinstance(e, Progress) and e.message == "denoising"]
    assert steps == [1, 2]  # step 3 finished, its callback saw the flag and stopped the pipeline
    assert not _results(events)
    gc.collect()
    assert seen and all(ref() is None for ref in seen), "latents are still referenced"
    assert ctx.cache.stats().entries[0].pins == 0  # the model was released


def test_cancel_through_the_studio(studio_app, tiny) -> None:
    state: dict[str, Any] = {"steps": []}

    def on_event(job_event: Any) -> None:
        event = job_event.event
        if isinstance(event, Progress) and event.message == "denoising":
            state["steps"].append(event.step)
            if event.step == 1:
                studio_app.cancel(job_event.job_id)

    unsubscribe = studio_app.subscribe(on_event)
    try:
        job_id = studio_app.submit(
            GenerationRequest(
                generator="text-to-image",
                prompt="x",
                model=str(tiny.sd),
                seed=1,
                options={**SMALL, "steps": 200},
            )
        )
        job = studio_app.wait(job_id, timeout=120)
    finally:
        unsubscribe()
    assert job.state == JobState.CANCELLED
    assert job.artifact_ids == []
    assert max(state["steps"]) < 200


# --- LoRA -------------------------------------------------------------------------------------


def test_lora_kohya_and_diffusers_formats_apply_and_unload_exactly(studio_app, tiny) -> None:
    import torch

    _, (base,) = _run(studio_app, TextToImage, tiny.sd, SMALL, seed=3)
    pipe = _cached_pipeline(studio_app)
    unet_before = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    text_before = {k: v.clone() for k, v in pipe.text_encoder.state_dict().items()}

    events, (art,) = _run(
        studio_app,
        TextToImage,
        tiny.sd,
        SMALL,
        seed=3,
        loras=(f"{tiny.kohya}:0.8", f"{tiny.diffusers_lora}:0.5"),
    )
    assert artifact_content(art.path, "image") != artifact_content(base.path, "image")
    adapters = art.recipe["adapters"]
    assert [a["weight"] for a in adapters] == [0.8, 0.5]
    assert adapters[0]["sha256"] == sha256_file(tiny.kohya)
    assert adapters[1]["sha256"] == sha256_file(
        tiny.diffusers_lora / "pytorch_lora_weights.safetensors"
    )
    assert any("adapters applied" in e.message for e in events if isinstance(e, Note))

    pipe = _cached_pipeline(studio_app)
    for module, before in ((pipe.unet, unet_before), (pipe.text_encoder, text_before)):
        after = module.state_dict()
        assert after.keys() == before.keys()
        assert all(torch.equal(after[k], before[k]) for k in before)
        assert not [n for n, _ in module.named_modules() if "lora" in n.lower()]
    _, (again,) = _run(studio_app, TextToImage, tiny.sd, SMALL, seed=3)
    assert artifact_content(again.path, "image") == artifact_content(base.path, "image")


def test_lora_weight_changes_the_result_and_kohya_reaches_the_text_encoder(tiny, tmp_path) -> None:
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(str(tiny.sd), local_files_only=True)
    pipe.load_lora_weights(str(tiny.kohya.parent), weight_name=tiny.kohya.name, adapter_name="k")
    adapters = pipe.get_list_adapters()
    assert "k" in adapters.get("unet", []) and "k" in adapters.get("text_encoder", [])
    pipe.unload_lora_weights()

    outputs = []
    for weight in (0.3, 1.0):
        ctx = _direct_context(tmp_path)
        request = _request(TextToImage, tiny.sd, SMALL, seed=4)
        request.loras = [LoraSpec(ref=str(tiny.kohya), weight=weight)]
        outputs.append(_results(list(TextToImage().run(request, ctx)))[0].output.image.tobytes())
    assert outputs[0] != outputs[1]


def test_library_adapters_apply_by_name(studio_app, tiny) -> None:
    import time

    from studio.core.records import AdapterRecord

    studio_app.store.add_adapter(
        AdapterRecord(
            id="lib-1",
            name="my-style",
            path=tiny.kohya,
            modality="image",
            base_model=str(tiny.sd),
            sha256=None,
            created=time.time(),
        )
    )
    _, (art,) = _run(studio_app, TextToImage, tiny.sd, SMALL, loras=("my-style:0.6",))
    (adapter,) = art.recipe["adapters"]
    assert adapter["ref"] == str(tiny.kohya) and adapter["weight"] == 0.6
    assert adapter["sha256"] == sha256_file(tiny.kohya)


def test_peft_folder_adapter_matches_peft(studio_app, tiny) -> None:
    """A peft folder (alpha != r) gives the UNet exactly what peft itself computes."""
    import copy

    import torch
    from diffusers import DiffusionPipeline
    from peft import PeftModel

    from studio_image.lora import _peft_folder_state

    pipe = DiffusionPipeline.from_pretrained(str(tiny.sd), local_files_only=True)
    reference = PeftModel.from_pretrained(copy.deepcopy(pipe.unet), str(tiny.peft_lora))
    state = _peft_folder_state(tiny.peft_lora / "adapter_model.safetensors")
    assert state is not None
    pipe.load_lora_weights(state, adapter_name="p")
    gen = torch.Generator().manual_seed(0)
    sample = torch.randn(1, 4, 32, 32, generator=gen)
    text = torch.randn(1, 77, 32, generator=gen)
    with torch.no_grad():
        ours = pipe.unet(sample, 10, encoder_hidden_states=text).sample
        theirs = reference(sample, 10, encoder_hidden_states=text).sample
    assert torch.allclose(ours, theirs, atol=1e-5)

    _, (art,) = _run(studio_app, TextToImage, tiny.sd, SMALL, loras=(str(tiny.peft_lora),))
    assert art.recipe["adapters"][0]["sha256"] == sha256_file(
        tiny.peft_lora / "adapter_model.safetensors"
    )


def test_lora_for_another_model_is_a_clear_error(studio_app, tiny) -> None:
    with pytest.raises(GeneratorRunFailed, match=r"does not fit|no weights matching"):
        _run(studio_app, TextToImage, tiny.sdxl, {"steps": 2}, loras=(str(tiny.kohya),))
    # and the shared SDXL pipeline is clean again
    pipe = _cached_pipeline(studio_app)
    assert not [n for n, _ in pipe.unet.named_modules() if "lora" in n.lower()]


# --- model references: hub ids, single files --------------------------------------------------


def test_hub_ids_resolve_offline_for_models_and_adapters(studio_app, tiny, hub_cache) -> None:
    snapshot = save_to_hub_cache(tiny.sd, "studio-tests/tiny-sd", hub_cache)
    save_to_hub_cache(tiny.diffusers_lora, "studio-tests/tiny-lora", hub_cache)
    _, (art,) = _run(
        studio_app,
        TextToImage,
        "studio-tests/tiny-sd",
        SMALL,
        loras=("studio-tests/tiny-lora:0.7",),
    )
    model = art.recipe["model"]
    assert (model["source"], model["revision"]) == ("hub", snapshot.name)
    assert model["sha256"]
    assert art.recipe["adapters"][0]["ref"] == "studio-tests/tiny-lora"
    assert art.recipe["adapters"][0]["sha256"]


def test_single_file_checkpoint_with_configs_from_the_hub_cache(
    studio_app, tiny, hub_cache
) -> None:
    _, (folder_art,) = _run(studio_app, TextToImage, tiny.sd, SMALL, seed=5)
    # offline, the base model's configs are not cached: a clear error, nothing downloaded
    with pytest.raises(GeneratorRunFailed, match="not in the hub cache"):
        _run(studio_app, TextToImage, tiny.single, SMALL, seed=5)
    # once they are (as after any SD 1.5 download), the checkpoint loads offline
    save_to_hub_cache(tiny.sd, "stable-diffusion-v1-5/stable-diffusion-v1-5", hub_cache)
    _, (file_art,) = _run(studio_app, TextToImage, tiny.single, SMALL, seed=5)
    # exact: both runs are the studio's, on its worker with the same CPU thread count
    assert artifact_content(file_art.path, "image") == artifact_content(folder_art.path, "image")
    assert file_art.recipe["model"]["source"] == "file"
    assert file_art.recipe["model"]["sha256"] == sha256_file(tiny.single)


def test_single_file_checkpoint_with_a_local_config(studio_app, tiny, tmp_path) -> None:
    copy = tmp_path / "copy.safetensors"
    shutil.copyfile(tiny.single, copy)
    _, (folder_art,) = _run(studio_app, TextToImage, tiny.sd, SMALL, seed=6)
    _, (file_art,) = _run(
        studio_app, TextToImage, copy, {**SMALL, "checkpoint_config": str(tiny.sd)}, seed=6
    )
    # exact: both runs are the studio's, on its worker with the same CPU thread count
    assert artifact_content(file_art.path, "image") == artifact_content(folder_art.path, "image")


# --- prompt encoding ---------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["sd", "sdxl"])
def test_own_encoding_matches_the_pipeline_for_a_short_prompt(tiny, family: str) -> None:
    import torch
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(
        str(tiny.sd if family == "sd" else tiny.sdxl), local_files_only=True
    )
    with torch.no_grad():
        # weight 1.0 syntax forces this module's encoder without changing anything
        plan = plan_prompts(
            pipe, "(a photo of a cat:1.0)", "(blurry:1.0)", weighting=True, clip_skip=None
        )
        ref = pipe.encode_prompt(
            "a photo of a cat",
            device="cpu",
            num_images_per_prompt=1,
            do_classifier_free_guidance=True,
            negative_prompt="blurry",
        )
    assert plan.own_encoding and plan.chunks == 1
    assert torch.equal(plan.kwargs["prompt_embeds"], ref[0])
    assert torch.equal(plan.kwargs["negative_prompt_embeds"], ref[1])
    if family == "sdxl":
        assert torch.equal(plan.kwargs["pooled_prompt_embeds"], ref[2])
        assert torch.equal(plan.kwargs["negative_pooled_prompt_embeds"], ref[3])


def test_clip_skip_long_prompts_and_weights_in_embeddings(tiny) -> None:
    import torch
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(str(tiny.sd), local_files_only=True)
    tok, te = pipe.tokenizer, pipe.text_encoder
    with torch.no_grad():
        plain = plan_prompts(pipe, "a cat", "", weighting=True, clip_skip=None)
        assert not plain.own_encoding and plain.kwargs["prompt"] == "a cat"

        skipped = plan_prompts(pipe, "a cat", "", weighting=True, clip_skip=2)
        ids = tok("a cat", padding="max_length", max_length=77, return_tensors="pt").input_ids
        hidden = te(ids, output_hidden_states=True).hidden_states[-2]
        assert torch.allclose(skipped.kwargs["prompt_embeds"], te.final_layer_norm(hidden))

        long = plan_prompts(pipe, LONG_PROMPT, "short", weighting=True, clip_skip=None)
        chunks = long.chunks
        assert chunks >= 2 and long.kwargs["prompt_embeds"].shape == (1, 77 * chunks, 32)
        assert long.kwargs["negative_prompt_embeds"].shape == (1, 77 * chunks, 32)
        assert any("chunks" in n for n in long.notes)

        weighted = plan_prompts(pipe, "a (cat:1.5)", "", weighting=True, clip_skip=None)
        unweighted = plan_prompts(pipe, "a (cat:1.5)", "", weighting=False, clip_skip=None)
    assert weighted.own_encoding and not unweighted.own_encoding
    assert unweighted.kwargs["prompt"] == "a (cat:1.5)"


def test_long_prompt_runs_end_to_end_without_being_cut(studio_app, tiny) -> None:
    _, (art,) = _run(studio_app, TextToImage, tiny.sd, SMALL, prompt=LONG_PROMPT)
    assert art.recipe["extra"]["prompt_chunks"] >= 2
    assert art.recipe["prompt"] == LONG_PROMPT


# --- the command line --------------------------------------------------------------------------


def test_cli_generates_each_task(studio_home, tiny, capsys, monkeypatch) -> None:
    from PIL import Image

    from studio.cli import main

    monkeypatch.setenv("STUDIO_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setenv("STUDIO_LOAD_PLUGINS", "image")
    out = studio_home / "cli-out"
    common = [
        "--model",
        str(tiny.sd),
        "--seed",
        "3",
        "--set",
        "steps=2",
        "--out",
        str(out),
        "--json",
    ]
    runs = [
        [
            "generate",
            "text-to-image",
            "--prompt",
            "a cat",
            "--set",
            "width=64",
            "--set",
            "height=64",
            "--lora",
            f"{tiny.kohya}:0.5",
            *common,
        ],
        [
            "generate",
            "image-to-image",
            "--prompt",
            "a cat",
            "--set",
            f"init_image={tiny.init}",
            *common,
        ],
        [
            "generate",
            "inpainting",
            "--prompt",
            "a cat",
            "--set",
            f"init_image={tiny.init}",
            "--set",
            f"mask_image={tiny.mask}",
            *common,
        ],
    ]
    for argv in runs:
        code = main(argv)
        captured = capsys.readouterr()
        assert code == 0, captured.err
        (artifact,) = json.loads(captured.out)["artifacts"]
        assert Image.open(artifact["path"]).size == (64, 64)
    code = main(
        [
            "generate",
            "text-to-image",
            "--prompt",
            "a cat",
            "--model",
            str(tiny.sd),
            "--set",
            "width=60",
        ]
    )
    assert code == 2
    assert "multiple of 8" in capsys.readouterr().err


# --- GPU (skipped without CUDA) ----------------------------------------------------------------


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("dtype", ["auto", "float16"])
def test_cuda_half_precision(studio_app, tiny, dtype: str) -> None:
    _, (art,) = _run(studio_app, TextToImage, tiny.sd, {**SMALL, "dtype": dtype})
    assert art.recipe["device"].startswith("cuda")
    assert art.recipe["dtype"] in ("float16", "bfloat16")


@pytest.mark.gpu
@needs_cuda
def test_cuda_offload_when_the_budget_is_too_small(studio_app, tiny) -> None:
    studio_app.cache.set_budgets(device_budget=1024, host_budget=None)
    events, (art,) = _run(studio_app, TextToImage, tiny.sd, SMALL)
    assert art.recipe["extra"]["cpu_offload"] is True
    assert any("CPU offload" in e.message for e in events if isinstance(e, Note))


@pytest.mark.gpu
@needs_cuda
def test_cuda_vae_tiling_for_large_sizes(studio_app, tiny) -> None:
    _, (art,) = _run(studio_app, TextToImage, tiny.sd, {"steps": 1, "width": 256, "height": 256})
    assert art.recipe["extra"]["vae_tiling"] is True


def test_vae_tiling_setting(studio_app, tiny) -> None:
    _, (off,) = _run(studio_app, TextToImage, tiny.sd, SMALL)
    assert off.recipe["extra"]["vae_tiling"] is False
    _, (on,) = _run(studio_app, TextToImage, tiny.sd, {**SMALL, "vae_tiling": "on"})
    assert on.recipe["extra"]["vae_tiling"] is True
    _, (auto,) = _run(studio_app, TextToImage, tiny.sd, {"steps": 1, "width": 128, "height": 96})
    assert auto.recipe["extra"]["vae_tiling"] is True  # 128x96 > twice the 64x64 native area
