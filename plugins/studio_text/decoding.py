"""Token-by-token generation on the calling thread, with all of ``model.generate``'s preparation.

``model.generate`` is blocking: a streamer can see tokens, but the caller (a Python generator
that must *yield* events between tokens, on the device worker thread) only gets control back at
the end. The usual fix, running ``generate`` on a helper thread, would put model work off the
worker thread. Instead :func:`stream_generate` hands ``generate`` a ``custom_generate`` callable
(transformers runs it after preparing the generation config, logits processors, stopping
criteria, attention mask, position ids and cache) that *returns a Python generator*: the decode
loop of ``GenerationMixin._sample`` for one sequence, yielding each token as it is chosen. The
caller then drives decoding one token at a time on its own thread, decodes and yields between
tokens, and can stop (cancel, stop string) simply by closing the generator.

The loop samples from a dedicated ``torch.Generator`` (seeded per candidate), so a candidate's
tokens depend only on its own seed, never on other work that draws random numbers. With the same
seed in the global RNG, bare ``model.generate(do_sample=True)`` picks the same tokens.

torch is imported inside the functions (never at module import).
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Sampling:
    """What the decode loop needs to know about sampling (from the generator's Options)."""

    max_new_tokens: int
    temperature: float
    top_p: float
    top_k: int
    repetition_penalty: float

    @property
    def do_sample(self) -> bool:
        """Temperature 0 means greedy decoding (always the most likely token)."""
        return self.temperature > 0

    def generate_kwargs(self) -> dict[str, Any]:
        """The matching ``model.generate`` keyword arguments (also used by the benchmark)."""
        kwargs: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens,
            "do_sample": self.do_sample,
            "repetition_penalty": self.repetition_penalty,
        }
        if self.do_sample:
            kwargs.update(temperature=self.temperature, top_p=self.top_p, top_k=self.top_k)
        return kwargs


def stream_generate(
    model: Any,
    input_ids: Any,
    sampling: Sampling,
    *,
    seed: int | None,
    eos_token_id: list[int] | None = None,
    pad_token_id: int | None = None,
) -> Generator[tuple[int, bool], None, None]:
    """Generate for one prompt (``input_ids`` shaped (1, n)), yielding ``(token_id, finished)``.

    ``finished`` is true for the last token (an end-of-sequence token or the length limit).
    Closing the returned iterator early stops generation at once and frees its cache.
    """
    import torch

    rng = None
    if sampling.do_sample:
        rng = torch.Generator(device=input_ids.device)
        rng.manual_seed(int(seed or 0))
    kwargs = sampling.generate_kwargs()
    if eos_token_id is not None:
        kwargs["eos_token_id"] = eos_token_id
    if pad_token_id is not None:
        kwargs["pad_token_id"] = pad_token_id
    steps = model.generate(
        input_ids=input_ids,
        attention_mask=torch.ones_like(input_ids),
        custom_generate=_decode_steps,
        studio_rng=rng,
        **kwargs,
    )
    return steps  # type: ignore[no-any-return]


def _decode_steps(
    model: Any,
    input_ids: Any,
    logits_processor: Any,
    stopping_criteria: Any,
    generation_config: Any,
    synced_gpus: bool = False,
    streamer: Any = None,
    studio_rng: Any = None,
    **model_kwargs: Any,
) -> Iterator[tuple[int, bool]]:
    """The ``custom_generate`` decode loop: ``GenerationMixin._sample`` for one sequence, yielding.

    Called by ``model.generate`` with everything prepared; being a generator function, the call
    returns at once and the loop runs as the caller iterates. Gradients are off around each step
    (``generate``'s own ``no_grad`` ends when it returns the generator), never across a yield.
    """
    import torch

    if input_ids.shape[0] != 1:
        raise ValueError("stream_generate decodes one sequence at a time")
    do_sample = bool(generation_config.do_sample)
    use_cache = model_kwargs.get("use_cache", True)
    model_forward = (
        model.get_compiled_call(generation_config.compile_config)
        if model._valid_auto_compile_criteria(model_kwargs, generation_config)
        else model.__call__
    )
    softmax = torch.nn.functional.softmax
    multinomial = torch.multinomial
    argmax = torch.argmax
    cat = torch.cat
    no_grad = torch.no_grad

    with no_grad():
        outputs = model._prefill(
            input_ids, generation_config, model_kwargs, is_first_iteration=True
        )
    prefill_consumed = False
    with model._optimize_model_for_decode():
        while True:
            with no_grad():
                if prefill_consumed:
                    model_inputs = model.prepare_inputs_for_generation(
                        input_ids, next_sequence_length=1 if use_cache else None, **model_kwargs
                    )
                    outputs = model_forward(**model_inputs, return_dict=True)
                prefill_consumed = True
                model_kwargs = model._update_model_kwargs_for_generation(
                    outputs, model_kwargs, is_encoder_decoder=model.config.is_encoder_decoder
                )
                logits = outputs.logits[:, -1].to(
                    copy=True, dtype=torch.float32, device=input_ids.device
                )
                del outputs
                scores = logits_processor(input_ids, logits)
                if do_sample:
                    next_tokens = multinomial(
                        softmax(scores, dim=-1), num_samples=1, generator=studio_rng
                    ).squeeze(1)
                else:
                    next_tokens = argmax(scores, dim=-1)
                input_ids = cat([input_ids, next_tokens[:, None]], dim=-1)
                finished = stopping_criteria(input_ids, None)
                token = int(next_tokens[0])
                done = bool(finished[0])
            yield token, done
            if done:
                return
