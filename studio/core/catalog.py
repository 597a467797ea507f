"""The curated model catalog shipped in resources/catalog.json (ids, sizes, licences)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache

from studio.core.paths import resources_dir


@dataclass(frozen=True)
class CatalogEntry:
    id: str
    name: str
    modality: str
    tasks: tuple[str, ...]
    size_bytes: int
    licence: str
    description: str


@lru_cache(maxsize=1)
def catalog() -> tuple[CatalogEntry, ...]:
    """All catalog entries, in file order."""
    data = json.loads((resources_dir() / "catalog.json").read_text(encoding="utf-8"))
    return tuple(
        CatalogEntry(
            id=m["id"],
            name=m["name"],
            modality=m["modality"],
            tasks=tuple(m["tasks"]),
            size_bytes=int(m["size_bytes"]),
            licence=m["licence"],
            description=m["description"],
        )
        for m in data["models"]
    )


def catalog_entry(model_id: str) -> CatalogEntry | None:
    return next((e for e in catalog() if e.id == model_id), None)


def for_task(task: str) -> list[CatalogEntry]:
    return [e for e in catalog() if task in e.tasks]
