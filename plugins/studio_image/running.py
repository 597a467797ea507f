"""Running a diffusers pipeline call while streaming its progress, previews and notes.

A pipeline call is one blocking function; a generator's ``run`` must yield events while it runs.
``ctx.run_blocking`` runs the call on a helper thread (with the worker's torch CPU thread count
and CUDA device) and yields what it emits: ``callback_on_step_end`` emits each step's Progress and
Preview events.

Cancel: the same callback checks the job's cancel flag after every denoising step and raises, so
the pipeline stops within one step. ``ctx.run_blocking`` then lets go of the call's traceback
(which holds the pipeline's frames, and with them the latents) and of its images, and raises
:class:`~studio.Cancelled`; the garbage is collected and the allocator cache emptied before it
goes on, so the job's memory is given back.
"""

from __future__ import annotations

import gc
import inspect
import threading
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

from studio import Cancelled, Emit, Note, PluginEvent, Preview, Progress
from studio_image.previews import latents_to_images

if TYPE_CHECKING:
    from studio import RunContext

__all__ = ["Emit", "StopDenoising", "free_memory", "run_pipeline"]


class StopDenoising(Exception):
    """Raised from the step callback to leave the pipeline call (cancel, or the run closed)."""


def free_memory(device: str) -> None:
    """Collect garbage and give cached accelerator memory back."""
    from studio import empty_device_caches

    gc.collect()
    if not device.startswith("cpu"):
        empty_device_caches()


def run_pipeline(
    pipe: Any,
    make_kwargs: Callable[[Emit], dict[str, Any]],
    ctx: RunContext,
    *,
    preview_every: int,
    latent_format: str,
) -> Generator[PluginEvent, None, list[Any]]:
    """Run ``pipe(**make_kwargs(emit))`` on a helper thread; yield its events; return its images.

    ``make_kwargs`` runs on the helper thread too, with gradients off, so prompt encoding is part
    of the model work; it may ``emit`` Notes.
    """
    params = inspect.signature(pipe.__call__).parameters
    with_callback = "callback_on_step_end" in params
    tensor_inputs = [
        name for name in ("latents",) if name in getattr(pipe, "_callback_tensor_inputs", ())
    ]

    def work(emit: Emit, stopped: threading.Event) -> list[Any]:
        import torch

        def on_step_end(
            p: Any, index: int, timestep: Any, kwargs: dict[str, Any]
        ) -> dict[str, Any]:
            if stopped.is_set() or ctx.cancel_event.is_set():
                raise StopDenoising()
            step = index + 1
            total = int(getattr(p, "num_timesteps", 0) or 0)
            emit(Progress(step, max(total, step), "denoising"))
            latents = kwargs.get("latents")
            due = preview_every and step % preview_every == 0 and (total == 0 or step < total)
            if due and latents is not None:  # the last step's image is the result itself
                for i, image in enumerate(latents_to_images(latents, latent_format)):
                    emit(Preview(image, step=step, index=i))
            return kwargs

        with torch.no_grad():
            kwargs = make_kwargs(emit)
            if with_callback:
                kwargs["callback_on_step_end"] = on_step_end
                kwargs["callback_on_step_end_tensor_inputs"] = tensor_inputs
            else:
                emit(Note("this pipeline reports no steps: no progress or previews"))
            kwargs["output_type"] = "pil"
            return list(pipe(**kwargs).images)

    try:
        images = yield from ctx.run_blocking(work, name=f"studio-image-{ctx.job_id}")
    except Cancelled:  # during denoising, or the final decode: the images are not wanted
        free_memory(ctx.device)
        raise
    return images
