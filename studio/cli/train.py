"""``aigc-studio train`` (and ``--resume``): ingesting data, following it, pausing on Ctrl-C."""

from __future__ import annotations

import argparse
import contextlib
import queue
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.cli._common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    JSON_SCHEMA,
    PROG,
    CliUsageError,
    _err,
    _hinted_errors,
    _pydantic_message,
    hint_failed_plugins,
    load_plugin_host,
    open_studio,
)
from studio.cli.generate import trainer_options_help
from studio.cli.output import (
    _SKIPPED_SHOWN,
    EventPrinter,
    _is_sample,
    _print_json,
    _say,
    follow_job,
    resume_command,
)

if TYPE_CHECKING:
    from studio.core.records import AdapterRecord, JobRecord
    from studio.core.studio import Studio
    from studio.core.training import IngestReport, TrainingRequest


def ingest_json(report: IngestReport, dataset: Path) -> dict[str, Any]:
    """The ingest report in a ``train --json`` document: the folder, the usable files and the
    skipped ones (paths relative to the folder), the trainer's notes, the manifest's hash."""
    root = Path(report.root) if report.root is not None else dataset

    def relative(path: Path) -> str:
        try:
            return Path(path).relative_to(root).as_posix()
        except ValueError:
            return str(path)

    return {
        "dataset": str(root),
        "usable": [relative(p) for p in report.usable],
        "skipped": [{"path": name, "reason": why} for name, why in report.skipped.items()],
        "notes": list(report.notes),
        "manifest_sha256": report.manifest.sha256 if report.ok else None,
    }


def ingest_text(report: IngestReport, dataset: Path, trainer: str) -> str:
    """The ingest report for people: what is used, what is skipped and why, the notes."""
    root = Path(report.root) if report.root is not None else dataset
    used, skipped = len(report.usable), len(report.skipped)
    lines = [
        f"dataset {root} (trainer {trainer}): {used} usable file{'s' * (used != 1)}, "
        f"{skipped} skipped"
    ]
    for name, reason in list(report.skipped.items())[:_SKIPPED_SHOWN]:
        lines.append(f"  skipped {name}: {reason}")
    if skipped > _SKIPPED_SHOWN:
        lines.append(f"  ... and {skipped - _SKIPPED_SHOWN} more skipped (all of them in --json)")
    lines.extend(f"  note: {note}" for note in report.notes)
    return "\n".join(lines) + "\n"


def _no_usable_files(report: IngestReport, dataset: Path, trainer: str) -> str:
    if not report.skipped:
        return f"no usable files in {dataset} for trainer {trainer!r}: the folder is empty"
    shown = "; ".join(f"{k}: {v}" for k, v in list(report.skipped.items())[:5])
    more = len(report.skipped) - 5
    return f"no usable files in {dataset} for trainer {trainer!r}: skipped {shown}" + (
        f" (and {more} more)" if more > 0 else ""
    )


def cmd_train(args: argparse.Namespace) -> int:
    """``aigc-studio train``: check the request and the data (the ingest report), train with
    progress on stderr, print the adapter; Ctrl-C pauses. ``--resume JOB_ID`` goes on."""
    if args.resume is not None:
        return _train_resume(args)
    if args.trainer is None:
        raise CliUsageError(
            f"name the TRAINER to train with (its id, as '{PROG} plugins' lists it), or "
            "--resume JOB_ID"
        )
    if args.help_options:
        host = load_plugin_host()
        with _hinted_errors(host):
            cls = host.find_trainer(args.trainer)
        hint_failed_plugins(host)
        sys.stdout.write(trainer_options_help(cls))
        return EXIT_OK
    request = _training_request(args)
    with open_studio(start_workers=False) as studio:
        with _hinted_errors(studio.plugins):  # every check before anything is queued or runs
            cls = studio.plugins.find_trainer(request.trainer)
            if request.base_model and not cls.uses_model:
                raise CliUsageError(
                    f"trainer {cls.id!r} uses no base model (it learns from your files alone): "
                    f"remove --base {request.base_model}"
                )
            if cls.uses_model and not request.base_model and not cls.default_model:
                raise CliUsageError(
                    f"trainer {cls.id!r} has no default base model: name the model to train on "
                    "with --base REF (a hub id, a local folder or a .safetensors file)"
                )
            report = studio.check_training(request)
            if not report.ok:
                raise CliUsageError(_no_usable_files(report, request.dataset, cls.id))
        hint_failed_plugins(studio.plugins, quiet=args.json)
        if not args.json:
            sys.stderr.write(ingest_text(report, request.dataset, cls.id))
            sys.stderr.flush()
        if any(a.name == request.name for a in studio.adapters()):
            _say(
                f"warning: the library has an adapter named {request.name!r} already: --lora "
                f"{request.name} will mean the new one (the older one keeps its id)",
                quiet=args.json,
            )
        studio.start(adopt_queue=False)  # a one-shot command runs only its own job
        return run_training(
            studio, lambda: studio.submit_training(request), report=report, as_json=args.json
        )


def _training_request(args: argparse.Namespace) -> TrainingRequest:
    """A :class:`TrainingRequest` from ``train`` arguments (syntax checks only)."""
    from pydantic import ValidationError

    from studio.core.options import parse_set_pairs
    from studio.core.training import TrainingRequest

    missing = [
        flag for flag, value in (("--data DIR", args.data), ("--name NAME", args.name)) if not value
    ]
    if missing:
        raise CliUsageError(f"train {args.trainer}: give {' and '.join(missing)}")
    data = Path(args.data).expanduser()
    if not data.exists():
        raise CliUsageError(f"--data {args.data}: no such folder ({data.absolute()})")
    if not data.is_dir():
        raise CliUsageError(
            f"--data {args.data} is a file: give the folder holding the files to learn from"
        )
    options = parse_set_pairs(list(args.set))
    try:
        return TrainingRequest(
            trainer=args.trainer,
            base_model=args.base,
            dataset=data.resolve(),
            name=args.name.strip(),
            options=options,
        )
    except ValidationError as exc:
        raise CliUsageError(_pydantic_message(exc)) from None


def _train_resume(args: argparse.Namespace) -> int:
    """``train --resume JOB_ID``: re-queue a stopped training; it goes on from its last
    complete checkpoint (the trainer checks it was made by the same run)."""
    from pydantic import ValidationError

    from studio.core.events import JobState
    from studio.core.records import JobKind
    from studio.core.training import TrainingRequest

    given = [
        flag
        for flag, value in (
            ("TRAINER", args.trainer),
            ("--base", args.base),
            ("--data", args.data),
            ("--name", args.name),
            ("--set", args.set),
            ("--help-options", args.help_options),
        )
        if value
    ]
    if given:
        raise CliUsageError(
            f"--resume goes on with the training's own trainer, data and options: remove "
            f"{', '.join(given)}"
        )
    with open_studio(start_workers=False) as studio:
        record = _find_job(studio, args.resume)
        job_id = record.id
        if record.kind != JobKind.TRAIN:
            raise CliUsageError(
                f"job {job_id} is a {record.kind} job, not a training: only trainings resume"
            )
        checkpoint = studio.checkpoint_step(job_id)
        state = record.state
        if state == JobState.SUCCEEDED:
            raise CliUsageError(
                f"training job {job_id} has finished: its adapter is in the library "
                f"('{PROG} adapters')"
            )
        live = state in (JobState.QUEUED, JobState.RUNNING, JobState.PAUSED)
        if live or _running_elsewhere(studio, job_id):  # (marked interrupted, yet it runs)
            raise CliUsageError(
                f"training job {job_id} is {state if live else 'running'} in another studio "
                "process (the window, or another command): pause or resume it there"
            )
        if state in (JobState.FAILED, JobState.CANCELLED) and checkpoint is None:
            raise CliUsageError(
                f"training job {job_id} was {state} before its first checkpoint: nothing to "
                f"resume; start a new training ('{PROG} train {record.component} ...')"
            )
        try:
            request = TrainingRequest.model_validate(record.request)
        except ValidationError as exc:
            raise CliUsageError(f"the stored request of job {job_id} is damaged: {exc}") from None
        with _hinted_errors(studio.plugins):
            report = studio.check_training(request, job_id=job_id)
            if not report.ok:
                raise CliUsageError(_no_usable_files(report, request.dataset, request.trainer))
        hint_failed_plugins(studio.plugins, quiet=args.json)
        if not args.json:
            sys.stderr.write(ingest_text(report, request.dataset, request.trainer))
            where = (
                f"its checkpoint of step {checkpoint}"
                if checkpoint is not None
                else "the beginning (it has no checkpoint)"
            )
            _say(f"resuming training job {job_id} ({request.name!r}, {state}) from {where}")
        studio.start(adopt_queue=False)

        def submit() -> str:
            if not studio.resume(job_id):
                raise CliUsageError(f"training job {job_id} cannot be resumed now")
            return job_id

        return run_training(studio, submit, report=report, as_json=args.json)


def _find_job(studio: Studio, ref: str) -> JobRecord:
    """A job by its id, or by the start of it when that is unique among the recent jobs."""
    try:
        return studio.job(ref)
    except KeyError:
        pass
    found = [r for r in studio.jobs() if ref and r.id.startswith(ref)]
    if len(found) == 1:
        return found[0]
    if found:
        raise CliUsageError(
            f"job id {ref!r} is ambiguous: {', '.join(r.id for r in found[:5])}; give more of it"
        )
    raise CliUsageError(f"no job {ref!r}; '{PROG} jobs' lists them")


class TrainingWatch:
    """What a ``train`` command saw of its job: the last step, samples, notes, the adapter."""

    def __init__(self) -> None:
        self.step: dict[str, Any] | None = None
        self.validation_loss: float | None = None
        self.samples: list[dict[str, Any]] = []
        self.notes: list[dict[str, str]] = []
        self.adapter_id: str | None = None

    def add(self, event: Any) -> None:
        from studio.core.events import (
            AdapterOutput,
            ArtifactSaved,
            Note,
            Result,
            Sample,
            TextOutput,
            TrainStep,
        )

        if isinstance(event, TrainStep):
            if event.validation_loss is not None:
                self.validation_loss = event.validation_loss
            self.step = {
                "step": event.step,
                "total": event.total,
                "loss": event.loss,
                "lr": event.lr,
                "validation_loss": self.validation_loss,
            }
        elif isinstance(event, Note):
            self.notes.append({"level": event.level, "message": event.message})
        elif isinstance(event, Sample):
            output = event.output
            sample: dict[str, Any] = {
                "step": event.step,
                "index": output.index,
                "modality": output.modality,
                "seed": output.seed,
            }
            if isinstance(output, TextOutput):
                sample["text"] = output.text
            prompt = output.extra.get("prompt")
            if prompt is not None:
                sample["prompt"] = prompt
            sample["path"] = None  # until the studio saved it
            self.samples.append(sample)
        elif isinstance(event, ArtifactSaved) and _is_sample(event.recipe):
            training = event.recipe.get("training") or {}
            step, index = training.get("step"), event.recipe.get("index")
            for sample in reversed(self.samples):
                if sample["step"] == step and sample["index"] == index:
                    sample["path"] = str(event.path)
                    break
        elif isinstance(event, Result) and isinstance(event.output, AdapterOutput):
            adapter_id = event.output.extra.get("adapter_id")
            self.adapter_id = adapter_id if isinstance(adapter_id, str) else None


def run_training(
    studio: Studio, submit: Callable[[], str], *, report: IngestReport, as_json: bool
) -> int:
    """Submit (or resume) a training, show its progress until it ends, then the adapter.

    Ctrl-C pauses it at its next step boundary and says how to resume it; a second Ctrl-C
    (while it gets there) cancels it.
    """
    events: queue.Queue[Any] = queue.Queue()
    unsubscribe = studio.subscribe(events.put)
    watch = TrainingWatch()
    job_id: str | None = None

    def eta() -> float | None:
        return None if job_id is None else studio.eta(job_id)

    printer = EventPrinter(sys.stderr, quiet=as_json, eta=eta)

    def handle(event: Any) -> None:
        watch.add(event)
        printer.handle(event)

    with contextlib.ExitStack() as stack:
        stack.callback(unsubscribe)
        try:
            job_id = submit()  # events that come before it returns wait in the queue
            stack.enter_context(_running_here(studio, job_id))
            _say(
                f"training job {job_id}: Ctrl-C pauses it, '{resume_command(job_id)}' goes on",
                quiet=as_json,
            )
            follow_job(studio, job_id, events, handle)
        except KeyboardInterrupt:
            printer.close()
            if job_id is None:
                raise
            return _pause_training(studio, job_id, events, handle, printer, watch, report, as_json)
        printer.close()
        record = studio.wait(job_id, timeout=10)
        return _training_report(studio, record, watch, report, as_json)
    raise AssertionError("unreachable")  # for mypy: the with block returns or raises


def _run_lock(studio: Studio, job_id: str) -> Any:
    """The lock file a command holds while it runs training ``job_id``."""
    from studio.core.studio import HomeLock

    studio.paths.checkpoints.mkdir(parents=True, exist_ok=True)
    return HomeLock(studio.paths.checkpoints / f"{job_id}.running")


@contextmanager
def _running_here(studio: Studio, job_id: str) -> Iterator[None]:
    """Say (with a lock file) that this process runs training ``job_id``, while it does.

    Another command opening the studio home marks the jobs of a command that holds no queue as
    interrupted; ``train --resume`` must not start a second run of a training that still runs.
    """
    lock = _run_lock(studio, job_id)
    held = lock.acquire()
    try:
        yield
    finally:
        if held:
            lock.release()
            Path(lock.path).unlink(missing_ok=True)


def _running_elsewhere(studio: Studio, job_id: str) -> bool:
    """Whether another command holds training ``job_id``'s run lock (it is running there)."""
    lock = _run_lock(studio, job_id)
    if not lock.acquire():
        return True
    lock.release()
    return False


def _pause_training(
    studio: Studio,
    job_id: str,
    events: queue.Queue[Any],
    handle: Callable[[Any], None],
    printer: EventPrinter,
    watch: TrainingWatch,
    report: IngestReport,
    as_json: bool,
) -> int:
    """Ctrl-C: pause the training at its next step boundary; say how to resume it. A second
    Ctrl-C cancels it (its checkpoints stay: it can still be resumed)."""
    from studio.core.events import JobState

    _say(
        f"pausing training job {job_id} at its next step (Ctrl-C again cancels it) ...",
        quiet=as_json,
    )
    try:
        if studio.pause(job_id):
            state = follow_job(
                studio, job_id, events, handle, until=lambda s: s == JobState.PAUSED or s.finished
            )
        else:
            state = studio.job(job_id).state
    except KeyboardInterrupt:
        printer.close()
        return _cancel_training(studio, job_id, watch, report, as_json)
    printer.close()
    record = studio.job(job_id)
    if state.finished:  # it ended before it got to a step boundary: as it ended
        return _training_report(studio, record, watch, report, as_json)
    checkpoint = studio.checkpoint_step(job_id)
    if as_json:
        _print_json(_training_document(studio, record, watch, report, checkpoint))
    else:
        at = f"step {record.step} of {record.total}" if record.total else "its start"
        kept = (
            f"its last checkpoint is step {checkpoint}"
            + (" (the steps after it are trained again)" if checkpoint < record.step else "")
            if checkpoint is not None
            else "it has no checkpoint yet: a resume starts it from the beginning"
        )
        _say(f"paused training job {job_id} at {at}; {kept}")
        _say(f"resume it with: {resume_command(job_id)}")
    return EXIT_INTERRUPTED


def _cancel_training(
    studio: Studio, job_id: str, watch: TrainingWatch, report: IngestReport, as_json: bool
) -> int:
    """A second Ctrl-C: cancel the training (what it checkpointed stays, resumable)."""
    _say(f"cancelling training job {job_id} ...", quiet=as_json)
    try:
        studio.cancel(job_id)
        record = studio.wait(job_id, timeout=30)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except TimeoutError:
        _err(f"job {job_id} did not stop within 30 s; it ends when the studio closes")
        return EXIT_INTERRUPTED
    _training_report(studio, record, watch, report, as_json)
    return EXIT_INTERRUPTED


def _training_document(
    studio: Studio,
    record: JobRecord,
    watch: TrainingWatch,
    report: IngestReport,
    checkpoint: int | None,
) -> dict[str, Any]:
    """The ``train --json`` document (schema 1)."""
    from studio.core.events import JobState

    adapter = _adapter_of(studio, record.id, watch.adapter_id)
    resumable = record.state != JobState.SUCCEEDED and (
        checkpoint is not None or record.state in (JobState.PAUSED, JobState.INTERRUPTED)
    )
    dataset = Path(record.request.get("dataset") or ".")
    return {
        "schema": JSON_SCHEMA,
        "job": record.to_json(),
        "ingest": ingest_json(report, dataset),
        "progress": watch.step,
        "samples": watch.samples,
        "notes": watch.notes,
        "adapter": None if adapter is None else adapter_json(studio, adapter),
        "checkpoint_step": checkpoint,
        "resume": resume_command(record.id) if resumable else None,
    }


def _adapter_of(studio: Studio, job_id: str, adapter_id: str | None) -> AdapterRecord | None:
    """The adapter a training job saved (``None``: none yet)."""
    adapters = studio.adapters()
    found = next((a for a in adapters if adapter_id and a.id == adapter_id), None)
    return found or next((a for a in adapters if a.job_id == job_id), None)


def _training_report(
    studio: Studio,
    record: JobRecord,
    watch: TrainingWatch,
    report: IngestReport,
    as_json: bool,
) -> int:
    """Print how a training ended: the adapter and how to use it, or why it did not finish."""
    from studio.core.events import JobState

    checkpoint = None if record.state == JobState.SUCCEEDED else studio.checkpoint_step(record.id)
    code = {JobState.SUCCEEDED: EXIT_OK, JobState.CANCELLED: EXIT_INTERRUPTED}.get(
        record.state, EXIT_FAILED
    )
    if as_json:
        _print_json(_training_document(studio, record, watch, report, checkpoint))
    if record.state == JobState.SUCCEEDED:
        adapter = _adapter_of(studio, record.id, watch.adapter_id)
        if not as_json:
            _adapter_summary(studio, record, adapter)
        return code
    if record.state == JobState.FAILED:
        _err(f"job {record.id} failed: {record.error or 'unknown error'}")
    elif not as_json:
        _say(f"training job {record.id} {record.state}")
    if checkpoint is not None and not as_json:
        _say(f"its checkpoint of step {checkpoint} is kept: '{resume_command(record.id)}' goes on")
    return code


def _adapter_summary(studio: Studio, record: JobRecord, adapter: AdapterRecord | None) -> None:
    """stdout: the adapter's path; stderr: what it is, where, and how to use it."""
    took = (record.finished or 0) - (record.started or record.finished or 0)
    if adapter is None:
        print(
            f"job {record.id} succeeded in {took:.1f} s but saved no adapter",
            file=sys.stderr,
            flush=True,
        )
        return
    sys.stdout.write(f"{adapter.path}\n")
    sys.stdout.flush()
    info = adapter_json(studio, adapter)
    lines = [
        f"job {record.id} succeeded in {took:.1f} s: adapter {adapter.name!r} is in the library",
        f"  path: {adapter.path}",
    ]
    trained = _training_text(info["training"])
    if trained:
        lines.append(f"  training: {trained}")
    if info["use"]:
        lines.append(f"use it: {info['use']}")
    else:
        lines.append("no installed generator takes it (none accepts adapters of its kind)")
    print("\n".join(lines), file=sys.stderr, flush=True)


def _training_text(training: dict[str, Any]) -> str:
    """``120 steps, validation loss 2.3100 (best 2.2800)``: a training recipe's summary."""
    parts = []
    if training.get("steps") is not None:
        parts.append(f"{training['steps']} steps")
    final, best = training.get("validation_loss"), training.get("best_validation_loss")
    if final is not None:
        text = f"validation loss {final:.4f}"
        if best is not None and best != final:
            text += f" (best {best:.4f})"
        parts.append(text)
    return ", ".join(parts)


def training_summary(adapter: AdapterRecord, recipe: dict[str, Any] | None) -> dict[str, Any]:
    """Steps and the final and best validation losses of an adapter's training, from its
    training recipe (its ``result``) or, without one, from what the trainer reported."""
    result = (recipe or {}).get("result")
    result = result if isinstance(result, dict) else {}
    extra = adapter.extra

    def number(*values: Any) -> float | None:
        for value in values:
            if isinstance(value, int | float) and not isinstance(value, bool):
                return value
        return None

    steps = number(result.get("steps"), extra.get("steps"))
    return {
        "steps": None if steps is None else int(steps),
        "validation_loss": number(
            result.get("validation_last"),
            result.get("exported_validation"),
            extra.get("validation_loss"),
        ),
        "best_validation_loss": number(result.get("validation_best")),
        "best_step": number(result.get("best_step")),
    }


def _usable_with(studio: Studio, adapter: AdapterRecord) -> list[Any]:
    """The installed generators that apply ``adapter``: the ones it names, else those that
    load a model and take adapters of its modality."""
    generators = studio.plugins.generators
    if adapter.generators:
        found = [generators[g] for g in adapter.generators if g in generators]
    elif adapter.base_model is None:
        return []
    else:  # those loading a model, the ones whose default model is its base model first
        found = [g for g in generators.values() if g.modality == adapter.modality and g.uses_model]
        found.sort(key=lambda g: g.default_model != adapter.base_model)
    return [g for g in found if g.supports_lora]


def adapter_usage(studio: Studio, adapter: AdapterRecord) -> str | None:
    """The command that uses ``adapter`` (``aigc-studio generate GEN [--model BASE] --lora
    NAME``), or ``None`` when no installed generator takes it."""
    import shlex

    usable = _usable_with(studio, adapter)
    if not usable:
        return None
    cls = usable[0]
    newest = next((a for a in studio.adapters() if a.name == adapter.name), None)
    ref = adapter.name if newest is not None and newest.id == adapter.id else adapter.id
    parts = [PROG, "generate", cls.id]
    if adapter.base_model and cls.uses_model and adapter.base_model != cls.default_model:
        parts += ["--model", adapter.base_model]
    parts += ["--lora", ref]
    command = " ".join(shlex.quote(p) for p in parts)
    return command + (" --prompt TEXT" if cls.prompt_required else "")


def adapter_json(studio: Studio, adapter: AdapterRecord) -> dict[str, Any]:
    """One adapter as ``adapters --json`` (and ``train --json``) show it."""
    recipe = studio.training_recipe(adapter)
    trainer = (recipe or {}).get("trainer") or adapter.extra.get("trainer")
    if not trainer and adapter.job_id:
        try:
            trainer = studio.job(adapter.job_id).component
        except KeyError:
            trainer = None
    return {
        "id": adapter.id,
        "name": adapter.name,
        "trainer": trainer,
        "modality": adapter.modality,
        "base_model": adapter.base_model,
        "generators": list(adapter.generators),
        "usable_with": [g.id for g in _usable_with(studio, adapter)],
        "created": adapter.created,
        "path": str(adapter.path),
        "sha256": adapter.sha256,
        "job_id": adapter.job_id,
        "training": training_summary(adapter, recipe),
        "use": adapter_usage(studio, adapter),
        "recipe": recipe,
        "extra": adapter.extra,
    }
