"""The queue: every job (generations, trainings, downloads) with state, progress, ETA, and the
actions cancel, pause / resume (training), move up / down (queued jobs)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QRect, QRectF, Qt, QTimer
from PySide6.QtGui import QPainter, QPalette
from PySide6.QtWidgets import (
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from studio.core.events import JobState
from studio.core.records import JobKind, JobRecord
from studio.ui.util import eta_seconds, human_duration, when

if TYPE_CHECKING:
    from studio.ui.session import Session

COLUMNS = ("Job", "Kind", "State", "Progress", "ETA", "Created")
PROGRESS_COL = 3
JOB_ROLE = Qt.ItemDataRole.UserRole + 1
ACTIVE = (JobState.QUEUED, JobState.RUNNING, JobState.PAUSED)


def describe(job: JobRecord) -> str:
    """A one-line summary: component and prompt (or dataset / name for trainings)."""
    req = job.request or {}
    detail = req.get("prompt") or req.get("name") or req.get("dataset") or ""
    detail = str(detail).replace("\n", " ")
    if len(detail) > 60:
        detail = detail[:57] + "…"
    return f"{job.component}: {detail}" if detail else job.component


def resumable(job: JobRecord) -> bool:
    """What ``Studio.resume`` takes: a paused training, an interrupted job, and a training or
    download that failed or was cancelled (they go on from their checkpoint / missing files)."""
    if job.state == JobState.INTERRUPTED:
        return True
    if job.kind == JobKind.TRAIN:
        return job.state in (JobState.PAUSED, JobState.FAILED, JobState.CANCELLED)
    if job.kind == JobKind.DOWNLOAD:
        return job.state in (JobState.FAILED, JobState.CANCELLED)
    return False


class ProgressDelegate(QStyledItemDelegate):
    """Draws the progress column as a slim bar with ``step/total`` beside it."""

    def paint(
        self,
        painter: QPainter,
        option: QStyleOptionViewItem,
        index: QModelIndex | QPersistentModelIndex,
    ) -> None:
        value = index.data(Qt.ItemDataRole.UserRole)
        if not isinstance(value, tuple):
            super().paint(painter, option, index)
            return
        step, total = value
        rect: QRect = option.rect  # type: ignore[attr-defined]
        pal = option.palette  # type: ignore[attr-defined]
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        text = f"{step}/{total}" if total > 0 else ""
        text_w = painter.fontMetrics().horizontalAdvance("0000/0000")
        bar = QRectF(rect.left() + 4, rect.center().y() - 3, rect.width() - text_w - 12, 6)
        if bar.width() > 10:
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(pal.color(QPalette.ColorRole.Mid))
            painter.drawRoundedRect(bar, 3, 3)
            if total > 0 and step > 0:
                done = QRectF(bar)
                done.setWidth(bar.width() * min(1.0, step / total))
                painter.setBrush(pal.color(QPalette.ColorRole.Highlight))
                painter.drawRoundedRect(done, 3, 3)
        painter.setPen(pal.color(QPalette.ColorRole.Text))
        painter.drawText(
            QRectF(rect.right() - text_w - 4, rect.top(), text_w, rect.height()),
            Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
            text,
        )
        painter.restore()


class QueuePanel(QWidget):
    """All jobs, newest first; live progress from the bridge."""

    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.studio = session.studio
        self.jobs: dict[str, JobRecord] = {}
        self.items: dict[str, QTreeWidgetItem] = {}
        self.tree = QTreeWidget()
        self.tree.setColumnCount(len(COLUMNS))
        self.tree.setHeaderLabels(list(COLUMNS))
        self.tree.setRootIsDecorated(False)
        self.tree.setUniformRowHeights(True)
        self.tree.setAlternatingRowColors(True)
        self.tree.setItemDelegateForColumn(PROGRESS_COL, ProgressDelegate(self.tree))
        header = self.tree.header()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setStretchLastSection(False)
        for col, width in ((1, 80), (2, 90), (3, 140), (4, 70), (5, 130)):
            header.resizeSection(col, width)
        self.tree.currentItemChanged.connect(lambda *_: self._update_buttons())

        self.cancel_button = QPushButton("Cancel")
        self.pause_button = QPushButton("Pause")
        self.resume_button = QPushButton("Resume")
        self.up_button = QPushButton("Move up")
        self.down_button = QPushButton("Move down")
        self.cancel_button.clicked.connect(self.cancel_selected)
        self.pause_button.clicked.connect(self.pause_selected)
        self.resume_button.clicked.connect(self.resume_selected)
        self.up_button.clicked.connect(lambda: self.move_selected(-1))
        self.down_button.clicked.connect(lambda: self.move_selected(1))
        self.error = QLabel()
        self.error.setObjectName("fieldError")
        self.error.setWordWrap(True)
        self.error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        buttons = QHBoxLayout()
        for b in (
            self.cancel_button,
            self.pause_button,
            self.resume_button,
            self.up_button,
            self.down_button,
        ):
            buttons.addWidget(b)
        buttons.addStretch(1)
        self.summary = QLabel()
        self.summary.setObjectName("hint")
        buttons.addWidget(self.summary)
        layout = QVBoxLayout(self)
        layout.addLayout(buttons)
        layout.addWidget(self.tree, 1)
        layout.addWidget(self.error)

        self._reload_soon = QTimer(self)
        self._reload_soon.setSingleShot(True)
        self._reload_soon.setInterval(150)
        self._reload_soon.timeout.connect(self.reload)
        self._tick = QTimer(self)
        self._tick.setInterval(1000)
        self._tick.timeout.connect(self._refresh_times)
        self._tick.start()
        session.bridge.job_state.connect(lambda *_: self.reload_soon())
        session.bridge.progress.connect(self._on_progress)
        session.bridge.train_step.connect(
            lambda job_id, ev: self._on_progress(job_id, ev.step, ev.total, "")
        )
        self.reload()

    # -- data ---------------------------------------------------------------------------------
    def reload(self) -> None:
        """Re-read the job list from the store (after state changes, debounced)."""
        selected = self.selected_id()
        try:
            jobs = self.studio.jobs(limit=200)
        except Exception as exc:
            self.session.status.emit(f"Queue: {exc}")
            return
        # Active jobs first (running, paused, queued in queue order), then the finished ones.
        order = {JobState.RUNNING: 0, JobState.PAUSED: 1, JobState.QUEUED: 2}
        active = [j for j in jobs if j.state in ACTIVE]
        active.sort(key=lambda j: (order[j.state], int(j.priority), j.position, j.created))
        done = [j for j in jobs if j.state not in ACTIVE]
        ordered = active + done
        self.jobs = {j.id: j for j in ordered}
        self.tree.clear()
        self.items = {}
        for job in ordered:
            item = QTreeWidgetItem()
            item.setData(0, JOB_ROLE, job.id)
            self.items[job.id] = item
            self._fill(item, job)
            self.tree.addTopLevelItem(item)
        if selected in self.items:
            self.tree.setCurrentItem(self.items[selected])
        running = sum(1 for j in active if j.state == JobState.RUNNING)
        queued = sum(1 for j in active if j.state == JobState.QUEUED)
        self.summary.setText(f"{running} running · {queued} queued · {len(done)} finished")
        self._update_buttons()

    def reload_soon(self) -> None:
        """Reload within 150 ms: a burst of events gives one reload (the timer is not pushed on)."""
        if not self._reload_soon.isActive():
            self._reload_soon.start()

    def _fill(self, item: QTreeWidgetItem, job: JobRecord) -> None:
        item.setText(0, describe(job))
        item.setToolTip(0, job.error or job.id)
        item.setText(1, str(job.kind))
        item.setText(2, str(job.state))
        if job.state == JobState.FAILED:
            item.setForeground(2, Qt.GlobalColor.red)
        item.setData(PROGRESS_COL, Qt.ItemDataRole.UserRole, (job.step, job.total))
        item.setText(4, self._eta(job))
        item.setText(5, when(job.created))

    @staticmethod
    def _eta(job: JobRecord) -> str:
        if job.state != JobState.RUNNING:
            return ""
        return human_duration(eta_seconds(job.started, job.step, job.total, time.time()))

    def _on_progress(self, job_id: str, step: int, total: int, _message: str) -> None:
        job, item = self.jobs.get(job_id), self.items.get(job_id)
        if job is None or item is None:
            self.reload_soon()
            return
        job.step, job.total = step, total
        if job.started is None:
            job.started = time.time()
        item.setData(PROGRESS_COL, Qt.ItemDataRole.UserRole, (step, total))
        item.setText(4, self._eta(job))

    def _refresh_times(self) -> None:
        for job_id, job in self.jobs.items():
            if job.state == JobState.RUNNING:
                self.items[job_id].setText(4, self._eta(job))

    # -- selection and actions ----------------------------------------------------------------
    def selected_id(self) -> str | None:
        item = self.tree.currentItem()
        return item.data(0, JOB_ROLE) if item is not None else None

    def select(self, job_id: str) -> bool:
        item = self.items.get(job_id)
        if item is None:
            return False
        self.tree.setCurrentItem(item)
        return True

    def _update_buttons(self) -> None:
        job = self.jobs.get(self.selected_id() or "")
        state = job.state if job else None
        training = job is not None and job.kind == JobKind.TRAIN
        self.cancel_button.setEnabled(state in ACTIVE)
        self.pause_button.setEnabled(training and state in (JobState.RUNNING, JobState.QUEUED))
        self.resume_button.setEnabled(job is not None and resumable(job))
        self.up_button.setEnabled(state == JobState.QUEUED)
        self.down_button.setEnabled(state == JobState.QUEUED)
        self.error.setText(f"Error: {job.error}" if job and job.error else "")
        self.error.setVisible(bool(job and job.error))

    def _act(self, action: Any, verb: str) -> bool:
        job_id = self.selected_id()
        if job_id is None:
            return False
        try:
            ok = bool(action(job_id))
        except Exception as exc:
            self.session.status.emit(f"Could not {verb}: {exc}")
            return False
        if not ok:
            self.session.status.emit(f"Could not {verb} this job in its current state.")
        self.reload()
        return ok

    def cancel_selected(self) -> bool:
        return self._act(self.studio.cancel, "cancel")

    def pause_selected(self) -> bool:
        return self._act(self.studio.pause, "pause")

    def resume_selected(self) -> bool:
        return self._act(self.studio.resume, "resume")

    def move_selected(self, delta: int) -> bool:
        return self._act(lambda job_id: self.studio.move(job_id, delta), "move")
