"""Text to audio over diffusers' Stable Audio pipeline (Stable Audio Open): sounds and music.

The pipeline denoises a fixed window of latent frames (about 47.5 s for Stable Audio Open 1.0)
conditioned on the text and on the requested length, decodes it with the Oobleck VAE and cuts the
requested seconds from the start of the window. The output is stereo at the model's rate (44.1
kHz for the released model).

- Loading: the diffusers folder or hub snapshot, safetensors only unless pickle was allowed for
  that model, quietly, shared in the model cache as ``kind="diffusers-pipeline"``.
- Progress per denoising step through the pipeline's step callback, which also stops the call
  within one step on cancel.
- Seeds: a CPU ``torch.Generator`` drives the initial noise and the scheduler's Brownian noise, so
  a seed gives the same audio on any device's noise stream and bit-identical files on a CPU.
"""

from __future__ import annotations

import inspect
import logging
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from studio import (
    Cancelled,
    GenerationRun,
    Generator,
    InvalidRequest,
    ModelNotFound,
    Note,
    PluginEvent,
    Progress,
    Result,
    quiet_model_loading,
)
from studio_audio.modelinfo import StableAudioInfo, peek_model_folder, require_folder
from studio_audio.options import StableAudioOptions

if TYPE_CHECKING:
    import numpy as np

    from studio import RunContext

#: The cache kind of every diffusers pipeline: the same weights loaded once, whoever asks.
KIND = "diffusers-pipeline"


def ignore_known_warnings() -> None:
    """Keep two harmless warnings of every Stable Audio run off the terminal (narrow filters).

    - torchsde's Brownian interval warns when the scheduler asks for noise a rounding error
      outside [sigma_min, sigma_max] ("Should have ta>=t0 but got ta=0.2999...");
    - the Oobleck VAE is built with ``torch.nn.utils.weight_norm``, deprecated in torch.

    The pipeline's log line about a prompt cut to the tokenizer's length is dropped too: the
    generator says it in a Note instead (:func:`truncation_note`).

    ``filterwarnings`` replaces an identical filter, so calling this again adds nothing.
    """
    pipeline_log = logging.getLogger("diffusers.pipelines.stable_audio.pipeline_stable_audio")
    if not any(isinstance(f, _DropTruncationLog) for f in pipeline_log.filters):
        pipeline_log.addFilter(_DropTruncationLog())
    warnings.filterwarnings(
        "ignore", message=r"Should have t[ab]", category=UserWarning, module=r"torchsde\."
    )
    warnings.filterwarnings(
        "ignore",
        message=r"`torch\.nn\.utils\.weight_norm` is deprecated",
        category=FutureWarning,
        module=r"torch\.nn\.utils\.weight_norm",
    )


class _DropTruncationLog(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("The following part of your input was truncated")


def truncation_note(tokenizer: Any, text: str, what: str) -> Note | None:
    """A warning naming the end of ``text`` that the model does not read, if any.

    The pipeline cuts every prompt to the tokenizer's ``model_max_length`` tokens (the end-of-text
    token included).
    """
    limit = int(tokenizer.model_max_length)
    ids = tokenizer(text, verbose=False).input_ids
    if len(ids) <= limit:
        return None
    dropped = tokenizer.decode(ids[limit - 1 :], skip_special_tokens=True).strip()
    return Note(
        f"the {what} is longer than this model reads ({limit - 1} tokens); this end of it is "
        f"ignored: {dropped!r}",
        "warning",
    )


class StopDenoising(Exception):
    """Raised from the step callback to leave the pipeline call (cancel, or the run closed)."""


def load_stable_audio(folder: Path, device: str, dtype: str, *, allow_pickle: bool) -> Any:
    """``StableAudioPipeline`` from a diffusers folder, on ``device``, progress bar off.

    Only ``.safetensors`` weights are read unless pickle was allowed for this model.
    """
    from diffusers import StableAudioPipeline

    from studio import is_out_of_memory, torch_dtype

    ignore_known_warnings()
    try:
        with quiet_model_loading("diffusers", "transformers"):
            pipe = StableAudioPipeline.from_pretrained(
                str(folder),
                dtype=torch_dtype(dtype),
                local_files_only=True,
                use_safetensors=None if allow_pickle else True,
            )
    except Exception as exc:
        if is_out_of_memory(exc):
            raise
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:400]
        raise ModelNotFound(
            f"{folder.name} could not be loaded as a Stable Audio pipeline: "
            f"{type(exc).__name__}: {first}"
        ) from exc
    pipe.set_progress_bar_config(disable=True)
    warned = getattr(pipe.tokenizer, "deprecation_warnings", None)
    if isinstance(warned, dict):  # the pipeline measures the whole prompt: no advice about it
        warned["sequence-length-is-longer-than-the-specified-maximum"] = True
    if device != "cpu":
        pipe.to(device)
    return pipe


def pipeline_kwargs(prompt: str, opts: StableAudioOptions, seed: int) -> dict[str, Any]:
    """The pipeline call for ``opts``: the same one a bare diffusers call makes (no callbacks).

    The generator lives on the CPU whatever the device, so that a seed means the same noise
    everywhere (diffusers draws it on the CPU and moves it).
    """
    import torch

    return {
        "prompt": prompt,
        "negative_prompt": opts.negative_prompt or None,
        "audio_start_in_s": 0.0,
        "audio_end_in_s": opts.duration,
        "num_inference_steps": opts.steps,
        "guidance_scale": opts.guidance_scale,
        "num_waveforms_per_prompt": 1,
        "generator": torch.Generator("cpu").manual_seed(seed),
    }


def step_callback_kwargs(pipe: Any, on_step: Callable[[int], None]) -> dict[str, Any]:
    """Callback arguments calling ``on_step(step_index)`` after every denoising step.

    diffusers 0.42's Stable Audio pipeline has only the legacy ``callback``; newer pipelines take
    ``callback_on_step_end``, which is preferred when present.
    """
    params = inspect.signature(pipe.__call__).parameters
    if "callback_on_step_end" in params:

        def on_step_end(p: Any, index: int, timestep: Any, kwargs: dict[str, Any]) -> Any:
            on_step(index)
            return kwargs

        return {"callback_on_step_end": on_step_end, "callback_on_step_end_tensor_inputs": []}

    def legacy(index: int, timestep: Any, latents: Any) -> None:
        on_step(index)

    return {"callback": legacy, "callback_steps": 1}


def _read_info(request: GenerationRun, folder: Path | None) -> StableAudioInfo | None:
    assert request.model is not None  # uses_model = True: the studio always names one
    if folder is not None:
        return StableAudioInfo.read(folder)
    return StableAudioInfo.known(request.model)


class TextToAudio(Generator):
    """Sound effects, ambiences and music from text with Stable Audio Open (diffusers)."""

    id: ClassVar[str] = "stable-audio"
    name: ClassVar[str] = "Text to audio (Stable Audio Open)"
    modality = "audio"
    # Its own task: `text-to-music` stays MusicGen's, and each task's model list stays right.
    task: ClassVar[str] = "text-to-audio"
    default_model: ClassVar[str | None] = "stabilityai/stable-audio-open-1.0"
    Options = StableAudioOptions
    imports: ClassVar[tuple[str, ...]] = ("diffusers.pipelines.stable_audio.pipeline_stable_audio",)
    description: ClassVar[str] = (
        "Stereo sound effects, ambiences and music from a description ('rain on a tin roof', "
        "'128 BPM techno drum loop'), up to about 47 s, with Stable Audio Open."
    )

    def check(self, request: GenerationRun) -> None:
        assert request.model is not None  # uses_model = True: the studio always names one
        opts: StableAudioOptions = request.options
        if not request.prompt.strip():
            raise InvalidRequest("the sound description is empty; describe the sound to make")
        info = _read_info(request, peek_model_folder(request.model))
        if info is None:
            return  # not downloaded and not a known model: checked again once it is here
        info.check_duration(opts.duration)
        info.check_scheduler()

    def run(self, request: GenerationRun, ctx: RunContext) -> Iterator[PluginEvent]:
        assert request.model is not None  # uses_model = True: the studio always names one
        from studio import default_dtype
        from studio_audio.output import build_output, to_frames_channels

        opts: StableAudioOptions = request.options
        if not request.prompt.strip():
            raise InvalidRequest("the sound description is empty; describe the sound to make")
        known = StableAudioInfo.known(request.model)
        if known is not None:  # refuse before a download of several GB
            known.check_duration(opts.duration)
        yield Progress(0, opts.steps, "loading the model")
        resolved = ctx.resolve_model(request.model)
        folder = require_folder(Path(resolved.path), "text-to-audio")
        info = StableAudioInfo.read(folder)
        info.check_duration(opts.duration)
        info.check_scheduler()
        dtype = default_dtype(ctx.device)
        allow_pickle = ctx.allows_pickle(request.model)
        with ctx.use_model(
            resolved,
            kind=KIND,
            dtype=dtype,
            loader=lambda: load_stable_audio(folder, ctx.device, dtype, allow_pickle=allow_pickle),
        ) as pipe:
            ctx.check_cancelled()
            for text, what in (
                (request.prompt, "description"),
                (opts.negative_prompt, "negative prompt"),
            ):
                note = truncation_note(pipe.tokenizer, text, what) if text else None
                if note is not None:
                    yield note
            audio = yield from ctx.run_blocking(self._work(pipe, request, ctx), name="stable-audio")
        samples = to_frames_channels(audio)
        ctx.recipe.extra["pipeline"] = type(pipe).__name__
        ctx.recipe.extra["scheduler"] = info.scheduler
        output, notes = build_output(
            samples, info.sampling_rate, opts, seed=request.seed, recipe_extra=ctx.recipe.extra
        )
        yield from notes
        yield Result(output)

    @staticmethod
    def _work(
        pipe: Any, request: GenerationRun, ctx: RunContext
    ) -> Callable[[Callable[[Any], None], threading.Event], np.ndarray]:
        """The blocking part, run on a helper thread: the pipeline call with its callback."""

        def work(emit: Callable[[Any], None], stopped: threading.Event) -> np.ndarray:
            opts: StableAudioOptions = request.options
            total = opts.steps

            def on_step(index: int) -> None:
                if stopped.is_set() or ctx.cancel_event.is_set():
                    raise StopDenoising()
                step = index + 1
                label = "decoding the audio" if step >= total else "denoising"
                emit(Progress(min(step, total), total, label))

            ignore_known_warnings()
            kwargs = pipeline_kwargs(request.prompt, opts, request.seed)
            kwargs.update(step_callback_kwargs(pipe, on_step))
            try:
                audios = pipe(**kwargs).audios
            except StopDenoising:
                raise Cancelled() from None
            if ctx.cancel_event.is_set() or stopped.is_set():
                raise Cancelled()  # cancelled during the final decode
            return audios[0].float().cpu().numpy()

        return work
