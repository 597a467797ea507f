"""Saving what a job produced: each output as an artifact file with its recipe, each trained
adapter into the adapter library. Both are recorded in the store; the worker calls them on its
thread as the plugin's ``Result`` events arrive.
"""

from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from studio.core import artifacts
from studio.core.events import AdapterOutput, Output
from studio.core.records import AdapterRecord, ArtifactRecord

if TYPE_CHECKING:
    from studio.core.context import RecipeNotes
    from studio.core.generator import GenerationRun, Generator
    from studio.core.store import Store


def save_artifact(
    store: Store,
    *,
    job_id: str,
    generator_cls: type[Generator],
    plugin: tuple[str, str],
    request: GenerationRun,
    notes: RecipeNotes,
    output: Output,
    device: str,
    device_name: str | None = None,
    threads: int | None = None,
    out_dir: Path,
) -> ArtifactRecord:
    """Write ``output`` into ``out_dir`` with its recipe and record it as an artifact.

    ``plugin`` is the (name, version) that provides ``generator_cls``; ``request`` the validated
    request as it was before the run; the other arguments as :func:`artifacts.build_recipe`.
    """
    assert not isinstance(output, AdapterOutput)
    plugin_name, plugin_version = plugin
    recipe = artifacts.build_recipe(
        plugin_name=plugin_name,
        plugin_version=plugin_version,
        generator_cls=generator_cls,
        task=generator_cls.task,
        request=request,
        notes=notes,
        device=device,
        device_name=device_name,
        threads=threads,
        output=output,
    )
    # the run's seed: with it (and the index) ``regenerate`` re-runs one image of a batch
    recipe.setdefault("extra", {}).setdefault("request_seed", request.seed)
    stem = artifacts.artifact_stem(job_id, output.index)
    path = artifacts.write_artifact(output, recipe, out_dir, stem)
    record = ArtifactRecord(
        id=uuid.uuid4().hex,
        job_id=job_id,
        path=path,
        modality=output.modality,
        generator=generator_cls.id,
        model=(recipe.get("model") or {}).get("ref") or request.model,
        prompt=request.prompt,
        created=time.time(),
        recipe=recipe,
    )
    store.add_artifact(record)
    return record


def save_adapter(store: Store, library: Path, job_id: str, output: AdapterOutput) -> AdapterRecord:
    """Put a trained adapter into the adapter ``library`` (copied there if written elsewhere).

    ``output.path`` is updated to the adapter's place in the library, and
    ``output.extra["adapter_id"]`` to its record's id. ``output.base_model`` (``None`` for a
    trainer that uses no model) and ``output.generators`` are recorded as they are.
    """
    path = Path(output.path)
    if not path.exists():
        raise FileNotFoundError(f"the trainer reported adapter {path}, which does not exist")
    generators = _generator_ids(output.generators)
    if output.base_model is not None and (
        not isinstance(output.base_model, str) or not output.base_model.strip()
    ):
        raise TypeError(
            f"AdapterOutput.base_model must be a model reference or None, got {output.base_model!r}"
        )
    if not _is_within(path, library):
        target = library / f"{artifacts.slug(output.name)}-{job_id[:8]}"
        if path.is_dir():
            shutil.copytree(path, target, dirs_exist_ok=True)
            path = target
        else:
            target.mkdir(parents=True, exist_ok=True)
            path = Path(shutil.copy2(path, target / path.name))
    digest = store.file_sha256(path) if path.is_file() else None
    record = AdapterRecord(
        id=uuid.uuid4().hex,
        name=output.name,
        path=path,
        modality=output.modality,
        base_model=output.base_model,
        sha256=digest,
        created=time.time(),
        job_id=job_id,
        extra=dict(output.extra),
        generators=generators,
    )
    store.add_adapter(record)
    output.path = path
    output.extra["adapter_id"] = record.id
    return record


def _generator_ids(value: object) -> tuple[str, ...]:
    """``AdapterOutput.generators`` as a tuple of ids (a bare string would become letters)."""
    if isinstance(value, list | tuple) and all(
        isinstance(gid, str) and gid.strip() and not any(c.isspace() for c in gid) for gid in value
    ):
        return tuple(value)
    raise TypeError(
        f"AdapterOutput.generators must be a tuple of generator ids, like ('patterns',); got "
        f"{value!r}"
    )


def _is_within(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True
