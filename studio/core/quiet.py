"""Quiet model loading: the model libraries' own bars and advice kept off the studio's terminal.

transformers, diffusers and huggingface_hub print progress bars while they load ("Loading
weights", "Loading pipeline components...") and log advice ("some weights were not used...").
On the command line these land on stderr, break the studio's own progress line and mean nothing
to an artist. Plugins therefore load inside :func:`quiet_model_loading`::

    from studio.core.quiet import quiet_model_loading

    def load(folder):
        from transformers import AutoModelForCausalLM

        with quiet_model_loading("transformers"):
            return AutoModelForCausalLM.from_pretrained(folder)

Inside the block:

- the progress bars of huggingface_hub, transformers and diffusers are off;
- the loggers ``huggingface_hub``, ``transformers``, ``diffusers``, ``peft`` and ``accelerate``
  pass errors only: a library error still reaches the log, and still raises;
- ``FutureWarning`` / ``DeprecationWarning`` raised from inside those libraries (their own
  internals, nothing a plugin can act on) are ignored; one that points at the plugin's own call
  still shows.

Everything is put back as it was when the block ends. The switches are process-wide, so blocks
share them: a lock and a nesting counter switch them off when the first block starts and back on
when the last one ends, whichever thread it runs on. Two device workers loading at the same time
never restore each other's state in the middle of a load (output of other threads is quieted
meanwhile too: it is the same switch).

Setting ``HF_HUB_DISABLE_PROGRESS_BARS=0`` keeps the libraries' bars (the person asked for them);
the loggers are still quieted.

A few warnings the libraries log outside any load, about their own defaults, are dropped for good
once a block has quieted the library (:data:`KNOWN_ADVICE`: transformers' ``loss_type=None`` at a
model's first loss); every other record of those loggers passes.

Nothing here imports a library at import time; inside, only the installed ones are touched (see
:func:`quiet_model_loading` for which are imported).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, cast

from studio.core.imports import import_model_libraries

log = logging.getLogger(__name__)

#: Libraries whose switches the block turns, in the order they are switched off.
LIBRARIES = ("huggingface_hub", "transformers", "diffusers", "peft", "accelerate")
#: Libraries that set their bars and loggers up when imported: importing one inside the block
#: would switch it back on, so a block that names them imports them first.
_SET_UP_ON_IMPORT = {
    "huggingface_hub": "huggingface_hub.utils.logging",
    "transformers": "transformers.utils.logging",
    "diffusers": "diffusers.utils.logging",
}
#: Libraries whose models load through another one: naming the first quiets the second too
#: (diffusers pipelines take their text encoders from transformers).
_LOADS_THROUGH = {"diffusers": ("transformers",)}
#: Warnings attributed to these modules are the libraries talking about themselves.
_LIBRARY_MODULES = r"(huggingface_hub|transformers|diffusers|peft|accelerate)(\.|$)"

#: Warnings a library logs about its own choices, outside a load and nothing anyone can act
#: on: ``{logger name: message beginnings}``. transformers says ``loss_type=None ... is
#: unrecognized`` at the first loss of a model whose class it does not map to a loss (GPT-2 and
#: others), then uses the causal-LM loss, the right one; a training would print it on stderr.
KNOWN_ADVICE: dict[str, tuple[str, ...]] = {
    "transformers.modeling_utils": ("`loss_type=None` was set in the config but it is unrecogni",),
}

_lock = threading.Lock()
_depth = 0
#: Libraries switched off in the current run of blocks, and how to switch each back (in order).
_quieted: set[str] = set()
_undo: list[Callable[[], None]] = []


@contextmanager
def quiet_model_loading(*libraries: str) -> Iterator[None]:
    """Load models inside this block to keep the libraries' bars and advice off the terminal.

    ``libraries`` names the model libraries the block's code uses (any of :data:`LIBRARIES`;
    default: all of them). Each named one that is installed is imported first, so that it is
    switched off even when the block's code imports it for the first time; a library not
    installed is skipped. Libraries that are not named but already imported are switched off as
    well. Name what you use to avoid importing a large library for nothing (diffusers takes over
    a second to import): a transformers-only plugin writes ``quiet_model_loading("transformers")``.
    Naming diffusers quiets transformers as well, since diffusers pipelines load through it.

    Errors are untouched: exceptions propagate and error-level log records are still emitted.
    Re-entrant and thread-safe (see the module docs); switching is best effort and never makes
    a load fail.
    """
    unknown = [name for name in libraries if name not in LIBRARIES]
    if unknown:
        raise ValueError(
            f"quiet_model_loading: unknown librar{'ies' if len(unknown) > 1 else 'y'} "
            f"{', '.join(map(repr, unknown))}; allowed: {', '.join(LIBRARIES)}"
        )
    named = libraries or LIBRARIES
    named += tuple(other for name in named for other in _LOADS_THROUGH.get(name, ()))
    # huggingface_hub always: the others load through it (its state is saved before theirs)
    _import_set_up(tuple(dict.fromkeys(("huggingface_hub", *named))))
    _enter()
    try:
        yield
    finally:
        _leave()


def is_quiet() -> bool:
    """Whether a :func:`quiet_model_loading` block is open (on any thread)."""
    with _lock:
        return _depth > 0


def _import_set_up(libraries: tuple[str, ...]) -> None:
    """Import the named libraries' logging modules (outside the lock: imports can take a while)."""
    for name in libraries:
        module = _SET_UP_ON_IMPORT.get(name)
        if module is None or module in sys.modules:
            continue
        try:
            if importlib.util.find_spec(name) is None:
                continue
            import_model_libraries(module)
        except Exception as exc:  # a broken install must not stop the load that follows
            log.debug("quiet_model_loading: %s not switched off (%s)", name, exc)


def _enter() -> None:
    global _depth
    with _lock:
        for name in LIBRARIES:
            if name in _quieted:
                continue
            module = _SET_UP_ON_IMPORT.get(name)
            if module is not None and module not in sys.modules:
                continue  # not imported: nothing of it can print yet
            try:
                _switch_off(name, sys.modules.get(module) if module else None)
            except Exception as exc:  # another version of the library: leave it as it is
                log.debug("quiet_model_loading: %s not switched off (%s)", name, exc)
            _quieted.add(name)
        if _depth == 0:
            _silence_library_warnings()
        _depth += 1


def _leave() -> None:
    global _depth
    with _lock:
        _depth -= 1
        if _depth > 0:
            return
        while _undo:
            action = _undo.pop()
            try:
                action()
            except Exception as exc:
                log.debug("quiet_model_loading: a switch was not put back (%s)", exc)
        _quieted.clear()


class _KnownAdvice(logging.Filter):
    """Drops the warning-level records of one logger that begin with a known text."""

    def __init__(self, beginnings: tuple[str, ...]) -> None:
        super().__init__()
        self.beginnings = beginnings

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.WARNING:
            return True  # errors always pass
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is not ours to judge
            return True
        return not message.startswith(self.beginnings)


def drop_known_advice(library: str) -> None:
    """Drop :data:`KNOWN_ADVICE` of ``library`` (and its modules) from now on; idempotent."""
    for name, beginnings in KNOWN_ADVICE.items():
        if name != library and not name.startswith(library + "."):
            continue
        logger = logging.getLogger(name)
        if not any(isinstance(f, _KnownAdvice) for f in logger.filters):
            logger.addFilter(_KnownAdvice(beginnings))


def _switch_off(name: str, logging_module: Any) -> None:
    """Turn off one library's bars and non-error logs, recording how to turn them back on."""
    drop_known_advice(name)
    if logging_module is not None and _bars_allowed(name):
        if name == "huggingface_hub":
            _switch_off_hub_bars()
        elif logging_module.is_progress_bar_enabled():
            logging_module.disable_progress_bar()
            _undo.append(logging_module.enable_progress_bar)
    if logging_module is not None and hasattr(logging_module, "get_verbosity"):
        logging_module.get_verbosity()  # sets the library's logger up now, not inside the block
    logger = logging.getLogger(name)
    saved = logger.level
    if saved < logging.ERROR:  # NOTSET included; a stricter level stays
        logger.setLevel(logging.ERROR)

        def restore() -> None:
            if logger.level == logging.ERROR:  # unless someone changed it meanwhile
                logger.setLevel(saved)

        _undo.append(restore)


def _hub_env_bars() -> bool | None:
    """``HF_HUB_DISABLE_PROGRESS_BARS`` as huggingface_hub read it (None: not set)."""
    constants = sys.modules.get("huggingface_hub.constants")
    value = getattr(constants, "HF_HUB_DISABLE_PROGRESS_BARS", None)
    return value if isinstance(value, bool) else None


def _bars_allowed(name: str) -> bool:
    """Whether the block may turn this library's bars off (the environment variable wins)."""
    env = _hub_env_bars()
    if env is False:
        return False  # the person asked for the bars
    # when it is true, huggingface_hub's (and so transformers') bars are off already, and
    # switching them would only warn; diffusers does not read the variable
    return not (env is True and name in ("huggingface_hub", "transformers"))


def _switch_off_hub_bars() -> None:
    from huggingface_hub import utils as hub_utils

    tqdm_module = sys.modules.get("huggingface_hub.utils.tqdm")
    states = getattr(tqdm_module, "progress_bar_states", None)
    if isinstance(states, dict):
        # per-group settings included, restored exactly (transformers' switch resets them)
        saved = dict(states)

        def restore() -> None:
            states.clear()
            states.update(saved)

    else:
        was_disabled = hub_utils.are_progress_bars_disabled()

        def restore() -> None:
            if not was_disabled:
                hub_utils.enable_progress_bars()

    hub_utils.disable_progress_bars()
    _undo.append(restore)


def _silence_library_warnings() -> None:
    """Ignore the libraries' warnings about their own internals until the last block ends."""
    for category in (FutureWarning, DeprecationWarning):
        before = list(warnings.filters)
        warnings.filterwarnings("ignore", category=category, module=_LIBRARY_MODULES)
        entry = warnings.filters[0]
        if entry in before:
            continue  # someone set the same filter: it stays

        def remove(entry: Any = entry) -> None:
            try:
                cast("list[Any]", warnings.filters).remove(entry)  # typeshed: a Sequence
            except ValueError:
                pass  # already gone with a catch_warnings block that ended

        _undo.append(remove)
