"""From a request to the token ids fed to the model: mode, chat template, history, context check.

Chat history lives in the artifact chain: each chat output stores its reply and the whole
conversation (``extra["messages"]``) in its recipe; a request that continues an artifact
(``request.parent``) gets the chain's recipes (``GenerationRun.parent_recipes``, oldest first) and
the conversation is rebuilt from them. Continuation mode does the same with the running document
(``extra["document"]``).

Only the tokenizer is needed here (no model weights), so a prompt that cannot fit the model's
context is refused before the weights are loaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from studio import InvalidRequest

Message = dict[str, str]

#: Chat format for models without a chat template (base models): a plain transcript.
FALLBACK_ROLES = {"system": "System", "user": "User", "assistant": "Assistant"}


@dataclass
class PromptPlan:
    """What goes into the model, and what the recipe should remember about it."""

    mode: str  # "chat" or "continuation" (auto resolved)
    text: str  # the full prompt text given to the tokenizer
    ids: list[int]
    messages: list[Message] = field(default_factory=list)  # chat: the conversation so far
    document: str = ""  # continuation: the text being continued
    notes: list[str] = field(default_factory=list)  # told to the user (Note events)
    extra_stops: list[str] = field(default_factory=list)  # stops the format itself needs
    dropped_turns: int = 0


def context_length(config: Any, tokenizer: Any) -> int | None:
    """The model's context window in tokens, from its config (else the tokenizer); ``None`` if
    neither says."""
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    for name in ("max_position_embeddings", "n_positions", "n_ctx", "seq_length", "max_seq_len"):
        value = getattr(text_config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    value = getattr(tokenizer, "model_max_length", None)
    if isinstance(value, int) and 0 < value < 1_000_000:
        return value
    return None


def history_from_recipes(recipes: Sequence[dict[str, Any]]) -> tuple[list[Message], str]:
    """The conversation (messages, oldest first) and the running document of an artifact chain.

    The newest text recipe that stored a whole conversation wins (it already holds the older
    turns); recipes without one (an older studio, a continuation) contribute prompt + reply.
    """
    messages: list[Message] = []
    document = ""
    for recipe in recipes:
        if recipe.get("modality", "text") != "text":
            continue
        extra = recipe.get("extra") or {}
        prompt = str(recipe.get("prompt") or "")
        reply = str(extra.get("reply", extra.get("text", "")) or "")
        stored = extra.get("messages")
        if isinstance(stored, list) and all(_is_message(m) for m in stored):
            messages = [{"role": m["role"], "content": m["content"]} for m in stored]
        else:
            messages.extend(
                [{"role": "user", "content": prompt}, {"role": "assistant", "content": reply}]
            )
        stored_doc = extra.get("document")
        document = stored_doc if isinstance(stored_doc, str) else document + prompt + reply
    return messages, document


def _is_message(value: object) -> bool:
    return (
        isinstance(value, dict)
        and isinstance(value.get("role"), str)
        and isinstance(value.get("content"), str)
    )


def resolve_mode(mode: str, tokenizer: Any) -> str:
    """``auto`` becomes ``chat`` when the tokenizer has a chat template, else ``continuation``."""
    if mode != "auto":
        return mode
    return "chat" if getattr(tokenizer, "chat_template", None) else "continuation"


def build_prompt(
    tokenizer: Any,
    *,
    mode: str,
    prompt: str,
    system_prompt: str,
    parent_recipes: Sequence[dict[str, Any]],
    max_new_tokens: int,
    context: int | None,
) -> PromptPlan:
    """Format and tokenize the prompt; make it fit ``context`` with ``max_new_tokens`` to spare.

    In chat mode the oldest turns of a long conversation are left out (with a note) until it
    fits. What still does not fit raises :class:`InvalidRequest` saying by how many tokens.
    """
    mode = resolve_mode(mode, tokenizer)
    history, document = history_from_recipes(parent_recipes)
    if mode == "continuation":
        if system_prompt:
            note = "the system prompt applies to chat mode only; continuation ignores it"
        else:
            note = ""
        text = document + prompt
        ids = _encode(tokenizer, text, add_special_tokens=True)
        plan = PromptPlan("continuation", text, ids, document=text, notes=[note] if note else [])
        _check_fits(plan, max_new_tokens, context, what="the prompt")
        return plan

    system = [m for m in history if m["role"] == "system"]
    turns = [m for m in history if m["role"] != "system"]
    if system_prompt:
        system = [{"role": "system", "content": system_prompt}]
    system = system[-1:]
    user = {"role": "user", "content": prompt}
    dropped = 0
    while True:
        messages = [*system, *turns, user]
        plan = _render_chat(tokenizer, messages)
        plan.dropped_turns = dropped
        if not _overflow(plan, max_new_tokens, context) or not turns:
            break
        # Leave out the oldest exchange (a user message and the replies up to the next one).
        cut = 1
        while cut < len(turns) and turns[cut]["role"] != "user":
            cut += 1
        turns = turns[cut:]
        dropped += 1
    if dropped:
        plan.notes.append(
            f"the conversation was too long for the model's context: its {dropped} oldest "
            f"exchange(s) were left out"
        )
    _check_fits(plan, max_new_tokens, context, what="the system prompt and message")
    return plan


def _render_chat(tokenizer: Any, messages: list[Message]) -> PromptPlan:
    """Apply the model's chat template (or the plain transcript fallback) to ``messages``."""
    notes: list[str] = []
    extra_stops: list[str] = []
    if getattr(tokenizer, "chat_template", None):
        try:
            text = _apply_template(tokenizer, messages)
        except Exception as exc:  # a template that refuses a system role (e.g. Gemma's)
            if messages[0]["role"] != "system":
                raise InvalidRequest(f"the model's chat template failed: {exc}") from exc
            merged = [
                {
                    "role": "user",
                    "content": messages[0]["content"] + "\n\n" + messages[1]["content"],
                },
                *messages[2:],
            ]
            text = _apply_template(tokenizer, merged)
            notes.append(
                "the model's chat template has no system role: the system prompt was "
                "put at the start of the first message"
            )
        ids = _encode(tokenizer, text, add_special_tokens=False)
    else:
        lines = [f"{FALLBACK_ROLES.get(m['role'], m['role'])}: {m['content']}" for m in messages]
        text = "\n".join(lines) + f"\n{FALLBACK_ROLES['assistant']}:"
        ids = _encode(tokenizer, text, add_special_tokens=True)
        notes.append(
            "the model has no chat template: a plain 'User:/Assistant:' transcript "
            "was used (an instruct model will follow chat much better)"
        )
        extra_stops.append(f"\n{FALLBACK_ROLES['user']}:")
    return PromptPlan("chat", text, ids, messages=messages, notes=notes, extra_stops=extra_stops)


def _apply_template(tokenizer: Any, messages: list[Message]) -> str:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if not isinstance(text, str):
        raise InvalidRequest("the model's chat template did not produce text")
    return text


def _encode(tokenizer: Any, text: str, *, add_special_tokens: bool) -> list[int]:
    ids = tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"]
    if not ids:
        # An empty prompt for a model without a BOS token: start from its BOS/EOS token.
        start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else None
        start = start if start is not None else tokenizer.eos_token_id
        if start is None:
            raise InvalidRequest("the prompt is empty and the model has no start token")
        ids = [int(start)]
    return [int(i) for i in ids]


def _overflow(plan: PromptPlan, max_new_tokens: int, context: int | None) -> int:
    if context is None:
        return 0
    return max(0, len(plan.ids) + max_new_tokens - context)


def _check_fits(plan: PromptPlan, max_new_tokens: int, context: int | None, what: str) -> None:
    over = _overflow(plan, max_new_tokens, context)
    if not over or context is None:
        return
    n = len(plan.ids)
    room = context - n
    if room >= 1 and over < n:
        fix = f"lower max_new_tokens to at most {room} or shorten {what} by {over} tokens"
    elif room >= 1:
        fix = f"lower max_new_tokens to at most {room}"
    else:
        fix = f"shorten {what} by at least {over} tokens"
    raise InvalidRequest(
        f"{what} ({n} tokens) plus max_new_tokens ({max_new_tokens}) is {n + max_new_tokens} "
        f"tokens, {over} more than the model's context of {context} tokens: {fix}"
    )
