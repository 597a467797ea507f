"""User settings: one pydantic model, persisted in the studio database, edited by CLI and GUI."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from studio.core.options import BaseOptions


class Settings(BaseOptions):
    """Studio-wide settings. ``None`` budgets mean "derived from the detected totals"."""

    device: str = Field(
        "auto",
        title="Device",
        description="Where models run: auto, cpu, cuda, cuda:N or mps.",
        pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$",
    )
    device_budget_gb: float | None = Field(
        None,
        gt=0,
        title="Accelerator memory budget (GB)",
        description="Accelerator memory the model cache may use (default: 85% of it).",
    )
    host_budget_gb: float | None = Field(
        None,
        gt=0,
        title="System memory budget (GB)",
        description="System memory the model cache may use (default: half of RAM).",
    )
    output_dir: Path | None = Field(
        None,
        title="Output folder",
        description="Where artifacts are saved (default: home/outputs).",
    )
    theme: Literal["system", "light", "dark"] = Field(
        "system", title="Theme", description="Window colours."
    )
    allow_pickle: list[str] = Field(
        default_factory=list,
        title="Allow pickle weights for",
        description="Model references whose pickle-based weights (.bin/.ckpt/.pt) may be loaded. "
        "Pickle files can run arbitrary code: allow only models you trust.",
    )
    disabled_plugins: list[str] = Field(
        default_factory=list,
        title="Disabled plugins",
        description="Plugins not loaded at start (applied on restart).",
    )
    offline: bool = Field(
        False, title="Offline", description="Never reach the network; use only cached models."
    )
    cpu_threads: int | None = Field(
        None,
        title="CPU threads",
        ge=1,
        le=256,
        description="torch CPU threads (default: cores - 1, to keep the GUI live).",
    )
    preferred_generators: dict[str, str] = Field(
        default_factory=dict,
        title="Preferred generators",
        description="Which generator serves a task when several do: task -> generator id (e.g. "
        "text-to-image -> my-plugin.sketch). Without one: built-ins first, then install order.",
    )
