"""Text to speech over transformers VITS models (VITS, MMS-TTS), sentence by sentence."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from studio import (
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
from studio_audio.modelinfo import VitsInfo, peek_model_folder, require_folder
from studio_audio.options import SpeechOptions
from studio_audio.text import split_sentences

if TYPE_CHECKING:
    from studio import RunContext

#: Cache kind for VITS weights (a generator asking for the same kind shares the loaded model).
KIND = "transformers-vits"


def _check_text(prompt: str) -> str:
    text = prompt.strip()
    if not text:
        raise InvalidRequest("the text to speak is empty; write at least one word")
    return text


@contextmanager
def _voice_settings(model: Any, noise_scale: float | None, noise_scale_duration: float | None):
    """Set the noise scales on the (shared, cached) model for this run only."""
    saved = (model.noise_scale, model.noise_scale_duration)
    if noise_scale is not None:
        model.noise_scale = noise_scale
    if noise_scale_duration is not None:
        model.noise_scale_duration = noise_scale_duration
    try:
        yield
    finally:
        model.noise_scale, model.noise_scale_duration = saved


def load_vits(folder: Path, device: str) -> Any:
    """Load a VITS model in float32 (its normalising flows are unstable in half precision)."""
    import torch
    from transformers import VitsModel

    with quiet_model_loading("transformers"):
        model: Any = VitsModel.from_pretrained(str(folder), dtype=torch.float32)
    return model.to(device).eval()


def tokenize(folder: Path, sentences: list[str], uroman: bool) -> tuple[list[Any], int]:
    """Token batches of the sentences this voice can speak, and how many were dropped.

    The VITS tokenizer is a small character table, loaded per run: checking the text needs no
    model, so unspeakable text is refused before the weights load.
    """
    from transformers import AutoTokenizer

    with quiet_model_loading("transformers"):
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
    # Not speech: the blank VITS puts between characters (id 0), padding, unknown characters.
    silent = {0, tokenizer.pad_token_id, tokenizer.unk_token_id}
    batches = [tokenizer(s, return_tensors="pt") for s in sentences]
    speakable = [b for b in batches if any(int(i) not in silent for i in b["input_ids"][0])]
    if not speakable:
        hint = " (this voice reads romanised text: install the 'uroman' package)" if uroman else ""
        raise InvalidRequest(
            "the text has no characters this voice can speak; it knows: "
            + "".join(sorted(c for c in tokenizer.get_vocab() if len(c) == 1)).strip()
            + hint
        )
    return speakable, len(batches) - len(speakable)


class TextToSpeech(Generator):
    """Speech from text with a VITS / MMS-TTS voice."""

    id: ClassVar[str] = "vits"
    name: ClassVar[str] = "Text to speech (VITS / MMS-TTS)"
    modality = "audio"
    task: ClassVar[str] = "text-to-speech"
    # reads plain text, so it works on any install (vits-ljs needs phonemizer + espeak-ng);
    # its licence (CC-BY-NC 4.0) is shown in the catalog and the guide
    default_model: ClassVar[str | None] = "facebook/mms-tts-eng"
    Options = SpeechOptions
    imports: ClassVar[tuple[str, ...]] = ("transformers.models.vits.modeling_vits",)
    description: ClassVar[str] = (
        "Reads text aloud with a VITS voice (kakao-enterprise VITS, Meta's MMS-TTS in 1100+ "
        "languages). Multi-speaker models take a speaker number; speed and variation are options."
    )

    def check(self, request: GenerationRun) -> None:
        assert request.model is not None  # uses_model = True: the studio always names one
        _check_text(request.prompt)
        folder = peek_model_folder(request.model)
        if folder is None:
            return
        info = VitsInfo.read(folder)
        info.check_speaker(request.options.speaker)
        info.check_phonemizer()

    def run(self, request: GenerationRun, ctx: RunContext) -> Iterator[PluginEvent]:
        assert request.model is not None  # uses_model = True: the studio always names one
        import numpy as np
        import torch

        from studio_audio.output import build_output

        opts: SpeechOptions = request.options
        text = _check_text(request.prompt)
        resolved = ctx.resolve_model(request.model)
        folder = require_folder(Path(resolved.path), "text-to-speech")
        info = VitsInfo.read(folder)
        info.check_speaker(opts.speaker)
        info.check_phonemizer()
        sentences = split_sentences(text)
        batches, dropped = tokenize(folder, sentences, info.uroman)
        if dropped:
            yield Note(
                f"{dropped} piece(s) of the text had no characters this voice can speak and "
                "were skipped",
                level="warning",
            )
        total = len(batches)
        yield Progress(0, total, "loading the voice")
        with ctx.use_model(
            resolved, kind=KIND, dtype="float32", loader=lambda: load_vits(folder, ctx.device)
        ) as model:
            rate = int(model.config.sampling_rate)
            pause = np.zeros(round(opts.sentence_pause * rate), dtype=np.float32)
            pieces: list[Any] = []
            # Multi-speaker models get voice 0 unless asked: no speaker would be no voice at all.
            speaker = (opts.speaker or 0) if info.num_speakers > 1 else None
            ctx.check_cancelled()
            torch.manual_seed(request.seed)
            with _voice_settings(model, opts.noise_scale, opts.noise_scale_duration):
                for step, batch in enumerate(batches, start=1):
                    ctx.check_cancelled()
                    with torch.inference_mode():
                        out = model(
                            **batch.to(ctx.device),
                            speaker_id=speaker,
                            speaking_rate=opts.speaking_rate,
                        )
                    length = int(out.sequence_lengths[0])
                    wave = out.waveform[0, :length].float().cpu().numpy()
                    if pieces and pause.size:
                        pieces.append(pause)
                    pieces.append(wave)
                    yield Preview(wave, step=step, sample_rate=rate)
                    yield Progress(step, total, f"sentence {step} of {total}")
        ctx.recipe.extra["sentences"] = total
        samples = np.concatenate(pieces).astype(np.float32)
        output, notes = build_output(
            samples, rate, opts, seed=request.seed, recipe_extra=ctx.recipe.extra
        )
        yield from notes
        yield Result(output)
