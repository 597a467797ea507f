"""What commands print (JSON, tables, progress, streamed text); following a job to its end."""

from __future__ import annotations

import json
import queue
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from studio.cli._common import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, JSON_SCHEMA, PROG, _err

if TYPE_CHECKING:
    from studio.core.records import JobRecord
    from studio.core.studio import Studio


def _print_json(document: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(document, indent=2, default=_json_default) + "\n")
    sys.stdout.flush()


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, set | tuple):
        return list(value)
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    return str(value)


def _table(headers: list[str], rows: list[list[str]], indent: int = 0) -> str:
    """A plain aligned text table (no dependency)."""
    cells = [headers, *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    pad = " " * indent
    lines = [
        pad + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells
    ]
    return "\n".join(lines) + "\n"


def run_job(studio: Studio, submit: Callable[[], str], *, as_json: bool) -> int:
    """Submit a job, render its events until it finishes, print the summary; Ctrl-C cancels."""
    from studio.core.events import ArtifactSaved, Note

    events: queue.Queue[Any] = queue.Queue()
    unsubscribe = studio.subscribe(events.put)
    printer = EventPrinter(sys.stderr, quiet=as_json)
    job_id: str | None = None
    saved: dict[str, ArtifactSaved] = {}
    notes: list[dict[str, str]] = []

    def handle(event: Any) -> None:
        if isinstance(event, ArtifactSaved):
            saved[event.artifact_id] = event
        elif isinstance(event, Note):
            notes.append({"level": event.level, "message": event.message})
        printer.handle(event)

    try:
        try:
            job_id = submit()  # events that come before it returns wait in the queue
            follow_job(studio, job_id, events, handle)
        except KeyboardInterrupt:
            printer.close()
            if job_id is None:
                raise
            return _cancel(studio, job_id, saved, notes, as_json)
        printer.close()
        record = studio.wait(job_id, timeout=10)
        return _report(studio, record, saved, notes, as_json)
    finally:
        unsubscribe()


def follow_job(
    studio: Studio,
    job_id: str,
    events: queue.Queue[Any],
    handle: Callable[[Any], None],
    until: Callable[[Any], bool] | None = None,
) -> Any:
    """Hand each event of ``job_id`` from ``events`` (a subscription's queue) to ``handle`` until
    the job reaches a state for which ``until`` is true (default: it ended); return that state.

    The database is polled too, so a lost event cannot hang the command. A job marked
    interrupted there while this process still runs it (another process opening the studio
    home) is not taken as ended: this process's own worker says when it ends.
    """
    from studio.core.events import JobState, JobStateChanged

    stop = until or (lambda state: state.finished)
    next_poll = time.monotonic() + 0.5
    while True:
        try:
            item = events.get(timeout=0.1)
        except queue.Empty:
            item = None
        if item is not None and item.job_id == job_id:
            handle(item.event)
            if isinstance(item.event, JobStateChanged) and stop(item.event.state):
                return item.event.state
        if time.monotonic() >= next_poll:  # never hang on a lost event
            state = studio.job(job_id).state
            next_poll = time.monotonic() + 0.5
            if stop(state) and state != JobState.INTERRUPTED:
                while True:  # what came before it still counts
                    try:
                        item = events.get_nowait()
                    except queue.Empty:
                        return state
                    if item.job_id == job_id:
                        handle(item.event)


def _cancel(
    studio: Studio,
    job_id: str,
    saved: dict[str, Any],
    notes: list[dict[str, str]],
    as_json: bool,
) -> int:
    """Ctrl-C: cancel the job and wait (briefly) until it stopped; a second Ctrl-C gives up.

    What the job saved before it stopped stays, and is reported like a finished job's output.
    """
    print(f"{PROG}: cancelling job {job_id} ...", file=sys.stderr, flush=True)
    try:
        studio.cancel(job_id)
        record = studio.wait(job_id, timeout=30)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except TimeoutError:
        _err(f"job {job_id} did not stop within 30 s; it ends when the studio closes")
        return EXIT_INTERRUPTED
    _report(studio, record, saved, notes, as_json)
    return EXIT_INTERRUPTED


def artifact_json(record: Any) -> dict[str, Any]:
    """One artifact of a ``generate --json`` document: id, path, kind (= modality), recipe."""
    return {
        "id": record.id if hasattr(record, "id") else record.artifact_id,
        "path": str(record.path),
        "kind": record.modality,
        "modality": record.modality,
        "recipe": record.recipe,
    }


def _report(
    studio: Studio,
    record: JobRecord,
    saved: dict[str, Any],
    notes: list[dict[str, str]],
    as_json: bool,
) -> int:
    """Print a finished job's outcome (paths, or the JSON document); return the exit code."""
    from studio.core.events import JobState

    artifacts: list[dict[str, Any]] = []
    for artifact_id in dict.fromkeys([*record.artifact_ids, *saved]):
        try:
            artifacts.append(artifact_json(studio.artifact(artifact_id)))
        except KeyError:
            if artifact_id in saved:
                artifacts.append(artifact_json(saved[artifact_id]))
    code = EXIT_OK if record.state == JobState.SUCCEEDED else EXIT_FAILED
    if record.state == JobState.CANCELLED:
        code = EXIT_INTERRUPTED
    if as_json:
        _print_json(
            {"schema": JSON_SCHEMA, "job": record.to_json(), "artifacts": artifacts, "notes": notes}
        )
    else:
        for artifact in artifacts:
            sys.stdout.write(f"{artifact['path']}\n")
        if record.state == JobState.SUCCEEDED:
            took = (record.finished or 0) - (record.started or record.finished or 0)
            count = len(artifacts)
            print(
                f"job {record.id} succeeded in {took:.1f} s: "
                f"{count} artifact{'s' * (count != 1)} saved",
                file=sys.stderr,
                flush=True,
            )
    if record.state == JobState.FAILED:
        _err(f"job {record.id} failed: {record.error or 'unknown error'}")
    elif record.state != JobState.SUCCEEDED and not as_json:
        print(f"{PROG}: job {record.id} {record.state}", file=sys.stderr, flush=True)
    return code


class EventPrinter:
    """Renders job events on a text stream (stderr): a progress bar, streamed text, notes.

    On a terminal the bar is redrawn in place (at most every ``tty_interval`` seconds); otherwise
    one line per update, at most every ``line_interval`` seconds plus the last one, so logs stay
    short. Streamed text (``Partial``) is written as it comes and replaces the bar.
    """

    def __init__(
        self,
        stream: IO[str],
        *,
        quiet: bool = False,
        tty: bool | None = None,
        width: int = 28,
        tty_interval: float = 0.05,
        line_interval: float = 1.0,
        eta: Callable[[], float | None] | None = None,
    ) -> None:
        self.stream = stream
        self.quiet = quiet
        #: seconds a training still needs (shown after its loss), when known
        self.eta = eta
        self._validation: float | None = None  # the last validation loss of a training
        self.tty = stream.isatty() if tty is None else tty
        self.width = width
        self.interval = tty_interval if self.tty else line_interval
        self._last_draw = 0.0
        self._bar_len = 0  # characters of the bar now on the terminal line (tty)
        self._streaming = False  # text has been streamed: no bar any more (it would overwrite)
        self._text_index: int | None = None
        self._text_open = False  # the streamed text does not end with a newline

    def handle(self, event: Any) -> None:
        """Show one event (plugin events and the core's; the others are ignored)."""
        if self.quiet:
            return
        from studio.core.events import ArtifactSaved, Note, Partial, Progress, Sample, TrainStep

        if isinstance(event, Progress):
            self.progress(event.step, event.total, event.message)
        elif isinstance(event, Partial):
            self.text(event.text, event.index)
        elif isinstance(event, Note):
            self.line(f"{event.level}: {event.message}")
        elif isinstance(event, TrainStep):
            self.train_step(event.step, event.total, event.loss, event.validation_loss)
        elif isinstance(event, Sample):
            self.sample(event)
        elif isinstance(event, ArtifactSaved) and _is_sample(event.recipe):
            self.line(f"  saved: {event.path}")

    def train_step(
        self, step: int, total: int, loss: float, validation_loss: float | None = None
    ) -> None:
        """A training step: the bar with the loss, the last validation loss and the ETA; each
        validation also gets a line of its own, so the terminal keeps the curve."""
        if validation_loss is not None:
            self._validation = validation_loss
            of = f"/{total}" if total > 0 else ""
            self.line(f"step {step}{of}: validation loss {validation_loss:.4f} (loss {loss:.4f})")
        parts = [f"loss {loss:.4f}"]
        if self._validation is not None:
            parts.append(f"val {self._validation:.4f}")
        eta = self.eta() if self.eta is not None else None
        if eta is not None and step < total:
            parts.append(f"ETA {duration_text(eta)}")
        self.progress(step, total, "  ".join(parts))

    def sample(self, event: Any) -> None:
        """A training sample: a text sample is shown whole (indented), others by their kind."""
        output = event.output
        extra = getattr(output, "extra", None) or {}
        prompt = extra.get("prompt")
        label = f"sample {output.index + 1} at step {event.step}"
        if prompt:
            label += f" ({_shorten(str(prompt), 60)!r})"
        text = getattr(output, "text", None)
        if isinstance(text, str):
            body = "\n".join("  " + line for line in (text.strip("\n") or "(empty)").splitlines())
            self.line(f"{label}:\n{body}")
        else:
            self.line(f"{label}: {output.modality}")

    def progress(self, step: int, total: int, message: str = "") -> None:
        """Show ``step`` of ``total`` (``total`` 0: unknown)."""
        if self._streaming:
            return
        now = time.monotonic()
        last = total > 0 and step >= total
        if not last and now - self._last_draw < self.interval:
            return
        self._last_draw = now
        text = self.format_bar(step, total, message)
        if self.tty:
            columns = shutil.get_terminal_size((80, 24)).columns - 1
            text = text[:columns]
            self.stream.write("\r" + text.ljust(self._bar_len))
            self._bar_len = len(text)
            if last:
                self.stream.write("\n")
                self._bar_len = 0
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def format_bar(self, step: int, total: int, message: str = "") -> str:
        """``[#######.....]  58% 7/12 message`` (or ``step 7 message`` when total is unknown, and
        the message alone, a status line, when nothing is counted yet)."""
        if total > 0:
            fraction = min(max(step / total, 0.0), 1.0)
            filled = int(fraction * self.width)
            bar = "#" * filled + "." * (self.width - filled)
            text = f"[{bar}] {fraction * 100:3.0f}% {step}/{total}"
        elif step > 0 or not message:
            text = f"step {step}"
        else:
            return message
        return f"{text} {message}".rstrip()

    def text(self, chunk: str, index: int = 0) -> None:
        """Stream a piece of generated text (candidate ``index``)."""
        self._clear_bar()
        if self._text_index is not None and index != self._text_index:
            self.stream.write("\n" if self._text_open else "")
            self._text_open = False
        if index != self._text_index and (index > 0 or self._text_index is not None):
            self.stream.write(f"--- candidate {index + 1} ---\n")
        self._text_index = index
        self._streaming = True
        if chunk:
            self.stream.write(chunk)
            self._text_open = not chunk.endswith("\n")
        self.stream.flush()

    def line(self, message: str) -> None:
        """A whole line (a note) between the bar and the streamed text."""
        self._clear_bar()
        if self._text_open:
            self.stream.write("\n")
            self._text_open = False
        self.stream.write(message + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End the output cleanly (newline after streamed text, no half-drawn bar)."""
        if self.quiet:
            return
        self._clear_bar()
        if self._text_open:
            self.stream.write("\n")
            self._text_open = False
        self.stream.flush()

    def _clear_bar(self) -> None:
        if self.tty and self._bar_len:
            self.stream.write("\r" + " " * self._bar_len + "\r")
            self._bar_len = 0


#: Skipped files listed on the terminal before a training (all of them are in ``--json``).
_SKIPPED_SHOWN = 20


def duration_text(seconds: float) -> str:
    """``42s``, ``3m05s`` or ``1h02m``: a duration to read at a glance (an ETA)."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _shorten(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _say(message: str, *, quiet: bool = False) -> None:
    """One line for people on stderr (``aigc-studio: ...``); nothing with ``--json``."""
    if not quiet:
        print(f"{PROG}: {message}", file=sys.stderr, flush=True)


def resume_command(job_id: str) -> str:
    return f"{PROG} train --resume {job_id}"


def _is_sample(recipe: Any) -> bool:
    """Whether a saved artifact's recipe is a training's sample."""
    from studio.core.records import SAMPLE_KIND

    return isinstance(recipe, dict) and recipe.get("kind") == SAMPLE_KIND
