"""Prompts: emphasis syntax, and prompts longer than CLIP's 77-token window, never cut silently.

For the CLIP-based families (SD 1.x/2.x, SDXL) a prompt is split into 75-token chunks (breaking
after a comma near the end of a chunk when there is one, or where the prompt says ``BREAK``); each
chunk is framed with the start/end tokens, encoded on its own, and the encodings are concatenated
along the sequence, the way A1111 does. The emphasis syntax (``(word)`` x1.1, ``[word]`` /1.1,
``(word:1.3)``, ``\\(`` for a literal bracket) scales the token encodings, the overall mean being
kept. A short plain prompt takes the pipeline's own encoding path, so results match diffusers.

For other families the prompt goes to the pipeline as text; when it is longer than the largest
text-encoder window, the dropped words are reported in a :class:`~studio.Note`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

ROUND = 1.1
SQUARE = 1 / 1.1

# one token of the emphasis syntax per match: an escape, a bracket, ":weight)" closing a
# weighted group, a run of ordinary text, or a lone colon
_TOKEN = re.compile(
    r"\\.|:\s*(?P<w>[+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*\)|[()\[\]]|[^\\()\[\]:]+|:|\\",
    re.S,
)
_BREAK = re.compile(r"\s*\bBREAK\b\s*")


@dataclass
class Fragment:
    """A run of prompt text with one weight; ``brk`` marks a BREAK (forced chunk boundary)."""

    text: str
    weight: float = 1.0
    brk: bool = False


def parse_emphasis(text: str) -> list[Fragment]:
    """Split ``text`` into weighted fragments (adjacent fragments of equal weight are merged).

    Unbalanced brackets are forgiving: an unclosed ``(`` still emphasises what follows it, and an
    unmatched ``)`` or ``]`` is kept as text.
    """
    frags: list[Fragment] = []
    opened: list[tuple[str, int]] = []  # (bracket, index of the first fragment inside)

    def scale(start: int, factor: float) -> None:
        for frag in frags[start:]:
            frag.weight *= factor

    def add_text(piece: str) -> None:
        parts = _BREAK.split(piece)
        for i, part in enumerate(parts):
            if i:
                frags.append(Fragment("", brk=True))
            if part:
                frags.append(Fragment(part))

    for m in _TOKEN.finditer(text):
        tok = m.group(0)
        if tok.startswith("\\") and len(tok) == 2:
            frags.append(Fragment(tok[1]))
        elif tok in ("(", "["):
            opened.append((tok, len(frags)))
        elif m.group("w") is not None:
            idx = next((k for k in range(len(opened) - 1, -1, -1) if opened[k][0] == "("), None)
            if idx is None:
                add_text(tok)
                continue
            _, start = opened.pop(idx)
            scale(start, float(m.group("w")))
        elif tok in (")", "]"):
            want = "(" if tok == ")" else "["
            if opened and opened[-1][0] == want:
                _, start = opened.pop()
                scale(start, ROUND if want == "(" else SQUARE)
            else:
                add_text(tok)
        else:
            add_text(tok)
    for bracket, start in opened:
        scale(start, ROUND if bracket == "(" else SQUARE)

    merged: list[Fragment] = []
    for frag in frags:
        if (
            merged
            and not frag.brk
            and not merged[-1].brk
            and abs(merged[-1].weight - frag.weight) < 1e-9
        ):
            merged[-1].text += frag.text
        else:
            merged.append(frag)
    return merged or [Fragment("")]


def is_plain(text: str, frags: list[Fragment]) -> bool:
    """True when the parsed prompt is the text itself at weight 1 (no syntax to honour)."""
    return len(frags) == 1 and not frags[0].brk and frags[0].weight == 1.0 and frags[0].text == text


@dataclass
class Chunks:
    """A tokenized prompt in windows: ``ids``/``weights`` are lists of full-length windows."""

    ids: list[list[int]]
    weights: list[list[float]]
    token_count: int


def chunk_tokens(tokenizer: Any, frags: list[Fragment], *, comma_backtrack: int = 20) -> Chunks:
    """Tokenize fragments into windows of ``model_max_length`` (start + 75 tokens + end + pad)."""
    window = int(tokenizer.model_max_length)
    inner = window - 2
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    comma = tokenizer.get_vocab().get(",</w>")

    chunks: list[tuple[list[int], list[float]]] = []
    cur: list[int] = []
    cur_w: list[float] = []
    total = 0

    def flush() -> None:
        nonlocal cur, cur_w
        chunks.append((cur, cur_w))
        cur, cur_w = [], []

    for frag in frags:
        if frag.brk:
            flush()
            continue
        if not frag.text:
            continue
        ids = tokenizer(
            frag.text, add_special_tokens=False, truncation=False, verbose=False
        ).input_ids
        total += len(ids)
        for tok in ids:
            if len(cur) == inner:
                last_comma = max((i for i, t in enumerate(cur) if t == comma), default=-1)
                if (
                    comma is not None
                    and last_comma >= 0
                    and inner - 1 - last_comma <= comma_backtrack
                ):
                    carry, carry_w = cur[last_comma + 1 :], cur_w[last_comma + 1 :]
                    cur, cur_w = cur[: last_comma + 1], cur_w[: last_comma + 1]
                    flush()
                    cur, cur_w = carry, carry_w
                else:
                    flush()
            cur.append(tok)
            cur_w.append(frag.weight)
    if cur or not chunks:
        flush()

    out_ids, out_w = [], []
    for toks, ws in chunks:
        n_pad = inner - len(toks)
        out_ids.append([bos, *toks, eos] + [pad] * n_pad)
        out_w.append([1.0, *ws, 1.0] + [1.0] * n_pad)
    return Chunks(out_ids, out_w, total)


def token_count(tokenizer: Any, text: str) -> int:
    """Tokens in ``text`` without the start/end tokens."""
    return len(tokenizer(text, add_special_tokens=False, truncation=False, verbose=False).input_ids)


def dropped_text(tokenizer: Any, text: str) -> str:
    """The part of ``text`` a single window of ``tokenizer`` does not see ('' if none)."""
    ids = tokenizer(text, add_special_tokens=False, truncation=False, verbose=False).input_ids
    keep = int(tokenizer.model_max_length) - 2
    if len(ids) <= keep:
        return ""
    return str(tokenizer.decode(ids[keep:])).strip()


# --- encoding --------------------------------------------------------------------------------


def encoding_mode(pipe: Any) -> str | None:
    """``"sd"`` or ``"sdxl"`` when the pipeline's prompts can be chunk-encoded here, else None."""
    name = type(pipe).__name__
    te = getattr(pipe, "text_encoder", None)
    tok = getattr(pipe, "tokenizer", None)
    if te is None or tok is None or type(te).__name__ != "CLIPTextModel":
        return None
    if name.startswith("StableDiffusionXL"):
        te2 = getattr(pipe, "text_encoder_2", None)
        if te2 is not None and getattr(pipe, "tokenizer_2", None) is not None:
            return "sdxl"
        return None
    if name.startswith("StableDiffusion") and not name.startswith("StableDiffusion3"):
        return "sd"
    return None


@dataclass
class PromptPlan:
    """How a prompt pair reaches the pipeline: as text, or as embeddings computed here."""

    kwargs: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    chunks: int = 1
    own_encoding: bool = False


def _final_norm(text_encoder: Any) -> Any:
    inner = getattr(text_encoder, "text_model", text_encoder)
    return inner.final_layer_norm


def _hidden(text_encoder: Any, ids: Any, layer_from_end: int | None, *, final_norm: bool) -> Any:
    """Encoder output: the last layer (with final norm), or hidden_states[-layer_from_end]."""
    import torch

    mask = None
    if getattr(text_encoder.config, "use_attention_mask", False):
        # as the tokenizer marks it: everything up to the first end token, not the padding
        first_end = (ids == text_encoder.config.eos_token_id).int().argmax(dim=1)
        positions = torch.arange(ids.shape[1], device=ids.device)
        mask = (positions[None, :] <= first_end[:, None]).long()
    if layer_from_end is None:
        return text_encoder(ids, attention_mask=mask)[0], None
    out = text_encoder(ids, attention_mask=mask, output_hidden_states=True)
    h = out.hidden_states[-layer_from_end]
    if final_norm:
        h = _final_norm(text_encoder)(h)
    return h, out[0]


def _apply_weights(z: Any, weights: Any) -> Any:
    import torch

    if bool(torch.all(weights == 1.0)):
        return z
    original_mean = z.float().mean()
    z = z * weights.unsqueeze(-1).to(z.dtype)
    new_mean = z.float().mean()
    return z * (original_mean / new_mean).to(z.dtype)


def _encode_sd(pipe: Any, chunks: Chunks, skip: int | None, device: Any) -> Any:
    import torch

    te = pipe.text_encoder
    ids = torch.tensor(chunks.ids, device=device)
    weights = torch.tensor(chunks.weights, device=device)
    # diffusers' clip_skip: hidden_states[-(skip + 1)] then the final layer norm
    z, _ = _hidden(te, ids, None if not skip else skip + 1, final_norm=True)
    z = _apply_weights(z, weights)
    return z.reshape(1, -1, z.shape[-1]).to(te.dtype)


def _encode_sdxl(
    pipe: Any, chunks1: Chunks, chunks2: Chunks, skip: int | None, device: Any
) -> tuple[Any, Any]:
    import torch

    layer = (skip or 0) + 2  # SDXL reads the penultimate layer, without the final norm
    ids1 = torch.tensor(chunks1.ids, device=device)
    ids2 = torch.tensor(chunks2.ids, device=device)
    h1, _ = _hidden(pipe.text_encoder, ids1, layer, final_norm=False)
    h2, pooled = _hidden(pipe.text_encoder_2, ids2, layer, final_norm=False)
    weights = torch.tensor(chunks1.weights, device=device)
    z = _apply_weights(torch.cat([h1, h2], dim=-1), weights)
    dtype = pipe.text_encoder_2.dtype
    return z.reshape(1, -1, z.shape[-1]).to(dtype), pooled[:1].to(dtype)


def _pad_chunks(a: Chunks, b: Chunks, empty: Chunks) -> None:
    """Give both prompts the same number of windows (the shorter gets empty windows)."""
    while len(a.ids) < len(b.ids):
        a.ids.append(list(empty.ids[0]))
        a.weights.append(list(empty.weights[0]))
    while len(b.ids) < len(a.ids):
        b.ids.append(list(empty.ids[0]))
        b.weights.append(list(empty.weights[0]))


def plan_prompts(
    pipe: Any, prompt: str, negative: str, *, weighting: bool, clip_skip: int | None
) -> PromptPlan:
    """Decide how to pass the prompts, and compute embeddings when this module must encode them.

    ``clip_skip`` uses the A1111 convention (1 = no skip). Must run with gradients off (the
    caller wraps it in ``torch.no_grad``), on the thread that runs the pipeline.
    """
    skip = clip_skip - 1 if clip_skip and clip_skip > 1 else None
    mode = encoding_mode(pipe)
    frags_p = parse_emphasis(prompt) if weighting else [Fragment(prompt)]
    frags_n = parse_emphasis(negative) if weighting else [Fragment(negative)]
    syntax = not (is_plain(prompt, frags_p) and is_plain(negative, frags_n))

    if mode is None:
        return _plan_as_text(pipe, prompt, negative, syntax=syntax and weighting, skip=skip)

    tok = pipe.tokenizer
    window = int(tok.model_max_length) - 2
    too_long = token_count(tok, prompt) > window or token_count(tok, negative) > window
    if not (syntax or too_long or skip):
        return PromptPlan({"prompt": prompt, "negative_prompt": negative})

    device = pipe._execution_device
    cp, cn = chunk_tokens(tok, frags_p), chunk_tokens(tok, frags_n)
    empty = chunk_tokens(tok, [Fragment("")])
    _pad_chunks(cp, cn, empty)
    notes = []
    if len(cp.ids) > 1:
        notes.append(
            f"long prompt ({max(cp.token_count, cn.token_count)} tokens) encoded in "
            f"{len(cp.ids)} chunks of {window}"
        )
    if mode == "sd":
        kwargs = {
            "prompt_embeds": _encode_sd(pipe, cp, skip, device),
            "negative_prompt_embeds": _encode_sd(pipe, cn, skip, device),
        }
    else:
        tok2 = pipe.tokenizer_2
        cp2, cn2 = chunk_tokens(tok2, frags_p), chunk_tokens(tok2, frags_n)
        _pad_chunks(cp2, cn2, chunk_tokens(tok2, [Fragment("")]))
        if len(cp2.ids) != len(cp.ids):  # tokenizers disagree (rare): align on the longest
            _align(cp, cp2, empty, chunk_tokens(tok2, [Fragment("")]))
            _align(cn, cn2, empty, chunk_tokens(tok2, [Fragment("")]))
        pe, pooled = _encode_sdxl(pipe, cp, cp2, skip, device)
        if not negative and getattr(pipe.config, "force_zeros_for_empty_prompt", False):
            import torch

            ne, npooled = torch.zeros_like(pe), torch.zeros_like(pooled)
        else:
            ne, npooled = _encode_sdxl(pipe, cn, cn2, skip, device)
        kwargs = {
            "prompt_embeds": pe,
            "negative_prompt_embeds": ne,
            "pooled_prompt_embeds": pooled,
            "negative_pooled_prompt_embeds": npooled,
        }
    return PromptPlan(kwargs, notes, chunks=len(cp.ids), own_encoding=True)


def _align(a: Chunks, b: Chunks, empty_a: Chunks, empty_b: Chunks) -> None:
    while len(a.ids) < len(b.ids):
        a.ids.append(list(empty_a.ids[0]))
        a.weights.append(list(empty_a.weights[0]))
    while len(b.ids) < len(a.ids):
        b.ids.append(list(empty_b.ids[0]))
        b.weights.append(list(empty_b.weights[0]))


def _plan_as_text(
    pipe: Any, prompt: str, negative: str, *, syntax: bool, skip: int | None
) -> PromptPlan:
    """Families encoded by the pipeline itself: report what its tokenizers will not see."""
    import inspect

    notes = []
    tokenizers = [
        t
        for t in (getattr(pipe, n, None) for n in ("tokenizer", "tokenizer_2", "tokenizer_3"))
        if t is not None and hasattr(t, "model_max_length")
    ]
    params = inspect.signature(pipe.__call__).parameters
    if tokenizers:
        # the encoder with the widest window sees the most; what it drops, nobody reads
        widest = max(tokenizers, key=lambda t: min(int(t.model_max_length), 100000))
        limit = int(widest.model_max_length)
        if "max_sequence_length" in params:
            limit = max(limit, int(params["max_sequence_length"].default or 0))
        for label, text in (("prompt", prompt), ("negative prompt", negative)):
            ids = widest(text, add_special_tokens=False, truncation=False, verbose=False).input_ids
            if len(ids) > limit - 2:
                lost = str(widest.decode(ids[limit - 2 :])).strip()
                notes.append(
                    f"{label} is {len(ids)} tokens; this model reads {limit - 2}, so this part is "
                    f"dropped: {lost!r}"
                )
    if syntax:
        notes.append("emphasis syntax is read as plain text by this model family")
    kwargs: dict[str, Any] = {"prompt": prompt}
    if "negative_prompt" in params:
        kwargs["negative_prompt"] = negative
    elif negative:
        notes.append("this model family takes no negative prompt; it is ignored")
    if skip:
        if "clip_skip" in params:
            kwargs["clip_skip"] = skip
        else:
            notes.append("clip skip does not apply to this model family; ignored")
    return PromptPlan(kwargs, notes)
