"""aigc-studio: a desktop creative studio for text, images and audio from local models.

The public API for plugin authors is what this module exports; everything here is Qt-free and
imports no model library.
"""

from studio.core.events import (
    AdapterOutput,
    AudioOutput,
    ImageOutput,
    Note,
    Partial,
    Preview,
    Progress,
    Result,
    Sample,
    TextOutput,
    TrainStep,
)
from studio.core.generator import GenerationRequest, Generator, LoraSpec, RunRequest
from studio.core.hookspecs import hookimpl
from studio.core.options import BaseOptions
from studio.core.training import IngestReport, Trainer, TrainingRequest, TrainRunRequest

__version__ = "0.1.0"

__all__ = [
    "AdapterOutput",
    "AudioOutput",
    "BaseOptions",
    "GenerationRequest",
    "Generator",
    "ImageOutput",
    "IngestReport",
    "LoraSpec",
    "Note",
    "Partial",
    "Preview",
    "Progress",
    "Result",
    "RunRequest",
    "Sample",
    "TextOutput",
    "TrainRunRequest",
    "TrainStep",
    "Trainer",
    "TrainingRequest",
    "__version__",
    "hookimpl",
]
