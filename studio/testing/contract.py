"""The generator contract as a test mixin, for built-in and third-party plugins alike.

Subclass :class:`GeneratorContract` in a test module, name the generator, and give it a model::

    from studio.testing.contract import GeneratorContract
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
the declared modality, determinism (same seed, same output) and cancellation before the start.

:func:`run_generator` is the helper the checks use; it is handy in ordinary tests too.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pytest

from studio.core.errors import Cancelled, OptionsError
from studio.core.events import ArtifactSaved, JobEvent, JobState, JobStateChanged, Progress, Result
from studio.core.generator import GenerationRequest, Generator, LoraSpec
from studio.core.hookspecs import hookimpl
from studio.core.options import BaseOptions, FieldSpec, field_specs, validate_options

if TYPE_CHECKING:
    from studio.core.records import ArtifactRecord
    from studio.core.studio import Studio

MODALITIES = ("text", "image", "audio")

__all__ = [
    "GeneratorContract",
    "GeneratorRunFailed",
    "artifact_content",
    "ensure_registered",
    "invalid_value",
    "run_generator",
]


class GeneratorRunFailed(AssertionError):
    """The job of :func:`run_generator` did not succeed (its state and error are in the message)."""


class _SingleGeneratorPlugin:
    """A plugin object contributing one generator class (to run a class not registered yet)."""

    def __init__(self, cls: type[Generator]) -> None:
        self.cls = cls
        self.__name__ = f"contract-{cls.id}"

    @hookimpl
    def register_generators(self, register: Callable[[type], None]) -> None:
        register(self.cls)


def ensure_registered(studio: Studio, generator_cls: type[Generator]) -> str | None:
    """Register ``generator_cls`` in ``studio`` unless it is there; return the plugin name added.

    Unregister that plugin (``studio.plugins.unregister(name)``) when done with it.
    """
    known = studio.plugins.generators.get(generator_cls.id)
    if known is generator_cls:
        return None
    if known is not None:
        raise ValueError(
            f"generator id {generator_cls.id!r} is already registered for another class ({known})"
        )
    info = studio.plugins.register(_SingleGeneratorPlugin(generator_cls))
    if info.error:
        studio.plugins.unregister(info.name)
        raise GeneratorRunFailed(f"could not register {generator_cls.__name__}: {info.error}")
    return info.name


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

    The generator is registered for the call if the studio does not know it yet. ``events`` are
    the job's events in order (the plugin's Progress/Preview/Partial/Note/Result and the core's
    JobStateChanged/ArtifactSaved, unwrapped from :class:`JobEvent`); ``artifacts`` the saved
    artifact records. Raises :class:`GeneratorRunFailed` if the job does not succeed.
    """
    plugin_name = ensure_registered(studio, generator_cls)
    request = GenerationRequest(
        generator=generator_cls.id,
        prompt=prompt,
        model=model,
        seed=seed,
        options=dict(options or {}),
        loras=[LoraSpec.parse(x) if isinstance(x, str) else x for x in loras],
    )
    collected: list[JobEvent] = []
    lock = threading.Lock()

    def collect(event: JobEvent) -> None:
        with lock:
            collected.append(event)

    unsubscribe = studio.subscribe(collect)
    try:
        job_id = studio.submit(request)
        record = studio.wait(job_id, timeout=timeout)
        if not record.state.finished:
            studio.cancel(job_id)
            raise GeneratorRunFailed(f"job {job_id} did not finish within {timeout} s")

        def finished_event_seen() -> bool:
            with lock:
                return any(
                    e.job_id == job_id
                    and isinstance(e.event, JobStateChanged)
                    and e.event.state.finished
                    for e in collected
                )

        deadline = time.monotonic() + 5.0  # callbacks run on the worker: let the last ones land
        while not finished_event_seen() and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        unsubscribe()
        if plugin_name is not None:
            studio.plugins.unregister(plugin_name)
    with lock:
        events = [e.event for e in collected if e.job_id == job_id]
    if record.state != JobState.SUCCEEDED:
        raise GeneratorRunFailed(
            f"generator {generator_cls.id!r}: job {job_id} {record.state}: {record.error}"
        )
    artifacts = [studio.store.get_artifact(a) for a in record.artifact_ids]
    return events, artifacts


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


class GeneratorContract:
    """Contract checks every generator must pass; subclass it in a test module.

    Set ``generator_cls``; give a model as a ``model_ref`` fixture or class attribute (``None``:
    the generator's default model, which must then be in the offline test hub cache); optionally
    ``options`` (small values for a fast run), ``prompt``, ``seed`` and ``timeout``.
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
        try:
            value = request.getfixturevalue("model_ref")
        except pytest.FixtureLookupError:
            value = getattr(self, "model_ref", None)
        return None if value is None else str(value)

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

    # -- class-level metadata -------------------------------------------------------------
    def test_contract_metadata(self) -> None:
        cls = self.generator_cls
        assert isinstance(cls, type) and issubclass(cls, Generator), "not a studio.Generator"
        for attr in ("id", "name", "task"):
            value = getattr(cls, attr, None)
            assert isinstance(value, str) and value.strip(), f"{attr} must be a non-empty string"
        assert not any(c.isspace() for c in cls.id), f"id {cls.id!r} must have no spaces"
        assert cls.modality in MODALITIES, f"modality {cls.modality!r} not in {MODALITIES}"
        assert cls.default_model is None or isinstance(cls.default_model, str)
        assert isinstance(cls.description, str)
        assert isinstance(cls.supports_lora, bool) and isinstance(cls.prompt_required, bool)
        assert cls.run is not Generator.run, "run() is not implemented"
        assert isinstance(cls.Options, type) and issubclass(cls.Options, BaseOptions), (
            "Options must subclass studio.BaseOptions"
        )
        undocumented = [s.name for s in field_specs(cls.Options) if not s.description.strip()]
        assert not undocumented, f"options without a description: {undocumented}"

    # -- options --------------------------------------------------------------------------
    def test_contract_option_defaults_validate(self) -> None:
        options_cls = self.generator_cls.Options
        base = dict(self.options)
        validate_options(options_cls, base)
        for spec in field_specs(options_cls):
            if spec.required:
                assert spec.name in base, f"required option {spec.name!r}: set it in options"
                continue
            # pydantic does not validate defaults: check each one explicitly
            validate_options(options_cls, {**base, spec.name: spec.default})

    def test_contract_invalid_options_are_rejected(self) -> None:
        options_cls = self.generator_cls.Options
        base = dict(self.options)
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
        from studio.core.context import RunContext

        plugin_name = ensure_registered(studio_app, self.generator_cls)
        try:
            request = studio_app.prepare(
                GenerationRequest(
                    generator=self.generator_cls.id,
                    prompt=self.prompt,
                    model=contract_model,
                    seed=self.seed,
                    options=dict(self.options),
                )
            )
        finally:
            if plugin_name is not None:
                studio_app.plugins.unregister(plugin_name)
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
