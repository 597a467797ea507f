"""The training panel, built against the trainer contract: trainer, base model and a folder; the
ingest report; options from the trainer's Options; start; the live loss and validation curves
with the latest numbers; the samples as they arrive (pictures, sounds, or text to read); the
run's notes; pause, resume (also after a restart) and cancel; and the resulting adapter one click
away from use in the matching generator. A trainer that uses no model (``uses_model = False``)
gets no base-model picker.

What a trainer reports is read from the events every trainer yields: ``TrainStep`` (step, loss,
learning rate, validation loss), ``Sample``, ``Note``; the shared training loop's notes of the
validation loss before and after training add the first and last points of the validation curve;
an adapter whose ``extra`` holds ``perplexity_before`` / ``perplexity_after`` (the text trainer's)
shows them side by side.
"""

from __future__ import annotations

import math
import re
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QFont, QIcon, QImage, QPixmap, QResizeEvent
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSplitter,
    QStackedWidget,
    QStyle,
    QTabWidget,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from studio.core.errors import StudioError
from studio.core.events import (
    AudioOutput,
    ImageOutput,
    JobState,
    Note,
    TextOutput,
    TrainStep,
    kind_of,
)
from studio.core.options import FieldSpec
from studio.core.records import AdapterRecord, JobKind, JobRecord
from studio.core.training import IngestReport, TrainingRequest
from studio.ui.model_picker import ModelPicker
from studio.ui.options_form import OptionsForm, PathEditor
from studio.ui.util import discard, human_duration, pil_to_qimage

if TYPE_CHECKING:
    from studio.core.training import Trainer
    from studio.ui.session import Session

SAMPLE_ICON = QSize(96, 96)
#: the states from which "Resume" goes on with a training (from its last checkpoint)
RESUMABLE = (JobState.PAUSED, JobState.INTERRUPTED, JobState.FAILED, JobState.CANCELLED)
WARNING_COLOR = QColor(200, 110, 0)

# The shared training loop's (studio.core.finetune) notes that carry a validation loss: before
# training (drawn at step 0) and the final one ("after X (last weights, step N)").
_BEFORE = re.compile(r"^validation loss before training: (?P<loss>[-+0-9.eE]+|nan|inf)$")
_AFTER = re.compile(r"after (?P<loss>[-+0-9.eE]+) \((?:last|best) weights, step (?P<step>\d+)\)")
# characters a sample's text may hold that a reader should not see raw (a tiny model's bytes)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def uses_model(trainer: type[Trainer]) -> bool:
    """Whether the trainer starts from a base model (a model-free one shows no picker)."""
    return trainer.uses_model


def validation_from_note(message: str) -> tuple[int, float] | None:
    """The validation loss a training-loop note reports: ``(0, loss)`` before training,
    ``(step, loss)`` for the final one; ``None`` for any other note."""
    found = _BEFORE.match(message.strip())
    if found:
        return 0, float(found["loss"])
    found = _AFTER.search(message) if message.startswith("validation loss: ") else None
    if found:
        return int(found["step"]), float(found["loss"])
    return None


def readable(text: str) -> str:
    """A sample's text as it can be shown: control characters as a middle dot, no run of
    blank lines, no trailing white space."""
    text = _CONTROL.sub("·", text)
    return re.sub(r"\n\s*\n(\s*\n)+", "\n\n", text).rstrip()


def number(value: float | None, digits: int = 4) -> str:
    """A loss or rate for the eye: 4 significant digits; a dash when unknown."""
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:.{digits}g}"


class IngestView(QLabel):
    """The ingest report in words: usable files, skipped ones with reasons, the trainer's notes."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWordWrap(True)
        self.setTextFormat(Qt.TextFormat.RichText)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.setObjectName("ingest")
        self.report: IngestReport | None = None
        self.show_hint("Choose a folder of your own files to see what the trainer can use.")

    def show_hint(self, text: str) -> None:
        self.report = None
        self.setText(f"<i>{escape(text)}</i>")

    def show_report(self, report: IngestReport) -> None:
        self.report = report
        n = len(report.usable)
        notes = list(report.notes)
        # the shared ingest's first note counts the usable files (with their kinds and size):
        # it is the heading; its note of the skipped files heads their reasons
        head = notes.pop(0) if n and notes and notes[0].startswith(f"{n} usable file") else None
        skipped = len(report.skipped)
        pattern = re.compile(rf"^{skipped} files? skipped\b")
        skip_note = next((note for note in notes if skipped and pattern.match(note)), None)
        if skip_note is not None:
            notes.remove(skip_note)
        if n:
            lines = [f"<b>{escape(head or f'{n} usable file' + ('s' if n != 1 else ''))}</b>"]
        else:
            lines = ["<b style='color:#d33'>No usable file in this folder.</b>"]
        lines += [f"• {escape(note)}" for note in notes]
        if report.skipped:
            lines.append(escape(skip_note) if skip_note else f"Skipped {skipped}:")
            items = list(report.skipped.items())
            lines += [f"&nbsp;&nbsp;{escape(name)}: {escape(why)}" for name, why in items[:8]]
            if len(items) > 8:
                lines.append(f"&nbsp;&nbsp;… and {len(items) - 8} more")
        self.setText("<br>".join(lines))


class RunStats(QWidget):
    """The latest numbers of a run, each a value over its caption: step, training loss,
    validation loss, perplexity (when the trainer reports it), learning rate, time left."""

    FIELDS = (
        ("step", "step"),
        ("loss", "training loss"),
        ("validation", "validation loss"),
        ("perplexity", "perplexity before → after"),
        ("lr", "learning rate"),
        ("eta", "time left"),
    )
    TIPS = {
        "loss": "The loss on the batch of this step: it is noisy; lower is better.",
        "validation": "The loss on the files held out from training: if it rises while the "
        "training loss still falls, the adapter learns your files by heart.",
        "perplexity": "How surprised the model is by your held-out text, before training and "
        "with the adapter (lower is better; it is the exponential of the validation loss).",
        "lr": "The learning rate of this step (it warms up, then falls with the schedule).",
    }

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        grid = QGridLayout(self)
        grid.setContentsMargins(0, 2, 0, 2)
        grid.setHorizontalSpacing(18)
        grid.setVerticalSpacing(0)
        self.values: dict[str, QLabel] = {}
        self.captions: dict[str, QLabel] = {}
        big = QFont(self.font())
        big.setPointSizeF(big.pointSizeF() * 1.25)
        big.setBold(True)
        for column, (key, caption) in enumerate(self.FIELDS):
            value = QLabel("—")
            value.setFont(big)
            value.setObjectName(f"stat_{key}")
            value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            label = QLabel(caption)
            label.setObjectName("hint")
            for widget in (value, label):
                widget.setToolTip(self.TIPS.get(key, ""))
            grid.addWidget(value, 0, column)
            grid.addWidget(label, 1, column)
            self.values[key], self.captions[key] = value, label
        grid.setColumnStretch(len(self.FIELDS), 1)
        self.clear()

    def clear(self) -> None:
        for value in self.values.values():
            value.setText("—")
        self.show_field("perplexity", False)
        self.captions["validation"].setText("validation loss")

    def set(self, key: str, text: str) -> None:
        self.values[key].setText(text)
        if key == "perplexity":
            self.show_field("perplexity", True)

    def text(self, key: str) -> str:
        return self.values[key].text()

    def show_field(self, key: str, visible: bool) -> None:
        self.values[key].setVisible(visible)
        self.captions[key].setVisible(visible)

    def shown(self) -> dict[str, str]:
        """The fields shown now, by key (for tests and the user guide's checks)."""
        return {k: v.text() for k, v in self.values.items() if not v.isHidden()}


class TextSamples(QTextBrowser):
    """Text samples to read, grouped by step: the prompt in grey, then what the model wrote."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setOpenLinks(False)
        self.entries: dict[tuple[int, int], tuple[str, str, str]] = {}
        self.setPlaceholderText("The samples the trainer writes appear here, step by step.")

    def clear_samples(self) -> None:
        self.entries = {}
        self.clear()

    def add(self, step: int, output: TextOutput) -> None:
        prompt = str(output.extra.get("prompt") or "")
        mode = str(output.extra.get("mode") or "")
        # in order of arrival: the samples of the exported weights come last, whatever their step
        self.entries[(step, output.index)] = (prompt, readable(output.text), mode)
        self._render()

    def _render(self) -> None:
        grey = self.palette().placeholderText().color().name()
        parts = []
        last_step = None
        for (step, _index), (prompt, text, mode) in self.entries.items():
            if step != last_step:
                top = 0 if last_step is None else 10
                parts.append(
                    f"<p style='margin-top:{top}px; margin-bottom:2px'><b>Step {step}</b></p>"
                )
                last_step = step
            body = escape(text).replace("\n", "<br>")
            if not text.strip():  # the model ended at once: say so rather than show nothing
                body = f" <i style='color:{grey}'>(wrote nothing)</i>"
            if prompt and mode == "continuation":
                shown = f"<span style='color:{grey}'>{escape(prompt)}</span>{body}"
            elif prompt:
                shown = f"<span style='color:{grey}'>{escape(prompt)} →</span> {body}"
            else:
                shown = body
            parts.append(
                f"<p style='margin-left:12px; margin-top:0; margin-bottom:4px'>{shown}</p>"
            )
        self.setHtml("".join(parts))
        self._to_end()

    def _to_end(self) -> None:
        bar = self.verticalScrollBar()
        bar.setValue(bar.maximum())

    def resizeEvent(self, event: QResizeEvent) -> None:
        # the newest samples stay in view when the panel is laid out again (shown, resized),
        # unless the reader scrolled up to older ones
        bar = self.verticalScrollBar()
        at_end = bar.value() >= bar.maximum() - 2
        super().resizeEvent(event)
        if at_end:  # once the document is laid out again for the new width
            QTimer.singleShot(0, self, self._to_end)


class TrainingPanel(QWidget):
    """Fine-tune on a folder of the artist's files."""

    #: the user wants the trained adapter in the generate form: adapter name, modality
    use_adapter = Signal(str, str)

    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.studio = session.studio
        self.trainers: dict[str, type[Trainer]] = {}
        self.trainer: type[Trainer] | None = None
        self.form: OptionsForm | None = None
        self.job_id: str | None = None
        self.adapter_name: str | None = None
        self.adapter: AdapterRecord | None = None
        self.pending_name: str | None = None
        self.adapter_modality = "image"
        self._sample_items: dict[tuple[int, int], QListWidgetItem] = {}
        self._ingest_serial = 0
        self._build()
        bridge = session.bridge
        bridge.train_step.connect(self._on_step)
        bridge.sample.connect(self._on_sample)
        bridge.job_state.connect(self._on_state)
        bridge.note.connect(self._on_note)
        session.models_changed.connect(self._refresh_models)
        self.set_trainers(self.studio.trainers())
        self._follow_running()

    # -- layout -------------------------------------------------------------------------------
    def _build(self) -> None:
        self.trainer_combo = QComboBox()
        self.trainer_combo.currentIndexChanged.connect(self._trainer_chosen)
        self.description = QLabel()
        self.description.setObjectName("hint")
        self.description.setWordWrap(True)
        self.base_model = ModelPicker()
        self.dataset = PathEditor(
            FieldSpec("dataset", "path", None, "A folder of your files", "Dataset", widget="folder")
        )
        self.dataset.changed.connect(self._dataset_changed)
        self.name = QLineEdit()
        self.name.setPlaceholderText("a name for the adapter")
        self.ingest = IngestView()
        self._ingest_timer = QTimer(self)
        self._ingest_timer.setSingleShot(True)
        self._ingest_timer.setInterval(300)
        self._ingest_timer.timeout.connect(self.run_ingest)

        self.basics = basics = QFormLayout()
        basics.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        basics.addRow("Trainer", self.trainer_combo)
        basics.addRow("", self.description)
        basics.addRow("Base model", self.base_model)
        basics.addRow("Folder", self.dataset)
        basics.addRow("Name", self.name)
        basics.addRow("", self.ingest)
        self.options_box = QGroupBox("Options")
        self.options_layout = QVBoxLayout(self.options_box)

        self.start_button = QPushButton("Start training")
        self.start_button.setObjectName("primary")
        self.start_button.clicked.connect(self.start)
        self.pause_button = QPushButton("Pause")
        self.pause_button.clicked.connect(self.toggle_pause)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button, 1)
        buttons.addWidget(self.pause_button)
        buttons.addWidget(self.cancel_button)
        self.error = QLabel()
        self.error.setObjectName("fieldError")
        self.error.setWordWrap(True)
        self.error.hide()

        inner = QWidget()
        column = QVBoxLayout(inner)
        column.addLayout(basics)
        column.addWidget(self.options_box)
        column.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(inner)
        left = QWidget()
        left_column = QVBoxLayout(left)
        left_column.setContentsMargins(0, 0, 0, 0)
        left_column.addWidget(scroll, 1)
        left_column.addWidget(self.error)
        left_column.addLayout(buttons)
        left.setMinimumWidth(360)

        from studio.ui.loss_plot import LossPlot

        self.plot = LossPlot()
        self.stats = RunStats()
        # samples: pictures and sounds as a grid of thumbnails, text to read
        self.samples = QListWidget()
        self.samples.setViewMode(QListWidget.ViewMode.IconMode)
        self.samples.setIconSize(SAMPLE_ICON)
        self.samples.setResizeMode(QListWidget.ResizeMode.Adjust)
        self.samples.setMovement(QListWidget.Movement.Static)
        self.text_samples = TextSamples()
        self.sample_stack = QStackedWidget()
        self.sample_stack.addWidget(self.samples)
        self.sample_stack.addWidget(self.text_samples)
        self.notes = QListWidget()
        self.notes.setWordWrap(True)
        self.notes.setObjectName("trainingNotes")
        self.tabs = QTabWidget()
        self.tabs.addTab(self.sample_stack, "Samples")
        self.tabs.addTab(self.notes, "Notes")
        self.tabs.setMinimumHeight(150)
        self.progress = QProgressBar()
        self.progress.setFormat("")
        self.status = QLabel("No training running.")
        self.status.setObjectName("hint")
        self.status.setWordWrap(True)
        self.use_button = QPushButton("Use this adapter")
        self.use_button.setToolTip(
            "Open the generator this adapter is for, with the adapter added to its LoRA adapters"
        )
        self.use_button.setObjectName("primary")
        self.use_button.hide()
        self.use_button.clicked.connect(self._use_clicked)
        status_row = QHBoxLayout()
        status_row.addWidget(self.status, 1)
        status_row.addWidget(self.use_button)
        right = QWidget()
        right_column = QVBoxLayout(right)
        right_column.setContentsMargins(0, 0, 0, 0)
        right_column.addWidget(self.plot, 3)
        right_column.addWidget(self.stats)
        right_column.addWidget(self.tabs, 2)
        right_column.addWidget(self.progress)
        right_column.addLayout(status_row)

        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.setObjectName("trainingSplitter")
        self.splitter.addWidget(left)
        self.splitter.addWidget(right)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([420, 700])
        layout = QVBoxLayout(self)
        layout.addWidget(self.splitter)
        self._update_buttons()

    # -- trainers -----------------------------------------------------------------------------
    def set_trainers(self, trainers: list[type[Trainer]]) -> None:
        self.trainers = {t.id: t for t in trainers}
        self.trainer_combo.blockSignals(True)
        self.trainer_combo.clear()
        for t in sorted(trainers, key=lambda t: t.name):
            self.trainer_combo.addItem(f"{t.name} ({t.modality})", t.id)
        self.trainer_combo.blockSignals(False)
        self._trainer_chosen()

    def select_trainer(self, trainer_id: str) -> bool:
        index = self.trainer_combo.findData(trainer_id)
        if index >= 0:
            self.trainer_combo.setCurrentIndex(index)
            self._trainer_chosen()
        return index >= 0

    def _trainer_chosen(self, *_: Any) -> None:
        tid = self.trainer_combo.currentData()
        trainer = self.trainers.get(tid) if tid else None
        if trainer is self.trainer and self.form is not None:
            return
        self.trainer = trainer
        if self.form is not None:
            discard(self.form)
            self.form = None
        if trainer is None:
            self.description.setText("No trainer is installed (trainers come with plugins).")
            self.start_button.setEnabled(False)
            return
        self.description.setText(trainer.description)
        self.basics.setRowVisible(self.base_model, uses_model(trainer))
        self.form = OptionsForm(trainer.Options)
        self.options_layout.addWidget(self.form)
        self._refresh_models()
        self._update_buttons()
        if self.dataset.value():
            self._ingest_timer.start()

    def _refresh_models(self) -> None:
        if self.trainer is not None and uses_model(self.trainer):
            self.base_model.populate(
                self.session.models, self.trainer.default_model, self.trainer.modality, ""
            )

    # -- dataset ------------------------------------------------------------------------------
    def _dataset_changed(self) -> None:
        folder = self.dataset.value()
        if folder and not self.name.text().strip():
            self.name.setPlaceholderText(Path(folder).name or "adapter")
        self._ingest_timer.start()

    def set_dataset(self, folder: Path) -> None:
        self.dataset.set_value(str(folder))

    def run_ingest(self) -> None:
        """What the trainer can use in the folder (asked off the GUI thread: folders may be big)."""
        folder = self.dataset.value()
        if self.trainer is None or not folder:
            self.ingest.show_hint(
                "Choose a folder of your own files to see what the trainer can use."
            )
            return
        path = Path(folder)
        if not path.is_dir():
            self.ingest.show_hint(f"{path} is not a folder.")
            return
        self._ingest_serial += 1
        serial = self._ingest_serial
        trainer_id = self.trainer.id
        options = self.form.values() if self.form is not None else {}
        self.ingest.show_hint("Looking at the folder…")

        def done(report: IngestReport) -> None:
            if serial == self._ingest_serial:
                self.ingest.show_report(report)
                self._update_buttons()

        def failed(exc: BaseException) -> None:
            if serial == self._ingest_serial:
                self.ingest.show_hint(f"Cannot read the folder: {exc}")

        self.session.run(lambda: self.studio.ingest(trainer_id, path, options), done, failed)

    # -- start / control ----------------------------------------------------------------------
    def build_request(self) -> TrainingRequest | None:
        self.error.hide()
        if self.trainer is None or self.form is None:
            return None
        folder = self.dataset.value()
        if not folder or not Path(folder).is_dir():
            self._fail("Choose the folder with your files first.")
            return None
        if self.form.validate() is None:
            self._fail("Fix the option marked in red.")
            return None
        name = self.name.text().strip() or Path(folder).name
        try:
            return TrainingRequest(
                trainer=self.trainer.id,
                base_model=self.base_model.ref() if uses_model(self.trainer) else None,
                dataset=Path(folder),
                name=name,
                options=self.form.values(),
            )
        except ValueError as exc:
            self._fail(str(exc).splitlines()[0])
            return None

    def _fail(self, message: str) -> None:
        self.error.setText(message)
        self.error.show()
        return None

    def start(self) -> str | None:
        request = self.build_request()
        if request is None:
            return None
        try:
            job_id = self.studio.submit_training(request)
        except StudioError as exc:
            field = getattr(exc, "field", None)
            if not (self.form is not None and field and self.form.show_error(field, str(exc))):
                self._fail(str(exc))
            return None
        self.follow(job_id, request.name, self.trainer.modality if self.trainer else "image")
        self.session.status.emit(f"Training {request.name!r} queued")
        return job_id

    def follow(self, job_id: str, name: str | None = None, modality: str = "image") -> None:
        """Show training ``job_id`` from now on (its curve, numbers, samples and notes)."""
        self.job_id = job_id
        self.adapter_name = None
        self.adapter = None
        self.pending_name = name
        self.adapter_modality = modality
        self.plot.clear()
        self.stats.clear()
        self.samples.clear()
        self._sample_items = {}
        self.text_samples.clear_samples()
        self.sample_stack.setCurrentWidget(
            self.text_samples if modality == "text" else self.samples
        )
        self.notes.clear()
        self._update_notes_tab()
        self.use_button.hide()
        self.progress.setRange(0, 0)
        self.progress.setFormat("")
        self.status.setText("Queued: it starts when the device is free.")
        self._update_buttons()

    def _follow_running(self) -> None:
        """On start, show the training still queued, running or paused, else the newest one
        if the studio was closed while it ran (interrupted): Resume goes on with it."""
        try:
            jobs = self.studio.jobs(limit=50)
        except Exception:
            return
        trainings = [job for job in jobs if job.kind == JobKind.TRAIN]
        job = next((j for j in trainings if not j.state.finished), None)
        if job is None and trainings and trainings[0].state == JobState.INTERRUPTED:
            job = trainings[0]
        if job is not None:
            self._show_job(job)

    def _show_job(self, job: JobRecord) -> None:
        trainer = self.trainers.get(job.component)
        self.follow(job.id, job.request.get("name"), trainer.modality if trainer else "image")
        self._replay(job.id)
        self._replay_samples(job.id)
        if job.total:
            self.progress.setRange(0, job.total)
            self.progress.setValue(job.step)
            self.progress.setFormat(f"step {job.step}/{job.total}")
        self._set_state_text(job.state, job.error)
        self._update_buttons()

    def _replay(self, job_id: str) -> None:
        """The stored steps and notes of a job (its curve and notes, after a restart)."""
        try:
            events = self.studio.job_events(job_id)
        except Exception:
            return
        step_kind, note_kind = kind_of(TrainStep), kind_of(Note)
        for ev in events:
            payload = ev.get("payload") or {}
            try:
                if ev.get("type") == step_kind:
                    self._show_step(TrainStep(**payload), replay=True)
                elif ev.get("type") == note_kind:
                    self._add_note(str(payload["message"]), str(payload.get("level", "info")))
            except (KeyError, TypeError, ValueError):
                continue

    def toggle_pause(self) -> None:
        """Pause the training, or resume it (paused, interrupted, failed or cancelled: from its
        last checkpoint)."""
        if self.job_id is None:
            return
        state = self._job_state()
        if state in RESUMABLE:
            ok = self.studio.resume(self.job_id)
            if ok and state is not None and state.finished:
                self.use_button.hide()
                self.status.setText("Queued: it goes on from its last checkpoint.")
        else:
            ok = self.studio.pause(self.job_id)
        if not ok:
            self.session.status.emit("The training cannot be paused or resumed right now.")
        self._update_buttons()

    def cancel(self) -> None:
        if self.job_id is not None:
            self.studio.cancel(self.job_id)

    def _job_state(self) -> JobState | None:
        if self.job_id is None:
            return None
        try:
            return self.studio.job(self.job_id).state
        except Exception:
            return None

    def _update_buttons(self) -> None:
        state = self._job_state()
        active = state is not None and not state.finished
        self.start_button.setEnabled(self.trainer is not None)
        self.pause_button.setEnabled(active or state in RESUMABLE)
        self.pause_button.setText("Resume" if state in RESUMABLE else "Pause")
        self.cancel_button.setEnabled(active)

    # -- events -------------------------------------------------------------------------------
    def _on_step(self, job_id: str, ev: TrainStep) -> None:
        if job_id == self.job_id:
            self._show_step(ev)

    def _show_step(self, ev: TrainStep, replay: bool = False) -> None:
        self.plot.add(ev.step, ev.loss, ev.total, ev.validation_loss)
        self.stats.set("step", f"{ev.step} / {ev.total}" if ev.total else str(ev.step))
        self.stats.set("loss", number(ev.loss))
        self.stats.set("lr", number(ev.lr, 3))
        self._show_validation()
        if replay or not ev.total:
            return
        self.progress.setRange(0, ev.total)
        self.progress.setValue(ev.step)
        eta = self.studio.eta(self.job_id) if self.job_id else None
        left = human_duration(eta) if eta else ""
        self.stats.set("eta", left or "—")
        self.progress.setFormat(f"step {ev.step}/{ev.total}" + (f" · {left} left" if left else ""))

    def _show_validation(self) -> None:
        if not self.plot.valid:
            return
        step, value = self.plot.valid[-1]
        self.stats.set("validation", number(value))
        self.stats.captions["validation"].setText(
            "validation loss (before training)" if step == 0 else "validation loss"
        )

    def _on_sample(self, job_id: str, ev: Any) -> None:
        if job_id != self.job_id:
            return
        out = ev.output
        if isinstance(out, TextOutput):
            self._show_text_sample(ev.step, out)
        elif isinstance(out, ImageOutput):
            self._show_thumbnail(ev.step, out.index, pil_to_qimage(out.image))
        elif isinstance(out, AudioOutput):
            from studio.ui.waveform import waveform_image

            self._show_thumbnail(ev.step, out.index, waveform_image(out.samples, SAMPLE_ICON))

    def _show_text_sample(self, step: int, output: TextOutput) -> None:
        self.sample_stack.setCurrentWidget(self.text_samples)
        self.text_samples.add(step, output)

    def _show_thumbnail(self, step: int, index: int, image: QImage) -> None:
        self.sample_stack.setCurrentWidget(self.samples)
        key = (step, index)
        item = self._sample_items.get(key)  # a step sampled again (after a resume) is replaced
        if item is None:
            item = QListWidgetItem(f"step {step}")
            self._sample_items[key] = item
            self.samples.addItem(item)
        pixmap = QPixmap.fromImage(image).scaled(
            SAMPLE_ICON,
            Qt.AspectRatioMode.KeepAspectRatio,
            Qt.TransformationMode.FastTransformation,  # samples are small: keep them crisp
        )
        item.setIcon(QIcon(pixmap))
        self.samples.scrollToBottom()

    def _replay_samples(self, job_id: str) -> None:
        """The samples a job saved in the library so far (shown again after a restart)."""
        from studio.ui.thumbnails import make_audio_thumb, make_image_thumb

        try:
            records = [r for r in self.studio.artifacts(job_id=job_id) if r.is_sample]
        except Exception:
            return
        for record in sorted(records, key=lambda r: r.created):
            recipe = record.recipe
            try:
                step = int((recipe.get("training") or {})["step"])
                index = int(recipe.get("index") or 0)
                if record.modality == "text":
                    extra = recipe.get("extra") or {}
                    text = Path(record.path).read_text(encoding="utf-8")
                    output = TextOutput(
                        text,
                        index=index,
                        extra={"prompt": recipe.get("prompt"), "mode": extra.get("mode")},
                    )
                    self._show_text_sample(step, output)
                elif record.modality == "image":
                    self._show_thumbnail(step, index, make_image_thumb(record.path, SAMPLE_ICON))
                elif record.modality == "audio":
                    self._show_thumbnail(step, index, make_audio_thumb(record.path, SAMPLE_ICON))
            except (KeyError, TypeError, ValueError, OSError, RuntimeError):
                continue  # a sample deleted from the gallery, or unreadable: left out

    def _on_note(self, job_id: str, message: str, level: str) -> None:
        if job_id == self.job_id:
            self._add_note(message, level)
            self.status.setText(message)

    def _add_note(self, message: str, level: str) -> None:
        item = QListWidgetItem(message)
        if level == "warning":
            item.setIcon(self.style().standardIcon(QStyle.StandardPixmap.SP_MessageBoxWarning))
            item.setForeground(WARNING_COLOR)
        self.notes.addItem(item)
        self.notes.scrollToBottom()
        self._update_notes_tab()
        point = validation_from_note(message)
        if point is not None:
            step, value = point
            if step == 0 or not any(p[0] == step for p in self.plot.valid):
                self.plot.add_validation(step, value)
                self._show_validation()

    def _update_notes_tab(self) -> None:
        count = self.notes.count()
        warnings = sum(1 for i in range(count) if not self.notes.item(i).icon().isNull())
        title = f"Notes ({count})" if count else "Notes"
        if warnings:
            title = f"Notes ({count}, {warnings} warning{'s' if warnings > 1 else ''})"
        self.tabs.setTabText(self.tabs.indexOf(self.notes), title)

    def _set_state_text(self, state: JobState, error: Any = None) -> None:
        texts = {
            JobState.QUEUED: "Queued: it starts when the device is free.",
            JobState.RUNNING: "Training…",
            JobState.PAUSED: "Paused. Resume to go on from here.",
            JobState.CANCELLED: "Cancelled. Resume goes on from its last checkpoint.",
            JobState.INTERRUPTED: "Interrupted: the studio was closed while it ran. Resume goes "
            "on from its last checkpoint.",
        }
        if state == JobState.FAILED:
            self.status.setText(f"Failed: {error}" if error else "Failed.")
        elif state in texts:
            self.status.setText(texts[state])

    def _on_state(self, job_id: str, state: JobState, error: Any) -> None:
        if job_id != self.job_id:
            return
        self._update_buttons()
        if state == JobState.RUNNING and self.progress.maximum() == 0:
            self.progress.setRange(0, 0)
        if state != JobState.RUNNING:  # no time left to tell while it waits, or at its end
            self.stats.set("eta", "—")
            self.progress.setFormat(self.progress.format().split(" · ")[0])
        if not state.finished:
            if state == JobState.RUNNING:
                self.use_button.hide()
            self._set_state_text(state)
            return
        if state != JobState.SUCCEEDED:
            if self.progress.maximum() == 0:  # ended before its first step
                self.progress.setRange(0, 1)
                self.progress.setValue(0)
            self._set_state_text(state, error)
            return
        self.progress.setRange(0, 1)
        self.progress.setValue(1)
        self.session.refresh_adapters()
        adapter = next((a for a in self.session.adapters if a.job_id == job_id), None)
        if adapter is None:
            adapter = next((a for a in self.session.adapters if a.name == self.pending_name), None)
        if adapter is None:
            self.status.setText("Done.")
            return
        self.adapter = adapter
        self.adapter_name = adapter.name
        self.adapter_modality = adapter.modality
        self._show_result(adapter)
        self.status.setText(f"Done: adapter “{adapter.name}” is in your library.")
        self.use_button.show()

    def _show_result(self, adapter: AdapterRecord) -> None:
        """What the adapter learnt, as its trainer reported it (perplexity before → after)."""
        before = adapter.extra.get("perplexity_before")
        after = adapter.extra.get("perplexity_after")
        if isinstance(before, int | float) and isinstance(after, int | float):
            self.stats.set("perplexity", f"{number(float(before), 3)} → {number(float(after), 3)}")

    def perplexity_text(self) -> str | None:
        """The perplexity shown (``"157 → 21.9"``), or ``None`` when the trainer gave none."""
        label = self.stats.values["perplexity"]
        return None if label.isHidden() else label.text()

    def _use_clicked(self) -> None:
        if self.adapter_name:
            self.use_adapter.emit(self.adapter_name, self.adapter_modality)

    # -- state --------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "trainer": self.trainer.id if self.trainer else None,
            "dataset": self.dataset.value(),
            "splitter": self.splitter.sizes(),
        }

    def restore_state(self, state: dict[str, Any]) -> None:
        if isinstance(state.get("trainer"), str):
            self.select_trainer(state["trainer"])
        if isinstance(state.get("dataset"), str) and Path(state["dataset"]).is_dir():
            self.set_dataset(Path(state["dataset"]))
        sizes = state.get("splitter")
        if isinstance(sizes, list) and all(isinstance(s, int) for s in sizes):
            self.splitter.setSizes(sizes)
