"""The Studio facade: validation, artifacts and recipes, regenerate, restart and crash safety.

Runs on the testing kit's fake plugins; every wait is bounded.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from PIL import Image

from studio import GenerationRequest, LoraSpec, TrainingRequest
from studio.core.artifacts import read_recipe
from studio.core.checkpoints import CheckpointStore
from studio.core.errors import InvalidRequest, OptionsError
from studio.core.events import (
    ArtifactSaved,
    JobState,
    JobStateChanged,
    Note,
    Partial,
    TrainStep,
)
from studio.core.settings import Settings
from studio.core.studio import Studio
from studio.core.units import human_size
from studio.testing import fake_plugin
from studio.testing.fake_plugin import open_fake_studio
from studio.testing.fakes import EventRecorder, fake_pixels, fake_text, wait_until

pytestmark = pytest.mark.timeout(120)

WAIT = 20.0


def image(prompt: str = "a red fox", **options: object) -> GenerationRequest:
    return GenerationRequest(generator="fake-image", prompt=prompt, seed=1234, options=options)


def pixels(path: Path) -> bytes:
    with Image.open(path) as img:
        return img.convert("RGB").tobytes()


def succeeded(app: Studio, job_id: str) -> list[Path]:
    record = app.wait(job_id, WAIT)
    assert record.state == JobState.SUCCEEDED, record.error
    return [app.store.get_artifact(a).path for a in record.artifact_ids]


# --- validation before anything is stored ---------------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "error", "words"),
    [
        (GenerationRequest(generator="nope", prompt="x"), InvalidRequest, ["'nope'", "fake-text"]),
        (image(width=13), OptionsError, ["'width'", "multiple of 8"]),
        (image(steps=0), OptionsError, ["'steps'", ">= 1"]),
        (image(colour="red"), OptionsError, ["unknown option 'colour'", "width"]),
        (GenerationRequest(generator="fake-text", prompt="  "), InvalidRequest, ["needs a prompt"]),
        (
            GenerationRequest(generator="fake-text", prompt="x", loras=[LoraSpec(ref="a/b")]),
            InvalidRequest,
            ["does not support LoRA", "fake-image"],
        ),
        (
            GenerationRequest(generator="fake-image", prompt="x", loras=[LoraSpec(ref="mine")]),
            InvalidRequest,
            ["'mine' not found", "library"],
        ),
        (
            GenerationRequest(
                generator="fake-image", prompt="x", loras=[LoraSpec(ref="x.safetensors")]
            ),
            InvalidRequest,
            ["not found"],
        ),
        (
            GenerationRequest(generator="fake-text", prompt="x", parent="gone"),
            InvalidRequest,
            ["parent artifact 'gone'"],
        ),
    ],
)
def test_bad_requests_are_rejected_before_any_job_is_stored(
    app: Studio, request_: GenerationRequest, error: type[Exception], words: list[str]
) -> None:
    with pytest.raises(error) as info:
        app.submit(request_)
    for word in words:
        assert word in str(info.value)
    assert app.jobs() == []


def test_bad_trainings_are_rejected_before_any_job_is_stored(
    app: Studio, tmp_path: Path, dataset: Path
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "photo.jpg").write_bytes(b"x")
    cases = [
        (TrainingRequest(trainer="nope", dataset=dataset, name="n"), "no trainer named 'nope'"),
        (
            TrainingRequest(trainer="fake-lora", dataset=tmp_path / "missing", name="n"),
            "is not a folder",
        ),
        (TrainingRequest(trainer="fake-lora", dataset=empty, name="n"), "photo.jpg"),
        (
            TrainingRequest(trainer="fake-lora", dataset=dataset, name="n", options={"steps": -1}),
            "'steps'",
        ),
    ]
    for request, words in cases:
        with pytest.raises(InvalidRequest, match=words):
            app.submit_training(request)
    assert app.jobs() == []


def test_prepare_chooses_the_seed_and_default_model_and_finds_generators_by_task(
    app: Studio,
) -> None:
    run = app.prepare(GenerationRequest(generator="text-to-image", prompt="x"))
    assert run.generator == "fake-image" and run.model == "fake/tiny-model"
    assert 0 <= run.seed < 2**32 and run.options.width == 64
    job_id = app.submit(GenerationRequest(generator="text-to-image", prompt="x"))
    stored = app.job(job_id).request
    assert stored["generator"] == "fake-image" and isinstance(stored["seed"], int)
    succeeded(app, job_id)


def test_ingest_reports_usable_and_skipped_files(app: Studio, dataset: Path) -> None:
    report = app.ingest("fake-lora", dataset, {})
    assert sorted(p.name for p in report.usable) == ["one.png", "one.txt"]
    assert report.skipped == {
        "notes.md": ".md files are not used by this trainer (it takes text (.txt) and "
        "images (.png))"
    }
    with pytest.raises(InvalidRequest, match="not a folder"):
        app.ingest("fake-lora", dataset / "one.txt", {})


# --- artifacts and recipes ------------------------------------------------------------------------


def test_images_are_written_with_their_recipe(app: Studio) -> None:
    rec = EventRecorder()
    app.subscribe(rec)
    job_id = app.submit(image(batch_size=2, steps=3, width=32, height=16))
    paths = succeeded(app, job_id)
    assert len(paths) == 2 and all(
        p.suffix == ".png" and p.parent == app.paths.outputs for p in paths
    )
    by_index = {read_recipe(p)["index"]: p for p in paths}
    for index, path in by_index.items():
        recipe = read_recipe(path)
        assert recipe["generator"] == "fake-image" and recipe["prompt"] == "a red fox"
        assert recipe["seed"] == 1234 + index and recipe["extra"]["request_seed"] == 1234
        assert recipe["options"]["steps"] == 3 and recipe["model"]["ref"] == "fake/tiny-model"
        assert recipe["plugin"]["name"] == fake_plugin.__name__
        expected = fake_pixels("a red fox", 1234 + index, 32, 16)
        assert pixels(path) == expected.tobytes()
        with Image.open(path) as img:
            assert "Seed: " + str(1234 + index) in img.info["parameters"]
    saved = [e for e in rec.of(job_id) if isinstance(e, ArtifactSaved)]
    assert {e.path for e in saved} == set(paths)


def test_text_is_written_with_a_sidecar_recipe(app: Studio) -> None:
    job_id = app.submit(
        GenerationRequest(generator="fake-text", prompt="tea", seed=7, options={"max_tokens": 5})
    )
    (path,) = succeeded(app, job_id)
    assert path.read_text() == "".join(fake_text("tea", 7, 5))
    assert path.with_name(path.name + ".json").is_file()
    assert read_recipe(path)["seed"] == 7
    listed = app.artifacts(modality="text", query="tea")
    assert [a.path for a in listed] == [path]


def test_out_dir_and_keep_indices(app: Studio, tmp_path: Path) -> None:
    out = tmp_path / "elsewhere"
    request = image(batch_size=3).model_copy(update={"out_dir": out, "keep_indices": [2]})
    (path,) = succeeded(app, app.submit(request))
    assert path.parent == out.resolve()
    assert read_recipe(path)["index"] == 2 and read_recipe(path)["seed"] == 1236


def test_regenerate_reproduces_one_image_of_a_batch_exactly(app: Studio) -> None:
    paths = succeeded(app, app.submit(image(batch_size=3, steps=2)))
    original = next(p for p in paths if read_recipe(p)["index"] == 1)
    artifact = app.store.artifact_by_path(original)
    assert artifact is not None
    for ref in (artifact.id, original):  # by id and by file
        (again,) = succeeded(app, app.regenerate(ref))
        assert again != original
        assert pixels(again) == pixels(original)
        assert read_recipe(again)["seed"] == read_recipe(original)["seed"]
        assert read_recipe(again)["options"] == read_recipe(original)["options"]
    with pytest.raises(InvalidRequest, match="neither an artifact id nor a file"):
        app.regenerate("no-such-artifact")


def test_request_from_recipe_round_trips(app: Studio) -> None:
    (path,) = succeeded(app, app.submit(image(steps=5, negative_prompt="blur")))
    request = app.request_from_recipe(read_recipe(path))
    assert request.generator == "fake-image" and request.seed == 1234
    assert request.options["negative_prompt"] == "blur" and request.model == "fake/tiny-model"
    with pytest.raises(InvalidRequest, match="not a studio recipe"):
        app.request_from_recipe({"prompt": "x"})


def test_a_continuation_records_its_parent_and_replays_with_it(app: Studio) -> None:
    """A chat turn regenerates with its conversation: the recipe keeps the parent artifact."""
    (first,) = succeeded(app, app.submit(GenerationRequest(generator="fake-text", prompt="hi")))
    parent = app.store.artifact_by_path(first)
    assert parent is not None
    turn = GenerationRequest(generator="fake-text", prompt="and then?", parent=parent.id, seed=3)
    (second,) = succeeded(app, app.submit(turn))
    recipe = read_recipe(second)
    assert recipe["parent"] == parent.id and read_recipe(first)["parent"] is None
    assert app.request_from_recipe(recipe).parent == parent.id
    (again,) = succeeded(app, app.regenerate(second))
    assert again.read_text() == second.read_text()
    assert read_recipe(again)["parent"] == parent.id


def test_delete_artifact_moves_its_files_to_the_system_trash(app: Studio) -> None:
    (path,) = succeeded(app, app.submit(GenerationRequest(generator="fake-text", prompt="hi")))
    content = path.read_text()
    artifact = app.store.artifact_by_path(path)
    assert artifact is not None
    assert app.delete_artifact(artifact.id) is None  # all in the system trash
    assert not path.exists() and not path.with_name(path.name + ".json").exists()
    trash = Path(os.environ["XDG_DATA_HOME"]) / "Trash" / "files"  # freedesktop layout
    assert sorted(p.name for p in trash.iterdir()) == [path.name, path.name + ".json"]
    assert (trash / path.name).read_text() == content
    assert app.artifacts() == []


def test_without_a_system_trash_deleted_files_go_to_the_studio_trash(
    app: Studio, monkeypatch: pytest.MonkeyPatch
) -> None:
    import send2trash

    def no_trash(path: object) -> None:
        raise OSError("no trash on this volume")

    monkeypatch.setattr(send2trash, "send2trash", no_trash)
    (path,) = succeeded(app, app.submit(GenerationRequest(generator="fake-text", prompt="x")))
    artifact = app.store.artifact_by_path(path)
    assert artifact is not None
    assert app.delete_artifact(artifact.id) == app.paths.home / "trash"
    assert not path.exists() and not path.with_name(path.name + ".json").exists()
    trashed = sorted(p.name for p in (app.paths.home / "trash").iterdir())
    assert trashed == [f"{artifact.id[:8]}-{path.name}", f"{artifact.id[:8]}-{path.name}.json"]
    assert app.artifacts() == []
    with pytest.raises(KeyError):
        app.delete_artifact(artifact.id)


# --- adapters -------------------------------------------------------------------------------------


def test_a_trained_adapter_is_usable_by_name(app: Studio, dataset: Path) -> None:
    train = app.submit_training(
        TrainingRequest(
            trainer="fake-lora", dataset=dataset, name="ink style", options={"steps": 4}
        )
    )
    assert app.wait(train, WAIT).state == JobState.SUCCEEDED
    (adapter,) = app.adapters()
    assert adapter.path.is_file() and adapter.path.is_relative_to(app.paths.adapters)
    assert adapter.job_id == train and adapter.sha256
    assert not (app.paths.checkpoints / train).exists()  # done: checkpoints cleaned up
    request = image().model_copy(update={"loras": [LoraSpec(ref="ink style", weight=0.5)]})
    assert app.prepare(request).loras[0].ref == str(adapter.path)
    (path,) = succeeded(app, app.submit(request))
    recipe = read_recipe(path)
    assert recipe["adapters"] == [
        {"ref": str(adapter.path), "weight": 0.5, "sha256": adapter.sha256}
    ]
    plain = fake_pixels("a red fox", 1234, 64, 64)
    assert pixels(path) != plain.tobytes()  # the adapter changed the output
    (again,) = succeeded(app, app.regenerate(path))
    assert pixels(again) == pixels(path)


# --- events ---------------------------------------------------------------------------------------


def test_stream_replays_what_happened_and_ends(app: Studio) -> None:
    job_id = app.submit(
        GenerationRequest(generator="fake-text", prompt="x", seed=2, options={"max_tokens": 4})
    )
    events = [e.event for e in app.stream(job_id)]
    assert isinstance(events[0], JobStateChanged) and events[0].state == JobState.QUEUED
    assert isinstance(events[-1], JobStateChanged) and events[-1].state == JobState.SUCCEEDED
    text = "".join(e.text for e in events if isinstance(e, Partial))
    assert text == "".join(fake_text("x", 2, 4))
    again = [e.event for e in app.stream(job_id)]  # after the end: replayed from memory
    assert len(again) == len(events)
    with pytest.raises(KeyError):
        app.stream("no-such-job")


def test_wait_times_out(app: Studio) -> None:
    job_id = app.submit(image(steps=50, delay=0.05))
    with pytest.raises(TimeoutError):
        app.wait(job_id, timeout=0.2)
    app.cancel(job_id)
    assert app.wait(job_id, WAIT).state == JobState.CANCELLED


# --- restart and crash safety ---------------------------------------------------------------------


def test_restart_keeps_queued_jobs_queued_and_runs_them(studio_home: Path) -> None:
    first = open_fake_studio(studio_home, start=False)
    a = first.submit(GenerationRequest(generator="fake-text", prompt="a"))
    b = first.submit(GenerationRequest(generator="fake-text", prompt="b"))
    first.close()
    second = open_fake_studio(studio_home, start=False)
    try:
        assert {second.job(a).state, second.job(b).state} == {JobState.QUEUED}
        rec = EventRecorder()
        second.subscribe(rec)
        second.start()
        succeeded(second, a)
        succeeded(second, b)
        running = [j for j, label in rec.timeline() if label == "running"]
        assert running == [a, b]  # each once, in order
    finally:
        second.close()


def test_close_interrupts_a_training_which_resumes_only_when_asked(
    studio_home: Path, dataset: Path
) -> None:
    request = TrainingRequest(
        trainer="fake-lora",
        dataset=dataset,
        name="night",
        options={"steps": 40, "checkpoint_every": 3, "delay": 0.02},
    )
    first = open_fake_studio(studio_home)
    train = first.submit_training(request)
    checkpoints = CheckpointStore(first.paths.checkpoints / train)
    assert wait_until(lambda: _latest_step(checkpoints) >= 6, WAIT)
    first.close()
    assert first.closed
    second = open_fake_studio(studio_home)
    try:
        assert second.job(train).state == JobState.INTERRUPTED
        _assert_resumes_from_checkpoint(second, train, checkpoints)
    finally:
        second.close()


_CRASHING_STUDIO = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from studio import TrainingRequest
    from studio.core.studio import Studio
    from studio.testing import fake_plugin

    app = Studio.open(Path(sys.argv[1]), load_plugins=False, start_workers=False)
    app.plugins.register(fake_plugin)
    app.start()
    job = app.submit_training(TrainingRequest(
        trainer="fake-lora", dataset=Path(sys.argv[2]), name="crash",
        options={"steps": 40, "checkpoint_every": 3, "delay": 0.04}))
    print(job, flush=True)
    time.sleep(120)
    """
)


def test_a_crashed_training_is_interrupted_and_resumes_from_its_checkpoint(
    studio_home: Path, dataset: Path
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", _CRASHING_STUDIO, str(studio_home), str(dataset)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        train = proc.stdout.readline().strip()
        assert train, "the child studio did not start"
        checkpoints = CheckpointStore(studio_home / "checkpoints" / train)
        assert wait_until(lambda: _latest_step(checkpoints) >= 6, 60)
    finally:
        proc.kill()  # a crash: no clean-up runs
        proc.wait(30)
    app = open_fake_studio(studio_home)
    try:
        record = app.job(train)
        assert record.state == JobState.INTERRUPTED and record.error
        time.sleep(0.3)
        assert app.job(train).state == JobState.INTERRUPTED  # nothing re-runs by itself
        _assert_resumes_from_checkpoint(app, train, checkpoints)
    finally:
        app.close()


def _latest_step(checkpoints: CheckpointStore) -> int:
    latest = checkpoints.latest()
    return 0 if latest is None else checkpoints.step_of(latest)


def _assert_resumes_from_checkpoint(app: Studio, train: str, checkpoints: CheckpointStore) -> None:
    saved = _latest_step(checkpoints)
    assert saved >= 6
    rec = EventRecorder()
    app.subscribe(rec)
    assert app.resume(train)
    assert not app.resume(train)  # already queued again
    record = app.wait(train, WAIT)
    assert record.state == JobState.SUCCEEDED, record.error
    events = rec.of(train)
    notes = [e.message for e in events if isinstance(e, Note)]
    assert notes == [f"resumed from the checkpoint at step {saved}"]
    steps = [e.step for e in events if isinstance(e, TrainStep)]
    assert steps[0] == saved + 1 and steps[-1] == record.total
    assert len(app.adapters()) == 1


def test_a_second_studio_on_the_same_home_leaves_the_first_ones_jobs_alone(
    studio_home: Path,
) -> None:
    owner = open_fake_studio(studio_home)
    try:
        running = owner.submit(image(steps=100, delay=0.02))
        assert wait_until(lambda: owner.job(running).state == JobState.RUNNING, WAIT)
        guest = open_fake_studio(studio_home)  # e.g. the CLI while the GUI runs
        try:
            assert guest.job(running).state == JobState.RUNNING  # not marked interrupted
            own = guest.submit(GenerationRequest(generator="fake-text", prompt="guest"))
            succeeded(guest, own)  # a guest runs the jobs it submits itself
        finally:
            guest.close()
        assert owner.cancel(running)
        assert owner.wait(running, WAIT).state == JobState.CANCELLED
    finally:
        owner.close()


def test_a_studio_that_does_not_adopt_the_queue_runs_only_its_own_jobs(
    studio_home: Path,
) -> None:
    first = open_fake_studio(studio_home, start=False)
    left = first.submit(GenerationRequest(generator="fake-text", prompt="left"))
    first.close()
    cli = open_fake_studio(studio_home, start=False)  # e.g. one `aigc-studio generate`
    try:
        cli.start(adopt_queue=False)
        succeeded(cli, cli.submit(GenerationRequest(generator="fake-text", prompt="mine")))
        assert cli.job(left).state == JobState.QUEUED
    finally:
        cli.close()
    gui = open_fake_studio(studio_home)  # adopts the queue
    try:
        succeeded(gui, left)
    finally:
        gui.close()


def test_a_looking_only_studio_can_cancel_a_queued_job(studio_home: Path) -> None:
    first = open_fake_studio(studio_home, start=False)
    job_id = first.submit(GenerationRequest(generator="fake-text", prompt="a"))
    first.close()
    viewer = Studio.open(studio_home, load_plugins=False, start_workers=False)
    try:
        assert [j.id for j in viewer.jobs()] == [job_id]
        assert viewer.cancel(job_id)
        assert viewer.job(job_id).state == JobState.CANCELLED
        assert not viewer.resume(job_id)  # a cancelled generation does not come back
    finally:
        viewer.close()


# --- models and settings --------------------------------------------------------------------------


def test_models_lists_catalog_models_not_downloaded(app: Studio) -> None:
    models = app.models()
    catalog = [m for m in models if m.source == "catalog"]
    assert catalog and all(not m.downloaded and m.size_bytes for m in catalog)


def test_settings_are_saved_and_budgets_applied(studio_home: Path) -> None:
    app = open_fake_studio(studio_home)
    try:
        settings = app.settings.model_copy(update={"host_budget_gb": 1.5, "theme": "dark"})
        app.save_settings(settings)
        assert app.cache.host_budget == int(1.5 * 10**9)
        assert human_size(app.cache.host_budget) == "1.5 GB"  # the setting's GB, as shown
        with pytest.raises(InvalidRequest):
            app.save_settings({"theme": "dark"})  # type: ignore[arg-type]
    finally:
        app.close()
    with Studio.open(studio_home, load_plugins=False, start_workers=False) as again:
        assert again.settings.theme == "dark" and again.settings.host_budget_gb == 1.5
        assert isinstance(again.settings, Settings)
    assert again.closed


def test_a_closed_studio_refuses_work(studio_home: Path) -> None:
    app = open_fake_studio(studio_home)
    app.close()
    app.close()  # idempotent
    with pytest.raises(Exception, match="closed"):
        app.submit(GenerationRequest(generator="fake-text", prompt="x"))
