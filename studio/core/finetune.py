"""The training loop every trainer shares: one code path for ours and third-party ones.

A trainer prepares a model whose trainable parameters are the ones to learn (a peft adapter),
its examples (train and held-out validation), a ``collate`` that makes a batch of them and a
``loss`` on a batch; :class:`FineTuneLoop` does the rest:

* **accelerate underneath**: device placement, mixed precision where the device has it (CUDA
  bf16, else fp16 with a grad scaler; none on the CPU), gradient accumulation, optional gradient
  checkpointing. Nothing assumes one process: under ``accelerate launch`` / ``torchrun`` each
  process takes its shard of every batch, gradients are averaged, only the main process writes.
* **the data order** is a pure function of the seed: epoch ``e`` visits the examples in the
  permutation drawn from ``(seed, e)``; the position in it is part of the state, so a resumed run
  sees exactly the batches the uninterrupted one would.
* **exact, crash-safe resume**: a checkpoint (through ``ctx.checkpoints``: temp folder, marker
  last, rename) holds the trainable weights, the optimizer, the LR scheduler, the grad scaler,
  every RNG (Python, NumPy, torch CPU, each CUDA device; of every process), the counters, the
  data position, the early-stopping and watchdog state, and a *fingerprint* of what shapes the
  run (trainer and version, base model and hash, dataset manifest hash, options). A checkpoint
  whose fingerprint differs is refused, saying what differs. Every file is safetensors or JSON.
* **between steps** ``ctx.step_boundary()`` (pause, cancel, a generation served right there);
  the RNGs are put back as they were afterwards, so a preempted run equals an uninterrupted one.
  Before the studio holds the training for the user's pause, a checkpoint of the step just done
  is written, so that a resume after the process ended goes on from the paused step.
* **validation** every N steps on the held-out examples (token-weighted mean loss), early
  stopping (patience, min delta), a loss watchdog that stops a diverging run, and non-finite
  losses: the step is skipped and counted, repeated ones roll back to the last checkpoint with a
  lower learning rate, or fail the job with the reason.
* **samples** every N steps and at the end through the trainer's callback (once per weights: the
  end's samples are left out when that step was just sampled); **export** of the last (or
  best-validation) weights, checked finite before they are written.

torch, numpy, accelerate and safetensors are imported inside the functions.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import random
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from studio.core.errors import InvalidRequest, StudioError
from studio.core.events import Note, PluginEvent, TrainStep

if TYPE_CHECKING:
    from studio.core.context import TrainContext

#: Version of the checkpoint layout (part of the fingerprint: an older layout is not resumed).
CHECKPOINT_FORMAT = 1

#: Files of a checkpoint folder.
STATE_FILE = "state.json"
TRAINABLE_FILE = "trainable.safetensors"
BEST_FILE = "best.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
RNG_FILE = "rng.safetensors"

Scheduler = Literal["cosine", "linear", "constant"]
MixedPrecision = Literal["auto", "no", "fp16", "bf16"]
Export = Literal["last", "best"]

#: A trainer's loss on a batch: a scalar tensor (the batch's mean loss), or ``(mean, weight)``
#: where ``weight`` counts what the mean is over (target tokens): validation weighs by it.
LossFn = Callable[[Any, Any], Any]
#: ``sample(model, step)``: the trainer's samples from the model as it is now (Sample events).
SampleFn = Callable[[Any, int], Iterable[PluginEvent]]
#: ``hook(step, micro_batch, loss) -> loss``: sees every loss before its backward (tests inject
#: non-finite values with it).
LossHook = Callable[[int, int, Any], Any]


class TrainingFailed(StudioError):
    """A training stopped for a reason the user can act on (diverged, repeated non-finite loss,
    non-finite weights)."""


class ResumeMismatch(InvalidRequest):
    """A checkpoint was made by a run that differs from this one (``differences``: what)."""

    def __init__(self, message: str, differences: dict[str, tuple[Any, Any]]) -> None:
        super().__init__(message)
        self.differences = differences


# --- settings and results -------------------------------------------------------------------


@dataclass
class LoopSettings:
    """How the loop trains; a trainer fills it from its Options.

    ``steps`` counts optimizer updates (each of ``batch_size`` x ``grad_accumulation`` examples
    per process); ``steps = 0`` trains ``epochs`` passes over the training examples instead.
    Intervals of 0 mean never (validation still runs before and after training).
    """

    steps: int = 0
    epochs: float = 1.0
    batch_size: int = 1
    grad_accumulation: int = 1
    learning_rate: float = 1e-4
    scheduler: Scheduler = "cosine"
    warmup_steps: int = 0
    #: warmup as a fraction of the steps (used when ``warmup_steps`` is 0).
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0
    #: gradients are clipped to this norm (0: no clipping).
    max_grad_norm: float = 1.0
    seed: int = 0
    checkpoint_every: int = 50
    validate_every: int = 0
    sample_every: int = 0
    #: stop when this many validations in a row did not improve by ``min_delta`` (0: never).
    early_stopping_patience: int = 0
    early_stopping_min_delta: float = 0.0
    #: stop as diverged when the smoothed loss exceeds this many times its lowest value and the
    #: starting loss (0: no watchdog); checked after ``watchdog_grace`` steps.
    watchdog_factor: float = 2.0
    watchdog_grace: int = 10
    #: non-finite losses in a row before rolling back to the last checkpoint.
    nonfinite_patience: int = 3
    #: rollbacks allowed before the training fails.
    max_rollbacks: int = 2
    #: the learning rate is multiplied by this at each rollback.
    rollback_lr_factor: float = 0.5
    mixed_precision: MixedPrecision = "auto"
    gradient_checkpointing: bool = False
    #: which weights :meth:`FineTuneLoop.export` writes: the last, or those of the best
    #: validation loss (the last when there was no validation).
    export: Export = "last"

    def check(self) -> None:
        """Refuse settings that cannot train, naming the setting and what is allowed."""
        positive = ("batch_size", "grad_accumulation")
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise InvalidRequest(f"{name} must be at least 1, got {getattr(self, name)!r}")
        if self.steps < 0:
            raise InvalidRequest(f"steps must be 0 (use epochs) or more, got {self.steps}")
        if self.steps == 0 and not self.epochs > 0:
            raise InvalidRequest(f"with steps = 0, epochs must be above 0, got {self.epochs}")
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise InvalidRequest(f"learning_rate must be above 0, got {self.learning_rate}")
        if self.scheduler not in ("cosine", "linear", "constant"):
            raise InvalidRequest(
                f"scheduler {self.scheduler!r} is unknown: use cosine, linear or constant"
            )
        if self.mixed_precision not in ("auto", "no", "fp16", "bf16"):
            raise InvalidRequest(
                f"mixed_precision {self.mixed_precision!r} is unknown: use auto, no, fp16 or bf16"
            )
        if not 0 < self.rollback_lr_factor <= 1:
            raise InvalidRequest("rollback_lr_factor must be in (0, 1]")
        for name in ("checkpoint_every", "validate_every", "sample_every", "warmup_steps"):
            if int(getattr(self, name)) < 0:
                raise InvalidRequest(f"{name} must be 0 or more, got {getattr(self, name)!r}")

    def shaping(self) -> dict[str, Any]:
        """The settings that change what is learnt (the fingerprint's part); samples do not."""
        values = asdict(self)
        values.pop("sample_every")
        return values


@dataclass
class LoopResult:
    """What a finished (or early-stopped) run learnt and how; ``summary()`` is recipe-ready."""

    steps: int = 0
    total_steps: int = 0
    epochs: float = 0.0
    stopped_early: str | None = None
    train_loss: float | None = None
    validation_before: float | None = None
    validation_last: float | None = None
    validation_best: float | None = None
    best_step: int | None = None
    exported: Export = "last"
    exported_step: int = 0
    exported_validation: float | None = None
    nonfinite_steps: int = 0
    rollbacks: int = 0
    lr_scale: float = 1.0
    #: the step of the checkpoint this process resumed from (``None``: started afresh); not part
    #: of the summary, which an uninterrupted run must share.
    resumed_from: int | None = None

    def summary(self) -> dict[str, Any]:
        """The facts for the training recipe (no time stamps: a resumed run has the same)."""
        values = asdict(self)
        values.pop("resumed_from")
        return values


def steps_for_epochs(epochs: float, examples: int, per_step: int) -> int:
    """Optimizer steps for ``epochs`` passes over ``examples``, ``per_step`` examples a step."""
    if examples < 1 or per_step < 1:
        raise InvalidRequest("there are no training examples to count epochs over")
    return max(1, math.ceil(epochs * examples / per_step))


def run_fingerprint(
    *,
    trainer: str,
    trainer_version: str,
    base_model: Mapping[str, Any] | None,
    dataset: str,
    options: Mapping[str, Any],
    **extra: Any,
) -> dict[str, Any]:
    """What identifies a run for resuming: a checkpoint of another fingerprint is refused.

    ``base_model`` is the model's recipe entry (``ctx.describe_model``: reference, revision,
    weights hash); ``dataset`` the dataset manifest's hash (``report.manifest.sha256`` of the
    ingest report); ``options`` the options that shape
    what is learnt (leave out the ones that only change what is shown, like sample prompts).
    """
    return {
        "trainer": trainer,
        "trainer_version": trainer_version,
        "base_model": dict(base_model or {}),
        "dataset": dataset,
        "options": _jsonable(dict(options)),
        **{key: _jsonable(value) for key, value in extra.items()},
    }


def fingerprint_differences(
    saved: Mapping[str, Any], current: Mapping[str, Any]
) -> dict[str, tuple[Any, Any]]:
    """``{dotted key: (saved, current)}`` for every value that differs."""
    flat_saved, flat_current = _flatten(saved), _flatten(current)
    return {
        key: (flat_saved.get(key), flat_current.get(key))
        for key in sorted(flat_saved.keys() | flat_current.keys())
        if flat_saved.get(key) != flat_current.get(key)
    }


# --- the data order ---------------------------------------------------------------------------


class DataOrder:
    """The order examples are visited in: endless, epoch after epoch, from the seed alone.

    Epoch ``e`` is the permutation of ``range(size)`` drawn from ``(seed, e)`` (NumPy's PCG64,
    the same on every platform); ``(epoch, index)`` is the position in that stream. A batch that
    runs past the end of an epoch continues into the next, so no example is dropped and any
    number of steps is exact.
    """

    def __init__(self, size: int, seed: int, epoch: int = 0, index: int = 0) -> None:
        if size < 1:
            raise InvalidRequest("there are no training examples")
        self.size = size
        self.seed = seed
        self.epoch = epoch
        self.index = index
        self._cache: tuple[int, list[int]] | None = None

    def permutation(self, epoch: int) -> list[int]:
        """The order of epoch ``epoch``."""
        if self._cache is None or self._cache[0] != epoch:
            import numpy as np

            order = np.random.default_rng([self.seed, epoch]).permutation(self.size)
            self._cache = (epoch, [int(i) for i in order])
        return self._cache[1]

    def take(self, count: int) -> list[int]:
        """The next ``count`` example indices, advancing the position."""
        out: list[int] = []
        while len(out) < count:
            order = self.permutation(self.epoch)
            part = order[self.index : self.index + count - len(out)]
            out.extend(part)
            self.index += len(part)
            if self.index >= self.size:
                self.epoch, self.index = self.epoch + 1, 0
        return out

    @property
    def position(self) -> dict[str, int]:
        return {"epoch": self.epoch, "index": self.index}

    @property
    def epochs_seen(self) -> float:
        return self.epoch + self.index / self.size


def shard(indices: Sequence[int], rank: int, world: int) -> list[int]:
    """This process's part of a global batch: the ``rank``-th of ``world`` equal slices."""
    per = len(indices) // world
    return list(indices[rank * per : (rank + 1) * per])


# --- the learning-rate schedule -------------------------------------------------------------


class LearningRateShape:
    """The schedule's factor at each step: warmup, then cosine / linear decay, or constant.

    A callable object (not a function) so that torch's ``LambdaLR`` saves its fields with the
    scheduler's state.
    """

    def __init__(self, kind: str, warmup: int, total: int) -> None:
        self.kind = kind
        self.warmup = warmup
        self.total = total

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        if self.kind == "constant":
            return 1.0
        progress = (step - self.warmup) / max(1, self.total - self.warmup)
        progress = min(1.0, progress)
        if self.kind == "linear":
            return max(0.0, 1.0 - progress)
        return 0.5 * (1.0 + math.cos(math.pi * progress))


# --- the loop -----------------------------------------------------------------------------


@dataclass
class _Counters:
    """Everything besides tensors that a checkpoint restores (JSON-able)."""

    step: int = 0
    epoch: int = 0
    index: int = 0
    nonfinite_total: int = 0
    nonfinite_in_a_row: int = 0
    rollbacks: int = 0
    lr_scale: float = 1.0
    best_validation: float | None = None
    best_step: int | None = None
    bad_validations: int = 0
    validation_before: float | None = None
    validation_last: float | None = None
    validation_last_step: int | None = None
    train_loss: float | None = None
    ema: float | None = None
    ema_lowest: float | None = None
    start_loss: float | None = None
    stopped_early: str | None = None


@dataclass
class _Snapshot:
    """A whole training state in memory (what a checkpoint folder holds)."""

    files: dict[str, dict[str, Any]]  # file name -> tensors
    state: dict[str, Any]


_ACTIVE = threading.Lock()
_active_loops = 0


class FineTuneLoop:
    """The shared training loop (see the module doc). One instance runs one training once.

    ``model`` holds the weights to learn as its parameters with ``requires_grad`` (a peft model:
    the adapter); ``train``/``validation`` are sequences of examples; ``collate(examples)`` makes a
    batch (tensors on the CPU; the loop moves them); ``loss(model, batch)`` is the batch's mean
    loss, or ``(mean, weight)``. ``fingerprint`` is :func:`run_fingerprint`'s dict. ``sample``
    produces samples (main process only, in eval mode, without gradients).

    Use::

        loop = FineTuneLoop(ctx, model, train=..., validation=..., collate=..., loss=...,
                            settings=LoopSettings(...), fingerprint=run_fingerprint(...))
        yield from loop.run()            # TrainStep, Note, Sample events
        loop.export(folder, write)       # write(folder) saves the adapter (main process)
        result = loop.result
    """

    def __init__(
        self,
        ctx: TrainContext,
        model: Any,
        *,
        train: Sequence[Any],
        validation: Sequence[Any] = (),
        collate: Callable[[list[Any]], Any],
        loss: LossFn,
        settings: LoopSettings,
        fingerprint: Mapping[str, Any],
        sample: SampleFn | None = None,
        loss_hook: LossHook | None = None,
        optimizer: Callable[[list[Any], LoopSettings], Any] | None = None,
    ) -> None:
        settings.check()
        if ctx.checkpoints is None:
            raise InvalidRequest("the training has no checkpoint store (ctx.checkpoints)")
        if len(train) < 1:
            raise InvalidRequest("there are no training examples")
        self.ctx = ctx
        self.model = model
        self.train_examples = train
        self.validation_examples = validation
        self.collate = collate
        self.loss_fn = loss
        self.settings = settings
        self.sample_fn = sample
        self.loss_hook = loss_hook
        self.make_optimizer = optimizer or _adamw
        self.fingerprint: dict[str, Any] = dict(fingerprint)
        self.result = LoopResult(exported=settings.export)
        self.c = _Counters()
        self._best: dict[str, Any] | None = None
        self._initial: _Snapshot | None = None
        self._ran = False
        #: the step of the checkpoint the store has of the current weights (``None``: none yet)
        self._saved_step: int | None = None
        #: steps sampled in this process (the end's samples are not taken twice)
        self._sampled: set[int] = set()
        # set up in run() (accelerate, the prepared model and optimizer, the schedule)
        self.accelerator: Any = None
        self.prepared: Any = None
        self.optimizer: Any = None
        self.scheduler: Any = None
        self.params: list[Any] = []
        self.initial_lrs: list[float] = []
        self.rank, self.world, self.total, self.warmup = 0, 1, 0, 0
        self.order = DataOrder(len(train), settings.seed)

    # -- public ---------------------------------------------------------------------------------
    def run(self) -> Iterator[PluginEvent]:
        """Train (or resume) to the end; yields TrainStep, Note and Sample events."""
        if self._ran:
            raise RuntimeError("a FineTuneLoop runs once; make a new one")
        self._ran = True
        global _active_loops
        with _ACTIVE:
            _active_loops += 1
        try:
            yield from self._run()
        except BaseException:
            self.close()
            raise
        finally:
            with _ACTIVE:
                _active_loops -= 1

    def export(self, folder: Path, write: Callable[[Path], None]) -> Path:
        """Write the chosen weights (``settings.export``) with ``write(folder)`` on the main
        process, after checking them finite; then check the written safetensors files."""
        if not self._ran:
            raise RuntimeError("export after run()")
        torch = _torch()
        tensors = self._trainable()
        bad = [name for name, t in tensors.items() if not bool(torch.isfinite(t).all())]
        if bad:
            raise TrainingFailed(
                f"the trained weights are not finite ({len(bad)} tensor(s), e.g. {bad[0]}): "
                "the adapter was not written; lower the learning rate and train again"
            )
        folder = Path(folder)
        if self.accelerator.is_main_process:
            folder.mkdir(parents=True, exist_ok=True)
            write(folder)
            _check_finite_files(folder)
        self.accelerator.wait_for_everyone()
        self.close()
        return folder

    def close(self) -> None:
        """Undo what the loop did to the model (gradient checkpointing) and free accelerate's
        references (idempotent)."""
        acc = getattr(self, "accelerator", None)
        if acc is None:
            return
        if self.settings.gradient_checkpointing and self.prepared is not None:
            _disable_gradient_checkpointing(self._unwrapped())
        with contextlib.suppress(Exception):
            acc.free_memory()
        self.prepared = None
        self.optimizer = None
        self.accelerator = None

    # -- setup -------------------------------------------------------------------------------------
    def _setup(self) -> None:
        torch = _torch()
        s = self.settings
        self.accelerator = _accelerator(self.ctx.device, s.mixed_precision)
        acc = self.accelerator
        self.rank, self.world = acc.process_index, acc.num_processes
        per_step = s.batch_size * s.grad_accumulation * self.world
        self.total = s.steps or steps_for_epochs(s.epochs, len(self.train_examples), per_step)
        self.warmup = s.warmup_steps or round(s.warmup_ratio * self.total)
        self.fingerprint["loop"] = {
            **s.shaping(),
            "format": CHECKPOINT_FORMAT,
            "processes": self.world,
            "mixed_precision": acc.mixed_precision,
        }
        if s.gradient_checkpointing:
            _enable_gradient_checkpointing(self.model)
        self.model.train()
        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params:
            raise InvalidRequest("the model has no trainable parameters (requires_grad)")
        optimizer = self.make_optimizer(params, s)
        self.prepared, self.optimizer = acc.prepare(self.model, optimizer)
        self.params = [p for p in self._unwrapped().parameters() if p.requires_grad]
        shape = LearningRateShape(s.scheduler, self.warmup, self.total)
        # the scheduler is stepped by hand, once per update (accelerate's prepared scheduler
        # would step once per process)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer.optimizer, shape)
        self.initial_lrs = [float(g["initial_lr"]) for g in self.optimizer.param_groups]
        self.order = DataOrder(len(self.train_examples), s.seed)

    def _unwrapped(self) -> Any:
        return self.accelerator.unwrap_model(self.prepared)

    # -- the run -----------------------------------------------------------------------------------
    def _run(self) -> Iterator[PluginEvent]:
        self._setup()
        s, c, store = self.settings, self.c, self.ctx.checkpoints
        assert store is not None
        latest = store.latest()
        if latest is not None:
            snapshot = self._read(latest)
            self._restore(snapshot, check=True)
            self.result.resumed_from = self._saved_step = c.step
            yield Note(
                f"resumed from the checkpoint of step {c.step} (epoch {c.epoch + 1}, example "
                f"{c.index} of {self.order.size} in its order)"
            )
            changed = _environment_changes(snapshot.state.get("environment") or {})
            if changed:
                yield Note(
                    f"resumed with {changed}: the result may differ in its last digits from a "
                    "run never interrupted",
                    level="warning",
                )
        else:
            _seed_everything(s.seed)
            if self.validation_examples:
                c.validation_before = self._validate()
                yield Note(f"validation loss before training: {c.validation_before:.4f}")
        self._initial = self._capture() if latest is None else None
        while c.step < self.total and c.stopped_early is None:
            self._boundary()
            lr = self._current_lr()
            loss = self._train_step()
            if loss is None:
                yield from self._nonfinite()
                continue
            c.step += 1
            c.nonfinite_in_a_row = 0
            c.train_loss = loss
            c.epoch, c.index = self.order.epoch, self.order.index
            validation = None
            if s.validate_every and c.step % s.validate_every == 0 and self.validation_examples:
                validation = self._validation_at(c.step)
            yield TrainStep(c.step, self.total, loss, lr, validation)
            self._watch(loss)
            if s.sample_every and self.sample_fn is not None and c.step % s.sample_every == 0:
                yield from self._samples(c.step)
                self._sampled.add(c.step)
            due = s.checkpoint_every and c.step % s.checkpoint_every == 0
            if due or c.step == self.total or c.stopped_early is not None:
                self._checkpoint()
        if c.stopped_early is not None:
            yield Note(c.stopped_early)
        if self.validation_examples and c.validation_last_step != c.step:
            self._validation_at(c.step, track=False)
        self._choose_export()
        if self.validation_examples:
            yield Note(self._validation_report())
        # the end's samples show the exported weights, unless that step was just sampled
        exported = self.result.exported_step
        if self.sample_fn is not None and exported not in self._sampled:
            yield from self._samples(exported)
        self._fill_result()

    def _train_step(self) -> float | None:
        """One optimizer update over ``grad_accumulation`` micro-batches; its mean loss, or
        ``None`` when a loss was not finite (the update is skipped, the data moves on)."""
        torch = _torch()
        s, acc = self.settings, self.accelerator
        losses = []
        finite = True
        for micro in range(s.grad_accumulation):
            indices = shard(self.order.take(s.batch_size * self.world), self.rank, self.world)
            if not finite:
                continue  # the batch is consumed as in a run where it was finite
            batch = self._batch(indices)
            last = micro == s.grad_accumulation - 1
            sync = contextlib.nullcontext() if last else acc.no_sync(self.prepared)
            with sync:
                loss, _ = _loss_and_weight(self.loss_fn(self.prepared, batch))
                if self.loss_hook is not None:
                    loss = self.loss_hook(self.c.step + 1, micro, loss)
                if not self._all_finite(loss):
                    finite = False
                    continue
                acc.backward(loss / s.grad_accumulation)
            losses.append(loss.detach().float())
        if not finite:
            self.optimizer.zero_grad(set_to_none=True)
            return None
        if s.max_grad_norm > 0:
            acc.clip_grad_norm_(self.params, s.max_grad_norm)
        self.optimizer.step()
        if not acc.optimizer_step_was_skipped:
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        mean = torch.stack(losses).mean()
        if self.world > 1:
            mean = acc.reduce(mean, "mean")
        return float(mean.item())

    def _batch(self, indices: Sequence[int]) -> Any:
        from accelerate.utils import send_to_device

        return send_to_device(self.collate([self.train_examples[i] for i in indices]), self._dev)

    @property
    def _dev(self) -> Any:
        return self.accelerator.device

    def _all_finite(self, loss: Any) -> bool:
        torch = _torch()
        flag = torch.isfinite(loss.detach()).all().to(self._dev, torch.float32)
        if self.world > 1:
            # accelerate reduces by sum or max only ("min" sums): finite on every process
            flag = self.accelerator.reduce(flag, "sum")
        return bool(flag.item() >= self.world)

    def _current_lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def _boundary(self) -> None:
        """``ctx.step_boundary()`` with every RNG put back afterwards: a generation served there
        (or anything else drawing random numbers) leaves no trace in the training. Before the
        studio holds the training for a pause, the step just done is checkpointed (the pause may
        outlast this process). Several processes are never paused (no studio worker runs them)."""
        state = _rng_get()

        def checkpoint() -> None:
            if self._saved_step == self.c.step:
                return  # the store has these weights already
            _rng_set(state)  # as at the boundary: not what a generation served there drew
            self._checkpoint()

        try:
            self.ctx.step_boundary(before_hold=checkpoint if self.world == 1 else None)
        finally:
            _rng_set(state)

    # -- validation, early stopping, watchdog ------------------------------------------------------
    def _validate(self) -> float:
        """The token-weighted mean loss over the validation examples (all processes)."""
        torch = _torch()
        model = self._unwrapped()
        total = torch.zeros((), dtype=torch.float64, device=self._dev)
        weight = torch.zeros((), dtype=torch.float64, device=self._dev)
        mine = list(range(self.rank, len(self.validation_examples), self.world))
        size = self.settings.batch_size
        with _rng_preserved(), _eval_mode(model), torch.no_grad(), self.accelerator.autocast():
            from accelerate.utils import send_to_device

            for start in range(0, len(mine), size):
                part = [self.validation_examples[i] for i in mine[start : start + size]]
                batch = send_to_device(self.collate(part), self._dev)
                loss, w = _loss_and_weight(self.loss_fn(model, batch))
                w = torch.as_tensor(w, dtype=torch.float64, device=self._dev)
                total += loss.detach().double() * w
                weight += w
        if self.world > 1:
            total = self.accelerator.reduce(total, "sum")
            weight = self.accelerator.reduce(weight, "sum")
        if float(weight.item()) <= 0:
            raise InvalidRequest("the validation examples have nothing to predict")
        return float((total / weight).item())

    def _validation_at(self, step: int, track: bool = True) -> float:
        s, c = self.settings, self.c
        value = self._validate()
        c.validation_last, c.validation_last_step = value, step
        if not math.isfinite(value):
            return value
        improved = c.best_validation is None or value < c.best_validation - (
            s.early_stopping_min_delta if track else 0.0
        )
        if improved:
            c.best_validation, c.best_step = value, step
            if s.export == "best":
                self._best = {k: v.detach().to("cpu").clone() for k, v in self._trainable().items()}
            if track:
                c.bad_validations = 0
        elif track:
            c.bad_validations += 1
            patience = s.early_stopping_patience
            if patience and c.bad_validations >= patience:
                c.stopped_early = (
                    f"stopped early at step {step}: the validation loss did not improve by more "
                    f"than {s.early_stopping_min_delta} for {patience} validation(s) (best "
                    f"{c.best_validation:.4f} at step {c.best_step})"
                )
        return value

    def _watch(self, loss: float) -> None:
        """The loss watchdog: fail a run whose smoothed loss climbs far above its best."""
        s, c = self.settings, self.c
        c.start_loss = loss if c.start_loss is None else c.start_loss
        c.ema = loss if c.ema is None else 0.8 * c.ema + 0.2 * loss
        c.ema_lowest = c.ema if c.ema_lowest is None else min(c.ema_lowest, c.ema)
        if not s.watchdog_factor or c.step <= s.watchdog_grace:
            return
        if c.ema > s.watchdog_factor * c.ema_lowest and c.ema > c.start_loss:
            raise TrainingFailed(
                f"the training diverged at step {c.step}: the smoothed loss rose to {c.ema:.4g}, "
                f"above its start ({c.start_loss:.4g}) and {s.watchdog_factor:g} times its lowest "
                f"({c.ema_lowest:.4g}); lower the learning rate (it was {self._current_lr():.3g}) "
                "and train again"
            )

    # -- non-finite losses -------------------------------------------------------------------------
    def _nonfinite(self) -> Iterator[PluginEvent]:
        s, c = self.settings, self.c
        c.nonfinite_total += 1
        c.nonfinite_in_a_row += 1
        yield Note(
            f"step {c.step + 1}: the loss was not finite; the update was skipped "
            f"({c.nonfinite_total} so far)",
            level="warning",
        )
        if c.nonfinite_in_a_row < s.nonfinite_patience:
            return
        if c.rollbacks >= s.max_rollbacks:
            raise TrainingFailed(
                f"the loss was not finite for {c.nonfinite_in_a_row} steps in a row at step "
                f"{c.step + 1}, after {c.rollbacks} rollback(s) with a lower learning rate: the "
                "training cannot go on; check the data, or lower the learning rate "
                f"(it was {self._current_lr():.3g})"
            )
        store = self.ctx.checkpoints
        assert store is not None
        latest = store.latest()
        snapshot = self._read(latest) if latest is not None else self._initial
        if snapshot is None:  # resumed, and the checkpoint vanished meanwhile
            raise TrainingFailed("the loss was not finite repeatedly and no checkpoint is left")
        total, rollbacks = c.nonfinite_total, c.rollbacks + 1
        scale = c.lr_scale * s.rollback_lr_factor
        self._restore(snapshot, check=False)
        # the steps after the one rolled back to are trained again, with other weights
        self._saved_step = c.step if latest is not None else None
        self._sampled = {step for step in self._sampled if step <= c.step}
        c.nonfinite_total, c.rollbacks, c.lr_scale, c.nonfinite_in_a_row = (
            total,
            rollbacks,
            scale,
            0,
        )
        self._apply_lr_scale()
        yield Note(
            f"the loss was not finite {s.nonfinite_patience} times in a row: rolled back to step "
            f"{c.step} with the learning rate times {scale:g} (rollback {rollbacks} of "
            f"{s.max_rollbacks})",
            level="warning",
        )

    def _apply_lr_scale(self) -> None:
        sched = self.scheduler
        sched.base_lrs = [lr * self.c.lr_scale for lr in self.initial_lrs]
        shape = sched.lr_lambdas[0]
        for group, base in zip(self.optimizer.param_groups, sched.base_lrs, strict=True):
            group["lr"] = base * shape(sched.last_epoch)
        sched._last_lr = [g["lr"] for g in self.optimizer.param_groups]

    # -- samples ---------------------------------------------------------------------------------
    def _samples(self, step: int) -> Iterator[PluginEvent]:
        assert self.sample_fn is not None
        if not self.accelerator.is_main_process:
            return
        torch = _torch()
        model = self._unwrapped()
        with _rng_preserved(), _eval_mode(model), torch.no_grad():
            events = list(self.sample_fn(model, step))
        yield from events

    # -- the end -----------------------------------------------------------------------------------
    def _choose_export(self) -> None:
        s, c, r = self.settings, self.c, self.result
        r.exported, r.exported_step, r.exported_validation = "last", c.step, c.validation_last
        if s.export != "best" or self._best is None or c.best_step is None:
            return
        last, best = c.validation_last, c.best_validation
        if last is not None and best is not None and best >= last:
            return  # the last weights are as good: keep them
        with _torch().no_grad():
            for name, tensor in self._trainable().items():
                tensor.copy_(self._best[name].to(tensor.device, tensor.dtype))
        r.exported, r.exported_step, r.exported_validation = "best", c.best_step, c.best_validation

    def _validation_report(self) -> str:
        c, r = self.c, self.result
        parts = []
        if c.validation_before is not None:
            parts.append(f"before training {c.validation_before:.4f}")
        if r.exported_validation is not None:
            parts.append(
                f"after {r.exported_validation:.4f} ({r.exported} weights, step {r.exported_step})"
            )
        return "validation loss: " + ", ".join(parts)

    def _fill_result(self) -> None:
        c, r = self.c, self.result
        r.steps, r.total_steps = c.step, self.total
        r.epochs = round(self.order.epochs_seen, 6)
        r.stopped_early = c.stopped_early
        r.train_loss = c.train_loss
        r.validation_before = c.validation_before
        r.validation_last = c.validation_last
        r.validation_best = c.best_validation
        r.best_step = c.best_step
        r.nonfinite_steps = c.nonfinite_total
        r.rollbacks = c.rollbacks
        r.lr_scale = c.lr_scale

    # -- state -----------------------------------------------------------------------------------
    def _trainable(self) -> dict[str, Any]:
        return {n: p for n, p in self._unwrapped().named_parameters() if p.requires_grad}

    def _capture(self) -> _Snapshot:
        """The whole state now, in memory (every process takes part: the RNGs are gathered)."""
        self.c.epoch, self.c.index = self.order.epoch, self.order.index
        files: dict[str, dict[str, Any]] = {
            TRAINABLE_FILE: {n: _cpu(t) for n, t in self._trainable().items()}
        }
        if self._best is not None:
            files[BEST_FILE] = {n: _cpu(t) for n, t in self._best.items()}
        optimizer_tensors, optimizer_state = _flatten_optimizer(self.optimizer.state_dict())
        files[OPTIMIZER_FILE] = optimizer_tensors
        rng_tensors: dict[str, Any] = {}
        rng_state = []
        for rank, (tensors, plain) in enumerate(self._gather(_rng_export())):
            rng_tensors.update({f"{rank}.{k}": v for k, v in tensors.items()})
            rng_state.append(plain)
        files[RNG_FILE] = rng_tensors
        scaler = self.accelerator.scaler
        state = {
            "format": CHECKPOINT_FORMAT,
            "fingerprint": self.fingerprint,
            "counters": asdict(self.c),
            "optimizer": optimizer_state,
            "scheduler": _jsonable(self.scheduler.state_dict()),
            "scaler": _jsonable(scaler.state_dict()) if scaler is not None else None,
            "rng": rng_state,
            "environment": _environment(),
        }
        return _Snapshot(files, state)

    def _gather(self, value: Any) -> list[Any]:
        if self.world == 1:
            return [value]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, value)
        return out

    def _checkpoint(self) -> None:
        snapshot = self._capture()
        store = self.ctx.checkpoints
        assert store is not None
        if self.accelerator.is_main_process:

            def write(folder: Path) -> None:
                from safetensors.torch import save_file

                for name, tensors in snapshot.files.items():
                    save_file(tensors, str(folder / name), metadata={"format": "pt"})
                text = json.dumps(snapshot.state, indent=1, sort_keys=True)
                (folder / STATE_FILE).write_text(text, encoding="utf-8")

            store.save(self.c.step, write)
        self.accelerator.wait_for_everyone()
        self._saved_step = self.c.step

    @staticmethod
    def _read(folder: Path) -> _Snapshot:
        from safetensors.torch import load_file

        state = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
        files = {
            name: load_file(str(folder / name))
            for name in (TRAINABLE_FILE, BEST_FILE, OPTIMIZER_FILE, RNG_FILE)
            if (folder / name).is_file()
        }
        return _Snapshot(files, state)

    def _restore(self, snapshot: _Snapshot, check: bool) -> None:
        """Put the loop in ``snapshot``'s state (``check``: refuse another run's checkpoint)."""
        torch = _torch()
        state = snapshot.state
        if check:
            self._check_fingerprint(state)
        counters = state["counters"]
        # in place: callers hold on to self.c
        fresh = _Counters(**{k: counters[k] for k in asdict(_Counters()) if k in counters})
        vars(self.c).update(vars(fresh))
        self.order = DataOrder(
            len(self.train_examples), self.settings.seed, self.c.epoch, self.c.index
        )
        trainable = self._trainable()
        saved = snapshot.files[TRAINABLE_FILE]
        if saved.keys() != trainable.keys():
            raise ResumeMismatch(
                "the checkpoint's trainable weights do not match the model's (other adapter "
                "layers): start a new training",
                {"trainable": (sorted(saved)[:3], sorted(trainable)[:3])},
            )
        with torch.no_grad():
            for name, tensor in trainable.items():
                tensor.copy_(saved[name].to(tensor.device, tensor.dtype))
        best = snapshot.files.get(BEST_FILE)
        self._best = {k: v.clone() for k, v in best.items()} if best is not None else None
        self.optimizer.load_state_dict(
            _unflatten_optimizer(snapshot.files[OPTIMIZER_FILE], state["optimizer"])
        )
        self.scheduler.load_state_dict(copy.deepcopy(state["scheduler"]))
        if state.get("scaler") and self.accelerator.scaler is not None:
            self.accelerator.scaler.load_state_dict(state["scaler"])
        self.optimizer.zero_grad(set_to_none=True)
        rng = snapshot.files[RNG_FILE]
        prefix = f"{self.rank}."
        _rng_import(
            {k[len(prefix) :]: v for k, v in rng.items() if k.startswith(prefix)},
            state["rng"][self.rank],
        )

    def _check_fingerprint(self, state: Mapping[str, Any]) -> None:
        saved = state.get("fingerprint") or {}
        differences = fingerprint_differences(saved, self.fingerprint)
        if not differences:
            return
        step = state.get("counters", {}).get("step", "?")
        shown = "; ".join(
            f"{key}: {_short(old)} then, {_short(new)} now"
            for key, (old, new) in list(differences.items())[:6]
        )
        more = f" (and {len(differences) - 6} more)" if len(differences) > 6 else ""
        raise ResumeMismatch(
            f"cannot resume from the checkpoint of step {step}: what shapes the training changed "
            f"since it was made ({shown}{more}); put it back as it was, or start a new training",
            differences,
        )


# --- helpers ----------------------------------------------------------------------------------


def _torch() -> Any:
    import torch

    return torch


def _environment() -> dict[str, Any]:
    """What else decides the last digits of a result: torch's version and CPU threads."""
    torch = _torch()
    return {"torch": str(torch.__version__), "threads": int(torch.get_num_threads())}


def _environment_changes(saved: Mapping[str, Any]) -> str:
    """``""``, or what differs between ``saved`` and now (for a warning on resume)."""
    now = _environment()
    parts = [
        f"{'CPU threads' if key == 'threads' else key} {now[key]} (the checkpoint's: {saved[key]})"
        for key in ("torch", "threads")
        if key in saved and saved[key] != now[key]
    ]
    return " and ".join(parts)


def _adamw(params: list[Any], settings: LoopSettings) -> Any:
    torch = _torch()
    return torch.optim.AdamW(
        params, lr=settings.learning_rate, weight_decay=settings.weight_decay, foreach=False
    )


def _cpu(tensor: Any) -> Any:
    return tensor.detach().to("cpu").contiguous().clone()


def _loss_and_weight(value: Any) -> tuple[Any, Any]:
    if isinstance(value, tuple):
        loss, weight = value
        return loss, weight
    return value, 1


@contextlib.contextmanager
def _eval_mode(model: Any) -> Iterator[None]:
    training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(training)


def _pick_mixed_precision(device: str, wanted: str) -> str:
    """``auto``: bf16 on CUDA where the GPU has it, else fp16 (with a grad scaler); none on the
    CPU and MPS. An explicit choice the device cannot do is refused."""
    torch = _torch()
    cuda = device.startswith("cuda")
    if wanted == "auto":
        if not cuda:
            return "no"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if wanted == "fp16" and not cuda:
        raise InvalidRequest(
            f"mixed_precision fp16 needs a CUDA GPU, the training runs on {device}: use auto or no"
        )
    if wanted == "bf16" and cuda and not torch.cuda.is_bf16_supported():
        raise InvalidRequest("this GPU has no bfloat16: use mixed_precision fp16, auto or no")
    return wanted


def _distributed() -> bool:
    import os

    torch = _torch()
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return True
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def _accelerator(device: str, mixed_precision: str) -> Any:
    """An ``Accelerator`` for ``device``: ``cpu=True`` on the CPU; in a single process, a state
    left by an earlier training with other settings is reset (accelerate keeps one per process)."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, PartialState

    torch = _torch()
    cpu = device == "cpu" or device.startswith("cpu:")
    mp = _pick_mixed_precision(device, mixed_precision)
    if not _distributed():
        if device.startswith("cuda") and ":" in device:
            torch.cuda.set_device(torch.device(device))
        partial = PartialState._shared_state
        held = partial.get("device") if partial else None
        wanted = "cpu" if cpu else torch.device(device).type
        other_device = held is not None and held.type != wanted
        state = AcceleratorState._shared_state
        other_precision = bool(state) and state.get("_mixed_precision") != mp
        if other_device or other_precision:
            with _ACTIVE:
                if _active_loops > 1:
                    raise InvalidRequest(
                        "another training with other device or precision settings is running "
                        "in this process; wait for it to end"
                    )
                AcceleratorState._reset_state(reset_partial_state=True)
    return Accelerator(cpu=cpu, mixed_precision=mp)


def _enable_gradient_checkpointing(model: Any) -> None:
    # non-reentrant checkpointing needs no input gradients and keeps dropout's RNG exact
    kwargs = {"use_reentrant": False}
    enable = getattr(model, "activation_checkpointing_enable", None)  # transformers >= 5.2x
    if callable(enable):
        enable(activation_checkpointing_kwargs=kwargs)
        return
    enable = getattr(model, "gradient_checkpointing_enable", None)
    if not callable(enable):
        raise InvalidRequest(
            f"gradient checkpointing: the model ({type(model).__name__}) does not support it; "
            "turn gradient_checkpointing off"
        )
    enable(gradient_checkpointing_kwargs=kwargs)


def _disable_gradient_checkpointing(model: Any) -> None:
    for name in ("activation_checkpointing_disable", "gradient_checkpointing_disable"):
        disable = getattr(model, name, None)
        if callable(disable):
            disable()
            return


def _seed_everything(seed: int) -> None:
    import numpy as np

    torch = _torch()
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class _RngState:
    python: Any
    numpy: Any
    torch: Any
    cuda: list[Any] = field(default_factory=list)


def _rng_get() -> _RngState:
    import numpy as np

    torch = _torch()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else []
    return _RngState(random.getstate(), np.random.get_state(), torch.get_rng_state(), cuda)


def _rng_set(state: _RngState) -> None:
    import numpy as np

    torch = _torch()
    random.setstate(state.python)
    np.random.set_state(state.numpy)
    torch.set_rng_state(state.torch)
    if state.cuda and torch.cuda.is_available():
        count = min(len(state.cuda), torch.cuda.device_count())
        for index in range(count):
            torch.cuda.set_rng_state(state.cuda[index], index)


@contextlib.contextmanager
def _rng_preserved() -> Iterator[None]:
    """Run a block and put every RNG back as it was before it."""
    state = _rng_get()
    try:
        yield
    finally:
        _rng_set(state)


def _rng_export() -> tuple[dict[str, Any], dict[str, Any]]:
    """This process's RNGs as ``(tensors, JSON-able values)`` for a checkpoint."""
    state = _rng_get()
    version, internal, gauss = state.python
    name, keys, pos, has_gauss, cached = state.numpy
    tensors = {"torch": state.torch.clone()}
    for index, value in enumerate(state.cuda):
        tensors[f"cuda{index}"] = value.clone()
    plain = {
        "python": [version, list(internal), gauss],
        "numpy": [name, [int(k) for k in keys], int(pos), int(has_gauss), float(cached)],
        "cuda_devices": len(state.cuda),
    }
    return tensors, plain


def _rng_import(tensors: Mapping[str, Any], plain: Mapping[str, Any]) -> None:
    import numpy as np

    version, internal, gauss = plain["python"]
    name, keys, pos, has_gauss, cached = plain["numpy"]
    cuda = [tensors[f"cuda{i}"] for i in range(int(plain.get("cuda_devices", 0)))]
    _rng_set(
        _RngState(
            python=(version, tuple(internal), gauss),
            numpy=(name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached),
            torch=tensors["torch"],
            cuda=cuda,
        )
    )


def _flatten_optimizer(state_dict: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """An optimizer's ``state_dict`` as tensors (``"param.key"``) plus its JSON-able rest."""
    torch = _torch()
    tensors: dict[str, Any] = {}
    scalars: dict[str, Any] = {}
    for param, values in state_dict["state"].items():
        for key, value in values.items():
            if torch.is_tensor(value):
                tensors[f"{param}.{key}"] = _cpu(value)
            else:
                scalars[f"{param}.{key}"] = value
    return tensors, {"param_groups": _jsonable(state_dict["param_groups"]), "scalars": scalars}


def _unflatten_optimizer(tensors: Mapping[str, Any], plain: Mapping[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for flat, value in [*tensors.items(), *plain["scalars"].items()]:
        param, _, key = flat.partition(".")
        # a copy: torch keeps tensors that need no cast, and the optimizer updates them in place
        state.setdefault(int(param), {})[key] = value.clone() if hasattr(value, "clone") else value
    groups = []
    for group in plain["param_groups"]:
        group = dict(group)
        if isinstance(group.get("betas"), list):
            group["betas"] = tuple(group["betas"])
        groups.append(group)
    return {"state": state, "param_groups": groups}


def _check_finite_files(folder: Path) -> None:
    """Every tensor of the ``.safetensors`` files written into ``folder`` is finite."""
    from safetensors.torch import load_file

    torch = _torch()
    for path in sorted(Path(folder).glob("*.safetensors")):
        for name, tensor in load_file(str(path)).items():
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                path.unlink()
                raise TrainingFailed(
                    f"the written adapter {path.name} holds non-finite values ({name}); it was "
                    "removed: lower the learning rate and train again"
                )


def _jsonable(value: Any) -> Any:
    """``value`` with tuples as lists and tensors/numpy scalars as numbers (for JSON)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "ndim", 1) == 0:
        return item()
    return value


def _flatten(value: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in value.items():
        name = f"{prefix}{key}"
        if isinstance(item, Mapping) and item:
            out.update(_flatten(item, name + "."))
        else:
            out[name] = item
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
