"""The shared model cache: one copy of each loaded model, within memory budgets.

Every plugin gets its models through :meth:`ModelCache.acquire` (via ``ctx.use_model``). Entries
are keyed by what was loaded (:class:`CacheKey`: reference, revision, kind, dtype, device), so two
generators asking for the same weights share one object.

Memory is accounted per entry (:func:`measure_bytes`). Each accelerator has a *device budget* and
the system memory a *host budget*; CPU entries live in host memory, so they count against the host
budget and are never "offloaded". When a budget is exceeded the least recently used entry that is
not in use goes first: an accelerator entry is offloaded to host memory (``.to("cpu")``) when the
host budget allows, and dropped otherwise. An offloaded entry moves back to its device on its next
hit. Entries in use (inside ``acquire``) are pinned: never moved, never dropped.

A model placed by accelerate hooks (a diffusers pipeline after ``enable_model_cpu_offload()`` or
``enable_sequential_cpu_offload()``, a model dispatched over several devices) places itself: its
weights live in host memory and go to the device one model or layer at a time while it runs. The
cache counts such an entry in host memory (against the host budget) and never moves it: no
``.to()``, which diffusers refuses or which would undo the offload (see :func:`placed_by_hooks`).

This module is the policy; measuring, moving and recognising hooks are the mechanics of
:mod:`studio.core.placement`.

Thread-safe: one re-entrant lock guards the bookkeeping and the moves; loaders run outside it, and
two threads asking for the same missing key load it once (the second waits for the first).
Keep no reference to a model beyond the ``acquire`` block: the cache may move or drop it then.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from studio.core import imports
from studio.core.devices import empty_device_caches, is_host, is_out_of_memory
from studio.core.placement import can_move, measure_bytes, move_to, placed_by_hooks

log = logging.getLogger(__name__)

T = TypeVar("T")
HOST = "cpu"

#: ``mover(obj, device) -> obj``: put a cached object on a device (default :func:`move_to`).
Mover = Callable[[Any, str], Any]


@dataclass(frozen=True)
class CacheKey:
    """What was loaded: two requests with equal keys share one cached object."""

    ref: str  #: ``ResolvedModel.cache_ref``: hub repo id or absolute local path
    revision: str | None  #: hub commit hash (``None`` for local models)
    kind: str  #: what was built from the weights, e.g. ``"diffusers-pipeline"``, ``"causal-lm"``
    dtype: str  #: e.g. ``"float16"``
    device: str  #: where it runs, e.g. ``"cuda:0"`` or ``"cpu"``


@dataclass(frozen=True)
class EntryStats:
    """One cached entry, as :meth:`ModelCache.stats` reports it."""

    key: CacheKey
    bytes: int
    location: str  #: where it is now: ``key.device``, or ``"cpu"`` when offloaded
    pins: int  #: how many ``acquire`` blocks use it now
    hits: int
    last_used: float  #: ``time.monotonic()`` of its last use
    #: placed by accelerate hooks (CPU offload): in host memory, never moved by the cache
    hooked: bool = False

    @property
    def offloaded(self) -> bool:
        """In host memory instead of on its device: moved there by the cache, or kept there by
        CPU offload hooks (``hooked``)."""
        return self.location != _location(self.key.device)

    def to_json(self) -> dict[str, Any]:
        return {
            "ref": self.key.ref,
            "revision": self.key.revision,
            "kind": self.key.kind,
            "dtype": self.key.dtype,
            "device": self.key.device,
            "bytes": self.bytes,
            "location": self.location,
            "pins": self.pins,
            "hits": self.hits,
            "hooked": self.hooked,
        }


@dataclass(frozen=True)
class CacheStats:
    """Counters since the cache was made, and what it holds now (entries least recent first)."""

    hits: int
    misses: int
    evictions: int  #: entries dropped (budget, failed move, :meth:`ModelCache.free`)
    offloads: int  #: entries moved from a device to host memory
    restores: int  #: offloaded entries moved back to their device on a hit
    device_bytes: int  #: bytes on accelerators (all of them)
    host_bytes: int  #: bytes in host memory (CPU entries and offloaded ones)
    entries: tuple[EntryStats, ...]

    def bytes_on(self, device: str) -> int:
        """Bytes now located on ``device``."""
        loc = _location(device)
        return sum(e.bytes for e in self.entries if e.location == loc)

    def to_json(self) -> dict[str, Any]:
        return {
            "hits": self.hits,
            "misses": self.misses,
            "evictions": self.evictions,
            "offloads": self.offloads,
            "restores": self.restores,
            "device_bytes": self.device_bytes,
            "host_bytes": self.host_bytes,
            "entries": [e.to_json() for e in self.entries],
        }


@dataclass(eq=False)
class _Entry:
    key: CacheKey
    value: Any
    size: int
    location: str
    pins: int = 0
    hits: int = 0
    last_used: float = 0.0
    hooked: bool = False  # placed by accelerate hooks: lives in host memory, never moved
    #: ``imports.freezes()`` when it was loaded: a later freeze may have frozen its objects
    freezes: int = dataclasses.field(default_factory=imports.freezes)


class _Pending:
    """A load in progress: other threads asking for the same key wait on it."""

    def __init__(self) -> None:
        self.owner = threading.get_ident()
        self.done = threading.Event()


class ModelCache:
    """A memory-budgeted, thread-safe LRU cache of loaded models (see the module docs).

    :param device_budget: bytes each accelerator may hold (``None``: no limit).
    :param host_budget: bytes of host memory for CPU entries and offloaded ones (``None``: no
        limit).
    :param mover: moves an object to a device (tests inject one; default :func:`move_to`).
    :param measure: an object's bytes when ``size_bytes`` is not given (default
        :func:`measure_bytes`).
    """

    def __init__(
        self,
        *,
        device_budget: float | None = None,
        host_budget: float | None = None,
        mover: Mover | None = None,
        measure: Callable[[Any], int] | None = None,
    ) -> None:
        self._lock = threading.RLock()
        self._entries: OrderedDict[CacheKey, _Entry] = OrderedDict()  # least recent first
        self._pending: dict[CacheKey, _Pending] = {}
        self._mover = mover or move_to
        self._measure = measure or measure_bytes
        self.device_budget: int | None = None
        self.host_budget: int | None = None
        self._hits = self._misses = self._evictions = self._offloads = self._restores = 0
        self._warned: set[str] = set()
        self.set_budgets(device_budget, host_budget)

    # -- the one way to get a model ------------------------------------------------------------
    @contextmanager
    def acquire(
        self, key: CacheKey, loader: Callable[[], T], *, size_bytes: int | None = None
    ) -> Iterator[T]:
        """Yield the object for ``key``, pinned for the duration of the block.

        On a hit the cached object is returned (moved back to ``key.device`` first if it was
        offloaded). On a miss ``loader()`` builds it, already on ``key.device``; ``size_bytes``
        (if known) makes room before loading, otherwise the loaded object is measured. If the
        loader runs out of memory while other entries occupy the device, they are offloaded or
        dropped and the loader runs once more.
        """
        entry = self._checkout(key, loader, size_bytes)
        try:
            yield entry.value
        finally:
            self._release(entry)

    def _checkout(self, key: CacheKey, loader: Callable[[], Any], size: int | None) -> _Entry:
        while True:
            with self._lock:
                entry = self._entries.get(key)
                if entry is not None and self._pin_hit(entry):
                    return entry
                pending = self._pending.get(key)
                if pending is None:
                    pending = self._pending[key] = _Pending()
                    self._misses += 1
                    break
                if pending.owner == threading.get_ident():
                    raise RuntimeError(f"the loader of {key} asked the cache for {key} again")
            pending.done.wait()  # another thread loads it: then it is a hit (or we retry)
        try:
            return self._load(key, loader, size)
        finally:
            with self._lock:
                self._pending.pop(key, None)
            pending.done.set()

    def _pin_hit(self, entry: _Entry) -> bool:
        """Pin a cached entry and bring it back to its device; False if it had to be dropped."""
        entry.pins += 1
        target = _home(entry)
        if entry.location != target and self._sync_hooks(entry):
            target = HOST  # hooked since it was stored: it stays in host memory, unmoved
        if entry.location != target:
            try:
                self._make_room(target, entry.size)
                entry.value = self._mover(entry.value, entry.key.device)
            except Exception as exc:  # a half-moved model is unusable: drop it and reload
                log.warning(
                    "cache: could not move %s back to %s (%s); reloading", entry.key, target, exc
                )
                entry.pins -= 1
                self._drop(entry)
                return False
            entry.location = target
            self._restores += 1
        self._hits += 1
        entry.hits += 1
        self._touch(entry)
        return True

    def _load(self, key: CacheKey, loader: Callable[[], Any], size: int | None) -> _Entry:
        location = _location(key.device)
        if size is not None:
            with self._lock:
                self._make_room(location, size)
        retry = False
        try:
            value = loader()
        except Exception as exc:
            if not (is_out_of_memory(exc) and self._unpinned_bytes(location)):
                raise
            log.warning("cache: out of memory loading %s; freeing %s and retrying", key, location)
            retry = True
        if retry:  # outside the except block: the failed attempt's frames and tensors are gone
            if is_host(location):
                self.free(location)
            else:
                self.offload(location)
                gc.collect()
                empty_device_caches()
            value = loader()
        measured = int(size) if size is not None else int(self._measure(value))
        hooked = placed_by_hooks(value)
        if hooked:
            location = HOST  # CPU offload: the weights stay in host memory between uses
        with self._lock:
            entry = _Entry(key, value, max(0, measured), location, pins=1, hits=0, hooked=hooked)
            self._entries[key] = entry
            self._touch(entry)
            self._make_room(location, 0)
        return entry

    def _release(self, entry: _Entry) -> None:
        with self._lock:
            entry.pins -= 1
            if self._entries.get(entry.key) is entry:
                self._sync_hooks(entry)  # the block may have turned CPU offload on (or off)
                self._touch(entry)
            self._enforce_all()

    # -- maintenance ---------------------------------------------------------------------------
    def free(self, device: str | None = None) -> int:
        """Drop every unpinned entry located on ``device`` (all devices if ``None``).

        Meant for after an out-of-memory error; also returns cached allocator memory to the
        system (``torch.cuda.empty_cache``). Returns the bytes dropped. Entries placed by CPU
        offload hooks for ``device`` go too, although counted in host memory: an error in the
        middle of a run leaves the model the hooks had moved there on the device.
        """
        loc = None if device is None else _location(device)
        with self._lock:
            victims = [
                e
                for e in self._entries.values()
                if e.pins == 0
                and (
                    loc is None
                    or e.location == loc
                    or (e.hooked and not is_host(loc) and _location(e.key.device) == loc)
                )
            ]
            for entry in victims:
                self._drop(entry)
        gc.collect()
        empty_device_caches()
        return sum(e.size for e in victims)

    def offload(self, device: str) -> int:
        """Move unpinned entries of an accelerator to host memory (least recent first).

        An entry the host budget cannot take is dropped instead. Returns the bytes that left the
        device; 0 for the CPU (its entries already live in host memory).
        """
        loc = _location(device)
        if is_host(loc):
            return 0
        with self._lock:
            victims = [e for e in self._entries.values() if e.location == loc and e.pins == 0]
            for entry in victims:
                self._offload_or_drop(entry)
        return sum(e.size for e in victims)

    def fits(self, size_bytes: int, device: str) -> bool:
        """Whether ``size_bytes`` more could be placed on ``device`` once everything unpinned
        there has made way (always true without a budget)."""
        loc = _location(device)
        budget = self._budget(loc)
        if budget is None:
            return True
        with self._lock:
            return size_bytes <= budget - self._pinned_bytes(loc)

    def set_budgets(self, device_budget: float | None, host_budget: float | None) -> None:
        """Change the budgets (bytes; ``None``: no limit) and apply them now."""
        budgets = {"device_budget": device_budget, "host_budget": host_budget}
        for name, value in budgets.items():
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0
            ):
                raise ValueError(f"{name} must be a number of bytes >= 0 or None, got {value!r}")
        with self._lock:
            self.device_budget = None if device_budget is None else int(device_budget)
            self.host_budget = None if host_budget is None else int(host_budget)
            self._warned.clear()
            self._enforce_all()

    def stats(self) -> CacheStats:
        """Counters and entries (least recently used first)."""
        with self._lock:
            entries = tuple(
                EntryStats(e.key, e.size, e.location, e.pins, e.hits, e.last_used, e.hooked)
                for e in self._entries.values()
            )
            return CacheStats(
                hits=self._hits,
                misses=self._misses,
                evictions=self._evictions,
                offloads=self._offloads,
                restores=self._restores,
                device_bytes=sum(e.bytes for e in entries if not is_host(e.location)),
                host_bytes=sum(e.bytes for e in entries if is_host(e.location)),
                entries=entries,
            )

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._entries

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    # -- internals (call with the lock held) ---------------------------------------------------
    def _budget(self, loc: str) -> int | None:
        return self.host_budget if is_host(loc) else self.device_budget

    def _bytes(self, loc: str) -> int:
        return sum(e.size for e in self._entries.values() if e.location == loc)

    def _pinned_bytes(self, loc: str) -> int:
        return sum(e.size for e in self._entries.values() if e.location == loc and e.pins)

    def _unpinned_bytes(self, loc: str) -> int:
        with self._lock:
            return sum(e.size for e in self._entries.values() if e.location == loc and not e.pins)

    def _reclaimable(self, loc: str, *, older_than: _Entry) -> int:
        total = 0
        for entry in self._entries.values():
            if entry is older_than:
                break
            if entry.location == loc and entry.pins == 0:
                total += entry.size
        return total

    def _touch(self, entry: _Entry) -> None:
        entry.last_used = time.monotonic()
        self._entries.move_to_end(entry.key)

    def _sync_hooks(self, entry: _Entry) -> bool:
        """Note whether ``entry`` is placed by hooks now; True if it has just become so.

        A hooked entry is in host memory. One whose hooks were removed stays where it is counted
        (host memory) and goes back to its device on its next hit, like an offloaded entry.
        """
        hooked = placed_by_hooks(entry.value)
        became = hooked and not entry.hooked
        entry.hooked = hooked
        if became:
            log.debug("cache: %s is placed by CPU offload hooks; counted in host memory", entry.key)
            entry.location = HOST
        return became

    def _enforce_all(self) -> None:
        for loc in sorted({e.location for e in self._entries.values()}, key=is_host):
            self._make_room(loc, 0)  # accelerators first: their offloads land on the host

    def _make_room(self, loc: str, incoming: int, *, older_than: _Entry | None = None) -> bool:
        """Evict LRU unpinned entries at ``loc`` until ``incoming`` more bytes fit the budget.

        With ``older_than`` only entries used before that one may go. Returns whether it fits.
        """
        budget = self._budget(loc)
        if budget is None:
            return True
        while self._bytes(loc) + incoming > budget:
            victim = None
            for entry in self._entries.values():
                if entry is older_than:
                    break
                if entry.location == loc and entry.pins == 0:
                    victim = entry
                    break
            if victim is None:
                if older_than is None:
                    self._warn_over_budget(loc, budget, incoming)
                return False
            if is_host(loc):
                self._drop(victim)
            else:
                self._offload_or_drop(victim)
        self._warned.discard(loc)  # within budget again: warn anew next time it is exceeded
        return True

    def _offload_or_drop(self, entry: _Entry) -> None:
        if self._sync_hooks(entry):
            return  # hooked since it was stored: now counted in host memory, never moved
        budget = self.host_budget
        # Only host entries used before this one may make way for it (LRU across both memories);
        # check first so that nothing is evicted for an offload that cannot happen anyway.
        room = budget is None or (
            self._bytes(HOST) - self._reclaimable(HOST, older_than=entry) + entry.size <= budget
            and self._make_room(HOST, entry.size, older_than=entry)
        )
        if room and self._mover is move_to and entry.size and not can_move(entry.value):
            room = False  # its memory would stay on the device while counted on the host
        if room:
            try:
                entry.value = self._mover(entry.value, HOST)
            except Exception as exc:
                log.warning("cache: could not offload %s to host (%s); dropping it", entry.key, exc)
            else:
                entry.location = HOST
                self._offloads += 1
                return
        self._drop(entry)

    def _drop(self, entry: _Entry) -> None:
        if self._entries.get(entry.key) is entry:
            del self._entries[entry.key]
            self._evictions += 1
        entry.value = None
        if entry.freezes < imports.freezes():
            # frozen since it loaded: reference cycles in it (offload hooks make some) would
            # never be collected, and its memory never freed
            imports.thaw()

    def _warn_over_budget(self, loc: str, budget: int, incoming: int) -> None:
        if loc in self._warned:
            return
        self._warned.add(loc)
        log.warning(
            "cache: models in use on %s need %.1f MiB, over its budget of %.1f MiB; keeping them "
            "(they are pinned) and evicting as soon as they are released",
            loc,
            (self._bytes(loc) + incoming) / 2**20,
            budget / 2**20,
        )


def _location(device: str) -> str:
    return HOST if is_host(device) else device


def _home(entry: _Entry) -> str:
    """Where an entry belongs between uses: host memory when hooks place it, else its device."""
    return HOST if entry.hooked else _location(entry.key.device)
