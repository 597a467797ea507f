"""Incremental detokenization and stop strings, for streaming text as tokens are produced.

:class:`IncrementalDecoder` turns token ids into text one token at a time without re-decoding the
whole output: it decodes only a short window of recent tokens and emits what its text gained
(the method of text-generation-inference, with one decode per token instead of two). Text ending
in U+FFFD (an incomplete UTF-8 sequence split over byte tokens) is held back until the next token
completes it, and the window starts a few tokens inside the prompt so that tokenizers which
drop a word's leading space at the start of a decode (SentencePiece) still stream it.

:class:`StopMatcher` cuts the stream at the first stop string and holds back any tail that could
still become one, so streamed pieces never run past a stop string and always join to the final
text.

Pure Python: only the tokenizer's ``decode`` is used.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

#: How many prompt tokens the first decode window includes (context for leading spaces).
PROMPT_CONTEXT_TOKENS = 5

_REPLACEMENT = "\ufffd"


def fast_decoder(tokenizer: object) -> Callable[[list[int]], str]:
    """A ``decode(ids) -> str`` that skips special tokens and does no space clean-up.

    Uses the Rust backend directly for fast tokenizers (it avoids a few microseconds of Python
    wrapping per call, which matters at thousands of tokens per second); other tokenizers go
    through their own ``decode``.
    """
    backend = getattr(tokenizer, "_tokenizer", None)
    if backend is not None and hasattr(backend, "decode") and _backend_matches(tokenizer, backend):

        def decode_backend(ids: list[int]) -> str:
            return str(backend.decode(ids, skip_special_tokens=True))

        return decode_backend

    decode = tokenizer.decode  # type: ignore[attr-defined]

    def decode_python(ids: list[int]) -> str:
        return str(decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False))

    return decode_python


def _backend_matches(tokenizer: object, backend: object) -> bool:
    """The backend decodes like the wrapper (no Python-side post-processing) for a sample."""
    try:
        sample = list(range(min(32, int(getattr(tokenizer, "vocab_size", 0) or 0))))
        wrapped = tokenizer.decode(  # type: ignore[attr-defined]
            sample, skip_special_tokens=True, clean_up_tokenization_spaces=False
        )
        return bool(wrapped == backend.decode(sample, skip_special_tokens=True))  # type: ignore[attr-defined]
    except Exception:
        return False


class IncrementalDecoder:
    """Streams the text of generated tokens; pieces joined equal the decode of all tokens.

    One decode per token: the window ``ids[start:]`` grows by one token per call and the new text
    is the part of its decode beyond what was already emitted from that window. When the window
    grows past ``window`` tokens it restarts (one extra decode) at the end of the previous
    emission: a point where every character before was complete, so no character's bytes are
    split between windows (byte-fallback decoders decode a run of byte tokens as one group).
    The first window starts a few ``prompt_ids`` back, at a clean point too; they are never
    emitted.

    For invalid UTF-8 (a byte sequence no character completes, which only an untrained model
    writes), byte-fallback tokenizers may render earlier bytes differently once later ones
    arrive; the stream then shows what was known when it was emitted.
    """

    def __init__(
        self,
        decode: Callable[[list[int]], str],
        prompt_ids: Sequence[int] = (),
        context: int = PROMPT_CONTEXT_TOKENS,
        window: int = 32,
    ) -> None:
        self._decode = decode
        self._window = max(window, 2)
        self._ids: list[int] = self._clean_context(prompt_ids, context)
        self._emitted = self._decode(self._ids) if self._ids else ""
        self._mark = len(self._ids)  # where the last emission ended (a clean restart point)
        self.generated: list[int] = []

    def _clean_context(self, prompt_ids: Sequence[int], context: int) -> list[int]:
        """The last ``context`` prompt tokens, moved back until no character is cut in two."""
        n = len(prompt_ids)
        if context <= 0 or n == 0:
            return []
        first = max(0, n - context)
        for start in range(first, max(-1, first - 16), -1):
            ids = [int(i) for i in prompt_ids[start:]]
            if _REPLACEMENT not in self._decode(ids):
                return ids
        return []

    def push(self, token: int) -> str:
        """Add one token; return the text that became final (possibly ``""``)."""
        self._ids.append(token)
        self.generated.append(token)
        text = self._decode(self._ids)
        if len(text) <= len(self._emitted) or text.endswith(_REPLACEMENT):
            return ""  # nothing new yet, or an incomplete character: wait for the next token
        piece = text[len(self._emitted) :]
        if len(self._ids) >= self._window and self._mark > 0:
            self._ids = self._ids[self._mark :]
            self._emitted = self._decode(self._ids)
        else:
            self._emitted = text
        self._mark = len(self._ids)
        return piece

    def flush(self) -> str:
        """The text still held back (an incomplete character at the very end, shown as U+FFFD)."""
        text = self._decode(self._ids) if self._ids else ""
        piece = text[len(self._emitted) :] if len(text) > len(self._emitted) else ""
        self._ids = []
        self._emitted = ""
        self._mark = 0
        return piece


class StopMatcher:
    """Cuts streamed text at the first of ``stops``; holds back what may be a stop's beginning."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in stops if s]
        self._longest = max((len(s) for s in self.stops), default=0)
        self._pending = ""
        self.stopped: str | None = None  # the stop string that ended the text

    def push(self, text: str) -> str:
        """Feed streamed text; return what can be shown now (never text after a stop string)."""
        if self.stopped is not None or not text:
            return ""
        if not self.stops:
            return text
        pending = self._pending + text
        cut = -1
        for stop in self.stops:
            at = pending.find(stop)
            if at != -1 and (cut == -1 or at < cut):
                cut, self.stopped = at, stop
        if cut != -1:
            self._pending = ""
            return pending[:cut]
        hold = self._held_tail(pending)
        self._pending = pending[len(pending) - hold :] if hold else ""
        return pending[: len(pending) - hold]

    def flush(self) -> str:
        """At the end of generation: the held-back tail was not a stop string after all."""
        tail, self._pending = self._pending, ""
        return "" if self.stopped is not None else tail

    def _held_tail(self, text: str) -> int:
        """Length of the longest suffix of ``text`` that is a proper prefix of some stop string."""
        for size in range(min(len(text), self._longest - 1), 0, -1):
            suffix = text[-size:]
            if any(stop.startswith(suffix) for stop in self.stops):
                return size
        return 0
