"""Tiny random-weight causal language models with real tokenizers, built offline.

For tests and benchmarks of text generators: nothing is downloaded. Each factory trains a small
tokenizer on a few sentences (in memory, with the ``tokenizers`` library), builds a model from a
config with random weights, and saves both with ``save_pretrained`` (safetensors) in the
transformers layout, so ``AutoTokenizer`` / ``AutoModelForCausalLM`` load the folder like a
downloaded model. :func:`save_tiny_causal_lm_to_hub` also puts one into a Hugging Face hub cache
folder, to test hub-id resolution offline.

Two styles:

``"gpt2"``
    a GPT-2 model with a byte-level BPE tokenizer (``<|endoftext|>`` as bos/eos/pad) and no chat
    template: a base model for plain continuation.
``"llama"``
    a Llama model with a SentencePiece-like tokenizer (metaspace, byte fallback, ``<s>``/``</s>``)
    and a ChatML chat template (``<|im_start|>`` / ``<|im_end|>``, ``<|im_end|>`` is the eos), like
    the SmolLM2/Qwen instruct models.

torch/transformers/tokenizers/peft are imported inside the functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

Style = Literal["gpt2", "llama"]

#: Sentences the tiny tokenizers are trained on: English with some accents, symbols and emoji so
#: that multi-byte characters span several tokens (what incremental decoding must get right).
CORPUS: tuple[str, ...] = (
    "Once upon a time there was a small studio by the sea.",
    "The painter mixed blue and yellow until the green looked like spring.",
    "A writer continues the story: the door opened, and the wind came in.",
    "Hello world! How are you today? I am fine, thank you.",
    "The quick brown fox jumps over the lazy dog.",
    "Music is the space between the notes, said the old composer.",
    "Café crème, naïve façade, über cool — déjà vu at the smörgåsbord.",
    "Stars ★ and hearts ♥ and arrows → drawn in the margin.",
    "Emoji tell stories too: 🎨 🎵 📖 ✨ 🌊.",
    "Numbers: 1, 2, 3, 42, 1000 and 3.14 are all fine.",
    "User: write me a poem. Assistant: Roses are red, the sea is blue.",
    "system prompt: you are a helpful assistant who answers briefly.",
    "Line one\nLine two\n\nA new paragraph starts here.",
    "END. STOP. The end of the chapter.",
)

#: A ChatML template (the format of SmolLM2/Qwen instruct models) with a default system message.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

_GPT2_SPECIALS = ["<|endoftext|>"]
_LLAMA_SPECIALS = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]


def _train_gpt2_tokenizer(vocab_size: int) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=_GPT2_SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    return tok


def _train_llama_tokenizer(vocab_size: int) -> Any:
    """SentencePiece-like BPE: metaspace words, ``<0xNN>`` byte fallback for unseen characters."""
    import json

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    trained = Tokenizer(models.BPE(unk_token="<unk>"))
    trained.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    trainer = trainers.BpeTrainer(
        vocab_size=max(vocab_size - 256, 64),
        special_tokens=_LLAMA_SPECIALS,
        show_progress=False,
    )
    trained.train_from_iterator(CORPUS, trainer=trainer)
    model = json.loads(trained.to_str())["model"]
    # Rebuild the vocabulary in Llama's order: specials, the 256 byte tokens, then the pieces.
    vocab: dict[str, int] = {}
    for name in _LLAMA_SPECIALS:
        vocab[name] = len(vocab)
    for byte in range(256):
        vocab[f"<0x{byte:02X}>"] = len(vocab)
    for piece, _ in sorted(model["vocab"].items(), key=lambda kv: kv[1]):
        if piece not in vocab:
            vocab[piece] = len(vocab)
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    tok = Tokenizer(
        models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True)
    )
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tok.decoder = decoders.Sequence(
        [
            decoders.Replace("▁", " "),
            decoders.ByteFallback(),
            decoders.Fuse(),
            decoders.Strip(" ", 1, 0),
        ]
    )
    return tok


def tiny_tokenizer(style: Style = "gpt2", vocab_size: int = 512) -> PreTrainedTokenizerBase:
    """A fast tokenizer trained on :data:`CORPUS`, with its special tokens (and chat template)."""
    from tokenizers import AddedToken
    from transformers import PreTrainedTokenizerFast

    if style == "gpt2":
        backend = _train_gpt2_tokenizer(vocab_size)
        return PreTrainedTokenizerFast(
            tokenizer_object=backend,
            bos_token="<|endoftext|>",
            eos_token="<|endoftext|>",
            pad_token="<|endoftext|>",
            unk_token=None,
            model_max_length=1_000_000,
            clean_up_tokenization_spaces=False,
        )
    if style == "llama":
        backend = _train_llama_tokenizer(vocab_size)
        backend.add_special_tokens(
            [AddedToken(t, special=True, normalized=False) for t in _LLAMA_SPECIALS]
        )
        tok = PreTrainedTokenizerFast(
            tokenizer_object=backend,
            bos_token="<s>",
            eos_token="<|im_end|>",
            pad_token="<|im_end|>",
            unk_token="<unk>",
            additional_special_tokens=["<|im_start|>", "</s>"],
            model_max_length=1_000_000,
            clean_up_tokenization_spaces=False,
        )
        tok.chat_template = CHATML_TEMPLATE
        return tok
    raise ValueError(f"unknown style {style!r}; allowed: 'gpt2', 'llama'")


def tiny_causal_lm_config(
    style: Style,
    tokenizer: PreTrainedTokenizerBase,
    *,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 4,
    intermediate_size: int | None = None,
    context_length: int = 128,
) -> Any:
    """A transformers config for a tiny model whose vocabulary matches ``tokenizer``."""
    vocab = len(tokenizer)
    eos = tokenizer.eos_token_id
    if style == "gpt2":
        from transformers import GPT2Config

        return GPT2Config(
            vocab_size=vocab,
            n_positions=context_length,
            n_embd=hidden_size,
            n_layer=num_layers,
            n_head=num_heads,
            n_inner=intermediate_size,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=eos,
            pad_token_id=tokenizer.pad_token_id,
        )
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size or hidden_size * 4,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=max(1, num_heads // 2),
        max_position_embeddings=context_length,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=eos,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )


def make_tiny_causal_lm(
    folder: Path,
    style: Style = "gpt2",
    *,
    seed: int = 0,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 4,
    intermediate_size: int | None = None,
    context_length: int = 128,
    vocab_size: int = 512,
) -> Path:
    """Save a random-weight causal LM and its tokenizer into ``folder``; return ``folder``.

    The same arguments give the same weights (``seed``). The generation config samples nothing
    by itself (plain defaults), so tests control every setting.
    """
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = tiny_tokenizer(style, vocab_size=vocab_size)
    config = tiny_causal_lm_config(
        style,
        tokenizer,
        hidden_size=hidden_size,
        num_layers=num_layers,
        num_heads=num_heads,
        intermediate_size=intermediate_size,
        context_length=context_length,
    )
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config)
    finally:
        torch.random.set_rng_state(state)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def save_tiny_causal_lm_to_hub(
    cache_dir: Path, repo_id: str = "studio-tests/tiny-llama", style: Style = "llama", **kwargs: Any
) -> Path:
    """Build a tiny model (as :func:`make_tiny_causal_lm`) straight into a hub cache folder.

    Returns the snapshot folder; ``repo_id`` then resolves offline when ``HF_HUB_CACHE`` (or the
    resolver's ``cache_dir``) points at ``cache_dir``.
    """
    import tempfile

    from studio.testing.hub import save_to_hub_cache

    with tempfile.TemporaryDirectory(prefix="tiny-lm-") as tmp:
        folder = make_tiny_causal_lm(Path(tmp) / "model", style, **kwargs)
        return save_to_hub_cache(folder, repo_id, Path(cache_dir))


def make_tiny_lora(
    base: Path,
    folder: Path,
    *,
    rank: int = 4,
    alpha: int = 8,
    seed: int = 1,
    target_modules: list[str] | None = None,
) -> Path:
    """Save a peft LoRA adapter for the model in ``base`` into ``folder`` (safetensors).

    Its weights are random (``init_lora_weights=False``), so applying it changes the model's
    outputs, which is what adapter tests need to see.
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM

    base = Path(base)
    folder = Path(folder)
    config = AutoConfig.from_pretrained(base)
    if target_modules is None:
        target_modules = ["c_attn"] if config.model_type == "gpt2" else ["q_proj", "v_proj"]
    model = AutoModelForCausalLM.from_pretrained(base)
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        lora = LoraConfig(
            r=rank,
            lora_alpha=alpha,
            target_modules=target_modules,
            init_lora_weights=False,
            fan_in_fan_out=config.model_type == "gpt2",  # GPT-2 stores Conv1D weights transposed
            task_type="CAUSAL_LM",
        )
        peft_model = get_peft_model(model, lora)
    finally:
        torch.random.set_rng_state(state)
    peft_model.save_pretrained(str(folder), safe_serialization=True)
    return folder


# --- small training corpora ---------------------------------------------------------------------

#: A few lines a tiny model learns quickly when they are repeated (trainer tests).
REPETITIVE_LINES: tuple[str, ...] = (
    "The painter mixed blue and yellow until the green looked like spring.",
    "Once upon a time there was a small studio by the sea.",
    "The quick brown fox jumps over the lazy dog.",
)

#: Chat examples (``messages`` with roles) for trainers of chat data.
CHAT_EXAMPLES: tuple[tuple[tuple[str, str], ...], ...] = (
    (("user", "Hello world!"), ("assistant", "Hello! How are you today?")),
    (("user", "Write me a poem."), ("assistant", "Roses are red, the sea is blue.")),
    (
        ("system", "You answer briefly."),
        ("user", "What is green?"),
        ("assistant", "Spring."),
        ("user", "And blue?"),
        ("assistant", "The sea."),
    ),
)


def write_text_corpus(
    folder: Path, files: int = 3, repeats: int = 8, lines: tuple[str, ...] = REPETITIVE_LINES
) -> Path:
    """Write ``files`` .txt files, each ``lines`` repeated ``repeats`` times; return ``folder``.

    File ``i`` starts at line ``i`` so the files differ; the text is repetitive on purpose, so
    that a tiny model's loss on it falls within a few dozen steps.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(files):
        rotated = lines[index % len(lines) :] + lines[: index % len(lines)]
        text = "\n".join(rotated * repeats) + "\n"
        (folder / f"text-{index + 1}.txt").write_text(text, encoding="utf-8")
    return folder


def write_chat_corpus(folder: Path, name: str = "chats.jsonl", repeats: int = 2) -> Path:
    """Write :data:`CHAT_EXAMPLES` (``repeats`` times) as a .jsonl file of ``messages``; return
    the file."""
    import json

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        json.dumps({"messages": [{"role": r, "content": c} for r, c in example]})
        for example in CHAT_EXAMPLES * repeats
    ]
    path = folder / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
