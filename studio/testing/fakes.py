"""Fake generators and a fake trainer for tests: deterministic, fast, and free of torch.

They follow the real contracts (class-level metadata, pydantic Options, ``run`` yielding events,
cancel checks between steps, checkpoints through ``ctx.checkpoints``), so the worker, the queue,
the CLI and the GUI can be tested end to end without any model. Register them with the plugin
module :mod:`studio.testing.fake_plugin`.

All outputs are pure functions of the request (prompt, seed, options): running the same request
twice gives identical text, pixels and losses.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from studio.core.datasets import ingest_dataset
from studio.core.events import (
    AdapterOutput,
    ImageOutput,
    JobEvent,
    JobState,
    JobStateChanged,
    Note,
    Partial,
    PluginEvent,
    Preview,
    Progress,
    Result,
    Sample,
    TextOutput,
    TrainStep,
    event_type,
)
from studio.core.generator import GenerationRun, Generator
from studio.core.options import BaseOptions
from studio.core.training import IngestReport, Trainer, TrainingRun

if TYPE_CHECKING:
    from studio.core.context import RunContext, TrainContext

#: Model reference the fakes declare as default (they never load it).
FAKE_MODEL = "fake/tiny-model"

_WORDS = (
    "amber",
    "brook",
    "cedar",
    "dawn",
    "ember",
    "fjord",
    "glade",
    "harbor",
    "island",
    "juniper",
    "kestrel",
    "lantern",
    "meadow",
    "nebula",
    "orchard",
    "prairie",
    "quartz",
    "river",
    "saffron",
    "thistle",
    "umber",
    "valley",
    "willow",
    "xenon",
    "yarrow",
    "zephyr",
)


def _stable_int(*parts: object) -> int:
    """A seed derived from ``parts`` that is the same in every process (unlike ``hash``)."""
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big")


def _pause(seconds: float, ctx: RunContext) -> None:
    """Sleep ``seconds`` but wake at once when the job is cancelled."""
    if seconds > 0:
        ctx.cancel_event.wait(seconds)


def fake_text(prompt: str, seed: int, max_tokens: int) -> list[str]:
    """The chunks :class:`FakeTextGenerator` streams for ``prompt`` and ``seed``."""
    rng = random.Random(_stable_int("text", prompt, seed))
    return [(" " if i else "") + rng.choice(_WORDS) for i in range(max_tokens)]


# --- generators -------------------------------------------------------------------------------


class FakeTextOptions(BaseOptions):
    max_tokens: int = Field(16, ge=1, le=512, description="How many words to generate.")
    delay: float = Field(0.0, ge=0.0, le=5.0, description="Seconds to wait per token (tests).")


class FakeTextGenerator(Generator):
    """Streams a deterministic sequence of words derived from prompt and seed."""

    id = "fake-text"
    name = "Fake text"
    modality = "text"
    task = "text-generation"
    default_model = FAKE_MODEL
    Options = FakeTextOptions
    description = "Deterministic words for tests; no model."

    def run(self, request: GenerationRun, ctx: RunContext) -> Iterator[PluginEvent]:
        opts: FakeTextOptions = request.options
        chunks = fake_text(request.prompt, request.seed, opts.max_tokens)
        for i, chunk in enumerate(chunks, start=1):
            ctx.check_cancelled()
            _pause(opts.delay, ctx)
            ctx.check_cancelled()
            yield Partial(chunk)
            yield Progress(i, len(chunks))
        yield Result(TextOutput("".join(chunks), seed=request.seed))


class FakeNoopGenerator(Generator):
    """Does nothing but report one step: measures the queue's own overhead."""

    id = "fake-noop"
    name = "Fake no-op"
    modality = "text"
    task = "noop"
    default_model = FAKE_MODEL
    prompt_required = False
    description = "Yields one progress event and no output (queue benchmarks)."

    def run(self, request: GenerationRun, ctx: RunContext) -> Iterator[PluginEvent]:
        ctx.check_cancelled()
        yield Progress(1, 1)


class FakeImageOptions(BaseOptions):
    width: int = Field(64, ge=8, le=1024, multiple_of=8, description="Image width in pixels.")
    height: int = Field(64, ge=8, le=1024, multiple_of=8, description="Image height in pixels.")
    steps: int = Field(4, ge=1, le=100, description="Denoising steps (one preview each).")
    batch_size: int = Field(1, ge=1, le=8, description="Images per run, with consecutive seeds.")
    guidance_scale: float = Field(7.0, ge=0.0, le=30.0, description="Classifier-free guidance.")
    negative_prompt: str = Field("", description="What to avoid.")
    delay: float = Field(0.0, ge=0.0, le=5.0, description="Seconds to wait per step (tests).")


def fake_pixels(prompt: str, seed: int, width: int, height: int, lora_shift: int = 0) -> Any:
    """The uint8 RGB array (height, width, 3) :class:`FakeImageGenerator` makes for one image."""
    import numpy as np

    rng = np.random.default_rng(_stable_int("image", prompt, seed))
    pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    if lora_shift:
        pixels = (pixels.astype(np.int16) + lora_shift).clip(0, 255).astype(np.uint8)
    return pixels


class FakeImageGenerator(Generator):
    """Noise images from the seed (``seed + i`` for image ``i`` of a batch), a preview per step.

    LoRA adapters are "applied" by shifting the pixel values by an amount derived from the
    reference and weight, so recipes with adapters are reproducible and distinguishable.
    """

    id = "fake-image"
    name = "Fake image"
    modality = "image"
    task = "text-to-image"
    default_model = FAKE_MODEL
    Options = FakeImageOptions
    supports_lora = True
    description = "Seeded noise images for tests; no model."

    def run(self, request: GenerationRun, ctx: RunContext) -> Iterator[PluginEvent]:
        from PIL import Image

        opts: FakeImageOptions = request.options
        shift = self._apply_loras(request, ctx)
        total = opts.steps * opts.batch_size
        for index in range(opts.batch_size):
            seed = (request.seed + index) % 2**32
            pixels = fake_pixels(request.prompt, seed, opts.width, opts.height, shift)
            for step in range(1, opts.steps + 1):
                ctx.check_cancelled()
                _pause(opts.delay, ctx)
                ctx.check_cancelled()
                # previews fade in from grey to the final image
                preview = (pixels.astype("float32") * step / opts.steps).astype("uint8")
                yield Preview(Image.fromarray(preview), step=step, index=index)
                yield Progress(index * opts.steps + step, total)
            image = Image.fromarray(pixels)
            yield Result(ImageOutput(image, seed=seed, index=index, extra={"sampler": "fake"}))

    @staticmethod
    def _apply_loras(request: GenerationRun, ctx: RunContext) -> int:
        shift = 0
        for lora in request.loras:
            path = Path(lora.ref)
            ctx.record_adapter(lora.ref, lora.weight, path if path.is_file() else None)
            shift += round(lora.weight * 8) + _stable_int("lora", lora.ref) % 5
        return shift


class FailingOptions(BaseOptions):
    error: Literal["value", "memory", "oom", "none"] = Field(
        "value",
        description="What to raise: ValueError, MemoryError, an accelerator out-of-memory error, "
        "or nothing (succeeds).",
    )
    after_steps: int = Field(0, ge=0, le=100, description="Progress steps before raising.")


class FailingGenerator(Generator):
    """Raises the exception its options choose (after some progress): failure isolation tests."""

    id = "fake-fail"
    name = "Failing generator"
    modality = "text"
    task = "fail"
    default_model = FAKE_MODEL
    Options = FailingOptions
    prompt_required = False
    description = "Raises on purpose."

    def run(self, request: GenerationRun, ctx: RunContext) -> Iterator[PluginEvent]:
        opts: FailingOptions = request.options
        for step in range(1, opts.after_steps + 1):
            ctx.check_cancelled()
            yield Progress(step, opts.after_steps)
        if opts.error == "value":
            raise ValueError("fake failure requested by the options")
        if opts.error == "memory":
            raise MemoryError("fake host out of memory")
        if opts.error == "oom":
            raise out_of_memory_error()
        yield Result(TextOutput("no failure", seed=request.seed))


def out_of_memory_error() -> BaseException:
    """An accelerator out-of-memory error: torch's own class when torch is installed."""
    message = "CUDA out of memory. Tried to allocate 2.00 GiB (fake)"
    try:
        import torch
    except ImportError:
        return RuntimeError(message)
    oom = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
    return oom(message)


# --- trainer ----------------------------------------------------------------------------------


class FakeTrainerOptions(BaseOptions):
    steps: int = Field(20, ge=1, le=100_000, description="Optimisation steps.")
    checkpoint_every: int = Field(5, ge=1, le=10_000, description="Steps between checkpoints.")
    sample_every: int = Field(0, ge=0, le=10_000, description="Steps between samples (0: none).")
    delay: float = Field(0.0, ge=0.0, le=5.0, description="Seconds per step (tests).")
    learning_rate: float = Field(1e-4, gt=0, le=1.0, description="Reported learning rate.")


_USABLE = (".txt", ".png")


def fake_loss(step: int, name: str) -> float:
    """The deterministic loss :class:`FakeTrainer` reports at ``step``: decaying with a wiggle."""
    wiggle = (_stable_int("loss", name, step) % 1000) / 1000.0 - 0.5
    return round(1.0 / (1.0 + 0.1 * step) + 0.02 * wiggle, 6)


class FakeTrainer(Trainer):
    """Trains nothing, with the full contract: steps, boundaries, checkpoints, samples, result."""

    id = "fake-lora"
    name = "Fake LoRA trainer"
    modality = "image"
    default_model = FAKE_MODEL
    Options = FakeTrainerOptions
    description = "A deterministic loss curve and a tiny adapter file, for tests."

    def ingest(self, dataset: Path, options: Any) -> IngestReport:
        # the shared ingest, as every trainer reads its dataset: captions and pictures (any size)
        report = ingest_dataset(
            dataset, kinds=("text", "image"), extensions=_USABLE, min_image_side=1
        )
        images = sum(1 for f in report.files.values() if f.kind == "image")
        report.notes.append(f"{images} image(s), {len(report.usable) - images} caption(s)")
        return report

    def run(self, request: TrainingRun, ctx: TrainContext) -> Iterator[PluginEvent]:
        opts: FakeTrainerOptions = request.options
        assert ctx.checkpoints is not None, "the worker always gives trainers a checkpoint store"
        start = self._restore(ctx)
        if start:
            yield Note(f"resumed from the checkpoint at step {start}")
        for step in range(start + 1, opts.steps + 1):
            ctx.step_boundary()
            _pause(opts.delay, ctx)
            yield TrainStep(step, opts.steps, fake_loss(step, request.name), opts.learning_rate)
            if opts.sample_every and step % opts.sample_every == 0:
                yield Sample(step, self._sample(step))
            if step % opts.checkpoint_every == 0 or step == opts.steps:
                self._save(ctx, step, request.name)
        yield Result(self._write_adapter(request))

    @staticmethod
    def _restore(ctx: TrainContext) -> int:
        assert ctx.checkpoints is not None
        latest = ctx.checkpoints.latest()
        if latest is None:
            return 0
        state = json.loads((latest / "state.json").read_text(encoding="utf-8"))
        return int(state["step"])

    @staticmethod
    def _save(ctx: TrainContext, step: int, name: str) -> None:
        assert ctx.checkpoints is not None
        state = {"step": step, "loss": fake_loss(step, name)}

        def write(folder: Path) -> None:
            (folder / "state.json").write_text(json.dumps(state), encoding="utf-8")

        ctx.checkpoints.save(step, write)

    @staticmethod
    def _sample(step: int) -> ImageOutput:
        from PIL import Image

        return ImageOutput(Image.new("RGB", (16, 16), (step % 256, 64, 128)), seed=step)

    @staticmethod
    def _write_adapter(request: TrainingRun) -> AdapterOutput:
        import numpy as np
        from safetensors.numpy import save_file

        request.output_dir.mkdir(parents=True, exist_ok=True)
        path = request.output_dir / "adapter.safetensors"
        rng = np.random.default_rng(_stable_int("adapter", request.name))
        save_file({"lora_A": rng.standard_normal((4, 8)).astype("float32")}, str(path))
        return AdapterOutput(
            path=path,
            base_model=request.base_model,
            name=request.name,
            modality="image",
            extra={"steps": request.options.steps, "fake": True},
        )


#: Every fake generator, in registration order.
GENERATORS: tuple[type[Generator], ...] = (
    FakeTextGenerator,
    FakeImageGenerator,
    FailingGenerator,
    FakeNoopGenerator,
)

#: Every fake trainer.
TRAINERS: tuple[type[Trainer], ...] = (FakeTrainer,)


class EventRecorder:
    """A subscriber that keeps every :class:`~studio.core.events.JobEvent` (thread-safe).

    ``studio.subscribe(recorder)``; then :meth:`wait_for` a condition with a timeout.
    """

    def __init__(self) -> None:
        self.events: list[JobEvent] = []
        self._cond = threading.Condition()

    def __call__(self, event: JobEvent) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def of(self, job_id: str) -> list[Any]:
        """The plugin and core events of one job, in order."""
        with self._cond:
            return [e.event for e in self.events if e.job_id == job_id]

    def states(self, job_id: str) -> list[JobState]:
        """The states one job went through, in order."""
        return [e.state for e in self.of(job_id) if isinstance(e, JobStateChanged)]

    def timeline(self) -> list[tuple[str, str]]:
        """``(job_id, label)`` for every event: the state name or the event type."""
        with self._cond:
            return [
                (
                    e.job_id,
                    str(e.event.state)
                    if isinstance(e.event, JobStateChanged)
                    else event_type(e.event),
                )
                for e in self.events
            ]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        """Wait until ``predicate()`` holds (checked at each event); ``False`` on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.1))
            return True


def wait_until(predicate: Any, timeout: float = 10.0, interval: float = 0.005) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` passes; return its last truth value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return bool(predicate())
        time.sleep(interval)
