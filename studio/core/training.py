"""The trainer contract: fine-tuning (LoRA adapters, small models) as preemptible jobs.

A trainer yields :class:`~studio.core.events.TrainStep` / ``Sample`` / ``Progress`` events and a
final ``Result(AdapterOutput(...))``. Between steps it calls ``ctx.step_boundary()``: that is where
it is cancelled, paused, or lends the device to a waiting generation (the worker runs the
generation right there, then returns). Its full state is saved and restored through
``ctx.checkpoints`` so an interrupted training resumes from its last complete checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic

from pydantic import BaseModel, Field

from studio.core.events import Modality, PluginEvent
from studio.core.generator import OptionsT
from studio.core.options import BaseOptions

if TYPE_CHECKING:
    from studio.core.context import TrainContext


class TrainingRequest(BaseModel):
    """A fine-tuning job as submitted (serialisable; stored with the job).

    ``base_model``: the model to train on; ``None`` takes the trainer's ``default_model``. A
    trainer with ``uses_model = False`` takes none (one given is refused before the job is queued).
    """

    trainer: str
    base_model: str | None = None
    dataset: Path
    name: str = Field(..., min_length=1, max_length=120)
    options: dict[str, Any] = Field(default_factory=dict)


@dataclass
class IngestReport:
    """What a trainer found in a dataset folder, before training starts."""

    usable: list[Path] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # file name -> reason
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.usable)


@dataclass
class TrainingRun(Generic[OptionsT]):
    """What ``Trainer.run`` receives; generic in the options' type like ``GenerationRun``."""

    trainer: str
    #: the model to train on: the user's, else the trainer's ``default_model``; ``None`` for a
    #: trainer with ``uses_model = False`` (it learns from the dataset alone).
    base_model: str | None
    dataset: Path
    name: str
    #: the validated options, an instance of the trainer's ``Options`` class.
    options: OptionsT
    output_dir: Path


class Trainer(Generic[OptionsT]):
    """Base class of every trainer; ``Trainer[MyOptions]`` types ``request.options`` in ``run``.

    Its class attributes are read and checked when the plugin registers it, like a generator's.
    """

    id: ClassVar[str]
    name: ClassVar[str]
    modality: ClassVar[Modality]
    default_model: ClassVar[str | None] = None
    #: the options' pydantic model; the same class as the type parameter, when one is given.
    Options: ClassVar[type[BaseOptions]] = BaseOptions
    description: ClassVar[str] = ""
    #: whether training starts from a base model. ``True``: ``default_model = None`` means the user
    #: names one. ``False`` for a trainer that learns from the dataset alone (a palette, a small
    #: model trained from scratch): it has no ``default_model``, the user names no base model,
    #: ``request.base_model`` is ``None`` and its adapter records none.
    uses_model: ClassVar[bool] = True
    #: modules ``run`` imports; as :attr:`studio.core.generator.Generator.imports`.
    imports: ClassVar[tuple[str, ...]] = ()

    def ingest(self, dataset: Path, options: OptionsT) -> IngestReport:
        """Inspect ``dataset`` (a folder of the artist's files) without loading any model.

        An instance method, called on a fresh instance with the validated options.
        """
        raise NotImplementedError

    def run(self, request: TrainingRun[OptionsT], ctx: TrainContext) -> Iterator[PluginEvent]:
        """Train, calling ``ctx.step_boundary()`` between steps and checkpointing via ctx."""
        raise NotImplementedError
