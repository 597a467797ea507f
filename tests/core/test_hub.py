"""The hub and its cache: lookups, the network wrappers (huggingface_hub faked underneath),
byte progress and cancel, listing the cached models."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from studio.core import hub
from studio.core.errors import Cancelled, ModelNotFound
from studio.testing.hub import save_to_hub_cache


def transformers_folder(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    (root / "model.safetensors").write_bytes(b"w" * 64)  # listing reads no weights
    return root


def diffusers_folder(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    (root / "unet").mkdir()
    (root / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"w" * 64)
    return root


# --- the cache, no network ------------------------------------------------------------------------


def test_cache_dir_follows_the_environment_at_each_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert hub.hub_cache_dir() == tmp_path / "xdg" / "huggingface" / "hub"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    assert hub.hub_cache_dir() == tmp_path / "home" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    assert hub.hub_cache_dir() == tmp_path / "cache"
    assert hub.hub_cache_dir(tmp_path / "given") == tmp_path / "given"


def test_offline_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "yes")
    assert hub.hub_offline()
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert not hub.hub_offline()


def test_cached_snapshot_asks_only_for_the_given_files(tmp_path: Path, hub_cache: Path) -> None:
    from huggingface_hub._tree_cache import TreeCacheEntry, write_tree_cache

    assert hub.cached_snapshot("org/tiny", None, hub_cache, None) is None
    assert not hub.has_snapshot(hub_cache, "org/tiny")
    snapshot = save_to_hub_cache(transformers_folder(tmp_path / "m"), "org/tiny", hub_cache)
    assert hub.cached_listing("org/tiny", None, hub_cache) is None  # no listing kept
    assert hub.cached_snapshot("org/tiny", None, hub_cache, None) == snapshot
    # a listing naming a file the snapshot lacks: incomplete, unless that file is not asked for
    names = ["config.json", "model.safetensors", "pytorch_model.bin"]
    entries = {name: TreeCacheEntry(size=1, blob_id="0" * 40) for name in names}
    write_tree_cache(str(snapshot.parent.parent), snapshot.name, entries)
    assert sorted(hub.cached_listing("org/tiny", None, hub_cache) or []) == names
    assert hub.cached_snapshot("org/tiny", None, hub_cache, None) is None
    assert hub.cached_snapshot("org/tiny", None, hub_cache, names[:2]) == snapshot
    assert hub.has_snapshot(hub_cache, "org/tiny")
    assert hub.repo_folder(hub_cache, "org/tiny") == hub_cache / "models--org--tiny"


# --- the network wrappers ---------------------------------------------------------------------


def hub_http_error(cls: type[Exception]) -> Exception:
    """A huggingface_hub HTTP error without an HTTP response (its __init__ needs one)."""
    error = cls.__new__(cls)
    Exception.__init__(error, "404 Client Error")
    return error


def test_download_wrapper_asks_for_exact_files_with_progress(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub
    from huggingface_hub.utils import filter_repo_objects

    calls: list[dict[str, object]] = []

    def fake_snapshot_download(repo_id: str, **kwargs: object) -> str:
        calls.append({"repo_id": repo_id, **kwargs})
        bar_cls = kwargs["tqdm_class"]
        assert isinstance(bar_cls, type)
        bar = bar_cls(total=0, initial=0, unit="B", desc="Reconstructing (incomplete total...)")
        bar.total = 10
        bar.update(10)
        return str(tmp_path / "snapshot")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    seen: list[tuple[int, int]] = []
    files = ["a[1].json", "model.safetensors"]
    path = hub.download("org/x", None, tmp_path, files, lambda d, t: seen.append((d, t)))
    assert path == tmp_path / "snapshot" and seen == [(10, 10)]
    (call,) = calls
    assert call["repo_id"] == "org/x" and call["cache_dir"] == tmp_path
    assert "local_files_only" not in call  # a real (resumable) download
    patterns = call["allow_patterns"]
    remote = ["a[1].json", "a1.json", "model.safetensors", "pytorch_model.bin"]
    assert list(filter_repo_objects(remote, allow_patterns=patterns)) == files  # type: ignore[arg-type]


def test_hub_http_errors_are_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub
    from huggingface_hub.errors import (
        GatedRepoError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    for cls, expected in (
        (GatedRepoError, "gated"),
        (RepositoryNotFoundError, "not found on the hub"),
        (RevisionNotFoundError, "revision does not exist"),
    ):
        error = hub_http_error(cls)

        def fail(*args: object, _error: Exception = error, **kwargs: object) -> None:
            raise _error

        monkeypatch.setattr(huggingface_hub.HfApi, "list_repo_files", fail)
        monkeypatch.setattr(huggingface_hub, "snapshot_download", fail)
        with pytest.raises(ModelNotFound, match=expected):
            hub.list_remote_files("org/x", None)
        with pytest.raises(ModelNotFound, match=expected):
            hub.download("org/x", None, Path("."), ["config.json"], None)


def test_download_wrapper_stops_at_the_next_chunk_once_cancelled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub

    cancel = threading.Event()
    chunks: list[int] = []

    def fake_snapshot_download(repo_id: str, **kwargs: object) -> str:
        bar_cls = kwargs["tqdm_class"]
        assert isinstance(bar_cls, type)
        bar = bar_cls(total=100, initial=0, unit="B", desc="Reconstructing (incomplete total...)")
        for _ in range(10):
            bar.update(10)  # raises once cancelled
            chunks.append(10)
            if len(chunks) == 3:
                cancel.set()
        return str(tmp_path / "snapshot")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    seen: list[tuple[int, int]] = []
    with pytest.raises(Cancelled, match="cancelled"):
        hub.download(
            "org/x", None, tmp_path, ["m.safetensors"], lambda d, t: seen.append((d, t)), cancel
        )
    assert len(chunks) == 3 and seen == [(10, 100), (20, 100), (30, 100)]


def test_progress_tqdm_raises_cancelled_from_every_bar_once_cancelled() -> None:
    cancel = threading.Event()
    cls = hub.progress_tqdm(None, cancel)
    files = cls(total=2, desc="Fetching 2 files")
    bytes_bar = cls(total=0, initial=0, unit="B", desc="Reconstructing (incomplete total...)")
    bytes_bar.update(5)
    files.update(1)
    cancel.set()
    with pytest.raises(Cancelled):
        files.update(1)  # the next file done
    with pytest.raises(Cancelled):
        bytes_bar.refresh()  # the next file starts
    with pytest.raises(Cancelled):
        cls(total=1, desc="Fetching 1 files")


def test_progress_tqdm_reports_aggregated_bytes() -> None:
    seen: list[tuple[int, int]] = []
    cls = hub.progress_tqdm(lambda done, total: seen.append((done, total)))
    # As huggingface_hub builds its bars: a file counter, a transfer bar and the bytes bar.
    files = cls(total=2, desc="Fetching 2 files")
    transfer = cls(total=0, initial=0, unit="B", desc="Downloading bytes")
    bytes_bar = cls(total=0, initial=0, unit="B", desc="Reconstructing (incomplete total...)")
    bytes_bar.total = 100
    bytes_bar.update(40)
    transfer.update(10)
    files.update(1)
    bytes_bar.update(60)
    bytes_bar.close()
    assert seen == [(40, 100), (100, 100)]


def test_download_progress_bars_start_no_monitor_thread() -> None:
    """tqdm would start a monitor thread for every download's bar class (and keep it 10 s)."""
    reported: list[tuple[int, int]] = []
    bar_class = hub.progress_tqdm(lambda done, total: reported.append((done, total)))
    bar = bar_class(total=10, unit="B", desc="Reconstructing (incomplete...)")
    bar.update(4)
    bar.close()
    assert reported == [(4, 10)]
    assert getattr(bar_class, "monitor", None) is None


# --- listing -------------------------------------------------------------------------------------


def test_list_hub_models(tmp_path: Path, hub_cache: Path) -> None:
    assert hub.list_hub_models() == []
    assert hub.list_hub_models(tmp_path / "no-such-cache") == []
    text = save_to_hub_cache(transformers_folder(tmp_path / "t"), "org/text", hub_cache)
    pipe = save_to_hub_cache(diffusers_folder(tmp_path / "p"), "org/pipe", hub_cache)
    entries = {e.ref: e for e in hub.list_hub_models()}
    assert set(entries) == {"org/text", "org/pipe"}
    t, p = entries["org/text"], entries["org/pipe"]
    assert (t.source, t.downloaded, t.kind, t.revision) == ("hub", True, "transformers", text.name)
    assert (p.kind, p.modality, p.revision) == ("diffusers", "image", pipe.name)
    assert t.size_bytes and t.size_bytes > 0
    assert t.path is not None and Path(t.path).name == text.name
