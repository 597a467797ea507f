"""The shared training loop (studio.core.finetune) on a toy model: a frozen linear layer with a
small trainable low-rank "adapter" (with dropout, so the RNGs matter) learning a regression.

Every comparison of weights between two runs is exact: both run in this process, on this thread,
with the same thread count.
"""

from __future__ import annotations

import json
import logging
import math
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from studio.core.cache import ModelCache
from studio.core.checkpoints import CheckpointStore
from studio.core.context import TrainContext
from studio.core.errors import Cancelled, InvalidRequest
from studio.core.events import Note, Sample, TextOutput, TrainStep
from studio.core.finetune import (
    BEST_FILE,
    OPTIMIZER_FILE,
    RNG_FILE,
    STATE_FILE,
    TRAINABLE_FILE,
    DataOrder,
    FineTuneLoop,
    LearningRateShape,
    LoopSettings,
    ResumeMismatch,
    TrainingFailed,
    fingerprint_differences,
    run_fingerprint,
    shard,
    steps_for_epochs,
)
from studio.core.hashing import sha256_file
from studio.core.settings import Settings

DIM = 8


class Toy(torch.nn.Module):
    """A frozen base and a trainable low-rank update with dropout (like a LoRA layer)."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.base = torch.nn.Linear(DIM, DIM)
        with torch.no_grad():
            self.base.weight.copy_(torch.randn(DIM, DIM, generator=generator))
            self.base.bias.zero_()
        self.base.requires_grad_(False)
        self.down = torch.nn.Linear(DIM, 2, bias=False)
        self.up = torch.nn.Linear(2, DIM, bias=False)
        with torch.no_grad():
            self.down.weight.copy_(torch.randn(2, DIM, generator=generator) * 0.1)
            self.up.weight.zero_()
        self.dropout = torch.nn.Dropout(0.2)

    def forward(self, x: Any) -> Any:
        return self.base(x) + self.up(self.down(self.dropout(x)))


def examples(count: int, seed: int = 1, mapping: int = 0) -> list[tuple[Any, Any]]:
    """``count`` pairs ``(x, M x)``; ``mapping`` seeds the matrix ``M``, ``seed`` the inputs."""
    target = torch.randn(DIM, DIM, generator=torch.Generator().manual_seed(1000 + mapping))
    generator = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        x = torch.randn(DIM, generator=generator)
        out.append((x, target @ x))
    return out


def collate(batch: list[tuple[Any, Any]]) -> dict[str, Any]:
    return {"x": torch.stack([b[0] for b in batch]), "y": torch.stack([b[1] for b in batch])}


def mse(model: Any, batch: dict[str, Any]) -> Any:
    out = model(batch["x"])
    return torch.nn.functional.mse_loss(out, batch["y"]), batch["x"].shape[0]


def make_ctx(root: Path, on_boundary: Callable[[], None] | None = None) -> TrainContext:
    return TrainContext(
        job_id="toy",
        device="cpu",
        cache=ModelCache(),
        settings=Settings(),
        scratch=root / "scratch",
        log=logging.getLogger("test.finetune"),
        hash_file=sha256_file,
        checkpoints=CheckpointStore(root / "checkpoints"),
        on_step_boundary=on_boundary,
    )


FINGERPRINT = run_fingerprint(
    trainer="toy",
    trainer_version="1.0",
    base_model={"ref": "toy", "sha256": "abc"},
    dataset="d" * 64,
    options={"rank": 2},
)


def settings(**overrides: Any) -> LoopSettings:
    values: dict[str, Any] = {
        "steps": 12,
        "batch_size": 3,
        "grad_accumulation": 2,
        "learning_rate": 0.05,
        "warmup_steps": 2,
        "seed": 7,
        "checkpoint_every": 4,
        "validate_every": 3,
    }
    values.update(overrides)
    return LoopSettings(**values)


def make_loop(root: Path, **kwargs: Any) -> FineTuneLoop:
    on_boundary = kwargs.pop("on_boundary", None)
    options = kwargs.pop("settings", None) or settings()
    return FineTuneLoop(
        make_ctx(root, on_boundary),
        kwargs.pop("model", None) or Toy(),
        train=kwargs.pop("train", None) or examples(20),
        validation=kwargs.pop("validation", examples(5, seed=2)),
        collate=collate,
        loss=mse,
        settings=options,
        fingerprint=kwargs.pop("fingerprint", FINGERPRINT),
        **kwargs,
    )


def drain(loop: FineTuneLoop) -> list[Any]:
    return list(loop.run())


def trained(loop: FineTuneLoop, folder: Path) -> dict[str, Any]:
    """Export the loop's weights into ``folder`` and read them back."""
    from safetensors.torch import load_file, save_file

    def write(target: Path) -> None:
        tensors = {n: p.detach().contiguous() for n, p in loop._trainable().items()}
        save_file(tensors, str(target / "adapter.safetensors"))

    loop.export(folder, write)
    return load_file(str(folder / "adapter.safetensors"))


def same_tensors(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def steps_of(events: list[Any]) -> dict[int, float]:
    return {e.step: e.loss for e in events if isinstance(e, TrainStep)}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[int, float]]:
    """The uninterrupted run every interrupted one must equal."""
    root = tmp_path_factory.mktemp("reference")
    loop = make_loop(root)
    events = drain(loop)
    return trained(loop, root / "out"), steps_of(events)


# --- pieces -----------------------------------------------------------------------------------


def test_data_order_is_seeded_endless_and_resumable() -> None:
    order = DataOrder(5, seed=3)
    first = order.take(7)  # crosses into the second epoch
    assert sorted(first[:5]) == list(range(5)) and order.position == {"epoch": 1, "index": 2}
    again = DataOrder(5, seed=3)
    assert again.take(7) == first
    resumed = DataOrder(5, seed=3, epoch=1, index=2)
    assert resumed.take(4) == order.take(4)
    assert DataOrder(5, seed=4).take(5) != DataOrder(5, seed=3).take(5)


def test_shards_split_a_global_batch_between_processes() -> None:
    batch = DataOrder(12, seed=0).take(6)
    parts = [shard(batch, rank, 3) for rank in range(3)]
    assert [len(p) for p in parts] == [2, 2, 2]
    assert [i for part in parts for i in part] == batch


def test_learning_rate_shape() -> None:
    cosine = LearningRateShape("cosine", warmup=2, total=10)
    assert cosine(0) == 0.5 and cosine(1) == 1.0 and cosine(2) == 1.0
    assert 0 < cosine(9) < cosine(5) < 1.0
    assert LearningRateShape("linear", 0, 4)(2) == 0.5
    assert LearningRateShape("constant", 0, 4)(3) == 1.0


def test_steps_for_epochs() -> None:
    assert steps_for_epochs(1.0, 10, 4) == 3
    assert steps_for_epochs(0.1, 10, 4) == 1
    with pytest.raises(InvalidRequest):
        steps_for_epochs(1.0, 0, 4)


def test_settings_are_checked_with_a_clear_message() -> None:
    with pytest.raises(InvalidRequest, match="batch_size must be at least 1"):
        LoopSettings(batch_size=0).check()
    with pytest.raises(InvalidRequest, match="scheduler 'warp' is unknown"):
        LoopSettings(scheduler="warp").check()  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest, match="fp16 needs a CUDA GPU"):
        make_loop(Path("."), settings=settings(mixed_precision="fp16")).run().__next__()


def test_fingerprint_differences_name_the_keys() -> None:
    other = run_fingerprint(
        trainer="toy",
        trainer_version="1.1",
        base_model={"ref": "toy", "sha256": "abc"},
        dataset="e" * 64,
        options={"rank": 2},
    )
    assert fingerprint_differences(FINGERPRINT, other) == {
        "dataset": ("d" * 64, "e" * 64),
        "trainer_version": ("1.0", "1.1"),
    }


# --- training ---------------------------------------------------------------------------------


def test_a_run_learns_validates_and_checkpoints(tmp_path: Path) -> None:
    loop = make_loop(tmp_path)
    events = drain(loop)
    steps = [e for e in events if isinstance(e, TrainStep)]
    assert [s.step for s in steps] == list(range(1, 13))
    assert all(s.total == 12 and math.isfinite(s.loss) and s.lr for s in steps)
    assert [s.step for s in steps if s.validation_loss is not None] == [3, 6, 9, 12]
    result = loop.result
    assert result.validation_before is not None and result.validation_last is not None
    assert result.validation_last < result.validation_before
    assert result.steps == 12 and result.nonfinite_steps == 0 and result.resumed_from is None
    assert result.epochs == pytest.approx(12 * 6 / 20)
    notes = [e.message for e in events if isinstance(e, Note)]
    assert any("before training" in n for n in notes)
    store = loop.ctx.checkpoints
    assert store is not None
    latest = store.latest()
    assert latest is not None and store.step_of(latest) == 12
    assert {p.name for p in latest.iterdir()} >= {
        STATE_FILE,
        TRAINABLE_FILE,
        OPTIMIZER_FILE,
        RNG_FILE,
    }
    state = json.loads((latest / STATE_FILE).read_text())
    assert state["fingerprint"]["trainer"] == "toy"
    assert state["fingerprint"]["loop"]["processes"] == 1
    assert state["counters"]["step"] == 12
    assert {"python", "numpy", "cuda_devices"} <= state["rng"][0].keys()
    assert state["scheduler"]["last_epoch"] == 12
    out = trained(loop, tmp_path / "out")
    assert set(out) == {"down.weight", "up.weight"}


def _stop_at(step: int) -> Callable[[], None]:
    """A boundary hook that cancels the run when it is about to do step ``step``."""
    seen = {"n": 0}

    def hook() -> None:
        seen["n"] += 1
        if seen["n"] == step:
            raise Cancelled()

    return hook


def test_stopped_and_resumed_equals_uninterrupted(
    tmp_path: Path, reference: tuple[dict[str, Any], dict[int, float]]
) -> None:
    weights, losses = reference
    loop = make_loop(tmp_path, on_boundary=_stop_at(7))  # after the checkpoint of step 4
    events: list[Any] = []
    with pytest.raises(Cancelled):
        for event in loop.run():
            events.append(event)
    assert max(steps_of(events)) == 6
    resumed = make_loop(tmp_path)
    more = drain(resumed)
    assert resumed.result.resumed_from == 4
    assert any(
        isinstance(e, Note) and "resumed from the checkpoint of step 4" in e.message for e in more
    )
    again = steps_of(more)
    assert min(again) == 5
    assert again == {k: v for k, v in losses.items() if k >= 5}
    assert same_tensors(trained(resumed, tmp_path / "out"), weights)


def test_a_resume_with_other_threads_warns(tmp_path: Path) -> None:
    with pytest.raises(Cancelled):
        drain(make_loop(tmp_path, on_boundary=_stop_at(6)))
    before = torch.get_num_threads()
    torch.set_num_threads(before + 1)
    try:
        events = drain(make_loop(tmp_path))
    finally:
        torch.set_num_threads(before)
    warnings = [e.message for e in events if isinstance(e, Note) and e.level == "warning"]
    assert warnings == [
        f"resumed with CPU threads {before + 1} (the checkpoint's: {before}): the result may "
        "differ in its last digits from a run never interrupted"
    ]


def test_randomness_at_a_step_boundary_leaves_no_trace(
    tmp_path: Path, reference: tuple[dict[str, Any], dict[int, float]]
) -> None:
    """What a generation served at a boundary draws from the RNGs (or reseeds) is undone."""
    import numpy as np

    def greedy_neighbour() -> None:
        torch.manual_seed(1234)
        torch.rand(100)
        random.random()
        np.random.seed(5)

    loop = make_loop(tmp_path, on_boundary=greedy_neighbour)
    events = drain(loop)
    weights, losses = reference
    assert steps_of(events) == losses
    assert same_tensors(trained(loop, tmp_path / "out"), weights)


def test_a_resume_with_another_fingerprint_is_refused(tmp_path: Path) -> None:
    loop = make_loop(tmp_path, on_boundary=_stop_at(6))
    with pytest.raises(Cancelled):
        drain(loop)
    changed = {**FINGERPRINT, "dataset": "f" * 64}
    with pytest.raises(ResumeMismatch) as info:
        drain(make_loop(tmp_path, fingerprint=changed))
    message = str(info.value)
    assert "cannot resume from the checkpoint of step 4" in message and "dataset" in message
    assert info.value.differences == {"dataset": ("d" * 64, "f" * 64)}
    with pytest.raises(ResumeMismatch, match=r"loop\.learning_rate"):
        drain(make_loop(tmp_path, settings=settings(learning_rate=0.01)))


def _nan_on(calls: set[int]) -> Callable[[int, int, Any], Any]:
    """A loss hook making the losses of the given call numbers (1-based) NaN."""
    count = {"n": 0}

    def hook(step: int, micro: int, loss: Any) -> Any:
        count["n"] += 1
        return loss * float("nan") if count["n"] in calls else loss

    return hook


def test_a_non_finite_loss_skips_the_update(tmp_path: Path) -> None:
    loop = make_loop(tmp_path, loss_hook=_nan_on({9}))  # step 5's first micro-batch
    events = drain(loop)
    assert [e.step for e in events if isinstance(e, TrainStep)] == list(range(1, 13))
    warnings = [e for e in events if isinstance(e, Note) and e.level == "warning"]
    assert len(warnings) == 1 and "step 5: the loss was not finite" in warnings[0].message
    assert loop.result.nonfinite_steps == 1 and loop.result.rollbacks == 0
    assert all(math.isfinite(e.loss) for e in events if isinstance(e, TrainStep))


def test_repeated_non_finite_losses_roll_back_with_a_lower_rate(tmp_path: Path) -> None:
    # steps 6, 7 and 8 fail (2 micro-batches a step; the calls after a failure are skipped)
    loop = make_loop(tmp_path, loss_hook=_nan_on({11, 12, 13}))
    events = drain(loop)
    notes = [e.message for e in events if isinstance(e, Note)]
    assert any("rolled back to step 4 with the learning rate times 0.5" in n for n in notes)
    steps = [e.step for e in events if isinstance(e, TrainStep)]
    assert steps == [1, 2, 3, 4, 5, 5, 6, 7, 8, 9, 10, 11, 12]
    result = loop.result
    assert (result.nonfinite_steps, result.rollbacks, result.lr_scale) == (3, 1, 0.5)
    lrs = {e.step: e.lr for e in events if isinstance(e, TrainStep)}
    reference = make_loop(tmp_path / "plain")
    plain = {e.step: e.lr for e in drain(reference) if isinstance(e, TrainStep)}
    assert lrs[9] is not None and plain[9] is not None
    assert lrs[9] == pytest.approx(plain[9] * 0.5)


def test_a_rollback_before_any_checkpoint_goes_back_to_the_start(tmp_path: Path) -> None:
    loop = make_loop(tmp_path, loss_hook=_nan_on({3, 4, 5}))
    events = drain(loop)
    assert any(isinstance(e, Note) and "rolled back to step 0" in e.message for e in events)
    assert loop.result.steps == 12 and loop.result.rollbacks == 1


def test_non_finite_losses_that_persist_fail_with_the_reason(tmp_path: Path) -> None:
    loop = make_loop(tmp_path, loss_hook=_nan_on(set(range(1, 1000))))
    with pytest.raises(TrainingFailed, match=r"not finite for 3 steps in a row .* 2 rollback"):
        drain(loop)


def test_the_watchdog_stops_a_diverging_run(tmp_path: Path) -> None:
    loop = make_loop(
        tmp_path, settings=settings(steps=40, learning_rate=50.0, warmup_steps=0, watchdog_grace=3)
    )
    with pytest.raises(TrainingFailed, match=r"diverged at step .* lower the learning rate"):
        drain(loop)


def test_early_stopping_and_exporting_the_best_weights(tmp_path: Path) -> None:
    # the validation set is another mapping: the loss there stops improving soon
    other = examples(5, seed=99, mapping=1)
    options = settings(
        steps=60,
        validate_every=2,
        early_stopping_patience=2,
        early_stopping_min_delta=0.0,
        export="best",
        watchdog_factor=0,
    )
    loop = make_loop(tmp_path, validation=other, settings=options)
    events = drain(loop)
    result = loop.result
    assert result.stopped_early is not None and "stopped early at step" in result.stopped_early
    assert result.steps < 60
    assert any(isinstance(e, Note) and e.message == result.stopped_early for e in events)
    assert result.exported == "best" and result.exported_step == result.best_step
    assert result.exported_validation == result.validation_best
    store = loop.ctx.checkpoints
    assert store is not None
    latest = store.latest()
    assert latest is not None and (latest / BEST_FILE).is_file()


def test_samples_every_n_steps_and_at_the_end(tmp_path: Path) -> None:
    seen: list[tuple[int, bool]] = []

    def sample(model: Any, step: int) -> Iterator[Any]:
        seen.append((step, model.training))
        torch.rand(3)  # draws random numbers: must not change the training
        yield Sample(step, TextOutput(f"sample at {step}", seed=0))

    loop = make_loop(tmp_path, settings=settings(sample_every=5), sample=sample)
    events = drain(loop)
    assert [e.step for e in events if isinstance(e, Sample)] == [5, 10, 12]
    assert seen == [(5, False), (10, False), (12, False)]


def test_the_last_step_is_sampled_once(tmp_path: Path) -> None:
    def sample(model: Any, step: int) -> Iterator[Any]:
        yield Sample(step, TextOutput(f"sample at {step}", seed=0))

    loop = make_loop(tmp_path, settings=settings(sample_every=6), sample=sample)
    assert [e.step for e in drain(loop) if isinstance(e, Sample)] == [6, 12]


def test_the_end_sample_of_the_best_weights_is_labelled_with_their_step(tmp_path: Path) -> None:
    def sample(model: Any, step: int) -> Iterator[Any]:
        yield Sample(step, TextOutput(f"sample at {step}", seed=0))

    options = settings(
        steps=60,
        validate_every=2,
        early_stopping_patience=2,
        export="best",
        watchdog_factor=0,
    )
    loop = make_loop(
        tmp_path, validation=examples(5, seed=99, mapping=1), settings=options, sample=sample
    )
    samples = [e.step for e in drain(loop) if isinstance(e, Sample)]
    result = loop.result
    assert result.exported == "best" and result.exported_step < result.steps
    assert samples == [result.exported_step]  # what the exported adapter writes, and when


def _pause_then_die_at(step: int, ctx_of: Callable[[], TrainContext]) -> Callable[[], None]:
    """A boundary hook: before step ``step``, a generation served there draws random numbers,
    then the studio holds the training for a pause (``about_to_hold``), then the process dies
    (raised as Cancelled)."""
    seen = {"n": 0}

    def hook() -> None:
        seen["n"] += 1
        if seen["n"] == step:
            torch.manual_seed(999)
            torch.rand(5)
            ctx_of().about_to_hold()
            ctx_of().about_to_hold()  # once per boundary, however long it holds
            raise Cancelled()

    return hook


def test_a_pause_checkpoints_the_step_it_holds_at(
    tmp_path: Path,
    reference: tuple[dict[str, Any], dict[int, float]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    weights, losses = reference
    loops: list[FineTuneLoop] = []
    loop = make_loop(tmp_path, on_boundary=_pause_then_die_at(7, lambda: loops[0].ctx))
    loops.append(loop)
    store = loop.ctx.checkpoints
    assert store is not None
    saved: list[int] = []
    real_save = store.save

    def counted(step: int, write: Callable[[Path], None], meta: dict | None = None) -> Path:
        saved.append(step)
        return real_save(step, write, meta)

    monkeypatch.setattr(store, "save", counted)
    with pytest.raises(Cancelled):
        drain(loop)
    assert saved == [4, 6]  # the periodic one, then the paused step's, once
    resumed = make_loop(tmp_path)
    again = steps_of(drain(resumed))
    assert resumed.result.resumed_from == 6 and min(again) == 7
    assert again == {k: v for k, v in losses.items() if k >= 7}
    assert same_tensors(trained(resumed, tmp_path / "out"), weights)


def test_a_pause_at_a_checkpointed_step_writes_no_other(tmp_path: Path) -> None:
    loops: list[FineTuneLoop] = []
    loop = make_loop(tmp_path, on_boundary=_pause_then_die_at(5, lambda: loops[0].ctx))
    loops.append(loop)
    with pytest.raises(Cancelled):
        drain(loop)
    store = loop.ctx.checkpoints
    assert store is not None
    assert [store.step_of(p) for p in store.complete()] == [4]


def test_export_refuses_non_finite_weights(tmp_path: Path) -> None:
    loop = make_loop(tmp_path, settings=settings(steps=2))
    drain(loop)
    with torch.no_grad():
        loop._trainable()["up.weight"][0, 0] = float("inf")
    written: list[Path] = []
    with pytest.raises(TrainingFailed, match=r"not finite .* the adapter was not written"):
        loop.export(tmp_path / "out", written.append)
    assert not written


def test_export_removes_a_written_file_that_is_not_finite(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    loop = make_loop(tmp_path, settings=settings(steps=2))
    drain(loop)

    def bad_writer(folder: Path) -> None:
        save_file({"w": torch.tensor([1.0, float("nan")])}, str(folder / "a.safetensors"))

    with pytest.raises(TrainingFailed, match="non-finite values"):
        loop.export(tmp_path / "out", bad_writer)
    assert not (tmp_path / "out" / "a.safetensors").exists()


# --- several processes ------------------------------------------------------------------------

DDP_SCRIPT = """
import json, os, sys
from pathlib import Path

sys.path.insert(0, sys.argv[1])
import torch

torch.set_num_threads(1)
from studio.core.errors import Cancelled
from test_finetune import make_loop, settings, trained

root, mode = Path(sys.argv[2]), sys.argv[3]
calls = {"n": 0}


def stop_before_step_7():
    calls["n"] += 1
    if mode == "stop" and calls["n"] == 7:
        raise Cancelled()


loop = make_loop(root, settings=settings(steps=8, batch_size=2), on_boundary=stop_before_step_7)
try:
    events = list(loop.run())
except Cancelled:
    sys.exit(0)
weights = trained(loop, root / "out")  # written by the main process, read back by each
rank = int(os.environ["RANK"])
mine = {n: p.detach() for n, p in loop.model.named_parameters() if p.requires_grad}
report = {
    "world": loop.world,
    "resumed_from": loop.result.resumed_from,
    "losses": {e.step: e.loss for e in events if type(e).__name__ == "TrainStep"},
    "weights": {n: t.flatten().tolist() for n, t in weights.items()},
    "same_as_written": all(torch.equal(mine[n], weights[n]) for n in weights),
}
(root / f"rank{rank}.json").write_text(json.dumps(report))
"""


def _torchrun(script: Path, root: Path, mode: str) -> None:
    import os
    import subprocess
    import sys

    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [str(torchrun), "--standalone", "--nproc_per_node", "2", str(script)]
    done = subprocess.run(
        [*command, str(Path(__file__).parent), str(root), mode],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def test_two_processes_train_one_adapter_and_resume_exactly(tmp_path: Path) -> None:
    """Under torchrun (2 processes, gloo on the CPU): each process takes its shard, only the
    main one writes, every process's RNGs are in the checkpoint, and a stopped run resumes to
    the uninterrupted run's adapter exactly."""
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT, encoding="utf-8")
    whole, parted = tmp_path / "whole", tmp_path / "parted"
    _torchrun(script, whole, "whole")
    _torchrun(script, parted, "stop")
    store = CheckpointStore(parted / "checkpoints")
    latest = store.latest()
    assert latest is not None and store.step_of(latest) == 4
    state = json.loads((latest / STATE_FILE).read_text())
    assert len(state["rng"]) == 2 and state["fingerprint"]["loop"]["processes"] == 2
    _torchrun(script, parted, "resume")
    reports = {
        name: [json.loads((root / f"rank{r}.json").read_text()) for r in (0, 1)]
        for name, root in (("whole", whole), ("parted", parted))
    }
    first = reports["whole"][0]
    assert first["world"] == 2 and first["resumed_from"] is None
    assert sorted(map(int, first["losses"])) == list(range(1, 9))
    for report in reports["whole"] + reports["parted"]:
        assert report["same_as_written"], "a process holds other weights than the adapter"
        assert report["weights"] == first["weights"]
    resumed = reports["parted"][0]
    assert resumed["resumed_from"] == 4
    assert resumed["losses"] == {k: v for k, v in first["losses"].items() if int(k) > 4}
    assert all(math.isfinite(x) for values in first["weights"].values() for x in values)


# --- killed processes -------------------------------------------------------------------------

KILL_SCRIPT = """
import json, os, signal, sys
from pathlib import Path

sys.path.insert(0, sys.argv[1])
import torch

torch.set_num_threads(1)
from test_finetune import make_loop, trained

root, mode = Path(sys.argv[2]), sys.argv[3]
calls = {"n": 0}


def boundary():
    calls["n"] += 1
    if mode == "kill-step" and calls["n"] == 7:
        os.kill(os.getpid(), signal.SIGKILL)


loop = make_loop(root, on_boundary=boundary)
if mode == "kill-write":
    store = loop.ctx.checkpoints
    save = store.save

    def dying_save(step, write, meta=None):
        def write_then_die(folder):
            write(folder)
            if step == 8:  # the files are written, the marker is not: killed mid-checkpoint
                os.kill(os.getpid(), signal.SIGKILL)

        return save(step, write_then_die, meta)

    store.save = dying_save
events = list(loop.run())
weights = trained(loop, root / "out")
(root / "report.json").write_text(json.dumps({
    "resumed_from": loop.result.resumed_from,
    "losses": {e.step: e.loss for e in events if type(e).__name__ == "TrainStep"},
    "weights": {n: t.flatten().tolist() for n, t in weights.items()},
}))
"""


def _python(script: Path, root: Path, mode: str) -> int:
    import os
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, str(script), str(Path(__file__).parent), str(root), mode],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode not in (0, -9):
        raise AssertionError(done.stdout[-3000:] + done.stderr[-3000:])
    return done.returncode


def test_killed_at_a_step_or_mid_checkpoint_resumes_to_the_same_adapter(tmp_path: Path) -> None:
    """SIGKILL between two steps, and while a checkpoint's files are written (before its
    marker): the next run resumes from the newest complete checkpoint and ends with the adapter
    of the run never killed, bit for bit."""
    script = tmp_path / "kill.py"
    script.write_text(KILL_SCRIPT, encoding="utf-8")
    whole = tmp_path / "whole"
    assert _python(script, whole, "whole") == 0
    expected = json.loads((whole / "report.json").read_text())
    for mode in ("kill-step", "kill-write"):
        root = tmp_path / mode
        assert _python(script, root, mode) == -9
        assert not (root / "report.json").exists()
        store = CheckpointStore(root / "checkpoints")
        latest = store.latest()
        assert latest is not None and store.step_of(latest) == 4, mode
        if mode == "kill-write":
            assert list((root / "checkpoints").glob(".tmp-step-00000008-*")), "no half checkpoint"
        assert _python(script, root, "resume") == 0
        report = json.loads((root / "report.json").read_text())
        assert report["resumed_from"] == 4, mode
        assert report["losses"] == {k: v for k, v in expected["losses"].items() if int(k) > 4}
        assert report["weights"] == expected["weights"], mode
        assert not list((root / "checkpoints").glob(".tmp-*")), "the half checkpoint stayed"
