"""Run one blocking model call on a helper thread and stream what it reports.

``model.generate`` blocks until the whole piece is done, but a generator's ``run`` must yield
progress, previews and notes while it works. The call runs on a helper thread; the callbacks it
invokes (stopping criteria, diffusers step callbacks) ``emit`` events into a queue that the device
worker drains and yields. The worker waits while the helper computes, so the device still runs one
model call at a time. When the consumer stops early (an exception, a closed generator), ``stopped``
is set so the helper's callbacks end the call at the next step, and the thread is joined.

torch's CPU thread count is a per-thread setting (a new thread takes whatever count was set last,
on any thread): the helper takes the consumer's, so the call runs with the count the worker chose.
"""

from __future__ import annotations

import queue
import sys
import threading
from collections.abc import Callable, Generator, Iterator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from studio import RunContext

T = TypeVar("T")

_DONE = object()


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class BackgroundCall(Generic[T]):
    """``for event in BackgroundCall(work): yield event`` then read ``.result``.

    ``work(emit, stopped)`` runs on the helper thread; ``emit(event)`` hands an event to the
    consumer; ``stopped`` is a :class:`threading.Event` set when the consumer went away.
    Exceptions raised by ``work`` are re-raised (the same object) in the consumer.
    """

    def __init__(
        self, work: Callable[[Callable[[Any], None], threading.Event], T], name: str = "audio-call"
    ) -> None:
        self._work = work
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.stopped = threading.Event()
        self._result: T | None = None
        self._finished = False
        self._name = name

    def _main(self, threads: int | None) -> None:
        try:
            if threads is not None:
                sys.modules["torch"].set_num_threads(threads)
            self._result = self._work(self._queue.put, self.stopped)
        except BaseException as exc:  # handed to the consumer, who decides
            self._queue.put(_Failure(exc))
        else:
            self._queue.put(_DONE)

    def __iter__(self) -> Iterator[Any]:
        torch = sys.modules.get("torch")  # imported by whoever called: nothing to set otherwise
        threads = torch.get_num_threads() if torch is not None else None
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
            self.stopped.set()
            thread.join()

    @property
    def result(self) -> T:
        if not self._finished:
            raise RuntimeError("the background call has not finished")
        return self._result  # type: ignore[return-value]


def run_cancellable(
    work: Callable[[Callable[[Any], None], threading.Event], T], ctx: RunContext, name: str
) -> Generator[Any, None, T]:
    """``result = yield from run_cancellable(work, ctx, name)``: the call's events, then its
    result; a call that fails because the job was cancelled ends as a cancel, not a failure."""
    call: BackgroundCall[T] = BackgroundCall(work, name)
    try:
        yield from call
    except Exception:
        ctx.check_cancelled()  # a call stopped by cancel may fail on its way out
        raise
    ctx.check_cancelled()
    return call.result
