"""Placement mechanics under the model cache: measuring an object's tensors, moving it to a
device. (Recognising models placed by offload hooks is tested with the cache that relies on it,
in test_cache.py.)"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from studio.core.placement import can_move, measure_bytes, move_to


def test_measure_bytes_of_modules_and_containers() -> None:
    linear = nn.Linear(4, 3)  # 12 + 3 float32
    assert measure_bytes(linear) == 15 * 4
    half = nn.Linear(4, 3).to(torch.float16)
    assert measure_bytes(half) == 15 * 2
    norm = nn.BatchNorm1d(5)  # weight, bias + running mean/var (float) + num_batches (int64)
    assert measure_bytes(norm) == 4 * 5 * 4 + 8
    assert measure_bytes({"a": linear, "b": [norm, (half,)]}) == 60 + 88 + 30
    assert measure_bytes([linear, linear, {"again": linear}]) == 60  # shared: counted once
    assert measure_bytes(torch.zeros(10, dtype=torch.float64)) == 80
    assert measure_bytes("tokenizer") == 0 and measure_bytes(object()) == 0


def test_measure_bytes_counts_tied_weights_once() -> None:
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(10, 4)
            self.head = nn.Linear(4, 10, bias=False)
            self.head.weight = self.embed.weight

    assert measure_bytes(Tied()) == 40 * 4


def test_measure_bytes_of_a_pipeline_uses_its_components() -> None:
    class Pipeline:
        def __init__(self, **components: Any) -> None:
            self.components = components

    shared = nn.Linear(8, 8)
    pipe = Pipeline(unet=shared, text_encoder=nn.Linear(2, 2), tokenizer="tok", scheduler=None)
    assert measure_bytes(pipe) == (72 + 6) * 4
    other = Pipeline(unet=shared, vae=nn.Linear(1, 1))  # from_pipe shares components
    assert measure_bytes([pipe, other]) == (72 + 6 + 2) * 4


def test_move_to_moves_modules_tensors_and_containers() -> None:
    linear = nn.Linear(2, 2)
    assert move_to(linear, "cpu") is linear
    box: dict[str, Any] = {
        "t": torch.ones(2),
        "items": [torch.zeros(1)],
        "pair": (torch.ones(1), "text"),
    }
    moved = move_to(box, "cpu")
    assert moved is box and moved["pair"][1] == "text"
    assert move_to("no .to here", "cpu") == "no .to here"
    meta = nn.Linear(2, 2).to("meta")
    assert move_to(meta, "meta").weight.is_meta and measure_bytes(meta) == 0


def test_dataclass_bundles_are_measured_and_moved() -> None:
    @dataclass
    class Bundle:
        model: nn.Module
        tokenizer: str
        extra: tuple[torch.Tensor, ...]

    bundle = Bundle(nn.Linear(4, 3), "tok", (torch.zeros(5),))
    assert measure_bytes(bundle) == 60 + 20
    assert move_to(bundle, "cpu") is bundle and bundle.tokenizer == "tok"
    assert can_move(bundle) and not can_move(Bundle(None, "tok", ()))  # type: ignore[arg-type]
