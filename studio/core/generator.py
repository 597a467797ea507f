"""The generator contract: what a plugin implements to make text, images or audio.

A generator is a class whose metadata lives at class level, so listing plugins imports no model
library. The studio validates a :class:`GenerationRequest` against the generator's ``Options``
before any model work, then calls :meth:`Generator.run` on the device worker thread with a
:class:`GenerationRun` (seed chosen, options validated) and a
:class:`~studio.core.context.RunContext`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, Field

from studio.core.events import Modality, PluginEvent
from studio.core.options import BaseOptions

if TYPE_CHECKING:
    from studio.core.context import RunContext


class LoraSpec(BaseModel):
    """An adapter to apply: a reference (hub id, folder, .safetensors, library name), a weight."""

    ref: str
    weight: float = Field(1.0, ge=-4.0, le=4.0)

    @classmethod
    def parse(cls, text: str) -> LoraSpec:
        """Parse ``REF[:WEIGHT]`` from the command line (a Windows drive letter is no weight)."""
        ref, sep, weight = text.rpartition(":")
        if sep and ref and not ref.endswith(("/", "\\")) and _is_number(weight):
            return cls(ref=ref, weight=float(weight))
        return cls(ref=text, weight=1.0)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class GenerationRequest(BaseModel):
    """What a user asks for; serialisable (stored with the job, replayed by ``regenerate``)."""

    generator: str
    prompt: str = ""
    model: str | None = None
    seed: int | None = Field(None, ge=0, lt=2**32)
    options: dict[str, Any] = Field(default_factory=dict)
    loras: list[LoraSpec] = Field(default_factory=list)
    out_dir: Path | None = None
    #: artifact id this request continues (chat history, a variation); plugins read its recipe.
    parent: str | None = None
    #: only keep outputs with these indices (``regenerate`` of one image of a batch).
    keep_indices: list[int] | None = None


@dataclass
class GenerationRun:
    """What ``Generator.run`` receives: the request with its seed fixed and options validated."""

    generator: str
    prompt: str
    model: str
    seed: int
    options: Any
    loras: list[LoraSpec] = field(default_factory=list)
    #: recipes of the artifact chain this request continues, oldest first (chat history).
    parent_recipes: list[dict[str, Any]] = field(default_factory=list)
    #: the artifact id this request continues (recorded in the recipe, so it replays).
    parent: str | None = None
    #: only these output indices will be kept: a generator may skip making the others.
    keep_indices: list[int] | None = None


class Generator:
    """Base class of every generator. Subclasses set the class attributes and implement ``run``."""

    id: ClassVar[str]
    name: ClassVar[str]
    modality: ClassVar[Modality]
    task: ClassVar[str]
    default_model: ClassVar[str | None] = None
    Options: ClassVar[type[BaseOptions]] = BaseOptions
    description: ClassVar[str] = ""
    #: whether ``--lora`` adapters are understood by this generator.
    supports_lora: ClassVar[bool] = False
    #: whether the prompt may be empty (e.g. unconditional generation).
    prompt_required: ClassVar[bool] = True
    #: modules ``run`` imports (the model library's heavy ones, e.g. ``"diffusers.pipelines"``);
    #: the worker imports them first in a way that keeps the window responsive
    #: (:func:`studio.core.imports.import_model_libraries`).
    imports: ClassVar[tuple[str, ...]] = ()

    def check(self, request: GenerationRun) -> None:
        """Extra validation before any model work (files exist, sizes fit). Raise InvalidRequest.

        Runs on the submitting thread: never load a model here.
        """

    def run(self, request: GenerationRun, ctx: RunContext) -> Iterator[PluginEvent]:
        """Produce the outputs, yielding Progress/Preview/Partial/Note events and Results."""
        raise NotImplementedError
