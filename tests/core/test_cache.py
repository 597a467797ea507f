"""The shared model cache: hits, sharing, LRU, budgets, offload, pins, threads, free()."""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

from studio.core.cache import CacheKey, ModelCache
from studio.core.placement import can_move, measure_bytes, move_to, placed_by_hooks

WAIT = 10.0  # seconds: an upper bound for thread hand-offs, never slept


class Model:
    """A stand-in for a model: knows where it is."""

    def __init__(self, name: str, device: str) -> None:
        self.name = name
        self.device = device


class Mover:
    """An injectable mover that records moves (lets offload logic run on a fake accelerator)."""

    def __init__(self) -> None:
        self.moves: list[tuple[str, str]] = []
        self.fail_to: str | None = None

    def __call__(self, obj: Model, device: str) -> Model:
        if device == self.fail_to:
            raise RuntimeError(f"cannot move to {device}")
        self.moves.append((obj.name, device))
        obj.device = device
        return obj


def key(name: str, device: str = "cpu", dtype: str = "float32", kind: str = "test") -> CacheKey:
    return CacheKey(ref=f"org/{name}", revision="abc", kind=kind, dtype=dtype, device=device)


def loader_for(name: str, device: str, calls: list[str] | None = None) -> Callable[[], Model]:
    def load() -> Model:
        if calls is not None:
            calls.append(name)
        return Model(name, device)

    return load


def use(cache: ModelCache, name: str, device: str = "cpu", size: int = 1, **kw: Any) -> Model:
    with cache.acquire(key(name, device, **kw), loader_for(name, device), size_bytes=size) as m:
        return m


def where(cache: ModelCache) -> dict[str, str]:
    """ref name -> location, least recently used first."""
    return {e.key.ref.split("/")[1]: e.location for e in cache.stats().entries}


# --- hits, misses, sharing ---------------------------------------------------------------------


def test_hit_and_miss() -> None:
    cache = ModelCache()
    calls: list[str] = []
    with cache.acquire(key("a"), loader_for("a", "cpu", calls)) as first:
        pass
    with cache.acquire(key("a"), loader_for("a", "cpu", calls)) as second:
        pass
    assert first is second and calls == ["a"]
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.evictions) == (1, 1, 0)
    assert stats.entries[0].hits == 1 and stats.entries[0].pins == 0


def test_two_generators_share_one_copy_per_key() -> None:
    cache = ModelCache()
    calls: list[str] = []

    def txt2img() -> Model:
        k = CacheKey("org/sd", "rev1", "diffusers-pipeline", "float16", "cpu")
        with cache.acquire(k, loader_for("sd", "cpu", calls)) as pipe:
            return pipe

    def img2img() -> Model:
        k = CacheKey("org/sd", "rev1", "diffusers-pipeline", "float16", "cpu")
        with cache.acquire(k, loader_for("sd", "cpu", calls)) as pipe:
            return pipe

    assert txt2img() is img2img()
    assert calls == ["sd"]
    # Anything else in the key is another copy.
    other = CacheKey("org/sd", "rev1", "diffusers-pipeline", "float32", "cpu")
    with cache.acquire(other, loader_for("sd", "cpu", calls)) as pipe32:
        assert pipe32 is not txt2img()
    assert calls == ["sd", "sd"] and len(cache) == 2


# --- budgets and LRU ---------------------------------------------------------------------------


def test_lru_eviction_on_the_host_budget() -> None:
    cache = ModelCache(host_budget=3)
    for name in "abc":
        use(cache, name)
    use(cache, "a")  # a is now the most recent
    use(cache, "d")
    assert list(where(cache)) == ["c", "a", "d"]  # b went first
    stats = cache.stats()
    assert stats.evictions == 1 and stats.offloads == 0
    assert stats.host_bytes == 3 and stats.device_bytes == 0


def test_cpu_entries_are_never_offloaded() -> None:
    mover = Mover()
    cache = ModelCache(device_budget=1, host_budget=2, mover=mover)
    for name in "abc":
        use(cache, name, "cpu")
    assert mover.moves == []  # the device budget does not apply to the CPU, and no moves
    assert list(where(cache)) == ["b", "c"]
    assert cache.offload("cpu") == 0


def test_device_entries_are_offloaded_then_restored() -> None:
    mover = Mover()
    cache = ModelCache(device_budget=2, host_budget=10, mover=mover)
    a = use(cache, "a", "gpu:0")
    use(cache, "b", "gpu:0")
    use(cache, "c", "gpu:0")
    assert where(cache) == {"a": "cpu", "b": "gpu:0", "c": "gpu:0"}
    assert mover.moves == [("a", "cpu")] and a.device == "cpu"
    assert cache.stats().offloads == 1
    assert cache.stats().entries[0].offloaded
    # A hit on an offloaded entry brings it back (b, least recent, makes way).
    assert use(cache, "a", "gpu:0") is a and a.device == "gpu:0"
    assert mover.moves[-2:] == [("b", "cpu"), ("a", "gpu:0")]
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.offloads, stats.restores) == (1, 3, 2, 1)
    assert stats.device_bytes == 2 and stats.host_bytes == 1
    assert stats.bytes_on("gpu:0") == 2


def test_offload_drops_when_the_host_cannot_take_it() -> None:
    mover = Mover()
    cache = ModelCache(device_budget=1, host_budget=0, mover=mover)
    use(cache, "a", "gpu:0")
    use(cache, "b", "gpu:0")
    assert where(cache) == {"b": "gpu:0"}
    assert mover.moves == [] and cache.stats().evictions == 1


def test_offload_evicts_only_older_host_entries() -> None:
    mover = Mover()
    cache = ModelCache(device_budget=1, host_budget=2, mover=mover)
    use(cache, "old", "cpu", size=2)  # older than everything on the device
    use(cache, "a", "gpu:0")
    use(cache, "b", "gpu:0")  # a goes to host; "old" (older) makes way for it
    assert where(cache) == {"a": "cpu", "b": "gpu:0"}
    use(cache, "new", "cpu", size=1)  # host: a + new = 2
    use(cache, "c", "gpu:0")  # b is older than "new" but a is older than b: a is dropped
    assert where(cache) == {"new": "cpu", "b": "cpu", "c": "gpu:0"}


def test_offload_failure_drops_the_entry() -> None:
    mover = Mover()
    mover.fail_to = "cpu"
    cache = ModelCache(device_budget=1, mover=mover)
    use(cache, "a", "gpu:0")
    use(cache, "b", "gpu:0")
    assert where(cache) == {"b": "gpu:0"} and cache.stats().evictions == 1


def test_restore_failure_reloads() -> None:
    mover = Mover()
    cache = ModelCache(device_budget=1, mover=mover)
    calls: list[str] = []
    with cache.acquire(key("a", "gpu:0"), loader_for("a", "gpu:0", calls), size_bytes=1):
        pass
    use(cache, "b", "gpu:0")
    assert where(cache)["a"] == "cpu"
    mover.fail_to = "gpu:0"
    with cache.acquire(key("a", "gpu:0"), loader_for("a", "gpu:0", calls), size_bytes=1) as a:
        assert a.device == "gpu:0"
    assert calls == ["a", "a"]


def test_explicit_offload_and_free() -> None:
    mover = Mover()
    cache = ModelCache(mover=mover)
    use(cache, "a", "gpu:0", size=5)
    use(cache, "h", "cpu", size=7)
    with cache.acquire(key("p", "gpu:0"), loader_for("p", "gpu:0"), size_bytes=11):
        assert cache.offload("gpu:0") == 5  # p is pinned: stays
        assert where(cache) == {"a": "cpu", "h": "cpu", "p": "gpu:0"}
        assert cache.free("gpu:0") == 0  # nothing unpinned left on the device
        assert cache.free() == 12  # a and h
        assert where(cache) == {"p": "gpu:0"}
    assert cache.stats().evictions == 2
    assert cache.free("gpu:0") == 11 and len(cache) == 0


def test_fits_counts_only_pinned_bytes() -> None:
    cache = ModelCache(device_budget=10, host_budget=100, mover=Mover())
    assert ModelCache().fits(10**15, "cuda:0")
    use(cache, "a", "gpu:0", size=8)
    assert cache.fits(10, "gpu:0")  # a can make way
    with cache.acquire(key("a", "gpu:0"), loader_for("a", "gpu:0"), size_bytes=8):
        assert cache.fits(2, "gpu:0") and not cache.fits(3, "gpu:0")
    assert cache.fits(100, "cpu") and not cache.fits(101, "cpu")


def test_set_budgets_applies_now_and_validates() -> None:
    cache = ModelCache()
    for name in "abc":
        use(cache, name)
    cache.set_budgets(None, 1)
    assert list(where(cache)) == ["c"]
    cache.set_budgets(None, 2.5e9)  # floats (fractions of totals) are accepted as bytes
    assert cache.host_budget == 2_500_000_000
    with pytest.raises(ValueError, match="host_budget"):
        cache.set_budgets(None, -1)
    with pytest.raises(ValueError, match="device_budget"):
        cache.set_budgets("1GB", None)  # type: ignore[arg-type]


# --- pins --------------------------------------------------------------------------------------


def test_pinned_entries_are_never_evicted_or_moved(caplog: pytest.LogCaptureFixture) -> None:
    mover = Mover()
    cache = ModelCache(device_budget=1, host_budget=1, mover=mover)
    with cache.acquire(key("a", "gpu:0"), loader_for("a", "gpu:0"), size_bytes=1) as a:
        with (
            caplog.at_level(logging.WARNING, logger="studio.core.cache"),
            cache.acquire(key("b", "gpu:0"), loader_for("b", "gpu:0"), size_bytes=1) as b,
        ):
            assert where(cache) == {"a": "gpu:0", "b": "gpu:0"}  # over budget, both pinned
            assert a.device == b.device == "gpu:0" and mover.moves == []
            assert cache.free() == 0 and cache.offload("gpu:0") == 0
        assert "over its budget" in caplog.text
        # b released: it is the most recent, a is still pinned, so b makes way now.
        assert where(cache) == {"a": "gpu:0", "b": "cpu"}
    # a released: the device is within budget (1 byte), nothing else moves.
    assert where(cache) == {"b": "cpu", "a": "gpu:0"}


def test_a_single_pinned_entry_larger_than_the_budget_is_allowed() -> None:
    cache = ModelCache(host_budget=10)
    with cache.acquire(key("big"), loader_for("big", "cpu"), size_bytes=50) as big:
        assert big.name == "big" and cache.stats().host_bytes == 50
    assert len(cache) == 0 and cache.stats().evictions == 1


def test_nested_acquire_of_the_same_key_pins_twice() -> None:
    cache = ModelCache(host_budget=0)
    with cache.acquire(key("a"), loader_for("a", "cpu"), size_bytes=1) as outer:
        with cache.acquire(key("a"), loader_for("a", "cpu"), size_bytes=1) as inner:
            assert inner is outer and cache.stats().entries[0].pins == 2
        assert cache.stats().entries[0].pins == 1 and len(cache) == 1
    assert len(cache) == 0


# --- threads -----------------------------------------------------------------------------------


def test_concurrent_acquire_of_one_key_loads_once() -> None:
    cache = ModelCache()
    started, release = threading.Event(), threading.Event()
    calls: list[str] = []

    def slow_load() -> Model:
        calls.append("x")
        started.set()
        assert release.wait(WAIT)
        return Model("x", "cpu")

    got: list[Model] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with cache.acquire(key("x"), slow_load) as m:
                got.append(m)
        except BaseException as exc:
            errors.append(exc)

    first = threading.Thread(target=worker)
    first.start()
    assert started.wait(WAIT)
    second = threading.Thread(target=worker)
    second.start()
    # A third key is not blocked by the load in progress.
    assert use(cache, "other").name == "other"
    release.set()
    first.join(WAIT)
    second.join(WAIT)
    assert not first.is_alive() and not second.is_alive() and not errors
    assert calls == ["x"] and len(got) == 2 and got[0] is got[1]
    stats = cache.stats()
    assert (stats.hits, stats.misses) == (1, 2)


def test_a_waiting_thread_loads_when_the_first_load_fails() -> None:
    cache = ModelCache()
    started, release = threading.Event(), threading.Event()
    calls: list[str] = []

    def failing() -> Model:
        calls.append("fail")
        started.set()
        assert release.wait(WAIT)
        raise OSError("disk went away")

    outcome: dict[str, Any] = {}

    def first() -> None:
        try:
            with cache.acquire(key("x"), failing):
                pass
        except OSError as exc:
            outcome["first"] = exc

    def second() -> None:
        with cache.acquire(key("x"), loader_for("x", "cpu", calls)) as m:
            outcome["second"] = m

    t1 = threading.Thread(target=first)
    t1.start()
    assert started.wait(WAIT)
    t2 = threading.Thread(target=second)
    t2.start()
    release.set()
    t1.join(WAIT)
    t2.join(WAIT)
    assert isinstance(outcome["first"], OSError)
    assert outcome["second"].name == "x" and calls == ["fail", "x"]


def test_loader_error_leaves_nothing_behind() -> None:
    cache = ModelCache()

    def broken() -> Model:
        raise ValueError("bad weights")

    with pytest.raises(ValueError, match="bad weights"), cache.acquire(key("a"), broken):
        pass
    assert len(cache) == 0
    assert use(cache, "a").name == "a"


def test_a_loader_asking_for_its_own_key_is_an_error() -> None:
    cache = ModelCache()

    def recursive() -> Model:
        with cache.acquire(key("a"), recursive):
            raise AssertionError("unreachable")

    with pytest.raises(RuntimeError, match="asked the cache for"):  # noqa: SIM117
        with cache.acquire(key("a"), recursive):
            pass


def test_out_of_memory_while_loading_frees_and_retries_once() -> None:
    mover = Mover()
    cache = ModelCache(mover=mover)
    use(cache, "old", "gpu:0", size=5)
    attempts: list[int] = []

    def load() -> Model:
        attempts.append(len(attempts))
        if where(cache).get("old") == "gpu:0":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1 GiB")
        return Model("new", "gpu:0")

    with cache.acquire(key("new", "gpu:0"), load, size_bytes=5) as new:
        assert new.name == "new"
    assert attempts == [0, 1] and where(cache)["old"] == "cpu"

    def always_oom() -> Model:
        raise MemoryError()

    # Nothing unpinned to free on the CPU: the error goes to the caller, no retry loop.
    with pytest.raises(MemoryError), cache.acquire(key("z"), always_oom):
        pass


# --- measuring and moving, through the cache --------------------------------------------------


@pytest.mark.slow
def test_measure_bytes_of_a_real_diffusers_pipeline() -> None:
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    unet = UNet2DModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        block_out_channels=(4, 8),
        layers_per_block=1,
        norm_num_groups=4,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
    )
    pipe = DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=10))
    assert measure_bytes(pipe) == measure_bytes(unet) > 0
    cache = ModelCache()
    with cache.acquire(key("ddpm"), lambda: pipe) as got:
        assert got is pipe
    assert cache.stats().entries[0].bytes == measure_bytes(unet)


def test_cache_measures_torch_modules_itself() -> None:
    cache = ModelCache()
    with cache.acquire(key("lin"), lambda: nn.Linear(4, 3)):
        pass
    with cache.acquire(key("tok"), lambda: "a tokenizer"):
        pass
    with cache.acquire(key("sized"), lambda: "a tokenizer", size_bytes=123):
        pass
    sizes = {e.key.ref: e.bytes for e in cache.stats().entries}
    assert sizes == {"org/lin": 60, "org/tok": 0, "org/sized": 123}


class Movable:
    def __init__(self) -> None:
        self.device = "gpu:0"

    def to(self, device: str) -> Movable:
        self.device = device
        return self


def test_default_mover_drops_what_it_cannot_move() -> None:
    cache = ModelCache(device_budget=1)
    with cache.acquire(key("handle", "gpu:0"), object, size_bytes=1):
        pass
    with cache.acquire(key("m", "gpu:0"), Movable, size_bytes=1) as m:
        pass
    # The opaque handle had to make way: it has no .to, so it was dropped, not "offloaded".
    assert where(cache) == {"m": "gpu:0"}
    with cache.acquire(key("n", "gpu:0"), Movable, size_bytes=1):
        pass
    assert where(cache) == {"m": "cpu", "n": "gpu:0"} and m.device == "cpu"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_real_cuda_offload_and_restore() -> None:
    cache = ModelCache(device_budget=4096 * 4096 * 4 + 1024)
    big = CacheKey("org/a", None, "linear", "float32", "cuda:0")
    other = CacheKey("org/b", None, "linear", "float32", "cuda:0")
    with cache.acquire(big, lambda: nn.Linear(4096, 4096, bias=False).to("cuda:0")) as a:
        assert a.weight.is_cuda
    with cache.acquire(other, lambda: nn.Linear(4096, 4096, bias=False).to("cuda:0")):
        assert not a.weight.is_cuda  # offloaded to make room
    with cache.acquire(big, lambda: pytest.fail("reloaded")) as again:
        assert again is a and a.weight.is_cuda
    stats = cache.stats()
    assert stats.offloads == 2 and stats.restores == 1 and stats.device_bytes == 4096 * 4096 * 4
    assert cache.free() == 2 * 4096 * 4096 * 4


# --- models placed by CPU offload hooks (accelerate / diffusers) -------------------------------


class Hook:
    """Stands for an accelerate hook object (``CpuOffload``)."""


class HookedPipeline:
    """Mimics a diffusers pipeline after ``enable_model_cpu_offload()``: components carrying
    ``_hf_hook``, ``_all_hooks`` filled, ``_offload_gpu_id`` set, and a ``.to()`` that refuses (as
    diffusers does once sequential offload is on)."""

    def __init__(self, name: str) -> None:
        self.name = name
        unet, vae = Movable(), Movable()
        unet._hf_hook = vae._hf_hook = Hook()  # type: ignore[attr-defined]
        self.components: dict[str, Any] = {"unet": unet, "vae": vae, "tokenizer": "tok"}
        self._all_hooks = [unet._hf_hook, vae._hf_hook]  # type: ignore[attr-defined]
        self._offload_gpu_id = 0

    def to(self, device: str) -> HookedPipeline:
        raise ValueError("offloading is not compatible with moving the pipeline")


def test_placed_by_hooks_reads_the_attributes_diffusers_sets() -> None:
    pipe = HookedPipeline("sd")
    assert placed_by_hooks(pipe) and placed_by_hooks({"bundle": [pipe]})
    pipe._all_hooks = []  # remove_all_hooks() empties it and removes the components' hooks...
    for name in ("unet", "vae"):
        del pipe.components[name]._hf_hook
    assert pipe._offload_gpu_id == 0  # ...but keeps _offload_gpu_id: not a sign by itself
    assert not placed_by_hooks(pipe)
    pipe.hf_device_map = {"unet": "cuda:0", "vae": "cuda:1"}  # type: ignore[attr-defined]
    assert placed_by_hooks(pipe)  # a pipeline device map: diffusers refuses .to()
    assert not placed_by_hooks(Movable()) and not placed_by_hooks(nn.Linear(2, 2))
    assert not can_move(HookedPipeline("x"))
    hooked = HookedPipeline("y")
    assert move_to(hooked, "gpu:0") is hooked  # left as it is, .to() never called


def test_a_pipeline_with_cpu_offload_is_host_resident_and_never_moved() -> None:
    mover = Mover()
    cache = ModelCache(device_budget=2, host_budget=10, mover=mover)
    calls: list[str] = []

    def load_pipe() -> HookedPipeline:
        calls.append("sd")
        return HookedPipeline("sd")

    with cache.acquire(key("sd", "gpu:0"), load_pipe, size_bytes=5) as pipe:
        entry = cache.stats().entries[0]
        assert entry.location == "cpu" and entry.hooked and entry.to_json()["hooked"]
    stats = cache.stats()
    assert (stats.device_bytes, stats.host_bytes) == (0, 5)
    # Device pressure: the device entries move, the offloaded pipeline is not touched.
    use(cache, "a", "gpu:0")
    use(cache, "b", "gpu:0")
    use(cache, "c", "gpu:0")
    assert cache.offload("gpu:0") == 2
    assert all(name != "sd" for name, _ in mover.moves)
    # A hit hands it back as it is: no move to gpu:0, no restore, no reload.
    with cache.acquire(key("sd", "gpu:0"), load_pipe, size_bytes=5) as again:
        assert again is pipe
    stats = cache.stats()
    assert calls == ["sd"] and stats.restores == 0 and stats.offloads == 3
    assert all(name != "sd" for name, _ in mover.moves)
    assert where(cache)["sd"] == "cpu"
    # Its bytes count against the host budget: over it, the pipeline is dropped, not moved.
    cache.set_budgets(2, 4)
    assert "sd" not in where(cache) and all(name != "sd" for name, _ in mover.moves)


def test_the_default_mover_never_calls_to_on_a_hooked_pipeline() -> None:
    cache = ModelCache(device_budget=1, host_budget=100)
    with cache.acquire(key("sd", "gpu:0"), lambda: HookedPipeline("sd"), size_bytes=50) as pipe:
        pass
    with cache.acquire(key("m", "gpu:0"), Movable, size_bytes=1):
        pass
    with cache.acquire(key("sd", "gpu:0"), no_reload) as again:
        assert again is pipe  # HookedPipeline.to() raises: it was never called
    assert cache.stats().evictions == 0 and where(cache)["sd"] == "cpu"


def test_offload_turned_on_inside_a_block_is_noted_at_release() -> None:
    mover = Mover()
    cache = ModelCache(device_budget=10, host_budget=10, mover=mover)
    with cache.acquire(key("sd", "gpu:0"), loader_for("sd", "gpu:0"), size_bytes=4) as model:
        assert where(cache) == {"sd": "gpu:0"}
        model._hf_hook = Hook()  # type: ignore[attr-defined]
    stats = cache.stats()
    assert where(cache) == {"sd": "cpu"} and stats.entries[0].hooked
    assert (stats.device_bytes, stats.host_bytes, stats.offloads) == (0, 4, 0)
    with cache.acquire(key("sd", "gpu:0"), loader_for("sd", "gpu:0"), size_bytes=4):
        pass
    assert mover.moves == [] and cache.stats().restores == 0
    # Hooks removed: an ordinary entry in host memory again, back to its device on the next hit.
    del model._hf_hook  # type: ignore[attr-defined]
    with cache.acquire(key("sd", "gpu:0"), loader_for("sd", "gpu:0"), size_bytes=4):
        pass  # noted at this release
    with cache.acquire(key("sd", "gpu:0"), loader_for("sd", "gpu:0"), size_bytes=4):
        assert mover.moves == [("sd", "gpu:0")]


def test_free_after_out_of_memory_drops_hooked_entries_of_that_device() -> None:
    cache = ModelCache(mover=Mover())
    with cache.acquire(key("sd", "gpu:0"), lambda: HookedPipeline("sd"), size_bytes=5):
        pass
    use(cache, "h", "cpu", size=7)
    assert cache.free("gpu:1") == 0
    assert cache.free("gpu:0") == 5  # the hooks may have left a model on gpu:0
    assert where(cache) == {"h": "cpu"}


def no_reload() -> Any:
    pytest.fail("reloaded")


def tiny_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))


def test_real_accelerate_hooks_are_detected_measured_and_left_in_place() -> None:
    from accelerate import cpu_offload, cpu_offload_with_hook

    plain = tiny_net()
    size = measure_bytes(plain)
    x = torch.ones(1, 8)
    expected = plain(x)
    # Sequential offload: the weights become meta tensors, the host copies sit in the hooks.
    sequential = tiny_net()
    cpu_offload(sequential, execution_device=torch.device("cpu"))
    assert sequential[0].weight.is_meta
    model_offload, _ = cpu_offload_with_hook(tiny_net(), execution_device="cpu")
    for net in (sequential, model_offload):
        assert placed_by_hooks(net) and measure_bytes(net) == size
        # "gpu:0" is no torch device: any .to() from the cache would fail and reload.
        cache = ModelCache(device_budget=1)
        k = key("net", "gpu:0")
        with cache.acquire(k, functools.partial(lambda n: n, net)) as got:
            assert got is net
        use(cache, "other", "gpu:0")
        with cache.acquire(k, no_reload) as again:
            assert again is net and torch.equal(again(x), expected)
        stats = cache.stats()
        assert stats.host_bytes == size and stats.entries[-1].hooked
        assert stats.evictions == 0 and stats.restores == 0
    assert not placed_by_hooks(plain)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_real_diffusers_cpu_offload_on_cuda_is_never_moved() -> None:
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    def pipeline(sequential: bool) -> Any:
        unet = UNet2DModel(
            sample_size=8,
            in_channels=1,
            out_channels=1,
            block_out_channels=(4, 8),
            layers_per_block=1,
            norm_num_groups=4,
            down_block_types=("DownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "UpBlock2D"),
        )
        pipe: Any = DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=10))
        if sequential:
            pipe.enable_sequential_cpu_offload(device="cuda:0")
        else:
            pipe.enable_model_cpu_offload(device="cuda:0")
        return pipe

    for sequential in (False, True):
        cache = ModelCache(device_budget=1)
        k = CacheKey("org/ddpm", None, "diffusers-pipeline", "float32", "cuda:0")
        with cache.acquire(k, functools.partial(pipeline, sequential)) as pipe:
            assert placed_by_hooks(pipe)
        with cache.acquire(CacheKey("org/x", None, "t", "float32", "cuda:0"), Movable):
            pass
        with cache.acquire(k, no_reload) as again:
            assert again is pipe and not any(p.is_cuda for p in pipe.unet.parameters())
        stats = cache.stats()
        assert stats.evictions == 0 and stats.bytes_on("cuda:0") == 0
        assert stats.bytes_on("cpu") == measure_bytes(pipe) > 0
