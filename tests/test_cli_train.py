"""The command line for training: ``train`` (ingest report, progress, the adapter and how to use
it, Ctrl-C pauses, ``--resume``, ``--help-options``, ``--json``) and ``adapters``.

The trainers are the testing kit's fake one (``fake-lora``: a deterministic loss curve, a delay
per step) and the example plugin's palette trainer (``patterns-palette``: no base model, real
k-means, exact resume), found as installed plugins are: through their entry points. One test
trains the text trainer's LoRA on a tiny GPT-2 end to end.

Ctrl-C is pressed in-process by raising KeyboardInterrupt where a real SIGINT lands (while the
command handles its job's events, on the main thread); one test sends a real SIGINT to the
console script.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from studio import cli
from studio.cli import EventPrinter, main
from studio.testing.contract import adapter_content
from studio.testing.dists import make_distribution, pythonpath_with
from studio.testing.fakes import fake_loss

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "docs" / "example_plugin"
SCRIPT = Path(sys.executable).with_name("aigc-studio")


@pytest.fixture
def plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, studio_home: Path) -> dict[str, str]:
    """The fake plugin (``fakes``) and the example plugin (``patterns``: installed, or its
    sources behind a stand-in distribution), and only they; returns a subprocess environment."""
    folders = [
        make_distribution(
            tmp_path / "site", "studio-fakes", {"fakes": "studio.testing.fake_plugin"}
        )
    ]
    try:
        metadata.distribution("studio-patterns")
    except metadata.PackageNotFoundError:
        folders += [
            make_distribution(
                tmp_path / "site2", "studio-patterns", {"patterns": "studio_patterns"}
            ),
            EXAMPLE,
        ]
    for folder in folders:
        monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv("STUDIO_LOAD_PLUGINS", "fakes,patterns")
    return pythonpath_with(*folders)


def pictures(folder: Path, count: int = 3, *, junk: bool = True) -> Path:
    """``count`` small noise PNGs (and, with ``junk``, a file of another kind and a broken PNG)."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    for i in range(count):
        pixels = (rng.random((80, 80, 3)) * 255).astype("uint8")
        Image.fromarray(pixels).save(folder / f"picture-{i}.png")
    if junk:
        (folder / "notes.doc").write_bytes(b"not a picture")
        (folder / "broken.png").write_bytes(b"\x89PNG\r\n")
    return folder


def stored_jobs(home: Path) -> list[Any]:
    from studio.core.store import Store

    if not (home / "studio.sqlite3").exists():
        return []
    store = Store(home / "studio.sqlite3")
    try:
        return store.list_jobs()
    finally:
        store.close()


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("aigc-studio: error: "), err
    return lines[0]


@pytest.fixture
def ctrl_c(monkeypatch: pytest.MonkeyPatch) -> Callable[..., list[str]]:
    """``ctrl_c(at_step, again=False)``: press Ctrl-C when the command shows that training step
    (and, with ``again``, once more at the next event it handles). Returns a log of the presses.

    So that where the training stops does not depend on timing, the training waits at the step
    boundary after ``at_step`` until the command has asked it to pause.
    """
    from studio.core.context import TrainContext
    from studio.core.events import TrainStep
    from studio.core.studio import Studio

    pressed: list[str] = []
    asked = threading.Event()

    def arm(at_step: int, again: bool = False) -> list[str]:
        original_handle = EventPrinter.handle
        original_pause = Studio.pause
        original_boundary = TrainContext.step_boundary
        boundaries: dict[str, int] = {}

        def handle(self: EventPrinter, event: Any) -> None:
            original_handle(self, event)
            if not pressed and isinstance(event, TrainStep) and event.step == at_step:
                pressed.append(f"step {event.step}")
                raise KeyboardInterrupt
            if again and len(pressed) == 1:
                pressed.append(type(event).__name__)
                raise KeyboardInterrupt

        def pause(self: Studio, job_id: str) -> bool:
            try:
                return original_pause(self, job_id)
            finally:
                asked.set()

        def step_boundary(self: TrainContext, before_hold: Any = None) -> None:
            count = boundaries[self.job_id] = boundaries.get(self.job_id, 0) + 1
            if count == at_step + 1:
                asked.wait(30)
            original_boundary(self, before_hold)

        monkeypatch.setattr(EventPrinter, "handle", handle)
        monkeypatch.setattr(Studio, "pause", pause)
        monkeypatch.setattr(TrainContext, "step_boundary", step_boundary)
        return pressed

    return arm


# --- a training from start to end ----------------------------------------------------------------


def test_train_shows_the_ingest_report_progress_and_the_adapter(
    plugins: dict, tmp_path: Path, studio_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = pictures(tmp_path / "data")
    code = main(
        [
            "train", "fake-lora", "--data", str(data), "--name", "noise",
            "--set", "steps=6", "--set", "sample-every=3",
        ]
    )  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    [path] = out.splitlines()  # stdout: the adapter, in the library
    adapter = Path(path)
    assert adapter.is_file() and adapter.is_relative_to(studio_home / "adapters")
    # the ingest report comes first: what is used, what is skipped and why
    report, _, rest = err.partition("aigc-studio: training job ")
    assert f"dataset {data} (trainer fake-lora): 3 usable files, 2 skipped" in report
    assert "  skipped notes.doc: " in report and "  skipped broken.png: " in report
    assert "  note: 3 image(s), 0 caption(s)" in report
    # then the progress: step/total and the loss (one line a second at most off a terminal,
    # and always the last)
    assert f"6/6 loss {fake_loss(6, 'noise'):.4f}" in rest
    assert "sample 1 at step 3: image" in rest and "sample 1 at step 6: image" in rest
    # then the adapter: where it is and how to use it
    assert f"adapter 'noise' is in the library\n  path: {adapter}\n" in rest
    assert "  training: 6 steps\n" in rest
    assert "use it: aigc-studio generate fake-image --lora noise --prompt TEXT" in rest
    # usable at once, as it says
    code = main(["generate", "fake-image", "--lora", "noise", "--prompt", "fox", "--seed", "1"])
    made, err = capsys.readouterr()
    assert code == 0, err
    assert Path(made.strip()).is_file()
    [job, *_] = stored_jobs(studio_home)  # newest first
    assert job.kind == "generate" and job.request["loras"] == [{"ref": "noise", "weight": 1.0}]


def test_train_json_document(
    plugins: dict, tmp_path: Path, studio_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = pictures(tmp_path / "data")
    code = main(
        [
            "train", "patterns-palette", "--data", str(data), "--name", "warm",
            "--set", "steps=8", "--set", "sample_every=4", "--set", "colours=3", "--json",
        ]
    )  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    assert err == ""  # --json keeps stderr quiet
    doc = json.loads(out)
    assert set(doc) == {
        "schema", "job", "ingest", "progress", "samples", "notes", "adapter", "checkpoint_step",
        "resume",
    }  # fmt: skip
    assert doc["schema"] == 1
    job = doc["job"]
    assert (job["kind"], job["state"], job["component"]) == (
        "train",
        "succeeded",
        "patterns-palette",
    )
    assert job["request"]["base_model"] is None and job["request"]["options"]["colours"] == 3
    ingest = doc["ingest"]
    assert ingest["dataset"] == str(data)
    assert ingest["usable"] == ["picture-0.png", "picture-1.png", "picture-2.png"]
    assert sorted(s["path"] for s in ingest["skipped"]) == ["broken.png", "notes.doc"]
    assert all(s["reason"] for s in ingest["skipped"])
    assert "3 picture(s); 3 colours to learn" in ingest["notes"]
    assert isinstance(ingest["manifest_sha256"], str)
    assert doc["progress"]["step"] == doc["progress"]["total"] == 8
    assert [(s["step"], s["modality"]) for s in doc["samples"]] == [(4, "image"), (8, "image")]
    adapter = doc["adapter"]
    assert adapter["name"] == "warm" and adapter["trainer"] == "patterns-palette"
    assert adapter["base_model"] is None and adapter["generators"] == ["patterns"]
    assert adapter["usable_with"] == ["patterns"]
    assert adapter["use"] == "aigc-studio generate patterns --lora warm"
    assert adapter["training"]["steps"] == 8 and adapter["job_id"] == job["id"]
    assert Path(adapter["path"]).is_file()
    assert doc["checkpoint_step"] is None and doc["resume"] is None  # done: nothing to resume


def test_help_options_lists_the_trainers_options(
    plugins: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "patterns-palette", "--help-options"]) == 0
    text = capsys.readouterr().out
    assert text.startswith(
        "patterns-palette: Palette from pictures (trainer, image)\n"
        "uses no base model (--base is refused)\n"
    )
    assert "\n  colours  (int, default 5)\n" in text
    assert "allowed: an integer >= 1 and <= 16" in text
    assert main(["train", "fake-lora", "--help-options"]) == 0
    text = capsys.readouterr().out
    assert "default base model: fake/tiny-model\n" in text
    assert "\n  steps  (int, default 20)\n" in text
    # `train TRAINER --help` ends with the same list
    assert main(["train", "fake-lora", "--help"]) == 0
    assert "\n  checkpoint_every  (int, default 5)\n" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["train"], "name the TRAINER"),
        (["train", "nope", "--data", "{data}", "--name", "x"], "no trainer named 'nope'"),
        (["train", "fake-lora", "--name", "x"], "give --data DIR"),
        (["train", "fake-lora", "--data", "{data}"], "give --name NAME"),
        (["train", "fake-lora", "--data", "{data}/nothing", "--name", "x"], "no such folder"),
        (["train", "fake-lora", "--data", "{data}/picture-0.png", "--name", "x"], "is a file"),
        (["train", "fake-lora", "--data", "{empty}", "--name", "x"], "the folder is empty"),
        (["train", "fake-lora", "--data", "{junk}", "--name", "x"], "skipped notes.doc: "),
        (
            ["train", "fake-lora", "--data", "{data}", "--name", "x", "--set", "steps=0"],
            "option 'steps'",
        ),
        (["train", "fake-lora", "--data", "{data}", "--name", "x", "--set", "nope=1"], "nope"),
        (
            [
                "train",
                "patterns-palette",
                "--base",
                "some/model",
                "--data",
                "{data}",
                "--name",
                "x",
            ],
            "uses no base model",
        ),
        (
            ["train", "fake-lora", "--base", "{data}/no-model", "--data", "{data}", "--name", "x"],
            "no such file or folder",
        ),
        (["train", "fake-lora", "--resume", "abc"], "remove TRAINER"),
        (["train", "--resume", "abc", "--set", "steps=3"], "remove --set"),
        (["train", "--resume", "0123456789abcdef"], "no job '0123456789abcdef'"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_queues_nothing(
    plugins: dict,
    tmp_path: Path,
    studio_home: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    expected: str,
) -> None:
    folders = {
        "data": pictures(tmp_path / "data", junk=False),
        "empty": tmp_path / "empty",
        "junk": tmp_path / "junk",
    }
    folders["empty"].mkdir()
    folders["junk"].mkdir()
    (folders["junk"] / "notes.doc").write_bytes(b"x")
    code = main([a.format(**folders) for a in args])
    out, err = capsys.readouterr()
    assert code == 2, err
    assert out == ""
    assert expected in one_error_line(err)
    assert stored_jobs(studio_home) == []
    assert not (studio_home / "adapters").exists() or not any((studio_home / "adapters").iterdir())


def test_a_failed_training_exits_1_with_its_error(
    plugins: dict,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from studio.testing.fakes import FakeTrainer

    def write_adapter(request: Any) -> Any:
        raise RuntimeError("the disk is full")

    monkeypatch.setattr(FakeTrainer, "_write_adapter", staticmethod(write_adapter))
    data = pictures(tmp_path / "data", junk=False)
    code = main(["train", "fake-lora", "--data", str(data), "--name", "x", "--set", "steps=4"])
    out, err = capsys.readouterr()
    assert code == 1
    assert out == ""
    assert "failed: RuntimeError: the disk is full" in err
    assert "its checkpoint of step 4 is kept: 'aigc-studio train --resume " in err


# --- Ctrl-C and --resume -------------------------------------------------------------------------


def test_ctrl_c_pauses_with_a_checkpoint_and_resume_goes_on_to_the_same_adapter(
    plugins: dict,
    tmp_path: Path,
    studio_home: Path,
    capsys: pytest.CaptureFixture[str],
    ctrl_c: Callable[..., list[str]],
) -> None:
    data = pictures(tmp_path / "data", junk=False)
    options = ["--set", "steps=12", "--set", "checkpoint_every=4", "--set", "colours=3"]
    base = ["train", "patterns-palette", "--data", str(data), *options]
    assert main([*base, "--name", "whole", "--json"]) == 0
    whole = json.loads(capsys.readouterr().out)["adapter"]

    pressed = ctrl_c(at_step=6)
    code = main([*base, "--name", "halves"])
    out, err = capsys.readouterr()
    assert pressed == ["step 6"]
    assert code == 130, err
    assert out == ""
    job = next(j for j in stored_jobs(studio_home) if j.request["name"] == "halves")
    assert f"pausing training job {job.id} at its next step (Ctrl-C again cancels it)" in err
    # it stopped at the next step boundary, with what it has trained kept in its checkpoint
    assert f"paused training job {job.id} at step 6 of 12; its last checkpoint is step 6\n" in err
    assert f"resume it with: aigc-studio train --resume {job.id}\n" in err
    assert str(job.state) == "interrupted"  # the command ended: the job waits for a resume
    assert job.step == 6

    code = main(["train", "--resume", job.id[:10], "--json"])  # the start of an id will do
    out, err = capsys.readouterr()
    assert code == 0, err
    doc = json.loads(out)
    assert doc["job"]["id"] == job.id and doc["job"]["state"] == "succeeded"
    assert {"level": "info", "message": "resumed from the checkpoint of step 6"} in doc["notes"]
    resumed = doc["adapter"]
    assert resumed["name"] == "halves" and resumed["job_id"] == job.id
    assert adapter_content(Path(resumed["path"])) == adapter_content(Path(whole["path"]))
    # a finished training has nothing to resume
    assert main(["train", "--resume", job.id]) == 2
    assert "has finished: its adapter is in the library" in one_error_line(capsys.readouterr().err)


def test_a_second_ctrl_c_cancels_and_the_checkpoint_still_resumes(
    plugins: dict,
    tmp_path: Path,
    studio_home: Path,
    capsys: pytest.CaptureFixture[str],
    ctrl_c: Callable[..., list[str]],
) -> None:
    data = pictures(tmp_path / "data", junk=False)
    pressed = ctrl_c(at_step=5, again=True)
    args = ["--set", "steps=9", "--set", "checkpoint_every=3", "--set", "delay=0.05"]
    code = main(["train", "fake-lora", "--data", str(data), "--name", "n", *args])
    err = capsys.readouterr().err
    assert pressed == ["step 5", "JobStateChanged"]  # the second press: as it paused
    assert code == 130, err
    [job] = stored_jobs(studio_home)
    assert f"cancelling training job {job.id} ..." in err
    assert str(job.state) == "cancelled"
    assert f"training job {job.id} cancelled\n" in err
    assert f"its checkpoint of step 3 is kept: 'aigc-studio train --resume {job.id}' goes on" in err
    # the files it learns from must be those it was submitted with
    (data / "picture-0.png").rename(data / "moved.png")
    assert main(["train", "--resume", job.id]) == 2
    changed = one_error_line(capsys.readouterr().err)
    assert "cannot resume from the checkpoint of step 3: the dataset " in changed
    assert "changed since this training was submitted" in changed
    (data / "moved.png").rename(data / "picture-0.png")
    code = main(["train", "--resume", job.id])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert f"resuming training job {job.id} ('n', cancelled) from its checkpoint of step 3" in err
    assert "resumed from the checkpoint at step 3" in err
    assert Path(out.strip()).is_file()


def test_resume_refuses_what_cannot_go_on(
    plugins: dict,
    tmp_path: Path,
    studio_home: Path,
    capsys: pytest.CaptureFixture[str],
    ctrl_c: Callable[..., list[str]],
) -> None:
    assert main(["generate", "fake-text", "--prompt", "hi", "--set", "max_tokens=2"]) == 0
    capsys.readouterr()
    [generation] = stored_jobs(studio_home)
    assert main(["train", "--resume", generation.id]) == 2
    assert "is a generate job, not a training" in one_error_line(capsys.readouterr().err)

    data = pictures(tmp_path / "data", junk=False)
    ctrl_c(at_step=1, again=True)  # cancelled before its first checkpoint (at step 5)
    options = ["--set", "steps=9", "--set", "delay=0.05"]
    assert main(["train", "fake-lora", "--data", str(data), "--name", "n", *options]) == 130
    capsys.readouterr()
    job = next(j for j in stored_jobs(studio_home) if j.kind == "train")
    assert str(job.state) == "cancelled"
    assert main(["train", "--resume", job.id]) == 2
    err = one_error_line(capsys.readouterr().err)
    assert "was cancelled before its first checkpoint: nothing to resume" in err


def test_a_paused_training_in_json(
    plugins: dict,
    tmp_path: Path,
    studio_home: Path,
    capsys: pytest.CaptureFixture[str],
    ctrl_c: Callable[..., list[str]],
) -> None:
    data = pictures(tmp_path / "data", junk=False)
    ctrl_c(at_step=4)
    options = ["--set", "steps=9", "--set", "checkpoint_every=3", "--set", "sample_every=2"]
    code = main(["train", "fake-lora", "--data", str(data), "--name", "n", *options, "--json"])
    out, err = capsys.readouterr()
    assert code == 130
    assert err == ""
    doc = json.loads(out)
    assert doc["job"]["state"] == "paused" and doc["job"]["step"] == 4
    assert doc["progress"] == {
        "step": 4, "total": 9, "loss": fake_loss(4, "n"), "lr": 1e-4, "validation_loss": None,
    }  # fmt: skip
    assert [s["step"] for s in doc["samples"]] == [2, 4]
    assert all(Path(s["path"]).is_file() for s in doc["samples"])  # saved in the library
    assert doc["adapter"] is None
    assert doc["checkpoint_step"] == 3  # the fake trainer does not checkpoint when paused
    assert doc["resume"] == f"aigc-studio train --resume {doc['job']['id']}"


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT delivery differs on Windows")
def test_ctrl_c_in_a_terminal_pauses_and_a_new_command_resumes(
    plugins: dict[str, str], tmp_path: Path, studio_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = pictures(tmp_path / "data", junk=False)
    command = [str(SCRIPT)] if SCRIPT.is_file() else [sys.executable, "-m", "studio"]
    options = ["--set", "steps=20", "--set", "checkpoint_every=2", "--set", "delay=0.2"]
    proc = subprocess.Popen(
        [*command, "train", "fake-lora", "--data", str(data), "--name", "n", *options],
        env=plugins,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 120
        seen = ""
        # off a terminal a progress line comes at most every second: at the second one, the
        # training is a few steps (and a checkpoint) in
        while time.monotonic() < deadline and seen.count("/20 loss") < 2:
            line = proc.stderr.readline()
            assert line or proc.poll() is None, f"the command ended early: {seen}"
            seen += line
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, seen + err
    assert out == ""
    [job] = stored_jobs(studio_home)
    assert "paused training job" in err and f"aigc-studio train --resume {job.id}" in err
    assert str(job.state) == "interrupted"
    # a command that runs a training holds its run lock: another command opening the studio
    # home marks it interrupted meanwhile, but a resume elsewhere is refused
    from studio.core.studio import HomeLock

    lock = HomeLock(studio_home / "checkpoints" / f"{job.id}.running")
    assert lock.acquire()
    try:
        assert main(["train", "--resume", job.id]) == 2
    finally:
        lock.release()
    refused = one_error_line(capsys.readouterr().err)
    assert f"training job {job.id} is running in another studio process" in refused
    resumed = subprocess.run(
        [*command, "train", "--resume", job.id, "--json"],
        env=plugins,
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
    )
    assert resumed.returncode == 0, resumed.stderr
    doc = json.loads(resumed.stdout)
    assert doc["job"]["state"] == "succeeded" and doc["progress"]["step"] == 20
    assert any(n["message"].startswith("resumed from the checkpoint at step") for n in doc["notes"])


# --- adapters -----------------------------------------------------------------------------------


def test_adapters_lists_the_library(
    plugins: dict, tmp_path: Path, studio_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["adapters"]) == 0
    assert (
        capsys.readouterr().out == "no adapters; train one with 'aigc-studio train TRAINER ...'\n"
    )
    data = pictures(tmp_path / "data", junk=False)
    assert (
        main(
            ["train", "patterns-palette", "--data", str(data), "--name", "warm", "--set", "steps=3"]
        )
        == 0
    )
    assert (
        main(["train", "fake-lora", "--data", str(data), "--name", "noise", "--set", "steps=2"])
        == 0
    )
    capsys.readouterr()
    assert main(["adapters", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == 1
    noise, warm = doc["adapters"]  # newest first
    assert (noise["name"], noise["trainer"], noise["base_model"]) == (
        "noise",
        "fake-lora",
        "fake/tiny-model",
    )
    assert noise["generators"] == [] and noise["usable_with"] == ["fake-image"]
    assert noise["training"] == {
        "steps": 2, "validation_loss": None, "best_validation_loss": None, "best_step": None,
    }  # fmt: skip
    assert (warm["name"], warm["trainer"], warm["base_model"]) == ("warm", "patterns-palette", None)
    assert (
        warm["generators"] == ["patterns"]
        and warm["use"] == "aigc-studio generate patterns --lora warm"
    )
    assert main(["adapters"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "name", "trainer", "base", "model", "for", "created", "steps", "val", "loss", "(final", "/",
        "best)", "path",
    ]  # fmt: skip
    assert lines[1].split()[:4] == ["noise", "fake-lora", "fake/tiny-model", "fake-image"]
    assert lines[2].split()[:4] == ["warm", "patterns-palette", "(none)", "patterns"]
    assert lines[2].endswith(warm["path"])


def test_the_same_name_again_warns_and_the_hint_names_the_new_one(
    plugins: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = pictures(tmp_path / "data", junk=False)
    args = ["train", "patterns-palette", "--data", str(data), "--name", "warm", "--set", "steps=2"]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "warning: the library has an adapter named 'warm' already" in err
    assert "use it: aigc-studio generate patterns --lora warm\n" in err


# --- the progress line ---------------------------------------------------------------------------


def test_training_progress_shows_loss_validation_and_eta() -> None:
    import io

    from studio.core.events import Sample, TextOutput, TrainStep

    stream = io.StringIO()
    printer = EventPrinter(stream, tty=False, line_interval=0.0, eta=lambda: 125.0)
    printer.handle(TrainStep(1, 10, 2.5, 1e-4))
    printer.handle(TrainStep(5, 10, 2.0, 1e-4, validation_loss=2.25))
    printer.handle(TrainStep(6, 10, 1.9, 1e-4))
    printer.handle(Sample(6, TextOutput("The sea\nwas blue.", index=0, extra={"prompt": "The"})))
    printer.handle(TrainStep(10, 10, 1.5, 1e-4))
    lines = stream.getvalue().splitlines()
    assert lines == [
        "[##..........................]  10% 1/10 loss 2.5000  ETA 2m05s",
        "step 5/10: validation loss 2.2500 (loss 2.0000)",
        "[##############..............]  50% 5/10 loss 2.0000  val 2.2500  ETA 2m05s",
        "[################............]  60% 6/10 loss 1.9000  val 2.2500  ETA 2m05s",
        "sample 1 at step 6 ('The'):",
        "  The sea",
        "  was blue.",
        "[############################] 100% 10/10 loss 1.5000  val 2.2500",
    ]
    assert [cli.duration_text(s) for s in (0, 42, 65, 3600 * 2 + 61)] == [
        "0s",
        "42s",
        "1m05s",
        "2h01m",
    ]


def test_status_lines_and_saved_samples() -> None:
    import io

    from studio.core.events import ArtifactSaved, Progress, Sample, TextOutput

    stream = io.StringIO()
    printer = EventPrinter(stream, tty=False, line_interval=0.0)
    printer.handle(Progress(0, 0, "importing accelerate, peft, transformers"))
    printer.handle(Progress(3, 0, "tokens"))  # counted, total unknown
    printer.handle(Sample(6, TextOutput("The sea", index=0)))
    recipe = {"kind": "sample", "index": 0, "training": {"step": 6}}
    printer.handle(ArtifactSaved("a1", Path("/s/step-6-0.txt"), "text", recipe))
    printer.handle(ArtifactSaved("a2", Path("/o/generated.txt"), "text", {"index": 0}))
    assert stream.getvalue().splitlines() == [
        "importing accelerate, peft, transformers",
        "step 3 tokens",
        "sample 1 at step 6:",
        "  The sea",
        f"  saved: {Path('/s/step-6-0.txt')}",
    ]
    watch = cli.TrainingWatch()
    watch.add(Sample(6, TextOutput("The sea", index=0)))
    assert watch.samples[0]["path"] is None
    watch.add(ArtifactSaved("a1", Path("/s/step-6-0.txt"), "text", recipe))
    assert watch.samples[0]["path"] == str(Path("/s/step-6-0.txt"))


# --- the text trainer, end to end --------------------------------------------------------------


@pytest.fixture
def text_plugin(monkeypatch: pytest.MonkeyPatch, studio_home: Path) -> Iterator[None]:
    monkeypatch.setenv("STUDIO_LOAD_PLUGINS", "text")
    yield


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_text_lora_from_the_command_line_to_the_text_generator(
    text_plugin: None, tmp_path: Path, studio_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from studio.testing.models_text import make_tiny_causal_lm, write_text_corpus

    model = make_tiny_causal_lm(tmp_path / "gpt2", "gpt2", seed=0)
    corpus = write_text_corpus(tmp_path / "corpus", files=3, repeats=4)
    (corpus / "empty.txt").write_bytes(b"")
    settings = {
        "steps": 6, "batch_size": 2, "sequence_length": 32, "overlap": 8, "rank": 4, "alpha": 8,
        "learning_rate": 0.01, "checkpoint_every": 3, "validate_every": 3, "sample_every": 6,
        "sample_prompts": "The painter", "sample_max_tokens": 4,
    }  # fmt: skip
    sets = [part for key, value in settings.items() for part in ("--set", f"{key}={value}")]
    args = ["train", "text-lora", "--base", str(model), "--data", str(corpus), "--name", "prose"]
    code = main([*args, *sets])
    out, err = capsys.readouterr()
    assert code == 0, err
    adapter = Path(out.strip())
    assert (adapter / "adapter_config.json").is_file()
    assert (adapter / "adapter_model.safetensors").is_file()
    assert f"dataset {corpus} (trainer text-lora): 3 usable files, 1 skipped" in err
    assert "  skipped empty.txt: " in err
    assert "step 3/6: validation loss " in err
    assert "sample 1 at step 6 ('The painter'):" in err
    # the last step is sampled once (sample_every = steps), and saved in the library
    [saved] = [Path(line[9:]) for line in err.splitlines() if line.startswith("  saved: ")]
    assert saved.is_file() and saved.is_relative_to(studio_home / "outputs" / "samples")
    assert "perplexity on the held-out text: " in err
    assert "  training: 6 steps, validation loss " in err
    use = f"use it: aigc-studio generate text-generation --model {model} --lora prose --prompt TEXT"
    assert use in err

    assert main(["adapters", "--json"]) == 0
    [listed] = json.loads(capsys.readouterr().out)["adapters"]
    assert listed["trainer"] == "text-lora" and listed["base_model"] == str(model)
    assert listed["usable_with"] == ["text-generation"]
    training = listed["training"]
    assert training["steps"] == 6 and training["validation_loss"] is not None
    assert training["best_validation_loss"] <= training["validation_loss"]
    assert listed["recipe"]["result"]["steps"] == 6

    command = ["generate", "text-generation", "--model", str(model), "--prompt", "The painter"]
    options = ["--seed", "1", "--set", "max_new_tokens=4"]
    assert main([*command, "--lora", "prose", *options, "--json"]) == 0
    [artifact] = json.loads(capsys.readouterr().out)["artifacts"]
    assert [a["ref"] for a in artifact["recipe"]["adapters"]] == [str(adapter)]
