"""ctx.run_blocking (studio.core.background): a blocking call on a helper thread, its events
streamed to the consumer, its result returned, its errors re-raised, cancel and early close."""

from __future__ import annotations

import gc
import logging
import threading
import weakref
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from studio import Cancelled, Emit, Note, PluginEvent, Progress, RunContext
from studio.core.background import BackgroundCall
from studio.core.cache import ModelCache
from studio.core.settings import Settings

#: Bound on every wait between the two threads (a hang guard, never a timing assertion).
WAIT = 10.0


def make_ctx(tmp_path: Path, device: str = "cpu") -> RunContext:
    return RunContext(
        job_id="job1",
        device=device,
        cache=ModelCache(),
        settings=Settings(),
        scratch=tmp_path,
        log=logging.getLogger("test.background"),
    )


def drain(run: Generator[PluginEvent, None, Any]) -> tuple[list[PluginEvent], Any]:
    """All events of ``run`` and the value it returns."""
    events: list[PluginEvent] = []
    while True:
        try:
            events.append(next(run))
        except StopIteration as done:
            return events, done.value


class Payload:
    """Stands for what a model call holds (latents, audio): only weakly referenced by tests."""


# --- events and result ---------------------------------------------------------------------------


def test_events_stream_in_order_while_the_call_runs_and_the_result_is_returned(
    tmp_path: Path,
) -> None:
    ctx = make_ctx(tmp_path)
    first_seen = threading.Event()
    worker = threading.current_thread()
    ran_on: list[threading.Thread] = []

    def work(emit: Emit, stopped: threading.Event) -> str:
        ran_on.append(threading.current_thread())
        emit(Progress(1, 3, "one"))
        # the call goes on only once the consumer has the first event: streamed, not batched
        assert first_seen.wait(WAIT)
        emit(Progress(2, 3, "two"))
        emit(Note("a note"))
        emit(Progress(3, 3, "three"))
        return "done"

    run = ctx.run_blocking(work, name="order")
    first = next(run)
    assert first == Progress(1, 3, "one")
    first_seen.set()
    events, result = drain(run)
    assert events == [Progress(2, 3, "two"), Note("a note"), Progress(3, 3, "three")]
    assert result == "done"
    assert ran_on and ran_on[0] is not worker  # on a helper thread
    assert ran_on[0].name == "order"
    assert not ran_on[0].is_alive()


def test_a_call_that_emits_nothing_returns_its_result(tmp_path: Path) -> None:
    events, result = drain(make_ctx(tmp_path).run_blocking(lambda emit, stopped: [1, 2]))
    assert events == []
    assert result == [1, 2]


# --- errors --------------------------------------------------------------------------------------


def test_an_exception_in_the_call_is_re_raised_in_the_consumer(tmp_path: Path) -> None:
    raised: list[BaseException] = []

    def work(emit: Emit, stopped: threading.Event) -> None:
        emit(Note("before"))
        error = ValueError("the model said no")
        raised.append(error)
        raise error

    run = make_ctx(tmp_path).run_blocking(work)
    assert next(run) == Note("before")
    with pytest.raises(ValueError, match="the model said no") as info:
        next(run)
    assert info.value is raised[0]  # the same object, its traceback kept for the job's error


# --- early close ---------------------------------------------------------------------------------


def test_closing_the_consumer_early_sets_stopped_and_joins_the_helper(tmp_path: Path) -> None:
    saw_stop: list[bool] = []
    helpers: list[threading.Thread] = []

    def work(emit: Emit, stopped: threading.Event) -> None:
        helpers.append(threading.current_thread())
        emit(Progress(1, 100, "step"))
        saw_stop.append(stopped.wait(WAIT))  # what a step callback checks between steps

    run = make_ctx(tmp_path).run_blocking(work)
    assert next(run) == Progress(1, 100, "step")
    run.close()  # what the worker does to a generator it stops
    # joined before close() returned: the helper saw the stop and is gone
    assert saw_stop == [True]
    assert not helpers[0].is_alive()


def test_an_exception_in_the_consumer_stops_the_call(tmp_path: Path) -> None:
    saw_stop: list[bool] = []

    def work(emit: Emit, stopped: threading.Event) -> None:
        emit(Note("one"))
        saw_stop.append(stopped.wait(WAIT))

    run = make_ctx(tmp_path).run_blocking(work)
    next(run)
    with pytest.raises(KeyError):
        run.throw(KeyError("the consumer failed"))
    assert saw_stop == [True]


# --- per-thread torch settings ---------------------------------------------------------------


@pytest.fixture
def threads_differ() -> Iterator[int]:
    """This thread runs with 1 torch CPU thread, while the count set last, on another thread,
    is 2: a new thread that sets nothing would take 2. Yields this thread's count."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    other = threading.Thread(target=torch.set_num_threads, args=(2,))
    other.start()
    other.join()
    yield 1
    torch.set_num_threads(before)


def test_the_helper_takes_the_calling_threads_torch_thread_count(
    threads_differ: int, tmp_path: Path
) -> None:
    import torch

    def work(emit: Emit, stopped: threading.Event) -> int:
        return int(torch.get_num_threads())

    _, seen = drain(make_ctx(tmp_path).run_blocking(work))
    assert seen == threads_differ


def test_a_cuda_device_is_made_current_on_the_helper(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The device is set on the helper thread itself (torch's current device is per thread);
    ``torch.cuda.set_device`` is replaced, so this runs without a GPU."""
    import torch

    calls: list[tuple[str, threading.Thread]] = []
    monkeypatch.setattr(
        torch.cuda, "set_device", lambda d: calls.append((d, threading.current_thread()))
    )

    def work(emit: Emit, stopped: threading.Event) -> threading.Thread:
        return threading.current_thread()

    _, helper = drain(make_ctx(tmp_path, device="cuda:1").run_blocking(work))
    assert calls == [("cuda:1", helper)]
    calls.clear()
    drain(make_ctx(tmp_path, device="cpu").run_blocking(work))
    assert calls == []  # other devices: nothing to set


# --- cancel --------------------------------------------------------------------------------------


def test_a_call_that_fails_because_of_a_cancel_ends_as_cancelled(tmp_path: Path) -> None:
    """The step callback raises its own exception to leave the call: the job ends as cancelled,
    not failed, and the failure's traceback (its frames hold the call's tensors) is let go."""
    ctx = make_ctx(tmp_path)
    held: list[weakref.ref[Payload]] = []
    raised: list[BaseException] = []

    class StopDenoising(Exception):
        pass

    def work(emit: Emit, stopped: threading.Event) -> None:
        latents = Payload()  # a local of the call's frames
        held.append(weakref.ref(latents))
        emit(Progress(1, 10, "denoising"))
        if ctx.cancel_event.wait(WAIT):  # the next step's callback sees the cancel
            error = StopDenoising()
            raised.append(error)
            raise error

    run = ctx.run_blocking(work)
    assert next(run) == Progress(1, 10, "denoising")
    ctx.cancel_event.set()
    with pytest.raises(Cancelled) as info:
        next(run)
    assert info.value.__context__ is None and info.value.__cause__ is None
    assert raised[0].__traceback__ is None
    del raised[:]
    gc.collect()
    assert held[0]() is None  # nothing keeps the call's locals alive


def test_a_call_that_ends_after_a_cancel_ends_as_cancelled_and_lets_go_of_its_result(
    tmp_path: Path,
) -> None:
    ctx = make_ctx(tmp_path)
    held: list[weakref.ref[Payload]] = []

    def work(emit: Emit, stopped: threading.Event) -> Payload:
        result = Payload()
        held.append(weakref.ref(result))
        ctx.cancel_event.set()  # cancelled during the final decode: the call still returns
        return result

    with pytest.raises(Cancelled) as info:
        drain(ctx.run_blocking(work))
    gc.collect()  # while the Cancelled is held, as a plugin frees memory in its except block
    assert held[0]() is None
    assert info.value.__context__ is None


def test_a_call_raising_cancelled_itself_ends_as_cancelled(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)

    def work(emit: Emit, stopped: threading.Event) -> None:
        ctx.cancel_event.set()
        try:
            raise RuntimeError("inside the pipeline")
        except RuntimeError:
            raise Cancelled() from None  # what a plugin's work may do on its way out

    with pytest.raises(Cancelled):
        drain(ctx.run_blocking(work))


def test_a_cancelled_job_does_not_start_the_call(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)
    ctx.cancel_event.set()
    started: list[bool] = []
    with pytest.raises(Cancelled):
        drain(ctx.run_blocking(lambda emit, stopped: started.append(True)))
    assert started == []


# --- BackgroundCall, the mechanism underneath ------------------------------------------------


def test_background_call_result_only_once_finished_and_runs_once() -> None:
    call: BackgroundCall[int] = BackgroundCall(lambda emit, stopped: 7, name="once")
    with pytest.raises(RuntimeError, match="not finished"):
        _ = call.result
    assert list(call) == []
    assert call.result == 7
    with pytest.raises(RuntimeError, match="runs once"):
        list(call)
