"""The generate panel: generator picker, prompt, model, LoRA adapters, options form, Generate /
Cancel, and the output as it is made (image previews per step, streamed text, audio waveform).

The form follows the generator: a generator whose prompt may be empty (``prompt_required =
False``, e.g. image-to-image) gets a prompt box marked optional (it still guides the result
when given); a generator that uses no model (``uses_model = False``) gets no model picker."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFont, QKeySequence, QShortcut, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from studio.core.errors import InvalidRequest, OptionsError, StudioError
from studio.core.events import JobState
from studio.core.generator import GenerationRequest
from studio.core.units import human_size
from studio.ui.adapter_list import AdapterList
from studio.ui.model_picker import ModelPicker
from studio.ui.options_form import OptionsForm, SeedEditor
from studio.ui.output_view import OutputView
from studio.ui.util import discard, eta_seconds, human_duration, icon

if TYPE_CHECKING:
    from studio.core.generator import Generator
    from studio.ui.session import Session

ID_ROLE = Qt.ItemDataRole.UserRole + 1
MODALITY_TITLES = {"image": "Images", "text": "Text", "audio": "Audio"}
PROMPT_HINT = "Describe what to make…  (Ctrl+Enter generates)"
OPTIONAL_PROMPT_HINT = "Optional: describe what to make, or leave it empty…  (Ctrl+Enter generates)"
#: the task whose generator is shown first (what most people start with)
FIRST_TASK = "text-to-image"


def uses_model(gen: type[Generator]) -> bool:
    """Whether the generator takes a model (a model-free one shows no model picker)."""
    return gen.uses_model


class GeneratorPicker(QComboBox):
    """Every installed generator, grouped under a header per modality."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._model = QStandardItemModel(self)
        self.setModel(self._model)
        self.setMinimumContentsLength(20)
        self.tasks: dict[str, str] = {}
        #: the generator shown when nothing was chosen before (see :meth:`_first_selectable`)
        self.first_choice: str | None = None

    def populate(self, generators: list[type[Generator]]) -> None:
        keep = self.generator_id()
        self.tasks = {g.id: g.task for g in generators}
        self.blockSignals(True)
        self._model.clear()
        order = ["image", "text", "audio"]
        groups = sorted(
            {g.modality for g in generators},
            key=lambda m: (m not in order, order.index(m) if m in order else 0, m),
        )
        bold = QFont()
        bold.setBold(True)
        for modality in groups:
            header = QStandardItem(MODALITY_TITLES.get(modality, modality.capitalize()))
            header.setFlags(Qt.ItemFlag.NoItemFlags)
            header.setFont(bold)
            self._model.appendRow(header)
            for gen in sorted(
                (g for g in generators if g.modality == modality), key=lambda g: g.name
            ):
                item = QStandardItem(f"   {gen.name}")
                item.setData(gen.id, ID_ROLE)
                item.setToolTip(f"{gen.id} · {gen.task}\n{gen.description}".strip())
                self._model.appendRow(item)
        self.blockSignals(False)
        if not self.select(keep):
            self._first_selectable()

    def _first_selectable(self) -> None:
        """``first_choice`` if listed, else text to image if there is one (what most people
        start with), else the first."""
        if self.select(self.first_choice):
            return
        ids = [(i, self.itemData(i, ID_ROLE)) for i in range(self.count())]
        ids = [(i, gid) for i, gid in ids if gid]
        preferred = [i for i, gid in ids if self.tasks.get(gid) == FIRST_TASK]
        self.setCurrentIndex(preferred[0] if preferred else ids[0][0] if ids else -1)

    def generator_id(self) -> str | None:
        return self.currentData(ID_ROLE) if self.currentIndex() >= 0 else None

    def select(self, generator_id: str | None) -> bool:
        if not generator_id:
            return False
        for i in range(self.count()):
            if self.itemData(i, ID_ROLE) == generator_id:
                self.setCurrentIndex(i)
                return True
        return False


class GeneratePanel(QWidget):
    """Generate with any generator; the form comes from its Options model."""

    #: the job the panel follows finished (job_id, state)
    job_finished = Signal(str, object)

    def __init__(
        self,
        session: Session,
        parent: QWidget | None = None,
        state: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(parent)
        self.session = session
        self.studio = session.studio
        self.generators: dict[str, type[Generator]] = {}
        self.generator: type[Generator] | None = None
        self.form: OptionsForm | None = None
        self.saved_options: dict[str, dict[str, Any]] = {}
        #: generators seen streaming audio (they offer "Listen while it is generated")
        self.streaming_generators: set[str] = set()
        self.saved_models: dict[str, str | None] = {}
        self.job_id: str | None = None
        self.job_generator: type[Generator] | None = None
        self.job_started: float | None = None
        self._first_step = 0
        self._build()
        bridge = session.bridge
        bridge.progress.connect(self._on_progress)
        bridge.preview.connect(self._on_preview)
        bridge.partial.connect(self._on_partial)
        bridge.note.connect(self._on_note)
        bridge.artifact_saved.connect(self._on_artifact)
        bridge.job_state.connect(self._on_state)
        session.models_changed.connect(self._refresh_models)
        session.adapters_changed.connect(self._refresh_adapters)
        if state:
            self._apply_saved(state)
        self.set_generators(self.studio.generators(), prefer=(state or {}).get("generator"))

    # -- layout -------------------------------------------------------------------------------
    def _build(self) -> None:
        self.picker = GeneratorPicker()
        self.picker.currentIndexChanged.connect(self._generator_chosen)
        self.description = QLabel()
        self.description.setObjectName("hint")
        self.description.setWordWrap(True)

        self.banner = QFrame()
        self.banner.setObjectName("banner")
        banner_row = QHBoxLayout(self.banner)
        self.banner_text = QLabel()
        self.banner_text.setWordWrap(True)
        self.banner_button = QPushButton("Open the catalog")
        self.banner_button.clicked.connect(self._open_catalog)
        banner_row.addWidget(self.banner_text, 1)
        banner_row.addWidget(self.banner_button)
        self.banner.hide()

        self.prompt_label = QLabel("Prompt")
        self.prompt = QPlainTextEdit()
        self.prompt.setPlaceholderText(PROMPT_HINT)
        self.prompt.setTabChangesFocus(True)
        self.prompt.setFixedHeight(96)
        self.prompt_error = QLabel()
        self.prompt_error.setObjectName("fieldError")
        self.prompt_error.hide()

        self.model_picker = ModelPicker()
        self.model_picker.model_changed.connect(self._model_chosen)
        self.adapter_list = AdapterList()
        self.seed = SeedEditor()
        self.seed.setToolTip(
            "The same seed, prompt and options give the same output. Empty: random."
        )

        top = QFormLayout()
        top.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        top.addRow("Generator", self.picker)
        top.addRow("", self.description)
        self.basics = basics = QFormLayout()
        basics.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        basics.addRow("Model", self.model_picker)
        basics.addRow("Seed", self.seed)

        self.options_box = QGroupBox("Options")
        self.options_layout = QVBoxLayout(self.options_box)

        self.generate_button = QPushButton(icon("generate"), "Generate")
        self.generate_button.setObjectName("primary")
        self.generate_button.setToolTip("Generate (Ctrl+Enter)")
        self.generate_button.clicked.connect(self.generate)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Cancel the running generation (Esc)")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        buttons = QHBoxLayout()
        buttons.addWidget(self.generate_button, 1)
        buttons.addWidget(self.cancel_button)
        self.error = QLabel()
        self.error.setObjectName("fieldError")
        self.error.setWordWrap(True)
        self.error.hide()

        form_inner = QWidget()
        form_column = QVBoxLayout(form_inner)
        form_column.addLayout(top)
        form_column.addWidget(self.banner)
        form_column.addWidget(self.prompt_label)
        form_column.addWidget(self.prompt)
        form_column.addWidget(self.prompt_error)
        form_column.addLayout(basics)
        form_column.addWidget(self.adapter_list)
        form_column.addWidget(self.options_box)
        form_column.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(form_inner)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        left = QWidget()
        left_column = QVBoxLayout(left)
        left_column.setContentsMargins(0, 0, 0, 0)
        left_column.addWidget(scroll, 1)
        left_column.addWidget(self.error)
        left_column.addLayout(buttons)
        left.setMinimumWidth(360)

        self.output = OutputView()
        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.progress.setFormat("")
        self.progress.setValue(0)
        self.status = QLabel("Ready.")
        self.status.setObjectName("hint")
        self.notes = QLabel()
        self.notes.setObjectName("note")
        self.notes.setWordWrap(True)
        self.notes.hide()
        right = QWidget()
        right_column = QVBoxLayout(right)
        right_column.setContentsMargins(0, 0, 0, 0)
        right_column.addWidget(self.output, 1)
        right_column.addWidget(self.notes)
        right_column.addWidget(self.progress)
        right_column.addWidget(self.status)

        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.setObjectName("generateSplitter")
        self.splitter.addWidget(left)
        self.splitter.addWidget(right)
        self.splitter.setStretchFactor(0, 0)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([420, 700])
        outer = QVBoxLayout(self)
        outer.addWidget(self.splitter)

        for keys in ("Ctrl+Return", "Ctrl+Enter"):
            shortcut = QShortcut(QKeySequence(keys), self)
            shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            shortcut.activated.connect(self.generate)
        escape = QShortcut(QKeySequence(Qt.Key.Key_Escape), self)
        escape.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        escape.activated.connect(self.cancel)

    # -- generators -----------------------------------------------------------------------------
    def set_generators(self, generators: list[type[Generator]], prefer: str | None = None) -> None:
        """List ``generators``; choose ``prefer`` if it is one of them (else keep the choice)."""
        self.generators = {g.id: g for g in generators}
        self.picker.first_choice = self._first_choice()
        self.picker.blockSignals(True)
        self.picker.populate(generators)
        if isinstance(prefer, str):
            self.picker.select(prefer)
        self.picker.blockSignals(False)
        self._generator_chosen()

    def _first_choice(self) -> str | None:
        """The generator the studio uses for text to image, the first one shown when nothing was
        chosen before: the user's preferred one (Settings), else a built-in, else the plugin
        installed first."""
        try:
            choice = self.studio.plugins.choose_generator(
                FIRST_TASK, self.studio.settings.preferred_generators
            )
        except InvalidRequest:  # nothing serves it
            return None
        return choice.generator.id

    def select_generator(self, generator_id: str) -> bool:
        ok = self.picker.select(generator_id)
        if ok:
            self._generator_chosen()
        return ok

    def _generator_chosen(self, *_: Any) -> None:
        gid = self.picker.generator_id()
        gen = self.generators.get(gid) if gid else None
        if gen is self.generator:
            return
        if self.generator is not None and self.form is not None:
            self._save_form(self.generator)
        self.generator = gen
        if self.form is not None:
            discard(self.form)
            self.form = None
        if gen is None:
            self.description.setText("No generator is installed. See the Plugins panel.")
            self.output.set_modality(None)
            self.generate_button.setEnabled(False)
            return
        self.generate_button.setEnabled(True)
        self.description.setText(f"{gen.description}  ({gen.task})".strip())
        self._show_prompt(required=gen.prompt_required)
        self.basics.setRowVisible(self.model_picker, uses_model(gen))
        self.form = OptionsForm(gen.Options, values=self.saved_options.get(gen.id))
        self.options_layout.addWidget(self.form)
        self.options_box.setVisible(bool(self.form.specs))
        self.output.set_modality(gen.modality)
        self.output.audio.set_streams(gen.id in self.streaming_generators)
        self.adapter_list.set_modality(gen.modality if gen.supports_lora else None)
        self._refresh_models()
        self._refresh_adapters()
        if uses_model(gen):
            self.model_picker.set_ref(self.saved_models.get(gen.id))
        self._update_banner()

    def _show_prompt(self, *, required: bool) -> None:
        """The prompt box, marked optional when the generator accepts an empty prompt."""
        self.prompt_label.setText("Prompt" if required else "Prompt (optional)")
        self.prompt.setPlaceholderText(PROMPT_HINT if required else OPTIONAL_PROMPT_HINT)

    def _save_form(self, gen: type[Generator]) -> None:
        """Keep ``gen``'s options (and model) for when it is chosen again or the app restarts."""
        if self.form is None:
            return
        self.saved_options[gen.id] = self.form.values()
        if uses_model(gen):
            self.saved_models[gen.id] = self.model_picker.ref()

    def _refresh_models(self) -> None:
        gen = self.generator
        if gen is None or not uses_model(gen):
            return
        self.model_picker.blockSignals(True)
        self.model_picker.populate(self.session.models, gen.default_model, gen.modality, gen.task)
        self.model_picker.blockSignals(False)
        self._update_banner()

    def _refresh_adapters(self) -> None:
        gen = self.generator
        base = self.model_picker.effective_ref() if gen is not None and uses_model(gen) else None
        self.adapter_list.set_library(self.session.adapters, base, gen.id if gen else None)

    def _model_chosen(self) -> None:
        self._update_banner()
        self._refresh_adapters()

    def _open_catalog(self) -> None:
        """The models panel, with the chosen model selected for download."""
        self.session.show_model.emit(self.model_picker.effective_ref() or "")

    def _update_banner(self) -> None:
        """First run offline: say plainly that nothing is downloaded and offer the catalog."""
        gen = self.generator
        if not self.session.models_loaded or gen is None or not uses_model(gen):
            self.banner.hide()
            return
        ref = self.model_picker.effective_ref()
        entry = self.session.model_entry(ref)
        if not self.session.any_model_downloaded() and entry is not None:
            self.banner_text.setText(
                "No model is downloaded yet. Pick one from the catalog; it downloads once and "
                "then works offline."
            )
            self.banner.show()
        elif entry is not None and not entry.downloaded:
            size = f" ({human_size(entry.size_bytes)})" if entry.size_bytes else ""
            self.banner_text.setText(
                f"{entry.name or entry.ref} is not downloaded yet{size}. It downloads on first "
                "use, or get it now from the Models panel."
            )
            self.banner.show()
        else:
            self.banner.hide()

    # -- request ------------------------------------------------------------------------------
    def build_request(self) -> GenerationRequest | None:
        """The request the form describes, or ``None`` after showing what is wrong."""
        self._clear_errors()
        gen = self.generator
        if gen is None or self.form is None:
            return None
        prompt = self.prompt.toPlainText().strip()
        if gen.prompt_required and not prompt:
            self._show_prompt_error("Write a prompt first: this generator needs one.")
            return None
        if self.form.validate() is None:
            self._show_error("Fix the option marked in red.")
            return None
        try:
            loras = self.adapter_list.specs() if gen.supports_lora else []
        except InvalidRequest as exc:
            self._show_error(str(exc))
            return None
        return GenerationRequest(
            generator=gen.id,
            prompt=prompt,
            model=self.model_picker.ref() if uses_model(gen) else None,
            seed=self.seed.value(),
            options=self.form.values(),
            loras=loras,
        )

    def generate(self) -> str | None:
        """Submit the form (Ctrl+Enter); returns the job id, or ``None`` if the form is wrong."""
        if not self.generate_button.isEnabled():
            return None
        try:
            request = self.build_request()
        except ValueError as exc:  # pydantic rejected the request itself (seed out of range)
            self._show_error(str(exc).splitlines()[0])
            return None
        if request is None:
            return None
        try:
            job_id = self.studio.submit(request)
        except OptionsError as exc:
            if self.form is None or not self.form.show_error(exc.field, str(exc)):
                self._show_error(str(exc))
            return None
        except InvalidRequest as exc:
            if "prompt" in str(exc).lower():
                self._show_prompt_error(str(exc))
            else:
                self._show_error(str(exc))
            return None
        except StudioError as exc:
            self._show_error(str(exc))
            return None
        self.follow(job_id, self.generator)
        self.session.status.emit(f"Queued {request.generator} ({job_id[:8]})")
        return job_id

    def follow(self, job_id: str, generator: type[Generator] | None = None) -> None:
        """Show job ``job_id``'s output here as it arrives."""
        self.job_id = job_id
        self.job_generator = generator
        self.job_started = None
        self._first_step = 0
        if generator is not None:
            self.output.set_modality(generator.modality)
        self.output.clear()
        self.notes.hide()
        self.notes.clear()
        self.progress.setRange(0, 0)  # busy until the first progress event
        self.progress.setFormat("waiting…")
        self.status.setText("Queued…")
        self.cancel_button.setEnabled(True)

    def cancel(self) -> bool:
        """Cancel the followed job (Esc)."""
        if self.job_id is None:
            return False
        ok = self.studio.cancel(self.job_id)
        if ok:
            self.status.setText("Cancelling…")
        return ok

    def load_request(self, request: GenerationRequest) -> None:
        """Fill the form from a request (a recipe's "Use these settings")."""
        if not self.select_generator(request.generator):
            self._show_error(f"Generator {request.generator!r} is not installed.")
            return
        self.prompt.setPlainText(request.prompt)
        if self.generator is not None and uses_model(self.generator):
            self.model_picker.set_ref(request.model)
        self.seed.set_value(request.seed)
        if self.form is not None:
            self.form.reset()
            self.form.set_values(request.options)
        self.adapter_list.set_specs(request.loras)
        self._clear_errors()

    def set_init_image(self, path: Path) -> bool:
        """Put an image into the form's init-image field, if the generator has one."""
        if self.form is None:
            return False
        name = self.form.first_image_field()
        if name is None:
            return False
        self.form.rows[name].set_value(str(path))
        return True

    def use_adapter(self, name: str) -> bool:
        """Add adapter ``name`` to the adapter list, or select its row (after a training).

        False when the library does not have it (it is added all the same, with a warning).
        The model becomes the adapter's base model (an adapter only fits the model it was
        trained on)."""
        self.session.refresh_adapters()
        gen = self.generator
        newest_first = sorted(self.session.adapters, key=lambda a: -a.created)
        record = next((a for a in newest_first if name in (a.id, a.name)), None)
        fits = gen is not None and uses_model(gen)
        base = record.base_model if record is not None else None
        if fits and base and self.model_picker.effective_ref() != base:
            self.model_picker.set_ref(base)
            self._model_chosen()
        return self.adapter_list.use(name).problem() is None

    # -- errors -------------------------------------------------------------------------------
    def _clear_errors(self) -> None:
        self.error.hide()
        self.prompt_error.hide()
        if self.form is not None:
            self.form.clear_errors()

    def _show_error(self, message: str) -> None:
        self.error.setText(message)
        self.error.show()

    def _show_prompt_error(self, message: str) -> None:
        self.prompt_error.setText(message)
        self.prompt_error.show()
        self.prompt.setFocus()

    # -- job events ---------------------------------------------------------------------------
    def _mine(self, job_id: str) -> bool:
        return job_id == self.job_id

    def _on_progress(self, job_id: str, step: int, total: int, message: str) -> None:
        if not self._mine(job_id):
            return
        if self.job_started is None:
            self.job_started = time.time()
            self._first_step = step
        if total > 0:
            self.progress.setRange(0, total)
            self.progress.setValue(step)
            eta = eta_seconds(self.job_started, step - self._first_step, total - self._first_step)
            left = f" · {human_duration(eta)} left" if eta else ""
            self.progress.setFormat(f"{step}/{total}{left}")
        else:
            self.progress.setRange(0, 0)
        self.status.setText(message or "Working…")

    def _on_preview(self, job_id: str, preview: Any) -> None:
        if self._mine(job_id):
            if preview.sample_rate and self.job_generator is not None:
                self.streaming_generators.add(self.job_generator.id)
            self.output.show_preview(preview)

    def _on_partial(self, job_id: str, text: str, index: int) -> None:
        if self._mine(job_id):
            self.output.append_text(text, index)

    def _on_note(self, job_id: str, message: str, level: str) -> None:
        if self._mine(job_id):
            prefix = "⚠ " if level == "warning" else ""
            current = self.notes.text()
            self.notes.setText(f"{current}\n{prefix}{message}".strip())
            self.notes.show()

    def _on_artifact(self, job_id: str, saved: Any) -> None:
        if self._mine(job_id):
            index = int(saved.recipe.get("index", 0) or 0) if isinstance(saved.recipe, dict) else 0
            self.output.show_artifact(saved.modality, Path(saved.path), index)
            if saved.modality == "audio":
                self._load_audio(Path(saved.path))

    def _load_audio(self, path: Path) -> None:
        from studio.ui.waveform import load_samples

        def done(result: tuple[Any, int]) -> None:
            self.output.set_audio_samples(*result)

        self.session.run(lambda: load_samples(path), done)

    def _on_state(self, job_id: str, state: JobState, error: Any) -> None:
        if not self._mine(job_id):
            return
        if state == JobState.RUNNING:
            self.status.setText("Running…")
            return
        if not state.finished:
            return
        self.cancel_button.setEnabled(False)
        self.progress.setRange(0, 1)
        self.progress.setValue(1 if state == JobState.SUCCEEDED else 0)
        self.progress.setFormat("")
        if state == JobState.SUCCEEDED:
            took = (
                f" in {human_duration(time.time() - self.job_started)}" if self.job_started else ""
            )
            self.status.setText(f"Done{took}.")
        elif state == JobState.CANCELLED:
            self.status.setText("Cancelled.")
            canvas = self.output.images.canvas
            if canvas.image.isNull():
                canvas.set_image(None, None, "Cancelled")
        else:
            self.status.setText(f"Failed: {error}" if error else f"{state.value.capitalize()}.")
        self.job_finished.emit(job_id, state)

    # -- state --------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """What is restored on restart: generator, prompt, seed, model and options per generator,
        adapters per modality."""
        if self.generator is not None:
            self._save_form(self.generator)
        return {
            "generator": self.generator.id if self.generator else None,
            "prompt": self.prompt.toPlainText(),
            "seed": self.seed.value(),
            "options": self.saved_options,
            "models": self.saved_models,
            "adapters": self.adapter_list.state(),
            "splitter": self.splitter.sizes(),
        }

    def restore_state(self, state: dict[str, Any]) -> None:
        """Apply a saved :meth:`state` (the form is rebuilt with the saved values)."""
        self._apply_saved(state)
        current = self.generator
        self.generator = None  # force the form to be rebuilt with the restored values
        if self.form is not None:
            discard(self.form)
            self.form = None
        wanted = state.get("generator")
        self.picker.blockSignals(True)
        if not (isinstance(wanted, str) and self.picker.select(wanted)) and current is not None:
            self.picker.select(current.id)
        self.picker.blockSignals(False)
        self._generator_chosen()

    def _apply_saved(self, state: dict[str, Any]) -> None:
        options = state.get("options")
        if isinstance(options, dict):
            self.saved_options.update({k: v for k, v in options.items() if isinstance(v, dict)})
        models = state.get("models")
        if isinstance(models, dict):
            self.saved_models.update(models)
        self.adapter_list.restore_state(state.get("adapters"))
        self.prompt.setPlainText(str(state.get("prompt") or ""))
        try:
            self.seed.set_value(state.get("seed"))
        except (TypeError, ValueError):
            pass
        sizes = state.get("splitter")
        if isinstance(sizes, list) and all(isinstance(s, int) for s in sizes):
            self.splitter.setSizes(sizes)
