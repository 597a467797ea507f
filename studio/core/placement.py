"""Where a loaded model's memory is, how much of it there is, and moving it between devices.

The mechanics under the model cache's policy (:mod:`studio.core.cache`): :func:`measure_bytes`
counts the bytes of an object's tensors, :func:`move_to` puts it on a device, :func:`can_move`
says whether that would move anything, and :func:`placed_by_hooks` tells a model that accelerate
or diffusers hooks place themselves (CPU offload, a device map), which must never be moved.

Nothing here imports torch or accelerate: they are read from ``sys.modules`` (an object holding
tensors means torch is imported already), and hooks are found by their attributes.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterator
from typing import Any


def measure_bytes(obj: Any) -> int:
    """Bytes held by ``obj``'s tensors: parameters and buffers of a ``torch.nn.Module``, a tensor,
    a diffusers pipeline (through its ``components``), or a dict/list/tuple/set of those.

    Shared tensors count once (tied weights, components shared between pipelines). Anything else
    (a tokenizer, a scheduler) counts 0: pass ``size_bytes`` to
    :meth:`ModelCache.acquire <studio.core.cache.ModelCache.acquire>` then.
    Meta tensors count 0, except those accelerate's sequential CPU offload keeps in host memory
    (the hook's ``weights_map``): there they count as the host copy.
    """
    torch = sys.modules.get("torch")  # no torch imported means no tensors to count
    hooks_possible = "accelerate" in sys.modules
    seen: set[int] = set()

    def tensor_bytes(t: Any) -> int:
        if id(t) in seen or getattr(t, "is_meta", False):
            return 0
        seen.add(id(t))
        return int(t.numel()) * int(t.element_size())

    def walk(o: Any) -> int:
        if o is None or isinstance(o, (str, bytes, int, float, bool)):
            return 0
        if id(o) in seen:
            return 0
        if torch is not None:
            if isinstance(o, torch.Tensor):
                return tensor_bytes(o)
            if isinstance(o, torch.nn.Module):
                seen.add(id(o))
                total = sum(tensor_bytes(p) for p in o.parameters())
                total += sum(tensor_bytes(b) for b in o.buffers())
                if hooks_possible:
                    total += sum(tensor_bytes(t) for t in _offloaded_tensors(o))
                return total
        seen.add(id(o))
        if isinstance(o, dict):
            return sum(walk(v) for v in o.values())
        if isinstance(o, (list, tuple, set, frozenset)):
            return sum(walk(v) for v in o)
        components = getattr(o, "components", None)  # diffusers DiffusionPipeline
        if isinstance(components, dict):
            return walk(components)
        if dataclasses.is_dataclass(o):  # a plugin's bundle (model + tokenizer + ...)
            return sum(walk(getattr(o, f.name, None)) for f in dataclasses.fields(o))
        return 0

    return walk(obj)


def _offloaded_tensors(module: Any) -> Iterator[Any]:
    """The host copies of ``module``'s meta parameters and buffers that accelerate's offload
    hooks (``AlignDevicesHook(offload=True)``, as ``cpu_offload`` attaches) hold in their
    ``weights_map``."""
    for sub in module.modules():
        hook = sub.__dict__.get("_hf_hook")
        if hook is None:
            continue
        weights = None
        for h in (hook, *getattr(hook, "hooks", ())):  # a SequentialHook holds several
            if getattr(h, "offload", False) and getattr(h, "weights_map", None) is not None:
                weights = h.weights_map
                break
        if weights is None:
            continue
        for name, t in (*sub._parameters.items(), *sub._buffers.items()):
            if t is not None and getattr(t, "is_meta", False):
                try:
                    yield weights[name]
                except (KeyError, TypeError):  # not offloaded through this map
                    continue


def move_to(obj: Any, device: str) -> Any:
    """Put ``obj`` on ``device`` with its ``.to(device)`` (modules, pipelines, tensors); dicts,
    lists and dataclass instances are moved item by item in place, tuples rebuilt; other objects,
    and those placed by accelerate hooks (:func:`placed_by_hooks`), are left as they are (see
    :func:`can_move`).
    """
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            object.__setattr__(obj, f.name, move_to(getattr(obj, f.name), device))
        return obj
    if isinstance(obj, dict):
        for k, v in obj.items():
            obj[k] = move_to(v, device)
        return obj
    if isinstance(obj, list):
        obj[:] = [move_to(v, device) for v in obj]
        return obj
    if isinstance(obj, tuple):
        return (
            type(obj)(*(move_to(v, device) for v in obj))
            if hasattr(obj, "_fields")
            else tuple(move_to(v, device) for v in obj)
        )
    to = getattr(obj, "to", None)
    if callable(to) and not placed_by_hooks(obj):
        moved = to(device)
        return obj if moved is None else moved
    return obj


def can_move(obj: Any) -> bool:
    """Whether :func:`move_to` can move anything of ``obj`` (it has ``.to``, or holds such)."""
    if placed_by_hooks(obj):
        return False
    if isinstance(obj, dict):
        return any(can_move(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return any(can_move(v) for v in obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return any(can_move(getattr(obj, f.name)) for f in dataclasses.fields(obj))
    return callable(getattr(obj, "to", None))


#: diffusers' name for a group offloading hook in a module's ``_diffusers_hook`` registry
#: (``diffusers.hooks.group_offloading._GROUP_OFFLOADING``).
_GROUP_OFFLOADING_HOOK = "group_offloading"


def placed_by_hooks(obj: Any) -> bool:
    """Whether ``obj``, or a model in it, is placed on devices by hooks, so that ``.to()`` must
    not move it: the model cache counts it in host memory and never moves it.

    Found by attributes only, without importing diffusers or accelerate (diffusers 0.42
    ``pipeline_utils``):

    - a ``torch.nn.Module`` with an accelerate hook (``_hf_hook``) on it or on a submodule:
      ``enable_model_cpu_offload()`` puts a ``CpuOffload`` hook on each component,
      ``enable_sequential_cpu_offload()`` an ``AlignDevicesHook`` on every layer, and
      ``dispatch_model`` (``device_map`` over several devices) hooks on its blocks; or a diffusers
      group offloading hook (``_diffusers_hook``), which ``.to()`` skips;
    - a pipeline (an object with ``components``) whose ``_all_hooks`` list is not empty (model
      CPU offload), or with a ``hf_device_map`` over several components (diffusers refuses
      ``.to()`` then), or any of whose components is placed by hooks.

    ``_offload_gpu_id`` alone is not used: diffusers keeps it after ``remove_all_hooks()``.
    A model loaded with ``device_map`` onto one device has no hooks and is moved as usual.
    """
    torch = sys.modules.get("torch")  # no torch imported means no modules, so no hooks
    seen: set[int] = set()

    def hooked_module(module: Any) -> bool:
        for sub in module.modules():
            attrs = sub.__dict__  # hooks are plain attributes: no nn.Module.__getattr__ cost
            if attrs.get("_hf_hook") is not None:
                return True
            registry = getattr(attrs.get("_diffusers_hook"), "hooks", None)
            if isinstance(registry, dict) and registry.get(_GROUP_OFFLOADING_HOOK) is not None:
                return True
        return False

    def walk(o: Any) -> bool:
        if o is None or isinstance(o, (str, bytes, int, float, bool)) or id(o) in seen:
            return False
        seen.add(id(o))
        if torch is not None and isinstance(o, torch.nn.Module):
            return hooked_module(o)
        if isinstance(o, dict):
            return any(walk(v) for v in o.values())
        if isinstance(o, (list, tuple, set, frozenset)):
            return any(walk(v) for v in o)
        if getattr(o, "_hf_hook", None) is not None:
            return True
        all_hooks = getattr(o, "_all_hooks", None)  # set by enable_model_cpu_offload()
        if isinstance(all_hooks, list) and all_hooks:
            return True
        device_map = getattr(o, "hf_device_map", None)
        if isinstance(device_map, dict) and len(device_map) > 1:
            return True
        components = getattr(o, "components", None)  # diffusers DiffusionPipeline
        if isinstance(components, dict):
            return walk(components)
        if dataclasses.is_dataclass(o) and not isinstance(o, type):
            return any(walk(getattr(o, f.name, None)) for f in dataclasses.fields(o))
        return False

    return walk(obj)
