"""The models panel: hub cache, studio library and catalog with disk sizes and a "fits in memory?"
estimate against the cache budget, plus the live memory use of the model cache."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QColor, QDesktopServices
from PySide6.QtWidgets import (
    QComboBox,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from studio.core.errors import StudioError
from studio.core.records import ModelEntry
from studio.core.units import human_size

if TYPE_CHECKING:
    from studio.ui.session import Session

COLUMNS = ("Model", "Modality", "Source", "Size", "Status", "Fits in memory?", "Licence")
REF_ROLE = Qt.ItemDataRole.UserRole + 1
SOURCE_TITLES = {"hub": "hub cache", "library": "studio library", "catalog": "catalog"}


def fits_text(
    fit: tuple[bool, int, int | None] | None, device: str
) -> tuple[str, str, bool | None]:
    """("yes"/"no"/"?", explanation, verdict) from ``fits_in_memory``'s answer (or ``None``)."""
    if fit is None:
        return "?", "size unknown (not on disk, not in the catalog)", None
    ok, needed, budget = fit
    if budget is None:
        return "yes", f"needs about {human_size(needed)}; memory size unknown", True
    why = f"needs about {human_size(needed)} of the {human_size(budget)} budget on {device}"
    return ("yes" if ok else "no"), why, ok


class SortItem(QTreeWidgetItem):
    """Sorts by the number stored in a column's UserRole when there is one (sizes)."""

    def __lt__(self, other: QTreeWidgetItem) -> bool:
        tree = self.treeWidget()
        col = tree.sortColumn() if tree is not None else 0
        mine, theirs = (
            self.data(col, Qt.ItemDataRole.UserRole),
            other.data(col, Qt.ItemDataRole.UserRole),
        )
        if isinstance(mine, int | float) and isinstance(theirs, int | float):
            return mine < theirs
        return self.text(col).lower() < other.text(col).lower()


class CacheView(QGroupBox):
    """Live memory use of the shared model cache (refreshed every 2 s while visible)."""

    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__("Model cache (in memory now)", parent)
        self.session = session
        self.device_bar = QProgressBar()
        self.host_bar = QProgressBar()
        self.counters = QLabel()
        self.counters.setObjectName("hint")
        self.entries = QTreeWidget()
        self.entries.setHeaderLabels(["Loaded", "Kind", "Where", "Memory", "In use"])
        self.entries.setRootIsDecorated(False)
        self.entries.header().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.entries.setMaximumHeight(140)
        self.free_button = QPushButton("Free unused")
        self.free_button.setToolTip("Drop every cached model not in use right now")
        self.free_button.clicked.connect(self.free)
        bars = QHBoxLayout()
        self.device_label = QLabel("Device")
        bars.addWidget(self.device_label)
        bars.addWidget(self.device_bar, 1)
        bars.addWidget(QLabel("Host"))
        bars.addWidget(self.host_bar, 1)
        bars.addWidget(self.free_button)
        layout = QVBoxLayout(self)
        layout.addLayout(bars)
        layout.addWidget(self.counters)
        layout.addWidget(self.entries)
        self.timer = QTimer(self)
        self.timer.setInterval(2000)
        self.timer.timeout.connect(self.refresh)
        self.timer.start()
        self.refresh()

    @staticmethod
    def _bar(bar: QProgressBar, used: int, budget: int | None) -> None:
        if budget:
            bar.setRange(0, 1000)
            bar.setValue(min(1000, int(used / budget * 1000)))
            bar.setFormat(f"{human_size(used)} of {human_size(budget)}")
        else:
            bar.setRange(0, 1)
            bar.setValue(0)
            bar.setFormat(f"{human_size(used)} (no budget)")

    def refresh(self) -> None:
        if not self.isVisible() and self.entries.topLevelItemCount():
            return  # cheap, but no need while hidden
        cache = self.session.studio.cache
        try:
            stats = cache.stats()
        except Exception as exc:
            self.counters.setText(f"cache stats unavailable: {exc}")
            return
        device = self.session.studio.device
        self.device_label.setText(device if device != "auto" else "Device")
        self._bar(self.device_bar, stats.device_bytes, getattr(cache, "device_budget", None))
        self._bar(self.host_bar, stats.host_bytes, getattr(cache, "host_budget", None))
        on_device = device not in ("cpu", "auto") or stats.device_bytes > 0
        self.device_bar.setVisible(on_device)
        self.device_label.setVisible(on_device)
        self.counters.setText(
            f"{len(stats.entries)} loaded · {stats.hits} hits · {stats.misses} loads · "
            f"{stats.evictions} evictions · {stats.offloads} offloads"
        )
        self.entries.clear()
        for e in reversed(stats.entries):  # most recent first
            item = QTreeWidgetItem(
                [
                    e.key.ref,
                    e.key.kind,
                    e.location,
                    human_size(e.bytes),
                    "yes" if e.pins else "",
                ]
            )
            item.setToolTip(
                0, f"{e.key.ref}\nrevision {e.key.revision}\n{e.key.dtype} on {e.key.device}"
            )
            self.entries.addTopLevelItem(item)
        if not stats.entries:
            self.entries.addTopLevelItem(QTreeWidgetItem(["Nothing loaded yet", "", "", "", ""]))

    def free(self) -> None:
        freed = self.session.studio.cache.free()
        self.session.status.emit(f"Freed {human_size(freed)} of cached models")
        self.refresh()


class ModelsPanel(QWidget):
    """Everything the studio knows of, what is downloaded, and whether it fits."""

    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.studio = session.studio
        self.search = QLineEdit()
        self.search.setPlaceholderText("Filter models…")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(self._apply_filter)
        self.source = QComboBox()
        for label, value in (
            ("Everything", None),
            ("Downloaded", "downloaded"),
            ("Catalog (not downloaded)", "catalog"),
            ("Hub cache", "hub"),
            ("Studio library", "library"),
        ):
            self.source.addItem(label, value)
        self.source.currentIndexChanged.connect(self._apply_filter)
        self.refresh_button = QPushButton("Rescan")
        self.refresh_button.setToolTip("Scan the Hugging Face cache and the library again")
        self.refresh_button.clicked.connect(session.refresh_models)
        self.download_button = QPushButton("Download")
        self.download_button.setToolTip("Download into the Hugging Face cache (resumable)")
        self.download_button.clicked.connect(self.download_selected)
        self.cancel_button = QPushButton("Cancel download")
        self.cancel_button.clicked.connect(self.cancel_selected)
        self.delete_button = QPushButton("Delete")
        self.delete_button.setToolTip("Delete the model's files from the hub cache")
        self.delete_button.clicked.connect(self.delete_selected)
        self.hub_id = QLineEdit()
        self.hub_id.setPlaceholderText("any hub id, e.g. org/model-name")
        self.hub_button = QPushButton("Download id")
        self.hub_button.clicked.connect(self.download_typed)
        self.hub_id.returnPressed.connect(self.download_typed)
        #: ref -> download job id, while it runs
        self.downloads: dict[str, str] = {}
        #: download job id -> (bytes done, bytes expected)
        self.download_progress: dict[str, tuple[int, int]] = {}
        self.folder_button = QPushButton("Open folder")
        self.folder_button.clicked.connect(self.open_folder)
        top = QHBoxLayout()
        top.addWidget(self.search, 2)
        top.addWidget(self.source)
        top.addWidget(self.refresh_button)
        top.addStretch(1)
        top.addWidget(self.folder_button)
        top.addWidget(self.download_button)
        top.addWidget(self.cancel_button)
        top.addWidget(self.delete_button)
        hub_row = QHBoxLayout()
        hub_row.addWidget(QLabel("Download from the hub:"))
        hub_row.addWidget(self.hub_id, 1)
        hub_row.addWidget(self.hub_button)

        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(list(COLUMNS))
        self.tree.setRootIsDecorated(False)
        self.tree.setAlternatingRowColors(True)
        self.tree.setSortingEnabled(True)
        header = self.tree.header()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setStretchLastSection(False)
        for col, width in ((1, 80), (2, 110), (3, 80), (4, 120), (5, 120), (6, 150)):
            header.resizeSection(col, width)
        self.tree.currentItemChanged.connect(lambda *_: self._update_buttons())
        self.detail = QLabel()
        self.detail.setObjectName("hint")
        self.detail.setWordWrap(True)
        self.detail.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.summary = QLabel("Scanning the model cache…")
        self.summary.setObjectName("hint")

        self.cache_view = CacheView(session)
        upper = QWidget()
        upper_layout = QVBoxLayout(upper)
        upper_layout.setContentsMargins(0, 0, 0, 0)
        upper_layout.addLayout(top)
        upper_layout.addWidget(self.tree, 1)
        upper_layout.addWidget(self.detail)
        upper_layout.addLayout(hub_row)
        upper_layout.addWidget(self.summary)
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.setObjectName("modelsSplitter")
        self.splitter.addWidget(upper)
        self.splitter.addWidget(self.cache_view)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.splitter)
        session.models_changed.connect(self.populate)
        session.bridge.progress.connect(self._on_progress)
        session.bridge.job_state.connect(self._on_state)
        self.populate()

    # -- listing ------------------------------------------------------------------------------
    def populate(self) -> None:
        self.tree.setSortingEnabled(False)
        self.tree.clear()
        device = self.studio.device if self.studio.device != "auto" else "cpu"
        models = list(self.session.models)
        listed = {entry.ref for entry in models}
        # a hub id typed in is listed from the moment its download starts, with its progress
        models += [
            ModelEntry(ref=ref, source="hub", modality=None, size_bytes=None, downloaded=False)
            for ref in self.downloads
            if ref not in listed
        ]
        for entry in models:
            fits, why, verdict = fits_text(self.session.fits.get(entry.ref), device)
            status = self._status(entry)
            item = SortItem(
                [
                    entry.name or entry.ref if entry.source == "catalog" else entry.ref,
                    entry.modality or "",
                    SOURCE_TITLES.get(entry.source, entry.source),
                    human_size(entry.size_bytes) if entry.size_bytes else "",
                    status,
                    fits,
                    entry.licence or "",
                ]
            )
            item.setData(0, REF_ROLE, entry)
            item.setToolTip(0, f"{entry.ref}\n{entry.path or ''}".strip())
            item.setToolTip(5, why)
            if verdict is False:
                item.setForeground(5, QColor(200, 60, 60))
            if not entry.downloaded:
                item.setForeground(4, QColor(140, 140, 140))
            # sort sizes numerically
            item.setData(3, Qt.ItemDataRole.UserRole, entry.size_bytes or 0)
            self.tree.addTopLevelItem(item)
            if entry.ref in self.downloads:
                self._show_progress(item)
        self.tree.setSortingEnabled(True)
        self.tree.sortByColumn(4, Qt.SortOrder.AscendingOrder)
        models = self.session.models
        downloaded = [m for m in models if m.downloaded]
        on_disk = sum(m.size_bytes or 0 for m in downloaded)
        if not self.session.models_loaded:
            self.summary.setText("Scanning the model cache…")
        elif not downloaded:
            self.summary.setText(
                "No model is downloaded yet. The catalog lists small models that run on a CPU; "
                "a model downloads the first time it is used and then works offline."
            )
        else:
            self.summary.setText(
                f"{len(downloaded)} downloaded ({human_size(on_disk)} on disk) · "
                f"{len(models) - len(downloaded)} more in the catalog"
            )
        self._apply_filter()
        self._update_buttons()

    def _apply_filter(self) -> None:
        text = self.search.text().strip().lower()
        source = self.source.currentData()
        for i in range(self.tree.topLevelItemCount()):
            item = self.tree.topLevelItem(i)
            if item is None:
                continue
            entry: ModelEntry = item.data(0, REF_ROLE)
            hay = f"{entry.ref} {entry.name or ''} {entry.modality or ''}".lower()
            show = not text or all(word in hay for word in text.split())
            if source == "downloaded":
                show = show and entry.downloaded
            elif source is not None:
                show = show and entry.source == source
            item.setHidden(not show)

    def reveal(self, ref: str) -> bool:
        """Show and select ``ref``'s row (filters cleared), ready for Download; False if it is
        not listed (the list then shows the catalog, to pick from)."""
        self.search.clear()
        for i in range(self.tree.topLevelItemCount()):
            item = self.tree.topLevelItem(i)
            if item is not None and item.data(0, REF_ROLE).ref == ref:
                self.source.setCurrentIndex(0)
                self.tree.setCurrentItem(item)
                self.tree.scrollToItem(item)
                return True
        self.source.setCurrentIndex(self.source.findData("catalog"))
        return False

    def selected(self) -> ModelEntry | None:
        item = self.tree.currentItem()
        return item.data(0, REF_ROLE) if item is not None else None

    def _update_buttons(self) -> None:
        entry = self.selected()
        downloading = entry is not None and entry.ref in self.downloads
        self.download_button.setEnabled(
            entry is not None and not entry.downloaded and not downloading
        )
        self.cancel_button.setVisible(downloading)
        library = entry is not None and entry.source == "library"
        self.delete_button.setText("Remove from library" if library else "Delete")
        self.delete_button.setToolTip(
            "Forget this model (its folder stays where it is)"
            if library
            else "Delete the model's files from the Hugging Face cache"
        )
        self.delete_button.setEnabled(
            entry is not None
            and not downloading
            and ((entry.downloaded and entry.source == "hub") or library)
        )
        self.folder_button.setEnabled(entry is not None and entry.path is not None)
        if entry is None:
            self.detail.setText("")
            return
        from studio.core.catalog import catalog_entry

        cat = catalog_entry(entry.ref)
        parts = [f"<b>{entry.name or entry.ref}</b> — {entry.ref}"]
        if cat is not None:
            parts.append(cat.description)
        if entry.path:
            parts.append(f"in {entry.path}")
        self.detail.setText("<br>".join(parts))

    # -- actions ------------------------------------------------------------------------------
    def open_folder(self) -> None:
        entry = self.selected()
        if entry is not None and entry.path is not None:
            from PySide6.QtCore import QUrl

            folder = entry.path if entry.path.is_dir() else entry.path.parent
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))

    def _status(self, entry: ModelEntry) -> str:
        job = self.downloads.get(entry.ref)
        if job is not None:
            done, total = self.download_progress.get(job, (0, 0))
            if total:
                return f"downloading {done * 100 // total}%"
            return "downloading…"
        return "downloaded" if entry.downloaded else "not downloaded"

    def _show_progress(self, item: QTreeWidgetItem) -> None:
        """A progress bar in the Status cell of a model being downloaded."""
        entry: ModelEntry = item.data(0, REF_ROLE)
        job = self.downloads.get(entry.ref)
        bar = self.tree.itemWidget(item, 4)
        if job is None:
            if bar is not None:
                self.tree.removeItemWidget(item, 4)
            return
        if not isinstance(bar, QProgressBar):
            bar = QProgressBar()
            bar.setTextVisible(True)
            self.tree.setItemWidget(item, 4, bar)
        done, total = self.download_progress.get(job, (0, 0))
        if total:
            bar.setRange(0, 1000)
            bar.setValue(min(1000, done * 1000 // total))
            bar.setFormat(f"{done * 100 // total}% of {human_size(total)}")
        else:
            bar.setRange(0, 0)  # busy: the size is not known yet
        bar.setToolTip(f"{human_size(done)} of {human_size(total) if total else '?'}")
        item.setText(4, self._status(entry))

    def download(self, ref: str) -> str | None:
        """Start downloading ``ref`` (a job: progress here and in the Queue, cancellable)."""
        try:
            job_id = self.studio.download(ref)
        except StudioError as exc:
            self.session.status.emit(f"Cannot download: {exc}")
            self.detail.setText(f"<span style='color:#d33'>Cannot download: {exc}</span>")
            return None
        self.downloads[ref] = job_id
        self.session.status.emit(f"Downloading {ref}: progress here and in the Queue")
        self.populate()
        return job_id

    def download_selected(self) -> str | None:
        entry = self.selected()
        return self.download(entry.ref) if entry is not None else None

    def download_typed(self) -> str | None:
        ref = self.hub_id.text().strip()
        if not ref:
            return None
        return self.download(ref)

    def cancel_selected(self) -> bool:
        entry = self.selected()
        job = self.downloads.get(entry.ref) if entry is not None else None
        return bool(job and self.studio.cancel(job))

    def delete_selected(self) -> bool:
        """Ask, then delete the selected hub model's files (or forget a library model), off the
        GUI thread; False if nothing was started."""
        entry = self.selected()
        if entry is None or not self.delete_button.isEnabled():
            return False
        if entry.source == "library":
            question = (
                f"Remove {entry.ref} from the studio library?\n\nIts folder stays where it is; "
                "add it again any time."
            )
        else:
            size = f" ({human_size(entry.size_bytes)})" if entry.size_bytes else ""
            question = (
                f"Delete {entry.ref}{size} from the Hugging Face cache?\n\nOther tools that use "
                "the same cache lose it too; it can be downloaded again."
            )
        answer = QMessageBox.question(
            self,
            "Delete model",
            question,
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Cancel,
        )
        if answer != QMessageBox.StandardButton.Yes:
            return False
        self.delete_button.setEnabled(False)
        studio, ref = self.studio, entry.ref

        def done(freed: int) -> None:
            if entry.source == "library":
                self.session.status.emit(f"Removed {ref} from the library")
            else:
                self.session.status.emit(f"Deleted {ref} ({human_size(freed)} freed)")
            self.session.refresh_models()

        def failed(exc: BaseException) -> None:
            self.session.status.emit(f"Cannot delete {ref}: {exc}")
            self._update_buttons()

        # deleting gigabytes takes a while: never on the GUI thread
        self.session.run(lambda: studio.delete_model(ref), done, failed)
        return True

    def _ref_of_job(self, job_id: str) -> str | None:
        return next((ref for ref, job in self.downloads.items() if job == job_id), None)

    def _on_progress(self, job_id: str, step: int, total: int, _message: str) -> None:
        ref = self._ref_of_job(job_id)
        if ref is None:
            return
        self.download_progress[job_id] = (step, total)
        for i in range(self.tree.topLevelItemCount()):
            item = self.tree.topLevelItem(i)
            if item is not None and item.data(0, REF_ROLE).ref == ref:
                self._show_progress(item)

    def _on_state(self, job_id: str, state: Any, error: Any) -> None:
        ref = self._ref_of_job(job_id)
        if ref is None or not state.finished:
            return
        del self.downloads[ref]
        self.download_progress.pop(job_id, None)
        if state.value == "succeeded":
            self.session.status.emit(f"Downloaded {ref}")
        elif error:
            self.session.status.emit(f"Download of {ref} {state.value}: {error}")
        self.session.refresh_models()
