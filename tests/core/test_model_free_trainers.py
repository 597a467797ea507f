"""Trainers that need no base model (``uses_model = False``): registered, validated before the job
is queued, run with ``request.base_model = None``, their adapters recorded with no base model and
the generators they are for; the store's migration that allows it; the contract kit and the CLI
listing for them. Trainers that do use a model must have one, given or default."""

from __future__ import annotations

import json
import sqlite3
import types
from pathlib import Path
from typing import Any

import pytest

from studio import AdapterOutput, InvalidRequest, Trainer, TrainingRequest, hookimpl
from studio.core import results
from studio.core.plugins import PluginHost
from studio.core.records import AdapterRecord
from studio.core.store import SCHEMA_VERSION, Store, connect, migrate
from studio.core.studio import Studio
from studio.testing import TrainerContract, run_trainer
from studio.testing.contract import registered
from studio.testing.fakes import FakeTrainer


class FakePalette(FakeTrainer):
    """The fake trainer, learning from its dataset alone: its adapter is for fake-image."""

    id = "fake-palette"
    name = "Fake palette"
    uses_model = False
    default_model = None  # type: ignore[assignment]

    @staticmethod
    def _write_adapter(request: Any) -> AdapterOutput:
        output = FakeTrainer._write_adapter(request)
        output.generators = ("fake-image",)
        return output


class ClaimsAModel(FakePalette):
    """Model-free, yet its adapter names a base model (the contract catches it)."""

    id = "sloppy-claims-a-model"

    @staticmethod
    def _write_adapter(request: Any) -> AdapterOutput:
        output = FakePalette._write_adapter(request)
        output.base_model = "org/imagined"
        return output


class NamesNoDefault(FakeTrainer):
    """Uses a model, and leaves it to the user."""

    id = "fake-needs-a-model"
    default_model = None  # type: ignore[assignment]


def write_dataset(folder: Path) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (90, 140, 60)).save(folder / "view.png")
    (folder / "view.txt").write_text("a view", encoding="utf-8")
    return folder


def training(cls: type[Trainer], dataset: Path, base_model: str | None = None) -> TrainingRequest:
    return TrainingRequest(
        trainer=cls.id, base_model=base_model, dataset=dataset, name="mine", options={"steps": 2}
    )


# --- the contract kit runs on a model-free trainer -------------------------------------------


class TestFakePaletteContract(TrainerContract):
    trainer_cls = FakePalette
    options = {"steps": 4, "checkpoint_every": 1}
    bad_file = ("empty.png", b"")

    @pytest.fixture
    def dataset(self, tmp_path: Path) -> Path:
        return write_dataset(tmp_path / "dataset")


def _contract(cls: type, **attributes: Any) -> TrainerContract:
    body = {"trainer_cls": cls, **attributes}
    return type("C", (TestFakePaletteContract,), body)()  # type: ignore[return-value]


def test_the_contract_refuses_a_base_model_recorded_by_a_model_free_trainer(
    studio_app: Studio, tmp_path: Path
) -> None:
    dataset = write_dataset(tmp_path / "d")
    with pytest.raises(AssertionError, match="uses_model = False recorded base model"):
        _contract(ClaimsAModel).test_contract_trains_and_saves_an_adapter(studio_app, dataset, None)


def test_the_contract_says_a_model_free_trainer_takes_no_base_model_ref() -> None:
    contract = _contract(FakePalette, base_model_ref="org/some-model")
    assert contract._checked_base_model(None) is None
    with pytest.raises(pytest.fail.Exception, match=r"remove base_model_ref \('org/some-model'\)"):
        contract._checked_base_model("org/some-model")


# --- validated before anything is queued ------------------------------------------------------


def test_a_base_model_for_a_model_free_trainer_is_refused_before_queuing(
    studio_app: Studio, tmp_path: Path
) -> None:
    dataset = write_dataset(tmp_path / "d")
    with registered(studio_app, FakePalette), pytest.raises(InvalidRequest) as info:
        studio_app.submit_training(training(FakePalette, dataset, base_model="org/base"))
    assert str(info.value) == (
        "trainer 'fake-palette' uses no base model (it learns from the dataset alone): remove "
        "the base model 'org/base'"
    )
    assert studio_app.jobs() == []


def test_a_trainer_that_uses_a_model_needs_one_before_queuing(
    studio_app: Studio, tmp_path: Path
) -> None:
    dataset = write_dataset(tmp_path / "d")
    missing = tmp_path / "no-such-model"
    with registered(studio_app, NamesNoDefault):
        with pytest.raises(InvalidRequest, match="has no default base model: name the model"):
            studio_app.submit_training(training(NamesNoDefault, dataset))
        with pytest.raises(InvalidRequest, match="no such file or folder"):
            studio_app.submit_training(training(NamesNoDefault, dataset, str(missing)))
    assert studio_app.jobs() == []
    _, [adapter] = run_trainer(NamesNoDefault, dataset, studio_app, base_model="org/base")
    assert adapter.base_model == "org/base" and adapter.generators == ()


def test_a_model_free_training_runs_and_records_no_base_model(
    studio_app: Studio, tmp_path: Path
) -> None:
    dataset = write_dataset(tmp_path / "d")
    _, [adapter] = run_trainer(FakePalette, dataset, studio_app, options={"steps": 2})
    assert adapter.base_model is None and adapter.generators == ("fake-image",)
    assert studio_app.job(adapter.job_id or "").request["base_model"] is None
    again = studio_app.store.find_adapter(adapter.id)
    assert again is not None and again.base_model is None
    assert again.generators == ("fake-image",)


def test_a_model_free_trainer_registers_and_is_listed_as_such() -> None:
    from studio.cli import _model_cell, plugins_document

    module = types.ModuleType("palettes")
    module.studio_api = ">=1.0,<2"  # type: ignore[attr-defined]

    @hookimpl
    def register_trainers(register: Any) -> None:
        register(FakePalette)

    module.register_trainers = register_trainers  # type: ignore[attr-defined]
    host = PluginHost()
    assert host.register(module).error is None
    [plugin] = plugins_document(host)["plugins"]
    [entry] = plugin["trainers"]
    assert entry["uses_model"] is False and entry["default_model"] is None
    assert _model_cell(entry) == "(uses none)"


# --- the adapter library ----------------------------------------------------------------------


def test_adapter_output_takes_keywords_only(tmp_path: Path) -> None:
    output = AdapterOutput(path=tmp_path, name="a", modality="image")
    assert output.base_model is None and output.generators == () and output.extra == {}
    with pytest.raises(TypeError):
        AdapterOutput(tmp_path, "org/base", "a", "image")  # type: ignore[misc, arg-type]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"generators": "patterns"}, "generators must be a tuple of generator ids"),
        ({"generators": ("two words",)}, "generators must be a tuple of generator ids"),
        ({"base_model": " "}, "base_model must be a model reference or None"),
    ],
)
def test_save_adapter_refuses_a_malformed_output(
    tmp_path: Path, fields: dict[str, Any], message: str
) -> None:
    adapter = tmp_path / "palette.safetensors"
    adapter.write_bytes(b"weights")
    output = AdapterOutput(path=adapter, name="p", modality="image", **fields)
    with Store(tmp_path / "db" / "studio.db") as store:
        with pytest.raises(TypeError, match=message):
            results.save_adapter(store, tmp_path / "library", "job", output)
        assert store.list_adapters() == []
    assert not (tmp_path / "library").exists()  # refused before it was copied in


def test_the_migration_keeps_adapters_and_allows_no_base_model(tmp_path: Path) -> None:
    db_path = tmp_path / "studio.db"
    old = connect(db_path)
    assert migrate(old, target=2) == 2
    for rowid, adapter_id in ((1, "first"), (2, "second")):  # same time: rowid breaks the tie
        old.execute(
            "INSERT INTO adapters (rowid, id, name, path, modality, base_model, sha256, created, "
            "extra) VALUES (?, ?, 'style', ?, 'image', 'org/base', NULL, 5.0, '{\"rank\": 4}')",
            (rowid, adapter_id, str(tmp_path / f"{adapter_id}.safetensors")),
        )
    with pytest.raises(sqlite3.IntegrityError, match="NOT NULL"):
        old.execute(
            "INSERT INTO adapters (id, name, path, modality, base_model, created) "
            "VALUES ('x', 'x', 'x', 'image', NULL, 1.0)"
        )
    old.close()

    with Store(db_path) as store:
        assert store.schema_version == SCHEMA_VERSION
        kept = store.list_adapters()
        assert [a.id for a in kept] == ["second", "first"]
        assert all(
            a.base_model == "org/base" and a.generators == () and a.extra == {"rank": 4}
            for a in kept
        )
        palette = AdapterRecord(
            id="palette",
            name="sea",
            path=tmp_path / "sea.safetensors",
            modality="image",
            base_model=None,
            sha256=None,
            created=6.0,
            generators=("patterns",),
        )
        store.add_adapter(palette)
        found = store.find_adapter("sea")
    assert found == AdapterRecord(**{**palette.__dict__, "path": palette.path.resolve()})
    raw = sqlite3.connect(db_path)
    try:
        row = raw.execute("SELECT generators FROM adapters WHERE id = 'palette'").fetchone()
    finally:
        raw.close()
    assert json.loads(row[0]) == ["patterns"]
