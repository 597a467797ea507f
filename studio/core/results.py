"""Saving what a job produced: each output as an artifact file with its recipe, each training
sample as an artifact too (its recipe names the training), each trained adapter into the adapter
library. All are recorded in the store; the worker calls them on its thread as the plugin's
``Result`` and ``Sample`` events arrive.
"""

from __future__ import annotations

import datetime as dt
import shutil
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.core import artifacts
from studio.core.events import AdapterOutput, Output, Sample
from studio.core.records import SAMPLE_KIND, AdapterRecord, ArtifactRecord

if TYPE_CHECKING:
    from studio.core.context import RecipeNotes
    from studio.core.generator import GenerationRun, Generator
    from studio.core.store import Store
    from studio.core.training import Trainer, TrainingRun

#: The folder (under the studio's outputs) that training samples are saved in, one sub-folder
#: per training.
SAMPLES_FOLDER = "samples"


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


def save_sample(
    store: Store,
    *,
    job_id: str,
    trainer_cls: type[Trainer],
    plugin: tuple[str, str],
    request: TrainingRun,
    notes: RecipeNotes,
    sample: Sample,
    device: str,
    device_name: str | None = None,
    threads: int | None = None,
    out_dir: Path,
) -> ArtifactRecord:
    """Write a training's ``sample`` into ``out_dir/<name>-<job>`` and record it as an artifact.

    Its recipe has the keys of a generation's (see :func:`artifacts.build_recipe`), with
    ``"kind": "sample"`` and a ``training`` entry naming the training job, the trainer, the step
    and the adapter in progress; ``generator`` is the generator whose code made the sample, as the
    trainer named it in the output's ``extra["generator"]`` (``None`` when it did not), and
    ``adapters`` lists the adapter in progress (a reference no generator loads: a sample is not
    regenerated). The record's ``generator`` is that generator, else the trainer's id.
    """
    output = sample.output
    plugin_name, plugin_version = plugin
    extra = dict(output.extra)
    generator = extra.get("generator")
    generator = generator if isinstance(generator, str) and generator.strip() else None
    prompt = extra.get("prompt")
    prompt = prompt if isinstance(prompt, str) else ""
    if notes.model:
        model: dict[str, Any] | None = dict(notes.model)
    elif request.base_model is not None:
        model = {"ref": request.base_model, "source": None, "revision": None, "sha256": None}
    else:  # a trainer that uses no model
        model = None
    in_progress = {
        "ref": f"training:{job_id}:step-{sample.step}",
        "weight": 1.0,
        "sha256": None,
        "in_progress": True,
    }
    recipe: dict[str, Any] = artifacts.jsonable(
        {
            "schema": artifacts.RECIPE_SCHEMA,
            "kind": SAMPLE_KIND,
            "plugin": {"name": plugin_name, "version": plugin_version},
            "generator": generator,
            "task": None,
            "modality": output.modality,
            "model": model,
            "adapters": [in_progress],
            "prompt": prompt,
            "options": {},
            "seed": getattr(output, "seed", None),
            "index": getattr(output, "index", 0),
            "parent": None,
            "libraries": artifacts.library_versions(),
            "device": device,
            "device_name": device_name,
            "threads": threads,
            "dtype": notes.dtype,
            "created": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "training": {
                "job_id": job_id,
                "trainer": trainer_cls.id,
                "name": request.name,
                "step": sample.step,
                "dataset": request.dataset,
                "adapter": {"name": request.name, "step": sample.step, "in_progress": True},
            },
            "extra": {**notes.extra, **extra},
        }
    )
    folder = Path(out_dir) / f"{artifacts.slug(request.name)}-{job_id[:8]}"
    stem = f"step-{sample.step:06d}-{int(getattr(output, 'index', 0))}"
    path = artifacts.write_artifact(output, recipe, folder, stem)
    record = ArtifactRecord(
        id=uuid.uuid4().hex,
        job_id=job_id,
        path=path,
        modality=output.modality,
        generator=generator or trainer_cls.id,
        model=None if model is None else model.get("ref"),
        prompt=prompt,
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
