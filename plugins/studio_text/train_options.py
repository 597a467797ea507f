"""The text LoRA trainer's Options: every setting of a training, its range and default.

The defaults suit a few thousand lines of the artist's text on a small instruct or base model,
in line with what peers use for LoRA fine-tuning (rank 16, alpha 32, learning rate 2e-4, cosine
schedule with a short warmup, a few epochs).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator

from studio import BaseOptions

Prompt = Annotated[str, Field(min_length=1, max_length=2000)]

#: ``target_modules`` besides a list of names.
AUTO_TARGETS = "auto"
ALL_LINEAR = "all-linear"
_NAMES = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*(\s*,\s*[A-Za-z_][A-Za-z0-9_.]*)*$")


class TextLoraOptions(BaseOptions):
    """Settings of one text LoRA training (validated before any model work)."""

    # -- the adapter -------------------------------------------------------------------------
    rank: int = Field(
        16, ge=1, le=256, description="LoRA rank: the adapter's capacity (8-16 is typical)."
    )
    alpha: int = Field(
        32,
        ge=1,
        le=1024,
        description="LoRA alpha: the adapter's scale is alpha / rank (often twice the rank).",
    )
    dropout: float = Field(
        0.05, ge=0.0, lt=1.0, description="Dropout on the adapter's input while training."
    )
    target_modules: str = Field(
        AUTO_TARGETS,
        min_length=1,
        max_length=500,
        description="Layers that get an adapter: auto (the attention projections of the model's "
        "family), all-linear (every linear layer but the output head), or names separated by "
        "commas (e.g. q_proj,v_proj).",
    )
    # -- the optimisation ----------------------------------------------------------------------
    learning_rate: float = Field(
        2e-4, gt=0.0, le=1.0, description="Peak learning rate (1e-4 to 2e-4 is typical for LoRA)."
    )
    scheduler: Literal["cosine", "linear", "constant"] = Field(
        "cosine", description="How the learning rate falls after the warmup."
    )
    warmup: float = Field(
        0.05,
        ge=0.0,
        le=0.5,
        description="Warmup: the fraction of the steps over which the learning rate rises to "
        "its peak.",
    )
    steps: int = Field(
        0,
        ge=0,
        le=1_000_000,
        description="Optimizer steps to train; 0 trains for `epochs` passes over the text.",
    )
    epochs: float = Field(
        3.0,
        gt=0.0,
        le=1000.0,
        description="Passes over the training text (when steps is 0).",
    )
    batch_size: int = Field(4, ge=1, le=512, description="Examples per step (per process).")
    grad_accumulation: int = Field(
        1,
        ge=1,
        le=1024,
        description="Batches whose gradients add up into one step (a larger effective batch "
        "in the same memory).",
    )
    weight_decay: float = Field(0.0, ge=0.0, le=1.0, description="AdamW weight decay.")
    max_grad_norm: float = Field(
        1.0, ge=0.0, le=1000.0, description="Gradients are clipped to this norm (0: no clipping)."
    )
    seed: int = Field(
        0,
        ge=0,
        lt=2**32,
        description="Seed of the adapter's initial weights, the data order and the split.",
    )
    # -- the data ------------------------------------------------------------------------------
    sequence_length: int = Field(
        512,
        ge=16,
        le=131_072,
        description="Tokens per example (at most the model's context).",
    )
    layout: Literal["chunks", "packed"] = Field(
        "chunks",
        description="Text files: chunks (each file cut into windows that overlap, every token "
        "learnt once with context before it) or packed (all files joined, cut into full "
        "windows: no padding).",
    )
    overlap: int = Field(
        64,
        ge=0,
        le=65_536,
        description="Chunks: tokens each window repeats from the previous one, as context (at "
        "most half the sequence length).",
    )
    validation_fraction: float = Field(
        0.1,
        ge=0.0,
        le=0.5,
        description="Fraction of the files (of the examples, with a single file) held out to "
        "measure the validation loss; 0: none.",
    )
    validation_count: int = Field(
        0,
        ge=0,
        le=100_000,
        description="Hold out this many files (examples, with a single file) instead of the "
        "fraction; 0: use the fraction.",
    )
    # -- during the run ------------------------------------------------------------------------
    validate_every: int = Field(
        50,
        ge=0,
        le=1_000_000,
        description="Steps between validations (0: only before and after training).",
    )
    checkpoint_every: int = Field(
        50,
        ge=1,
        le=1_000_000,
        description="Steps between checkpoints (a stopped training resumes from the last).",
    )
    early_stopping_patience: int = Field(
        0,
        ge=0,
        le=1000,
        description="Stop when this many validations in a row did not improve (0: never).",
    )
    early_stopping_min_delta: float = Field(
        0.0,
        ge=0.0,
        le=10.0,
        description="How much lower the validation loss must be to count as an improvement.",
    )
    export: Literal["last", "best"] = Field(
        "last",
        description="Which weights become the adapter: the last, or those of the lowest "
        "validation loss.",
    )
    sample_prompts: list[Prompt] = Field(
        default_factory=list,
        max_length=8,
        description="Prompts the model writes from every sample_every steps and at the end, so "
        "you see the style arrive (up to 8).",
        json_schema_extra={"widget": "multiline"},
    )
    sample_every: int = Field(
        100, ge=0, le=1_000_000, description="Steps between samples (0: only at the end)."
    )
    sample_max_tokens: int = Field(64, ge=1, le=2048, description="Tokens written per sample.")
    # -- the machine ---------------------------------------------------------------------------
    mixed_precision: Literal["auto", "no", "fp16", "bf16"] = Field(
        "auto",
        description="auto: bf16 on a GPU that has it, else fp16; none on the CPU.",
    )
    gradient_checkpointing: bool = Field(
        False,
        description="Recompute activations in the backward pass: less memory, slower steps.",
    )

    @field_validator("target_modules", mode="after")
    @classmethod
    def _check_targets(cls, value: str) -> str:
        value = value.strip()
        if value in (AUTO_TARGETS, ALL_LINEAR) or _NAMES.match(value):
            return value
        raise ValueError(
            f"{value!r} is not auto, all-linear or module names separated by commas (q_proj,v_proj)"
        )

    def target_list(self) -> list[str] | None:
        """The names given in ``target_modules`` (``None`` for auto or all-linear)."""
        if self.target_modules in (AUTO_TARGETS, ALL_LINEAR):
            return None
        return [name.strip() for name in self.target_modules.split(",") if name.strip()]


#: Options that change only what is shown, not what is learnt: left out of the run's fingerprint
#: (a training resumes with other sample prompts).
COSMETIC_OPTIONS = frozenset({"sample_prompts", "sample_every", "sample_max_tokens"})
