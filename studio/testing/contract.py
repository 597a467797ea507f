"""The generator and trainer contracts as test mixins, for built-in and third-party plugins alike.

Subclass :class:`GeneratorContract` in a test module, name the generator, and give it a model
(none for a generator with ``uses_model = False``)::

    from studio.testing import GeneratorContract
    from my_plugin import MyGenerator

    class TestMyGenerator(GeneratorContract):
        generator_cls = MyGenerator
        options = {"steps": 2}            # optional: small settings for a fast run

        @pytest.fixture
        def model_ref(self, tmp_path):    # or a plain class attribute: model_ref = "/path"
            return str(make_tiny_model(tmp_path))

pytest then runs the contract checks on it (they need the testing kit's fixtures, which the
installed ``studio`` pytest plugin provides): class-level metadata, option defaults and rejection of
invalid options, a real run through a :class:`~studio.core.studio.Studio` that yields a result of
the declared modality, determinism (same seed, same output), and cancellation before the start and
during the run.

:class:`TrainerContract` does the same for a trainer, given a small dataset::

    class TestMyTrainer(TrainerContract):
        trainer_cls = MyTrainer
        options = {"steps": 4, "checkpoint_every": 1}

        @pytest.fixture
        def dataset(self, tmp_path):      # a folder of a few usable files
            return make_pictures(tmp_path / "pictures")

It checks the metadata and options, that ``ingest`` skips a bad file with a reason, that a run
yields ``TrainStep`` events and ends with an adapter saved in the studio's library (recording the
base model it was trained on, or none for a trainer with ``uses_model = False``), that a pause
(with a checkpoint of the paused step) and a cancel take effect at a step boundary, and that a run
stopped after a checkpoint and resumed continues exactly as the uninterrupted run.

:func:`run_generator` and :func:`run_trainer` are the helpers the checks use; they are handy in
ordinary tests too.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pytest

from studio.core.errors import Cancelled, OptionsError
from studio.core.events import (
    AdapterOutput,
    ArtifactSaved,
    JobEvent,
    JobState,
    JobStateChanged,
    Partial,
    Preview,
    Progress,
    Result,
    TrainStep,
)
from studio.core.generator import GenerationRequest, Generator, LoraSpec
from studio.core.hookspecs import API_VERSION, hookimpl
from studio.core.options import BaseOptions, FieldSpec, field_specs, validate_options
from studio.core.training import Trainer, TrainingRequest

if TYPE_CHECKING:
    from studio.core.records import AdapterRecord, ArtifactRecord, JobRecord
    from studio.core.studio import Studio

MODALITIES = ("text", "image", "audio")

#: What :class:`TrainerContract` adds to a dataset as a file every trainer must skip, by modality.
BAD_FILES: dict[str, tuple[str, bytes]] = {
    "image": ("broken.png", b"this is no picture, whatever its name says"),
    "audio": ("broken.wav", b"this is no sound, whatever its name says"),
    "text": ("broken.txt", b"\xff\xfe\xfa not UTF-8 \xc3\x28"),
}

__all__ = [
    "BAD_FILES",
    "GeneratorContract",
    "GeneratorRunFailed",
    "RunFailed",
    "TrainerContract",
    "TrainerRunFailed",
    "adapter_content",
    "artifact_content",
    "ensure_registered",
    "invalid_value",
    "registered",
    "run_generator",
    "run_trainer",
]

Component = type[Generator] | type[Trainer]


class RunFailed(AssertionError):
    """A job run by the kit did not succeed (its state and error are in the message)."""


class GeneratorRunFailed(RunFailed):
    """The job of :func:`run_generator` did not succeed."""


class TrainerRunFailed(RunFailed):
    """The job of :func:`run_trainer` did not succeed."""


# --- registering a class for a test ------------------------------------------------------------


class _SingleComponentPlugin:
    """A plugin object contributing one generator or trainer class (to run a class not registered
    yet)."""

    #: the kit is part of the studio: it always speaks the studio's own plugin API
    studio_api = f"=={API_VERSION}"

    def __init__(self, cls: Component) -> None:
        self.cls = cls
        self.__name__ = f"contract-{cls.id}"

    @hookimpl
    def register_generators(self, register: Callable[[type], None]) -> None:
        if issubclass(self.cls, Generator):
            register(self.cls)

    @hookimpl
    def register_trainers(self, register: Callable[[type], None]) -> None:
        if issubclass(self.cls, Trainer):
            register(self.cls)


def ensure_registered(studio: Studio, cls: Component) -> str | None:
    """Register a generator or trainer class in ``studio`` unless it is there; return the plugin
    name added (``None`` if it was known).

    Unregister that plugin (``studio.plugins.unregister(name)``) when done with it, or use
    :func:`registered`.
    """
    table: dict[str, Any] = (
        studio.plugins.trainers if issubclass(cls, Trainer) else studio.plugins.generators
    )
    known = table.get(cls.id)
    if known is cls:
        return None
    if known is not None:
        raise ValueError(f"id {cls.id!r} is already registered for another class ({known})")
    info = studio.plugins.register(_SingleComponentPlugin(cls))
    if info.error:
        studio.plugins.unregister(info.name)
        raise RunFailed(f"could not register {cls.__name__}: {info.error}")
    return info.name


@contextmanager
def registered(studio: Studio, cls: Component) -> Iterator[None]:
    """Keep ``cls`` registered in ``studio`` for the block (a no-op if it already was)."""
    name = ensure_registered(studio, cls)
    try:
        yield
    finally:
        if name is not None:
            studio.plugins.unregister(name)


# --- running jobs -------------------------------------------------------------------------------

OnEvent = Callable[[str, Any], None]


class _Watch:
    """A studio subscriber keeping every job event, calling ``on_event(job_id, event)`` for each
    (on the worker thread, as the event happens: it may cancel or pause the job right there)."""

    def __init__(self, on_event: OnEvent | None = None) -> None:
        self.on_event = on_event
        self._events: list[JobEvent] = []
        self._cond = threading.Condition()

    def __call__(self, event: JobEvent) -> None:
        with self._cond:
            self._events.append(event)
            self._cond.notify_all()
        if self.on_event is not None:
            self.on_event(event.job_id, event.event)

    def of(self, job_id: str) -> list[Any]:
        with self._cond:
            return [e.event for e in self._events if e.job_id == job_id]

    def wait_ends(self, job_id: str, count: int = 1, timeout: float = 5.0) -> None:
        """Wait until the job's ``count``-th end state was delivered (the subscribers run on the
        worker, which may still be delivering when ``Studio.wait`` returns)."""

        def ends() -> int:
            return sum(
                1
                for e in self._events
                if e.job_id == job_id and isinstance(e.event, JobStateChanged)
                if e.event.state.finished
            )

        deadline = time.monotonic() + timeout
        with self._cond:
            while ends() < count and time.monotonic() < deadline:
                self._cond.wait(0.05)


@contextmanager
def _watching(studio: Studio, on_event: OnEvent | None = None) -> Iterator[_Watch]:
    watch = _Watch(on_event)
    unsubscribe = studio.subscribe(watch)
    try:
        yield watch
    finally:
        unsubscribe()


def _wait(studio: Studio, watch: _Watch, job_id: str, timeout: float, ends: int = 1) -> JobRecord:
    record = studio.wait(job_id, timeout=timeout)
    if not record.state.finished:
        studio.cancel(job_id)
        raise RunFailed(f"job {job_id} did not finish within {timeout} s")
    watch.wait_ends(job_id, ends)
    return record


def run_generator(
    generator_cls: type[Generator],
    prompt: str,
    model: str | None,
    options: dict[str, Any] | None,
    seed: int | None,
    studio: Studio,
    *,
    loras: Iterable[LoraSpec | str] = (),
    timeout: float = 300.0,
) -> tuple[list[Any], list[ArtifactRecord]]:
    """Run ``generator_cls`` as a real job of ``studio``; return ``(events, artifacts)``.

    The generator is registered for the call if the studio does not know it yet. ``model`` is
    ``None`` for the generator's default model (and for a generator that uses none). ``events``
    are the job's events in order (the plugin's Progress/Preview/Partial/Note/Result and the
    core's JobStateChanged/ArtifactSaved, unwrapped from :class:`JobEvent`); ``artifacts`` the
    saved artifact records. Raises :class:`GeneratorRunFailed` if the job does not succeed.
    """
    request = GenerationRequest(
        generator=generator_cls.id,
        prompt=prompt,
        model=model,
        seed=seed,
        options=dict(options or {}),
        loras=[LoraSpec.parse(x) if isinstance(x, str) else x for x in loras],
    )
    with registered(studio, generator_cls), _watching(studio) as watch:
        job_id = studio.submit(request)
        record = _wait(studio, watch, job_id, timeout)
    if record.state != JobState.SUCCEEDED:
        raise GeneratorRunFailed(
            f"generator {generator_cls.id!r}: job {job_id} {record.state}: {record.error}"
        )
    artifacts = [studio.artifact(a) for a in record.artifact_ids]
    return watch.of(job_id), artifacts


def run_trainer(
    trainer_cls: type[Trainer],
    dataset: Path,
    studio: Studio,
    *,
    options: dict[str, Any] | None = None,
    name: str = "contract adapter",
    base_model: str | None = None,
    timeout: float = 300.0,
) -> tuple[list[Any], list[AdapterRecord]]:
    """Train ``trainer_cls`` on ``dataset`` as a real job of ``studio``; return
    ``(events, adapters)``.

    ``base_model``: ``None`` takes the trainer's default (and is the only value a trainer with
    ``uses_model = False`` accepts). ``events`` are the job's events in order
    (TrainStep/Sample/Progress/Note/Result and the core's JobStateChanged); ``adapters`` the
    records the job added to the adapter library.
    Raises :class:`TrainerRunFailed` if the job does not succeed.
    """
    request = TrainingRequest(
        trainer=trainer_cls.id,
        base_model=base_model,
        dataset=Path(dataset),
        name=name,
        options=dict(options or {}),
    )
    with registered(studio, trainer_cls), _watching(studio) as watch:
        job_id = studio.submit_training(request)
        record = _wait(studio, watch, job_id, timeout)
    if record.state != JobState.SUCCEEDED:
        raise TrainerRunFailed(
            f"trainer {trainer_cls.id!r}: job {job_id} {record.state}: {record.error}"
        )
    return watch.of(job_id), [a for a in studio.adapters() if a.job_id == job_id]


# --- comparing outputs ------------------------------------------------------------------------


def artifact_content(path: Path, modality: str) -> str:
    """A digest of what an artifact file contains (pixels, samples, text), not of its metadata.

    Two runs with the same recipe differ in their recipe's time stamp; their content must not.
    """
    digest = hashlib.sha256()
    if modality == "image":
        from PIL import Image

        with Image.open(path) as image:
            digest.update(f"{image.mode}{image.size}".encode())
            digest.update(image.tobytes())
    elif modality == "audio":
        import soundfile

        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
        digest.update(f"{rate}{data.shape}".encode())
        digest.update(data.tobytes())
    else:
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()


def adapter_content(path: Path) -> dict[str, str]:
    """What an adapter (a file, or a folder of files) contains: relative name -> sha256.

    A ``.safetensors`` file is digested by its tensors (name, dtype, shape, values) and metadata,
    whatever order its writer put them in (safetensors writes several metadata entries in no
    fixed order); any other file byte for byte.
    """
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    base = path if path.is_dir() else path.parent
    content = {}
    for file in files:
        digest = hashlib.sha256()
        if file.suffix == ".safetensors":
            metadata, tensors = _read_safetensors(file)
            digest.update(json.dumps(metadata, sort_keys=True).encode())
            for name in sorted(tensors):
                dtype, shape, raw = tensors[name]
                digest.update(f"|{name}|{dtype}|{shape}|".encode())
                digest.update(raw)
        else:
            digest.update(file.read_bytes())
        content[file.relative_to(base).as_posix()] = digest.hexdigest()
    return content


#: safetensors dtypes as numpy ones (BF16 is read as its raw 16 bits, then widened).
_SAFETENSORS_DTYPES = {
    "F64": "<f8",
    "F32": "<f4",
    "F16": "<f2",
    "BF16": "<u2",
    "I64": "<i8",
    "I32": "<i4",
    "I16": "<i2",
    "I8": "i1",
    "U8": "u1",
    "BOOL": "?",
}


def _read_safetensors(path: Path) -> tuple[dict[str, str], dict[str, tuple[str, list[int], bytes]]]:
    """``(metadata, {name: (dtype, shape, raw bytes)})`` of a safetensors file, for any dtype
    (read directly: no framework needed, bfloat16 included)."""
    data = Path(path).read_bytes()
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + size])
    metadata = header.pop("__metadata__", None) or {}
    body = data[8 + size :]
    tensors = {
        name: (
            info["dtype"],
            list(info["shape"]),
            body[info["data_offsets"][0] : info["data_offsets"][1]],
        )
        for name, info in header.items()
    }
    return metadata, tensors


def _adapter_tensors(path: Path) -> dict[str, Any]:
    """The tensors of an adapter's ``.safetensors`` files as float64 numpy arrays, by
    ``file:tensor`` name."""
    import numpy as np

    path = Path(path)
    files = sorted(path.rglob("*.safetensors")) if path.is_dir() else [path]
    base = path if path.is_dir() else path.parent
    arrays = {}
    for file in files:
        for name, (dtype, shape, raw) in _read_safetensors(file)[1].items():
            values = np.frombuffer(raw, _SAFETENSORS_DTYPES[dtype])
            if dtype == "BF16":  # the upper half of a float32
                values = (values.astype(np.uint32) << 16).view(np.float32)
            key = f"{file.relative_to(base).as_posix()}:{name}"
            arrays[key] = values.astype(np.float64).reshape(shape)
    return arrays


def invalid_value(spec: FieldSpec) -> Any:
    """A value ``spec`` must reject, or ``None`` when its type allows no sure counter-example."""
    if spec.kind == "choice":
        return "__not_one_of_the_choices__"
    if spec.kind == "bool":
        return "__neither_true_nor_false__"
    if spec.kind in ("int", "float"):
        if spec.minimum is not None:
            return spec.minimum if spec.exclusive_minimum else spec.minimum - 1
        if spec.maximum is not None:
            return spec.maximum if spec.exclusive_maximum else spec.maximum + 1
        return "__not_a_number__"
    return None


# --- checks shared by both contracts -----------------------------------------------------------


def _check_common_metadata(cls: Component, base: Component) -> None:
    for attr in ("id", "name"):
        value = getattr(cls, attr, None)
        assert isinstance(value, str) and value.strip(), f"{attr} must be a non-empty string"
    assert not any(c.isspace() for c in cls.id), f"id {cls.id!r} must have no spaces"
    assert cls.modality in MODALITIES, f"modality {cls.modality!r} not in {MODALITIES}"
    assert cls.default_model is None or isinstance(cls.default_model, str)
    uses_model = getattr(cls, "uses_model", True)
    assert isinstance(uses_model, bool), "uses_model must be True or False"
    if not uses_model:
        kind = "generator" if issubclass(cls, Generator) else "trainer"
        assert cls.default_model is None, f"a {kind} with uses_model = False has no default_model"
    assert isinstance(cls.description, str)
    assert isinstance(cls.imports, tuple), "imports must be a tuple of module names"
    assert cls.run is not base.run, "run() is not implemented"
    assert isinstance(cls.Options, type) and issubclass(cls.Options, BaseOptions), (
        "Options must subclass studio.BaseOptions"
    )
    undocumented = [s.name for s in field_specs(cls.Options) if not s.description.strip()]
    assert not undocumented, f"options without a description: {undocumented}"


def _check_option_defaults(options_cls: type[BaseOptions], base: dict[str, Any]) -> None:
    validate_options(options_cls, base)
    for spec in field_specs(options_cls):
        if spec.required:
            assert spec.name in base, f"required option {spec.name!r}: set it in options"
            continue
        # pydantic does not validate defaults: check each one explicitly
        validate_options(options_cls, {**base, spec.name: spec.default})


def _check_invalid_options(options_cls: type[BaseOptions], base: dict[str, Any]) -> None:
    with pytest.raises(OptionsError) as info:
        validate_options(options_cls, {**base, "no_such_option_xyz": 1})
    assert info.value.field == "no_such_option_xyz"
    assert "no_such_option_xyz" in str(info.value)
    for spec in field_specs(options_cls):
        bad = invalid_value(spec)
        if bad is None:
            continue
        with pytest.raises(OptionsError) as info:
            validate_options(options_cls, {**base, spec.name: bad})
        assert info.value.field == spec.name, f"error does not name {spec.name!r}"
        assert spec.name in str(info.value)


def _fixture_or_attribute(obj: object, request: pytest.FixtureRequest, name: str) -> str | None:
    """The fixture ``name`` if the test class (or a conftest) defines one, else the attribute."""
    try:
        value = request.getfixturevalue(name)
    except pytest.FixtureLookupError:
        value = getattr(obj, name, None)
    return None if value is None else str(value)


# --- the generator contract ------------------------------------------------------------------


class GeneratorContract:
    """Contract checks every generator must pass; subclass it in a test module.

    Set ``generator_cls``; give a model as a ``model_ref`` fixture or class attribute (``None``:
    the generator's default model, which must then be in the offline test hub cache; always
    ``None`` for a generator with ``uses_model = False``); optionally ``options`` (small values
    for a fast run), ``prompt``, ``seed`` and ``timeout``.
    """

    generator_cls: ClassVar[type[Generator]]
    options: ClassVar[dict[str, Any]] = {}
    prompt: ClassVar[str] = "a small red fox in the snow"
    seed: ClassVar[int] = 1234
    timeout: ClassVar[float] = 300.0

    # -- fixtures -------------------------------------------------------------------------
    @pytest.fixture
    def contract_model(self, request: pytest.FixtureRequest) -> str | None:
        """The model to run: the ``model_ref`` fixture if there is one, else the attribute."""
        return _fixture_or_attribute(self, request, "model_ref")

    def _run(self, studio: Studio, model: str | None) -> tuple[list[Any], list[ArtifactRecord]]:
        return run_generator(
            self.generator_cls,
            self.prompt,
            model,
            self.options,
            self.seed,
            studio,
            timeout=self.timeout,
        )

    def _request(self, model: str | None) -> GenerationRequest:
        return GenerationRequest(
            generator=self.generator_cls.id,
            prompt=self.prompt,
            model=model,
            seed=self.seed,
            options=dict(self.options),
        )

    # -- class-level metadata -------------------------------------------------------------
    def test_contract_metadata(self) -> None:
        cls = self.generator_cls
        assert isinstance(cls, type) and issubclass(cls, Generator), "not a studio.Generator"
        _check_common_metadata(cls, Generator)
        task = getattr(cls, "task", None)
        assert isinstance(task, str) and task.strip(), "task must be a non-empty string"
        assert isinstance(cls.supports_lora, bool) and isinstance(cls.prompt_required, bool)
        check = inspect.getattr_static(cls, "check")
        assert not isinstance(check, classmethod | staticmethod), (
            "check(self, request) is an instance method, not a class or static method"
        )

    # -- options --------------------------------------------------------------------------
    def test_contract_option_defaults_validate(self) -> None:
        _check_option_defaults(self.generator_cls.Options, dict(self.options))

    def test_contract_invalid_options_are_rejected(self) -> None:
        _check_invalid_options(self.generator_cls.Options, dict(self.options))

    # -- running --------------------------------------------------------------------------
    def test_contract_run_yields_a_result(
        self, studio_app: Studio, contract_model: str | None
    ) -> None:
        cls = self.generator_cls
        events, artifacts = self._run(studio_app, contract_model)
        results = [e for e in events if isinstance(e, Result)]
        saved = [e for e in events if isinstance(e, ArtifactSaved)]
        assert results or saved, "the run yielded no Result"
        for result in results:
            assert result.output.modality == cls.modality, "Result of the wrong modality"
        assert artifacts, "no artifact was saved"
        for artifact in artifacts:
            assert artifact.modality == cls.modality
            assert Path(artifact.path).is_file()
            assert artifact.recipe["generator"] == cls.id
            assert artifact.recipe["seed"] is not None
            if not getattr(cls, "uses_model", True):
                assert artifact.recipe.get("model") is None, "a model-free run recorded a model"
        for progress in (e for e in events if isinstance(e, Progress)):
            assert progress.step >= 0 and progress.total >= 0
            assert progress.total == 0 or progress.step <= progress.total, progress

    def test_contract_same_seed_same_output(
        self, studio_app: Studio, contract_model: str | None
    ) -> None:
        _, first = self._run(studio_app, contract_model)
        _, second = self._run(studio_app, contract_model)
        assert len(first) == len(second)
        assert [artifact_content(a.path, a.modality) for a in first] == [
            artifact_content(a.path, a.modality) for a in second
        ], "same request and seed gave different outputs"

    def test_contract_cancel_before_start(
        self, studio_app: Studio, contract_model: str | None, tmp_path: Path
    ) -> None:
        """Run with a context cancelled already: ``Cancelled`` before any result, raised by the
        plugin itself or, as the worker does, at its first yielded event."""
        from studio.core.context import RunContext

        with registered(studio_app, self.generator_cls):
            request = studio_app.prepare(self._request(contract_model))
        ctx = RunContext(
            job_id="contract-cancel",
            device="cpu",
            cache=studio_app.cache,
            settings=studio_app.settings,
            scratch=tmp_path,
            log=logging.getLogger(f"studio.contract.{self.generator_cls.id}"),
        )
        ctx.cancel_event.set()
        with pytest.raises(Cancelled):
            for event in self.generator_cls().run(request, ctx):
                assert not isinstance(event, Result), "produced a result although cancelled"
                ctx.check_cancelled()  # as the worker does after every event

    def test_contract_cancel_during_run(
        self, studio_app: Studio, contract_model: str | None
    ) -> None:
        """Cancelled at its first sign of progress (a Preview, Partial or a Progress step), the
        job ends cancelled and saves nothing more."""
        marks: list[int] = []

        def cancel_at_first_progress(job_id: str, event: Any) -> None:
            started = isinstance(event, Preview | Partial) or (
                isinstance(event, Progress) and event.step >= 1
            )
            if started and not marks:
                marks.append(id(event))
                studio_app.cancel(job_id)

        with (
            registered(studio_app, self.generator_cls),
            _watching(studio_app, cancel_at_first_progress) as watch,
        ):
            job_id = studio_app.submit(self._request(contract_model))
            record = _wait(studio_app, watch, job_id, self.timeout)
        events = watch.of(job_id)
        if not marks:
            pytest.skip("the run yielded no progress before its result: nothing to cancel during")
        after = events[[id(e) for e in events].index(marks[0]) + 1 :]
        late = [type(e).__name__ for e in after if isinstance(e, Result | ArtifactSaved)]
        assert not late, f"produced {late} after it was cancelled"
        assert record.state == JobState.CANCELLED, (
            f"cancelled during the run, the job ended {record.state} ({record.error})"
        )


# --- the trainer contract --------------------------------------------------------------------


class TrainerContract:
    """Contract checks every trainer must pass; subclass it in a test module.

    Set ``trainer_cls`` and define a ``dataset`` fixture returning a folder of a few files the
    trainer can use (the checks add a bad file to it: ``bad_file``, by default one of
    :data:`BAD_FILES`). ``options`` should make a run short yet at least 3 steps long, with a
    checkpoint before the last step (e.g. ``{"steps": 4, "checkpoint_every": 1}``). Give a base
    model as a ``base_model_ref`` fixture or class attribute (``None``: the trainer's default;
    always ``None`` for a trainer with ``uses_model = False``, which takes no base model).
    ``resume_tolerance`` is the largest difference allowed between the losses and adapter
    tensors of a resumed run and of the uninterrupted one: 0 (the default) means identical, as a
    run on the CPU must be; raise it for a trainer whose device is not deterministic.
    """

    trainer_cls: ClassVar[type[Trainer]]
    options: ClassVar[dict[str, Any]] = {}
    name: ClassVar[str] = "contract adapter"
    bad_file: ClassVar[tuple[str, bytes] | None] = None
    resume_tolerance: ClassVar[float] = 0.0
    timeout: ClassVar[float] = 300.0

    # -- fixtures -------------------------------------------------------------------------
    @pytest.fixture
    def dataset(self) -> Path:
        """Override: a folder holding a small dataset the trainer can use."""
        pytest.fail(f"{type(self).__name__}: define a `dataset` fixture returning a folder")

    @pytest.fixture
    def contract_base_model(self, request: pytest.FixtureRequest) -> str | None:
        """The base model: the ``base_model_ref`` fixture if there is one, else the attribute."""
        return self._checked_base_model(_fixture_or_attribute(self, request, "base_model_ref"))

    def _checked_base_model(self, ref: str | None) -> str | None:
        if ref is not None and not getattr(self.trainer_cls, "uses_model", True):
            pytest.fail(
                f"{type(self).__name__}: {self.trainer_cls.id!r} has uses_model = False and "
                f"takes no base model: remove base_model_ref ({ref!r})"
            )
        return ref

    @pytest.fixture
    def contract_dataset(self, dataset: Path) -> Path:
        """The ``dataset`` folder with the bad file added (every run must skip it)."""
        name, content = self._bad_file()
        (Path(dataset) / name).write_bytes(content)
        return Path(dataset)

    def _bad_file(self) -> tuple[str, bytes]:
        return self.bad_file or BAD_FILES[self.trainer_cls.modality]

    def _request(self, dataset: Path, base_model: str | None) -> TrainingRequest:
        return TrainingRequest(
            trainer=self.trainer_cls.id,
            base_model=base_model,
            dataset=dataset,
            name=self.name,
            options=dict(self.options),
        )

    def _submit(
        self,
        studio: Studio,
        dataset: Path,
        base_model: str | None,
        on_event: OnEvent | None = None,
    ) -> tuple[str, JobRecord, list[Any]]:
        """Run one training job (the trainer must be registered); its id, record and events."""
        with _watching(studio, on_event) as watch:
            job_id = studio.submit_training(self._request(dataset, base_model))
            record = _wait(studio, watch, job_id, self.timeout)
        return job_id, record, watch.of(job_id)

    # -- class-level metadata and options -------------------------------------------------
    def test_contract_metadata(self) -> None:
        cls = self.trainer_cls
        assert isinstance(cls, type) and issubclass(cls, Trainer), "not a studio.Trainer"
        _check_common_metadata(cls, Trainer)
        assert cls.ingest is not Trainer.ingest, "ingest() is not implemented"

    def test_contract_option_defaults_validate(self) -> None:
        _check_option_defaults(self.trainer_cls.Options, dict(self.options))

    def test_contract_invalid_options_are_rejected(self) -> None:
        _check_invalid_options(self.trainer_cls.Options, dict(self.options))

    # -- ingest ---------------------------------------------------------------------------
    def test_contract_ingest_skips_a_bad_file_with_a_reason(self, contract_dataset: Path) -> None:
        options = validate_options(self.trainer_cls.Options, dict(self.options))
        report = self.trainer_cls().ingest(contract_dataset, options)
        name, _ = self._bad_file()
        assert report.ok and report.usable, "no usable file in the dataset fixture"
        assert all(Path(p).is_file() for p in report.usable), "usable entries must be files"
        assert name not in {Path(p).name for p in report.usable}, f"{name} was taken as usable"
        reason = report.skipped.get(name)
        assert isinstance(reason, str) and reason.strip(), f"{name} is not skipped with a reason"
        assert all(isinstance(n, str) for n in report.notes)

    def test_contract_ingest_of_an_empty_folder_is_not_ok(self, tmp_path: Path) -> None:
        empty = tmp_path / "empty-dataset"
        empty.mkdir()
        options = validate_options(self.trainer_cls.Options, dict(self.options))
        assert not self.trainer_cls().ingest(empty, options).ok

    # -- running --------------------------------------------------------------------------
    def test_contract_trains_and_saves_an_adapter(
        self, studio_app: Studio, contract_dataset: Path, contract_base_model: str | None
    ) -> None:
        cls = self.trainer_cls
        with registered(studio_app, cls):
            job_id, record, events = self._submit(studio_app, contract_dataset, contract_base_model)
        assert record.state == JobState.SUCCEEDED, f"the training {record.state}: {record.error}"
        steps = [e for e in events if isinstance(e, TrainStep)]
        assert steps, "the training yielded no TrainStep"
        assert [s.step for s in steps] == list(range(1, len(steps) + 1)), "steps must count 1, 2.."
        for step in steps:
            assert step.total >= step.step and math.isfinite(step.loss), step
        results = [e for e in events if isinstance(e, Result)]
        assert len(results) == 1, f"a training ends with one Result, not {len(results)}"
        output = results[0].output
        assert isinstance(output, AdapterOutput), "the Result of a training is an AdapterOutput"
        assert output.modality == cls.modality and output.name == self.name
        [adapter] = [a for a in studio_app.adapters() if a.job_id == job_id]
        assert Path(adapter.path).exists() and adapter.name == self.name
        assert Path(adapter.path).resolve().is_relative_to(studio_app.paths.adapters.resolve())
        assert adapter.modality == cls.modality
        if getattr(cls, "uses_model", True):
            expected = contract_base_model or cls.default_model
            assert adapter.base_model == expected, (
                f"the adapter records base model {adapter.base_model!r}, not {expected!r}: "
                "pass base_model=request.base_model to AdapterOutput"
            )
        else:
            assert record.request.get("base_model") is None, "a model-free training got a model"
            assert adapter.base_model is None, (
                f"a trainer with uses_model = False recorded base model {adapter.base_model!r}: "
                "leave AdapterOutput.base_model out (None)"
            )

    def test_contract_pause_holds_at_a_step_boundary(
        self, studio_app: Studio, contract_dataset: Path, contract_base_model: str | None
    ) -> None:
        """Paused at its first step, the training holds before the next one, with a checkpoint of
        step 1 (a pause may outlast the process); resumed, it goes on with the next step, none
        skipped or repeated."""
        from studio.core.checkpoints import CheckpointStore

        held_with: list[int | None] = []  # the newest checkpoint's step as the pause held it

        def pause_then_resume(job_id: str, event: Any) -> None:
            if isinstance(event, TrainStep) and event.step == 1:
                studio_app.pause(job_id)
            elif isinstance(event, JobStateChanged) and event.state == JobState.PAUSED:
                if not held_with:
                    store = CheckpointStore(studio_app.paths.checkpoints / job_id)
                    latest = store.latest()
                    held_with.append(None if latest is None else store.step_of(latest))
                studio_app.resume(job_id)  # the worker holds it right now, at the boundary

        with registered(studio_app, self.trainer_cls):
            _, record, events = self._submit(
                studio_app, contract_dataset, contract_base_model, pause_then_resume
            )
        assert record.state == JobState.SUCCEEDED, f"the training {record.state}: {record.error}"
        states = [(i, e.state) for i, e in enumerate(events) if isinstance(e, JobStateChanged)]
        paused = [i for i, s in states if s == JobState.PAUSED]
        assert paused, "the training never paused: call ctx.step_boundary() before every step"
        steps = [(i, e.step) for i, e in enumerate(events) if isinstance(e, TrainStep)]
        numbers = [n for _, n in steps]
        assert len(numbers) >= 2, "give options for at least 3 steps"
        assert numbers == list(range(1, len(numbers) + 1)), f"steps after a pause: {numbers}"
        resumed = next(i for i, s in states if i > paused[0] and s == JobState.RUNNING)
        assert not [n for i, n in steps if paused[0] < i < resumed], "a step ran while paused"
        assert [n for i, n in steps if i < paused[0]] == [1], "it did not hold after step 1"
        assert held_with == [1], (
            "held for a pause after step 1, its newest checkpoint was "
            + ("none" if held_with[0] is None else f"of step {held_with[0]}")
            + ": a pause may outlast the process; checkpoint in "
            "ctx.step_boundary(before_hold=...), which runs just before a pause holds the training"
        )

    def test_contract_cancel_at_a_step_boundary(
        self, studio_app: Studio, contract_dataset: Path, contract_base_model: str | None
    ) -> None:
        def cancel_at_first_step(job_id: str, event: Any) -> None:
            if isinstance(event, TrainStep) and event.step == 1:
                studio_app.cancel(job_id)

        with registered(studio_app, self.trainer_cls):
            job_id, record, events = self._submit(
                studio_app, contract_dataset, contract_base_model, cancel_at_first_step
            )
        assert record.state == JobState.CANCELLED, (
            f"cancelled at step 1, the training ended {record.state} ({record.error})"
        )
        assert [e.step for e in events if isinstance(e, TrainStep)] == [1], "it went on"
        assert not [e for e in events if isinstance(e, Result)], "a cancelled training saved"
        assert not [a for a in studio_app.adapters() if a.job_id == job_id]

    def test_contract_resume_from_a_checkpoint_continues_identically(
        self, studio_app: Studio, contract_dataset: Path, contract_base_model: str | None
    ) -> None:
        """Stopped after a checkpoint and resumed, a training ends exactly as the uninterrupted
        one: the same losses from the step after the checkpoint, the same adapter."""
        from studio.core.checkpoints import CheckpointStore

        stopped: list[int] = []

        def stop_after_a_checkpoint(job_id: str, event: Any) -> None:
            if stopped or not isinstance(event, TrainStep) or event.step >= event.total:
                return
            store = CheckpointStore(studio_app.paths.checkpoints / job_id)
            if store.latest() is not None:
                stopped.append(event.step)
                studio_app.cancel(job_id)

        with registered(studio_app, self.trainer_cls):
            whole_id, whole, whole_events = self._submit(
                studio_app, contract_dataset, contract_base_model
            )
            assert whole.state == JobState.SUCCEEDED, f"{whole.state}: {whole.error}"
            with _watching(studio_app, stop_after_a_checkpoint) as watch:
                job_id = studio_app.submit_training(
                    self._request(contract_dataset, contract_base_model)
                )
                first = _wait(studio_app, watch, job_id, self.timeout)
                assert stopped, (
                    "no checkpoint was written before the last step: give options that "
                    "checkpoint early (every step or two)"
                )
                assert first.state == JobState.CANCELLED, f"{first.state}: {first.error}"
                store = CheckpointStore(studio_app.paths.checkpoints / job_id)
                latest = store.latest()
                assert latest is not None, "a stopped training lost its checkpoints"
                at = store.step_of(latest)
                before = len(watch.of(job_id))
                assert studio_app.resume(job_id), "the stopped training could not be resumed"
                second = _wait(studio_app, watch, job_id, self.timeout, ends=2)
                resumed_events = watch.of(job_id)[before:]
        assert second.state == JobState.SUCCEEDED, f"resumed: {second.state}: {second.error}"
        whole_losses = {e.step: e.loss for e in whole_events if isinstance(e, TrainStep)}
        resumed = [e for e in resumed_events if isinstance(e, TrainStep)]
        assert resumed, "the resumed training yielded no TrainStep"
        assert resumed[0].step == at + 1, (
            f"resumed at step {resumed[0].step}, not after the checkpoint of step {at}: "
            "restore the state from ctx.checkpoints.latest()"
        )
        assert [e.step for e in resumed] == list(range(at + 1, max(whole_losses) + 1))
        tolerance = self.resume_tolerance
        for event in resumed:
            expected = whole_losses[event.step]
            assert abs(event.loss - expected) <= tolerance, (
                f"step {event.step}: loss {event.loss!r} resumed, {expected!r} uninterrupted"
            )
        [whole_adapter] = [a for a in studio_app.adapters() if a.job_id == whole_id]
        [adapter] = [a for a in studio_app.adapters() if a.job_id == job_id]
        if tolerance == 0:
            assert adapter_content(adapter.path) == adapter_content(whole_adapter.path), (
                "the resumed training saved another adapter than the uninterrupted one"
            )
        else:
            import numpy as np

            mine, theirs = _adapter_tensors(adapter.path), _adapter_tensors(whole_adapter.path)
            assert mine.keys() == theirs.keys()
            for key, value in mine.items():
                assert np.allclose(value, theirs[key], rtol=0, atol=tolerance), key
