"""The text plugin's parts without model weights: incremental decoding, stop strings, options,
prompt building and the context check (tokenizers trained in memory, no downloads)."""

from __future__ import annotations

import random
import subprocess
import sys
from typing import cast

import pytest

from studio.core.errors import InvalidRequest, OptionsError
from studio.core.options import validate_options
from studio.testing.models_text import CHATML_TEMPLATE, tiny_tokenizer
from studio_text.detok import IncrementalDecoder, StopMatcher, fast_decoder
from studio_text.options import TextOptions, unescape
from studio_text.prompting import build_prompt, history_from_recipes, resolve_mode

TEXT = "Hello world! Café crème ★ 🎨 naïve 日本語 — the end.\nNew line, 42."


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def tokenizer(request: pytest.FixtureRequest):
    return tiny_tokenizer(request.param)


def _stream(tokenizer, ids, prompt_ids=()):
    detok = IncrementalDecoder(fast_decoder(tokenizer), prompt_ids)
    pieces = [detok.push(i) for i in ids]
    pieces.append(detok.flush())
    return pieces


def _decode(tokenizer, ids):
    return tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)


# --- incremental decoding ----------------------------------------------------------------------


def test_streamed_pieces_join_to_the_text(tokenizer):
    ids = tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    pieces = _stream(tokenizer, ids)
    assert "".join(pieces) == TEXT
    assert "\ufffd" not in "".join(pieces)  # multi-byte characters were never cut in two


def test_multibyte_characters_wait_for_their_last_byte():
    tok = tiny_tokenizer("gpt2")
    ids = tok("🎨", add_special_tokens=False)["input_ids"]
    assert len(ids) > 1, "the emoji spans several byte-level tokens"
    pieces = _stream(tok, ids)
    assert pieces[:-1] == [""] * (len(ids) - 1) + ["🎨"] or "".join(pieces) == "🎨"
    assert all("\ufffd" not in p for p in pieces)


def test_random_byte_level_streams_match_a_full_decode():
    """Byte-level BPE (GPT-2, Llama 3, Qwen, SmolLM): any token sequence, even invalid UTF-8."""
    tok = tiny_tokenizer("gpt2")
    rng = random.Random(7)
    for _ in range(40):
        ids = [rng.randrange(len(tok)) for _ in range(rng.randrange(1, 80))]
        assert "".join(_stream(tok, ids)) == _decode(tok, ids)


def test_random_mixes_of_words_and_byte_fallback_characters(tokenizer):
    """Text a model writes: pieces of words, and characters the vocabulary lacks (byte tokens)."""
    rng = random.Random(3)
    parts = ["Hello", " world", "!", " Café", " ★", "🎨", " 日本語", "\n", " the", " 42", "—", "ü"]
    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in parts]
    for _ in range(40):
        ids = [i for _ in range(rng.randrange(1, 30)) for i in rng.choice(encoded)]
        assert "".join(_stream(tokenizer, ids)) == _decode(tokenizer, ids)


def test_continuation_keeps_the_leading_space_after_the_prompt(tokenizer):
    prompt = tokenizer("Once upon a", add_special_tokens=False)["input_ids"]
    full = tokenizer("Once upon a time there was", add_special_tokens=False)["input_ids"]
    assert full[: len(prompt)] == prompt
    pieces = _stream(tokenizer, full[len(prompt) :], prompt_ids=prompt)
    assert "".join(pieces) == " time there was"


def test_prompt_context_never_splits_a_character(tokenizer):
    """A prompt ending in characters made of byte tokens, continued by more of them."""
    prompt = tokenizer("Say 日本", add_special_tokens=False)["input_ids"]
    full = tokenizer("Say 日本語 ok", add_special_tokens=False)["input_ids"]
    assert full[: len(prompt)] == prompt
    for context in range(1, 8):
        detok = IncrementalDecoder(fast_decoder(tokenizer), prompt, context=context)
        text = "".join(detok.push(i) for i in full[len(prompt) :]) + detok.flush()
        assert text == "語 ok"


def test_long_outputs_do_not_grow_the_decode_window(tokenizer):
    calls: list[int] = []
    decode = fast_decoder(tokenizer)

    def counting(ids: list[int]) -> str:
        calls.append(len(ids))
        return decode(ids)

    ids = tokenizer(TEXT * 8, add_special_tokens=False)["input_ids"]
    detok = IncrementalDecoder(counting, window=32)
    text = "".join(detok.push(i) for i in ids) + detok.flush()
    assert text == TEXT * 8
    assert max(calls) <= 32 + 4  # the window, plus bytes of a character held back
    assert len(calls) < len(ids) * 1.2  # about one decode per token


# --- stop strings -------------------------------------------------------------------------------


def test_stop_string_cuts_the_text_and_is_not_included():
    stop = StopMatcher(["END"])
    pieces = [stop.push(p) for p in ["The st", "ory E", "N", "D and more"]]
    assert "".join(pieces) == "The story "
    assert stop.stopped == "END"
    assert stop.push("later") == "" and stop.flush() == ""


def test_text_that_only_looked_like_a_stop_is_released():
    stop = StopMatcher(["\n\n", "###"])
    shown = [stop.push(p) for p in ["a\n", "b#", "#c"]]
    assert shown == ["a", "\nb", "##c"]
    assert stop.push("tail#") == "tail"
    assert stop.flush() == "#"
    assert stop.stopped is None


def test_earliest_stop_wins():
    stop = StopMatcher(["world", "lo"])
    assert stop.push("hello world") == "hel"
    assert stop.stopped == "lo"


# --- options ------------------------------------------------------------------------------------


def test_options_defaults_and_ranges():
    opts = validate_options(TextOptions, {})
    assert isinstance(opts, TextOptions) and opts.mode == "auto" and opts.candidates == 1
    for field, bad in [
        ("temperature", "2.5"),
        ("top_p", "0"),
        ("top_k", "-1"),
        ("max_new_tokens", "0"),
        ("repetition_penalty", "0.5"),
        ("candidates", "9"),
        ("mode", "poem"),
    ]:
        with pytest.raises(OptionsError) as info:
            validate_options(TextOptions, {field: bad})
        assert info.value.field == field
        assert "allowed" in str(info.value)


def test_stop_strings_from_the_command_line():
    opts = cast(TextOptions, validate_options(TextOptions, {"stop": "\\n\\n,END"}))
    assert opts.stop == ["\n\n", "END"]
    again = cast(TextOptions, validate_options(TextOptions, opts.model_dump(mode="json")))
    assert again.stop == opts.stop  # a stored recipe validates to itself
    with pytest.raises(OptionsError) as info:
        validate_options(TextOptions, {"stop": ["x" * 65]})
    assert info.value.field == "stop"
    with pytest.raises(OptionsError):
        validate_options(TextOptions, {"stop": [f"s{i}" for i in range(9)]})
    assert unescape("a\\tb\\rc") == "a\tb\rc"


# --- prompts, chat and context -----------------------------------------------------------------


def test_auto_mode_follows_the_chat_template():
    assert resolve_mode("auto", tiny_tokenizer("llama")) == "chat"
    assert resolve_mode("auto", tiny_tokenizer("gpt2")) == "continuation"
    assert resolve_mode("continuation", tiny_tokenizer("llama")) == "continuation"


def test_chat_uses_the_models_template_and_system_prompt():
    tok = tiny_tokenizer("llama")
    assert tok.chat_template == CHATML_TEMPLATE
    plan = build_prompt(
        tok,
        mode="chat",
        prompt="Write a haiku",
        system_prompt="You are a poet.",
        parent_recipes=[],
        max_new_tokens=8,
        context=512,
    )
    assert plan.mode == "chat"
    assert plan.text == (
        "<|im_start|>system\nYou are a poet.<|im_end|>\n"
        "<|im_start|>user\nWrite a haiku<|im_end|>\n<|im_start|>assistant\n"
    )
    assert plan.ids == tok(plan.text, add_special_tokens=False)["input_ids"]
    default = build_prompt(
        tok,
        mode="chat",
        prompt="Write a haiku",
        system_prompt="",
        parent_recipes=[],
        max_new_tokens=8,
        context=512,
    )
    assert "You are a helpful assistant." in default.text  # the template's own default


def test_history_is_rebuilt_from_the_parent_recipe():
    tok = tiny_tokenizer("llama")
    parent = {
        "modality": "text",
        "prompt": "Hi",
        "extra": {
            "reply": "Hello!",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"},
            ],
        },
    }
    plan = build_prompt(
        tok,
        mode="chat",
        prompt="And you?",
        system_prompt="",
        parent_recipes=[parent],
        max_new_tokens=8,
        context=512,
    )
    assert [m["role"] for m in plan.messages] == ["system", "user", "assistant", "user"]
    assert plan.messages[0]["content"] == "Be brief."  # inherited system prompt
    assert "<|im_start|>assistant\nHello!<|im_end|>" in plan.text
    replaced = build_prompt(
        tok,
        mode="chat",
        prompt="And you?",
        system_prompt="Be verbose.",
        parent_recipes=[parent],
        max_new_tokens=8,
        context=512,
    )
    assert replaced.messages[0] == {"role": "system", "content": "Be verbose."}


def test_history_without_stored_messages_uses_prompt_and_reply():
    recipes = [
        {"prompt": "one", "extra": {"reply": "1"}},
        {"modality": "image", "prompt": "ignored", "extra": {}},
        {"prompt": "two", "extra": {"reply": "2"}},
    ]
    messages, document = history_from_recipes(recipes)
    assert [m["content"] for m in messages] == ["one", "1", "two", "2"]
    assert document == "one1two2"


def test_continuation_of_a_document():
    tok = tiny_tokenizer("gpt2")
    parent = {"prompt": "Once", "extra": {"reply": " upon", "document": "Once upon"}}
    plan = build_prompt(
        tok,
        mode="auto",
        prompt=" a time",
        system_prompt="",
        parent_recipes=[parent],
        max_new_tokens=4,
        context=128,
    )
    assert plan.mode == "continuation"
    assert plan.text == plan.document == "Once upon a time"


def test_context_overflow_says_by_how_much():
    tok = tiny_tokenizer("gpt2")
    prompt = "The quick brown fox jumps over the lazy dog. " * 6
    n = len(tok(prompt)["input_ids"])
    with pytest.raises(InvalidRequest) as info:
        build_prompt(
            tok,
            mode="continuation",
            prompt=prompt,
            system_prompt="",
            parent_recipes=[],
            max_new_tokens=100,
            context=n + 40,
        )
    message = str(info.value)
    assert f"({n} tokens)" in message and "max_new_tokens (100)" in message
    assert "60 more than the model's context of" in message
    assert "lower max_new_tokens to at most 40" in message


def test_long_conversations_drop_their_oldest_turns():
    tok = tiny_tokenizer("llama")
    messages = []
    for i in range(6):
        messages += [
            {"role": "user", "content": f"question {i} " + "words " * 10},
            {"role": "assistant", "content": f"answer {i} " + "words " * 10},
        ]
    parent = {"prompt": "q", "extra": {"reply": "a", "messages": messages}}
    plan = build_prompt(
        tok,
        mode="chat",
        prompt="last",
        system_prompt="",
        parent_recipes=[parent],
        max_new_tokens=16,
        context=160,
    )
    assert plan.dropped_turns > 0 and plan.notes
    assert len(plan.ids) + 16 <= 160
    assert plan.messages[-1] == {"role": "user", "content": "last"}
    assert "answer 5" in plan.text  # the newest exchange is kept
    with pytest.raises(InvalidRequest, match="more than the model's context"):
        build_prompt(
            tok,
            mode="chat",
            prompt="x " * 200,
            system_prompt="",
            parent_recipes=[parent],
            max_new_tokens=16,
            context=160,
        )


def test_chat_without_a_template_falls_back_to_a_transcript():
    tok = tiny_tokenizer("gpt2")
    plan = build_prompt(
        tok,
        mode="chat",
        prompt="Hi",
        system_prompt="Be kind.",
        parent_recipes=[],
        max_new_tokens=4,
        context=128,
    )
    assert plan.text == "System: Be kind.\nUser: Hi\nAssistant:"
    assert plan.extra_stops == ["\nUser:"] and plan.notes


def test_importing_the_plugin_imports_no_model_library():
    code = (
        "import sys, studio_text; "
        "from studio_text import TextGenerator, TextOptions; "
        "bad = [m for m in ('torch', 'transformers', 'peft', 'tokenizers') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
