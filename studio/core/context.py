"""What a running generator or trainer gets from the studio: ``ctx``.

The context gives access to the model cache (the only way to get a model), the device, the cancel
flag, a logger and a scratch folder, and it collects what goes into the artifact recipe (models,
adapters, dtype) as the plugin uses them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from studio.core.errors import Cancelled

if TYPE_CHECKING:
    from studio.core.background import Emit
    from studio.core.cache import ModelCache
    from studio.core.checkpoints import CheckpointStore
    from studio.core.events import PluginEvent
    from studio.core.refs import ResolvedModel
    from studio.core.settings import Settings

T = TypeVar("T")


@dataclass
class RecipeNotes:
    """What the plugin used, gathered during the run for the provenance recipe."""

    model: dict[str, Any] | None = None
    adapters: list[dict[str, Any]] = field(default_factory=list)
    dtype: str | None = None
    #: option values the run chose itself (an option left at "auto"); they replace the requested
    #: values in the recipe's ``options``, so that the recipe replays them.
    options: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunContext:
    """Per-job services for ``Generator.run`` (created by the worker; plugins never build one)."""

    job_id: str
    device: str
    cache: ModelCache
    settings: Settings
    scratch: Path
    log: logging.Logger
    cancel_event: threading.Event = field(default_factory=threading.Event)
    recipe: RecipeNotes = field(default_factory=RecipeNotes)
    hash_file: Callable[[Path], str] | None = None

    # -- cancel ----------------------------------------------------------------------------
    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    def check_cancelled(self) -> None:
        """Raise :class:`Cancelled` if the user cancelled this job (call between steps)."""
        if self.cancel_event.is_set():
            raise Cancelled()

    # -- blocking model calls --------------------------------------------------------------
    def run_blocking(
        self, work: Callable[[Emit, threading.Event], T], *, name: str = "studio-call"
    ) -> Generator[PluginEvent, None, T]:
        """``result = yield from ctx.run_blocking(work, name=...)``: run one blocking model call
        (a diffusers pipeline, ``model.generate``) on a helper thread while ``run`` yields the
        events it reports.

        ``work(emit, stopped)`` runs on the helper thread: ``emit(event)`` hands a ``Progress``,
        ``Preview`` or ``Note`` to ``run``, which yields it as it comes; ``stopped`` (a
        :class:`threading.Event`) is set when ``run`` was closed early, and the call's step
        callback should then raise to end the call. The helper takes this thread's torch CPU
        thread count (a per-thread setting) and, on a ``cuda:N`` device, makes N the current
        device. An exception from ``work`` is re-raised here.

        Cancel: check ``ctx.cancel_event`` in the step callback too, and raise, to stop the call
        within a step. Once the job is cancelled the call does not start, and a call that fails
        or ends after the cancel raises :class:`Cancelled` (its result and traceback let go).
        ``name`` names the helper thread (seen in thread dumps).
        """
        from studio.core.background import run_blocking

        return run_blocking(work, name=name, device=self.device, cancel=self.cancel_event)

    # -- policy ----------------------------------------------------------------------------
    @property
    def offline(self) -> bool:
        """Whether the network may not be used (the user's setting or ``HF_HUB_OFFLINE``)."""
        from studio.core.hub import hub_offline

        return self.settings.offline or hub_offline()

    def allows_pickle(self, ref: str) -> bool:
        """Whether the user allowed pickle-based weights for this model reference."""
        return ref in self.settings.allow_pickle

    # -- recipe ----------------------------------------------------------------------------
    def record_options(self, **values: Any) -> None:
        """Record option values the run chose itself (e.g. a model family's default size).

        They replace the requested values in the recipe's ``options`` so that ``regenerate``
        replays exactly what ran. This is the one way to put chosen values in the recipe; the
        request's options are never written back. Free-form facts go to ``recipe.extra``.
        """
        self.recipe.options.update(values)

    # -- models ----------------------------------------------------------------------------
    def resolve_model(self, ref: str, *, allow_download: bool = True) -> ResolvedModel:
        """Resolve a reference (hub id, folder, .safetensors file) under the safety settings."""
        from studio.core.refs import resolve

        return resolve(
            ref,
            allow_pickle=self.allows_pickle(ref),
            allow_download=allow_download and not self.offline,
        )

    @contextmanager
    def use_model(
        self,
        resolved: ResolvedModel,
        *,
        kind: str,
        dtype: str,
        loader: Callable[[], T],
        record: bool = True,
    ) -> Iterator[T]:
        """Get a model from the shared cache (loading it on a miss), pinned while in the block.

        ``kind`` names what is loaded (e.g. ``"diffusers-pipeline"``, ``"causal-lm"``) so that
        generators asking for the same weights as the same kind share one copy.
        """
        from studio.core.cache import CacheKey

        key = CacheKey(
            ref=resolved.cache_ref,
            revision=resolved.revision,
            kind=kind,
            dtype=dtype,
            device=self.device,
        )
        if record:
            self.recipe.model = self.describe_model(resolved)
            self.recipe.dtype = dtype
        with self.cache.acquire(key, loader) as model:
            yield model

    def describe_model(self, resolved: ResolvedModel) -> dict[str, Any]:
        """Recipe entry for a model: reference, revision and weights hash."""
        from studio.core.refs import weights_sha256

        return {
            "ref": resolved.ref,
            "source": resolved.source,
            "revision": resolved.revision,
            "sha256": weights_sha256(resolved, self.hash_file),
        }

    def record_adapter(self, ref: str, weight: float, path: Path | None = None) -> None:
        """Note an applied adapter (with its file hash) for the recipe."""
        digest = None
        if path is not None and path.is_file() and self.hash_file is not None:
            digest = self.hash_file(path)
        self.recipe.adapters.append({"ref": ref, "weight": weight, "sha256": digest})


@dataclass
class TrainContext(RunContext):
    """``RunContext`` for trainers: checkpoints, the step boundary and the user's pause."""

    checkpoints: CheckpointStore | None = None
    #: called at each step boundary; the worker serves waiting higher-priority jobs and pauses here.
    on_step_boundary: Callable[[], None] | None = None
    #: the worker's answer to "did the user pause this training?" (read it as ``pause_requested``)
    pause_flag: Callable[[], bool] | None = None
    _before_hold: Callable[[], None] | None = field(default=None, init=False, repr=False)

    @property
    def pause_requested(self) -> bool:
        """Whether the user paused this training: a :meth:`step_boundary` holds it until resumed.

        Read-only. The checkpoint a pause needs is best written in ``step_boundary``'s
        ``before_hold`` (it also covers a pause that comes while the boundary lends the device).
        """
        return self.pause_flag is not None and bool(self.pause_flag())

    def step_boundary(self, before_hold: Callable[[], None] | None = None) -> None:
        """Call between optimisation steps: may cancel (raises), pause, or run a generation.

        ``before_hold()`` is called once, right before the studio holds the training because the
        user paused it (also when the pause came while a generation ran at this boundary), and
        not otherwise. Write a checkpoint of the step just done there (unless there is one): a
        paused training may never go on in this process (the studio is closed, the process
        killed), and a resume then starts from the paused step rather than from the last
        periodic checkpoint. :class:`~studio.core.finetune.FineTuneLoop` does this itself. If
        ``before_hold`` raises, the training fails with its error.
        """
        self.check_cancelled()
        self._before_hold = before_hold
        try:
            if self.on_step_boundary is not None:
                self.on_step_boundary()
        finally:
            self._before_hold = None
        self.check_cancelled()

    def about_to_hold(self) -> None:
        """Run the trainer's ``before_hold`` of the current step boundary, once (the worker
        calls it right before it holds the training for a pause)."""
        callback, self._before_hold = self._before_hold, None
        if callback is not None:
            callback()
