"""Which studio home opens: STUDIO_HOME, else the one chosen in the settings, else the default."""

from __future__ import annotations

from pathlib import Path

import pytest

from studio.core.errors import InvalidRequest
from studio.core.paths import (
    check_out_dir,
    choose_home,
    chosen_home,
    default_home,
    home_pointer,
    platform_home,
)
from studio.core.studio import Studio


@pytest.fixture
def no_env_home(studio_env: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STUDIO_HOME")


def test_a_chosen_home_opens_next_time_and_the_default_comes_back(
    no_env_home: None, tmp_path: Path
) -> None:
    assert chosen_home() is None and default_home() == platform_home()
    folder = tmp_path / "art" / "studio"  # created when chosen
    choose_home(folder)
    assert folder.is_dir() and chosen_home() == folder.resolve()
    assert default_home() == folder.resolve()
    assert home_pointer().is_relative_to(tmp_path)  # the kit keeps it out of the real config
    studio = Studio.open(start_workers=False)
    try:
        assert studio.paths.home == folder.resolve()
    finally:
        studio.close()
    choose_home(folder)  # a studio home now: choosing it again is fine
    choose_home(None)
    assert chosen_home() is None and default_home() == platform_home()
    assert (folder / "studio.sqlite3").is_file()  # nothing of the old home was touched


def test_studio_home_in_the_environment_wins(studio_env: object, tmp_path: Path) -> None:
    choose_home(tmp_path / "chosen")
    assert default_home() != (tmp_path / "chosen").resolve()


def test_a_folder_with_other_files_or_a_file_is_refused(no_env_home: None, tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "holiday.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(InvalidRequest, match="not a studio home: choose an empty folder"):
        choose_home(tmp_path / "photos")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InvalidRequest, match="is a file"):
        choose_home(tmp_path / "notes.txt")
    assert chosen_home() is None


def test_one_out_dir_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check the command line (--out) and the studio (a request, the setting) share."""
    monkeypatch.setenv("HOME", str(tmp_path))
    assert check_out_dir(None) is None
    assert check_out_dir("~/not-yet") == (tmp_path / "not-yet").resolve()  # created on save
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(InvalidRequest, match="exists and is not a folder"):
        check_out_dir(tmp_path / "a-file")
