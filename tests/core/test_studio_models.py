"""Models on disk through the facade: downloads as jobs, deleting, the offline setting."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from studio.core.errors import InvalidRequest
from studio.core.events import JobState
from studio.core.records import JobKind, JobRecord, Priority
from studio.core.studio import Studio
from studio.testing.hub import save_to_hub_cache

pytestmark = pytest.mark.timeout(60)


def _tiny_repo(tmp_path: Path, hub_cache: Path, repo_id: str) -> None:
    folder = tmp_path / "src"
    folder.mkdir()
    save_file({"w": np.zeros((4, 4), dtype=np.float32)}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text('{"model_type": "gpt2"}')
    save_to_hub_cache(folder, repo_id, hub_cache)


def test_offline_setting_refuses_downloads(studio_home: Path) -> None:
    with Studio.open(studio_home, load_plugins=False, start_workers=False) as app:
        app.save_settings(app.settings.model_copy(update={"offline": True}))
        with pytest.raises(InvalidRequest, match="offline"):
            app.download("org/model")


def test_delete_model_removes_it_from_the_hub_cache(
    studio_home: Path, hub_cache: Path, tmp_path: Path
) -> None:
    _tiny_repo(tmp_path, hub_cache, "org/tiny")
    with Studio.open(studio_home, load_plugins=False, start_workers=False) as app:
        assert any(m.ref == "org/tiny" and m.downloaded for m in app.models())
        assert app.delete_model("org/tiny") > 0
        assert not any(m.ref == "org/tiny" and m.downloaded for m in app.models())


def test_a_stored_download_is_not_run_as_a_generation(studio_home: Path) -> None:
    """A download left queued by a previous studio goes back to the download manager."""
    with Studio.open(studio_home, load_plugins=False, start_workers=False) as app:
        app.store.add_job(
            JobRecord(
                id="dl1",
                kind=JobKind.DOWNLOAD,
                state=JobState.QUEUED,
                priority=Priority.BATCH,
                component="org/absent",
                request={"ref": "org/absent", "allow_pickle": False},
                created=time.time(),
            )
        )
    with Studio.open(studio_home, load_plugins=False) as app:
        assert app._worker.get("dl1") is None
        deadline = time.time() + 20
        while not app.job("dl1").state.finished and time.time() < deadline:
            time.sleep(0.05)
        record = app.job("dl1")
    # HF_HUB_OFFLINE is set for the suite, so the manager fails it with its own message
    assert record.state == JobState.FAILED
    assert "offline" in (record.error or "").lower(), record.error
