"""LoRA adapters (peft) on a shared, cached causal LM: applied for one run, then removed.

The base model comes from the shared model cache, so adapters must never stay in it: they are
injected (not merged) for the run and :meth:`peft.PeftModel.unload` takes the LoRA layers out
again afterwards, whatever happens, which puts the original modules (and weights, untouched)
back. Several adapters can be active at once (peft sums their contributions); each one's weight
scales its LoRA update (``--lora REF:WEIGHT``).

peft/torch are imported inside the functions.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio import InvalidRequest, ModelNotFound, UnsafeWeightsError, quiet_model_loading

if TYPE_CHECKING:
    from studio import LoraSpec, RunContext

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
PICKLE_WEIGHTS = "adapter_model.bin"


@dataclass(frozen=True)
class AdapterSource:
    """A peft adapter found on disk for one ``--lora`` spec."""

    ref: str
    weight: float
    folder: Path
    weights: Path
    base_model: str | None
    peft_type: str


def find_adapter(ctx: RunContext, spec: LoraSpec) -> AdapterSource:
    """Locate the peft adapter folder a spec names: a folder, its .safetensors file, a hub id.

    Adapters saved by the studio's fine-tuning queue are such folders (the adapter library).
    """
    path = Path(spec.ref).expanduser()
    if path.exists():
        folder = path.parent if path.is_file() else path
    else:
        try:
            resolved = ctx.resolve_model(spec.ref)
        except (ModelNotFound, InvalidRequest) as exc:
            raise ModelNotFound(
                f"adapter {spec.ref!r} not found: give a peft adapter folder (adapter_config.json "
                f"+ adapter_model.safetensors), its .safetensors file, or a hub id ({exc})"
            ) from exc
        folder = resolved.path.parent if resolved.path.is_file() else resolved.path
    config_file = folder / ADAPTER_CONFIG
    if not config_file.is_file():
        raise InvalidRequest(
            f"adapter {spec.ref!r}: {folder} has no {ADAPTER_CONFIG}; text adapters must be peft "
            "adapters (saved with save_pretrained, as the studio's fine-tuning does)"
        )
    weights = folder / ADAPTER_WEIGHTS
    if not weights.is_file():
        if (folder / PICKLE_WEIGHTS).is_file():
            if not ctx.allows_pickle(spec.ref):
                raise UnsafeWeightsError(
                    f"adapter {spec.ref!r} has only pickle-based weights ({PICKLE_WEIGHTS}); "
                    "pickle files can run arbitrary code when loaded. If you trust it, add "
                    f"{spec.ref!r} to the `allow_pickle` setting; better, re-save it as "
                    "safetensors"
                )
            weights = folder / PICKLE_WEIGHTS
        else:
            raise ModelNotFound(f"adapter {spec.ref!r}: {folder} has no {ADAPTER_WEIGHTS}")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidRequest(f"adapter {spec.ref!r}: unreadable {ADAPTER_CONFIG} ({exc})") from exc
    peft_type = str(config.get("peft_type", ""))
    if peft_type.upper() != "LORA":
        raise InvalidRequest(
            f"adapter {spec.ref!r} is a {peft_type or 'unknown'} adapter; only LoRA adapters apply "
            "to text models here"
        )
    return AdapterSource(
        ref=spec.ref,
        weight=float(spec.weight),
        folder=folder,
        weights=weights,
        base_model=config.get("base_model_name_or_path"),
        peft_type=peft_type,
    )


def has_adapters(model: Any) -> bool:
    """Whether peft layers are present in ``model`` (they must never be, outside a run)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    return hasattr(model, "peft_config") or any(
        isinstance(m, BaseTunerLayer) for m in model.modules()
    )


@contextmanager
def applied(model: Any, sources: Sequence[AdapterSource]) -> Iterator[Any]:
    """Inject ``sources`` into ``model`` (in place) for the block; remove them on exit.

    Yields ``model`` itself: its modules now carry the LoRA layers, so ``model.generate`` uses
    them. On exit every LoRA layer is replaced by the original module, unmerged.
    """
    if not sources:
        yield model
        return
    from peft.tuners.lora import LoraLayer

    if has_adapters(model):
        raise RuntimeError(
            "the cached base model already carries adapters (a previous run did not remove them)"
        )
    training = model.training
    peft_model: Any = None
    try:
        names = []
        for i, source in enumerate(sources):
            name = f"studio_{i}"
            try:
                with quiet_model_loading("transformers", "peft"):
                    peft_model = _load(peft_model, model, source, name)
            except (ValueError, RuntimeError, KeyError) as exc:
                raise InvalidRequest(
                    f"adapter {source.ref!r} does not fit this model"
                    + (f" (it was trained for {source.base_model!r})" if source.base_model else "")
                    + f": {exc}"
                ) from exc
            names.append(name)
        assert peft_model is not None
        peft_model.base_model.set_adapter(names)
        for name, source in zip(names, sources, strict=True):
            for module in model.modules():
                if isinstance(module, LoraLayer):
                    layer: Any = module
                    layer.set_scale(name, source.weight)
        model.eval()
        yield model
    finally:
        if peft_model is not None:
            with quiet_model_loading("transformers", "peft"):
                peft_model.unload()
        elif has_adapters(model):  # failed half-way through the first adapter
            _strip(model)
        model.train(training)


def _load(peft_model: Any, model: Any, source: AdapterSource, name: str) -> Any:
    """Inject one adapter: the first wraps ``model`` in a PeftModel, the next ones join it."""
    from peft import PeftModel

    if peft_model is None:
        return PeftModel.from_pretrained(
            model, str(source.folder), adapter_name=name, is_trainable=False
        )
    peft_model.load_adapter(str(source.folder), adapter_name=name, is_trainable=False)
    return peft_model


def _strip(model: Any) -> None:
    """Remove peft layers left by a failed injection (replace each by its base layer)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    while True:
        found = next(
            ((n, m) for n, m in model.named_modules() if isinstance(m, BaseTunerLayer)), None
        )
        if found is None:
            break
        name, module = found
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, module.get_base_layer())
    if hasattr(model, "peft_config"):
        del model.peft_config
