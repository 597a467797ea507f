"""Running a diffusers pipeline call while streaming its progress, previews and notes.

A pipeline call is one blocking function; a generator's ``run`` must yield events while it runs.
So the call runs on a helper thread that the worker thread waits on (the two never run model code
at the same time), and ``callback_on_step_end`` hands each step's Progress and Preview events
over through a queue, which ``run`` yields as they come. torch's CPU thread count is a per-thread
setting: the helper takes the worker's, so the run uses the count the studio chose (and recorded).

Cancel: the same callback checks the job's cancel flag after every denoising step and raises, so
the pipeline stops within one step. The exception's traceback (which holds the pipeline's frames,
and with them the latents) is dropped and the allocator cache emptied before
:class:`~studio.Cancelled` is raised, so the job's memory is given back.
"""

from __future__ import annotations

import gc
import inspect
import queue
import threading
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

from studio import Cancelled, Note, Preview, Progress
from studio_image.previews import latents_to_images

if TYPE_CHECKING:
    from studio import RunContext

Emit = Callable[[Any], None]


class StopDenoising(Exception):
    """Raised from the step callback to leave the pipeline call (cancel, or the run closed)."""


_DONE = object()


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
) -> Generator[Any, None, list[Any]]:
    """Run ``pipe(**make_kwargs(emit))`` on a helper thread; yield its events; return its images.

    ``make_kwargs`` runs on the helper thread too, with gradients off, so prompt encoding is part
    of the model work; it may ``emit`` Notes.
    """
    import torch

    ctx.check_cancelled()
    threads = torch.get_num_threads()  # the worker thread's count: the helper uses the same
    events: queue.SimpleQueue[Any] = queue.SimpleQueue()
    stop = threading.Event()
    outcome: dict[str, Any] = {}
    params = inspect.signature(pipe.__call__).parameters
    with_callback = "callback_on_step_end" in params
    tensor_inputs = [
        name for name in ("latents",) if name in getattr(pipe, "_callback_tensor_inputs", ())
    ]

    def on_step_end(p: Any, index: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        if stop.is_set() or ctx.cancel_event.is_set():
            raise StopDenoising()
        step = index + 1
        total = int(getattr(p, "num_timesteps", 0) or 0)
        events.put(Progress(step, max(total, step), "denoising"))
        latents = kwargs.get("latents")
        due = preview_every and step % preview_every == 0 and (total == 0 or step < total)
        if due and latents is not None:  # the last step's image is the result itself
            for i, image in enumerate(latents_to_images(latents, latent_format)):
                events.put(Preview(image, step=step, index=i))
        return kwargs

    def work() -> None:
        try:
            torch.set_num_threads(threads)
            if ctx.device.startswith("cuda:"):
                torch.cuda.set_device(ctx.device)
            with torch.no_grad():
                kwargs = make_kwargs(events.put)
                if with_callback:
                    kwargs["callback_on_step_end"] = on_step_end
                    kwargs["callback_on_step_end_tensor_inputs"] = tensor_inputs
                else:
                    events.put(Note("this pipeline reports no steps: no progress or previews"))
                kwargs["output_type"] = "pil"
                outcome["images"] = list(pipe(**kwargs).images)
        except BaseException as exc:
            outcome["error"] = exc
        finally:
            events.put(_DONE)

    worker = threading.Thread(target=work, name=f"studio-image-{ctx.job_id}", daemon=True)
    worker.start()
    try:
        while True:
            item = events.get()
            if item is _DONE:
                break
            yield item
    finally:
        stop.set()  # the run was closed early: the callback stops the pipeline at the next step
        worker.join()
    error = outcome.pop("error", None)
    if error is not None:
        if isinstance(error, StopDenoising) or ctx.cancelled:
            error.__traceback__ = None  # the frames hold the latents: let them go
            del error
            outcome.clear()
            free_memory(ctx.device)
            raise Cancelled()
        raise error
    if ctx.cancelled:  # cancelled during the final decode: the user no longer wants the images
        outcome.clear()
        free_memory(ctx.device)
        raise Cancelled()
    images: list[Any] = outcome["images"]
    return images
