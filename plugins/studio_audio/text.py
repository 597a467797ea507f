"""Splitting text for speech: VITS speaks best (and uses bounded memory) one sentence at a time."""

from __future__ import annotations

import re

#: Pieces longer than this are split again at commas, then at spaces.
MAX_CHARS = 300

#: Sentence ends: ASCII marks before a space; ideographic full stop, exclamation and question
#: marks (U+3002, U+FF01, U+FF1F) with or without one.
_SENTENCE_END = re.compile("(?<=[.!?])\\s+|(?<=[\u3002\uff01\uff1f])\\s*|\n+")


def _split_long(piece: str, limit: int) -> list[str]:
    if len(piece) <= limit:
        return [piece]
    out: list[str] = []
    current = ""
    # Prefer clause boundaries, fall back to words; a single over-long word stays whole.
    for part in re.split(r"(?<=,)\s+|\s+", piece):
        candidate = f"{current} {part}".strip()
        if current and len(candidate) > limit:
            out.append(current)
            current = part
        else:
            current = candidate
    if current:
        out.append(current)
    return out


def split_sentences(text: str, limit: int = MAX_CHARS) -> list[str]:
    """Sentences of ``text`` (blank pieces dropped), each at most about ``limit`` characters."""
    pieces = [p.strip() for p in _SENTENCE_END.split(text)]
    out: list[str] = []
    for piece in pieces:
        if piece:
            out.extend(_split_long(piece, limit))
    return out
