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
    from studio.core.datasets import DatasetFile, DatasetKind, DatasetManifest, ManifestEntry


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
    """What a trainer found in a dataset folder, before training starts.

    Made by :func:`studio.ingest_dataset` (the one way to read a dataset); a trainer's ``ingest``
    may then refuse more files with :meth:`skip` and add ``notes``. The studio shows it before the
    run starts and records :attr:`manifest` with the job and in its dataset library.
    """

    usable: list[Path] = field(default_factory=list)
    #: path relative to the dataset folder (POSIX) -> why the file is not used
    skipped: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: the dataset folder (absolute); set by ``ingest_dataset`` (and by the studio for a report
    #: made by hand)
    root: Path | None = None
    #: what the shared ingest learnt of each usable file (kind, size, sha256, image size, sample
    #: rate …), by its path relative to ``root``
    files: dict[str, DatasetFile] = field(default_factory=dict)
    _hashed: dict[str, ManifestEntry] = field(default_factory=dict, init=False, repr=False)
    #: the summary notes ``ingest_dataset`` wrote (counts, sizes) and what they were made from:
    #: :meth:`skip` writes them anew, so that they tell the files as they are now
    _summary: tuple[list[str], int, dict[str, DatasetKind]] | None = field(
        default=None, init=False, repr=False
    )

    @property
    def ok(self) -> bool:
        return bool(self.usable)

    @property
    def manifest(self) -> DatasetManifest:
        """The manifest of the usable files: relative path, size and sha256 of each, and its
        own hash (``manifest.sha256``). A usable file ``ingest_dataset`` did not hash (added by
        hand) is hashed here, once."""
        from studio.core.datasets import report_manifest

        return report_manifest(self)

    def skip(self, path: Path | str, reason: str) -> None:
        """Refuse a usable file (your trainer's own check): it leaves ``usable`` (and the
        manifest) for ``skipped`` with ``reason``, and the summary notes of ``ingest_dataset``
        (how many files are usable, how many skipped) are written anew. ``path`` as in
        ``usable``, or relative to ``root``; :class:`ValueError` if it is not usable."""
        from studio.core.datasets import report_skip

        report_skip(self, path, reason)


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
