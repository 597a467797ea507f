"""LoRA adapters: applied for one run on the shared pipeline, then removed without a trace.

Accepted (each as a hub id, a folder or a file; library adapters arrive here as paths, resolved by
the studio):

- a ``.safetensors`` file in the diffusers format (``unet.…lora.down.weight`` / peft-style
  ``lora_A`` keys) or in the kohya format shared by model sites (``lora_unet_…`` / ``lora_te_…``
  keys with ``alpha``) — diffusers converts kohya keys itself;
- a folder holding ``pytorch_lora_weights.safetensors`` (what diffusers' training scripts write)
  or a single ``.safetensors`` file;
- a peft folder (``adapter_config.json`` + ``adapter_model.safetensors``) of a UNet adapter.

Adapters are injected unfused (peft layers beside the base weights) and set with their weights
through ``set_adapters``; ``unload_lora_weights`` afterwards removes the layers, which restores the
base model exactly (the base weights are never modified). Each adapter file's sha256 goes into
the recipe through ``ctx.record_adapter``.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio import InvalidRequest, ModelNotFound, quiet_model_loading

if TYPE_CHECKING:
    from studio import LoraSpec, RunContext

log = logging.getLogger(__name__)

_PREFERRED = ("pytorch_lora_weights.safetensors", "adapter_model.safetensors")


def weights_file(path: Path, ref: str) -> Path:
    """The adapter weights file of a resolved reference (a file, or the one file in a folder)."""
    path = Path(path)
    if path.is_file():
        if path.suffix != ".safetensors":
            raise InvalidRequest(
                f"adapter {ref!r}: {path.name} is not a .safetensors file (pickle-based adapter "
                "files are not loaded)"
            )
        return path
    if not path.is_dir():
        raise ModelNotFound(f"adapter {ref!r} not found at {path}")
    for name in _PREFERRED:
        if (path / name).is_file():
            return path / name
    candidates = sorted(path.glob("*.safetensors"))
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise InvalidRequest(f"adapter {ref!r}: no .safetensors file in {path}")
    raise InvalidRequest(
        f"adapter {ref!r}: several .safetensors files in {path} "
        f"({', '.join(c.name for c in candidates[:5])}); name the file itself"
    )


def _peft_folder_state(file: Path) -> dict[str, Any] | None:
    """A peft folder's UNet adapter as diffusers keys, its alpha/r scale folded into ``lora_B``."""
    config_path = file.parent / "adapter_config.json"
    if file.name != "adapter_model.safetensors" or not config_path.is_file():
        return None
    from safetensors.torch import load_file

    config = json.loads(config_path.read_text(encoding="utf-8"))
    state = load_file(str(file))
    prefix = "base_model.model."
    if not all(k.startswith(prefix) for k in state):
        return None
    rank = float(config.get("r", 1) or 1)
    scale = float(config.get("lora_alpha", rank) or rank) / rank
    out = {}
    for key, value in state.items():
        new = "unet." + key[len(prefix) :]
        if "lora_B" in new and scale != 1.0:
            value = value * scale
        out[new] = value
    return out


def _adapter_names(pipe: Any) -> set[str]:
    try:
        listed = pipe.get_list_adapters()
    except Exception:
        return set()
    return {name for names in listed.values() for name in names}


@contextmanager
def applied_loras(
    pipe: Any, loras: list[LoraSpec], ctx: RunContext, model_ref: str
) -> Iterator[list[str]]:
    """Load ``loras`` into ``pipe`` with their weights for the duration of the block.

    Yields notes for the user. Whatever happens inside (an error, a cancel), the adapters are
    unloaded on the way out, so the shared cached pipeline is the base model again.
    """
    if not loras:
        yield []
        return
    if not hasattr(pipe, "load_lora_weights"):
        raise InvalidRequest(
            f"model {model_ref!r} ({type(pipe).__name__}) does not take LoRA adapters"
        )
    names: list[str] = []
    attempted = False
    notes: list[str] = []
    try:
        for i, spec in enumerate(loras):
            ctx.check_cancelled()
            resolved = ctx.resolve_model(spec.ref)
            file = weights_file(resolved.path, spec.ref)
            name = f"studio_lora_{i}"
            attempted = True
            source: Any = _peft_folder_state(file)
            try:
                with quiet_model_loading(), warnings.catch_warnings():
                    # peft warns when a second adapter joins the first: that is the point here
                    warnings.filterwarnings("ignore", message="Already found a `peft_config`")
                    if source is not None:
                        pipe.load_lora_weights(source, adapter_name=name)
                    else:
                        pipe.load_lora_weights(
                            str(file.parent), weight_name=file.name, adapter_name=name
                        )
            except (ValueError, RuntimeError, KeyError) as exc:
                raise InvalidRequest(
                    f"adapter {spec.ref!r} does not fit model {model_ref!r}: "
                    f"{str(exc).splitlines()[0][:300]}"
                ) from None
            if name not in _adapter_names(pipe):
                raise InvalidRequest(
                    f"adapter {spec.ref!r} has no weights matching model {model_ref!r} "
                    "(is it made for another model family?)"
                )
            names.append(name)
            ctx.record_adapter(spec.ref, spec.weight, file)
        pipe.set_adapters(names, adapter_weights=[spec.weight for spec in loras])
        notes.append(
            "adapters applied: " + ", ".join(f"{spec.ref} x{spec.weight:g}" for spec in loras)
        )
        yield notes
    finally:
        if attempted:
            try:
                pipe.unload_lora_weights()
            except Exception:  # never leave the shared pipeline half-patched silently
                log.exception("unloading LoRA adapters failed; the cached pipeline may be altered")
                raise
