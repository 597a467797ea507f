"""Loading a diffusers pipeline from a resolved reference, and placing it on the device.

- a diffusers folder or hub snapshot: ``DiffusionPipeline.from_pretrained`` (offline: the files are
  already on disk), safetensors only unless pickle was allowed for that model, the plain
  weights (those refs checked and hashed; half precision is a cast), no safety checker;
- a single ``.safetensors`` checkpoint as shared on model sites: its family is read from its keys
  (only the header and a few tensors are read), then ``from_single_file`` with a configuration
  folder: the ``checkpoint_config`` option, else the base model's configs from the hub cache
  (downloaded once, configs only, unless offline).

Placement: CUDA gets the whole pipeline in fp16/bf16 with channels-last UNet and PyTorch SDPA
attention (the diffusers default), or model CPU offload when the cache budget says it does not
fit; Apple MPS gets attention slicing on machines under 64 GB; the CPU runs float32.

Every safetensors file is checked (header and length) before loading, so a truncated download
is reported as such rather than as a deep loader error.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio import InvalidRequest, ModelNotFound, quiet_model_loading

if TYPE_CHECKING:
    from studio import ResolvedModel

log = logging.getLogger(__name__)

_MAX_HEADER = 100 * 1024 * 1024
_BYTES = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
}
_FLOATS = {"F64", "F32", "F16", "BF16"}

#: single-file model type (diffusers' inference from the keys) -> pipeline class
SINGLE_FILE_PIPELINES = {
    "v1": "StableDiffusionPipeline",
    "v2": "StableDiffusionPipeline",
    "inpainting": "StableDiffusionInpaintPipeline",
    "inpainting_v2": "StableDiffusionInpaintPipeline",
    "xl_base": "StableDiffusionXLPipeline",
    "playground-v2-5": "StableDiffusionXLPipeline",
    "xl_inpaint": "StableDiffusionXLInpaintPipeline",
    "xl_refiner": "StableDiffusionXLImg2ImgPipeline",
    "sd3": "StableDiffusion3Pipeline",
    "sd35_medium": "StableDiffusion3Pipeline",
    "sd35_large": "StableDiffusion3Pipeline",
}
_CONFIG_PATTERNS = ["*.json", "**/*.json", "*.txt", "**/*.txt", "**/*.model"]


# --- safetensors headers -----------------------------------------------------------------------


def read_header(path: Path) -> dict[str, Any]:
    """The JSON header of a safetensors file; ``ModelNotFound`` if the file is damaged."""
    path = Path(path)
    size = path.stat().st_size
    problem = None
    header: dict[str, Any] = {}
    if size < 8:
        problem = "shorter than a safetensors header"
    else:
        with open(path, "rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            if n <= 0 or n > min(_MAX_HEADER, size - 8):
                problem = "bad header length"
            else:
                try:
                    header = json.loads(fh.read(n))
                except ValueError:
                    problem = "unreadable header"
        if problem is None:
            end = max(
                (int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"),
                default=0,
            )
            if 8 + n + end > size:
                problem = f"truncated: {size:,} bytes, the header announces {8 + n + end:,}"
    if problem:
        raise ModelNotFound(
            f"{path.name} is not a valid .safetensors file ({problem}); the download may be "
            "incomplete or the file corrupt: download it again"
        )
    return header


@dataclass(frozen=True)
class WeightsSummary:
    """What the weights files of a model hold (from their headers)."""

    float_params: int
    other_bytes: int
    files: int

    def bytes_as(self, dtype: str) -> int:
        """Memory once loaded in ``dtype`` (floating tensors converted, others as stored)."""
        per = 4 if dtype == "float32" else 2
        return self.float_params * per + self.other_bytes


def check_weights(resolved: ResolvedModel) -> WeightsSummary:
    """Read every safetensors header of the model (damaged files raise ``ModelNotFound``)."""
    params = other = count = 0
    for file in resolved.weights_files():
        if file.suffix != ".safetensors":
            continue
        try:
            header = read_header(file)
        except ModelNotFound as exc:
            raise ModelNotFound(f"model {resolved.ref!r}: {exc}") from None
        count += 1
        for key, info in header.items():
            if key == "__metadata__":
                continue
            numel = 1
            for dim in info.get("shape", []):
                numel *= int(dim)
            if info.get("dtype") in _FLOATS:
                params += numel
            else:
                other += numel * _BYTES.get(info.get("dtype", ""), 4)
    return WeightsSummary(params, other, count)


class _LazyCheckpoint(Mapping[str, Any]):
    """A safetensors file seen as a state dict that reads a tensor only when it is looked at."""

    def __init__(self, path: Path) -> None:
        from safetensors import safe_open

        self._fh = safe_open(str(path), framework="pt")
        self._keys = list(self._fh.keys())
        self._key_set = set(self._keys)

    def __getitem__(self, key: str) -> Any:
        if key not in self._key_set:
            raise KeyError(key)
        return self._fh.get_tensor(key)

    def __contains__(self, key: object) -> bool:
        return key in self._key_set

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


def single_file_type(path: Path) -> str:
    """diffusers' model type of a single-file checkpoint (``v1``, ``xl_base``, ...)."""
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type

    return str(infer_diffusers_model_type(_LazyCheckpoint(path)))


# --- loading -----------------------------------------------------------------------------------


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:400]


def _config_folder(repo_or_dir: str, *, allow_download: bool, ref: str) -> Path:
    """A folder with a diffusers pipeline's configs: a local folder, or a hub repo's configs.

    ``allow_download`` is the run's policy (``not ctx.offline``), decided by the studio.
    """
    local = Path(repo_or_dir).expanduser()
    if local.is_dir():
        if not (local / "model_index.json").is_file():
            raise ModelNotFound(
                f"checkpoint_config {repo_or_dir!r} is not a diffusers folder (no model_index.json)"
            )
        return local
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    from studio import hub_cache_dir

    cache = hub_cache_dir()
    try:
        return Path(
            snapshot_download(
                repo_or_dir, allow_patterns=_CONFIG_PATTERNS, local_files_only=True, cache_dir=cache
            )
        )
    except (LocalEntryNotFoundError, FileNotFoundError):
        pass
    if not allow_download:
        raise ModelNotFound(
            f"model {ref!r} is a single-file checkpoint; loading it needs the configuration of "
            f"{repo_or_dir!r}, which is not in the hub cache ({cache}) and downloads are off. "
            "Go online once (only the small config files are fetched), or set the "
            "checkpoint_config option to a local diffusers folder of the same family."
        )
    try:
        return Path(
            snapshot_download(repo_or_dir, allow_patterns=_CONFIG_PATTERNS, cache_dir=cache)
        )
    except Exception as exc:
        raise ModelNotFound(
            f"model {ref!r}: could not fetch the configuration of {repo_or_dir!r}: {_one_line(exc)}"
        ) from None


def _load_single_file(
    resolved: ResolvedModel,
    torch_dtype: Any,
    *,
    checkpoint_config: str | None,
    allow_download: bool,
) -> Any:
    import diffusers
    from diffusers.loaders.single_file_utils import DIFFUSERS_DEFAULT_PIPELINE_PATHS

    model_type = single_file_type(resolved.path)
    class_name = SINGLE_FILE_PIPELINES.get(model_type)
    if class_name is None:
        raise InvalidRequest(
            f"model {resolved.ref!r} is a single-file checkpoint of type {model_type!r}, which "
            "the image generators do not load from one file; use its diffusers folder or hub id"
        )
    config = (
        checkpoint_config
        or DIFFUSERS_DEFAULT_PIPELINE_PATHS[model_type]["pretrained_model_name_or_path"]
    )
    folder = _config_folder(config, allow_download=allow_download, ref=resolved.ref)
    cls = getattr(diffusers, class_name)
    kwargs: dict[str, Any] = {"config": str(folder), "local_files_only": True, "dtype": torch_dtype}
    if (
        class_name.startswith("StableDiffusion")
        and "XL" not in class_name
        and "3" not in class_name
    ):
        kwargs["requires_safety_checker"] = False
    return cls.from_single_file(str(resolved.path), **kwargs)


def _load_folder(resolved: ResolvedModel, torch_dtype: Any, *, allow_pickle: bool) -> Any:
    from diffusers import DiffusionPipeline

    index_path = resolved.path / "model_index.json"
    if not index_path.is_file():
        kind = "a transformers model" if (resolved.path / "config.json").is_file() else "unknown"
        raise ModelNotFound(
            f"model {resolved.ref!r} is not a diffusers pipeline (no model_index.json; it looks "
            f"like {kind}); image generators need a diffusers folder, hub id or .safetensors file"
        )
    index = json.loads(index_path.read_text(encoding="utf-8"))
    kwargs: dict[str, Any] = {
        "dtype": torch_dtype,
        "local_files_only": True,
        "use_safetensors": None if allow_pickle else True,
    }
    # the studio shows the artist what they asked for: no NSFW filter model (1.2 GB) is loaded
    if "safety_checker" in index:
        kwargs["safety_checker"] = None
        kwargs["requires_safety_checker"] = False
    if "feature_extractor" in index:
        kwargs["feature_extractor"] = None
    # the plain weights, always: they are what refs checked, hashed into the recipe and
    # downloaded; half precision is a cast at load, not a second set of files
    return DiffusionPipeline.from_pretrained(str(resolved.path), **kwargs)


def place(pipe: Any, device: str, *, offload: bool) -> None:
    """Put a freshly loaded pipeline where it runs (see the module docs)."""
    import torch

    if device.startswith("cuda"):
        if offload:
            pipe.enable_model_cpu_offload(device=device)
        else:
            pipe.to(device)
        unet = getattr(pipe, "unet", None)
        if unet is not None:
            unet.to(memory_format=torch.channels_last)
    elif device == "mps":
        pipe.to("mps")
        from studio import host_memory_total

        if host_memory_total() < 64 * 1024**3:
            pipe.enable_attention_slicing()
    elif device != "cpu":
        pipe.to(device)


def make_loader(
    resolved: ResolvedModel,
    *,
    device: str,
    dtype_name: str,
    allow_pickle: bool,
    checkpoint_config: str | None,
    allow_download: bool,
    offload: bool,
) -> Callable[[], Any]:
    """The cache loader for ``resolved``: a pipeline on ``device``, ready to run."""

    def load() -> Any:
        from studio import is_out_of_memory, torch_dtype

        check_weights(resolved)
        dtype = torch_dtype(dtype_name)
        try:
            with quiet_model_loading():
                if resolved.source == "file":
                    pipe = _load_single_file(
                        resolved,
                        dtype,
                        checkpoint_config=checkpoint_config,
                        allow_download=allow_download,
                    )
                else:
                    pipe = _load_folder(resolved, dtype, allow_pickle=allow_pickle)
        except (InvalidRequest, ModelNotFound):
            raise
        except Exception as exc:
            if is_out_of_memory(exc):
                raise
            raise ModelNotFound(
                f"model {resolved.ref!r} could not be loaded as an image pipeline: "
                f"{type(exc).__name__}: {_one_line(exc)}"
            ) from exc
        pipe.set_progress_bar_config(disable=True)
        place(pipe, device, offload=offload)
        return pipe

    return load


def needs_offload(
    summary: WeightsSummary, dtype_name: str, device: str, fits: Callable[[int, str], bool]
) -> bool:
    """Whether the pipeline should run with model CPU offload (CUDA only, when over budget)."""
    if not device.startswith("cuda"):
        return False
    return not fits(summary.bytes_as(dtype_name), device)
