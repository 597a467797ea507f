"""Model downloads: jobs, progress, cancel/resume, failures, deletion, memory estimates.

No network: ``huggingface_hub.snapshot_download`` (what refs downloads with, for the download
manager too) and ``HfApi.list_repo_files`` are replaced by :class:`FakeHub`, which writes files
chunk by chunk into the temporary hub cache the way huggingface_hub 2.4 does (temporary
``.incomplete`` blob, moved into place when complete, deleted when the transfer stops; the tree
listing cached first) and reports bytes through the progress bar class it is given.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from studio.core import downloads, hub, refs
from studio.core.cache import ModelCache
from studio.core.catalog import catalog
from studio.core.downloads import DownloadManager, cache_state, fits_in_memory
from studio.core.errors import InvalidRequest, ModelNotFound, StudioError
from studio.core.events import JobEvent, JobState, JobStateChanged, Note, Progress
from studio.core.records import JobKind, JobRecord, ModelEntry, Priority
from studio.core.store import Store
from studio.testing.fake_hub import WAIT, FakeHub, Gate, tiny_repo
from studio.testing.hub import save_to_hub_cache


class Events:
    """Collects published events; waits (bounded) for a job's n-th end."""

    def __init__(self) -> None:
        self.items: list[JobEvent] = []
        self.cond = threading.Condition()

    def __call__(self, event: JobEvent) -> None:
        with self.cond:
            self.items.append(event)
            self.cond.notify_all()

    def of(self, job_id: str) -> list[Any]:
        with self.cond:
            return [e.event for e in self.items if e.job_id == job_id]

    def states(self, job_id: str) -> list[JobState]:
        return [e.state for e in self.of(job_id) if isinstance(e, JobStateChanged)]

    def progress(self, job_id: str) -> list[Progress]:
        return [e for e in self.of(job_id) if isinstance(e, Progress)]

    def wait_end(self, job_id: str, n: int = 1) -> JobState:
        deadline = time.monotonic() + WAIT
        with self.cond:
            while True:
                ends = [s for s in self.states(job_id) if s.finished]
                if len(ends) >= n:
                    return ends[n - 1]
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"job {job_id} did not end: {self.states(job_id)}"
                self.cond.wait(remaining)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    db = Store(tmp_path / "studio.db")
    yield db
    db.close()


@pytest.fixture
def events() -> Events:
    return Events()


@pytest.fixture
def manager(store: Store, events: Events, hub_cache: Path) -> Iterator[DownloadManager]:
    mgr = DownloadManager(store, events)  # cache_dir None: HF_HUB_CACHE, as the studio runs
    yield mgr
    assert mgr.close(WAIT)


def resolve_offline(ref: str, monkeypatch: pytest.MonkeyPatch) -> refs.ResolvedModel:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return refs.resolve(ref, allow_download=False)


# --- downloads -----------------------------------------------------------------------------------


def test_download_reports_progress_then_the_model_resolves_offline(
    fake_hub: FakeHub,
    manager: DownloadManager,
    store: Store,
    events: Events,
    hub_cache: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(downloads, "PUBLISH_INTERVAL", 0.0)  # every chunk, not 10 per second
    files = tiny_repo(size=1000)
    fake_hub.add("org/tiny", files)
    job_id = manager.start("org/tiny")
    assert events.wait_end(job_id) == JobState.SUCCEEDED
    assert events.states(job_id) == [JobState.QUEUED, JobState.RUNNING, JobState.SUCCEEDED]

    total = sum(len(b) for b in files.values())
    progress = events.progress(job_id)
    bytes_seen = [p.step for p in progress]
    assert bytes_seen == sorted(bytes_seen)  # never goes back
    assert (progress[-1].step, progress[-1].total) == (total, total)
    assert any(0 < p.step < total for p in progress)  # reported along the way, not only at the end
    assert "org/tiny" in progress[-1].message
    assert any(isinstance(e, Note) and "hub cache" in e.message for e in events.of(job_id))

    record = store.get_job(job_id)
    assert record.kind == JobKind.DOWNLOAD and record.priority == Priority.BATCH
    assert record.component == "org/tiny" and record.state == JobState.SUCCEEDED
    assert (record.step, record.total) == (total, total) and record.error is None
    assert record.started is not None and record.finished is not None
    stored = [
        e["payload"]["state"] for e in store.job_events(job_id) if e["type"] == "jobstatechanged"
    ]
    assert stored == ["queued", "running", "succeeded"]

    resolved = resolve_offline("org/tiny", monkeypatch)
    assert resolved.source == "hub"
    assert resolved.path.parent == hub_cache / "models--org--tiny" / "snapshots"
    assert (resolved.path / "model.safetensors").read_bytes() == files["model.safetensors"]
    assert not list(hub_cache.rglob("*.incomplete"))


def test_a_model_already_in_the_cache_is_not_downloaded_again(
    fake_hub: FakeHub, manager: DownloadManager, events: Events
) -> None:
    fake_hub.add("org/tiny", tiny_repo())
    first = manager.start("org/tiny")
    assert events.wait_end(first) == JobState.SUCCEEDED
    second = manager.start("org/tiny")
    assert second != first
    assert events.wait_end(second) == JobState.SUCCEEDED
    assert len(fake_hub.calls) == 1
    assert any(isinstance(e, Note) and "already" in e.message for e in events.of(second))


def test_pickle_weights_are_skipped_next_to_safetensors(
    fake_hub: FakeHub, manager: DownloadManager, events: Events
) -> None:
    fake_hub.add(
        "org/both", tiny_repo(extra={"pytorch_model.bin": b"p" * 100, "tf_model.h5": b"h5"})
    )
    job_id = manager.start("org/both")
    assert events.wait_end(job_id) == JobState.SUCCEEDED
    assert fake_hub.calls == [["config.json", "model.safetensors"]]


def test_a_download_that_skipped_pickle_files_resolves_offline(
    fake_hub: FakeHub, manager: DownloadManager, events: Events, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_hub.add("org/both", tiny_repo(extra={"pytorch_model.bin": b"p" * 100}))
    job_id = manager.start("org/both")
    assert events.wait_end(job_id) == JobState.SUCCEEDED
    assert resolve_offline("org/both", monkeypatch).source == "hub"


def test_pickle_only_repo_is_refused_before_downloading_unless_allowed(
    fake_hub: FakeHub, manager: DownloadManager, store: Store, events: Events
) -> None:
    fake_hub.add("org/old", {"config.json": b"{}", "pytorch_model.bin": b"p" * 300})
    refused = manager.start("org/old")
    assert events.wait_end(refused) == JobState.FAILED
    assert fake_hub.calls == []
    error = store.get_job(refused).error
    assert error is not None and "pickle" in error and "allow_pickle" in error
    allowed = manager.start("org/old", allow_pickle=True)
    assert events.wait_end(allowed) == JobState.SUCCEEDED
    assert fake_hub.calls == [["config.json", "pytorch_model.bin"]]
    assert store.get_job(allowed).request == {"ref": "org/old", "allow_pickle": True}


def test_cancel_mid_file_leaves_no_complete_snapshot_and_the_download_resumes(
    fake_hub: FakeHub,
    manager: DownloadManager,
    store: Store,
    events: Events,
    hub_cache: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    files = tiny_repo(size=1000)
    fake_hub.add("org/tiny", files)
    gate = Gate("model.safetensors", after=256)
    fake_hub.on_chunk = gate
    job_id = manager.start("org/tiny")
    assert gate.reached.wait(WAIT)
    eta = manager.eta(job_id)
    assert eta is None or eta >= 0
    assert manager.active() == [job_id]
    assert manager.cancel(job_id)
    gate.proceed.set()
    assert events.wait_end(job_id) == JobState.CANCELLED

    record = store.get_job(job_id)
    assert record.state == JobState.CANCELLED and record.error is None
    assert 0 < record.step < sum(len(b) for b in files.values())
    assert manager.cancel(job_id) is False  # already ended
    # No complete snapshot is claimed, and what is in the snapshot is whole.
    with pytest.raises(ModelNotFound):
        refs.resolve("org/tiny", allow_download=False)
    assert cache_state("org/tiny") == "partial"
    (snapshot,) = (hub_cache / "models--org--tiny" / "snapshots").iterdir()
    assert sorted(p.name for p in snapshot.iterdir()) == ["config.json"]
    assert (snapshot / "config.json").read_bytes() == files["config.json"]

    # Resuming fetches only what is missing.
    fake_hub.on_chunk = None
    assert manager.resume(job_id)
    assert events.wait_end(job_id, n=2) == JobState.SUCCEEDED
    assert fake_hub.transfers == [
        "org/tiny:config.json",
        "org/tiny:model.safetensors",
        "org/tiny:model.safetensors",
    ]
    assert events.states(job_id)[-3:] == [JobState.QUEUED, JobState.RUNNING, JobState.SUCCEEDED]
    resolved = resolve_offline("org/tiny", monkeypatch)
    assert (resolved.path / "model.safetensors").read_bytes() == files["model.safetensors"]
    assert manager.resume(job_id) is False  # succeeded: nothing to resume


def test_cancel_between_files(
    fake_hub: FakeHub, manager: DownloadManager, events: Events, hub_cache: Path
) -> None:
    fake_hub.add("org/tiny", tiny_repo())
    gate = Gate("config.json", after=0)
    fake_hub.on_file = gate  # the first file is complete, the next not begun
    job_id = manager.start("org/tiny")
    assert gate.reached.wait(WAIT)
    assert manager.cancel(job_id)
    gate.proceed.set()
    assert events.wait_end(job_id) == JobState.CANCELLED
    assert fake_hub.transfers == ["org/tiny:config.json"]
    assert cache_state("org/tiny") == "partial"


def test_cancel_a_queued_download_before_it_starts(
    fake_hub: FakeHub, manager: DownloadManager, store: Store, events: Events
) -> None:
    fake_hub.add("org/first", tiny_repo(seed=1))
    fake_hub.add("org/second", tiny_repo(seed=2))
    gate = Gate("model.safetensors", after=64)
    fake_hub.on_chunk = gate
    first = manager.start("org/first")
    assert gate.reached.wait(WAIT)
    second = manager.start("org/second")
    assert manager.active() == [first, second]
    assert manager.cancel(second)
    assert store.get_job(second).state == JobState.CANCELLED
    gate.proceed.set()
    assert events.wait_end(first) == JobState.SUCCEEDED
    assert events.states(second) == [JobState.QUEUED, JobState.CANCELLED]
    assert [c for c in fake_hub.transfers if c.startswith("org/second")] == []


def test_a_failed_transfer_records_its_error(
    fake_hub: FakeHub, manager: DownloadManager, store: Store, events: Events
) -> None:
    fake_hub.add("org/tiny", tiny_repo())

    def drop(repo_id: str, name: str, done: int) -> None:
        if name == "model.safetensors":
            raise ConnectionError("connection reset by peer")

    fake_hub.on_chunk = drop
    job_id = manager.start("org/tiny")
    assert events.wait_end(job_id) == JobState.FAILED
    record = store.get_job(job_id)
    assert record.error is not None and "could not be reached" in record.error
    assert "connection reset" in record.error
    (error,) = [e for e in store.job_events(job_id) if e["type"] == "error"]
    assert "ConnectionError" in error["payload"]["traceback"]
    assert events.of(job_id)[-1] == JobStateChanged(JobState.FAILED, record.error)
    # the thread goes on serving the queue
    fake_hub.on_chunk = None
    assert manager.resume(job_id)
    assert events.wait_end(job_id, n=2) == JobState.SUCCEEDED


def test_start_refuses_what_cannot_be_downloaded(
    tmp_path: Path, fake_hub: FakeHub, manager: DownloadManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"x")
    with pytest.raises(InvalidRequest, match="local path"):
        manager.start(str(tmp_path / "model.safetensors"))
    with pytest.raises(InvalidRequest, match="local path"):
        manager.start("./missing/folder")
    with pytest.raises(InvalidRequest, match="valid hub id"):
        manager.start("org/bad name!")
    with pytest.raises(InvalidRequest, match="empty"):
        manager.start("  ")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InvalidRequest, match="HF_HUB_OFFLINE"):
        manager.start("org/tiny")
    assert manager.active() == [] and fake_hub.calls == []


def test_starting_the_same_model_twice_gives_one_job(
    fake_hub: FakeHub, manager: DownloadManager, events: Events
) -> None:
    fake_hub.add("org/tiny", tiny_repo())
    gate = Gate("model.safetensors", after=64)
    fake_hub.on_chunk = gate
    job_id = manager.start("org/tiny")
    assert gate.reached.wait(WAIT)
    assert manager.start(" org/tiny ") == job_id
    gate.proceed.set()
    assert events.wait_end(job_id) == JobState.SUCCEEDED
    assert len(fake_hub.calls) == 1


def test_close_interrupts_the_running_download_and_keeps_the_queued_one(
    fake_hub: FakeHub, store: Store, events: Events
) -> None:
    fake_hub.add("org/first", tiny_repo(seed=1))
    fake_hub.add("org/second", tiny_repo(seed=2))
    gate = Gate("model.safetensors", after=64)
    fake_hub.on_chunk = gate
    mgr = DownloadManager(store, events)
    first = mgr.start("org/first")
    assert gate.reached.wait(WAIT)
    second = mgr.start("org/second")
    closer = threading.Thread(target=mgr.close, args=(WAIT,))
    closer.start()
    deadline = time.monotonic() + WAIT
    while not mgr.closed and time.monotonic() < deadline:
        time.sleep(0.01)
    gate.proceed.set()
    closer.join(WAIT)
    assert not closer.is_alive()
    assert events.wait_end(first) == JobState.INTERRUPTED
    assert store.get_job(second).state == JobState.QUEUED
    with pytest.raises(StudioError, match="closed"):
        mgr.start("org/third")

    # The next studio takes both up again.
    fake_hub.on_chunk = None
    again = DownloadManager(store, events)
    try:
        assert again.requeue_stored() == [second]
        assert again.resume(first)
        assert events.wait_end(second, n=1) == JobState.SUCCEEDED
        assert events.wait_end(first, n=2) == JobState.SUCCEEDED
    finally:
        assert again.close(WAIT)


def test_cancel_of_a_download_left_queued_in_the_database(
    store: Store, events: Events, hub_cache: Path
) -> None:
    left = JobRecord(
        id="left-by-an-earlier-studio",
        kind=JobKind.DOWNLOAD,
        state=JobState.QUEUED,
        priority=Priority.BATCH,
        component="org/tiny",
        request={"ref": "org/tiny", "allow_pickle": False},
        created=time.time(),
    )
    store.add_job(left)
    mgr = DownloadManager(store, events)
    try:
        assert mgr.cancel(left.id)
        assert store.get_job(left.id).state == JobState.CANCELLED
        assert events.states(left.id) == [JobState.CANCELLED]
        assert mgr.requeue_stored() == [] and mgr.active() == []
        assert mgr.cancel(left.id) is False
        with pytest.raises(KeyError):
            mgr.cancel("no-such-job")
    finally:
        assert mgr.close(WAIT)


# --- deleting ------------------------------------------------------------------------------------


def model_folder(path: Path, seed: int = 0) -> Path:
    path.mkdir(parents=True)
    for name, data in tiny_repo(seed=seed).items():
        (path / name).write_bytes(data)
    return path


def test_delete_removes_a_hub_model_from_the_cache(
    tmp_path: Path, manager: DownloadManager, hub_cache: Path
) -> None:
    old = save_to_hub_cache(model_folder(tmp_path / "v1", seed=1), "org/tiny", hub_cache)
    new = save_to_hub_cache(model_folder(tmp_path / "v2", seed=2), "org/tiny", hub_cache)
    assert refs.resolve("org/tiny", allow_download=False).path == new
    # one revision, by commit prefix
    assert manager.delete(f"org/tiny@{old.name[:12]}") > 0
    assert not old.exists() and new.exists()
    assert refs.resolve("org/tiny", allow_download=False).path == new
    # the whole repo
    assert manager.delete("org/tiny") >= 1000
    assert not (hub_cache / "models--org--tiny").exists()
    assert cache_state("org/tiny") == "missing"
    with pytest.raises(ModelNotFound, match="not in the hub cache"):
        manager.delete("org/tiny")
    with pytest.raises(ModelNotFound, match="not in the hub cache"):
        manager.delete("org/never-downloaded")


def test_delete_a_stopped_download(
    fake_hub: FakeHub, manager: DownloadManager, events: Events, hub_cache: Path
) -> None:
    fake_hub.add("org/tiny", tiny_repo())
    gate = Gate("model.safetensors", after=64)
    fake_hub.on_chunk = gate
    job_id = manager.start("org/tiny")
    assert gate.reached.wait(WAIT)
    with pytest.raises(InvalidRequest, match="being downloaded"):
        manager.delete("org/tiny")
    manager.cancel(job_id)
    gate.proceed.set()
    assert events.wait_end(job_id) == JobState.CANCELLED
    manager.delete("org/tiny")
    assert not (hub_cache / "models--org--tiny").exists()


def test_delete_forgets_a_library_model_but_keeps_its_files(
    tmp_path: Path, manager: DownloadManager, store: Store
) -> None:
    folder = model_folder(tmp_path / "mine")
    store.add_library_model("my-model", folder, "transformers", 1000)
    assert manager.delete("my-model") == 0
    assert store.list_library_models() == []
    assert (folder / "model.safetensors").is_file()
    with pytest.raises(InvalidRequest, match="not in the studio library"):
        manager.delete(str(folder))


# --- cache state and memory ---------------------------------------------------------------------


def test_cache_state(tmp_path: Path, hub_cache: Path) -> None:
    assert cache_state("org/tiny") == "missing"
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "config.json").write_text("{}")
    save_to_hub_cache(partial, "org/tiny", hub_cache)
    assert cache_state("org/tiny") == "partial"
    save_to_hub_cache(model_folder(tmp_path / "full"), "org/full", hub_cache)
    assert cache_state("org/full") == "complete"
    with pytest.raises(InvalidRequest):
        cache_state("not a hub id!")


def test_fits_in_memory_against_the_cache_budget(tmp_path: Path, hub_cache: Path) -> None:
    snapshot = save_to_hub_cache(model_folder(tmp_path / "m"), "org/tiny", hub_cache)
    weights = (snapshot / "model.safetensors").stat().st_size
    roomy, tight = ModelCache(host_budget=10_000), ModelCache(host_budget=500)
    assert fits_in_memory("org/tiny", roomy) == (True, weights, 10_000)
    assert fits_in_memory("org/tiny", tight) == (False, weights, 500)
    resolved = refs.resolve("org/tiny", allow_download=False)
    assert fits_in_memory(resolved, roomy) == (True, weights, 10_000)
    (hub_entry,) = hub.list_hub_models()
    assert fits_in_memory(hub_entry, roomy)[1] == weights
    # Not downloaded: the catalog's size.
    item = catalog()[0]
    fits, needed, budget = fits_in_memory(item.id, ModelCache(host_budget=item.size_bytes - 1))
    assert (fits, needed) == (False, item.size_bytes)
    assert fits_in_memory(item, roomy)[1] == item.size_bytes
    entry = ModelEntry(
        ref="org/gone", source="catalog", modality="text", size_bytes=123, downloaded=False
    )
    assert fits_in_memory(entry, roomy) == (True, 123, 10_000)
    # An accelerator budget counts for that device; no budget at all: the host's memory.
    assert fits_in_memory("org/tiny", ModelCache(device_budget=100), device="cuda:0")[0] is False
    fits, needed, budget = fits_in_memory("org/tiny", ModelCache())
    assert fits and budget is not None and budget > weights
    with pytest.raises(ModelNotFound, match="not in the model catalog"):
        fits_in_memory("org/unknown-model", roomy)
