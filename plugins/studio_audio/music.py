"""Text to music over transformers MusicGen (and MusicGen-melody with a melody file)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from studio import (
    Cancelled,
    GenerationRun,
    Generator,
    InvalidRequest,
    Note,
    PluginEvent,
    Preview,
    Progress,
    Result,
    quiet_model_loading,
)
from studio_audio.modelinfo import MusicgenInfo, peek_model_folder, require_folder
from studio_audio.options import MusicOptions

if TYPE_CHECKING:
    import numpy as np

    from studio import RunContext
    from studio_audio.melody import MelodyAudio

KIND = "transformers-musicgen"


def load_musicgen(folder: Path, info: MusicgenInfo, device: str, dtype: str) -> Any:
    """Load MusicGen (or MusicGen-melody) with its T5 tokenizer riding on the model object."""
    from transformers import (
        AutoTokenizer,
        MusicgenForConditionalGeneration,
        MusicgenMelodyForConditionalGeneration,
    )

    from studio import torch_dtype

    cls: Any = (
        MusicgenMelodyForConditionalGeneration if info.melody else MusicgenForConditionalGeneration
    )
    with quiet_model_loading("transformers"):
        model = cls.from_pretrained(str(folder), dtype=torch_dtype(dtype)).to(device).eval()
        model.studio_tokenizer = AutoTokenizer.from_pretrained(str(folder))
    return model


def generation_kwargs(opts: MusicOptions, info: MusicgenInfo) -> dict[str, Any]:
    """The ``generate`` settings for ``opts``: the same ones a bare transformers call would use."""
    return {
        "do_sample": True,
        "guidance_scale": opts.guidance_scale,
        "temperature": opts.temperature,
        "top_k": opts.top_k,
        "max_new_tokens": info.tokens_for(opts.duration),
    }


def _melody_path(opts: MusicOptions) -> Path | None:
    """The melody file as an absolute path (``None``: no melody)."""
    if opts.melody is None:
        return None
    return Path(opts.melody).expanduser().absolute()


class TextToMusic(Generator):
    """Music from a text description with MusicGen; MusicGen-melody also follows a melody."""

    id: ClassVar[str] = "musicgen"
    name: ClassVar[str] = "Text to music (MusicGen)"
    modality = "audio"
    task: ClassVar[str] = "text-to-music"
    default_model: ClassVar[str | None] = "facebook/musicgen-small"
    Options = MusicOptions
    imports: ClassVar[tuple[str, ...]] = ("transformers.models.musicgen.modeling_musicgen",)
    description: ClassVar[str] = (
        "Music from a description ('lo-fi beat with warm piano'). Previews play while it "
        "generates; MusicGen-melody models also follow a melody file."
    )

    def check(self, request: GenerationRun) -> None:
        assert request.model is not None  # uses_model = True: the studio always names one
        opts: MusicOptions = request.options
        if not request.prompt.strip():
            raise InvalidRequest("the music description is empty; describe the music to make")
        melody = _melody_path(opts)
        if melody is not None:
            from studio_audio.melody import read_melody

            read_melody(melody, max_seconds=1.0)  # missing, unsupported, empty: refused now
        folder = peek_model_folder(request.model)
        if folder is None:
            return
        info = MusicgenInfo.read(folder)
        info.check_melody(melody)
        info.check_duration(opts.duration)

    def run(self, request: GenerationRun, ctx: RunContext) -> Iterator[PluginEvent]:
        assert request.model is not None  # uses_model = True: the studio always names one
        from studio import default_dtype
        from studio_audio.melody import prepare_melody
        from studio_audio.output import build_output, to_frames_channels

        opts: MusicOptions = request.options
        if not request.prompt.strip():
            raise InvalidRequest("the music description is empty; describe the music to make")
        resolved = ctx.resolve_model(request.model)
        folder = require_folder(Path(resolved.path), "text-to-music")
        info = MusicgenInfo.read(folder)
        melody_path = _melody_path(opts)
        info.check_melody(melody_path)
        info.check_duration(opts.duration)
        melody: MelodyAudio | None = None
        if melody_path is not None:
            # an absolute path keeps the recipe replayable from any working folder
            ctx.record_options(melody=str(melody_path))
            melody = prepare_melody(melody_path, info.features)
            for message in melody.notes:
                yield Note(message)
            ctx.recipe.extra["melody"] = {
                "path": str(melody_path),
                "sha256": melody.sha256,
                "sample_rate": melody.source_rate,
            }
        kwargs = generation_kwargs(opts, info)
        total = kwargs["max_new_tokens"]
        yield Progress(0, total, "loading the model")
        dtype = default_dtype(ctx.device)
        with ctx.use_model(
            resolved,
            kind=KIND,
            dtype=dtype,
            loader=lambda: load_musicgen(folder, info, ctx.device, dtype),
        ) as model:
            ctx.check_cancelled()
            work = self._work(model, info, request, kwargs, melody, ctx)
            audio, previewed = yield from ctx.run_blocking(work, name="musicgen")
        samples = to_frames_channels(audio)
        if opts.preview_every and previewed * info.hop_length < samples.shape[0]:
            # The last frames arrive with the final decode: send them so previews add up.
            yield Preview(
                samples[previewed * info.hop_length :], step=total, sample_rate=info.sampling_rate
            )
        output, notes = build_output(
            samples, info.sampling_rate, opts, seed=request.seed, recipe_extra=ctx.recipe.extra
        )
        yield from notes
        yield Result(output)

    @staticmethod
    def _work(
        model: Any,
        info: MusicgenInfo,
        request: GenerationRun,
        kwargs: dict[str, Any],
        melody: MelodyAudio | None,
        ctx: RunContext,
    ) -> Callable[[Callable[[Any], None], threading.Event], tuple[np.ndarray, int]]:
        """The blocking part, run on a helper thread: tokenize, seed, generate."""

        def work(emit: Callable[[Any], None], stopped: threading.Event) -> tuple[np.ndarray, int]:
            import torch

            from studio_audio.melody import chroma_features
            from studio_audio.musicgen_stream import make_criteria, previewed_frames

            opts: MusicOptions = request.options
            inputs = model.studio_tokenizer([request.prompt], return_tensors="pt", padding=True)
            extra: dict[str, Any] = {}
            if melody is not None:
                extra["input_features"] = chroma_features(melody, info.features).to(
                    device=ctx.device, dtype=model.dtype
                )
            criteria = make_criteria(
                model,
                info,
                total_steps=kwargs["max_new_tokens"],
                emit=emit,
                cancel=ctx.cancel_event,
                stopped=stopped,
                preview_every=opts.preview_every,
            )
            torch.manual_seed(request.seed)
            audio = model.generate(
                **inputs.to(ctx.device), **extra, **kwargs, stopping_criteria=criteria
            )
            if ctx.cancel_event.is_set() or stopped.is_set():
                raise Cancelled()
            return audio[0].float().cpu().numpy(), previewed_frames(criteria)

        return work
