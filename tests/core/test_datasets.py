"""Datasets: the shared ingest (every file checked, bad ones skipped with a reason), the hashed
manifest and what changed between two, the seeded validation split, and the dataset library
(recorded when a training is submitted; a resume refuses a dataset changed since).

Every file is made here, tiny: pictures with Pillow, sounds with soundfile, text by hand.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import struct
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

import studio
from studio.core import datasets as datasets_module
from studio.core.checkpoints import CheckpointStore
from studio.core.datasets import (
    DatasetFile,
    DatasetManifest,
    ManifestChanges,
    ManifestEntry,
    compare_manifests,
    ingest_dataset,
    split_validation,
)
from studio.core.errors import InvalidRequest
from studio.core.events import JobState
from studio.core.paths import StudioPaths
from studio.core.store import Store
from studio.core.studio import Studio
from studio.core.training import IngestReport, TrainingRequest

ALL = ("text", "image", "audio")


# --- making files ---------------------------------------------------------------------------------


def picture(path: Path, size: tuple[int, int] = (80, 64), mode: str = "RGB", **save: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    colour: Any = {"RGB": (200, 40, 30), "RGBA": (200, 40, 30, 255), "CMYK": (0, 50, 90, 0)}.get(
        mode, 0
    )
    Image.new(mode, size, colour).save(path, **save)
    return path


def png_16bit_rgb(path: Path, size: int = 80) -> Path:
    """A 16-bit-per-channel RGB PNG, written by hand (Pillow writes RGB at 8 bits)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    row = b"\x00" + np.full(size * 3, 1000, dtype=">u2").tobytes()
    header = struct.pack(">IIBBBBB", size, size, 16, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * size))
        + chunk(b"IEND", b"")
    )
    return path


def sound(
    path: Path,
    seconds: float = 1.0,
    rate: int = 16000,
    fmt: str | None = None,
    subtype: str | None = None,
    value: float = 0.25,
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    samples = np.full(int(seconds * rate), value, dtype=np.float32)
    sf.write(str(path), samples, rate, format=fmt, subtype=subtype)
    return path


def text(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def truncate(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "my work"
    root.mkdir()
    return root


# --- text -----------------------------------------------------------------------------------------


def test_text_files_are_checked_and_bad_ones_skipped_with_reasons(folder: Path) -> None:
    text(folder / "poem.txt", "roses are red\n")
    text(folder / "notes.md", "# notes\n\nsome prose")
    text(folder / "chat.jsonl", '{"messages": []}\n\n{"messages": [1]}\n')
    text(folder / "bom.txt", "\ufeffwith a byte-order mark".encode())
    text(folder / "empty.txt", "")
    text(folder / "blank.md", "  \n\t\n")
    text(folder / "latin1.txt", "caf\xe9".encode("latin-1"))
    text(folder / "utf16.txt", "hello".encode("utf-16"))
    text(folder / "nul.txt", b"abc\x00def")
    text(folder / "broken.jsonl", '{"a": 1}\n{"a": \n')
    text(folder / "list.jsonl", '{"a": 1}\n[1, 2]\n')

    report = ingest_dataset(folder, kinds=("text",))

    assert [p.name for p in report.usable] == ["bom.txt", "chat.jsonl", "notes.md", "poem.txt"]
    assert report.files["chat.jsonl"].records == 2
    assert report.files["notes.md"].format == "markdown"
    assert report.files["poem.txt"].kind == "text"
    reasons = report.skipped
    assert reasons["empty.txt"] == "empty file (0 bytes)"
    assert reasons["blank.md"] == "holds only white space"
    assert "not UTF-8" in reasons["latin1.txt"] and "save it as UTF-8" in reasons["latin1.txt"]
    assert reasons["utf16.txt"] == "UTF-16 text: save it as UTF-8"
    assert "NUL bytes" in reasons["nul.txt"]
    assert reasons["broken.jsonl"].startswith("line 2 is not JSON")
    assert reasons["list.jsonl"].startswith("line 2 is JSON but not an object")
    assert set(reasons) == {
        "empty.txt",
        "blank.md",
        "latin1.txt",
        "utf16.txt",
        "nul.txt",
        "broken.jsonl",
        "list.jsonl",
    }


def test_a_file_whose_content_is_another_format_says_what_it_is(folder: Path) -> None:
    picture(folder / "real.png")
    shutil.copy(folder / "real.png", folder / "photo.txt")
    report = ingest_dataset(folder, kinds=("text", "image"))
    assert report.skipped["photo.txt"] == (
        "wrong extension: the content is a PNG image, not text (the name ends in .txt): "
        "rename it to .png"
    )
    # a trainer that takes no pictures gets no advice to rename it into one
    only_text = ingest_dataset(folder, kinds=("text",))
    assert "rename" not in only_text.skipped["photo.txt"]
    assert "PNG image" in only_text.skipped["photo.txt"]


# --- images ---------------------------------------------------------------------------------------


def test_pictures_are_decoded_and_their_facts_kept(folder: Path) -> None:
    picture(folder / "a.png", (80, 64))
    picture(folder / "b.jpg", (64, 90), quality=90)
    picture(folder / "grey.png", (70, 70), mode="L")
    picture(folder / "c.webp", (70, 70))
    report = ingest_dataset(folder, kinds=("image",))
    assert [p.name for p in report.usable] == ["a.png", "b.jpg", "c.webp", "grey.png"]
    a = report.files["a.png"]
    assert (a.kind, a.format, a.width, a.height, a.mode) == ("image", "PNG", 80, 64, "RGB")
    assert report.files["b.jpg"].format == "JPEG"
    assert report.files["c.webp"].format == "WEBP"
    assert report.files["grey.png"].mode == "L"
    assert report.skipped == {}


@pytest.mark.parametrize(
    ("name", "make", "expected"),
    [
        ("cmyk.jpg", lambda p: picture(p, mode="CMYK"), "CMYK colours"),
        ("grey16.png", lambda p: picture(p, mode="I;16"), "16 bits per channel"),
        ("rgb16.png", png_16bit_rgb, "16 bits per channel"),
        ("float.tif", lambda p: picture(p, mode="F"), "16 bits per channel"),
        ("small.png", lambda p: picture(p, (80, 12)), "too small (80x12"),
        ("huge.png", lambda p: picture(p, (300, 300)), "too many pixels (300x300"),
        ("named.jpg", lambda p: picture(p, format="PNG"), "rename it to .png"),
        ("garbage.png", lambda p: text(p, b"no picture at all, whatever the name"), "cannot be"),
        (
            "cut.png",
            lambda p: truncate(picture(p, (200, 200), mode="L", compress_level=0)),
            "trunc",
        ),
        ("cut.jpg", lambda p: truncate(picture(p, (200, 200), quality=95)), "truncated"),
        (
            "moving.gif",
            lambda p: Image.new("RGB", (80, 80), (255, 0, 0)).save(
                p, save_all=True, append_images=[Image.new("RGB", (80, 80), (0, 0, 255))]
            ),
            "animated (2 frames)",
        ),
        ("lab.tif", lambda p: picture(p, mode="LAB"), "colour mode LAB"),
    ],
)
def test_pictures_that_cannot_be_used_are_skipped_with_the_reason(
    folder: Path, name: str, make: Any, expected: str
) -> None:
    make(folder / name)
    report = ingest_dataset(folder, kinds=("image",), max_image_pixels=200 * 200)
    assert not report.usable
    assert expected in report.skipped[name], report.skipped


def test_transparency_is_refused_with_how_to_flatten_an_opaque_alpha_is_not(
    folder: Path,
) -> None:
    see_through = Image.new("RGBA", (80, 80), (10, 20, 30, 255))
    see_through.putpixel((3, 3), (10, 20, 30, 0))
    see_through.save(folder / "cutout.png")
    picture(folder / "opaque.png", mode="RGBA")
    palette = Image.new("P", (80, 80), 0)
    palette.putpalette([0, 0, 0, 255, 0, 0])
    palette.putpixel((1, 1), 1)
    palette.save(folder / "keyed.png", transparency=1)
    Image.new("LA", (80, 80), (128, 255)).save(folder / "grey-opaque.png")

    report = ingest_dataset(folder, kinds=("image",))

    assert sorted(report.files) == ["grey-opaque.png", "opaque.png"]
    for name in ("cutout.png", "keyed.png"):
        reason = report.skipped[name]
        assert "transparent pixels" in reason and "flatten" in reason and "without alpha" in reason
    assert any("alpha channel that is opaque everywhere" in note for note in report.notes)


# --- audio ----------------------------------------------------------------------------------------


def test_sounds_are_decoded_and_their_sample_rates_reported(folder: Path) -> None:
    sound(folder / "a.wav", 1.0, 16000)
    sound(folder / "b.flac", 0.75, 22050)
    sound(folder / "c.ogg", 1.0, 22050, fmt="OGG", subtype="VORBIS")
    report = ingest_dataset(folder, kinds=("audio",))
    assert sorted(report.files) == ["a.wav", "b.flac", "c.ogg"], report.skipped
    a = report.files["a.wav"]
    assert (a.kind, a.format, a.sample_rate, a.channels) == ("audio", "WAV", 16000, 1)
    assert a.duration == pytest.approx(1.0)
    assert report.files["b.flac"].duration == pytest.approx(0.75, abs=1e-3)
    assert "sample rates: 22050 Hz (2 files), 16000 Hz (1 file)" in report.notes


@pytest.mark.parametrize(
    ("name", "make", "expected"),
    [
        ("short.wav", lambda p: sound(p, 0.1), "too short (0.1 s; at least 0.5 s)"),
        ("long.flac", lambda p: sound(p, 3.0), "too long (3.0 s; at most 2.0 s)"),
        ("cut.wav", lambda p: truncate(sound(p, 1.0)), "truncated: the header promises"),
        ("cut.flac", lambda p: truncate(sound(p, 1.0, value=0.0)), "cannot be read as sound"),
        ("noise.wav", lambda p: text(p, b"RIFF not really a wave file at all"), "cannot be read"),
        ("flac.wav", lambda p: sound(p, 1.0, fmt="FLAC"), "rename it to .flac"),
        (
            "nan.wav",
            lambda p: sound(p, 1.0, subtype="FLOAT", value=float("nan")),
            "not numbers (NaN or infinity)",
        ),
    ],
)
def test_sounds_that_cannot_be_used_are_skipped_with_the_reason(
    folder: Path, name: str, make: Any, expected: str
) -> None:
    make(folder / name)
    report = ingest_dataset(folder, kinds=("audio",), max_audio_seconds=2.0)
    assert not report.usable
    assert expected in report.skipped[name], report.skipped


# --- the folder -----------------------------------------------------------------------------------


def test_the_folder_is_walked_hidden_files_left_out_and_order_is_by_path(folder: Path) -> None:
    text(folder / "b.txt", "b")
    text(folder / "sub" / "deeper" / "a.txt", "a")
    text(folder / "sub" / "c.txt", "c")
    text(folder / ".secret.txt", "hidden")
    text(folder / ".git" / "config.txt", "hidden folder")
    text(folder / "Thumbs.db", "junk")
    text(folder / "sub" / ".DS_Store", "junk")
    report = ingest_dataset(folder, kinds=("text",))
    relative = [p.relative_to(folder).as_posix() for p in report.usable]
    assert relative == ["b.txt", "sub/c.txt", "sub/deeper/a.txt"]
    assert all(p.is_absolute() for p in report.usable)
    assert report.root == folder
    assert report.skipped == {}
    assert "4 hidden files and folders left out" in report.notes


def test_limits_unknown_types_and_kinds_not_taken(folder: Path) -> None:
    text(folder / "big.txt", "x" * 2000)
    text(folder / "fine.txt", "x" * 10)
    text(folder / "README", "no extension")
    text(folder / "model.safetensors", "weights")
    picture(folder / "pic.png")
    text(folder / "notes.md", "prose")
    report = ingest_dataset(folder, kinds=("text",), extensions=(".txt",), max_file_bytes=1000)
    assert [p.name for p in report.usable] == ["fine.txt"]
    assert report.skipped == {
        "README": "no file extension, so its type is unknown: this trainer takes text (.txt)",
        "big.txt": "too large (2.0 kB; at most 1.0 kB): split it into smaller files",
        "model.safetensors": "unknown file type (.safetensors): this trainer takes text (.txt)",
        "notes.md": ".md files are not used by this trainer (it takes text (.txt))",
        "pic.png": "an image: this trainer takes text (.txt)",
    }


@pytest.mark.skipif(sys.platform == "win32", reason="symbolic links and FIFOs are POSIX here")
def test_links_and_special_files_never_stop_the_ingest(folder: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    text(outside / "linked.txt", "from elsewhere")
    (folder / "linked.txt").symlink_to(outside / "linked.txt")
    (folder / "folder-link").symlink_to(outside, target_is_directory=True)
    (folder / "dangling.txt").symlink_to(tmp_path / "gone.txt")
    os.mkfifo(folder / "pipe.txt")
    report = ingest_dataset(folder, kinds=("text",))
    assert [p.name for p in report.usable] == ["linked.txt"]
    assert report.usable[0] == folder / "linked.txt"  # its place in the dataset, not the target
    assert "links to folders are not followed" in report.skipped["folder-link/"]
    assert report.skipped["dangling.txt"].startswith("a broken link")
    assert report.skipped["pipe.txt"].startswith("not a regular file")


def test_a_checker_that_fails_skips_the_file_instead_of_crashing(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text(folder / "a.txt", "fine")
    picture(folder / "b.png")

    def broken(*args: Any) -> Any:
        raise RuntimeError("decoder exploded")

    monkeypatch.setattr(datasets_module, "_check_image", broken)
    report = ingest_dataset(folder, kinds=("text", "image"))
    assert [p.name for p in report.usable] == ["a.txt"]
    assert report.skipped == {"b.png": "cannot be checked (RuntimeError: decoder exploded)"}


def test_wrong_arguments_are_refused_clearly(folder: Path) -> None:
    with pytest.raises(InvalidRequest, match="is not a folder"):
        ingest_dataset(folder / "missing", kinds=("text",))
    with pytest.raises(ValueError, match="kinds must name some of text, image, audio"):
        ingest_dataset(folder, kinds=("video",))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="kinds must name"):
        ingest_dataset(folder, kinds=())
    with pytest.raises(ValueError, match=r"extensions must be some of \.txt, \.md, \.jsonl"):
        ingest_dataset(folder, kinds=("text",), extensions=(".png",))
    with pytest.raises(ValueError, match="audio bounds"):
        ingest_dataset(folder, kinds=("audio",), min_audio_seconds=3, max_audio_seconds=1)
    empty = ingest_dataset(folder, kinds=("text",))
    assert not empty.ok and empty.notes == [
        "no usable file: this trainer takes text (.txt, .md, .jsonl)"
    ]


# --- the manifest ---------------------------------------------------------------------------------


def test_the_manifest_lists_path_size_and_sha256_and_hashes_its_sorted_lines(folder: Path) -> None:
    text(folder / "b.txt", "bee")
    text(folder / "a" / "z.txt", "zed")
    picture(folder / "pic.png")
    manifest = ingest_dataset(folder, kinds=("text", "image")).manifest

    expected = sorted(
        f"{rel}\t{(folder / rel).stat().st_size}\t"
        f"{hashlib.sha256((folder / rel).read_bytes()).hexdigest()}"
        for rel in ("b.txt", "a/z.txt", "pic.png")
    )
    assert manifest.lines() == expected
    assert manifest.text() == "".join(line + "\n" for line in expected)
    assert manifest.sha256 == hashlib.sha256(manifest.text().encode()).hexdigest()
    assert manifest.files == 3 and manifest.bytes == sum(int(x.split("\t")[1]) for x in expected)
    assert DatasetManifest.parse(manifest.text()) == manifest


def test_the_manifest_is_the_same_for_the_same_files_anywhere(tmp_path: Path) -> None:
    first, second = tmp_path / "one", tmp_path / "two"
    text(first / "x.txt", "same")
    text(first / "sub" / "y.txt", "files")
    shutil.copytree(first, second)
    a = ingest_dataset(first, kinds=("text",)).manifest
    b = ingest_dataset(second, kinds=("text",)).manifest
    assert a == b and a.sha256 == b.sha256
    shuffled = DatasetManifest(tuple(reversed(a.entries)))
    assert shuffled == a and shuffled.sha256 == a.sha256
    with pytest.raises(ValueError, match="twice"):
        DatasetManifest((*a.entries, a.entries[0]))


def test_a_manifest_entry_path_may_hold_tabs() -> None:
    entry = ManifestEntry("odd\tname.txt", 3, "ab" * 32)
    assert ManifestEntry.parse(entry.line()) == entry
    with pytest.raises(ValueError, match="not a manifest line"):
        ManifestEntry.parse("just a path")


def test_compare_manifests_says_what_was_added_removed_and_modified(folder: Path) -> None:
    text(folder / "kept.txt", "same")
    text(folder / "edited.txt", "before")
    text(folder / "gone.txt", "bye")
    before = ingest_dataset(folder, kinds=("text",)).manifest
    assert not compare_manifests(before, before)
    assert compare_manifests(before, before).describe() == "no change"

    text(folder / "edited.txt", "after!")
    (folder / "gone.txt").unlink()
    text(folder / "new" / "one.txt", "hello")
    after = ingest_dataset(folder, kinds=("text",)).manifest

    changes = compare_manifests(before, after)
    assert changes == ManifestChanges(
        added=("new/one.txt",), removed=("gone.txt",), modified=("edited.txt",)
    )
    assert changes
    assert (
        changes.describe() == "1 added (new/one.txt); 1 removed (gone.txt); 1 modified (edited.txt)"
    )
    many = ManifestChanges(added=tuple(f"{i}.txt" for i in range(7)))
    assert many.describe(limit=2) == "7 added (0.txt, 1.txt, …)"


def test_a_trainer_refuses_more_files_with_skip_and_the_manifest_follows(folder: Path) -> None:
    text(folder / "keep.txt", "keep")
    text(folder / "drop.txt", "drop")
    report = ingest_dataset(folder, kinds=("text",))
    report.skip(folder / "drop.txt", "too few words to learn from")
    assert [p.name for p in report.usable] == ["keep.txt"]
    assert report.skipped == {"drop.txt": "too few words to learn from"}
    assert [e.path for e in report.manifest.entries] == ["keep.txt"]
    assert "drop.txt" not in report.files
    with pytest.raises(ValueError, match="not a usable file"):
        report.skip("drop.txt", "again")
    with pytest.raises(ValueError, match="needs a reason"):
        report.skip("keep.txt", " ")


def test_skip_keeps_the_summary_notes_true(folder: Path) -> None:
    for name in ("a.txt", "b.txt", "c.txt"):
        text(folder / name, "some words")
    (folder / "empty.txt").write_bytes(b"")
    report = ingest_dataset(folder, kinds=("text",))
    report.notes.append("the trainer's own note")
    assert report.notes[:2] == ["3 usable files (3 text), 30 B", "1 file skipped (see the reasons)"]
    report.skip("b.txt", "not my kind of text")
    assert report.notes == [
        "2 usable files (2 text), 20 B",
        "2 files skipped (see the reasons)",
        "the trainer's own note",
    ]
    report.skip("a.txt", "nor this")
    report.skip("c.txt", "nor this")
    assert report.notes == [
        "no usable file: this trainer takes text (.txt, .md, .jsonl)",
        "4 files skipped (see the reasons)",
        "the trainer's own note",
    ]


def test_a_report_made_by_hand_gets_its_manifest_once_it_has_a_root(folder: Path) -> None:
    text(folder / "a.txt", "by hand")
    report = IngestReport(usable=[folder / "a.txt"])
    assert report.ok
    with pytest.raises(ValueError, match="ingest_dataset"):
        _ = report.manifest
    report.root = folder
    assert report.manifest == ingest_dataset(folder, kinds=("text",)).manifest


# --- the validation split -------------------------------------------------------------------------


def entries(n: int) -> list[ManifestEntry]:
    return [ManifestEntry(f"file-{i:03d}.txt", i + 1, f"{i:064x}") for i in range(n)]


def test_the_split_depends_on_the_seed_and_paths_not_on_the_order() -> None:
    files = entries(20)
    train, held = split_validation(files, fraction=0.25, seed=7)
    assert len(held) == 5 and len(train) == 15
    assert sorted(train + held, key=lambda e: e.path) == files
    assert train == sorted(train, key=lambda e: e.path)
    for shuffle_seed in range(3):
        shuffled = files[:]
        random.Random(shuffle_seed).shuffle(shuffled)
        assert split_validation(shuffled, fraction=0.25, seed=7) == (train, held)
    others = {
        tuple(e.path for e in split_validation(files, fraction=0.25, seed=s)[1]) for s in range(6)
    }
    assert len(others) > 1, "the seed chooses the held-out files"


def test_the_split_of_paths_under_a_root_matches_the_split_of_the_manifest(
    tmp_path: Path,
) -> None:
    files = entries(12)
    for name, root in (("a", tmp_path / "a"), ("b", tmp_path / "elsewhere" / "b")):
        paths = [root / e.path for e in files]
        train, held = split_validation(paths, count=3, seed=1, root=root)
        expected = split_validation(files, count=3, seed=1)
        assert [p.relative_to(root).as_posix() for p in held] == [e.path for e in expected[1]], name
        assert len(train) == 9


def test_adding_a_file_moves_at_most_one_other_out_of_the_held_out_set() -> None:
    files = entries(30)
    _, before = split_validation(files, count=4, seed=3)
    extra = ManifestEntry("zzz-new.txt", 1, "f" * 64)
    _, after = split_validation([*files, extra], count=4, seed=3)
    assert set(after) <= {*before, extra}
    assert len(set(before) - set(after)) <= 1


def test_at_least_one_held_out_never_all() -> None:
    two = entries(2)
    assert [len(part) for part in split_validation(two, fraction=0.01, seed=0)] == [1, 1]
    assert [len(part) for part in split_validation(two, fraction=0.99, seed=0)] == [1, 1]
    one = entries(1)
    assert split_validation(one, fraction=0.5, seed=0) == (one, [])
    assert split_validation(entries(5), fraction=0, seed=0) == (entries(5), [])
    assert split_validation(entries(5), count=0, seed=0) == (entries(5), [])
    assert split_validation([], fraction=0.2, seed=0) == ([], [])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "a fraction or a count"),
        ({"fraction": 0.1, "count": 1}, "a fraction or a count"),
        ({"fraction": 1.0}, "at least 0 and below 1, got 1.0"),
        ({"fraction": -0.1}, "at least 0 and below 1"),
        ({"fraction": float("nan")}, "at least 0 and below 1"),
        ({"fraction": "0.1"}, "must be a number"),
        ({"count": -1}, "a whole number >= 0"),
        ({"count": 1.5}, "a whole number >= 0"),
        (
            {"count": 3},
            "leaves no file to train on: the dataset has 3 usable files; hold out at most 2",
        ),
    ],
)
def test_impossible_splits_are_refused_with_what_is_allowed(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidRequest, match=message.replace("(", r"\(").replace(")", r"\)")):
        split_validation(entries(3), seed=0, **kwargs)


def test_the_split_refuses_odd_items_seeds_and_duplicates() -> None:
    with pytest.raises(InvalidRequest, match="count of 1 leaves no file to train on"):
        split_validation(entries(1), count=1, seed=0)
    with pytest.raises(InvalidRequest, match="seed must be an integer"):
        split_validation(entries(3), count=1, seed="0")  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest, match="given twice"):
        split_validation(["a.txt", Path("a.txt")], count=1, seed=0)
    with pytest.raises(InvalidRequest, match="takes paths, ManifestEntry or DatasetFile"):
        split_validation([1, 2], count=1, seed=0)
    files = [DatasetFile(e.path, "text", e.size, e.sha256, "text") for e in entries(6)]
    train, held = split_validation(files, count=2, seed=4)
    assert [f.path for f in held] == [
        e.path for e in split_validation(entries(6), count=2, seed=4)[1]
    ]
    assert len(train) == 4


# --- the public API -------------------------------------------------------------------------------


def test_the_public_api_exports_the_dataset_machinery() -> None:
    for name in (
        "ingest_dataset",
        "split_validation",
        "compare_manifests",
        "DatasetManifest",
        "DatasetFile",
        "ManifestEntry",
        "ManifestChanges",
    ):
        assert getattr(studio, name) is getattr(datasets_module, name)
        assert name in studio.__all__


# --- the dataset library --------------------------------------------------------------------------


def test_the_store_keeps_one_record_per_folder_and_manifest(tmp_path: Path) -> None:
    folder = tmp_path / "sketches"
    text(folder / "a.txt", "one")
    first = ingest_dataset(folder, kinds=("text",)).manifest
    with Store(tmp_path / "studio.db") as store:
        record = store.record_dataset(folder, first, used=100.0)
        assert (record.name, record.folder, record.files) == ("sketches", folder.resolve(), 1)
        assert record.manifest == first and record.manifest_sha256 == first.sha256
        assert (record.created, record.last_used) == (100.0, 100.0)

        again = store.record_dataset(folder, first, used=200.0)
        assert again.id == record.id and again.last_used == 200.0 and again.created == 100.0

        renamed = store.record_dataset(folder, first, name="my sketches", used=300.0)
        assert renamed.id == record.id and renamed.name == "my sketches"

        text(folder / "b.txt", "two")
        second = ingest_dataset(folder, kinds=("text",)).manifest
        newer = store.record_dataset(folder, second, used=400.0)
        assert newer.id != record.id
        assert newer.name == "my sketches", "a new version of a folder keeps the name it was given"
        assert (newer.files, newer.bytes) == (2, 6)

        assert [r.id for r in store.list_datasets()] == [newer.id, record.id]
        assert store.find_dataset(record.id) == renamed
        assert store.find_dataset("my sketches") == newer  # the most recently used
        assert store.find_dataset("nothing") is None
        assert store.dataset_version(folder, first.sha256) == renamed
        assert store.dataset_version(folder, "0" * 64) is None


def write_fake_dataset(folder: Path) -> Path:
    picture(folder / "one.png", (8, 8))
    text(folder / "one.txt", "a caption")
    text(folder / "notes.pdf", b"%PDF-1.4")
    return folder


def training(dataset: Path, steps: int = 2) -> TrainingRequest:
    return TrainingRequest(
        trainer="fake-lora", dataset=dataset, name="my style", options={"steps": steps}
    )


def test_submitting_a_training_records_its_dataset(app: Studio, tmp_path: Path) -> None:
    dataset = write_fake_dataset(tmp_path / "landscapes")
    report = app.ingest("fake-lora", dataset, {})
    assert report.skipped["notes.pdf"].startswith("unknown file type (.pdf)")

    job_id = app.submit_training(training(dataset))
    assert app.wait(job_id, timeout=60).state == JobState.SUCCEEDED
    [record] = app.datasets()
    assert (record.name, record.folder, record.files) == ("landscapes", dataset.resolve(), 2)
    assert record.manifest == report.manifest
    assert app.job(job_id).request["dataset_manifest"] == report.manifest.sha256
    assert app.find_dataset("landscapes") == record

    second = app.submit_training(training(dataset))
    assert app.wait(second, timeout=60).state == JobState.SUCCEEDED
    [again] = app.datasets()
    assert again.id == record.id and again.last_used >= record.last_used

    assert not app.dataset_changes("landscapes", "fake-lora")
    text(dataset / "two.txt", "another caption")
    changes = app.dataset_changes(record.id, "fake-lora")
    assert changes.added == ("two.txt",) and not changes.removed and not changes.modified
    with pytest.raises(InvalidRequest, match="no dataset 'nope' in the library"):
        app.dataset_changes("nope", "fake-lora")

    third = app.submit_training(training(dataset))
    assert app.wait(third, timeout=60).state == JobState.SUCCEEDED
    assert [r.files for r in app.datasets()] == [3, 2]


def test_a_resume_refuses_a_dataset_changed_since_the_submission(
    app: Studio, tmp_path: Path
) -> None:
    dataset = write_fake_dataset(tmp_path / "portraits")
    job_id = app.submit_training(training(dataset, steps=3))
    assert app.wait(job_id, timeout=60).state == JobState.SUCCEEDED
    # as if it had failed after a checkpoint: a resume re-reads the dataset
    app.store.update_job(job_id, state=JobState.FAILED, error="the device was lost")

    def write(folder: Path) -> None:
        (folder / "state.json").write_text(json.dumps({"step": 2}), encoding="utf-8")

    CheckpointStore(app.paths.checkpoints / job_id).save(2, write)
    text(dataset / "one.txt", "another caption, same file")
    text(dataset / "extra.txt", "new")
    assert app.resume(job_id)
    record = app.wait(job_id, timeout=60)
    assert record.state == JobState.FAILED
    assert record.error is not None
    assert record.error.startswith("cannot resume from the checkpoint of step 2: the dataset")
    assert "changed since this training was submitted" in record.error
    assert "1 added (extra.txt); 1 modified (one.txt)" in record.error
    assert "put the files back as they were" in record.error


def test_the_dataset_library_lists_from_a_fresh_studio(studio_home: Path, tmp_path: Path) -> None:
    dataset = tmp_path / "poems"
    text(dataset / "a.txt", "verse")
    manifest = ingest_dataset(dataset, kinds=("text",)).manifest
    with Store(StudioPaths(studio_home).database) as store:
        store.record_dataset(dataset, manifest, used=time.time())
    document: dict[str, list[dict[str, Any]]] = {"datasets": []}
    with Studio.open(studio_home, load_plugins=False, start_workers=False) as app:
        document["datasets"] = [r.to_json() for r in app.datasets()]
    [entry] = json.loads(json.dumps(document))["datasets"]
    assert entry["name"] == "poems" and entry["files"] == 1
    assert entry["manifest_sha256"] == manifest.sha256
    assert entry["manifest"] == [{"path": "a.txt", "size": 5, "sha256": manifest.entries[0].sha256}]
