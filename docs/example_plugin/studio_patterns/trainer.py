"""A trainer that learns a colour palette from a folder of the artist's pictures (k-means).

It shows what every trainer does: ``ingest`` reports which files it can use (and why not the
others) without training; ``run`` calls ``ctx.step_boundary()`` before each step, yields a
``TrainStep`` with the step's loss, saves its whole state through ``ctx.checkpoints`` and resumes
from the latest checkpoint exactly where it stopped, and ends with ``Result(AdapterOutput(...))``:
a palette file the studio puts in its adapter library, which ``PatternGenerator`` applies. It
starts from no model (``uses_model = False``): its adapter names the generator it is for instead.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from studio import (
    AdapterOutput,
    BaseOptions,
    ImageOutput,
    IngestReport,
    InvalidRequest,
    Note,
    PluginEvent,
    Result,
    Sample,
    Trainer,
    TrainingRun,
    TrainStep,
    ingest_dataset,
)
from studio_patterns.generator import PatternGenerator
from studio_patterns.palette import PALETTE_FILE, save_palette, swatch

if TYPE_CHECKING:
    from studio import TrainContext


class PaletteOptions(BaseOptions):
    """The trainer's settings (a form in the Training panel)."""

    colours: int = Field(5, ge=1, le=16, description="How many colours to learn.")
    steps: int = Field(30, ge=1, le=1000, description="k-means iterations (one step each).")
    sample_pixels: int = Field(
        4096, ge=64, le=1_000_000, description="Pixels drawn from the pictures to learn from."
    )
    checkpoint_every: int = Field(10, ge=1, le=1000, description="Steps between checkpoints.")
    sample_every: int = Field(
        0, ge=0, le=1000, description="Steps between swatches of the palette so far (0: none)."
    )
    seed: int = Field(0, ge=0, lt=2**32, description="Seed of the pixel sample and first colours.")


class PaletteTrainer(Trainer[PaletteOptions]):
    """Learns the main colours of a set of pictures, and how much of them each one covers."""

    id = "patterns-palette"
    name = "Palette from pictures"
    modality = "image"
    uses_model = False  # it learns from the pictures alone: no base model to choose or record
    Options = PaletteOptions
    description = "Learns a colour palette from your pictures, for the Patterns generator."

    def ingest(self, dataset: Path, options: PaletteOptions) -> IngestReport:
        """Which files are pictures this trainer can learn from; the others with the reason."""
        # the studio's checks: every picture decoded, in RGB or grey, without transparency ...
        report = ingest_dataset(dataset, kinds=("image",), min_image_side=8)
        report.notes.append(f"{len(report.usable)} picture(s); {options.colours} colours to learn")
        return report

    def run(self, request: TrainingRun[PaletteOptions], ctx: TrainContext) -> Iterator[PluginEvent]:
        from studio_patterns import kmeans  # numpy and Pillow load here, not at plugin listing

        options = request.options
        store = ctx.checkpoints
        assert store is not None, "the studio gives every training a checkpoint store"
        report = self.ingest(request.dataset, options)
        files = report.usable
        pixels = kmeans.sample(kmeans.load_pixels(files), options.sample_pixels, options.seed)
        fingerprint = kmeans.fingerprint(files, options.model_dump())

        latest = store.latest()
        if latest is None:
            step, colours = 0, kmeans.initial_colours(pixels, options.colours, options.seed)
        else:
            step, colours = restore(latest, fingerprint)
            yield Note(f"resumed from the checkpoint of step {step}")

        def checkpoint() -> None:
            store.save(step, checkpoint_writer(step, colours, fingerprint))

        while step < options.steps:
            # here the studio may cancel, lend the device, or hold the training for a pause
            # (after a checkpoint: the pause may outlast the process)
            ctx.step_boundary(before_hold=checkpoint)
            step += 1
            colours, loss = kmeans.lloyd_step(pixels, colours)
            yield TrainStep(step, options.steps, loss)
            if options.sample_every and step % options.sample_every == 0:
                picture = swatch(colours, kmeans.shares(pixels, colours))
                yield Sample(step, ImageOutput(picture, seed=options.seed))
            if step % options.checkpoint_every == 0 or step == options.steps:
                checkpoint()

        request.output_dir.mkdir(parents=True, exist_ok=True)
        shares = kmeans.shares(pixels, colours)
        path = save_palette(request.output_dir / PALETTE_FILE, colours, shares)
        swatch(colours, shares).save(request.output_dir / "palette.png")
        yield Result(
            AdapterOutput(
                path=path,
                name=request.name,
                modality="image",
                generators=(PatternGenerator.id,),  # what the palette applies to
                # what it learnt from: the dataset's manifest hash (the library has the manifest)
                extra={"pictures": len(files), "steps": step, "dataset": report.manifest.sha256},
            )
        )


def checkpoint_writer(step: int, colours: Any, fingerprint: str) -> Callable[[Path], None]:
    """The ``write(folder)`` for ``ctx.checkpoints.save``: everything a resume needs."""
    from safetensors.numpy import save_file

    def write(folder: Path) -> None:
        save_file({"colours": colours}, str(folder / "state.safetensors"))  # float64, exact
        state = {"step": step, "fingerprint": fingerprint}
        (folder / "state.json").write_text(json.dumps(state), encoding="utf-8")

    return write


def restore(folder: Path, fingerprint: str) -> tuple[int, Any]:
    """``(step, colours)`` from a checkpoint folder, refused if the run changed since."""
    from safetensors.numpy import load_file

    state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
    if state["fingerprint"] != fingerprint:
        raise InvalidRequest(
            f"the pictures or settings changed since the checkpoint of step {state['step']}: "
            "start a new training to learn from them"
        )
    return int(state["step"]), load_file(str(folder / "state.safetensors"))["colours"]
