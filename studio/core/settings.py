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
        description="Where models run: auto, cpu, cuda, cuda:N or mps.",
        pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$",
    )
    device_budget_gb: float | None = Field(
        None, gt=0, description="Accelerator memory the model cache may use (default: 85% of it)."
    )
    host_budget_gb: float | None = Field(
        None, gt=0, description="System memory the model cache may use (default: half of RAM)."
    )
    output_dir: Path | None = Field(
        None, description="Where artifacts are saved (default: home/outputs)."
    )
    theme: Literal["system", "light", "dark"] = Field("system", description="Window colours.")
    allow_pickle: list[str] = Field(
        default_factory=list,
        description="Model references whose pickle-based weights (.bin/.ckpt/.pt) may be loaded. "
        "Pickle files can run arbitrary code: allow only models you trust.",
    )
    disabled_plugins: list[str] = Field(
        default_factory=list, description="Plugins not loaded at start (applied on restart)."
    )
    offline: bool = Field(False, description="Never reach the network; use only cached models.")
    cpu_threads: int | None = Field(
        None,
        ge=1,
        le=256,
        description="torch CPU threads (default: cores - 1, to keep the GUI live).",
    )
