"""Model references: hub ids through a real (temporary) hub cache, folders, single files."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from studio.core import hub as hub_module
from studio.core import refs
from studio.core.errors import Cancelled, InvalidRequest, ModelNotFound, UnsafeWeightsError
from studio.core.layout import detect_layout
from studio.core.refs import estimate_bytes, resolve, weights_files, weights_sha256
from studio.testing.hub import save_to_hub_cache


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty hub cache in tmp, named by HF_HUB_CACHE; offline."""
    cache = tmp_path / "hf" / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """The only two network calls refs makes (through hub) fail loudly unless a test replaces
    them (tests/core/test_hub.py tests the real ones)."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a test tried to reach the hub")

    monkeypatch.setattr(hub_module, "list_remote_files", refuse)
    monkeypatch.setattr(hub_module, "download", refuse)


def write_weights(path: Path, seed: int = 0, size: int = 4) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    save_file({"weight": torch.randn(size, size, generator=gen)}, str(path))
    return path


def transformers_folder(root: Path, seed: int = 0) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    write_weights(root / "model.safetensors", seed)
    return root


def diffusers_folder(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "model_index.json").write_text(
        json.dumps({"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet"]})
    )
    (root / "unet").mkdir()
    (root / "unet" / "config.json").write_text("{}")
    write_weights(root / "unet" / "diffusion_pytorch_model.safetensors", 1)
    write_weights(root / "text_encoder" / "model.safetensors", 2)
    (root / "scheduler").mkdir()
    (root / "scheduler" / "scheduler_config.json").write_text("{}")
    # A single-file checkpoint kept beside the components is not part of the pipeline.
    (root / "v1-pruned.ckpt").write_bytes(b"pickle")
    return root


def add_unused_diffusers_parts(root: Path) -> list[str]:
    """What an older Stable Diffusion repo adds that the studio never loads: a pickle-only safety
    checker, a feature extractor, and weight variants next to the plain weights. Returns their
    relative paths."""
    (root / "safety_checker").mkdir(parents=True, exist_ok=True)
    (root / "safety_checker" / "config.json").write_text("{}")
    torch.save({"weight": torch.zeros(2)}, root / "safety_checker" / "pytorch_model.bin")
    (root / "feature_extractor").mkdir(exist_ok=True)
    (root / "feature_extractor" / "preprocessor_config.json").write_text("{}")
    write_weights(root / "unet" / "diffusion_pytorch_model.fp16.safetensors", 3)
    write_weights(root / "unet" / "diffusion_pytorch_model.non_ema.safetensors", 4, size=8)
    write_weights(root / "text_encoder" / "model.ema_only.safetensors", 5)
    torch.save({"weight": torch.zeros(2)}, root / "unet" / "diffusion_pytorch_model.fp16.bin")
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file()
        and (p.parent.name in ("safety_checker", "feature_extractor") or p.name.count(".") > 1)
    )


def cache_tree_listing(snapshot: Path, names: list[str]) -> None:
    """The listing huggingface_hub 2.4 keeps of every file of a repo it downloads from (it then
    takes a snapshot missing any listed file asked for as incomplete)."""
    from huggingface_hub._tree_cache import TreeCacheEntry, write_tree_cache

    entries = {name: TreeCacheEntry(size=1, blob_id="0" * 40) for name in names}
    write_tree_cache(str(snapshot.parent.parent), snapshot.name, entries)


def pickle_folder(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text("{}")
    torch.save({"weight": torch.zeros(2)}, root / "pytorch_model.bin")
    return root


# --- hub ids -----------------------------------------------------------------------------------


def test_hub_id_resolves_offline_from_the_cache_named_by_hf_hub_cache(
    tmp_path: Path, hub: Path
) -> None:
    snapshot = save_to_hub_cache(transformers_folder(tmp_path / "m"), "org/tiny", hub)
    resolved = resolve("org/tiny", allow_download=False)
    assert resolved.source == "hub"
    assert resolved.repo_id == "org/tiny"
    assert resolved.path == snapshot.resolve() or resolved.path == snapshot
    assert resolved.revision == snapshot.name and len(resolved.revision) == 40
    assert resolved.cache_ref == "org/tiny"
    assert detect_layout(resolved.path) == "transformers"
    # Even with downloads allowed, a cached model never reaches the network (no_network fixture).
    assert resolve("org/tiny").revision == resolved.revision


def test_hf_home_is_honoured_when_hf_hub_cache_is_unset(
    tmp_path: Path, hub: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_HUB_CACHE")
    save_to_hub_cache(transformers_folder(tmp_path / "m"), "org/tiny", hub)  # hub == HF_HOME/hub
    assert resolve("org/tiny", allow_download=False).source == "hub"
    assert hub_module.hub_cache_dir() == hub


def test_explicit_cache_dir_wins(tmp_path: Path, hub: Path) -> None:
    other = tmp_path / "elsewhere"
    save_to_hub_cache(transformers_folder(tmp_path / "m"), "org/tiny", other)
    with pytest.raises(ModelNotFound):
        resolve("org/tiny", allow_download=False)
    assert resolve("org/tiny", allow_download=False, cache_dir=other).repo_id == "org/tiny"


def test_revision_by_commit_and_by_branch(tmp_path: Path, hub: Path) -> None:
    snap = save_to_hub_cache(transformers_folder(tmp_path / "m"), "org/tiny", hub, revision="v1")
    assert resolve(f"org/tiny@{snap.name}", allow_download=False).revision == snap.name
    assert resolve("org/tiny@v1", allow_download=False).revision == snap.name
    with pytest.raises(ModelNotFound):
        resolve("org/tiny@v2", allow_download=False)
    with pytest.raises(InvalidRequest, match="empty revision"):
        resolve("org/tiny@", allow_download=False)


def test_uncached_hub_id_offline_says_what_to_do(hub: Path) -> None:
    with pytest.raises(ModelNotFound, match="not in the hub cache") as info:
        resolve("org/missing", allow_download=False)
    assert "offline" in str(info.value)
    # Downloads allowed but HF_HUB_OFFLINE set: still no network, and the message names it.
    with pytest.raises(ModelNotFound, match="HF_HUB_OFFLINE"):
        resolve("org/missing")


def test_hub_weights_sha256_comes_from_blob_names(tmp_path: Path, hub: Path) -> None:
    folder = transformers_folder(tmp_path / "m")
    save_to_hub_cache(folder, "org/tiny", hub)
    resolved = resolve("org/tiny")
    hashed: list[Path] = []

    def hash_file(path: Path) -> str:
        hashed.append(path)
        return "x"

    assert weights_sha256(resolved, hash_file) == sha256(folder / "model.safetensors")
    assert hashed == []  # free: read from the blob name


def test_hub_multi_file_sha256_is_deterministic(tmp_path: Path, hub: Path) -> None:
    folder = diffusers_folder(tmp_path / "pipe")
    save_to_hub_cache(folder, "org/pipe", hub)
    resolved = resolve("org/pipe")
    files = weights_files(resolved)
    assert [f.relative_to(resolved.path).as_posix() for f in files] == [
        "text_encoder/model.safetensors",
        "unet/diffusion_pytorch_model.safetensors",
    ]
    lines = sorted(
        f"{name} {sha256(folder / name)}\n"
        for name in ("text_encoder/model.safetensors", "unet/diffusion_pytorch_model.safetensors")
    )
    expected = hashlib.sha256("".join(lines).encode()).hexdigest()
    assert weights_sha256(resolved) == expected
    # Same weights as a local folder give the same digest (hashed directly this time).
    assert weights_sha256(resolve(str(folder))) == expected


def test_hub_pickle_only_is_refused_offline(tmp_path: Path, hub: Path) -> None:
    save_to_hub_cache(pickle_folder(tmp_path / "p"), "org/old", hub)
    with pytest.raises(UnsafeWeightsError, match="allow_pickle"):
        resolve("org/old", allow_download=False)
    assert resolve("org/old", allow_pickle=True).source == "hub"


def test_incomplete_sharded_snapshot_is_not_used(tmp_path: Path, hub: Path) -> None:
    folder = tmp_path / "sharded"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    write_weights(folder / "model-00001-of-00002.safetensors")
    index = {
        "weight_map": {
            "a": "model-00001-of-00002.safetensors",
            "b": "model-00002-of-00002.safetensors",
        }
    }
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    save_to_hub_cache(folder, "org/sharded", hub)
    with pytest.raises(ModelNotFound, match=r"incomplete.*00002"):
        resolve("org/sharded", allow_download=False)
    with pytest.raises(ModelNotFound, match="incomplete"):
        resolve(str(folder))


def test_a_snapshot_without_the_files_refs_skips_resolves_offline(
    tmp_path: Path, hub: Path
) -> None:
    snapshot = save_to_hub_cache(transformers_folder(tmp_path / "m"), "org/both", hub)
    skipped = ["pytorch_model.bin", "tf_model.h5", "flax_model.msgpack", "onnx/model.onnx"]
    cache_tree_listing(snapshot, ["config.json", "model.safetensors", *skipped])
    resolved = resolve("org/both", allow_download=False)
    assert resolved.path == snapshot
    assert [f.name for f in weights_files(resolved)] == ["model.safetensors"]


def test_the_cached_listing_still_catches_a_missing_file(tmp_path: Path, hub: Path) -> None:
    snapshot = save_to_hub_cache(transformers_folder(tmp_path / "m"), "org/tiny", hub)
    # tokenizer.json would be downloaded (it is not weights): without it the snapshot is partial
    cache_tree_listing(snapshot, ["config.json", "model.safetensors", "tokenizer.json"])
    with pytest.raises(ModelNotFound, match="not in the hub cache"):
        resolve("org/tiny", allow_download=False)


def test_parse_hub_id_and_is_local_path(tmp_path: Path) -> None:
    assert refs.parse_hub_id(" org/name@v1 ") == ("org/name", "v1")
    assert refs.parse_hub_id("gpt2") == ("gpt2", None)
    with pytest.raises(InvalidRequest, match="empty revision"):
        refs.parse_hub_id("org/name@")
    for path in (str(tmp_path), "./x", "~/m", "a/b/c", "model.ckpt", "C:\\m", "/abs"):
        assert refs.is_local_path(path), path
    for hub_id in ("org/name", "gpt2", "org/name@main", ""):
        assert not refs.is_local_path(hub_id), hub_id


@pytest.mark.parametrize("bad", ["org--x/name", "a b", "org/na$me", "-lead/x"])
def test_malformed_hub_id(bad: str, hub: Path) -> None:
    with pytest.raises(InvalidRequest, match="valid hub id"):
        resolve(bad)


# --- downloads (the two network calls replaced by fakes) ---------------------------------------


def fake_hub(
    monkeypatch: pytest.MonkeyPatch, source: Path, repo_id: str, cache: Path
) -> list[list[str]]:
    """Serve ``source`` as a remote repo; returns the file lists each download asked for."""
    remote = sorted(p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file())
    asked: list[list[str]] = []

    def list_remote(rid: str, revision: str | None) -> list[str]:
        assert rid == repo_id
        return remote

    def download(rid, revision, cache_dir, files, progress, cancel=None):  # type: ignore[no-untyped-def]
        asked.append(sorted(files))
        staged = source.parent / f"staged-{len(asked)}"
        for name in files:
            (staged / name).parent.mkdir(parents=True, exist_ok=True)
            (staged / name).write_bytes((source / name).read_bytes())
        total = sum((staged / f).stat().st_size for f in files)
        if progress is not None:
            progress(total // 2, total)
            progress(total, total)
        return save_to_hub_cache(staged, rid, cache_dir)

    monkeypatch.setattr(hub_module, "list_remote_files", list_remote)
    monkeypatch.setattr(hub_module, "download", download)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    return asked


def test_download_skips_pickle_and_foreign_weights_when_safetensors_exist(
    tmp_path: Path, hub: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = transformers_folder(tmp_path / "remote" / "both")
    torch.save({"weight": torch.zeros(2)}, src / "pytorch_model.bin")
    (src / "tf_model.h5").write_bytes(b"h5")
    (src / "tokenizer.json").write_text("{}")
    asked = fake_hub(monkeypatch, src, "org/both", hub)
    seen: list[tuple[int, int]] = []
    resolved = resolve("org/both", progress=lambda done, total: seen.append((done, total)))
    assert asked == [["config.json", "model.safetensors", "tokenizer.json"]]
    assert resolved.source == "hub" and not (resolved.path / "pytorch_model.bin").exists()
    assert seen and seen[-1][0] == seen[-1][1] > 0
    assert seen[0] == (0, 0)  # the download begins
    # Now cached: resolving again downloads nothing.
    resolve("org/both")
    assert len(asked) == 1


def test_a_cancelled_download_raises_cancelled_and_fetches_nothing(
    tmp_path: Path, hub: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = fake_hub(monkeypatch, transformers_folder(tmp_path / "remote" / "t"), "org/t", hub)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled, match="org/t"):
        resolve("org/t", cancel=cancel)
    assert asked == []
    # A cancel flag never set changes nothing.
    assert resolve("org/t", cancel=threading.Event()).source == "hub"


def test_download_refuses_pickle_only_repo_before_downloading(
    tmp_path: Path, hub: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = fake_hub(monkeypatch, pickle_folder(tmp_path / "remote" / "old"), "org/old", hub)
    with pytest.raises(UnsafeWeightsError, match="nothing was downloaded"):
        resolve("org/old")
    assert asked == []
    resolved = resolve("org/old", allow_pickle=True)
    assert asked == [["config.json", "pytorch_model.bin"]]
    assert [f.name for f in weights_files(resolved)] == ["pytorch_model.bin"]


def test_download_of_diffusers_repo_skips_top_level_checkpoint(
    tmp_path: Path, hub: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = diffusers_folder(tmp_path / "remote" / "pipe")
    asked = fake_hub(monkeypatch, src, "org/pipe", hub)
    resolve("org/pipe")
    assert "v1-pruned.ckpt" not in asked[0]
    assert "unet/diffusion_pytorch_model.safetensors" in asked[0]
    assert "scheduler/scheduler_config.json" in asked[0]


def test_partial_cached_snapshot_is_completed_by_download(
    tmp_path: Path, hub: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    save_to_hub_cache(partial, "org/tiny", hub)
    with pytest.raises(ModelNotFound, match="no weights"):
        resolve("org/tiny", allow_download=False)
    src = transformers_folder(tmp_path / "remote" / "tiny")
    asked = fake_hub(monkeypatch, src, "org/tiny", hub)
    assert resolve("org/tiny").source == "hub"
    assert asked == [["config.json", "model.safetensors"]]


def test_hub_errors_become_model_not_found(hub: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE")

    def list_remote(rid: str, revision: str | None) -> list[str]:
        raise hub_module._hub_error(rid, ConnectionError("no route"))

    monkeypatch.setattr(hub_module, "list_remote_files", list_remote)
    with pytest.raises(ModelNotFound, match="could not be reached"):
        resolve("org/x")


# --- local folders and files -------------------------------------------------------------------


def test_local_transformers_folder(tmp_path: Path) -> None:
    folder = transformers_folder(tmp_path / "m")
    resolved = resolve(str(folder))
    assert (resolved.source, resolved.revision, resolved.repo_id) == ("folder", None, None)
    assert resolved.cache_ref == str(folder.absolute())
    assert detect_layout(folder) == "transformers"
    assert estimate_bytes(resolved) == (folder / "model.safetensors").stat().st_size


def test_local_diffusers_folder_ignores_top_level_pickle(tmp_path: Path) -> None:
    folder = diffusers_folder(tmp_path / "pipe")
    resolved = resolve(str(folder))
    assert detect_layout(folder) == "diffusers"
    assert all(f.suffix == ".safetensors" for f in weights_files(resolved))
    assert estimate_bytes(resolved) == sum(f.stat().st_size for f in weights_files(resolved))


def test_single_safetensors_file(tmp_path: Path) -> None:
    file = write_weights(tmp_path / "lora.safetensors")
    resolved = resolve(str(file))
    assert resolved.source == "file" and resolved.path == file.absolute()
    assert detect_layout(file) == "safetensors-file"
    assert weights_files(resolved) == [file.absolute()]
    assert weights_sha256(resolved) == sha256(file)
    assert estimate_bytes(resolved) == file.stat().st_size


def test_a_file_inside_a_hub_snapshot_keeps_its_name_and_free_hash(
    tmp_path: Path, hub: Path
) -> None:
    file = write_weights(tmp_path / "src" / "lora.safetensors")
    snapshot = save_to_hub_cache(file.parent, "org/lora", hub)
    resolved = resolve(str(snapshot / "lora.safetensors"))
    assert resolved.source == "file" and resolved.path.name == "lora.safetensors"

    def hash_file(path: Path) -> str:
        raise AssertionError("the blob name is the hash")

    assert weights_sha256(resolved, hash_file) == sha256(file)


def test_local_hash_uses_the_given_hash_file(tmp_path: Path) -> None:
    file = write_weights(tmp_path / "m.safetensors")
    calls: list[Path] = []

    def hash_file(path: Path) -> str:
        calls.append(path)
        return "c" * 64

    assert weights_sha256(resolve(str(file)), hash_file) == "c" * 64
    assert calls == [file.absolute()]


def test_pickle_only_folder_is_refused_with_how_to_allow(tmp_path: Path) -> None:
    folder = pickle_folder(tmp_path / "old")
    with pytest.raises(UnsafeWeightsError) as info:
        resolve(str(folder))
    message = str(info.value)
    assert "pytorch_model.bin" in message and "allow_pickle" in message
    assert "arbitrary code" in message and str(folder) in message
    resolved = resolve(str(folder), allow_pickle=True)
    assert [f.name for f in weights_files(resolved)] == ["pytorch_model.bin"]


def test_both_formats_folder_uses_safetensors_only(tmp_path: Path) -> None:
    folder = transformers_folder(tmp_path / "both")
    torch.save({"weight": torch.zeros(2)}, folder / "pytorch_model.bin")
    resolved = resolve(str(folder))
    assert [f.name for f in weights_files(resolved)] == ["model.safetensors"]


@pytest.mark.parametrize("name", ["model.ckpt", "model.pt", "model.pth", "model.bin"])
def test_single_pickle_file_is_refused(tmp_path: Path, name: str) -> None:
    file = tmp_path / name
    torch.save({"w": torch.zeros(1)}, file)
    with pytest.raises(UnsafeWeightsError, match="allow_pickle"):
        resolve(str(file))
    assert resolve(str(file), allow_pickle=True).source == "file"


def test_other_single_file_is_not_a_model(tmp_path: Path) -> None:
    file = tmp_path / "notes.txt"
    file.write_text("hello")
    with pytest.raises(ModelNotFound, match=r"\.safetensors"):
        resolve(str(file))


def test_missing_path_and_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match="no such file or folder"):
        resolve(str(tmp_path / "nope"))
    with pytest.raises(ModelNotFound, match="no such file or folder"):
        resolve("./models/nope.safetensors")
    with pytest.raises(ModelNotFound, match="no such file or folder"):
        resolve("a/b/c")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFound, match="empty"):
        resolve(str(tmp_path / "empty"))
    with pytest.raises(InvalidRequest, match="empty model reference"):
        resolve("  ")


def test_folder_without_weights(tmp_path: Path) -> None:
    folder = tmp_path / "cfg"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    with pytest.raises(ModelNotFound, match="no weights"):
        resolve(str(folder))


def test_detect_layout_unknown(tmp_path: Path) -> None:
    assert detect_layout(tmp_path) == "unknown"
    (tmp_path / "x.gguf").write_bytes(b"")
    assert detect_layout(tmp_path / "x.gguf") == "unknown"


# --- diffusers: components and variants the studio never loads --------------------------------

PLAIN = ["text_encoder/model.safetensors", "unet/diffusion_pytorch_model.safetensors"]


def rel_weights(resolved: refs.ResolvedModel) -> list[str]:
    return [f.relative_to(resolved.path).as_posix() for f in weights_files(resolved)]


def test_diffusers_folder_with_pickle_only_safety_checker_and_variants_resolves(
    tmp_path: Path,
) -> None:
    plain = diffusers_folder(tmp_path / "plain")
    folder = diffusers_folder(tmp_path / "pipe")
    unused = add_unused_diffusers_parts(folder)
    assert "safety_checker/pytorch_model.bin" in unused
    assert "unet/diffusion_pytorch_model.fp16.safetensors" in unused
    resolved = resolve(str(folder))  # no UnsafeWeightsError for the safety checker
    assert rel_weights(resolved) == PLAIN
    assert estimate_bytes(resolved) == sum((folder / f).stat().st_size for f in PLAIN)
    # The variants and unused components do not change what identifies the weights.
    assert weights_sha256(resolved) == weights_sha256(resolve(str(plain)))


def test_a_pickle_only_component_the_pipeline_loads_is_still_refused(tmp_path: Path) -> None:
    folder = diffusers_folder(tmp_path / "pipe")
    add_unused_diffusers_parts(folder)
    (folder / "vae").mkdir()
    torch.save({"weight": torch.zeros(2)}, folder / "vae" / "diffusion_pytorch_model.bin")
    with pytest.raises(UnsafeWeightsError) as info:
        resolve(str(folder))
    assert "vae/diffusion_pytorch_model.bin" in str(info.value)
    assert "safety_checker" not in str(info.value)


def test_a_component_with_only_variant_weights_keeps_them(tmp_path: Path) -> None:
    folder = diffusers_folder(tmp_path / "pipe")
    write_weights(folder / "vae" / "diffusion_pytorch_model.fp16.safetensors", 6)
    # plain pickle beside a safetensors variant: the safetensors variant is what can be loaded
    torch.save({"weight": torch.zeros(2)}, folder / "vae" / "diffusion_pytorch_model.bin")
    resolved = resolve(str(folder))
    assert rel_weights(resolved) == [*PLAIN, "vae/diffusion_pytorch_model.fp16.safetensors"]


def test_sharded_and_legacy_variants_and_their_indexes_are_skipped() -> None:
    plan = refs._plan(
        [
            "model_index.json",
            "transformer/diffusion_pytorch_model-00001-of-00002.safetensors",
            "transformer/diffusion_pytorch_model-00002-of-00002.safetensors",
            "transformer/diffusion_pytorch_model.safetensors.index.json",
            "transformer/diffusion_pytorch_model.fp16-00001-of-00002.safetensors",
            "transformer/diffusion_pytorch_model.fp16-00002-of-00002.safetensors",
            "transformer/diffusion_pytorch_model.safetensors.index.fp16.json",
            "text_encoder/model.safetensors",
            "text_encoder/model-00001-of-00002.fp16.safetensors",  # legacy variant naming
            "text_encoder/model.safetensors.fp16.index.json",
        ]
    )
    assert plan.safe == [
        "text_encoder/model.safetensors",
        "transformer/diffusion_pytorch_model-00001-of-00002.safetensors",
        "transformer/diffusion_pytorch_model-00002-of-00002.safetensors",
    ]
    assert plan.other == [
        "model_index.json",
        "transformer/diffusion_pytorch_model.safetensors.index.json",
    ]
    assert len(plan.unused) == 5 and not set(plan.unused) & set(plan.wanted)


def test_transformers_repos_keep_every_folder_and_variant(tmp_path: Path) -> None:
    folder = transformers_folder(tmp_path / "t")
    write_weights(folder / "model.fp16.safetensors", 1)
    assert [f.name for f in weights_files(resolve(str(folder)))] == [
        "model.fp16.safetensors",
        "model.safetensors",
    ]
    pickle_folder(folder / "safety_checker")  # no model_index.json: not a diffusers repo
    with pytest.raises(UnsafeWeightsError, match="safety_checker"):
        resolve(str(folder))


def test_cached_diffusers_snapshot_without_unused_parts_resolves_offline(
    tmp_path: Path, hub: Path
) -> None:
    """As the studio downloads it: the cached listing names the safety checker and the variants,
    the snapshot lacks them, and it is still complete."""
    full = diffusers_folder(tmp_path / "full")
    unused = add_unused_diffusers_parts(full)
    fetched = diffusers_folder(tmp_path / "fetched")
    (fetched / "v1-pruned.ckpt").unlink()
    snapshot = save_to_hub_cache(fetched, "org/sd", hub)
    listing = sorted(p.relative_to(full).as_posix() for p in full.rglob("*") if p.is_file())
    cache_tree_listing(snapshot, listing)
    resolved = resolve("org/sd", allow_download=False)
    assert resolved.path == snapshot and rel_weights(resolved) == PLAIN
    assert not any((snapshot / name).exists() for name in unused)
    # A snapshot holding everything (another tool downloaded it) gives the same weights.
    save_to_hub_cache(full, "org/sd-full", hub)
    full_resolved = resolve("org/sd-full", allow_download=False)
    assert rel_weights(full_resolved) == PLAIN
    assert estimate_bytes(full_resolved) == estimate_bytes(resolved)
    assert weights_sha256(full_resolved) == weights_sha256(resolved)


def test_download_of_diffusers_repo_skips_safety_checker_and_variants(
    tmp_path: Path, hub: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = diffusers_folder(tmp_path / "remote" / "sd")
    unused = add_unused_diffusers_parts(src)
    asked = fake_hub(monkeypatch, src, "org/sd", hub)
    resolved = resolve("org/sd")  # pickle-only safety checker: not refused, not fetched
    (files,) = asked
    assert not set(unused) & set(files)
    assert not any(f.startswith(("safety_checker/", "feature_extractor/")) for f in files)
    assert set(PLAIN) <= set(files) and "unet/config.json" in files
    assert rel_weights(resolved) == PLAIN
    resolve("org/sd")  # complete in the cache now: no second download
    assert len(asked) == 1
