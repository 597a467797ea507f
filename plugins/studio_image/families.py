"""Model families and their defaults (native size, steps, guidance), read from the loaded pipeline.

The native size is the one the pipeline itself falls back to (``sample_size x vae_scale_factor``:
SD 1.x 512, SD 2.x 768, SDXL/SD3 1024); the guidance default is the pipeline's own. Step counts are
25 for ordinary models, and fewer for distilled ones, recognised by their name (Turbo,
Lightning, LCM, Hyper, Schnell): nothing in their weights says they are distilled.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

DEFAULT_STEPS = 25

#: name hint -> (steps, guidance scale or None for the pipeline's default)
_DISTILLED: tuple[tuple[str, int, float | None], ...] = (
    ("lightning", 4, 0.0),
    ("turbo", 4, 0.0),
    ("schnell", 4, 0.0),
    ("hyper", 8, None),
    ("lcm", 6, 1.5),
)


@dataclass(frozen=True)
class ModelDefaults:
    """What ``None`` options resolve to for one model."""

    family: str
    native_size: int
    steps: int
    guidance_scale: float


def family_of(pipe: Any) -> str:
    """A short family name: sd1, sd2, sdxl, sd3, flux, or the pipeline class name."""
    name = type(pipe).__name__
    if name.startswith("StableDiffusionXL"):
        return "sdxl"
    if name.startswith("StableDiffusion3"):
        return "sd3"
    if name.startswith("Flux"):
        return "flux"
    if name.startswith("StableDiffusion"):
        te = getattr(pipe, "text_encoder", None)
        hidden = getattr(getattr(te, "config", None), "hidden_size", None)
        return "sd2" if hidden == 1024 else "sd1"
    return name


def native_size(pipe: Any) -> int:
    """The side the pipeline generates when no size is given."""
    scale = int(getattr(pipe, "vae_scale_factor", 8) or 8)
    sample = getattr(pipe, "default_sample_size", None)
    if not sample:
        for component in ("unet", "transformer"):
            model = getattr(pipe, component, None)
            sample = getattr(getattr(model, "config", None), "sample_size", None)
            if sample:
                break
    if isinstance(sample, (list, tuple)):
        sample = sample[0]
    return int(sample) * scale if sample else 512


def _call_default(pipe: Any, name: str, fallback: float) -> float:
    try:
        param = inspect.signature(pipe.__call__).parameters.get(name)
    except (TypeError, ValueError):
        return fallback
    if param is None or not isinstance(param.default, (int, float)):
        return fallback
    return float(param.default)


def model_defaults(pipe: Any, ref: str) -> ModelDefaults:
    """Defaults for ``pipe`` loaded from reference ``ref`` (its name hints at distillation)."""
    steps, guidance = DEFAULT_STEPS, None
    lowered = ref.lower()
    for hint, hint_steps, hint_guidance in _DISTILLED:
        if hint in lowered:
            steps, guidance = hint_steps, hint_guidance
            break
    if guidance is None:
        guidance = _call_default(pipe, "guidance_scale", 7.5)
    return ModelDefaults(family_of(pipe), native_size(pipe), steps, guidance)


def steps_hint(ref: str) -> int:
    """The default step count from the reference alone (before loading, for early checks)."""
    lowered = ref.lower()
    return next((s for hint, s, _ in _DISTILLED if hint in lowered), DEFAULT_STEPS)
