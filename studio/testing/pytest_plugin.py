"""The studio's pytest plugin (``pytest11`` entry point ``studio``): fixtures for studio tests.

Installed with aigc-studio, so a third-party plugin's test suite gets the same fixtures:

``studio_home``
    a temporary studio home (``STUDIO_HOME``), with the Hugging Face cache (``HF_HOME``,
    ``HF_HUB_CACHE``) moved into the temporary folder and ``HF_HUB_OFFLINE=1``: nothing a test
    does can reach the network or touch the user's real home or model cache. Returns the path.
``hub_cache``
    the temporary hub cache folder of that environment (put tiny models there with
    :func:`studio.testing.hub.save_to_hub_cache` to test hub ids offline).
``fake_hub``
    a :class:`studio.testing.fake_hub.FakeHub` standing in for the Hugging Face hub: repos
    added to it "download" into ``hub_cache`` chunk by chunk, with progress, cancel and resume
    (the environment's offline switches are lifted for the test: the fake is the only network).
``studio_app``
    an opened :class:`studio.core.studio.Studio` on ``studio_home`` with the testing kit's fake
    plugin registered (built-in plugins are not loaded unless the test module sets
    ``studio_load_plugins = True`` or overrides the ``studio_load_plugins`` fixture); closed after.
``studio_env``
    the :class:`StudioEnv` behind the two above (``home``, ``hf_home``, ``hub_cache``).
``studio_load_plugins``
    ``False`` unless overridden: whether ``studio_app`` loads the installed plugins.
``register_plugin``
    ``register_plugin(plugin, host=None, name=None)`` registers a plugin module or object in a
    :class:`~studio.core.plugins.PluginHost` (default: ``studio_app``'s) for the test only.

This module imports nothing heavy at import time (no torch, no Qt, not even the studio facade):
pytest loads it in every test run of every project that has aigc-studio installed.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from studio.core.plugins import PluginHost, PluginInfo
    from studio.core.studio import Studio
    from studio.testing.fake_hub import FakeHub


@dataclass(frozen=True)
class StudioEnv:
    """The temporary folders a test runs in."""

    home: Path
    hf_home: Path
    hub_cache: Path


#: Environment variables that keep Hugging Face libraries off the network in tests.
_OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DISABLE_TELEMETRY": "1",
}


def _patch_loaded_hub_constants(monkeypatch: pytest.MonkeyPatch, env: StudioEnv) -> None:
    """huggingface_hub reads its cache/offline settings at import: patch them if already imported.

    Nothing is imported here: a module that is not loaded yet will read the environment itself.
    """
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        for name, value in (
            ("HF_HOME", str(env.hf_home)),
            ("HF_HUB_CACHE", str(env.hub_cache)),
            ("HUGGINGFACE_HUB_CACHE", str(env.hub_cache)),
            ("HF_HUB_OFFLINE", True),
        ):
            if hasattr(constants, name):
                monkeypatch.setattr(constants, name, value)
    for module_name in ("diffusers.utils.constants", "transformers.utils.hub"):
        module = sys.modules.get(module_name)
        if module is None:
            continue
        for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_CACHE"):
            if isinstance(getattr(module, name, None), str):
                monkeypatch.setattr(module, name, str(env.hub_cache))
        if hasattr(module, "HF_HUB_OFFLINE"):
            monkeypatch.setattr(module, "HF_HUB_OFFLINE", True)


@pytest.fixture
def studio_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StudioEnv:
    """Temporary studio home and Hugging Face cache, offline; see :class:`StudioEnv`."""
    env = StudioEnv(
        home=tmp_path / "studio-home",
        hf_home=tmp_path / "hf-home",
        hub_cache=tmp_path / "hf-home" / "hub",
    )
    env.hub_cache.mkdir(parents=True)
    monkeypatch.setenv("STUDIO_HOME", str(env.home))
    monkeypatch.setenv("HF_HOME", str(env.hf_home))
    monkeypatch.setenv("HF_HUB_CACHE", str(env.hub_cache))
    # the freedesktop trash lives here: deleting an artifact never reaches the user's own trash
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    # and a chosen studio home (studio.core.paths.choose_home) is remembered here
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    _patch_trash_location(monkeypatch, tmp_path / "xdg-data")
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_CACHE", raising=False)
    for name, value in _OFFLINE_ENV.items():
        monkeypatch.setenv(name, value)
    # Plugin-loading switches of the developer's shell must not change what a test sees.
    for name in ("STUDIO_LOAD_PLUGINS", "STUDIO_DISABLE_PLUGIN_AUTOLOAD", "STUDIO_STRICT_PLUGINS"):
        monkeypatch.delenv(name, raising=False)
    _patch_loaded_hub_constants(monkeypatch, env)
    return env


def _patch_trash_location(monkeypatch: pytest.MonkeyPatch, data_home: Path) -> None:
    """send2trash reads XDG_DATA_HOME once, at import: point its copy at the test's folder too."""
    import sys

    if sys.platform in ("darwin", "win32"):
        return
    try:
        from send2trash import plat_other
    except ImportError:
        return
    data_b = os.fsencode(data_home)
    monkeypatch.setattr(plat_other, "XDG_DATA_HOME", data_b)
    monkeypatch.setattr(plat_other, "HOMETRASH_B", os.path.join(data_b, b"Trash"))
    monkeypatch.setattr(plat_other, "HOMETRASH", str(data_home / "Trash"))


@pytest.fixture
def studio_home(studio_env: StudioEnv) -> Path:
    """A temporary, empty studio home (``STUDIO_HOME`` points at it); offline hub cache in tmp."""
    return studio_env.home


@pytest.fixture
def hub_cache(studio_env: StudioEnv) -> Path:
    """The temporary Hugging Face hub cache (``HF_HUB_CACHE``) of the test."""
    return studio_env.hub_cache


@pytest.fixture
def fake_hub(hub_cache: Path, monkeypatch: pytest.MonkeyPatch) -> FakeHub:
    """A fake Hugging Face hub serving into ``hub_cache`` (see the module docs)."""
    import huggingface_hub

    from studio.testing.fake_hub import FakeHub

    hub = FakeHub()
    monkeypatch.setattr(huggingface_hub, "snapshot_download", hub.snapshot_download)
    monkeypatch.setattr(huggingface_hub.HfApi, "list_repo_files", hub.list_repo_files)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    return hub


@pytest.fixture
def studio_load_plugins(request: pytest.FixtureRequest) -> bool:
    """Whether ``studio_app`` loads the installed plugins (module attribute to switch it on)."""
    return bool(getattr(request.module, "studio_load_plugins", False))


@pytest.fixture
def studio_app(studio_home: Path, studio_load_plugins: bool) -> Iterator[Studio]:
    """An opened studio on ``studio_home`` with the fake test plugin registered; closed after.

    Installed plugins (yours included) are NOT loaded, so a test sees only what it registers;
    set ``studio_load_plugins = True`` in the test module to load them through their entry points.
    """
    from studio.core.studio import Studio
    from studio.testing import fake_plugin

    app = Studio.open(studio_home, load_plugins=studio_load_plugins, start_workers=False)
    try:
        if fake_plugin.PLUGIN_NAME not in app.plugins.plugins:
            app.plugins.register(fake_plugin, _info(fake_plugin, fake_plugin.PLUGIN_NAME))
        app.start()
        yield app
    finally:
        app.close()


def _info(plugin: Any, name: str) -> PluginInfo:
    from studio.core.plugins import PluginInfo

    return PluginInfo(
        name=name,
        version=str(getattr(plugin, "__version__", "unknown")),
        module=getattr(plugin, "__name__", type(plugin).__module__),
        builtin=False,
    )


RegisterPlugin = Callable[..., "PluginInfo"]


@pytest.fixture
def register_plugin(request: pytest.FixtureRequest) -> Iterator[RegisterPlugin]:
    """``register_plugin(plugin, host=None, name=None) -> PluginInfo``, undone after the test.

    ``plugin`` is a module or object with ``@hookimpl`` functions; ``host`` defaults to
    ``studio_app.plugins``. The returned info carries any registration error (the host isolates
    failures unless ``STUDIO_STRICT_PLUGINS`` is set).
    """
    done: list[tuple[PluginHost, str]] = []

    def register(
        plugin: Any, host: PluginHost | None = None, name: str | None = None
    ) -> PluginInfo:
        if host is None:
            host = request.getfixturevalue("studio_app").plugins
        assert host is not None
        plugin_name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
        if plugin_name in host.plugins:
            raise ValueError(f"a plugin named {plugin_name!r} is already registered")
        done.append((host, plugin_name))
        return host.register(plugin, _info(plugin, plugin_name))

    yield register
    for host, plugin_name in reversed(done):
        host.unregister(plugin_name)
