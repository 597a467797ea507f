"""Devices: resolution with clear errors, dtypes, CPU threads, out-of-memory recognition."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from studio.core import devices
from studio.core.devices import (
    configure_cpu_threads,
    default_dtype,
    device_memory_total,
    host_memory_total,
    is_out_of_memory,
    resolve_device,
    torch_dtype,
)
from studio.core.errors import InvalidRequest

HAS_CUDA = torch.cuda.is_available()
HAS_MPS = torch.backends.mps.is_available()


def test_importing_the_modules_imports_no_torch() -> None:
    code = (
        "import sys, studio.core.devices, studio.core.cache, studio.core.refs; "
        "heavy = [m for m in ('torch', 'diffusers', 'transformers', 'huggingface_hub') "
        "if m in sys.modules]; print(heavy); sys.exit(1 if heavy else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_cpu_and_auto() -> None:
    assert resolve_device("cpu") == "cpu"
    assert resolve_device(" CPU ") == "cpu"
    expected = "cuda:0" if HAS_CUDA else ("mps" if HAS_MPS else "cpu")
    assert resolve_device("auto") == expected
    assert resolve_device() == expected


@pytest.mark.skipif(HAS_CUDA, reason="tests the error when CUDA is absent")
@pytest.mark.parametrize("setting", ["cuda", "cuda:0", "cuda:1"])
def test_cuda_asked_for_but_absent(setting: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        resolve_device(setting)
    message = str(info.value)
    assert "CUDA is not available" in message and "cpu" in message and setting in message


@pytest.mark.skipif(HAS_MPS, reason="tests the error when MPS is absent")
def test_mps_asked_for_but_absent() -> None:
    with pytest.raises(InvalidRequest, match="MPS is not available"):
        resolve_device("mps")


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs CUDA")
def test_cuda_present() -> None:
    assert resolve_device("cuda") == "cuda:0"
    with pytest.raises(InvalidRequest, match="does not exist"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")
    total = device_memory_total("cuda:0")
    assert total is not None and total > 1 << 30
    assert default_dtype("cuda:0") in ("bfloat16", "float16")


@pytest.mark.parametrize("setting", ["tpu", "cuda:x", "gpu", ""])
def test_unknown_device_setting(setting: str) -> None:
    if setting == "":  # empty means auto
        assert resolve_device(setting) in ("cpu", "cuda:0", "mps")
        return
    with pytest.raises(InvalidRequest, match="allowed: auto, cpu, cuda, cuda:N, mps"):
        resolve_device(setting)


def test_memory_totals() -> None:
    assert device_memory_total("cpu") is None
    host = host_memory_total()
    assert host > 64 << 20
    assert host <= devices._physical_memory()


def test_default_dtype(monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_dtype("cpu") == "float32"
    assert default_dtype("cpu", prefer="bfloat16") == "float32"
    assert default_dtype("mps") == "float16"
    assert default_dtype("cuda:0", prefer="float32") == "float32"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert default_dtype("cuda:0") == "bfloat16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert default_dtype("cuda:0") == "float16"
    with pytest.raises(InvalidRequest, match="unknown dtype"):
        default_dtype("cuda:0", prefer="int8")


def test_torch_dtype() -> None:
    assert torch_dtype("float16") is torch.float16
    assert torch_dtype("fp16") is torch.float16
    assert torch_dtype("bf16") is torch.bfloat16
    assert torch_dtype("torch.float32") is torch.float32
    with pytest.raises(InvalidRequest, match="allowed: float32"):
        torch_dtype("float64x")


def test_configure_cpu_threads() -> None:
    before = torch.get_num_threads()
    try:
        n = configure_cpu_threads(None)
        assert n == max(1, devices.cpu_cores() - 1)
        assert torch.get_num_threads() == n
        assert configure_cpu_threads(1) == 1 and torch.get_num_threads() == 1
        for bad in (0, -2, 1.5, True):
            with pytest.raises(InvalidRequest, match="cpu_threads"):
                configure_cpu_threads(bad)  # type: ignore[arg-type]
    finally:
        torch.set_num_threads(before)


def test_is_out_of_memory() -> None:
    assert is_out_of_memory(MemoryError())
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate"))
    assert is_out_of_memory(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_out_of_memory(RuntimeError("MPS backend out of memory"))
    assert is_out_of_memory(
        RuntimeError("[enforce fail] DefaultCPUAllocator: can't allocate memory: you tried ...")
    )
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert not is_out_of_memory(ValueError("out of memory"))  # not a runtime error
    assert not is_out_of_memory(KeyboardInterrupt())
    try:
        try:
            raise MemoryError()
        except MemoryError as inner:
            raise ValueError("loading failed") from inner
    except ValueError as wrapped:
        assert is_out_of_memory(wrapped)


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs CUDA")
def test_real_cuda_oom_is_recognised() -> None:
    free, _total = torch.cuda.mem_get_info()
    with pytest.raises(Exception) as info:
        torch.empty(int(free * 4), dtype=torch.uint8, device="cuda:0")
    assert is_out_of_memory(info.value)
    devices.empty_device_caches()
