"""Importing the model libraries without freezing the other threads.

The first import of torch, transformers or diffusers happens on a device worker, while the
window's event loop keeps running on the GUI thread. Python threads share one interpreter lock
(the GIL), and two things in those imports hold it for a long time in one go, so the window
stops answering meanwhile:

- **Loading torch's native libraries.** Python loads an extension module with ``dlopen`` while
  holding the GIL, and ``libtorch_cpu`` runs about 200 ms of static initialisers (operator
  registration) inside that call. :func:`preload_native_libraries` loads those libraries first
  through a ctypes call to ``dlopen`` itself, and ctypes releases the GIL around foreign calls.
  The later ``import torch`` finds them loaded and only takes a reference.
- **The cyclic garbage collector.** An import of this size allocates millions of objects, which
  trigger full collections, and each full collection walks the whole heap with the GIL held
  (40-120 ms each, several per import). :func:`gc_paused` switches the collector off for the
  import; :func:`import_model_libraries` then moves what the import created (modules, classes,
  functions: they live as long as the process) to the collector's permanent generation
  (:func:`gc.freeze`), so that later collections no longer walk them either.

Reference counting frees memory as usual throughout; only the search for reference cycles
waits. A cycle among objects that were alive at a freeze is not collected while they stay
frozen. Most are module-level and live as long as the process; a model in the cache at that
moment is not (models under accelerate's offload hooks have cycles), so the cache calls
:func:`thaw` when it drops an entry older than the last freeze: everything goes back to the
collector, and the next import freezes again.
"""

from __future__ import annotations

import gc
import importlib
import importlib.util
import logging
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

#: torch's own native libraries, in dependency order, by stem. Only libraries without Python
#: code in their initialisers: ``libtorch_python`` and the ``torch._C`` extension call into
#: Python when loaded, which needs the GIL, so the normal import loads those.
TORCH_NATIVE_LIBRARIES = (
    "libtorch_global_deps",
    "libc10",
    "libtorch_cpu",
    "libc10_cuda",
    "libtorch_cuda",
    "libtorch",
)

_gc_lock = threading.Lock()
_paused = 0
_was_enabled = False
_preload_lock = threading.Lock()
_preloaded: list[str] | None = None
_freezes = 0


@contextmanager
def gc_paused() -> Iterator[None]:
    """Switch the cyclic garbage collector off for the block (re-entrant, any thread).

    The switch is process-wide: blocks on several threads share it through a counter, and the
    collector comes back on when the last block ends, if it was on when the first one started.
    """
    global _paused, _was_enabled
    with _gc_lock:
        if _paused == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _paused += 1
    try:
        yield
    finally:
        with _gc_lock:
            _paused -= 1
            if _paused == 0 and _was_enabled:
                gc.enable()


def preload_native_libraries() -> list[str]:
    """Load torch's native libraries without holding the GIL; the names of those loaded.

    Runs once per process (later calls return the first call's answer). Does nothing where
    torch is not installed or already imported, and on Windows, where torch loads its DLLs
    through ctypes itself (which already releases the GIL). A library that does not load is
    skipped: the normal import then loads it, or reports the real error.
    """
    global _preloaded
    with _preload_lock:
        if _preloaded is not None:
            return list(_preloaded)
        _preloaded = _load_torch_libraries()
        return list(_preloaded)


def _load_torch_libraries() -> list[str]:
    if sys.platform == "win32" or "torch" in sys.modules:
        return []
    try:
        spec = importlib.util.find_spec("torch")
    except (ImportError, ValueError):
        return []
    if spec is None or spec.origin is None:
        return []
    folder = Path(spec.origin).parent / "lib"
    suffix = ".dylib" if sys.platform == "darwin" else ".so"
    dlopen = _dlopen()
    if dlopen is None:
        return []
    loaded = []
    for stem in TORCH_NATIVE_LIBRARIES:
        path = folder / f"{stem}{suffix}"
        if not path.is_file():
            continue  # a build without it (CUDA libraries on a CPU build)
        # as Python loads extensions (local symbols), except the global deps, which torch
        # itself loads globally so that the CUDA libraries find their symbols
        flags = os.RTLD_NOW | (os.RTLD_GLOBAL if stem == "libtorch_global_deps" else 0)
        if dlopen(os.fsencode(path), flags):
            loaded.append(stem)
        else:
            log.debug("%s not preloaded; the import will load it", path.name)
    return loaded


def _dlopen():  # type: ignore[no-untyped-def]  # a ctypes function pointer
    """The C library's ``dlopen``, called through ctypes (which releases the GIL)."""
    import ctypes

    try:
        function = ctypes.CDLL(None).dlopen
    except (OSError, AttributeError):
        return None
    function.restype = ctypes.c_void_p
    function.argtypes = [ctypes.c_char_p, ctypes.c_int]
    return function


def import_model_libraries(*names: str) -> list[str]:
    """Import modules the way a device worker should: without stalling the GUI thread.

    Loads torch's native libraries first (:func:`preload_native_libraries`), imports each named
    module that is not imported yet with the garbage collector paused, then freezes what the
    imports created (see the module docs). Returns the names it imported; errors propagate
    as from ``import``.
    """
    missing = [name for name in names if name not in sys.modules]
    if not missing:
        return []
    preload_native_libraries()
    imported = []
    with gc_paused():
        try:
            for name in missing:
                importlib.import_module(name)
                imported.append(name)
        finally:
            if imported:
                # before the collector is back on: the freeze also resets its allocation
                # count, which would otherwise start a full collection at once
                _freeze()
    return imported


def _freeze() -> None:
    global _freezes
    with _gc_lock:
        gc.freeze()
        _freezes += 1


def freezes() -> int:
    """How many freezes have happened: an object made before a freeze may be frozen."""
    return _freezes


def thaw() -> None:
    """Give every frozen object back to the collector (:func:`gc.unfreeze`).

    For when something that was alive at a freeze is let go and may hold reference cycles:
    they are then found by the next full collection. Costs that collection a walk over the
    whole heap once; the next :func:`import_model_libraries` freezes again.
    """
    with _gc_lock:
        gc.unfreeze()
