"""The plugin's own tests: the studio's contracts, and what this plugin promises on top.

The fixtures (``studio_app``, ``studio_home``, ...) come from aigc-studio's pytest plugin, active
as soon as aigc-studio is installed. ``studio_app`` is a studio in a temporary home that loads no
installed plugin: the contracts register the class they test themselves.
"""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from studio_patterns.generator import PatternGenerator
from studio_patterns.trainer import PaletteTrainer

from studio import InvalidRequest, Preview, Progress, TrainStep
from studio.testing import GeneratorContract, TrainerContract, run_generator, run_trainer

RED, BLUE = (200, 30, 40), (20, 60, 210)


def make_pictures(folder: Path, colours: tuple[tuple[int, int, int], ...] = (RED, BLUE)) -> Path:
    """A few small noisy pictures, each of two of ``colours``, and a file that is no picture."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i, colour in enumerate(colours):
        pixels = np.zeros((24, 32, 3), dtype=np.int64)
        pixels[:] = colour
        pixels[:, : 8 * (i + 1)] = colours[(i + 1) % len(colours)]
        noisy = np.clip(pixels + rng.integers(-12, 13, size=pixels.shape), 0, 255)
        Image.fromarray(noisy.astype(np.uint8)).save(folder / f"picture-{i}.png")
    (folder / "notes.txt").write_text("not a picture", encoding="utf-8")
    return folder


class TestPatternGenerator(GeneratorContract):
    generator_cls = PatternGenerator
    options = {"width": 64, "height": 48, "octaves": 3}


class TestPaletteTrainer(TrainerContract):
    trainer_cls = PaletteTrainer
    options = {"colours": 2, "steps": 4, "checkpoint_every": 1, "sample_pixels": 256}

    @pytest.fixture
    def dataset(self, tmp_path: Path) -> Path:
        return make_pictures(tmp_path / "pictures")


def pixels_of(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.int64).reshape(-1, 3)


def test_a_preview_per_octave(studio_app) -> None:
    options = {"width": 32, "height": 32, "octaves": 4}
    events, _ = run_generator(PatternGenerator, "", None, options, 1, studio_app)
    assert [e.step for e in events if isinstance(e, Preview)] == [1, 2, 3, 4]
    assert [e.step for e in events if isinstance(e, Progress) and e.total == 4] == [1, 2, 3, 4]


def test_the_auto_palette_is_recorded_and_replays(studio_app) -> None:
    options = {"width": 32, "height": 32}
    _, [first] = run_generator(PatternGenerator, "", None, options, 3, studio_app)
    chosen = first.recipe["options"]["palette"]
    assert chosen != "auto"  # ctx.record_options put the palette the seed chose in the recipe
    options["palette"] = chosen
    _, [again] = run_generator(PatternGenerator, "", None, options, 3, studio_app)
    assert np.array_equal(pixels_of(again.path), pixels_of(first.path))


def test_the_trainer_learns_the_colours_of_the_pictures(studio_app, tmp_path: Path) -> None:
    from studio_patterns.palette import load_palette

    pictures = make_pictures(tmp_path / "pictures")
    events, [adapter] = run_trainer(
        PaletteTrainer, pictures, studio_app, options={"colours": 2, "steps": 5}, name="red-blue"
    )
    losses = [e.loss for e in events if isinstance(e, TrainStep)]
    assert len(losses) == 5 and losses[-1] < losses[0]
    assert all(b <= a for a, b in pairwise(losses))  # k-means never worsens
    assert adapter.base_model is None  # it uses no model, and its adapter says so
    assert adapter.generators == (PatternGenerator.id,)  # it names what it applies to instead
    colours, shares = load_palette(adapter.path)
    learned = np.array(sorted(np.round(colours * 255).tolist()))
    assert np.abs(learned - np.array(sorted([BLUE, RED]))).max() <= 3  # the noise averages out
    assert sorted(shares.tolist()) == pytest.approx([576 / 1536, 960 / 1536])  # blue, red


def test_a_learned_palette_colours_the_patterns(studio_app, tmp_path: Path) -> None:
    from studio_patterns.palette import load_palette

    pictures = make_pictures(tmp_path / "pictures")
    _, [adapter] = run_trainer(
        PaletteTrainer, pictures, studio_app, options={"colours": 2}, name="red-blue"
    )
    options = {"width": 32, "height": 32, "palette": "mono"}
    _, [made] = run_generator(
        PatternGenerator, "", None, options, 5, studio_app, loras=["red-blue:1.0"]
    )
    pixels = pixels_of(made.path)
    # weight 1: the learned gradient alone, from the darker learned colour to the lighter one,
    # and no grey of the "mono" palette
    low, high = np.round(load_palette(adapter.path)[0].astype(np.float64) * 255)
    along = np.clip((pixels - low) @ (high - low) / ((high - low) @ (high - low)), 0, 1)
    off = np.linalg.norm(pixels - (low + along[:, None] * (high - low)), axis=1)
    assert off.max() <= 2  # rounding only
    assert {tuple(low), tuple(high)} <= set(map(tuple, pixels.astype(float).tolist()))
    [used] = made.recipe["adapters"]
    assert used["weight"] == 1.0 and used["sha256"] == adapter.sha256  # the recipe names it


def test_a_palette_weight_outside_0_to_1_is_refused(studio_app, tmp_path: Path) -> None:
    pictures = make_pictures(tmp_path / "pictures")
    run_trainer(PaletteTrainer, pictures, studio_app, options={"steps": 2}, name="mine")
    with pytest.raises(InvalidRequest, match=r"weight 2\.0 is outside 0\.\.1"):
        run_generator(PatternGenerator, "", None, {}, 1, studio_app, loras=["mine:2"])
