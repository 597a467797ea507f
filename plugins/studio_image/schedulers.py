"""The curated scheduler ("sampler") list, mapped to diffusers scheduler classes.

Names follow the ones artists know from A1111/ComfyUI. A scheduler is always built fresh for a run
with ``from_config`` from the model's own scheduler configuration (so its training schedule,
timestep spacing and prediction type are kept) plus the few settings that make the named sampler.
``default`` keeps the model's own scheduler class: distilled models (Turbo, LCM, Lightning) ship
the scheduler they need.

Not offered: diffusers' ``DPMSolverSDEScheduler`` ("DPM++ SDE"), whose Brownian noise is seeded
from one config value (random when unset) rather than each image's generator, so an image could
not be regenerated bit for bit. The ``DPM++ 2M SDE`` variants take the per-image generator.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from studio import OptionsError

SchedulerName = Literal[
    "default",
    "Euler",
    "Euler a",
    "Heun",
    "DPM2",
    "DPM2 a",
    "LMS",
    "LMS Karras",
    "DPM++ 2M",
    "DPM++ 2M Karras",
    "DPM++ 2M SDE",
    "DPM++ 2M SDE Karras",
    "DDIM",
    "PNDM",
    "UniPC",
    "DEIS",
    "LCM",
]

_NO_SIGMA_SCHEDULE = {
    "use_karras_sigmas": False,
    "use_exponential_sigmas": False,
    "use_beta_sigmas": False,
}
_KARRAS = {**_NO_SIGMA_SCHEDULE, "use_karras_sigmas": True}

#: name -> (diffusers class name, config overrides)
SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "Euler": ("EulerDiscreteScheduler", {}),
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "Heun": ("HeunDiscreteScheduler", {}),
    "DPM2": ("KDPM2DiscreteScheduler", {}),
    "DPM2 a": ("KDPM2AncestralDiscreteScheduler", {}),
    "LMS": ("LMSDiscreteScheduler", {**_NO_SIGMA_SCHEDULE}),
    "LMS Karras": ("LMSDiscreteScheduler", {**_KARRAS}),
    "DPM++ 2M": (
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "dpmsolver++", "solver_order": 2, **_NO_SIGMA_SCHEDULE},
    ),
    "DPM++ 2M Karras": (
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "dpmsolver++", "solver_order": 2, **_KARRAS},
    ),
    "DPM++ 2M SDE": (
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "sde-dpmsolver++", "solver_order": 2, **_NO_SIGMA_SCHEDULE},
    ),
    "DPM++ 2M SDE Karras": (
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "sde-dpmsolver++", "solver_order": 2, **_KARRAS},
    ),
    "DDIM": ("DDIMScheduler", {}),
    "PNDM": ("PNDMScheduler", {"skip_prk_steps": True}),
    "UniPC": ("UniPCMultistepScheduler", {}),
    "DEIS": ("DEISMultistepScheduler", {}),
    "LCM": ("LCMScheduler", {}),
}


def scheduler_names() -> tuple[str, ...]:
    """Every accepted name, ``default`` first (the Options choices)."""
    return get_args(SchedulerName)


def make_scheduler(name: str, base: Any) -> Any:
    """A fresh scheduler for one run: ``name`` built from ``base``'s configuration.

    ``base`` is the model's own scheduler (left untouched, since the cached pipeline is shared).
    Flow-matching models (SD3, Flux...) only accept ``default``: the curated samplers are for
    noise-prediction models.
    """
    import diffusers

    config = dict(base.config)
    if name == "default":
        return type(base).from_config(config)
    if name not in SCHEDULERS:
        raise OptionsError(
            f"unknown scheduler {name!r}; allowed: {', '.join(scheduler_names())}", "scheduler"
        )
    if type(base).__name__.startswith("FlowMatch"):
        raise OptionsError(
            f"scheduler {name!r} does not apply to this flow-matching model "
            f"({type(base).__name__}); use 'default'",
            "scheduler",
        )
    class_name, overrides = SCHEDULERS[name]
    cls = getattr(diffusers, class_name)
    return cls.from_config(config, **overrides)


def display_name(scheduler: Any) -> str:
    """The curated name that best describes a scheduler instance (for notes and the recipe)."""
    cls = type(scheduler).__name__
    cfg = scheduler.config
    for name, (class_name, overrides) in SCHEDULERS.items():
        if class_name != cls:
            continue
        if all(cfg.get(k, v) == v for k, v in overrides.items() if k != "solver_order"):
            return name
    return cls


def curated_name(scheduler: Any, base: Any) -> str:
    """The curated name that rebuilds ``scheduler`` exactly from ``base``, else ``"default"``.

    Lets the recipe and the A1111 text say "DDIM" or "Euler a" when the model's own scheduler is
    one of the curated ones with nothing changed (replaying that name gives the same run).
    """
    name = display_name(scheduler)
    if name not in SCHEDULERS:
        return "default"
    rebuilt = make_scheduler(name, base)
    same = type(rebuilt) is type(scheduler) and dict(rebuilt.config) == dict(scheduler.config)
    return name if same else "default"
