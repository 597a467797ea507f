"""Loading text models through the shared cache: tokenizer first, weights after the checks.

The tokenizer and config (:class:`TextModelInfo`) are one small cache entry, so a prompt can be
formatted, counted and refused before any weights load, and a warm run pays nothing for them.
The weights are another entry (kind ``"causal-lm"``), loaded on the worker's device in the
device's dtype (CUDA bfloat16 where supported else float16, CPU float32), with their memory
estimated first and checked against the cache budget.

transformers/torch are imported inside the functions.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio import InvalidRequest, ModelNotFound, quiet_model_loading

from .detok import fast_decoder
from .prompting import context_length

if TYPE_CHECKING:
    from collections.abc import Callable

    from studio import ResolvedModel, RunContext

#: Cache kinds of the two entries (a plugin needing the same weights as a causal LM shares them).
INFO_KIND = "causal-lm-tokenizer"
MODEL_KIND = "causal-lm"

_DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}


@dataclass
class TextModelInfo:
    """What is known about a text model without its weights."""

    tokenizer: Any
    config: Any
    context: int | None
    eos_ids: list[int]
    pad_id: int | None
    decode: Callable[[list[int]], str]
    model_type: str
    #: number of weights, from the safetensors headers (``None``: unknown, e.g. pickle files)
    numel: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def model_folder(resolved: ResolvedModel) -> Path:
    """The transformers folder of a resolved reference (a lone weights file is not enough)."""
    path = resolved.path
    if resolved.source == "file" or not path.is_dir():
        raise InvalidRequest(
            f"model {resolved.ref!r} is a single weights file; a text model must be a folder (or "
            "hub id) in transformers layout: config.json, tokenizer files and *.safetensors"
        )
    if not (path / "config.json").is_file():
        raise InvalidRequest(
            f"model {resolved.ref!r} has no config.json: not a transformers model folder "
            "(text generation needs a causal language model such as GPT-2, Llama, Qwen, SmolLM)"
        )
    return path


def load_info(resolved: ResolvedModel) -> TextModelInfo:
    """Read the config and tokenizer (cheap: no weights); refuse models that are not causal LMs."""
    folder = model_folder(resolved)
    with quiet_model_loading("transformers"):
        return _load_info(resolved, folder)


def _load_info(resolved: ResolvedModel, folder: Path) -> TextModelInfo:
    from transformers import AutoConfig, AutoTokenizer
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    try:
        config = AutoConfig.from_pretrained(folder)
    except ValueError as exc:
        raise InvalidRequest(f"model {resolved.ref!r}: its config cannot be read ({exc})") from exc
    model_type = str(getattr(config, "model_type", "") or "")
    if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise InvalidRequest(
            f"model {resolved.ref!r} is a {model_type or 'unknown'!r} model, not a causal language "
            "model transformers can generate text with (e.g. GPT-2, Llama, Qwen, SmolLM, Phi)"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError) as exc:
        raise ModelNotFound(
            f"model {resolved.ref!r}: its tokenizer cannot be loaded ({exc}); the folder needs "
            "tokenizer.json (or the tokenizer's own files) next to config.json"
        ) from exc
    eos = _eos_ids(folder, config, tokenizer)
    pad = tokenizer.pad_token_id
    if pad is None and eos:
        pad = eos[0]
    return TextModelInfo(
        tokenizer=tokenizer,
        config=config,
        context=context_length(config, tokenizer),
        eos_ids=eos,
        pad_id=pad,
        decode=fast_decoder(tokenizer),
        model_type=model_type,
        numel=count_weights(resolved),
    )


def _eos_ids(folder: Path, config: Any, tokenizer: Any) -> list[int]:
    """Every end-of-sequence id: the generation config's (may be several), the tokenizer's."""
    ids: list[int] = []
    candidates: list[Any] = []
    gen_file = folder / "generation_config.json"
    if gen_file.is_file():
        try:
            candidates.append(json.loads(gen_file.read_text(encoding="utf-8")).get("eos_token_id"))
        except (OSError, ValueError):
            pass
    candidates.append(getattr(config.get_text_config(), "eos_token_id", None))
    candidates.append(tokenizer.eos_token_id)
    for value in candidates:
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, int) and item not in ids:
                ids.append(item)
    return ids


def use_info(ctx: RunContext, resolved: ResolvedModel) -> Any:
    """The cached :class:`TextModelInfo` of ``resolved`` (a context manager, pinned inside)."""
    return ctx.use_model(
        resolved, kind=INFO_KIND, dtype="none", loader=lambda: load_info(resolved), record=False
    )


def pick_dtype(device: str) -> str:
    """CPU float32; CUDA bfloat16 where the GPU has it, else float16; MPS float16."""
    from studio import default_dtype

    return default_dtype(device, prefer="bfloat16")


def count_weights(resolved: ResolvedModel) -> int | None:
    """Number of weights of a model, read from its safetensors headers (no tensor is read)."""
    total = 0
    for f in resolved.weights_files():
        count = _safetensors_numel(f)
        if count is None:
            return None
        total += count
    return total


def estimate_bytes(resolved: ResolvedModel, info: TextModelInfo, dtype: str, tokens: int) -> int:
    """Memory the model needs in ``dtype``: its weights (counted from the safetensors headers,
    else the files' sizes) plus the key/value cache for ``tokens`` tokens."""
    per = _DTYPE_BYTES.get(dtype, 4)
    weights = info.numel * per if info.numel is not None else resolved.estimated_bytes()
    return weights + kv_cache_bytes(info.config, tokens, per)


def kv_cache_bytes(config: Any, tokens: int, per: int) -> int:
    """Bytes of the key/value cache of ``tokens`` tokens (0 when the config does not say)."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    layers = getattr(text, "num_hidden_layers", None) or getattr(text, "n_layer", None)
    heads = getattr(text, "num_attention_heads", None) or getattr(text, "n_head", None)
    hidden = getattr(text, "hidden_size", None) or getattr(text, "n_embd", None)
    if not (layers and heads and hidden):
        return 0
    kv_heads = getattr(text, "num_key_value_heads", None) or heads
    head_dim = getattr(text, "head_dim", None) or hidden // heads
    return int(2 * layers * kv_heads * head_dim * tokens * per)


def _safetensors_numel(path: Path) -> int | None:
    """Number of weights in a safetensors file, from its JSON header (no tensor is read)."""
    if path.suffix != ".safetensors":
        return None
    try:
        with open(path, "rb") as fh:
            (size,) = struct.unpack("<Q", fh.read(8))
            if size > 100_000_000:
                return None
            header = json.loads(fh.read(size))
    except (OSError, ValueError, struct.error):
        return None
    total = 0
    for name, entry in header.items():
        if name == "__metadata__" or not isinstance(entry, dict):
            continue
        count = 1
        for dim in entry.get("shape", []):
            count *= int(dim)
        total += count
    return total


def check_memory(ctx: RunContext, resolved: ResolvedModel, needed: int, dtype: str) -> str | None:
    """Compare ``needed`` bytes with the cache budget and the device; return a warning or raise.

    More than the device's whole memory is refused (it cannot load); more than the cache budget
    allows right now proceeds with a warning (other models make way, or the load may fail).
    """
    from studio import device_memory_total, host_memory_total, human_size, is_host

    device = ctx.device
    host = is_host(device)
    total = host_memory_total() if host else device_memory_total(device)
    size = human_size(needed)
    if total is not None and needed > total:
        raise InvalidRequest(
            f"model {resolved.ref!r} needs about {size} in {dtype} (weights and context), "
            f"more than the {human_size(total)} of {device}: choose a smaller model"
            + (" or run it on the GPU" if host else "")
        )
    if ctx.cache.fits(needed, device):
        return None
    budget = ctx.cache.host_budget if host else ctx.cache.device_budget
    budget_text = human_size(budget) if budget is not None else "unlimited"
    setting = "host_budget_gb" if host else "device_budget_gb"
    return (
        f"model {resolved.ref!r} needs about {size} in {dtype}, more than the model "
        f"cache has free on {device} (budget {budget_text}, part of it held by models in use); "
        f"trying anyway. Raise `{setting}` in the settings if loading fails."
    )


def load_causal_lm(resolved: ResolvedModel, device: str, dtype: str) -> Any:
    """Load the weights with ``AutoModelForCausalLM`` on ``device`` in ``dtype``, for inference."""
    from transformers import AutoModelForCausalLM

    from studio import is_host, torch_dtype

    folder = model_folder(resolved)
    safe = any(f.suffix == ".safetensors" for f in resolved.weights_files())
    kwargs: dict[str, Any] = {"dtype": torch_dtype(dtype)}
    if safe:
        kwargs["use_safetensors"] = True  # never fall back to pickle files next to them
    if not is_host(device):
        kwargs["device_map"] = device  # straight onto the accelerator, no host copy
    try:
        with quiet_model_loading("transformers"):
            model: Any = AutoModelForCausalLM.from_pretrained(folder, **kwargs)
    except ValueError as exc:
        if "trust_remote_code" in str(exc):
            raise InvalidRequest(
                f"model {resolved.ref!r} needs custom code from its repository, which the studio "
                "does not run; choose a model transformers supports natively"
            ) from exc
        raise
    if is_host(device):
        model.to(device)
    model.eval()
    model.requires_grad_(False)
    return model
