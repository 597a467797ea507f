"""Devices: which accelerator to run on, its memory, dtypes, CPU threads, out-of-memory errors.

torch is imported inside the functions that need it, never at import time.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any

from studio.core.errors import InvalidRequest

_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
_DTYPES = {
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
}
_OOM_TEXT = ("out of memory", "can't allocate memory", "cannot allocate memory")


def resolve_device(setting: str = "auto") -> str:
    """The concrete device for a setting: ``"cpu"``, ``"cuda:N"`` or ``"mps"``.

    ``auto`` picks CUDA, then Apple MPS, then the CPU. A device that was asked for by name but is
    not there raises :class:`InvalidRequest` saying what is available.
    """
    name = (setting or "auto").strip().lower()
    if not _DEVICE_RE.match(name):
        raise InvalidRequest(f"unknown device {setting!r}; allowed: auto, cpu, cuda, cuda:N, mps")
    if name == "cpu":
        return "cpu"
    import torch

    cuda_count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    mps = _mps_available()
    if name == "auto":
        if cuda_count:
            return "cuda:0"
        return "mps" if mps else "cpu"
    if name == "mps":
        if not mps:
            raise InvalidRequest(
                f"device 'mps' was asked for but Apple MPS is not available here; "
                f"available: {', '.join(available_devices())}"
            )
        return "mps"
    index = int(name.partition(":")[2] or 0)
    if not cuda_count:
        built = "this torch build has no CUDA" if torch.version.cuda is None else "no GPU found"
        raise InvalidRequest(
            f"device {setting!r} was asked for but CUDA is not available ({built}); "
            f"available: {', '.join(available_devices())}. Use 'auto' or 'cpu'."
        )
    if index >= cuda_count:
        raise InvalidRequest(
            f"device {setting!r} does not exist: {cuda_count} CUDA device(s), "
            f"cuda:0 to cuda:{cuda_count - 1}"
        )
    return f"cuda:{index}"


def available_devices() -> list[str]:
    """Every device usable here, CPU last (``["cuda:0", "cuda:1", "cpu"]``)."""
    import torch

    found = (
        [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    )
    if _mps_available():
        found.append("mps")
    return [*found, "cpu"]


def is_host(device: str) -> bool:
    """Whether ``device`` is the CPU (whose memory is the host memory)."""
    return device == "cpu" or device.startswith("cpu:")


def device_memory_total(device: str) -> int | None:
    """Bytes of memory of an accelerator; ``None`` for the CPU (it uses host memory) or unknown."""
    if is_host(device):
        return None
    import torch

    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            return None
        index = int(device.partition(":")[2] or 0)
        return int(torch.cuda.get_device_properties(index).total_memory)
    if device == "mps" and _mps_available():
        recommended = getattr(torch.mps, "recommended_max_memory", None)
        return int(recommended()) if recommended is not None else None
    return None


def host_memory_total() -> int:
    """Bytes of system memory this process may use (the container's limit when it is lower)."""
    total = _physical_memory()
    limit = _cgroup_limit()
    return min(total, limit) if limit else total


def default_dtype(device: str, prefer: str = "float16") -> str:
    """The dtype to load weights in on ``device``.

    ``prefer`` is ``"float16"`` (half precision wanted; the default), ``"bfloat16"`` or
    ``"float32"``. The CPU always gets float32 (half precision is slow or unsupported there).
    On CUDA half precision means bfloat16 when the GPU supports it (no fp16 overflow), else
    float16; on MPS it means float16.
    """
    wanted = torch_dtype_name(prefer)
    if is_host(device) or wanted == "float32":
        return "float32"
    if device.startswith("cuda"):
        import torch

        try:
            bf16 = bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
        except Exception:  # no usable CUDA: the device string is wrong, fp16 is the safe answer
            bf16 = False
        return "bfloat16" if bf16 else "float16"
    return "float16"


def torch_dtype_name(name: str) -> str:
    """The canonical dtype name (``float32``, ``float16``, ``bfloat16``) for a name or alias."""
    key = str(name).strip().lower().removeprefix("torch.")
    if key not in _DTYPES:
        raise InvalidRequest(
            f"unknown dtype {name!r}; allowed: float32 (fp32), float16 (fp16), bfloat16 (bf16)"
        )
    return _DTYPES[key]


def torch_dtype(name: str) -> Any:
    """The ``torch.dtype`` for a name such as ``"float16"``, ``"bf16"`` or ``"float32"``."""
    import torch

    return getattr(torch, torch_dtype_name(name))


def cpu_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def configure_cpu_threads(n: int | None = None) -> int:
    """Set torch's CPU threads; default cores - 1 (at least 1) so the GUI stays live. Returns n."""
    if n is None:
        n = max(1, cpu_cores() - 1)
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise InvalidRequest(f"cpu_threads must be a whole number >= 1, got {n!r}")
    import torch

    torch.set_num_threads(n)
    return n


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` (or an error it was raised from) is an out-of-memory error.

    Recognises ``MemoryError``, ``torch.cuda.OutOfMemoryError`` (and torch's other
    ``OutOfMemoryError``), and a ``RuntimeError`` saying "out of memory" (CUDA, MPS) or "can't
    allocate memory" (torch's CPU allocator).
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, MemoryError):
            return True
        if any(cls.__name__ == "OutOfMemoryError" for cls in type(current).__mro__):
            return True
        if isinstance(current, RuntimeError) and any(t in str(current).lower() for t in _OOM_TEXT):
            return True
        current = current.__cause__ or current.__context__
    return False


def empty_device_caches() -> None:
    """Give cached allocator memory back (CUDA, MPS), if torch is already imported."""
    torch = sys.modules.get("torch")
    if torch is None:
        return
    try:
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.empty_cache()
        if _mps_available():
            torch.mps.empty_cache()
    except Exception:  # best effort: never turn a cleanup into a failure
        pass


def _mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def _physical_memory() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        pass
    if sys.platform == "win32":
        return _windows_memory()
    return 8 << 30  # unknown: a conservative guess rather than a failure


def _windows_memory() -> int:  # pragma: no cover - Windows only
    import ctypes

    class _Status(ctypes.Structure):
        _fields_ = [
            ("length", ctypes.c_ulong),
            ("load", ctypes.c_ulong),
            ("total_phys", ctypes.c_ulonglong),
            ("avail_phys", ctypes.c_ulonglong),
            ("total_page", ctypes.c_ulonglong),
            ("avail_page", ctypes.c_ulonglong),
            ("total_virtual", ctypes.c_ulonglong),
            ("avail_virtual", ctypes.c_ulonglong),
            ("avail_ext", ctypes.c_ulonglong),
        ]

    status = _Status()
    status.length = ctypes.sizeof(_Status)
    ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(status))  # type: ignore[attr-defined]
    return int(status.total_phys)


def _cgroup_limit() -> int | None:
    """The memory limit of the container (cgroup v2 or v1), if any."""
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path, encoding="ascii") as fh:
                text = fh.read().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < (1 << 60):  # v1 reports "no limit" as a huge number
            return int(text)
    return None
