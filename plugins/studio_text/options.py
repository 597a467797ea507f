"""The text generator's Options: the one place its settings, ranges and defaults are declared."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from studio import BaseOptions

Mode = Literal["auto", "chat", "continuation"]

StopString = Annotated[str, Field(min_length=1, max_length=64)]

_ESCAPES = {"\\n": "\n", "\\t": "\t", "\\r": "\r"}


def unescape(text: str) -> str:
    r"""Turn the two-character escapes ``\n``, ``\t`` and ``\r`` into newline, tab and return.

    Stop strings are typed in shells and one-line fields, where a newline cannot be. Applying it
    twice changes nothing (a stored option validates to itself).
    """
    for escape, char in _ESCAPES.items():
        text = text.replace(escape, char)
    return text


class TextOptions(BaseOptions):
    """Settings of one text generation (validated before any model work)."""

    mode: Mode = Field(
        "auto",
        description="chat: the prompt is a message to the model, formatted with the model's chat "
        "template (multi-turn when continuing an earlier reply); continuation: the model continues "
        "the prompt text as written; auto: chat when the model has a chat template.",
    )
    system_prompt: str = Field(
        "",
        max_length=8000,
        description="Chat mode: instructions for the model (its role, tone, format). Empty keeps "
        "the model's default, or the one of the conversation being continued.",
        json_schema_extra={"widget": "multiline"},
    )
    max_new_tokens: int = Field(
        256, ge=1, le=16384, description="At most this many tokens are generated per candidate."
    )
    temperature: float = Field(
        0.7,
        ge=0.0,
        le=2.0,
        description="Randomness: 0 always picks the most likely token (greedy); higher is more "
        "varied.",
        json_schema_extra={"widget": "slider"},
    )
    top_p: float = Field(
        0.95,
        gt=0.0,
        le=1.0,
        description="Nucleus sampling: sample only among the most likely tokens that together "
        "hold this much probability (1 = all).",
        json_schema_extra={"widget": "slider"},
    )
    top_k: int = Field(
        50, ge=0, le=1000, description="Sample only among the k most likely tokens (0 = no limit)."
    )
    repetition_penalty: float = Field(
        1.0,
        ge=1.0,
        le=2.0,
        description="Discourage repeating tokens already in the text (1 = off; 1.1-1.3 typical).",
    )
    stop: list[StopString] = Field(
        default_factory=list,
        max_length=8,
        description="Stop strings: generation ends before the first one (which is not included). "
        "Up to 8, each 1-64 characters; \\n and \\t are newline and tab.",
    )
    candidates: int = Field(
        1,
        ge=1,
        le=8,
        description="How many alternative texts to generate; candidate i uses seed + i, each is "
        "saved as its own artifact.",
    )

    @field_validator("stop", mode="after")
    @classmethod
    def _unescape_stops(cls, value: list[str]) -> list[str]:
        return [unescape(s) for s in value]
