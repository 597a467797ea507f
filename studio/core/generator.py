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
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, Field

from studio.core.events import Modality, PluginEvent
from studio.core.options import BaseOptions

if TYPE_CHECKING:
    from studio.core.context import RunContext

#: The type of a generator's validated options: ``class MyGen(Generator[MyOptions])`` makes
#: ``request.options`` a ``MyOptions`` for the type checker in ``run`` and ``check``.
OptionsT = TypeVar("OptionsT", bound=BaseOptions)


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
    #: CPU threads torch uses for this run (``None``: the studio's setting). ``regenerate`` sets
    #: the count its recipe recorded, so that CPU float reductions add up as they did.
    threads: int | None = Field(None, ge=1)


@dataclass
class GenerationRun(Generic[OptionsT]):
    """What ``Generator.run`` receives: the request with its seed fixed and options validated.

    Generic in the options' type: a generator declared as ``Generator[MyOptions]`` receives a
    ``GenerationRun[MyOptions]``, whose ``options`` is an instance of its ``Options`` class.
    """

    generator: str
    prompt: str
    #: the model reference to load (``--model`` or the default); ``None`` only for a generator
    #: with ``uses_model = False``.
    model: str | None
    seed: int
    #: the validated options, an instance of the generator's ``Options`` class.
    options: OptionsT
    loras: list[LoraSpec] = field(default_factory=list)
    #: recipes of the artifact chain this request continues, oldest first (chat history).
    parent_recipes: list[dict[str, Any]] = field(default_factory=list)
    #: the artifact id this request continues (recorded in the recipe, so it replays).
    parent: str | None = None
    #: only these output indices will be kept: a generator may skip making the others.
    keep_indices: list[int] | None = None


class Generator(Generic[OptionsT]):
    """Base class of every generator. Subclasses set the class attributes and implement ``run``.

    Parametrise it with the ``Options`` class so that ``request.options`` is typed::

        class Sketch(Generator[SketchOptions]):
            Options = SketchOptions

            def run(self, request: GenerationRun[SketchOptions], ctx: RunContext) -> ...:
                request.options.strokes  # an int, for the type checker too

    A bare ``Generator`` subclass still works (its ``request.options`` is then ``Any``). The
    class attributes are read when the plugin registers the class (checked there: see
    docs/hooks.md); the class is instantiated only to ``check`` and ``run`` a request.
    """

    id: ClassVar[str]
    name: ClassVar[str]
    modality: ClassVar[Modality]
    task: ClassVar[str]
    default_model: ClassVar[str | None] = None
    #: the options' pydantic model; the same class as the type parameter, when one is given.
    Options: ClassVar[type[BaseOptions]] = BaseOptions
    description: ClassVar[str] = ""
    #: whether this generator loads a model. ``False`` (procedural, model-free generators): it must
    #: not set ``default_model``, ``--model`` is refused for it and its ``request.model`` is None.
    #: ``True`` with ``default_model = None``: the user must name a model for every request.
    uses_model: ClassVar[bool] = True
    #: whether ``--lora`` adapters are understood by this generator.
    supports_lora: ClassVar[bool] = False
    #: whether the prompt may be empty (e.g. unconditional generation).
    prompt_required: ClassVar[bool] = True
    #: modules ``run`` imports (the model library's heavy ones, e.g. ``"diffusers.pipelines"``);
    #: the worker imports them first in a way that keeps the window responsive
    #: (:func:`studio.core.imports.import_model_libraries`).
    imports: ClassVar[tuple[str, ...]] = ()

    def check(self, request: GenerationRun[OptionsT]) -> None:
        """Extra validation before any model work (files exist, sizes fit). Raise InvalidRequest.

        An instance method: the studio calls it on a fresh instance (``cls().check(request)``)
        with the prepared request, on the submitting thread, before the job is queued. Never
        load a model here. The default accepts every request.
        """

    def run(self, request: GenerationRun[OptionsT], ctx: RunContext) -> Iterator[PluginEvent]:
        """Produce the outputs, yielding Progress/Preview/Partial/Note events and Results."""
        raise NotImplementedError
