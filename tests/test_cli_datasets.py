"""``aigc-studio datasets``: the dataset library a training fills, as a table and as JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from studio.cli import main
from studio.core.events import JobState
from studio.core.training import TrainingRequest
from studio.testing.fake_plugin import open_fake_studio


def train_on(studio_home: Path, dataset: Path) -> str:
    """Run a short fake training on ``dataset`` (which records it); return the job id."""
    app = open_fake_studio(studio_home)
    try:
        job_id = app.submit_training(
            TrainingRequest(
                trainer="fake-lora", dataset=dataset, name="style", options={"steps": 2}
            )
        )
        assert app.wait(job_id, timeout=60).state == JobState.SUCCEEDED
    finally:
        app.close()
    return job_id


def test_no_datasets_yet(studio_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["datasets"]) == 0
    assert capsys.readouterr().out.startswith("no datasets")
    assert main(["datasets", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"schema": 1, "datasets": []}


def test_a_training_lists_its_dataset(
    studio_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = tmp_path / "seaside"
    dataset.mkdir()
    Image.new("RGB", (8, 8), (20, 80, 200)).save(dataset / "wave.png")
    (dataset / "wave.txt").write_text("a wave", encoding="utf-8")
    (dataset / "notes.pdf").write_bytes(b"%PDF-1.4")  # skipped: not in the manifest
    train_on(studio_home, dataset)

    assert main(["datasets", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    [entry] = document["datasets"]
    assert entry["name"] == "seaside" and entry["folder"] == str(dataset.resolve())
    assert entry["files"] == 2
    assert [f["path"] for f in entry["manifest"]] == ["wave.png", "wave.txt"]
    assert entry["bytes"] == sum(f["size"] for f in entry["manifest"])
    assert len(entry["manifest_sha256"]) == 64

    assert main(["datasets"]) == 0
    table = capsys.readouterr().out
    header, row = table.splitlines()[:2]
    assert header.split()[:4] == ["id", "name", "files", "size"]
    assert entry["id"] in row and "seaside" in row and entry["manifest_sha256"][:12] in row
    assert str(dataset.resolve()) in row
