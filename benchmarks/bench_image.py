"""Image generation: the studio's text-to-image against the bare diffusers pipeline.

Model: a random-weight Stable Diffusion 1.x-shaped pipeline, small but not trivial (the ``small``
preset of :mod:`studio.testing.models_image`: a 2.5M-parameter UNet), built offline; 16 steps at
192x192 (8 at 128x128 with ``quick``), a few seconds per image on a CPU, so that the per-job costs
weigh what they weigh with real models. Same prompt, seed, size, step count, scheduler and CFG
scale on both sides; CPU float32, the studio's CPU thread count on both sides.

*Bare*: ``pipe(prompt, num_inference_steps, width, height, generator=[torch.Generator])``, the
pipeline loaded once with ``from_pretrained``.

*Studio*, two levels, the model warm in the cache:

- ``plugin``: iterating ``TextToImage.run`` with a run context: options resolved, a fresh
  scheduler, ``from_pipe`` to the task pipeline, the helper thread and its event queue, the
  per-step callback (Progress events), the Result. Previews off, then every step (overhead).
- ``studio``: a whole job through :class:`~studio.core.studio.Studio` (submit, queue, worker,
  events stored and sent, the PNG with its A1111 text and recipe written, the artifact recorded),
  timed from ``submit`` to the finished job.

Goals (issue 3): throughput ratio studio/bare >= 0.98; previews every step cost <= 5%. Each row
also gives the ratio of CPU time, steadier than wall-clock time when other work shares the cores,
and the preview row the cost of one preview measured alone.

On a CUDA machine a last row compares the studio's best settings (half precision from
``default_dtype``, channels-last UNet, PyTorch SDPA attention) with the default diffusers pipeline
(float32, ``from_pretrained`` then ``.to("cuda")``) on an SD 1.5-shaped random model at 512x512
(goal: >= 1.5x images/s). Medians of interleaved repeats.
"""

from __future__ import annotations

import functools
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

GOAL_RATIO = 0.98
GOAL_PREVIEW_OVERHEAD = 0.05
GOAL_GPU_SPEEDUP = 1.5
PROMPT = "a watercolor painting of a red fox in a snowy forest, soft light"
SEED = 1234


class _Timings:
    """Interleaved repeats of several actions: medians, and medians of per-round ratios (which
    cancel the slow drifts of a shared machine better than a ratio of medians).

    Both wall-clock time and the process's CPU time are kept: on a machine whose cores are busy
    with other work, wall-clock ratios swing by tens of percent while CPU time still says what
    each side computed (it counts every thread of the process: worker, helper, database)."""

    def __init__(self, actions: dict[str, Callable[[], Any]], repeats: int) -> None:
        for action in actions.values():  # warm every side the same way
            action()
        self.rounds: list[dict[str, float]] = []
        self.cpu_rounds: list[dict[str, float]] = []
        for _ in range(repeats):
            row, cpu = {}, {}
            for name, action in actions.items():
                started, cpu_started = time.perf_counter(), time.process_time()
                action()
                row[name] = time.perf_counter() - started
                cpu[name] = time.process_time() - cpu_started
            self.rounds.append(row)
            self.cpu_rounds.append(cpu)

    def median(self, name: str) -> float:
        return statistics.median(r[name] for r in self.rounds)

    def ratio(self, numerator: str, denominator: str, *, cpu: bool = False) -> float:
        """Median over rounds of time(numerator) / time(denominator)."""
        rounds = self.cpu_rounds if cpu else self.rounds
        return statistics.median(r[numerator] / r[denominator] for r in rounds)


def _load_note() -> str:
    """Say so when other work competes for the cores (wall-clock ratios are then unreliable)."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return ""
    cores = os.cpu_count() or 1
    if load <= cores * 0.75:
        return ""
    return f"; machine busy (load {load:.1f} on {cores} cores): trust the CPU-time ratio more"


def _plugin_runner(
    folder: Path, options: dict[str, Any], device: str, cache: Any, scratch: Path
) -> Callable[[], Any]:
    from studio.core.context import RunContext
    from studio.core.events import ImageOutput, Result
    from studio.core.generator import GenerationRun
    from studio.core.options import validate_options
    from studio.core.refs import sha256_file
    from studio.core.settings import Settings
    from studio_image import TextToImage

    # the studio hashes weights once (the store caches it by path, size and mtime): do the same
    hash_file = functools.lru_cache(maxsize=None)(sha256_file)

    def once() -> Any:
        request = GenerationRun(
            generator=TextToImage.id,
            prompt=PROMPT,
            model=str(folder),
            seed=SEED,
            options=validate_options(TextToImage.Options, options),
        )
        ctx = RunContext(
            job_id="bench",
            device=device,
            cache=cache,
            settings=Settings(),
            scratch=scratch,
            log=logging.getLogger("bench.image"),
            hash_file=hash_file,
        )
        results = [e for e in TextToImage().run(request, ctx) if isinstance(e, Result)]
        assert len(results) == 1
        output = results[0].output
        assert isinstance(output, ImageOutput)
        return output.image

    return once


def _cpu_rows(root: Path, quick: bool) -> list[dict]:
    import torch
    from diffusers import DiffusionPipeline

    from studio.core.cache import ModelCache
    from studio.core.devices import configure_cpu_threads
    from studio.core.generator import GenerationRequest
    from studio.core.studio import Studio
    from studio.testing.models_image import save_tiny_sd

    # a few seconds per image on a CPU: the per-job costs (queue, PNG, database) are then what
    # they are for real models, a small part of the image time
    steps, size, repeats = (8, 128, 3) if quick else (16, 192, 7)
    folder = save_tiny_sd(root / "bench-sd-small", preset="small")
    app = Studio.open(root / "home", load_plugins=True, start_workers=False)
    try:
        app.save_settings(app.settings.model_copy(update={"device": "cpu"}))
        app.start()
        # torch's thread count is per thread: give this (bare) thread what the studio's worker
        # uses (cores - 1 by default), so both sides compute with the same number of threads
        threads = configure_cpu_threads(app.settings.cpu_threads)
        pipe = DiffusionPipeline.from_pretrained(str(folder), local_files_only=True)
        pipe.set_progress_bar_config(disable=True)
        scheduler = pipe.scheduler

        def bare() -> Any:
            pipe.scheduler = type(scheduler).from_config(scheduler.config)
            return pipe(
                PROMPT,
                num_inference_steps=steps,
                width=size,
                height=size,
                guidance_scale=7.5,
                generator=[torch.Generator("cpu").manual_seed(SEED)],
            ).images[0]

        options = {"steps": steps, "width": size, "height": size, "guidance_scale": 7.5}
        cache = ModelCache()
        plugin = _plugin_runner(folder, {**options, "preview_every": 0}, "cpu", cache, root)
        plugin_previews = _plugin_runner(
            folder, {**options, "preview_every": 1}, "cpu", cache, root
        )

        def studio_job() -> Any:
            job_id = app.submit(
                GenerationRequest(
                    generator="text-to-image",
                    prompt=PROMPT,
                    model=str(folder),
                    seed=SEED,
                    options={**options, "preview_every": 0},
                )
            )
            record = app.wait(job_id, timeout=600)
            assert record.state == "succeeded", record.error
            return record

        timings = _Timings(
            {"bare": bare, "plugin": plugin, "previews": plugin_previews, "studio": studio_job},
            repeats,
        )
        preview_ms = _preview_cost_ms(size // pipe.vae_scale_factor)
    finally:
        app.close()
    setup = f"{steps} steps at {size}x{size}, CPU float32, {threads} torch thread(s)"
    bare_ips = 1.0 / timings.median("bare")
    busy = _load_note()
    rows = []
    for key, label in (("plugin", "plugin run"), ("studio", "studio job (PNG + recipe)")):
        ratio = timings.ratio("bare", key)  # throughput ratio = time bare / time studio
        cpu_ratio = timings.ratio("bare", key, cpu=True)
        rows.append(
            {
                "name": f"image: {label} vs bare pipeline",
                "studio": round(1.0 / timings.median(key), 4),
                "bare": round(bare_ips, 4),
                "unit": "images/s",
                "ratio": round(ratio, 4),
                "goal": f"ratio >= {GOAL_RATIO}",
                "met": ratio >= GOAL_RATIO,
                "notes": (
                    f"{setup}; median of {repeats} interleaved rounds, previews off; "
                    f"CPU-time ratio {cpu_ratio:.3f}{busy}"
                ),
                "cpu_ratio": round(cpu_ratio, 4),
            }
        )
    overhead = timings.ratio("previews", "plugin") - 1.0
    cpu_overhead = timings.ratio("previews", "plugin", cpu=True) - 1.0
    estimate = preview_ms * (steps - 1) / 1000 / timings.median("plugin")
    rows.append(
        {
            "name": "image: previews every step vs none",
            "studio": round(timings.median("previews"), 4),
            "bare": round(timings.median("plugin"), 4),
            "unit": "s/image",
            "ratio": round(1.0 + overhead, 4),
            "goal": f"overhead <= {GOAL_PREVIEW_OVERHEAD:.0%}",
            "met": overhead <= GOAL_PREVIEW_OVERHEAD,
            "notes": (
                f"{setup}; overhead {overhead:+.1%} wall, {cpu_overhead:+.1%} CPU time; one "
                f"preview costs {preview_ms:.2f} ms ({steps - 1} per image: {estimate:.2%} of "
                f"the image time){busy}"
            ),
            "cpu_overhead": round(cpu_overhead, 4),
        }
    )
    return rows


def _preview_cost_ms(latent_side: int, repeats: int = 200) -> float:
    """What one preview costs by itself (latent-to-RGB, to a PIL image), in ms."""
    import torch

    from studio_image.previews import latents_to_images

    latents = torch.randn(1, 4, latent_side, latent_side)
    latents_to_images(latents, "sd")
    started = time.perf_counter()
    for _ in range(repeats):
        latents_to_images(latents, "sd")
    return (time.perf_counter() - started) / repeats * 1000


def _sd15_shaped(folder: Path, device: str) -> Path:
    """A random-weight pipeline with Stable Diffusion 1.5's shapes, built on the GPU, saved fp16."""
    import torch
    from diffusers import (
        AutoencoderKL,
        PNDMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    from studio.testing.models_image import tiny_clip_tokenizer

    tokenizer = tiny_clip_tokenizer(folder.parent / "sd15-tokenizer")
    vocab = tokenizer.get_vocab()
    torch.manual_seed(0)
    with torch.device(device):
        unet = UNet2DConditionModel(
            sample_size=64,
            cross_attention_dim=768,
            attention_head_dim=8,
            block_out_channels=(320, 640, 1280, 1280),
            layers_per_block=2,
        )
        vae = AutoencoderKL(
            block_out_channels=[128, 256, 512, 512],
            layers_per_block=2,
            latent_channels=4,
            down_block_types=["DownEncoderBlock2D"] * 4,
            up_block_types=["UpDecoderBlock2D"] * 4,
            sample_size=512,
        )
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=len(vocab),
                hidden_size=768,
                intermediate_size=3072,
                num_hidden_layers=12,
                num_attention_heads=12,
                max_position_embeddings=77,
                bos_token_id=vocab["<|startoftext|>"],
                eos_token_id=vocab["<|endoftext|>"],
                pad_token_id=vocab["<|endoftext|>"],
            )
        )
    scheduler = PNDMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        skip_prk_steps=True,
        steps_offset=1,
    )
    pipe: Any = StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.to("cpu", torch.float16)  # built on the GPU (fast random init), saved from host memory
    pipe.save_pretrained(folder, safe_serialization=True)
    del pipe, unet, vae, text_encoder
    torch.cuda.empty_cache()
    return folder


def _gpu_rows(root: Path, quick: bool, device: str) -> list[dict]:
    import torch
    from diffusers import DiffusionPipeline

    from studio.core.cache import ModelCache
    from studio.core.devices import default_dtype

    steps, size, repeats = (10, 512, 3) if quick else (25, 512, 5)
    folder = _sd15_shaped(root / "sd15-shaped", device)
    # the default pipeline: float32 (diffusers' default dtype), SDPA attention, nothing else
    bare_pipe = DiffusionPipeline.from_pretrained(
        str(folder), local_files_only=True, dtype=torch.float32
    )
    bare_pipe.to(device)
    bare_pipe.set_progress_bar_config(disable=True)

    def bare() -> Any:
        image = bare_pipe(
            PROMPT,
            num_inference_steps=steps,
            width=size,
            height=size,
            generator=[torch.Generator("cpu").manual_seed(SEED)],
        ).images[0]
        torch.cuda.synchronize()
        return image

    cache = ModelCache()
    options = {"steps": steps, "width": size, "height": size, "preview_every": 0}
    plugin = _plugin_runner(folder, options, device, cache, root)

    def studio() -> Any:
        image = plugin()
        torch.cuda.synchronize()
        return image

    timings = _Timings({"bare": bare, "studio": studio}, repeats)
    speedup = timings.ratio("bare", "studio")
    return [
        {
            "name": "image (GPU): studio best settings vs default pipeline",
            "studio": round(1 / timings.median("studio"), 4),
            "bare": round(1 / timings.median("bare"), 4),
            "unit": "images/s",
            "ratio": round(speedup, 4),
            "goal": f">= {GOAL_GPU_SPEEDUP}x",
            "met": speedup >= GOAL_GPU_SPEEDUP,
            "notes": (
                f"SD 1.5-shaped random model, {steps} steps at {size}x{size} on "
                f"{torch.cuda.get_device_name(device)}; studio {default_dtype(device)} + "
                "channels-last + SDPA, bare float32 + SDPA"
            ),
        }
    ]


def run(quick: bool = False) -> list[dict]:
    """Rows: plugin and studio job vs bare pipeline, preview overhead; a GPU row with CUDA."""
    from studio.core.devices import resolve_device

    with tempfile.TemporaryDirectory(prefix="bench-image-") as tmp:
        root = Path(tmp)
        rows = _cpu_rows(root, quick)
        device = resolve_device("auto")
        if device.startswith("cuda"):
            rows += _gpu_rows(root, quick, device)
    return rows


if __name__ == "__main__":
    for row in run(quick=True):
        print(row)
