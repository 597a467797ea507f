"""Model cache: a hit against a cold load of the same model (goal: a hit costs < 1% of a load).

A small random-weight GPT-2 is saved with ``save_pretrained`` (safetensors) into a temporary
folder. *Cold* is what a generator pays the first time: resolve the reference, then
``ModelCache.acquire`` on a fresh cache, whose loader runs ``AutoModelForCausalLM.from_pretrained``
and moves the model to the device. *Hit* is what it pays every later run: resolve + ``acquire``
of the same key. Medians over several repetitions. On an accelerator a second row compares
bringing an offloaded model back from host memory with a cold load.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

GOAL_RATIO = 0.01


def _save_model(folder: Path, quick: bool) -> int:
    """Save a random GPT-2 into ``folder``; returns its parameter count."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    layers, width = (2, 128) if quick else (6, 512)
    config = GPT2Config(
        vocab_size=4096,
        n_positions=256,
        n_embd=width,
        n_layer=layers,
        n_head=8,
    )
    model = GPT2LMHeadModel(config)
    model.save_pretrained(folder)
    return sum(p.numel() for p in model.parameters())


def _median_seconds(action: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def run(quick: bool = False) -> list[dict]:
    """Rows: cache hit vs cold load; on an accelerator also restore-from-host vs cold load."""
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    from studio.core.devices import resolve_device

    device = resolve_device("auto")
    cold_repeats, hit_repeats = (3, 200) if quick else (5, 2000)

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a bar per load would flood the table's terminal
    try:
        return _run(device, cold_repeats, hit_repeats, quick, sync, AutoModelForCausalLM, torch)
    finally:
        if bars:
            hf_logging.enable_progress_bar()


def _run(
    device: str,
    cold_repeats: int,
    hit_repeats: int,
    quick: bool,
    sync: Callable[[], None],
    auto_model: Any,
    torch: Any,
) -> list[dict]:
    from studio.core.cache import CacheKey, ModelCache
    from studio.core.refs import resolve

    with tempfile.TemporaryDirectory(prefix="bench-cache-") as tmp:
        folder = Path(tmp) / "gpt2-random"
        params = _save_model(folder, quick)

        def loader() -> Any:
            model = auto_model.from_pretrained(folder, dtype=torch.float32)
            return model.to(device).eval()

        def key_for(ref: str) -> CacheKey:
            resolved = resolve(ref)
            return CacheKey(resolved.cache_ref, resolved.revision, "causal-lm", "float32", device)

        def use(cache: ModelCache) -> None:
            with cache.acquire(key_for(str(folder)), loader) as model:
                assert model is not None
            sync()

        loader()  # warm-up: imports and first-use initialisation are not the cache's cost
        cold = _median_seconds(lambda: use(ModelCache()), cold_repeats)
        cache = ModelCache()
        use(cache)
        hit = _median_seconds(lambda: use(cache), hit_repeats)
        key = key_for(str(folder))

        def acquire_only() -> None:
            with cache.acquire(key, loader):
                pass

        acquire = _median_seconds(acquire_only, hit_repeats)
        stats = cache.stats()
        assert stats.misses == 1, "a hit reloaded the model"
        entry_bytes = stats.entries[0].bytes
        ratio = hit / cold
        rows = [
            {
                "name": "cache hit vs cold load (GPT-2, random weights)",
                "studio": hit,
                "bare": cold,
                "unit": "s",
                "ratio": ratio,
                "goal": "< 1% of cold",
                "met": ratio < GOAL_RATIO,
                "notes": (
                    f"{params / 1e6:.1f}M params, {entry_bytes / 2**20:.0f} MiB on {device}; "
                    f"hit = resolve + acquire (acquire alone {acquire * 1e6:.1f} us); "
                    f"cold = resolve + from_pretrained + to(device) through a fresh cache"
                ),
            }
        ]
        if device != "cpu":
            rows.append(_restore_row(folder, device, loader, key, cold, cold_repeats, sync))
    return rows


def _restore_row(
    folder: Path,
    device: str,
    loader: Callable[[], Any],
    key: Any,
    cold: float,
    repeats: int,
    sync: Callable[[], None],
) -> dict:
    """Bring an offloaded model back to the device, against a cold load."""
    from studio.core.cache import ModelCache

    cache = ModelCache()

    def restore() -> None:
        cache.offload(device)
        sync()
        started = time.perf_counter()
        with cache.acquire(key, loader):
            sync()
        times.append(time.perf_counter() - started)

    with cache.acquire(key, loader):
        pass
    times: list[float] = []
    for _ in range(repeats):
        restore()
    seconds = statistics.median(times)
    return {
        "name": "restore from host vs cold load (GPT-2, random weights)",
        "studio": seconds,
        "bare": cold,
        "unit": "s",
        "ratio": seconds / cold,
        "goal": "< cold load",
        "met": seconds < cold,
        "notes": f"offloaded with .to('cpu'), moved back to {device} on the hit",
    }


if __name__ == "__main__":
    for row in run(quick=True):
        print(row)
