"""What the text trainer learns from: the artist's files checked, tokenized and cut into examples.

* ``.txt`` / ``.md``: prose, lyrics, poems. Each file is tokenized whole (with the model's start
  token, and its end token after the text) and cut into windows of the sequence length; a window
  repeats the last ``overlap`` tokens of the previous one as context, and only its new tokens are
  learnt, so every token is learnt exactly once. Or, ``packed``: all files joined and cut into
  full windows (no padding, no overlap).
* ``.jsonl``: chat examples, one JSON object a line with ``messages`` (``role`` system, user or
  assistant, and ``content``), rendered with the model's chat template (a plain ``User:`` /
  ``Assistant:`` transcript for a model without one, as the text generator does); only the
  assistant turns (with their end-of-turn token) are learnt.

The files are checked by the studio's shared ingest (:func:`studio.ingest_dataset`: UTF-8, not
empty, a JSON object per ``.jsonl`` line); :func:`check_chat_file` adds what chat examples need.
Labels follow transformers' convention: the token ids, with ``-100`` where nothing is learnt.
torch is imported inside the functions.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studio import InvalidRequest

from .prompting import FALLBACK_ROLES

TEXT_SUFFIXES = (".txt", ".md")
CHAT_SUFFIXES = (".jsonl",)
SUFFIXES = TEXT_SUFFIXES + CHAT_SUFFIXES
#: Larger files are refused (a text corpus is rarely more; a mistaken file often is).
MAX_FILE_BYTES = 256 * 10**6
ROLES = ("system", "user", "assistant")
IGNORE = -100


@dataclass(frozen=True)
class Example:
    """One training example: token ids and what is learnt of them."""

    input_ids: tuple[int, ...]
    labels: tuple[int, ...]

    @property
    def targets(self) -> int:
        """Tokens learnt (the first token is never predicted)."""
        return sum(1 for label in self.labels[1:] if label != IGNORE)


@dataclass
class Examples:
    """Examples made from some files, and what the user should know about them."""

    items: list[Example] = field(default_factory=list)
    tokens: int = 0
    notes: list[str] = field(default_factory=list)


# --- checking files (ingest) --------------------------------------------------------------------


def check_chat_file(path: Path) -> str | None:
    """Why a ``.jsonl`` file the shared ingest found usable (UTF-8, a JSON object a line) holds
    no chat example this trainer can learn from, or ``None`` when it does."""
    count = 0
    for number, line in enumerate(read_text(path).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            messages = parse_chat_line(line)
        except ValueError as exc:
            return f"line {number}: {exc}"
        count += bool(messages)
    return None if count else "no chat example in it"


def read_text(path: Path) -> str:
    """A file's text (UTF-8, a byte-order mark dropped, line ends as ``\\n``)."""
    return path.read_bytes().decode("utf-8-sig").replace("\r\n", "\n").replace("\r", "\n")


def parse_chat_line(line: str) -> list[dict[str, str]]:
    """The ``messages`` of one JSON line, checked (``ValueError`` saying what is wrong)."""
    try:
        value = json.loads(line)
    except ValueError as exc:
        raise ValueError(f"not JSON ({exc.args[0] if exc.args else exc})") from None
    messages = value.get("messages") if isinstance(value, dict) else None
    if not isinstance(messages, list) or not messages:
        raise ValueError(
            'no "messages" list (each line: {"messages": [{"role": ..., "content": ...}, ...]})'
        )
    out = []
    for index, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        if role not in ROLES or not isinstance(content, str):
            raise ValueError(
                f"message {index + 1} needs a role ({', '.join(ROLES)}) and a text content"
            )
        out.append({"role": role, "content": content})
    if not any(m["role"] == "assistant" for m in out):
        raise ValueError("no assistant message to learn from")
    return out


# --- text files ---------------------------------------------------------------------------------


def encode_document(tokenizer: Any, text: str, eos_id: int | None) -> list[int]:
    """A whole document's tokens: the model's start token (if it adds one), the text, its end."""
    ids = [int(i) for i in tokenizer(text, add_special_tokens=True)["input_ids"]]
    if eos_id is not None:
        ids.append(int(eos_id))
    return ids


def chunk(ids: Sequence[int], length: int, overlap: int) -> list[Example]:
    """Windows of ``length`` tokens, each repeating ``overlap`` tokens of the previous one as
    context (not learnt again); the last window may be shorter."""
    stride = length - overlap
    out = []
    start = 0
    while True:
        window = tuple(ids[start : start + length])
        if len(window) < 2:
            break
        learnt = 0 if start == 0 else overlap
        labels = (IGNORE,) * learnt + window[learnt:]
        example = Example(window, labels)
        if example.targets:
            out.append(example)
        if start + length >= len(ids):
            break
        start += stride
    return out


def pack(documents: Sequence[Sequence[int]], length: int) -> list[Example]:
    """All documents joined and cut into windows of ``length`` tokens (the last one shorter)."""
    joined = [token for document in documents for token in document]
    out = []
    for start in range(0, len(joined), length):
        window = tuple(joined[start : start + length])
        if len(window) >= 2:
            out.append(Example(window, window))
    return out


# --- chat examples ------------------------------------------------------------------------------


def chat_example(tokenizer: Any, messages: list[dict[str, str]], eos_id: int | None) -> Example:
    """A conversation rendered for the model; only the assistant turns are learnt."""
    if getattr(tokenizer, "chat_template", None):
        text, spans = _render_template(tokenizer, messages)
        special = False
    else:
        text, spans = _render_transcript(messages, getattr(tokenizer, "eos_token", None))
        special = True
    if not getattr(tokenizer, "is_fast", False):
        raise InvalidRequest(
            "chat examples need the model's fast tokenizer (tokenizer.json), to tell which "
            "tokens are the assistant's"
        )
    encoded = tokenizer(text, add_special_tokens=special, return_offsets_mapping=True)
    ids = [int(i) for i in encoded["input_ids"]]
    labels = []
    for token, (start, end) in zip(ids, encoded["offset_mapping"], strict=True):
        learnt = end > start and any(a <= start < b for a, b in spans)
        labels.append(token if learnt else IGNORE)
    del eos_id  # the template (or the transcript) ends each turn itself
    return Example(tuple(ids), tuple(labels))


def _render_template(
    tokenizer: Any, messages: list[dict[str, str]]
) -> tuple[str, list[tuple[int, int]]]:
    """The template's text, and the character spans of the assistant turns in it.

    Each assistant turn is what rendering the conversation up to it adds to rendering what
    came before with the generation prompt (the assistant's header).
    """

    def render(part: list[dict[str, str]], prompt: bool) -> str:
        if not part:
            return ""
        text = tokenizer.apply_chat_template(part, tokenize=False, add_generation_prompt=prompt)
        if not isinstance(text, str):
            raise InvalidRequest("the model's chat template did not produce text")
        return text

    full = render(messages, False)
    spans = []
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before, through = render(messages[:index], True), render(messages[: index + 1], False)
        if not (full.startswith(through) and through.startswith(before)):
            raise InvalidRequest(
                "the model's chat template renders a conversation differently from its "
                "beginning (it rewrites earlier turns), so the assistant turns cannot be told "
                "apart: train on plain text (.txt) instead"
            )
        spans.append((len(before), len(through)))
    return full, spans


def _render_transcript(
    messages: list[dict[str, str]], eos: str | None
) -> tuple[str, list[tuple[int, int]]]:
    """A ``Role: content`` transcript (the text generator's chat format for base models).

    An assistant turn is learnt with the newline after it (where the generator's ``\nUser:``
    stop begins), the last one with the model's end token.
    """
    text = ""
    spans = []
    for index, message in enumerate(messages):
        last = index == len(messages) - 1
        text += ("\n" if index else "") + f"{FALLBACK_ROLES[message['role']]}:"
        start = len(text)
        text += f" {message['content']}"
        if message["role"] == "assistant":
            if last and eos:
                text += eos
            spans.append((start, len(text) + (0 if last else 1)))
    return text, spans


# --- batches ------------------------------------------------------------------------------------


def collate(examples: Sequence[Example], pad_id: int) -> dict[str, Any]:
    """A batch: ids padded on the right, the attention mask, labels with padding not learnt."""
    import torch

    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        n = len(example.input_ids)
        ids[row, :n] = torch.tensor(example.input_ids, dtype=torch.long)
        labels[row, :n] = torch.tensor(example.labels, dtype=torch.long)
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def causal_lm_loss(model: Any, batch: dict[str, Any]) -> tuple[Any, Any]:
    """The mean loss over the learnt tokens of a batch, and how many they are."""
    out = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        labels=batch["labels"],
        use_cache=False,
    )
    return out.loss, (batch["labels"][:, 1:] != IGNORE).sum()
