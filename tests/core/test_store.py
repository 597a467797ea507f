"""The studio database: migrations, WAL, threads, jobs, artifacts, adapters, settings, hashes."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from studio.core import store as store_module
from studio.core.errors import StudioError
from studio.core.events import JobState
from studio.core.records import (
    AdapterRecord,
    ArtifactRecord,
    JobKind,
    JobRecord,
    Priority,
)
from studio.core.settings import Settings
from studio.core.store import (
    INTERRUPTED_ERROR,
    MIGRATIONS,
    SCHEMA_VERSION,
    Store,
    connect,
    migrate,
)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "home" / "studio.sqlite3"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    with Store(db_path) as opened:
        yield opened


def job(
    job_id: str,
    *,
    state: JobState = JobState.QUEUED,
    priority: Priority = Priority.INTERACTIVE,
    created: float = 1000.0,
    position: int = 0,
    kind: JobKind = JobKind.GENERATE,
) -> JobRecord:
    return JobRecord(
        id=job_id,
        kind=kind,
        state=state,
        priority=priority,
        component="fake-image",
        request={"generator": "fake-image", "prompt": f"prompt of {job_id}", "seed": 1},
        created=created,
        position=position,
    )


def artifact(
    artifact_id: str,
    tmp: Path,
    *,
    job_id: str | None = None,
    modality: str = "image",
    generator: str = "fake-image",
    model: str | None = "org/model",
    prompt: str = "a cat",
    created: float = 1000.0,
) -> ArtifactRecord:
    return ArtifactRecord(
        id=artifact_id,
        job_id=job_id,
        path=tmp / f"{artifact_id}.png",
        modality=modality,
        generator=generator,
        model=model,
        prompt=prompt,
        created=created,
        recipe={"generator": generator, "prompt": prompt, "seed": 7},
    )


# --- schema and migrations ----------------------------------------------------------------------


def test_new_database_is_at_the_latest_schema_in_wal_mode(store: Store, db_path: Path) -> None:
    assert store.schema_version == SCHEMA_VERSION == len(MIGRATIONS)
    other = sqlite3.connect(db_path)
    try:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {row[0] for row in other.execute("SELECT name FROM sqlite_master")}
    finally:
        other.close()
    assert {
        "jobs",
        "job_events",
        "artifacts",
        "adapters",
        "library_models",
        "settings",
        "file_hashes",
    } <= tables


def test_foreign_keys_are_enforced(store: Store, tmp_path: Path) -> None:
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
        store.add_artifact(artifact("a1", tmp_path, job_id="no-such-job"))
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
        store.add_job_event("no-such-job", "progress", {"step": 1})


def test_an_older_database_is_upgraded_and_keeps_its_data(db_path: Path, tmp_path: Path) -> None:
    # a database as the first studio version left it (schema 1): every migration runs on it
    db_path.parent.mkdir(parents=True)
    old = connect(db_path)
    assert migrate(old, target=1) == 1
    old.execute(
        "INSERT INTO jobs (id, kind, state, priority, component, request, created) "
        "VALUES ('j1', 'generate', 'succeeded', 0, 'fake-image', '{\"prompt\": \"x\"}', 5.0)"
    )
    old.execute(
        "INSERT INTO artifacts (id, job_id, path, modality, generator, model, prompt, created, "
        "recipe) VALUES ('a1', 'j1', ?, 'image', 'fake-image', 'org/m', 'ÉCLAIR au CAFÉ', 6.0, "
        "'{\"seed\": 3}')",
        (str(tmp_path / "a1.png"),),
    )
    old.close()

    with Store(db_path) as upgraded:
        assert upgraded.schema_version == SCHEMA_VERSION
        assert upgraded.get_job("j1").artifact_ids == ["a1"]
        found = upgraded.list_artifacts(query="café éclair")
        assert [a.id for a in found] == ["a1"]
        assert found[0].recipe == {"seed": 3}


def test_migrations_run_in_order_and_a_failed_one_rolls_back(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    conn = connect(db_path)

    def add_colour(c: sqlite3.Connection) -> None:
        c.execute("ALTER TABLE jobs ADD COLUMN colour TEXT")

    def broken(c: sqlite3.Connection) -> None:
        c.execute("CREATE TABLE half_done (x)")
        raise RuntimeError("migration bug")

    assert migrate(conn, target=len(MIGRATIONS) + 1, migrations=(*MIGRATIONS, add_colour)) == (
        len(MIGRATIONS) + 1
    )
    with pytest.raises(RuntimeError, match="migration bug"):
        migrate(conn, target=len(MIGRATIONS) + 2, migrations=(*MIGRATIONS, add_colour, broken))
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS) + 1
    names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert "half_done" not in names
    columns = {row[1] for row in conn.execute("PRAGMA table_info(jobs)")}
    assert "colour" in columns
    conn.close()


def test_a_database_from_a_newer_studio_is_refused(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    conn = connect(db_path)
    migrate(conn)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StudioError, match="newer than this studio knows"):
        Store(db_path)


def test_a_damaged_database_file_gets_a_clear_error(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    db_path.write_bytes(b"this is not SQLite" * 100)
    with pytest.raises(StudioError, match=r"cannot open the studio database .*move it away"):
        Store(db_path)


def test_opening_twice_and_reopening_keeps_everything(db_path: Path) -> None:
    first = Store(db_path)
    second = Store(db_path)  # e.g. the CLI while the GUI runs
    first.add_job(job("j1"))
    assert second.get_job("j1").id == "j1"
    first.close()
    second.close()
    with Store(db_path) as reopened:
        assert reopened.get_job("j1").request["prompt"] == "prompt of j1"


def test_a_closed_store_says_so(db_path: Path) -> None:
    opened = Store(db_path)
    opened.close()
    opened.close()  # idempotent
    with pytest.raises(StudioError, match="closed"):
        opened.list_jobs()


# --- jobs ---------------------------------------------------------------------------------------


def test_job_round_trip_and_update(store: Store) -> None:
    rec = job("j1", priority=Priority.BATCH, kind=JobKind.TRAIN)
    store.add_job(rec)
    assert store.get_job("j1") == rec

    store.update_job("j1", state=JobState.RUNNING, started=1001.5, step=3, total=10)
    got = store.get_job("j1")
    assert (got.state, got.started, got.step, got.total) == (JobState.RUNNING, 1001.5, 3, 10)
    store.update_job("j1", state="failed", error="boom", priority=Priority.TRAINING)
    got = store.get_job("j1")
    assert got.state is JobState.FAILED and got.error == "boom"
    assert got.priority is Priority.TRAINING and got.kind is JobKind.TRAIN


def test_job_errors_name_the_problem(store: Store) -> None:
    with pytest.raises(KeyError, match="nope"):
        store.get_job("nope")
    with pytest.raises(KeyError, match="nope"):
        store.update_job("nope", step=1)
    with pytest.raises(KeyError, match="nope"):
        store.update_job("nope")
    store.add_job(job("j1"))
    with pytest.raises(TypeError, match="colour"):
        store.update_job("j1", colour="red")
    with pytest.raises(ValueError):
        store.update_job("j1", state="sleeping")
    assert store.get_job("j1").state is JobState.QUEUED


def test_list_jobs_newest_first_filtered_and_limited(store: Store) -> None:
    store.add_job(job("old", created=1.0, state=JobState.SUCCEEDED))
    store.add_job(job("mid", created=2.0, state=JobState.FAILED))
    store.add_job(job("new", created=3.0))
    assert [j.id for j in store.list_jobs()] == ["new", "mid", "old"]
    assert [j.id for j in store.list_jobs(limit=2)] == ["new", "mid"]
    states = [JobState.SUCCEEDED, "failed"]
    assert [j.id for j in store.list_jobs(states=states)] == ["mid", "old"]
    assert store.list_jobs(states=[]) == []


def test_queued_jobs_by_priority_then_position_then_time(store: Store) -> None:
    store.add_job(job("train", priority=Priority.TRAINING, created=1.0))
    store.add_job(job("batch-late", priority=Priority.BATCH, created=5.0))
    store.add_job(job("batch-early", priority=Priority.BATCH, created=2.0))
    store.add_job(job("click-b", created=9.0, position=1))
    store.add_job(job("click-a", created=10.0, position=0))
    store.add_job(job("running", created=0.5, state=JobState.RUNNING))
    order = [j.id for j in store.queued_jobs()]
    assert order == ["click-a", "click-b", "batch-early", "batch-late", "train"]
    store.update_job("batch-late", position=-1)  # moved up by the user
    assert [j.id for j in store.queued_jobs()][2:4] == ["batch-late", "batch-early"]


def test_mark_interrupted_at_start(store: Store) -> None:
    store.add_job(job("queued"))
    store.add_job(job("running", state=JobState.RUNNING, created=1.0))
    store.add_job(job("paused", state=JobState.PAUSED, created=2.0, kind=JobKind.TRAIN))
    store.add_job(job("done", state=JobState.SUCCEEDED))
    before = time.time()
    assert store.mark_interrupted() == ["running", "paused"]
    for job_id in ("running", "paused"):
        got = store.get_job(job_id)
        assert got.state is JobState.INTERRUPTED
        assert got.error == INTERRUPTED_ERROR == "the studio stopped while this job ran"
        assert got.finished is not None and got.finished >= before
    assert store.get_job("queued").state is JobState.QUEUED
    assert store.get_job("done").state is JobState.SUCCEEDED
    assert store.get_job("done").error is None
    assert store.mark_interrupted() == []


def test_job_events_in_order_with_json_payloads(store: Store, tmp_path: Path) -> None:
    store.add_job(job("j1"))
    store.add_job(job("j2"))
    store.add_job_event("j1", "progress", {"step": 1, "total": 2})
    store.add_job_event("j2", "note", {"message": "other job"})
    store.add_job_event("j1", "artifactsaved", {"path": tmp_path / "x.png"}, time_=42.0)
    events = store.job_events("j1")
    assert [e["type"] for e in events] == ["progress", "artifactsaved"]
    assert events[0]["payload"] == {"step": 1, "total": 2}
    assert events[1]["payload"] == {"path": str(tmp_path / "x.png")}
    assert events[1]["time"] == 42.0 and events[1]["job_id"] == "j1"
    assert store.job_events("none") == []


def test_concurrent_writes_from_threads_and_two_connections(db_path: Path) -> None:
    """Worker threads and the GUI thread share one Store; the CLI has its own connection."""
    shared = Store(db_path)
    other = Store(db_path)
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def work(n: int) -> None:
        target = shared if n % 2 else other
        try:
            start.wait()
            for i in range(25):
                job_id = f"t{n}-{i}"
                target.add_job(job(job_id, created=float(i)))
                target.add_job_event(job_id, "progress", {"step": i})
                target.update_job(job_id, state=JobState.RUNNING, step=i)
                target.list_jobs(limit=5)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    jobs = shared.list_jobs(limit=None)
    assert len(jobs) == 200
    assert all(j.state is JobState.RUNNING for j in jobs)
    assert sum(len(shared.job_events(j.id)) for j in jobs) == 200
    shared.close()
    other.close()


# --- artifacts ----------------------------------------------------------------------------------


@pytest.fixture
def gallery(store: Store, tmp_path: Path) -> Store:
    day = dt.datetime(2026, 11, 22, 12, 0).timestamp()
    store.add_job(job("j1", created=day))
    store.add_job(job("j2", created=day))
    store.add_artifact(artifact("cat", tmp_path, job_id="j1", prompt="A Cat on a Mat", created=day))
    store.add_artifact(
        artifact("dog", tmp_path, job_id="j1", prompt="a dog, 100% happy", created=day + 1)
    )
    store.add_artifact(
        artifact(
            "song",
            tmp_path,
            job_id="j2",
            modality="audio",
            generator="fake-audio",
            model="org/audio",
            prompt="calm piano_music",
            created=day + 86400,
        )
    )
    store.add_artifact(
        artifact(
            "poem",
            tmp_path,
            modality="text",
            generator="fake-text",
            model=None,
            prompt="STRASSE poem",
            created=day - 86400,
        )
    )
    return store


def ids(records: list[ArtifactRecord]) -> list[str]:
    return [r.id for r in records]


def test_artifacts_newest_first_and_linked_to_their_job(gallery: Store, tmp_path: Path) -> None:
    assert ids(gallery.list_artifacts()) == ["song", "dog", "cat", "poem"]
    assert ids(gallery.list_artifacts(limit=2)) == ["song", "dog"]
    assert gallery.get_job("j1").artifact_ids == ["cat", "dog"]
    assert [j.artifact_ids for j in gallery.list_jobs() if j.id == "j2"] == [["song"]]
    got = gallery.get_artifact("cat")
    assert got.path == (tmp_path / "cat.png").resolve()
    assert got.recipe == {"generator": "fake-image", "prompt": "A Cat on a Mat", "seed": 7}
    with pytest.raises(KeyError, match="nope"):
        gallery.get_artifact("nope")


def test_artifact_filters(gallery: Store) -> None:
    assert ids(gallery.list_artifacts(modality="image")) == ["dog", "cat"]
    assert ids(gallery.list_artifacts(model="org/audio")) == ["song"]
    assert ids(gallery.list_artifacts(generator="fake-text")) == ["poem"]
    assert ids(gallery.list_artifacts(job_id="j1", modality="image", model="org/model")) == [
        "dog",
        "cat",
    ]
    assert gallery.list_artifacts(modality="video") == []


def test_artifact_text_search_ignores_case_and_escapes_wildcards(gallery: Store) -> None:
    assert ids(gallery.list_artifacts(query="cat")) == ["cat"]
    assert ids(gallery.list_artifacts(query="  MAT   a CAT ")) == ["cat"]  # every word must occur
    assert ids(gallery.list_artifacts(query="o")) == ["song", "dog", "cat", "poem"]  # substrings
    assert ids(gallery.list_artifacts(query="straße")) == ["poem"]  # Unicode case folding
    assert ids(gallery.list_artifacts(query="100%")) == ["dog"]
    assert gallery.list_artifacts(query="1%0") == []  # % is literal, not a wildcard
    assert ids(gallery.list_artifacts(query="piano_music")) == ["song"]
    assert gallery.list_artifacts(query="piano_mu_ic") == []  # _ is literal too
    assert ids(gallery.list_artifacts(query="", modality="text")) == ["poem"]


def test_artifact_date_filters(gallery: Store) -> None:
    day = dt.date(2026, 11, 22)
    assert ids(gallery.list_artifacts(since=day, until=day + dt.timedelta(days=1))) == [
        "dog",
        "cat",
    ]
    noon = dt.datetime(2026, 11, 22, 12, 0)
    assert ids(gallery.list_artifacts(since=noon.timestamp() + 0.5)) == ["song", "dog"]
    assert ids(gallery.list_artifacts(until=noon)) == ["poem"]


def test_artifact_by_path_and_delete(gallery: Store, tmp_path: Path) -> None:
    found = gallery.artifact_by_path(tmp_path / "dog.png")
    assert found is not None and found.id == "dog"
    relative = os.path.relpath(tmp_path / "dog.png")
    assert gallery.artifact_by_path(relative) == found
    assert gallery.artifact_by_path(tmp_path / "none.png") is None
    gallery.delete_artifact("dog")
    assert gallery.artifact_by_path(tmp_path / "dog.png") is None
    assert gallery.get_job("j1").artifact_ids == ["cat"]
    with pytest.raises(KeyError):
        gallery.delete_artifact("dog")


# --- adapters and library models ----------------------------------------------------------------


def test_adapters(store: Store, tmp_path: Path) -> None:
    def adapter(adapter_id: str, name: str, modality: str, created: float) -> AdapterRecord:
        return AdapterRecord(
            id=adapter_id,
            name=name,
            path=tmp_path / f"{adapter_id}.safetensors",
            modality=modality,
            base_model="org/base",
            sha256="ab" * 32,
            created=created,
            extra={"rank": 4},
        )

    first = adapter("ad1", "my-style", "image", 1.0)
    store.add_adapter(first)
    store.add_adapter(adapter("ad2", "my-style", "image", 2.0))  # retrained, same name
    store.add_adapter(adapter("ad3", "my-voice", "audio", 3.0))
    assert [a.id for a in store.list_adapters()] == ["ad3", "ad2", "ad1"]
    assert [a.id for a in store.list_adapters(modality="image")] == ["ad2", "ad1"]
    assert store.find_adapter("ad1") == AdapterRecord(
        **{**first.__dict__, "path": first.path.resolve()}
    )
    by_name = store.find_adapter("my-style")
    assert by_name is not None and by_name.id == "ad2" and by_name.extra == {"rank": 4}
    assert store.find_adapter("unknown") is None
    store.delete_adapter("ad2")
    found = store.find_adapter("my-style")
    assert found is not None and found.id == "ad1"
    with pytest.raises(KeyError):
        store.delete_adapter("ad2")


def test_library_models(store: Store, tmp_path: Path) -> None:
    store.add_library_model("my-sd", tmp_path / "sd", "diffusers", 1234, modality="image")
    store.add_library_model("voice.safetensors", tmp_path / "v.safetensors", None, None)
    store.add_library_model("my-sd", tmp_path / "sd2", "diffusers", 99, modality="image")  # update
    models = {m.ref: m for m in store.list_library_models()}
    assert set(models) == {"my-sd", "voice.safetensors"}
    sd = models["my-sd"]
    assert (sd.source, sd.downloaded, sd.size_bytes, sd.kind, sd.modality) == (
        "library",
        True,
        99,
        "diffusers",
        "image",
    )
    assert sd.path == (tmp_path / "sd2").resolve()
    store.remove_library_model("my-sd")
    assert [m.ref for m in store.list_library_models()] == ["voice.safetensors"]
    with pytest.raises(KeyError):
        store.remove_library_model("my-sd")


# --- settings -----------------------------------------------------------------------------------


def _stored_settings(db_path: Path) -> dict[str, Any]:
    conn = sqlite3.connect(db_path)
    try:
        return {key: json.loads(value) for key, value in conn.execute("SELECT * FROM settings")}
    finally:
        conn.close()


def test_settings_round_trip(store: Store, db_path: Path, tmp_path: Path) -> None:
    assert store.load_settings() == Settings.model_validate({})
    changed = Settings.model_validate(
        {
            "device": "cuda:1",
            "device_budget_gb": 6.5,
            "output_dir": str(tmp_path / "out"),
            "theme": "dark",
            "allow_pickle": ["org/old-model"],
            "offline": True,
        }
    )
    store.save_settings(changed)
    assert store.load_settings() == changed
    # only values that differ from the defaults are stored
    assert set(_stored_settings(db_path)) == {
        "device",
        "device_budget_gb",
        "output_dir",
        "theme",
        "allow_pickle",
        "offline",
    }
    back_to_default = changed.model_copy(update={"theme": "system", "offline": False})
    store.save_settings(back_to_default)
    assert "theme" not in _stored_settings(db_path)
    assert store.load_settings() == back_to_default


def test_bad_stored_settings_are_dropped_with_a_warning(
    store: Store, db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    conn = sqlite3.connect(db_path)
    conn.executemany(
        "INSERT INTO settings (key, value) VALUES (?, ?)",
        [
            ("device", json.dumps("gpu9")),  # fails the pattern
            ("cpu_threads", json.dumps(0)),  # below the minimum
            ("theme", "{not json"),  # damaged
            ("from_the_future", json.dumps(True)),  # a newer studio's setting
            ("offline", json.dumps(True)),  # fine: kept
        ],
    )
    conn.commit()
    conn.close()
    with caplog.at_level(logging.WARNING, logger="studio.core.store"):
        loaded = store.load_settings()
    defaults = Settings.model_validate({})
    assert loaded.offline is True
    assert (loaded.device, loaded.cpu_threads, loaded.theme) == (
        defaults.device,
        defaults.cpu_threads,
        defaults.theme,
    )
    messages = "\n".join(r.getMessage() for r in caplog.records)
    for key in ("device", "cpu_threads", "theme", "from_the_future"):
        assert repr(key) in messages
    assert "not a setting of this studio version" in messages

    # saving keeps the newer studio's key and repairs the bad ones
    store.save_settings(loaded)
    stored = _stored_settings(db_path)
    assert stored == {"offline": True, "from_the_future": True}


# --- file hashes --------------------------------------------------------------------------------


def test_file_hash_is_cached_and_invalidated_on_change(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"weights v1")
    calls: list[Path] = []
    real_hash = store_module.sha256_file

    def counting(path: Path, chunk_size: int = 1 << 20) -> str:
        calls.append(path)
        return real_hash(path, chunk_size)

    monkeypatch.setattr(store_module, "sha256_file", counting)

    expected = hashlib.sha256(b"weights v1").hexdigest()
    assert store.file_sha256(weights) == expected
    assert store.file_sha256(weights) == expected
    assert store.file_sha256(str(weights)) == expected
    assert len(calls) == 1  # the cache answered twice

    stat = weights.stat()
    weights.write_bytes(b"weights v2")  # same size, new content: mtime tells
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert store.file_sha256(weights) == hashlib.sha256(b"weights v2").hexdigest()
    assert len(calls) == 2

    weights.write_bytes(b"longer weights v3")
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # old mtime, new size
    assert store.file_sha256(weights) == hashlib.sha256(b"longer weights v3").hexdigest()
    assert len(calls) == 3

    with Store(store.path) as reopened:  # the cache is persistent
        assert reopened.file_sha256(weights) == hashlib.sha256(b"longer weights v3").hexdigest()
    assert len(calls) == 3

    with pytest.raises(FileNotFoundError):
        store.file_sha256(tmp_path / "missing.safetensors")
