"""Plain records shared by the store, the worker, the CLI and the GUI."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from pathlib import Path
from typing import Any

from studio.core.datasets import DatasetManifest
from studio.core.events import JobState


class Priority(IntEnum):
    """Lower runs first. Training yields the device to anything above it at step boundaries."""

    INTERACTIVE = 0
    BATCH = 1
    TRAINING = 2


class JobKind(StrEnum):
    GENERATE = "generate"
    TRAIN = "train"
    DOWNLOAD = "download"


@dataclass
class JobRecord:
    """A job as stored: ``request`` is the JSON of the submitted request."""

    id: str
    kind: JobKind
    state: JobState
    priority: Priority
    component: str  # generator or trainer id (or the model ref for downloads)
    request: dict[str, Any]
    created: float
    started: float | None = None
    finished: float | None = None
    error: str | None = None
    step: int = 0
    total: int = 0
    position: int = 0  # order among queued jobs of the same priority
    artifact_ids: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": str(self.kind),
            "state": str(self.state),
            "priority": self.priority.name.lower(),
            "component": self.component,
            "request": self.request,
            "created": self.created,
            "started": self.started,
            "finished": self.finished,
            "error": self.error,
            "step": self.step,
            "total": self.total,
            "artifacts": self.artifact_ids,
        }


#: The recipe ``kind`` of a training's sample (a generation's recipe has no ``kind``).
SAMPLE_KIND = "sample"


@dataclass
class ArtifactRecord:
    """A saved output: ``path`` is the main file (PNG, WAV/FLAC, TXT); ``recipe`` its provenance.

    A training's samples are artifacts too (:attr:`is_sample`; their recipe's ``training`` names
    the job, trainer, step and adapter in progress).
    """

    id: str
    job_id: str | None
    path: Path
    modality: str
    generator: str
    model: str | None
    prompt: str
    created: float
    recipe: dict[str, Any]

    @property
    def is_sample(self) -> bool:
        """Whether this is a training's sample (made with an adapter in progress), not a
        generation."""
        return isinstance(self.recipe, dict) and self.recipe.get("kind") == SAMPLE_KIND

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "job_id": self.job_id,
            "path": str(self.path),
            "modality": self.modality,
            "generator": self.generator,
            "model": self.model,
            "prompt": self.prompt,
            "created": self.created,
            "recipe": self.recipe,
        }


@dataclass
class AdapterRecord:
    """A LoRA adapter (or small model) in the studio's adapter library.

    ``base_model`` is the model it was trained on, ``None`` for one made by a trainer that uses
    no model; ``generators`` the ids of the generators it is made for (empty: any that loads its
    base model), as the trainer's :class:`~studio.core.events.AdapterOutput` said.
    """

    id: str
    name: str
    path: Path
    modality: str
    base_model: str | None
    sha256: str | None
    created: float
    job_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    generators: tuple[str, ...] = ()


@dataclass
class ModelEntry:
    """A model the studio knows of: in the hub cache, in the studio library, or in the catalog."""

    ref: str
    source: str  # "hub", "library", "catalog"
    modality: str | None
    size_bytes: int | None
    downloaded: bool
    path: Path | None = None
    revision: str | None = None
    kind: str | None = None  # e.g. "diffusers", "transformers", "safetensors-file"
    licence: str | None = None
    name: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "source": self.source,
            "modality": self.modality,
            "size_bytes": self.size_bytes,
            "downloaded": self.downloaded,
            "path": str(self.path) if self.path else None,
            "revision": self.revision,
            "kind": self.kind,
            "licence": self.licence,
            "name": self.name,
        }


@dataclass
class DatasetRecord:
    """A dataset in the studio's library: a folder of files as a training used them.

    One record per folder and manifest: the same folder with other files is another record (the
    adapters trained on the old files keep pointing at theirs). ``name`` defaults to the folder's
    name; ``manifest`` lists each file (relative path, size, sha256) and ``manifest_sha256`` is
    its hash; ``last_used`` is when a training was last submitted with it.
    """

    id: str
    name: str
    folder: Path
    manifest: DatasetManifest
    created: float
    last_used: float

    @property
    def manifest_sha256(self) -> str:
        return self.manifest.sha256

    @property
    def files(self) -> int:
        return self.manifest.files

    @property
    def bytes(self) -> int:
        return self.manifest.bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "folder": str(self.folder),
            "manifest_sha256": self.manifest_sha256,
            "files": self.files,
            "bytes": self.bytes,
            "created": self.created,
            "last_used": self.last_used,
            "manifest": [
                {"path": e.path, "size": e.size, "sha256": e.sha256} for e in self.manifest.entries
            ],
        }
