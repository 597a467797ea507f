"""Events: what generators and trainers yield, and what the studio tells its observers.

A generator's ``run`` yields :class:`Progress`, :class:`Preview`, :class:`Partial`, :class:`Note`
and :class:`Result`. A trainer also yields :class:`TrainStep` and :class:`Sample`. The worker wraps
each one in a :class:`JobEvent` (with the job id) and adds :class:`JobStateChanged` and
:class:`ArtifactSaved`, so that an observer (the CLI, the GUI bridge) sees one flat stream.

Payloads are plain Python objects (PIL images, numpy arrays, strings): nothing here imports torch.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, get_args

Modality = Literal["text", "image", "audio"]


class JobState(StrEnum):
    """Life cycle of a job. ``interrupted`` means the process died while it ran."""

    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"

    @property
    def finished(self) -> bool:
        return self in _FINISHED


_FINISHED = {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.INTERRUPTED}


# --- outputs: what a Result carries; the core turns them into artifact files -------------------


@dataclass
class ImageOutput:
    """One generated image (a PIL image). ``seed`` is the seed that produced this very image."""

    image: Any
    seed: int | None = None
    index: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    modality: Modality = "image"


@dataclass
class AudioOutput:
    """Generated audio: float ``samples`` shaped (frames,) or (frames, channels)."""

    samples: Any
    sample_rate: int
    seed: int | None = None
    index: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    modality: Modality = "audio"


@dataclass
class TextOutput:
    """Generated text (a whole candidate)."""

    text: str
    seed: int | None = None
    index: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    modality: Modality = "text"


@dataclass(kw_only=True)
class AdapterOutput:
    """A trained adapter (LoRA) or small model, saved by a trainer in ``path``.

    Every field is passed by keyword. ``base_model`` is the model it was trained on
    (``request.base_model``), ``None`` when the trainer uses none (``uses_model = False``).
    ``generators`` names the ids of the generators it is made for (the plugin's own generator
    that applies a learned palette, say); leave it empty for an adapter that any generator
    loading its base model can take.
    """

    path: Path
    name: str
    modality: Modality
    base_model: str | None = None
    generators: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)


Output = ImageOutput | AudioOutput | TextOutput | AdapterOutput


# --- events yielded by plugins ---------------------------------------------------------------


@dataclass
class Progress:
    """``step`` of ``total`` done (``total`` 0 when unknown)."""

    step: int
    total: int
    message: str = ""


@dataclass
class Preview:
    """An intermediate look at the output: a PIL image, or an audio chunk (numpy) with its rate."""

    data: Any
    step: int = 0
    sample_rate: int | None = None
    index: int = 0


@dataclass
class Partial:
    """A streamed piece of text for candidate ``index``; the pieces join to the final text."""

    text: str
    index: int = 0


@dataclass
class Note:
    """Something the user should know about the run (a truncated prompt, a resampled file)."""

    message: str
    level: Literal["info", "warning"] = "info"


@dataclass
class Result:
    """A finished output; the core writes it as an artifact with its recipe."""

    output: Output


@dataclass
class TrainStep:
    """One optimisation step of a trainer."""

    step: int
    total: int
    loss: float
    lr: float | None = None
    validation_loss: float | None = None


@dataclass
class Sample:
    """A sample produced during training (an image, text or audio) at ``step``."""

    step: int
    output: ImageOutput | AudioOutput | TextOutput


#: What a plugin's ``run`` may yield: the one list of plugin event kinds (the worker refuses
#: anything else; :data:`PLUGIN_EVENT_TYPES` is this list as a tuple of classes).
PluginEvent = Progress | Preview | Partial | Note | Result | TrainStep | Sample


# --- events added by the core ---------------------------------------------------------------


@dataclass
class JobStateChanged:
    state: JobState
    error: str | None = None


@dataclass
class ArtifactSaved:
    """An artifact was written: ``path`` is the main file, ``recipe`` its provenance."""

    artifact_id: str
    path: Path
    modality: Modality
    recipe: dict[str, Any]


#: What the core adds to a job's stream (:data:`CORE_EVENT_TYPES` as a tuple of classes).
CoreEvent = JobStateChanged | ArtifactSaved


@dataclass
class JobEvent:
    """What observers receive: an event and the job it belongs to."""

    job_id: str
    event: PluginEvent | CoreEvent
    time: float = field(default_factory=time.time)


# --- the kinds, derived from the two unions above: add an event class there and only there -----

#: The classes of :data:`PluginEvent`, for ``isinstance`` checks.
PLUGIN_EVENT_TYPES: tuple[type, ...] = get_args(PluginEvent)
#: The classes of :data:`CoreEvent`.
CORE_EVENT_TYPES: tuple[type, ...] = get_args(CoreEvent)


def kind_of(cls: type) -> str:
    """The stable, lower-case kind of an event class (a key of :data:`EVENT_KINDS`)."""
    return cls.__name__.lower()


#: Every event kind, as stored in the job history (its ``type``), to its class:
#: ``progress``, ``preview``, ``partial``, ``note``, ``result``, ``trainstep``, ``sample``,
#: ``jobstatechanged``, ``artifactsaved``.
EVENT_KINDS: dict[str, type] = {
    kind_of(cls): cls for cls in (*PLUGIN_EVENT_TYPES, *CORE_EVENT_TYPES)
}
#: The kind stored for a failed job's message and traceback: history, not an event class.
ERROR_KIND = "error"


def event_type(event: object) -> str:
    """The kind of an event (used in the job-event table and JSON): :func:`kind_of` its class."""
    return kind_of(type(event))


def stored_payload(event: object) -> dict[str, Any] | None:
    """The JSON payload stored for an event in the job history (``None``: not stored).

    Previews keep only their step (images are large); results and samples keep a summary (the
    artifact itself is stored as an artifact).
    """
    if isinstance(event, Preview):
        return {"step": event.step, "index": event.index}
    if isinstance(event, Result):
        output = event.output
        summary: dict[str, Any] = {"output": type(output).__name__}
        if isinstance(output, AdapterOutput):
            summary.update(path=str(output.path), name=output.name, modality=output.modality)
        else:
            summary.update(index=output.index, seed=output.seed, modality=output.modality)
        return summary
    if isinstance(event, Sample):
        return {"step": event.step, "modality": event.output.modality, "index": event.output.index}
    if isinstance(event, JobStateChanged):
        return {"state": str(event.state), "error": event.error}
    if isinstance(event, ArtifactSaved):
        return {
            "artifact_id": event.artifact_id,
            "path": str(event.path),
            "modality": event.modality,
        }
    if isinstance(event, Progress | Partial | Note | TrainStep):
        return asdict(event)
    return None
