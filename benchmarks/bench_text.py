"""Text generation: the studio's streamed generation against bare ``model.generate``.

Model: a random-weight Llama-style causal LM, small but not trivial (8 layers, hidden 512; 4 and
256 with ``quick``), built offline by :mod:`studio.testing.models_text`, in the device's dtype (CPU
float32, CUDA bfloat16/float16). Same prompt, seed and sampling settings on both sides (the studio
picks exactly the tokens bare ``generate`` picks with the same seed, so both produce the same
number of tokens).

*Bare*: tokenize, then ``model.generate`` (no streamer) for tokens/s; for the time to first token
the same call with a streamer that notes when the first new token arrives.

*Studio*, two levels:

- ``plugin``: iterating ``TextGenerator.run`` with a run context (model warm in the cache):
  prompt formatting, the context check, the stepwise decode loop, incremental detokenization,
  one ``Partial`` event per token, the result.
- ``studio``: a job through :class:`~studio.core.studio.Studio` (submit, queue, worker, events
  stored and sent to a subscriber, the artifact written), timed from ``submit`` to the events the
  subscriber receives.

Goals (issue 4): tokens/s ratio >= 0.97 with streaming on; time to first streamed token at most
16 ms more than bare. Each side's best of several interleaved runs (as ``timeit``: on a busy
machine other processes only add time), with the medians in the notes.
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

GOAL_RATIO = 0.97
GOAL_TTFT_MS = 16.0

PROMPT = (
    "Once upon a time there was a small studio by the sea. The painter mixed blue and yellow "
    "until the green looked like spring, and a writer continued the story: the door opened,"
)
SAMPLING: dict[str, Any] = {
    "temperature": 0.8,
    "top_p": 0.95,
    "top_k": 50,
    "repetition_penalty": 1.0,
}


def _model(root: Path, quick: bool) -> Path:
    from studio.testing.models_text import make_tiny_causal_lm

    size = {"hidden_size": 256, "num_layers": 4} if quick else {"hidden_size": 512, "num_layers": 8}
    return make_tiny_causal_lm(
        root / "bench-llama", "llama", seed=0, num_heads=8, context_length=2048, **size
    )


class _FirstToken:
    """A streamer that notes when the first generated token (after the prompt) arrives."""

    def __init__(self) -> None:
        self.calls = 0
        self.first: float | None = None
        self.first_cpu: float | None = None

    def put(self, value: Any) -> None:
        self.calls += 1
        if self.calls == 2 and self.first is None:
            self.first = time.perf_counter()
            self.first_cpu = time.process_time()

    def end(self) -> None:
        pass


class _Bare:
    def __init__(self, folder: Path, device: str, dtype: str) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from studio.core.devices import torch_dtype

        self.torch = torch
        self.device = device
        self.tok = AutoTokenizer.from_pretrained(folder)
        model: Any = AutoModelForCausalLM.from_pretrained(folder, dtype=torch_dtype(dtype))
        self.model = model.to(device).eval()
        # as the studio loads it (no autograd bookkeeping): the ratio then measures only overhead
        self.model.requires_grad_(False)

    def generate(
        self, seed: int, max_new_tokens: int, streamer: Any = None
    ) -> tuple[int, float, float]:
        """(new tokens, seconds, CPU seconds) of tokenize + generate."""
        torch = self.torch
        self._sync()
        cpu = time.process_time()
        started = time.perf_counter()
        ids = torch.tensor([self.tok(PROMPT)["input_ids"]], device=self.device)
        torch.manual_seed(seed)
        out = self.model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            do_sample=True,
            max_new_tokens=max_new_tokens,
            streamer=streamer,
            **SAMPLING,
        )
        self._sync()
        wall = time.perf_counter() - started
        return int(out.shape[1] - ids.shape[1]), wall, time.process_time() - cpu

    def ttft(self, seed: int) -> tuple[float, float]:
        """(seconds, CPU seconds) from tokenizing to the first new token."""
        streamer = _FirstToken()
        cpu = time.process_time()
        started = time.perf_counter()
        self.generate(seed, 4, streamer)
        assert streamer.first is not None and streamer.first_cpu is not None
        return streamer.first - started, streamer.first_cpu - cpu

    def _sync(self) -> None:
        if self.device.startswith("cuda"):
            self.torch.cuda.synchronize()


def _plugin_run(
    ctx: Any, folder: Path, seed: int, max_new_tokens: int
) -> tuple[int, float, float, float, float]:
    """(new tokens, seconds, CPU seconds, seconds and CPU seconds to the first Partial)."""
    from studio.core.events import Partial, Result
    from studio.core.generator import GenerationRun
    from studio_text import TextGenerator, TextOptions

    request = GenerationRun(
        generator=TextGenerator.id,
        prompt=PROMPT,
        model=str(folder),
        seed=seed,
        options=TextOptions(mode="continuation", max_new_tokens=max_new_tokens, **SAMPLING),
    )
    first = first_cpu = None
    cpu = time.process_time()
    started = time.perf_counter()
    for event in TextGenerator().run(request, ctx):
        if first is None and isinstance(event, Partial):
            first = time.perf_counter()
            first_cpu = time.process_time()
        if isinstance(event, Result):
            done = time.perf_counter()
            tokens = int(event.output.extra["new_tokens"])
    assert first is not None and first_cpu is not None
    return tokens, done - started, time.process_time() - cpu, first - started, first_cpu - cpu


def _studio_run(
    app: Any, folder: Path, seed: int, max_new_tokens: int
) -> tuple[int, float, float, float, float]:
    """(new tokens, seconds, CPU seconds, seconds and CPU seconds submit -> first Partial seen)."""
    from studio.core.events import Partial, Result
    from studio.core.generator import GenerationRequest

    marks: dict[str, float] = {}
    tokens: list[int] = []
    finished = threading.Event()

    def on_event(job_event: Any) -> None:
        event = job_event.event
        if isinstance(event, Partial) and "first" not in marks:
            marks["first"] = time.perf_counter()
            marks["first_cpu"] = time.process_time()
        elif isinstance(event, Result):
            marks["result"] = time.perf_counter()
            tokens.append(int(event.output.extra["new_tokens"]))
            finished.set()

    unsubscribe = app.subscribe(on_event)
    try:
        request = GenerationRequest(
            generator="text-generation",
            prompt=PROMPT,
            model=str(folder),
            seed=seed,
            options={"mode": "continuation", "max_new_tokens": max_new_tokens, **SAMPLING},
        )
        cpu = time.process_time()
        started = time.perf_counter()
        job = app.submit(request)
        finished.wait(600)
        cpu_used = time.process_time() - cpu  # the worker's CPU: this thread only waits
        record = app.wait(job, timeout=600)
    finally:
        unsubscribe()
    if not tokens:
        raise RuntimeError(f"benchmark job {job} {record.state}: {record.error}")
    first_cpu = marks["first_cpu"] - cpu
    return tokens[0], marks["result"] - started, cpu_used, marks["first"] - started, first_cpu


def _seed(bare: _Bare, max_new_tokens: int) -> int:
    """A seed whose sample runs the whole length and whose first token is a whole character.

    A random model picks EOS now and then, and half of the tiny vocabulary are byte tokens whose
    text only shows once a character is complete: such a seed would time the model's luck, not
    the studio, so it is skipped (with real models the first token is almost always text).
    """
    torch = bare.torch
    prompt = bare.tok(PROMPT)["input_ids"]
    for seed in range(100):
        ids = torch.tensor([prompt], device=bare.device)
        torch.manual_seed(seed)
        out = bare.model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            do_sample=True,
            max_new_tokens=max_new_tokens,
            **SAMPLING,
        )
        new = out[0, len(prompt) :].tolist()
        context = str(bare.tok.decode(prompt[-4:]))
        first = str(bare.tok.decode(prompt[-4:] + new[:1]))[len(context) :]
        if len(new) == max_new_tokens and first.strip() and "\ufffd" not in first:
            return seed
    return 0


def run(quick: bool = False) -> list[dict]:
    import studio_text
    from studio.core.context import RunContext
    from studio.core.devices import configure_cpu_threads
    from studio.core.studio import Studio
    from studio_text.loading import pick_dtype

    max_new_tokens = 64 if quick else 128
    repeats = 5 if quick else 11
    with tempfile.TemporaryDirectory(prefix="bench-text-") as tmp:
        root = Path(tmp)
        folder = _model(root, quick)
        app = Studio.open(root / "home", load_plugins=False)
        try:
            app.plugins.register(studio_text)
            # warm up: load the model into the studio's cache (and let the worker pick a device)
            _studio_run(app, folder, 0, 4)
            device = app.device
            dtype = pick_dtype(device)
            # torch's CPU thread count is per calling thread: use the worker's setting here too
            configure_cpu_threads(app.settings.cpu_threads)
            bare = _Bare(folder, device, dtype)
            ctx = RunContext(
                job_id="bench",
                device=device,
                cache=app.cache,
                settings=app.settings,
                scratch=root / "scratch",
                log=logging.getLogger("bench.text"),
                hash_file=app.store.file_sha256,  # as the worker's context: hashes are cached
            )
            seed = _seed(bare, max_new_tokens)
            for _ in range(2):  # warm every path once more (allocator, kernels)
                bare.generate(seed, max_new_tokens)
                bare.ttft(seed)
                _plugin_run(ctx, folder, seed, max_new_tokens)
            samples: dict[str, list[float]] = {}
            for _ in range(repeats):
                for level, measure in (
                    ("bare", lambda: (*bare.generate(seed, max_new_tokens), *bare.ttft(seed))),
                    ("plugin", lambda: _plugin_run(ctx, folder, seed, max_new_tokens)),
                    ("studio", lambda: _studio_run(app, folder, seed, max_new_tokens)),
                ):
                    n, wall, cpu, first, first_cpu = measure()
                    samples.setdefault(f"{level}_tps", []).append(n / wall)
                    samples.setdefault(f"{level}_cpu_tps", []).append(n / cpu if cpu else 0.0)
                    samples.setdefault(f"{level}_ttft", []).append(first)
                    samples.setdefault(f"{level}_cpu_ttft", []).append(first_cpu)
        finally:
            app.close()
    # Best of the interleaved repeats (as timeit does): other processes only ever add time, so
    # the best run of each side is its own cost; medians are in the notes.
    best = {k: (max(v) if k.endswith("tps") else min(v)) for k, v in samples.items()}
    med = {k: statistics.median(v) for k, v in samples.items()}
    setup = (
        f"{device} {dtype}; {'4x256' if quick else '8x512'} Llama, {max_new_tokens} tokens, "
        f"best of {repeats} interleaved runs"
    )
    rows = []
    for level, what in (("plugin", "TextGenerator.run"), ("studio", "Studio job")):
        tps = best[f"{level}_tps"]
        ratio = tps / best["bare_tps"]
        cpu_ratio = best[f"{level}_cpu_tps"] / best["bare_cpu_tps"]
        median_ratio = med[f"{level}_tps"] / med["bare_tps"]
        rows.append(
            {
                "name": f"text tokens/s ({level}, streaming)",
                "studio": tps,
                "bare": best["bare_tps"],
                "unit": "tokens/s",
                "ratio": ratio,
                "goal": f">= {GOAL_RATIO}",
                "met": ratio >= GOAL_RATIO,
                "notes": f"{what} vs bare generate; {setup}; ratio of medians {median_ratio:.3f}, "
                f"per CPU second {cpu_ratio:.3f}",
                "median_ratio": median_ratio,
                "cpu_ratio": cpu_ratio,
            }
        )
        ttft = best[f"{level}_ttft"] * 1000
        bare_ttft = best["bare_ttft"] * 1000
        median_extra = (med[f"{level}_ttft"] - med["bare_ttft"]) * 1000
        cpu_extra = (best[f"{level}_cpu_ttft"] - best["bare_cpu_ttft"]) * 1000
        rows.append(
            {
                "name": f"text first token ({level})",
                "studio": ttft,
                "bare": bare_ttft,
                "unit": "ms",
                "ratio": ttft / bare_ttft if bare_ttft else None,
                "goal": f"<= bare + {GOAL_TTFT_MS:g} ms",
                "met": ttft <= bare_ttft + GOAL_TTFT_MS,
                "notes": f"{what}: {ttft - bare_ttft:+.1f} ms vs bare "
                f"({median_extra:+.1f} ms between medians, {cpu_extra:+.1f} ms of CPU); {setup}",
                "median_extra_ms": median_extra,
                "cpu_extra_ms": cpu_extra,
            }
        )
    return rows


if __name__ == "__main__":
    for row in run(quick=True):
        print(row)
