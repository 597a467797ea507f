"""The training panel, built against the trainer contract: trainer, base model and a folder; the
ingest report; options from the trainer's Options; start; a live loss curve; the samples grid;
and the resulting adapter one click away from use. A trainer that uses no model
(``uses_model = False``) gets no base-model picker."""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QFrame,
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
    QVBoxLayout,
    QWidget,
)

from studio.core.errors import StudioError
from studio.core.events import ImageOutput, JobState, TextOutput, TrainStep, kind_of
from studio.core.options import FieldSpec
from studio.core.records import JobKind
from studio.core.training import IngestReport, TrainingRequest
from studio.ui.model_picker import ModelPicker
from studio.ui.options_form import OptionsForm, PathEditor
from studio.ui.util import discard, eta_seconds, human_duration, pil_to_qimage

if TYPE_CHECKING:
    from studio.core.training import Trainer
    from studio.ui.session import Session

SAMPLE_ICON = QSize(96, 96)


def uses_model(trainer: type[Trainer]) -> bool:
    """Whether the trainer starts from a base model (a model-free one shows no picker)."""
    return trainer.uses_model


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
        head = (
            f"<b>{n} usable file{'s' if n != 1 else ''}</b>"
            if n
            else "<b style='color:#d33'>No usable file in this folder.</b>"
        )
        lines = [head]
        lines += [f"• {escape(note)}" for note in report.notes]
        if report.skipped:
            lines.append(f"Skipped {len(report.skipped)}:")
            items = list(report.skipped.items())
            lines += [f"&nbsp;&nbsp;{escape(name)}: {escape(why)}" for name, why in items[:8]]
            if len(items) > 8:
                lines.append(f"&nbsp;&nbsp;… and {len(items) - 8} more")
        self.setText("<br>".join(lines))


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
        self.pending_name: str | None = None
        self._started: float | None = None
        self.adapter_modality = "image"
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
        self.samples = QListWidget()
        self.samples.setViewMode(QListWidget.ViewMode.IconMode)
        self.samples.setIconSize(SAMPLE_ICON)
        self.samples.setResizeMode(QListWidget.ResizeMode.Adjust)
        self.samples.setMovement(QListWidget.Movement.Static)
        self.samples.setMinimumHeight(130)
        self.progress = QProgressBar()
        self.progress.setFormat("")
        self.status = QLabel("No training running.")
        self.status.setObjectName("hint")
        self.status.setWordWrap(True)
        self.use_button = QPushButton("Use this adapter")
        self.use_button.setToolTip(
            "Add the trained adapter to the generate form's LoRA adapters (or select its row)"
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
        right_column.addWidget(QLabel("Loss"))
        right_column.addWidget(self.plot, 3)
        right_column.addWidget(QLabel("Samples"))
        right_column.addWidget(self.samples, 2)
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
        self.job_id = job_id
        self._started = None
        self.adapter_name = None
        self.pending_name = name
        self.adapter_modality = modality
        self.plot.clear()
        self.samples.clear()
        self.use_button.hide()
        self.progress.setRange(0, 0)
        self.status.setText("Queued: it starts when the device is free.")
        self._update_buttons()

    def _follow_running(self) -> None:
        """On start, show a training that is still queued, running or paused (curve included)."""
        try:
            jobs = self.studio.jobs(limit=50)
        except Exception:
            return
        for job in jobs:
            if job.kind == JobKind.TRAIN and not job.state.finished:
                trainer = self.trainers.get(job.component)
                self.follow(
                    job.id, job.request.get("name"), trainer.modality if trainer else "image"
                )
                self._replay_steps(job.id)
                self._set_state_text(job.state)
                return

    def _replay_steps(self, job_id: str) -> None:
        try:
            events = self.studio.job_events(job_id)
        except Exception:
            return
        for ev in events:
            if ev.get("type") == kind_of(TrainStep):
                payload = ev.get("payload") or {}
                try:
                    self.plot.add(
                        int(payload["step"]),
                        float(payload["loss"]),
                        int(payload.get("total", 0)),
                        payload.get("validation_loss"),
                    )
                except (KeyError, TypeError, ValueError):
                    continue

    def toggle_pause(self) -> None:
        if self.job_id is None:
            return
        state = self._job_state()
        if state == JobState.PAUSED:
            ok = self.studio.resume(self.job_id)
        else:
            ok = self.studio.pause(self.job_id)
        if not ok:
            self.session.status.emit("The training cannot be paused or resumed right now.")

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
        self.pause_button.setEnabled(active)
        self.pause_button.setText("Resume" if state == JobState.PAUSED else "Pause")
        self.cancel_button.setEnabled(active)

    # -- events -------------------------------------------------------------------------------
    def _on_step(self, job_id: str, ev: Any) -> None:
        if job_id != self.job_id:
            return
        self.plot.add(ev.step, ev.loss, ev.total, ev.validation_loss)
        if ev.total:
            self.progress.setRange(0, ev.total)
            self.progress.setValue(ev.step)
            if self._started is None:  # read once: a fast trainer sends many steps a second
                try:
                    self._started = self.studio.job(job_id).started
                except Exception:
                    self._started = None
            eta = eta_seconds(self._started, ev.step, ev.total)
            self.progress.setFormat(
                f"step {ev.step}/{ev.total}" + (f" · {human_duration(eta)} left" if eta else "")
            )
        self.status.setText(f"Training: loss {ev.loss:.4g}")

    def _on_sample(self, job_id: str, ev: Any) -> None:
        if job_id != self.job_id:
            return
        out = ev.output
        item = QListWidgetItem(f"step {ev.step}")
        if isinstance(out, ImageOutput):
            pixmap = QPixmap.fromImage(pil_to_qimage(out.image)).scaled(
                SAMPLE_ICON,
                Qt.AspectRatioMode.KeepAspectRatio,
                Qt.TransformationMode.FastTransformation,  # samples are small: keep them crisp
            )
            item.setIcon(QIcon(pixmap))
        elif isinstance(out, TextOutput):
            item.setText(f"step {ev.step}\n{out.text[:80]}")
            item.setToolTip(out.text)
        else:
            from studio.ui.waveform import waveform_image

            item.setIcon(QIcon(QPixmap.fromImage(waveform_image(out.samples, SAMPLE_ICON))))
        self.samples.addItem(item)
        self.samples.scrollToBottom()

    def _on_note(self, job_id: str, message: str, _level: str) -> None:
        if job_id == self.job_id:
            self.status.setText(message)

    def _set_state_text(self, state: JobState, error: Any = None) -> None:
        texts = {
            JobState.QUEUED: "Queued: it starts when the device is free.",
            JobState.RUNNING: "Training…",
            JobState.PAUSED: "Paused. Resume to go on from here.",
            JobState.CANCELLED: "Cancelled.",
            JobState.INTERRUPTED: "Interrupted (the studio was closed): resume it from the Queue.",
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
        if not state.finished:
            self._set_state_text(state)
            return
        self.progress.setRange(0, 1)
        self.progress.setValue(1 if state == JobState.SUCCEEDED else 0)
        if state != JobState.SUCCEEDED:
            self._set_state_text(state, error)
            return
        self.session.refresh_adapters()
        adapter = next((a for a in self.session.adapters if a.job_id == job_id), None)
        if adapter is None:
            adapter = next((a for a in self.session.adapters if a.name == self.pending_name), None)
        if adapter is not None:
            self.adapter_name = adapter.name
            self.adapter_modality = adapter.modality
            self.status.setText(f"Done: adapter “{adapter.name}” is in your library.")
            self.use_button.show()
        else:
            self.status.setText("Done.")

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
