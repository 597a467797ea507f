"""aigc-studio: a desktop creative studio for text, images and audio from local models.

The public API for plugin authors is what this module exports (and the testing kit,
``studio.testing``); a plugin imports nothing else from the studio. Everything here is Qt-free
and imports no model library. ``API_VERSION`` is the version of this API; a plugin declares the
range it supports (``studio_api = ">=1.0,<2"`` in its module).
"""

from studio.core.background import Emit
from studio.core.context import RecipeNotes, RunContext, TrainContext
from studio.core.datasets import (
    DatasetFile,
    DatasetManifest,
    ManifestChanges,
    ManifestEntry,
    compare_manifests,
    ingest_dataset,
    split_validation,
)
from studio.core.devices import (
    default_dtype,
    device_memory_total,
    empty_device_caches,
    host_memory_total,
    is_host,
    is_out_of_memory,
    torch_dtype,
)
from studio.core.errors import (
    Cancelled,
    InvalidRequest,
    ModelNotFound,
    OptionsError,
    PluginError,
    StudioError,
    UnsafeWeightsError,
)
from studio.core.events import (
    AdapterOutput,
    AudioOutput,
    ImageOutput,
    Modality,
    Note,
    Partial,
    PluginEvent,
    Preview,
    Progress,
    Result,
    Sample,
    TextOutput,
    TrainStep,
)
from studio.core.finetune import (
    FineTuneLoop,
    LoopResult,
    LoopSettings,
    ResumeMismatch,
    TrainingFailed,
    run_fingerprint,
    steps_for_epochs,
)
from studio.core.generator import GenerationRequest, GenerationRun, Generator, LoraSpec
from studio.core.hashing import sha256_file
from studio.core.hookspecs import API_VERSION, hookimpl
from studio.core.hub import hub_cache_dir
from studio.core.options import BaseOptions
from studio.core.quiet import quiet_model_loading
from studio.core.refs import ResolvedModel, locate_model
from studio.core.training import IngestReport, Trainer, TrainingRequest, TrainingRun
from studio.core.units import human_size

__version__ = "0.1.0"

__all__ = [
    "API_VERSION",
    "AdapterOutput",
    "AudioOutput",
    "BaseOptions",
    "Cancelled",
    "DatasetFile",
    "DatasetManifest",
    "Emit",
    "FineTuneLoop",
    "GenerationRequest",
    "GenerationRun",
    "Generator",
    "ImageOutput",
    "IngestReport",
    "InvalidRequest",
    "LoopResult",
    "LoopSettings",
    "LoraSpec",
    "ManifestChanges",
    "ManifestEntry",
    "Modality",
    "ModelNotFound",
    "Note",
    "OptionsError",
    "Partial",
    "PluginError",
    "PluginEvent",
    "Preview",
    "Progress",
    "RecipeNotes",
    "ResolvedModel",
    "Result",
    "ResumeMismatch",
    "RunContext",
    "Sample",
    "StudioError",
    "TextOutput",
    "TrainContext",
    "TrainStep",
    "Trainer",
    "TrainingFailed",
    "TrainingRequest",
    "TrainingRun",
    "UnsafeWeightsError",
    "__version__",
    "compare_manifests",
    "default_dtype",
    "device_memory_total",
    "empty_device_caches",
    "hookimpl",
    "host_memory_total",
    "hub_cache_dir",
    "human_size",
    "ingest_dataset",
    "is_host",
    "is_out_of_memory",
    "locate_model",
    "quiet_model_loading",
    "run_fingerprint",
    "sha256_file",
    "split_validation",
    "steps_for_epochs",
    "torch_dtype",
]
