"""Text LoRA training: the studio's trainer and loop against a bare peft + torch loop.

Model: a random-weight GPT-2 built offline by :mod:`studio.testing.models_text` (hidden 256, 6
layers, 5.0 M weights, sequences of 128 tokens; 4 layers, 3.4 M weights and 64 tokens with
``quick``), trained on a generated text corpus (seeded random sentences from the tokenizer's own
words, several files) cut into full windows (the trainer's ``packed`` layout, so every batch has
the same shape on both sides). Same LoRA config on both sides (rank 16, alpha 32, dropout 0.05 on
``c_attn``, what the trainer's ``auto`` picks for GPT-2), AdamW (lr 2e-4, no weight decay),
cosine schedule with 5% warmup, gradient clipping at 1.0, batch 4, no validation, no samples; the
same device, dtype and mixed precision as the studio picked (CPU: float32, none); the same torch
CPU thread count (the studio's setting; torch's count is per thread, so the bare loop sets it on
its own thread and the threads each side really used are in the notes).

*Bare*: ``from_pretrained``, ``get_peft_model``, then per step: the next batch of windows (a
seeded permutation), forward with the labels, ``backward``, clip, ``optimizer.step``,
``scheduler.step``, ``zero_grad``, ``loss.item()``.

*Studio*, two levels, each timed from its ``TrainStep`` events:

- ``trainer``: iterating ``TextLoraTrainer.run`` with a train context on this thread: the shared
  loop (accelerate, the seeded data order, the step boundary with the RNGs put back, the finite
  check, the events);
- ``studio``: a training job through ``Studio.submit_training`` on the device worker (the events
  stored and dispatched, the step boundary asking the queue for waiting work).

Rows:

- **steps/s**: steady-state steps per second (from the end of step 1 to the end of the last
  step: the set-up, the data preparation and the final checkpoint and export are outside the
  window), each side's best of several interleaved runs, each side first in turn (as ``timeit``:
  on a busy machine other processes only add time); the ratio of medians and the ratio per
  process CPU second (less sensitive to other processes) in the notes. Goal (issue 11): >= 0.95.
- **preemption**: during a studio training (checkpoints every 2 steps), text generations (4
  tokens, model warm) submitted at seeded random moments: the delay from ``submit`` to the
  generation's first event after being queued (``running``), against one training step + one
  checkpoint write (the longest of each in that run: the generation waits for the step in
  progress, and steps vary on a busy machine) + 20 ms for the queue's own handling (as
  bench_queue allows). Goal (issue 11): the longest delay within that, and every generation
  served at the first step boundary once queued (once ``submit`` returned: at most the step in
  progress ended in between), which holds whatever the machine's load.
- **checkpoint write**: the loop's whole checkpoint (capture: copies of the adapter and optimizer
  state and every RNG; then the safetensors files, the state, the marker, fsyncs and the rename)
  against a bare save of the same state (peft's adapter state dict with safetensors,
  ``torch.save`` of the optimizer, scheduler and torch RNG). Goal (ours): shorter than one
  training step, since a waiting generation may wait for one. **checkpoint size**: bytes on
  disk, goal (ours) <= 1.1x the bare save of the same state.
- **peak memory**: each side in a fresh process (the same steps, then the adapter saved): the
  peak resident set (Linux ``VmHWM``) above the resident set after the imports, which is the
  model, the data and the training's working memory; and the whole process's peak (the studio
  also imports accelerate and its own modules, and runs its database and worker thread). Goal
  (issue 11): <= 1.05x. On CUDA, the peak allocated by torch's CUDA allocator
  (``max_memory_allocated``) too.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import json
import logging
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

GOAL_RATIO = 0.95
GOAL_MEMORY = 1.05
GOAL_CHECKPOINT_SIZE = 1.1
#: The queue's own handling of a generation preempting a training (submit: the request checked
#: and stored; at the boundary: the training's state, the job's start), as bench_queue allows.
GOAL_PREEMPT_SLACK_MS = 20.0

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Sizes:
    """What a mode trains (the same on every side)."""

    hidden: int
    layers: int
    heads: int
    sequence: int
    batch: int
    steps: int
    repeats: int
    preempt_tries: int
    memory_steps: int
    corpus_files: int
    corpus_lines: int
    rank: int = 16
    alpha: int = 32
    dropout: float = 0.05
    learning_rate: float = 2e-4
    warmup: float = 0.05
    max_grad_norm: float = 1.0
    seed: int = 0

    @property
    def label(self) -> str:
        return (
            f"GPT-2 {self.layers}x{self.hidden}, batch {self.batch} x {self.sequence} tokens, "
            f"LoRA r{self.rank} on c_attn"
        )


QUICK = Sizes(
    hidden=256,
    layers=4,
    heads=4,
    sequence=64,
    batch=4,
    steps=30,
    repeats=4,
    preempt_tries=6,
    memory_steps=12,
    corpus_files=4,
    corpus_lines=120,
)
FULL = Sizes(
    hidden=256,
    layers=6,
    heads=4,
    sequence=128,
    batch=4,
    steps=40,
    repeats=5,
    preempt_tries=12,
    memory_steps=30,
    corpus_files=8,
    corpus_lines=200,
)


# --- the model, the corpus, the options -----------------------------------------------------------


def _model(root: Path, sizes: Sizes) -> Path:
    from studio import quiet_model_loading
    from studio.testing.models_text import make_tiny_causal_lm

    with quiet_model_loading("transformers"):
        return make_tiny_causal_lm(
            root / "bench-gpt2",
            "gpt2",
            seed=0,
            hidden_size=sizes.hidden,
            num_layers=sizes.layers,
            num_heads=sizes.heads,
            context_length=max(256, sizes.sequence),
        )


def _corpus(folder: Path, sizes: Sizes) -> Path:
    """Seeded random sentences from the words the tiny tokenizer was trained on."""
    from studio.testing.models_text import CORPUS

    words = sorted({w.strip(".,:!?") for line in CORPUS for w in line.split()} - {""})
    rng = random.Random(1234)
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(sizes.corpus_files):
        lines = []
        for _ in range(sizes.corpus_lines):
            sentence = " ".join(rng.choice(words) for _ in range(rng.randint(6, 16)))
            lines.append(sentence[:1].upper() + sentence[1:] + rng.choice(".!?"))
        (folder / f"part-{index + 1:02d}.txt").write_text("\n".join(lines) + "\n", "utf-8")
    return folder


def _options(sizes: Sizes, steps: int, **over: Any) -> dict[str, Any]:
    """The trainer's options for ``steps`` steps: no validation, no samples, a checkpoint only
    at the end (after the last step's event: outside the timed window)."""
    return {
        "steps": steps,
        "batch_size": sizes.batch,
        "sequence_length": sizes.sequence,
        "layout": "packed",
        "rank": sizes.rank,
        "alpha": sizes.alpha,
        "dropout": sizes.dropout,
        "target_modules": "auto",
        "learning_rate": sizes.learning_rate,
        "scheduler": "cosine",
        "warmup": sizes.warmup,
        "max_grad_norm": sizes.max_grad_norm,
        "seed": sizes.seed,
        "validation_fraction": 0.0,
        "validate_every": 0,
        "checkpoint_every": steps,
        "sample_prompts": [],
        **over,
    }


# --- the bare loop -----------------------------------------------------------------------------


@dataclass
class Precision:
    """Device, weights dtype and mixed precision, as the studio's training used them."""

    device: str = "cpu"
    dtype: str = "float32"
    mixed_precision: str = "no"


class BareLoop:
    """A plain peft + torch training loop on the same model, data and settings."""

    def __init__(self, model: Path, corpus: Path, sizes: Sizes, precision: Precision) -> None:
        import torch
        from transformers import AutoTokenizer

        self.torch = torch
        self.folder = model
        self.sizes = sizes
        self.precision = precision
        tokenizer = AutoTokenizer.from_pretrained(model)
        ids: list[int] = []
        for path in sorted(corpus.glob("*.txt")):
            ids += tokenizer(path.read_text("utf-8"))["input_ids"] + [tokenizer.eos_token_id]
        length = sizes.sequence
        count = len(ids) // length
        self.windows = torch.tensor(ids[: count * length], dtype=torch.long).view(count, length)
        self.model: Any = None
        self.optimizer: Any = None
        self.scheduler: Any = None
        self.params: list[Any] = []
        self.threads = 0

    def setup(self, steps: int) -> None:
        """Load the model, attach a fresh LoRA adapter, make the optimizer and schedule."""
        import torch
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModelForCausalLM

        from studio import quiet_model_loading, torch_dtype

        s = self.sizes
        with quiet_model_loading("transformers", "peft"):
            base: Any = AutoModelForCausalLM.from_pretrained(
                self.folder, dtype=torch_dtype(self.precision.dtype)
            )
            base.to(self.precision.device)
            torch.manual_seed(s.seed)
            config = LoraConfig(
                r=s.rank,
                lora_alpha=s.alpha,
                lora_dropout=s.dropout,
                target_modules=["c_attn"],
                fan_in_fan_out=True,  # GPT-2's Conv1D
                bias="none",
                task_type="CAUSAL_LM",
            )
            self.model = get_peft_model(base, config)
        self.model.train()
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=s.learning_rate, weight_decay=0.0)
        warmup = round(s.warmup * steps)

        def shape(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = min(1.0, (step - warmup) / max(1, steps - warmup))
            return 0.5 * (1.0 + math.cos(math.pi * progress))

        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, shape)

    def train(self, steps: int) -> list[tuple[float, float]]:
        """``steps`` optimizer steps; returns when each one ended (wall and CPU seconds)."""
        torch = self.torch
        s, device = self.sizes, self.precision.device
        mixed = self.precision.mixed_precision
        half = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mixed)
        device_type = torch.device(device).type
        scaler = torch.amp.GradScaler(device_type) if mixed == "fp16" else None
        generator = torch.Generator().manual_seed(s.seed)
        order = torch.randperm(len(self.windows), generator=generator)
        position = 0
        ends = []
        self.threads = torch.get_num_threads()
        for _ in range(steps):
            if position + s.batch > len(order):
                order = torch.randperm(len(self.windows), generator=generator)
                position = 0
            batch = self.windows[order[position : position + s.batch]].to(device)
            position += s.batch
            autocast = torch.autocast(device_type, dtype=half) if half else contextlib.nullcontext()
            with autocast:
                loss = self.model(
                    input_ids=batch,
                    attention_mask=torch.ones_like(batch),
                    labels=batch,
                    use_cache=False,
                ).loss
            if scaler is None:
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.params, s.max_grad_norm)
                self.optimizer.step()
            else:
                scaler.scale(loss).backward()
                scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.params, s.max_grad_norm)
                scaler.step(self.optimizer)
                scaler.update()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            loss.item()
            ends.append(_now())
        return ends

    def checkpoint(self, folder: Path) -> float:
        """Seconds to save the same state as a studio checkpoint, the usual bare way."""
        from peft import get_peft_model_state_dict
        from safetensors.torch import save_file

        torch = self.torch
        started = time.perf_counter()
        folder.mkdir(parents=True, exist_ok=True)
        adapter = {k: v.contiguous() for k, v in get_peft_model_state_dict(self.model).items()}
        save_file(adapter, str(folder / "adapter_model.safetensors"))
        torch.save(
            {
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "rng": torch.get_rng_state(),
            },
            folder / "training_state.pt",
        )
        return time.perf_counter() - started

    def save_adapter(self, folder: Path) -> None:
        from studio import quiet_model_loading

        with quiet_model_loading("transformers", "peft"):
            self.model.save_pretrained(str(folder), safe_serialization=True)

    def close(self) -> None:
        self.model = self.optimizer = self.scheduler = None
        self.params = []


# --- the studio sides ----------------------------------------------------------------------------


@contextlib.contextmanager
def _timed_checkpoints(durations: list[tuple[int, float]]) -> Iterator[None]:
    """Time every checkpoint the shared loop takes (capture + write), on any thread: (step,
    seconds)."""
    from studio.core import finetune

    original = finetune.FineTuneLoop._checkpoint

    def timed(self: Any) -> None:
        started = time.perf_counter()
        original(self)
        durations.append((self.c.step, time.perf_counter() - started))

    setattr(finetune.FineTuneLoop, "_checkpoint", timed)  # noqa: B010 (a method, for mypy)
    try:
        yield
    finally:
        setattr(finetune.FineTuneLoop, "_checkpoint", original)  # noqa: B010


@dataclass
class TrainTimes:
    """The end of each step (its TrainStep event: wall and CPU seconds) and what the run used."""

    ends: list[tuple[float, float]]
    threads: int
    adapter: Path | None = None


def _studio_training(app: Any, model: Path, corpus: Path, options: dict[str, Any]) -> TrainTimes:
    """A training job through the studio; the TrainStep times as the worker emits them."""
    import torch

    from studio import AdapterOutput, TrainingRequest
    from studio.core.events import Result, TrainStep

    ends: list[tuple[float, float]] = []
    threads: list[int] = []
    adapters: list[Path] = []
    job_id: list[str] = []

    def on_event(job_event: Any) -> None:
        if not job_id or job_event.job_id != job_id[0]:
            return
        event = job_event.event
        if isinstance(event, TrainStep):
            ends.append(_now())
            if not threads:
                threads.append(torch.get_num_threads())  # the worker thread's own count
        elif isinstance(event, Result) and isinstance(event.output, AdapterOutput):
            adapters.append(Path(event.output.path))

    unsubscribe = app.subscribe(on_event)
    try:
        request = TrainingRequest(
            trainer="text-lora",
            base_model=str(model),
            dataset=corpus,
            name="bench",
            options=options,
        )
        job_id.append(app.submit_training(request))
        record = app.wait(job_id[0], timeout=1800)
    finally:
        unsubscribe()
    if record.state != "succeeded":
        raise RuntimeError(f"benchmark training {record.id} {record.state}: {record.error}")
    return TrainTimes(ends, threads[0] if threads else 0, adapters[0] if adapters else None)


def _trainer_training(
    app: Any, model: Path, corpus: Path, options: dict[str, Any], root: Path
) -> TrainTimes:
    """``TextLoraTrainer.run`` iterated on this thread with a train context of its own."""
    import torch

    from studio import TrainContext, TrainingRun
    from studio.core.checkpoints import CheckpointStore
    from studio.core.events import TrainStep
    from studio_text import TextLoraOptions, TextLoraTrainer

    root.mkdir(parents=True, exist_ok=True)
    ctx = TrainContext(
        job_id=root.name,
        device=app.device,
        cache=app.cache,
        settings=app.settings,
        scratch=root / "scratch",
        log=logging.getLogger("bench.train"),
        hash_file=app.store.file_sha256,
        checkpoints=CheckpointStore(root / "checkpoints"),
    )
    run = TrainingRun(
        trainer=TextLoraTrainer.id,
        base_model=str(model),
        dataset=corpus,
        name="bench",
        options=TextLoraOptions(**options),
        output_dir=root / "adapter",
    )
    ends: list[tuple[float, float]] = []
    for event in TextLoraTrainer().run(run, ctx):
        if isinstance(event, TrainStep):
            ends.append(_now())
    return TrainTimes(ends, torch.get_num_threads(), run.output_dir)


def _now() -> tuple[float, float]:
    """Wall and process CPU seconds (the CPU time of every thread: torch's pool too)."""
    return time.perf_counter(), time.process_time()


def _rate(ends: list[tuple[float, float]], cpu: bool = False) -> float:
    """Steps per (wall or CPU) second from the end of the first step to the end of the last."""
    which = 1 if cpu else 0
    return (len(ends) - 1) / (ends[-1][which] - ends[0][which])


def _precision(adapter: Path | None, device: str) -> Precision:
    """What the studio's training used, from its adapter's training recipe."""
    from studio_text.trainer import RECIPE_FILE

    if adapter is None:
        return Precision(device)
    resolved = json.loads((adapter / RECIPE_FILE).read_text("utf-8"))["resolved"]
    return Precision(device, resolved["dtype"], resolved["mixed_precision"])


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


# --- steps/s ----------------------------------------------------------------------------------


def _throughput(
    app: Any, model: Path, corpus: Path, sizes: Sizes, root: Path
) -> tuple[list[dict], dict[str, Any]]:
    """Interleaved runs of the three sides; the rows and what later rows need."""
    from studio.core.devices import configure_cpu_threads

    # warm-up: the worker imports the libraries, the cache loads the training model, accelerate
    # sets up; then the same once on this thread, and the bare loop once
    warm = _studio_training(app, model, corpus, _options(sizes, 3))
    precision = _precision(warm.adapter, app.device)
    configure_cpu_threads(app.settings.cpu_threads)  # torch's count is per thread
    _trainer_training(app, model, corpus, _options(sizes, 3), root / "warm-trainer")
    bare = BareLoop(model, corpus, sizes, precision)
    bare.setup(3)
    bare.train(3)
    bare.close()

    options = _options(sizes, sizes.steps)
    rates: dict[str, list[float]] = {"studio": [], "trainer": [], "bare": []}
    cpu_rates: dict[str, list[float]] = {side: [] for side in rates}
    threads: dict[str, set[int]] = {side: set() for side in rates}
    checkpoints: list[tuple[int, float]] = []
    bare_checkpoints: list[float] = []
    bare_folder = root / "bare-checkpoint"
    trainer_checkpoint = root / "trainer-0" / "checkpoints"

    def studio_side(repeat: int) -> TrainTimes:
        return _studio_training(app, model, corpus, options)

    def trainer_side(repeat: int) -> TrainTimes:
        with _timed_checkpoints(checkpoints):
            return _trainer_training(app, model, corpus, options, root / f"trainer-{repeat}")

    def bare_side(repeat: int) -> TrainTimes:
        bare.setup(sizes.steps)
        try:
            ends = bare.train(sizes.steps)
            bare_checkpoints.append(bare.checkpoint(bare_folder))
        finally:
            bare.close()
        return TrainTimes(ends, bare.threads)

    sides: list[tuple[str, Callable[[int], TrainTimes]]] = [
        ("studio", studio_side),
        ("trainer", trainer_side),
        ("bare", bare_side),
    ]
    for repeat in range(sizes.repeats):
        # interleaved, each side first in turn: a slow spell of the machine hits all of them
        for side, measure in sides[repeat % 3 :] + sides[: repeat % 3]:
            # the garbage of the side before (a whole peft model's cycles) collected now, not
            # by this side's allocations in its timed steps
            gc.collect()
            times = measure(repeat)
            rates[side].append(_rate(times.ends))
            cpu_rates[side].append(_rate(times.ends, cpu=True))
            threads[side].add(times.threads)
    best = {side: max(values) for side, values in rates.items()}
    median = {side: statistics.median(values) for side, values in rates.items()}
    cpu_best = {side: max(values) for side, values in cpu_rates.items()}
    used = {side: ",".join(str(t) for t in sorted(values)) for side, values in threads.items()}
    same_threads = len({*threads["studio"], *threads["trainer"], *threads["bare"]}) == 1
    setup = (
        f"{precision.device} {precision.dtype}, mixed precision {precision.mixed_precision}; "
        f"{sizes.label}; {sizes.steps} steps, best of {sizes.repeats} interleaved runs; torch "
        f"threads studio {used['studio']}, trainer {used['trainer']}, bare {used['bare']}"
        + ("" if same_threads else " (NOT the same)")
    )
    rows = []
    for side, what in (("studio", "Studio job"), ("trainer", "TextLoraTrainer.run")):
        ratio = best[side] / best["bare"]
        median_ratio = median[side] / median["bare"]
        cpu_ratio = cpu_best[side] / cpu_best["bare"]
        rows.append(
            {
                "name": f"train steps/s ({side})",
                "studio": best[side],
                "bare": best["bare"],
                "unit": "steps/s",
                "ratio": ratio,
                "goal": f">= {GOAL_RATIO}",
                "met": ratio >= GOAL_RATIO,
                "notes": f"{what} vs a bare peft + torch loop; {setup}; ratio of medians "
                f"{median_ratio:.3f}, per CPU second {cpu_ratio:.3f}",
                "median_ratio": median_ratio,
                "cpu_ratio": cpu_ratio,
                "rates": rates[side],
                "bare_rates": rates["bare"],
            }
        )
    step_s = 1 / median["trainer"]
    studio_ms = statistics.median(seconds for _, seconds in checkpoints) * 1000
    bare_ms = statistics.median(bare_checkpoints) * 1000
    rows.append(
        {
            "name": "train checkpoint write",
            "studio": studio_ms,
            "bare": bare_ms,
            "unit": "ms",
            "ratio": studio_ms / bare_ms,
            "goal": f"< one training step ({step_s * 1000:.0f} ms)",
            "met": studio_ms < step_s * 1000,
            "notes": "the loop's whole checkpoint (capture + safetensors + state + marker + "
            "fsync + rename) vs a bare save of the same state (adapter safetensors + torch.save of "
            f"optimizer, scheduler, RNG, no fsync); medians of {len(checkpoints)} and "
            f"{len(bare_checkpoints)}; {sizes.label}",
        }
    )
    latest = sorted(p for p in trainer_checkpoint.iterdir() if p.name.startswith("step-"))[-1]
    studio_bytes, bare_bytes = _folder_bytes(latest), _folder_bytes(bare_folder)
    files = ", ".join(f"{p.name} {p.stat().st_size / 1e3:.0f} kB" for p in sorted(latest.iterdir()))
    rows.append(
        {
            "name": "train checkpoint size",
            "studio": studio_bytes / 1e6,
            "bare": bare_bytes / 1e6,
            "unit": "MB",
            "ratio": studio_bytes / bare_bytes,
            "goal": f"<= {GOAL_CHECKPOINT_SIZE}x bare (the same state)",
            "met": studio_bytes <= GOAL_CHECKPOINT_SIZE * bare_bytes,
            "notes": f"studio: {files}; bare: adapter safetensors + torch.save of optimizer, "
            "scheduler and torch RNG",
        }
    )
    facts = {"precision": precision, "step_s": step_s}
    return rows, facts


# --- preemption ------------------------------------------------------------------------------


def _preemption(app: Any, model: Path, corpus: Path, sizes: Sizes) -> dict:
    """Generations submitted during a training: submit -> the generation running."""
    from studio import GenerationRequest, TrainingRequest
    from studio.core.events import JobState, JobStateChanged, TrainStep

    steps: list[tuple[int, float]] = []
    started: dict[str, float] = {}
    stepped = threading.Condition()
    train_id: list[str] = []
    ended: list[str] = []

    def watch(job_event: Any) -> None:
        event = job_event.event
        if isinstance(event, TrainStep) and train_id and job_event.job_id == train_id[0]:
            with stepped:
                steps.append((event.step, time.perf_counter()))
                stepped.notify_all()
        elif isinstance(event, JobStateChanged):
            if event.state == JobState.RUNNING:
                started.setdefault(job_event.job_id, time.perf_counter())
            elif event.state.finished and train_id and job_event.job_id == train_id[0]:
                with stepped:
                    ended.append(event.error or str(event.state))
                    stepped.notify_all()

    def wait_steps(count: int) -> None:
        """Until the training has taken ``count`` more steps."""
        with stepped:
            target = len(steps) + count
            stepped.wait_for(lambda: len(steps) >= target or bool(ended), timeout=600)
            if len(steps) < target:
                why = ended[0] if ended else "no step in 10 minutes"
                raise RuntimeError(f"the benchmark training stopped taking steps: {why}")

    generation = GenerationRequest(
        generator="text-generation",
        prompt="Once upon a time",
        model=str(model),
        seed=0,
        options={"mode": "continuation", "max_new_tokens": 4},
    )
    # the generator's model warm in the cache: the delay is the queue's, not a load
    app.wait(app.submit(generation), timeout=600)
    checkpoints: list[tuple[int, float]] = []
    tries: list[tuple[float, float, float]] = []  # (submit called, returned, job running)
    unsubscribe = app.subscribe(watch)
    rng = random.Random(7)
    try:
        with _timed_checkpoints(checkpoints):
            request = TrainingRequest(
                trainer="text-lora",
                base_model=str(model),
                dataset=corpus,
                name="bench-preempt",
                options=_options(sizes, 1_000_000, checkpoint_every=2),
            )
            train_id.append(app.submit_training(request))
            wait_steps(4)
            cycle = (steps[-1][1] - steps[0][1]) / (len(steps) - 1)  # a step, a checkpoint/2
            for _ in range(sizes.preempt_tries):
                # two steps undisturbed (one with a checkpoint, one without: the bound), then a
                # moment anywhere in a step or a checkpoint write
                wait_steps(2)
                time.sleep(rng.uniform(0.0, 2 * cycle))
                submitted = time.perf_counter()
                job = app.submit(generation)
                queued = time.perf_counter()
                record = app.wait(job, timeout=600)
                if record.state != "succeeded":
                    raise RuntimeError(f"benchmark generation {record.state}: {record.error}")
                tries.append((submitted, queued, started[job]))
            app.cancel(train_id[0])
            app.wait(train_id[0], timeout=600)
    finally:
        unsubscribe()
    served = sorted(started[j] for j in started if j != train_id[0])
    written = dict(checkpoints)  # step -> seconds of the checkpoint after it
    # every step's own time (the interval between two TrainStep events without its checkpoint),
    # the steps a generation was submitted in among them; intervals a generation ran in left out
    step_times = [
        b - a - written.get(step, 0.0)
        for (step, a), (_, b) in itertools.pairwise(steps)
        if not any(a <= t <= b for t in served)
    ]
    # served at the first step boundary once queued (submit returned: the request checked and
    # stored): at most the step in progress ended (one TrainStep event) in between
    late = sum(1 for _, queued, running in tries if sum(queued < t < running for _, t in steps) > 1)
    values = [(running - submitted) * 1000 for submitted, _, running in tries]
    submit_ms = statistics.median((queued - submitted) * 1000 for submitted, queued, _ in tries)
    longest = max(values)
    # the bound: the longest step and the longest checkpoint write of the run (steps vary on a
    # busy machine; the generation waits for the one in progress), plus the queue's own handling
    write_times = [seconds for _, seconds in checkpoints]
    step_ms, checkpoint_ms = max(step_times) * 1000, max(write_times) * 1000
    bound = step_ms + checkpoint_ms + GOAL_PREEMPT_SLACK_MS
    return {
        "name": "train preemption: generation start",
        "studio": longest,
        "bare": bound,
        "unit": "ms",
        "ratio": longest / bound,
        "goal": f"<= one step + one checkpoint write + {GOAL_PREEMPT_SLACK_MS:g} ms",
        "met": longest <= bound and not late,
        "notes": f"longest of {len(values)} text generations submitted at random moments of a "
        f"studio training (checkpoint every 2 steps), median {statistics.median(values):.0f} ms; "
        f"bare = the longest step {step_ms:.0f} ms (median "
        f"{statistics.median(step_times) * 1000:.0f} over {len(step_times)}) + the longest "
        f"checkpoint write {checkpoint_ms:.0f} ms (median "
        f"{statistics.median(write_times) * 1000:.0f} over {len(write_times)}) + "
        f"{GOAL_PREEMPT_SLACK_MS:g} ms for the queue; {len(values) - late} of {len(values)} "
        f"served at the first step boundary once queued (submit itself: median "
        f"{submit_ms:.1f} ms)",
        "delays_ms": values,
        "late": late,
        "step_ms": statistics.median(step_times) * 1000,
        "checkpoint_ms": statistics.median(write_times) * 1000,
    }


# --- peak memory (each side in a fresh process) -----------------------------------------------


def _proc_status() -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` in bytes (Linux); ``ru_maxrss`` as the peak elsewhere."""
    values: dict[str, int] = {}
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    values[key] = int(rest.split()[0]) * 1024
    except OSError:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        values["VmHWM"] = peak if sys.platform == "darwin" else peak * 1024
    return values


def _child(config: dict[str, Any]) -> dict[str, Any]:
    """One side's training in this (fresh) process; its memory figures."""
    import peft  # noqa: F401 (imported before the baseline, as the run needs it)
    import torch
    import transformers.modeling_utils  # noqa: F401

    side = config["side"]
    sizes = Sizes(**config["sizes"])
    model, corpus, root = Path(config["model"]), Path(config["corpus"]), Path(config["root"])
    steps = sizes.memory_steps
    if side == "studio":
        import accelerate  # noqa: F401

        import studio_text
        import studio_text.trainer
        from studio.core.studio import Studio

        after_imports = _proc_status().get("VmRSS")
        app = Studio.open(root / "home", load_plugins=False)
        try:
            app.plugins.register(studio_text)
            times = _studio_training(app, model, corpus, _options(sizes, steps))
        finally:
            app.close()
        threads = times.threads
    else:
        from studio.core.devices import configure_cpu_threads

        after_imports = _proc_status().get("VmRSS")
        precision = Precision(**config["precision"])
        configure_cpu_threads(config["threads"])
        bare = BareLoop(model, corpus, sizes, precision)
        bare.setup(steps)
        bare.train(steps)
        bare.checkpoint(root / "checkpoint")
        bare.save_adapter(root / "adapter")
        threads = bare.threads
    status = _proc_status()
    cuda = torch.cuda.max_memory_allocated() if torch.cuda.is_initialized() else None
    return {
        "after_imports": after_imports,
        "peak": status.get("VmHWM"),
        "threads": threads,
        "cuda_peak": cuda,
    }


def _run_child(config: dict[str, Any], root: Path) -> dict[str, Any]:
    path = root / f"child-{config['side']}.json"
    path.write_text(json.dumps(config), "utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_train", "--child", str(path)],
        cwd=HERE.parent,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if done.returncode != 0:
        raise RuntimeError(f"memory run ({config['side']}) failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _memory(
    model: Path, corpus: Path, sizes: Sizes, precision: Precision, threads: int | None, root: Path
) -> list[dict]:
    base = {
        "sizes": asdict(sizes),
        "model": str(model),
        "corpus": str(corpus),
        "precision": asdict(precision),
        "threads": threads,
    }
    results: dict[str, dict[str, Any]] = {}
    for side in ("bare", "studio"):
        folder = root / f"memory-{side}"
        folder.mkdir(parents=True, exist_ok=True)
        results[side] = _run_child({**base, "side": side, "root": str(folder)}, folder)
    studio, bare = results["studio"], results["bare"]
    how = (
        f"fresh process per side, {sizes.memory_steps} steps then the adapter saved; torch "
        f"threads studio {studio['threads']}, bare {bare['threads']}; {sizes.label}"
    )
    rows = []
    if studio["peak"] and bare["peak"]:
        if studio["after_imports"] and bare["after_imports"]:
            s_work = studio["peak"] - studio["after_imports"]
            b_work = bare["peak"] - bare["after_imports"]
            ratio = s_work / b_work
            rows.append(
                {
                    "name": "train peak memory (above imports)",
                    "studio": s_work / 1e6,
                    "bare": b_work / 1e6,
                    "unit": "MB",
                    "ratio": ratio,
                    "goal": f"<= {GOAL_MEMORY}x",
                    "met": ratio <= GOAL_MEMORY,
                    "notes": "peak RSS (VmHWM) minus the RSS after the imports: model, data and "
                    f"training working memory; {how}",
                }
            )
        ratio = studio["peak"] / bare["peak"]
        rows.append(
            {
                "name": "train peak memory (process)",
                "studio": studio["peak"] / 1e6,
                "bare": bare["peak"] / 1e6,
                "unit": "MB",
                "ratio": ratio,
                "goal": f"<= {GOAL_MEMORY}x",
                "met": ratio <= GOAL_MEMORY,
                "notes": "whole-process peak RSS (VmHWM; ru_maxrss off Linux); after the imports "
                f"the studio held {_mb(studio['after_imports'])} and bare "
                f"{_mb(bare['after_imports'])} (accelerate, the studio); {how}",
            }
        )
    if studio["cuda_peak"] and bare["cuda_peak"]:
        ratio = studio["cuda_peak"] / bare["cuda_peak"]
        rows.append(
            {
                "name": "train peak CUDA memory",
                "studio": studio["cuda_peak"] / 1e6,
                "bare": bare["cuda_peak"] / 1e6,
                "unit": "MB",
                "ratio": ratio,
                "goal": f"<= {GOAL_MEMORY}x",
                "met": ratio <= GOAL_MEMORY,
                "notes": f"torch.cuda.max_memory_allocated; {how}",
            }
        )
    return rows


def _mb(value: int | None) -> str:
    return "?" if value is None else f"{value / 1e6:.0f} MB"


# --- entry points ------------------------------------------------------------------------------


def run(quick: bool = False) -> list[dict]:
    import studio_text
    from studio.core.studio import Studio

    sizes = QUICK if quick else FULL
    load_before = _load()
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        root = Path(tmp)
        model = _model(root, sizes)
        corpus = _corpus(root / "corpus", sizes)
        app = Studio.open(root / "home", load_plugins=False)
        try:
            app.plugins.register(studio_text)
            rows, facts = _throughput(app, model, corpus, sizes, root)
            rows.append(_preemption(app, model, corpus, sizes))
            threads = app.settings.cpu_threads
        finally:
            app.close()
        rows += _memory(model, corpus, sizes, facts["precision"], threads, root)
    load = f"machine load (1-minute average) {load_before} before, {_load()} after"
    for row in rows:
        row["notes"] += f"; {load}"
    return rows


def _load() -> str:
    """The 1-minute load average (other processes competing for the CPU)."""
    return f"{os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "?"


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        outcome = _child(json.loads(Path(sys.argv[2]).read_text("utf-8")))
        print(json.dumps(outcome))
    else:
        for row in run(quick=True):
            print(row)
