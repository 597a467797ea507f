"""The three image generators: text-to-image, image-to-image and inpainting, over diffusers.

All three load the model's pipeline once, as the same cache entry (``kind="diffusers-pipeline"``),
and derive their task's pipeline from it with the AutoPipeline ``from_pipe`` (shared components,
nothing loaded): switching from text-to-image to inpainting on the same model costs nothing.

A run, in order: input images checked and converted (no model yet); the model resolved and
loaded (or found in the cache); the ``None`` options resolved from the model's family and recorded
with ``ctx.record_options`` (so the recipe holds the real numbers); a fresh scheduler; the LoRA
adapters applied; the prompts planned (chunked and weighted when needed); the pipeline run with
per-step Progress and Preview events; one Result per image, image ``i`` made with seed
``seed + i`` (a CPU ``torch.Generator`` per image, so every image is reproducible on its own).
"""

from __future__ import annotations

import contextlib
import inspect
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from studio import (
    BaseOptions,
    GenerationRun,
    Generator,
    ImageOutput,
    InvalidRequest,
    ModelNotFound,
    Note,
    OptionsError,
    PluginEvent,
    Progress,
    Result,
    human_size,
    quiet_model_loading,
)
from studio_image import images as imageio
from studio_image.families import model_defaults, steps_hint
from studio_image.loading import (
    check_weights,
    make_loader,
    needs_offload,
    read_header,
)
from studio_image.lora import applied_loras, weights_file
from studio_image.options import ImageToImageOptions, InpaintingOptions, TextToImageOptions
from studio_image.previews import latent_format
from studio_image.prompts import plan_prompts
from studio_image.running import Emit, run_pipeline
from studio_image.schedulers import curated_name, display_name, make_scheduler

if TYPE_CHECKING:
    from studio import RunContext

#: A small, fast, openly licensed model (see resources/catalog.json).
DEFAULT_MODEL = "nota-ai/bk-sdm-small"
SEED_SPACE = 2**32
_WEIGHT_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")


def seeds_for(seed: int, count: int) -> list[int]:
    """The seed of each image of a batch: consecutive, wrapping at 2**32."""
    return [(seed + i) % SEED_SPACE for i in range(count)]


def _check_model_ref(ref: str) -> None:
    """A local model is checked on the spot (no loading): exists, right layout, files intact."""
    path = Path(ref).expanduser()
    if not path.exists():
        if _path_like(ref):
            raise ModelNotFound(
                f"model {ref!r}: no such file or folder ({path.absolute()}); a local model is a "
                "diffusers folder or a single .safetensors checkpoint"
            )
        return  # a hub id, resolved (offline or downloaded) when the job runs
    if path.is_file():
        if path.suffix.lower() == ".safetensors":
            try:
                read_header(path)
            except ModelNotFound as exc:
                raise ModelNotFound(f"model {ref!r}: {exc}") from None
        return
    if not (path / "model_index.json").is_file():
        raise ModelNotFound(
            f"model {ref!r} is not a diffusers pipeline folder (no model_index.json); the image "
            "generators take a diffusers folder, a hub id or a single .safetensors checkpoint"
        )
    from studio import ResolvedModel

    check_weights(ResolvedModel(ref, "folder", path.resolve(), None, None))


def _path_like(ref: str) -> bool:
    """Written as a path (so a missing one is an error now, not a hub id to look up later)."""
    if ref.startswith(("/", "./", "../", "~", ".\\", "..\\")) or "\\" in ref:
        return True
    if len(ref) > 2 and ref[1] == ":" and ref[2] in "\\/":  # a Windows drive
        return True
    return ref.count("/") > 1 or ref.lower().endswith(_WEIGHT_SUFFIXES)


def _check_lora_ref(ref: str) -> None:
    path = Path(ref).expanduser()
    if path.exists():
        weights_file(path, ref)


class _DiffusersImageGenerator(Generator):
    """What the three generators share; subclasses set the task, Options and ``auto_pipeline``."""

    modality = "image"
    default_model = DEFAULT_MODEL
    supports_lora = True
    Options: ClassVar[type[BaseOptions]] = TextToImageOptions
    # every pipeline class (and the transformers text encoders they use) comes through here
    imports = ("diffusers.pipelines.auto_pipeline",)
    #: the diffusers AutoPipeline class that derives the task's pipeline (``from_pipe``)
    auto_pipeline: ClassVar[str] = "AutoPipelineForText2Image"

    # -- before any model work -----------------------------------------------------------------
    def check(self, request: GenerationRun) -> None:
        """Input files, sizes, step counts and local model/adapter files, without loading."""
        assert request.model is not None  # uses_model = True: the studio always names one
        opts = request.options
        _check_model_ref(request.model)
        for lora in request.loras:
            _check_lora_ref(lora.ref)
        if opts.checkpoint_config:
            folder = Path(opts.checkpoint_config).expanduser()
            if folder.exists() and not (folder / "model_index.json").is_file():
                raise OptionsError(
                    f"option 'checkpoint_config': {opts.checkpoint_config!r} is not a diffusers "
                    "folder (no model_index.json); give such a folder or a hub id",
                    "checkpoint_config",
                )
        init = getattr(opts, "init_image", None)
        if init is not None:
            info = imageio.inspect_image(init, "init image", transparent=opts.transparent)
            mask = getattr(opts, "mask_image", None)
            if mask is not None:
                imageio.check_mask_matches(info, imageio.inspect_image(mask, "mask image"))
        strength = getattr(opts, "strength", None)
        if strength is not None:
            steps = opts.steps if opts.steps is not None else steps_hint(request.model)
            _check_strength(steps, strength)

    # -- the run -------------------------------------------------------------------------------
    def run(self, request: GenerationRun, ctx: RunContext) -> Iterator[PluginEvent]:
        """Generate ``batch_size`` images; see the module docs for the order of things."""
        assert request.model is not None  # uses_model = True: the studio always names one
        opts = request.options
        ctx.check_cancelled()
        init, mask, notes = self._inputs(opts)
        for note in notes:
            yield Note(note)

        yield Progress(0, 0, "loading model")
        resolved = ctx.resolve_model(request.model)
        from studio import default_dtype

        dtype_name = default_dtype(ctx.device) if opts.dtype == "auto" else opts.dtype
        offload = False
        if ctx.device.startswith("cuda"):
            summary = check_weights(resolved)
            offload = needs_offload(summary, dtype_name, ctx.device, ctx.cache.fits)
            if offload:
                yield Note(
                    f"the model needs about {human_size(summary.bytes_as(dtype_name))}, more "
                    "than the GPU budget allows: it runs with model CPU offload (slower)",
                    "warning",
                )
        loader = make_loader(
            resolved,
            device=ctx.device,
            dtype_name=dtype_name,
            allow_pickle=ctx.allows_pickle(request.model),
            checkpoint_config=opts.checkpoint_config,
            allow_download=not ctx.offline,
            offload=offload,
        )
        with ctx.use_model(
            resolved, kind="diffusers-pipeline", dtype=dtype_name, loader=loader
        ) as base:
            ctx.check_cancelled()
            pipe = self._task_pipeline(base, request.model)
            defaults = model_defaults(base, request.model)
            width, height = imageio.target_size(
                opts.width,
                opts.height,
                init.size if init is not None else None,
                defaults.native_size,
            )
            steps = opts.steps if opts.steps is not None else defaults.steps
            guidance = opts.guidance_scale
            if guidance is None:
                guidance = defaults.guidance_scale
            if hasattr(opts, "strength"):
                _check_strength(steps, opts.strength)
            pipe.scheduler = make_scheduler(opts.scheduler, base.scheduler)
            scheduler = opts.scheduler
            if scheduler == "default":  # name it, when a curated name rebuilds it exactly
                scheduler = curated_name(pipe.scheduler, base.scheduler)
            # the recipe (and its A1111 text) shows what was really used, and replays it
            ctx.record_options(
                width=width,
                height=height,
                steps=steps,
                guidance_scale=guidance,
                scheduler=scheduler,
            )
            tiling = self._set_tiling(pipe, opts.vae_tiling, width, height, defaults.native_size)
            ctx.recipe.extra.update(
                {
                    "pipeline": type(pipe).__name__,
                    "family": defaults.family,
                    "scheduler_class": type(pipe.scheduler).__name__,
                    "sampler": display_name(pipe.scheduler),
                    "vae_tiling": tiling,
                    "cpu_offload": offload,
                    "batch_size": opts.batch_size,
                }
            )
            seeds = seeds_for(request.seed, opts.batch_size)
            call_params = inspect.signature(pipe.__call__).parameters
            if init is not None:
                init = imageio.fit(init, (width, height))
            if mask is not None:
                mask = imageio.fit(self._blur(mask, opts), (width, height), mask=True)

            def make_kwargs(emit: Emit) -> dict[str, Any]:
                import torch

                plan = plan_prompts(
                    pipe,
                    request.prompt,
                    opts.negative_prompt,
                    weighting=opts.prompt_weighting,
                    clip_skip=opts.clip_skip,
                )
                for text in plan.notes:
                    emit(Note(text))
                ctx.recipe.extra["prompt_chunks"] = plan.chunks
                kwargs: dict[str, Any] = {
                    **plan.kwargs,
                    "num_inference_steps": steps,
                    "guidance_scale": guidance,
                    "num_images_per_prompt": len(seeds),
                    "generator": [torch.Generator("cpu").manual_seed(s) for s in seeds],
                }
                if "width" in call_params and "height" in call_params:
                    kwargs["width"], kwargs["height"] = width, height
                if init is not None:
                    kwargs["image"] = init
                    kwargs["strength"] = opts.strength
                if mask is not None:
                    kwargs["mask_image"] = mask
                return kwargs

            with applied_loras(pipe, request.loras, ctx, request.model) as lora_notes:
                for text in lora_notes:
                    yield Note(text)
                images = yield from run_pipeline(
                    pipe,
                    make_kwargs,
                    ctx,
                    preview_every=opts.preview_every,
                    latent_format=latent_format(base),
                )
        for index, (image, seed) in enumerate(zip(images, seeds, strict=True)):
            yield Result(ImageOutput(image=image, seed=seed, index=index))

    # -- pieces --------------------------------------------------------------------------------
    def _inputs(self, opts: Any) -> tuple[Any, Any, list[str]]:
        """Decode and convert the init image and mask (no model needed)."""
        init_path = getattr(opts, "init_image", None)
        if init_path is None:
            return None, None, []
        loaded = imageio.load_rgb(init_path, transparent=opts.transparent)
        notes = list(loaded.notes)
        mask = None
        mask_path = getattr(opts, "mask_image", None)
        if mask_path is not None:
            loaded_mask = imageio.load_mask(mask_path)
            notes += loaded_mask.notes
            if loaded_mask.image.size != loaded.image.size:  # EXIF rotation can differ per file
                raise InvalidRequest(
                    f"mask image is {loaded_mask.image.size[0]}x{loaded_mask.image.size[1]} once "
                    f"upright but the init image is {loaded.image.size[0]}x"
                    f"{loaded.image.size[1]}; they must be the same size"
                )
            mask = loaded_mask.image
        return loaded.image, mask, notes

    @staticmethod
    def _blur(mask: Any, opts: Any) -> Any:
        radius = getattr(opts, "mask_blur", 0)
        if not radius:
            return mask
        from PIL import ImageFilter

        return mask.filter(ImageFilter.GaussianBlur(radius))

    def _task_pipeline(self, base: Any, ref: str) -> Any:
        """This task's pipeline over the cached base pipeline's components (nothing loaded)."""
        import diffusers

        unet = getattr(base, "unet", None)
        in_channels = getattr(getattr(unet, "config", None), "in_channels", 4)
        if in_channels == 9 and self.task != "inpainting":
            raise InvalidRequest(
                f"model {ref!r} is an inpainting model (its UNet takes a mask): use it with the "
                "inpainting generator"
            )
        # the first AutoPipeline access imports every pipeline module (the worker has usually
        # done it through `imports`; then the quiet block would only cost time on every run)
        imported = self.imports[0] in sys.modules
        with contextlib.nullcontext() if imported else quiet_model_loading():
            auto = getattr(diffusers, self.auto_pipeline)
        try:
            pipe = auto.from_pipe(base)
        except (ValueError, KeyError, AttributeError, TypeError) as exc:
            raise InvalidRequest(
                f"model {ref!r} ({type(base).__name__}) has no {self.task} pipeline in diffusers: "
                f"{str(exc).splitlines()[0][:300]}"
            ) from None
        pipe.set_progress_bar_config(disable=True)
        return pipe

    @staticmethod
    def _set_tiling(pipe: Any, setting: str, width: int, height: int, native: int) -> bool:
        """VAE tiling for this run (the VAE is shared: set it either way)."""
        vae = getattr(pipe, "vae", None)
        if vae is None or not hasattr(vae, "enable_tiling"):
            return False
        on = setting == "on" or (setting == "auto" and width * height > 2 * native * native)
        if on:
            vae.enable_tiling()
        elif hasattr(vae, "disable_tiling"):
            vae.disable_tiling()
        return on


def _check_strength(steps: int, strength: float) -> None:
    if int(steps * strength) < 1:
        raise OptionsError(
            f"option 'strength': {strength} x {steps} steps leaves no denoising step; raise the "
            f"strength to at least {1 / steps:.3g} or use more steps",
            "strength",
        )


class TextToImage(_DiffusersImageGenerator):
    """An image from a prompt."""

    id = "text-to-image"
    name = "Text to image"
    task = "text-to-image"
    description = (
        "Make images from a prompt with any diffusers text-to-image model (SD 1.x/2.x, SDXL, "
        "Turbo/LCM distillations, SD3...): schedulers, batches, LoRA adapters, live previews."
    )
    Options = TextToImageOptions
    auto_pipeline = "AutoPipelineForText2Image"


class ImageToImage(_DiffusersImageGenerator):
    """A new image from a prompt and a starting image."""

    id = "image-to-image"
    name = "Image to image"
    task = "image-to-image"
    description = (
        "Transform an init image guided by a prompt; strength sets how much changes. Shares the "
        "loaded model with text-to-image."
    )
    Options = ImageToImageOptions
    auto_pipeline = "AutoPipelineForImage2Image"
    prompt_required = False


class Inpainting(_DiffusersImageGenerator):
    """Repaint the masked part of an image."""

    id = "inpainting"
    name = "Inpainting"
    task = "inpainting"
    description = (
        "Repaint the white part of a mask over an init image, guided by a prompt. Works with "
        "dedicated inpainting models and with ordinary ones (shared with text-to-image)."
    )
    Options = InpaintingOptions
    auto_pipeline = "AutoPipelineForInpainting"
    prompt_required = False


GENERATORS = (TextToImage, ImageToImage, Inpainting)
