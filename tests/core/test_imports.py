"""Importing model libraries off the GUI thread: GC paused and frozen, torch's libraries preloaded.

The effect (the window's event loop keeps ticking) is measured in benchmarks/bench_gui.py; these
tests pin the mechanics that produce it.
"""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from studio import GenerationRequest, Generator, Result, TextOutput, hookimpl
from studio.core.events import JobState, Progress
from studio.core.imports import gc_paused, import_model_libraries
from studio.core.plugins import PluginHost
from studio.testing.fakes import EventRecorder

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def module_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder on ``sys.path`` for throw-away modules; they are forgotten after the test."""
    folder = tmp_path / "modules"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    before = set(sys.modules)
    yield folder
    for name in set(sys.modules) - before:
        if name.startswith("studio_probe"):
            del sys.modules[name]


def write_probe(folder: Path, name: str, body: str = "") -> None:
    """A module that records, while it is imported, whether the collector ran and which thread."""
    source = textwrap.dedent(
        """
        import gc, threading
        GC_ENABLED = gc.isenabled()
        THREAD = threading.current_thread().name
        # objects that live as long as the module, as a library's classes and tables do
        TABLE = [[i] for i in range(1000)]
        """
    )
    (folder / f"{name}.py").write_text(source + textwrap.dedent(body), encoding="utf-8")


# --- gc_paused ---------------------------------------------------------------------------------


def test_gc_paused_switches_the_collector_off_and_back() -> None:
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
        with gc_paused():  # nested
            assert not gc.isenabled()
        assert not gc.isenabled()  # still inside the outer block
    assert gc.isenabled()


def test_gc_paused_leaves_a_collector_that_was_off_off() -> None:
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_gc_paused_blocks_on_two_threads_share_the_switch() -> None:
    inside, release = threading.Event(), threading.Event()

    def other() -> None:
        with gc_paused():
            inside.set()
            release.wait(10)

    thread = threading.Thread(target=other)
    thread.start()
    try:
        assert inside.wait(10)
        with gc_paused():
            pass
        # this thread's block ended first: the other one still needs the collector off
        assert not gc.isenabled()
    finally:
        release.set()
        thread.join(10)
    assert gc.isenabled()


def test_gc_paused_switches_back_on_after_an_error() -> None:
    with pytest.raises(RuntimeError), gc_paused():
        raise RuntimeError("boom")
    assert gc.isenabled()


# --- import_model_libraries --------------------------------------------------------------------


def test_imports_with_the_collector_paused_then_freezes_what_it_made(module_dir: Path) -> None:
    write_probe(module_dir, "studio_probe_a")
    frozen = gc.get_freeze_count()

    assert import_model_libraries("studio_probe_a") == ["studio_probe_a"]

    module = sys.modules["studio_probe_a"]
    assert module.GC_ENABLED is False
    assert threading.current_thread().name == module.THREAD  # on the caller's thread
    assert gc.isenabled()
    # the module's objects are in the permanent generation: no collection walks them again
    assert gc.get_freeze_count() >= frozen + len(module.TABLE)
    assert gc.is_tracked(module.TABLE[0]) and not any(
        module.TABLE[0] is obj for obj in gc.get_objects(generation=2)
    )


def test_modules_already_imported_are_not_imported_again(module_dir: Path) -> None:
    write_probe(module_dir, "studio_probe_b")
    import_model_libraries("studio_probe_b")
    frozen = gc.get_freeze_count()
    assert import_model_libraries("studio_probe_b", "json") == []
    assert gc.get_freeze_count() == frozen  # nothing imported: nothing frozen


def test_an_import_error_propagates_and_the_collector_comes_back(module_dir: Path) -> None:
    write_probe(module_dir, "studio_probe_ok")
    (module_dir / "studio_probe_broken.py").write_text("import no_such_module_here\n")
    with pytest.raises(ModuleNotFoundError, match="no_such_module_here"):
        import_model_libraries("studio_probe_ok", "studio_probe_broken")
    assert gc.isenabled()
    assert "studio_probe_ok" in sys.modules  # what did import stays imported


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/maps")
def test_torch_native_libraries_load_before_torch_and_without_its_python_part() -> None:
    """In a fresh process: libtorch_cpu is mapped, torch is not imported, libtorch_python is not
    loaded (its initialisers need the GIL), and ``import torch`` then works on top."""
    code = textwrap.dedent(
        """
        import json, sys
        from studio.core.imports import preload_native_libraries
        loaded = preload_native_libraries()
        maps = open("/proc/self/maps").read()
        state = {
            "loaded": loaded,
            "again": preload_native_libraries(),
            "torch_imported": "torch" in sys.modules,
            "cpu_mapped": "libtorch_cpu" in maps,
            "python_mapped": "libtorch_python" in maps,
        }
        import torch
        state["works"] = float(torch.ones(2).sum())
        print(json.dumps(state))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    import json

    state = json.loads(out.stdout.strip().splitlines()[-1])
    assert "libtorch_cpu" in state["loaded"] and state["again"] == state["loaded"]
    assert state["cpu_mapped"] and not state["torch_imported"] and not state["python_mapped"]
    assert state["works"] == 2.0


# --- the worker imports what a generator declares ---------------------------------------------


class _Declares(Generator):
    id = "imports.declares"
    name = "Declares its imports"
    modality = "text"
    task = "text-generation"
    default_model = "fake/tiny-model"
    imports = ("studio_probe_lib",)

    def run(self, request: Any, ctx: Any) -> Iterator[Any]:
        probe = sys.modules.get("studio_probe_lib")  # imported before run, by the worker
        yield Result(TextOutput(f"{probe is not None} {getattr(probe, 'THREAD', '')}", seed=1))


class _DeclaresPlugin:
    studio_api = ">=1.0,<2"

    @hookimpl
    def register_generators(self, register: Any) -> None:
        register(_Declares)


def test_the_worker_imports_a_generators_declared_modules_before_run(
    module_dir: Path, studio_app: Any, register_plugin: Any
) -> None:
    write_probe(module_dir, "studio_probe_lib")
    register_plugin(_DeclaresPlugin(), name="declares")
    recorder = EventRecorder()
    studio_app.subscribe(recorder)

    job_id = studio_app.submit(GenerationRequest(generator="imports.declares", prompt="x", seed=1))
    record = studio_app.wait(job_id, timeout=30)

    assert record.state == JobState.SUCCEEDED, record.error
    text = Path(studio_app.artifacts(job_id=job_id)[0].path).read_text(encoding="utf-8")
    assert text.startswith("True studio-worker")  # imported on the worker's thread
    assert sys.modules["studio_probe_lib"].GC_ENABLED is False
    messages = [e.message for e in recorder.of(job_id) if isinstance(e, Progress)]
    assert "importing studio_probe_lib" in messages  # what the job is doing meanwhile


def test_a_declared_module_that_is_missing_fails_the_job_with_its_name(
    module_dir: Path, studio_app: Any, register_plugin: Any
) -> None:
    register_plugin(_DeclaresPlugin(), name="declares")
    job_id = studio_app.submit(GenerationRequest(generator="imports.declares", prompt="x", seed=1))
    record = studio_app.wait(job_id, timeout=30)
    assert record.state == JobState.FAILED
    assert "studio_probe_lib" in (record.error or "")


@pytest.mark.parametrize("imports", ["diffusers", ("diffusers", 3), ("",)])
def test_imports_must_be_a_tuple_of_module_names(imports: Any) -> None:
    bad = type("Bad", (_Declares,), {"id": "imports.bad", "imports": imports})

    class Plugin:
        studio_api = ">=1.0,<2"

        @hookimpl
        def register_generators(self, register: Any) -> None:
            register(bad)

    host = PluginHost()
    info = host.register(Plugin())
    assert info.error is not None and "imports must be a tuple of module names" in info.error
    assert "imports.bad" not in host.generators


def test_the_built_in_generators_declare_modules_that_exist() -> None:
    """A library release that moves a module fails here, not as a slower first job."""
    import importlib.util

    host = PluginHost()
    host.load_entry_points()
    declared = {name for cls in host.generators.values() for name in cls.imports}
    assert declared, "the built-in generators declare their heavy imports"
    for name in sorted(declared):
        assert importlib.util.find_spec(name) is not None, name


# --- frozen models are given back when the cache lets them go ----------------------------------


class _Cyclic:
    """A cached "model" with a reference cycle, as accelerate's offload hooks leave on modules."""

    def __init__(self) -> None:
        self.me = self
        self.weights = bytearray(1024)


def _cyclic_cached(cache: Any, name: str) -> Any:
    import weakref

    from studio.core.cache import CacheKey

    key = CacheKey(name, None, "test", "float32", "cpu")
    with cache.acquire(key, _Cyclic, size_bytes=1024) as model:
        return key, weakref.ref(model)


def test_a_model_frozen_after_it_loaded_is_collected_once_the_cache_drops_it(
    module_dir: Path,
) -> None:
    from studio.core.cache import ModelCache

    cache = ModelCache()
    _, alive = _cyclic_cached(cache, "frozen-later")
    write_probe(module_dir, "studio_probe_after")
    import_model_libraries("studio_probe_after")  # freezes the cached model too
    assert gc.get_freeze_count() > 0

    cache.free()
    gc.collect()
    assert alive() is None  # thawed when dropped: the cycle was found
    assert gc.get_freeze_count() == 0


def test_a_model_loaded_after_the_last_freeze_leaves_the_freeze_alone(module_dir: Path) -> None:
    from studio.core.cache import ModelCache

    write_probe(module_dir, "studio_probe_before")
    import_model_libraries("studio_probe_before")
    frozen = gc.get_freeze_count()
    cache = ModelCache()
    _, alive = _cyclic_cached(cache, "loaded-later")
    cache.free()
    gc.collect()
    assert alive() is None and gc.get_freeze_count() == frozen
