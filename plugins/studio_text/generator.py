"""The text generator: any transformers causal LM, continuation or chat, streamed token by token."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from studio import (
    GenerationRun,
    Generator,
    InvalidRequest,
    Note,
    Partial,
    PluginEvent,
    Progress,
    Result,
    TextOutput,
)

from .adapters import AdapterSource, applied, find_adapter
from .decoding import Sampling, stream_generate
from .detok import IncrementalDecoder, StopMatcher
from .loading import (
    MODEL_KIND,
    TextModelInfo,
    check_memory,
    estimate_bytes,
    load_causal_lm,
    pick_dtype,
    use_info,
)
from .options import TextOptions
from .prompting import PromptPlan, build_prompt

if TYPE_CHECKING:
    from studio import RunContext

#: The catalog's small instruct model (resources/catalog.json): Apache-2.0, ~724 MB.
DEFAULT_MODEL = "HuggingFaceTB/SmolLM2-360M-Instruct"


class TextGenerator(Generator):
    """Text from a causal language model: continue a text, or chat with an instruct model.

    Tokens stream as :class:`~studio.Partial` events as they are produced; each
    candidate ends in a :class:`~studio.Result` whose text is exactly the streamed
    pieces joined. Candidate ``i`` is sampled with seed ``seed + i`` from its own random stream,
    so it can be regenerated alone.
    """

    id: ClassVar[str] = "text-generation"
    name: ClassVar[str] = "Text generation"
    modality: ClassVar[Any] = "text"
    task: ClassVar[str] = "text-generation"
    default_model: ClassVar[str | None] = DEFAULT_MODEL
    Options: ClassVar[type[TextOptions]] = TextOptions
    description: ClassVar[str] = (
        "Continue a text or chat with a local language model (any transformers causal LM: "
        "GPT-2, Llama, Qwen, SmolLM, Phi, ...), streamed as it is written. LoRA adapters apply."
    )
    supports_lora: ClassVar[bool] = True
    # the causal-LM machinery; each architecture's own module is small
    imports: ClassVar[tuple[str, ...]] = ("transformers.modeling_utils",)

    # -- before any model work ------------------------------------------------------------------
    def check(self, request: GenerationRun) -> None:
        """Refuse what is wrong on disk already (no model is loaded here): a local model that is
        not a transformers folder, adapters given as paths that do not exist."""
        assert request.model is not None  # uses_model = True: the studio always names one
        local = Path(request.model).expanduser()
        if local.is_file():
            raise InvalidRequest(
                f"model {request.model!r} is a single file; a text model must be a folder (or hub "
                "id) in transformers layout: config.json, tokenizer files and *.safetensors"
            )
        if local.is_dir() and not (local / "config.json").is_file():
            raise InvalidRequest(
                f"model {request.model!r} has no config.json: not a transformers model folder "
                "(text generation needs a causal language model such as GPT-2, Llama, Qwen, SmolLM)"
            )
        for lora in request.loras:
            ref = lora.ref.strip()
            if _looks_like_path(ref) and not Path(ref).expanduser().exists():
                raise InvalidRequest(
                    f"adapter {lora.ref!r}: no such file or folder; give a peft adapter folder, "
                    "its adapter_model.safetensors, or a hub id"
                )

    # -- the run ---------------------------------------------------------------------------------
    def run(self, request: GenerationRun, ctx: RunContext) -> Iterator[PluginEvent]:
        assert request.model is not None  # uses_model = True: the studio always names one
        import torch

        opts = _options(request.options)
        resolved = ctx.resolve_model(request.model)
        with use_info(ctx, resolved) as info:
            plan = build_prompt(
                info.tokenizer,
                mode=opts.mode,
                prompt=request.prompt,
                system_prompt=opts.system_prompt,
                parent_recipes=request.parent_recipes,
                max_new_tokens=opts.max_new_tokens,
                context=info.context,
            )
            for message in plan.notes:
                yield Note(message)
            if opts.candidates > 1 and opts.temperature == 0:
                yield Note("temperature 0 is greedy decoding: every candidate will be the same")
            sources = [find_adapter(ctx, spec) for spec in request.loras]
            yield from _adapter_notes(sources, request.model)
            dtype = pick_dtype(ctx.device)
            needed = estimate_bytes(resolved, info, dtype, len(plan.ids) + opts.max_new_tokens)
            warning = check_memory(ctx, resolved, needed, dtype)
            if warning:
                yield Note(warning, level="warning")
            ctx.check_cancelled()
            with (
                ctx.use_model(
                    resolved,
                    kind=MODEL_KIND,
                    dtype=dtype,
                    loader=lambda: load_causal_lm(resolved, ctx.device, dtype),
                ) as base,
                applied(base, sources) as model,
            ):
                for source in sources:
                    ctx.record_adapter(source.ref, source.weight, source.weights)
                input_ids = torch.tensor([plan.ids], dtype=torch.long, device=model.device)
                stops = [*opts.stop, *plan.extra_stops]
                for index in range(opts.candidates):
                    if request.keep_indices is not None and index not in request.keep_indices:
                        continue  # candidate i depends only on seed + i: skip what is not kept
                    yield Progress(index, opts.candidates, _progress_text(index, opts.candidates))
                    seed = (request.seed + index) % 2**32
                    yield from _candidate(
                        model, info, plan, input_ids, opts, stops, seed, index, ctx
                    )
                yield Progress(opts.candidates, opts.candidates, "done")


def _candidate(
    model: Any,
    info: TextModelInfo,
    plan: PromptPlan,
    input_ids: Any,
    opts: TextOptions,
    stops: Sequence[str],
    seed: int,
    index: int,
    ctx: RunContext,
) -> Iterator[PluginEvent]:
    """Generate one candidate, streaming its text; end with its Result."""
    sampling = Sampling(
        max_new_tokens=opts.max_new_tokens,
        temperature=opts.temperature,
        top_p=opts.top_p,
        top_k=opts.top_k,
        repetition_penalty=opts.repetition_penalty,
    )
    detok = IncrementalDecoder(info.decode, plan.ids)
    stopper = StopMatcher(stops)
    eos = frozenset(info.eos_ids)
    pieces: list[str] = []
    finish = "length"
    started = time.perf_counter()
    steps = stream_generate(
        model, input_ids, sampling, seed=seed, eos_token_id=info.eos_ids, pad_token_id=info.pad_id
    )
    try:
        for token, _done in steps:
            ctx.check_cancelled()
            if token in eos:
                finish = "eos"
                break
            piece = stopper.push(detok.push(token))
            if piece:
                pieces.append(piece)
                yield Partial(piece, index=index)
            if stopper.stopped is not None:
                finish = "stop"
                break
    finally:
        steps.close()  # frees the key/value cache at once (cancel, stop string, error)
    tail = stopper.push(detok.flush()) + stopper.flush()
    if tail:
        pieces.append(tail)
        yield Partial(tail, index=index)
    seconds = time.perf_counter() - started
    text = "".join(pieces)
    new_tokens = len(detok.generated)
    extra: dict[str, Any] = {
        "mode": plan.mode,
        "reply": text,
        "finish_reason": finish,
        "prompt_tokens": len(plan.ids),
        "new_tokens": new_tokens,
        "seconds": round(seconds, 3),
        "tokens_per_second": round(new_tokens / seconds, 2) if seconds > 0 else None,
    }
    if stopper.stopped is not None:
        extra["stop_string"] = stopper.stopped
    if plan.mode == "chat":
        extra["messages"] = [*plan.messages, {"role": "assistant", "content": text}]
        if plan.dropped_turns:
            extra["dropped_turns"] = plan.dropped_turns
    else:
        extra["document"] = plan.document + text
    yield Result(TextOutput(text=text, seed=seed, index=index, extra=extra))


def _options(value: Any) -> TextOptions:
    """The validated Options (the studio passes an instance; a dict is validated here)."""
    if isinstance(value, TextOptions):
        return value
    return TextOptions.model_validate(value or {})


def _adapter_notes(sources: Sequence[AdapterSource], model_ref: str) -> Iterator[Note]:
    """Warn when an adapter says it was trained for another base model."""
    for source in sources:
        base = source.base_model
        if base and not _same_model(base, model_ref):
            yield Note(
                f"adapter {source.ref!r} was trained for {base!r}, not {model_ref!r}; it is "
                "applied anyway (results may be poor, or loading fails if the shapes differ)",
                level="warning",
            )


def _same_model(a: str, b: str) -> bool:
    """Loose comparison of model references: a local copy named like the hub repo matches."""

    def tail(ref: str) -> str:
        return ref.rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1].lower()

    return tail(a) == tail(b)


def _progress_text(index: int, total: int) -> str:
    return "generating" if total == 1 else f"candidate {index + 1} of {total}"


def _looks_like_path(ref: str) -> bool:
    return ref.startswith(("/", "./", "../", "~", ".\\")) or ref.endswith(".safetensors")
