"""quiet_model_loading: the libraries' bars and advice off inside, everything back after."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from studio.core import quiet
from studio.core.quiet import is_quiet, quiet_model_loading

LOGGERS = ("huggingface_hub", "transformers", "diffusers", "peft", "accelerate")


@pytest.fixture
def libs(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Any]]:
    """transformers' and huggingface_hub's switches, on at the start and as found at the end."""
    from huggingface_hub import constants
    from huggingface_hub import utils as hub_utils
    from transformers.utils import logging as tf_logging

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_PROGRESS_BARS", None)
    bars = tf_logging.is_progress_bar_enabled(), hub_utils.are_progress_bars_disabled()
    levels = {name: logging.getLogger(name).level for name in LOGGERS}
    tf_logging.enable_progress_bar()
    assert not is_quiet()
    yield tf_logging, hub_utils
    assert not is_quiet(), "a block was left open"
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    (tf_logging.enable_progress_bar if bars[0] else tf_logging.disable_progress_bar)()
    (hub_utils.disable_progress_bars if bars[1] else hub_utils.enable_progress_bars)()


def bar_output(tf_logging: Any) -> str:
    """What a transformers loading bar prints right now."""
    out = io.StringIO()
    for _ in tf_logging.tqdm(range(3), desc="Loading weights", file=out):
        pass
    return out.getvalue()


def test_bars_are_off_inside_and_back_after(libs: tuple[Any, Any]) -> None:
    tf_logging, hub_utils = libs
    assert "Loading weights" in bar_output(tf_logging)
    with quiet_model_loading("transformers"):
        assert is_quiet()
        assert not tf_logging.is_progress_bar_enabled()
        assert hub_utils.are_progress_bars_disabled()
        assert bar_output(tf_logging) == ""
    assert not is_quiet()
    assert tf_logging.is_progress_bar_enabled()
    assert not hub_utils.are_progress_bars_disabled()
    assert "Loading weights" in bar_output(tf_logging)


def test_bars_that_were_off_stay_off(libs: tuple[Any, Any]) -> None:
    tf_logging, hub_utils = libs
    tf_logging.disable_progress_bar()
    with quiet_model_loading("transformers"):
        pass
    assert not tf_logging.is_progress_bar_enabled()
    assert hub_utils.are_progress_bars_disabled()


def test_hub_group_settings_are_restored_exactly(libs: tuple[Any, Any]) -> None:
    _, hub_utils = libs
    hub_utils.disable_progress_bars("peft.foo")
    with quiet_model_loading("transformers"):
        assert hub_utils.are_progress_bars_disabled("peft")
    # transformers' own switch re-enables every group; the saved settings win
    assert hub_utils.are_progress_bars_disabled("peft.foo")
    assert not hub_utils.are_progress_bars_disabled("peft")


def test_logger_levels_inside_and_restored(libs: tuple[Any, Any]) -> None:
    logging.getLogger("peft").setLevel(logging.INFO)
    logging.getLogger("accelerate").setLevel(logging.CRITICAL)
    before = {name: logging.getLogger(name).level for name in LOGGERS}
    with quiet_model_loading("transformers"):
        for name in ("huggingface_hub", "transformers", "peft"):
            assert logging.getLogger(name).level == logging.ERROR, name
        assert logging.getLogger("accelerate").level == logging.CRITICAL  # stricter: kept
    assert {name: logging.getLogger(name).level for name in LOGGERS} == before


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_advice_is_dropped_and_errors_still_logged(libs: tuple[Any, Any]) -> None:
    from transformers.utils import logging as tf_logging

    logger = tf_logging.get_logger("transformers.modeling_utils")
    handler = ListHandler()
    logging.getLogger("transformers").addHandler(handler)
    try:
        with quiet_model_loading("transformers"):
            logger.warning("Some weights of the checkpoint were not used")
            logger.error("the checkpoint is damaged")
        logger.warning("advice outside a load")
    finally:
        logging.getLogger("transformers").removeHandler(handler)
    assert handler.messages == ["the checkpoint is damaged", "advice outside a load"]


def test_exceptions_propagate_and_state_is_restored(libs: tuple[Any, Any]) -> None:
    tf_logging, _ = libs
    with pytest.raises(OSError, match="no such model"), quiet_model_loading("transformers"):
        raise OSError("no such model")
    assert not is_quiet()
    assert tf_logging.is_progress_bar_enabled()
    assert logging.getLogger("transformers").level != logging.ERROR


def test_nested_blocks_restore_only_at_the_outermost(libs: tuple[Any, Any]) -> None:
    tf_logging, _ = libs
    level = logging.getLogger("transformers").level
    with quiet_model_loading("transformers"):
        with quiet_model_loading("transformers", "peft"):
            assert not tf_logging.is_progress_bar_enabled()
        assert is_quiet()
        assert not tf_logging.is_progress_bar_enabled()
        assert logging.getLogger("transformers").level == logging.ERROR
    assert tf_logging.is_progress_bar_enabled()
    assert logging.getLogger("transformers").level == level


def test_two_threads_do_not_restore_each_other_mid_load(libs: tuple[Any, Any]) -> None:
    """Worker A starts loading, B starts, A finishes: B is still loading, so still quiet."""
    tf_logging, _ = libs
    a_in, b_in, a_out, b_may_leave = (threading.Event() for _ in range(4))
    seen: dict[str, object] = {}
    errors: list[BaseException] = []

    def worker_a() -> None:
        try:
            with quiet_model_loading("transformers"):
                a_in.set()
                assert b_in.wait(10)
        except BaseException as exc:
            errors.append(exc)
        finally:
            a_out.set()

    def worker_b() -> None:
        try:
            assert a_in.wait(10)
            with quiet_model_loading("transformers"):
                b_in.set()
                assert a_out.wait(10)
                seen["bars_on_while_b_loads"] = tf_logging.is_progress_bar_enabled()
                seen["level_while_b_loads"] = logging.getLogger("transformers").level
                assert b_may_leave.wait(10)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker_a), threading.Thread(target=worker_b)]
    for t in threads:
        t.start()
    assert a_out.wait(10)
    b_may_leave.set()
    for t in threads:
        t.join(10)
    assert not errors
    assert seen == {"bars_on_while_b_loads": False, "level_while_b_loads": logging.ERROR}
    assert tf_logging.is_progress_bar_enabled()


def test_library_warnings_are_ignored_inside_only(libs: tuple[Any, Any]) -> None:
    def warn_from(module_name: str) -> list[str]:
        namespace = {"__name__": module_name, "warnings": warnings}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with quiet_model_loading("transformers"):
                exec("warnings.warn('old api', FutureWarning)", namespace)
                exec("warnings.warn('older api', DeprecationWarning)", namespace)
        return [str(w.message) for w in caught]

    filters = list(warnings.filters)
    assert warn_from("transformers.modeling_utils") == []
    assert warn_from("peft.tuners") == []
    # a deprecation pointing at the plugin's own code is the plugin author's to see
    assert warn_from("studio_text.loading") == ["old api", "older api"]
    assert warnings.filters == filters


def test_env_asking_for_bars_keeps_them(
    libs: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    tf_logging, _ = libs
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_PROGRESS_BARS", False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # switching against the variable would warn
        with quiet_model_loading("transformers"):
            assert tf_logging.is_progress_bar_enabled()
            assert logging.getLogger("transformers").level == logging.ERROR


def test_diffusers_bars(libs: tuple[Any, Any]) -> None:
    diffusers_logging = pytest.importorskip("diffusers.utils.logging")
    diffusers_logging.enable_progress_bar()
    with quiet_model_loading("diffusers"):
        assert not diffusers_logging.is_progress_bar_enabled()
        assert logging.getLogger("diffusers").level == logging.ERROR
        out = io.StringIO()
        for _ in diffusers_logging.tqdm(range(3), desc="Loading pipeline components", file=out):
            pass
        assert out.getvalue() == ""
    assert diffusers_logging.is_progress_bar_enabled()


def test_unknown_library_is_refused() -> None:
    allowed = r"'torch'.*allowed: huggingface_hub, transformers"
    with pytest.raises(ValueError, match=allowed), quiet_model_loading("torch"):
        pass
    assert not is_quiet()


def test_only_named_or_imported_libraries_are_imported() -> None:
    """Naming transformers does not pay for importing diffusers (over a second)."""
    code = (
        "import json, sys\n"
        "from studio.core.quiet import quiet_model_loading\n"
        "before = sorted(m for m in ('torch', 'transformers', 'diffusers') if m in sys.modules)\n"
        "with quiet_model_loading('transformers'):\n"
        "    inside = sorted(m for m in ('transformers', 'diffusers') if m in sys.modules)\n"
        "print(json.dumps([before, inside]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(quiet.__file__).resolve().parents[2],
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [[], ["transformers"]]


def test_naming_diffusers_quiets_transformers_too() -> None:
    """diffusers pipelines load their text encoders through transformers, which talks."""
    code = (
        "import json, logging\n"
        "from studio.core.quiet import quiet_model_loading\n"
        "with quiet_model_loading('diffusers'):\n"
        "    level = logging.getLogger('transformers').getEffectiveLevel()\n"
        "print(json.dumps(level))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(quiet.__file__).resolve().parents[2],
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == logging.ERROR
