"""Run one blocking model call on a helper thread and stream the events it reports.

A diffusers pipeline call or ``model.generate`` blocks until the whole output is done, while a
generator's ``run`` must yield progress, previews and notes as it works. :func:`run_blocking`
(plugins call it as ``ctx.run_blocking``) runs the call, ``work(emit, stopped)``, on a helper
thread: what the call's callbacks ``emit`` goes through a queue that the consumer (``run``, on the
device worker) drains and yields. The consumer only waits while the helper computes, so the device
still runs one model call at a time.

torch keeps some settings per thread, and a new thread does not inherit them: its CPU thread count
(a new thread takes the count set last, on whichever thread) and its current CUDA device. The
helper takes the consumer's thread count, so the call runs with the count the studio chose and
recorded in the recipe, and for a ``cuda:N`` device it makes N the current device.

When the consumer stops early (the worker closed the generator on a cancel, an exception) the call
gets ``stopped`` set, so its callbacks can end it at the next step, and the helper is joined
before the consumer goes on. A call that fails, or ends, after the job's cancel flag was set ends
as :class:`~studio.Cancelled`; its result and its failure's traceback (which holds the call's
frames, tensors included) are let go first, so the caller can give the memory back.

torch is never imported at module level: only if the caller already did, or for a CUDA device.
"""

from __future__ import annotations

import queue
import sys
import threading
from collections.abc import Callable, Generator, Iterator
from typing import Any, Generic, TypeVar

from studio.core.errors import Cancelled
from studio.core.events import PluginEvent

T = TypeVar("T")

#: What a blocking call's ``work`` receives to report an event (``Progress``, ``Preview``,
#: ``Note``...): the consumer yields it as it comes. Safe to call from any thread.
Emit = Callable[[PluginEvent], None]

#: ``work(emit, stopped)``: the blocking call. ``stopped`` is set when the consumer went away.
Work = Callable[[Emit, threading.Event], T]

_DONE = object()


class _Failure:
    """An exception raised by ``work``, handed through the queue to the consumer."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class BackgroundCall(Generic[T]):
    """``for event in BackgroundCall(work): yield event``, then read :attr:`result`.

    ``work(emit, stopped)`` runs on a helper thread started when iteration starts (one iteration
    per call). The helper takes the iterating thread's torch CPU thread count and, when
    ``device`` is ``"cuda:N"``, sets CUDA device N. An exception raised by ``work`` is re-raised
    (the same object) where the events are read. When the iteration ends early, :attr:`stopped`
    is set and the helper joined.
    """

    def __init__(self, work: Work[T], *, name: str = "studio-call", device: str | None = None):
        self._work = work
        self._name = name
        self._device = device
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.stopped = threading.Event()
        self._result: T | None = None
        self._started = False
        self._finished = False

    def _main(self, threads: int | None) -> None:
        try:
            if threads is not None:
                sys.modules["torch"].set_num_threads(threads)
            if self._device is not None and self._device.startswith("cuda:"):
                import torch

                torch.cuda.set_device(self._device)
            self._result = self._work(self._queue.put, self.stopped)
        except BaseException as exc:  # handed to the consumer, who decides
            self._queue.put(_Failure(exc))
        else:
            self._queue.put(_DONE)

    def __iter__(self) -> Iterator[PluginEvent]:
        if self._started:
            raise RuntimeError("a background call runs once; make a new one")
        self._started = True
        torch = sys.modules.get("torch")  # not imported by the caller: no thread count to pass on
        threads = int(torch.get_num_threads()) if torch is not None else None
        thread = threading.Thread(target=self._main, args=(threads,), name=self._name, daemon=True)
        thread.start()
        try:
            while True:
                item = self._queue.get()
                if item is _DONE:
                    self._finished = True
                    return
                if isinstance(item, _Failure):
                    raise item.exc
                yield item
        finally:
            self.stopped.set()  # ended early: the call's callbacks stop it at the next step
            thread.join()

    @property
    def result(self) -> T:
        """What ``work`` returned; :class:`RuntimeError` before it has finished."""
        if not self._finished:
            raise RuntimeError("the background call has not finished")
        return self._result  # type: ignore[return-value]

    def discard(self) -> None:
        """Let go of the result (a cancelled call's output is not wanted)."""
        self._result = None
        self._finished = False


def _drop_tracebacks(exc: BaseException) -> None:
    """Drop the tracebacks of ``exc`` and of the exceptions chained to it: their frames hold the
    call's locals (latents, activations), which would otherwise outlive the call."""
    pending: list[BaseException | None] = [exc]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        current.__traceback__ = None
        pending += [current.__cause__, current.__context__]


def run_blocking(
    work: Work[T],
    *,
    name: str = "studio-call",
    device: str | None = None,
    cancel: threading.Event | None = None,
) -> Generator[PluginEvent, None, T]:
    """``result = yield from run_blocking(work, ...)``: the call's events, then its result.

    ``work(emit, stopped)`` runs on a helper thread named ``name`` (see :class:`BackgroundCall`
    for the thread count and ``device``). With ``cancel`` (the job's cancel flag): the call does
    not start once it is set, and a call that fails or ends after it was set ends as
    :class:`~studio.Cancelled`, its result and tracebacks let go. Other exceptions are re-raised
    as they are.
    """
    if cancel is not None and cancel.is_set():
        raise Cancelled()
    call: BackgroundCall[T] = BackgroundCall(work, name=name, device=device)
    failed = False
    try:
        yield from call
    except Exception as exc:
        if cancel is None or not cancel.is_set():
            raise
        _drop_tracebacks(exc)  # a call stopped by cancel may fail on its way out: not an error
        failed = True
    if failed or (cancel is not None and cancel.is_set()):
        call.discard()
        raise Cancelled()  # outside the except block: nothing chained to it
    return call.result
