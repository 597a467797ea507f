"""``aigc-studio models``, ``jobs``, ``datasets``, ``adapters``: as JSON or a table."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

from studio.cli._common import EXIT_OK, JSON_SCHEMA, PROG, hint_failed_plugins, open_studio
from studio.cli.output import _print_json, _table
from studio.cli.train import adapter_json


def _listing(
    args: argparse.Namespace,
    key: str,
    documents: list[Any],
    *,
    empty: str,
    headers: list[str],
    rows: Callable[[], list[list[str]]],
) -> int:
    """What every library command prints: with ``--json`` the document ``{"schema": 1, key: ...}``;
    else a table of ``rows()`` (built only then), or the ``empty`` line when there is nothing."""
    if args.json:
        _print_json({"schema": JSON_SCHEMA, key: documents})
    elif not documents:
        sys.stdout.write(f"{empty}\n")
    else:
        sys.stdout.write(_table(headers, rows()))
    return EXIT_OK


def cmd_adapters(args: argparse.Namespace) -> int:
    """``aigc-studio adapters``: the adapter library, newest first."""
    with open_studio(start_workers=False) as studio:
        documents = [adapter_json(studio, a) for a in studio.adapters()]
        hint_failed_plugins(studio.plugins, quiet=args.json)

    def rows() -> list[list[str]]:
        table = []
        for a in documents:
            training = a["training"]
            final, best = training["validation_loss"], training["best_validation_loss"]
            loss = "-" if final is None else f"{final:.4f}"
            if best is not None:
                loss += f" / {best:.4f}"
            table.append(
                [
                    a["name"],
                    a["trainer"] or "-",
                    a["base_model"] or "(none)",
                    ", ".join(a["usable_with"] or a["generators"]) or "-",
                    time.strftime("%Y-%m-%d %H:%M", time.localtime(a["created"])),
                    "-" if training["steps"] is None else str(training["steps"]),
                    loss,
                    a["path"],
                ]
            )
        return table

    headers = [
        "name",
        "trainer",
        "base model",
        "for",
        "created",
        "steps",
        "val loss (final / best)",
        "path",
    ]
    return _listing(
        args,
        "adapters",
        documents,
        empty=f"no adapters; train one with '{PROG} train TRAINER ...'",
        headers=headers,
        rows=rows,
    )


def cmd_models(args: argparse.Namespace) -> int:
    """``aigc-studio models``: the hub cache, the studio library, the catalog (not downloaded)."""
    from studio.core.units import human_size

    with open_studio(load_plugins=False, start_workers=False) as studio:
        entries = studio.models()
    return _listing(
        args,
        "models",
        [e.to_json() for e in entries],
        empty="no models found",
        headers=["ref", "source", "kind", "modality", "size", "downloaded"],
        rows=lambda: [
            [
                e.ref,
                e.source,
                e.kind or "-",
                e.modality or "-",
                human_size(e.size_bytes, unknown="-"),
                "yes" if e.downloaded else "no",
            ]
            for e in entries
        ],
    )


def cmd_jobs(args: argparse.Namespace) -> int:
    """``aigc-studio jobs``: recent jobs, newest first."""
    with open_studio(load_plugins=False, start_workers=False) as studio:
        records = studio.jobs()

    def rows() -> list[list[str]]:
        table = []
        for r in records:
            created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.created))
            progress = f"{r.step}/{r.total}" if r.total else "-"
            error = (r.error or "").splitlines()[0][:60] if r.error else ""
            table.append(
                [
                    r.id,
                    str(r.kind),
                    str(r.state),
                    r.component,
                    created,
                    progress,
                    str(len(r.artifact_ids)),
                    error,
                ]
            )
        return table

    headers = ["id", "kind", "state", "component", "created", "progress", "artifacts", "error"]
    return _listing(
        args, "jobs", [r.to_json() for r in records], empty="no jobs", headers=headers, rows=rows
    )


def cmd_datasets(args: argparse.Namespace) -> int:
    """``aigc-studio datasets``: the dataset library, most recently used first."""
    from studio.core.units import human_size

    with open_studio(load_plugins=False, start_workers=False) as studio:
        records = studio.datasets()
    return _listing(
        args,
        "datasets",
        [r.to_json() for r in records],
        empty="no datasets (a training records the folder it learns from)",
        headers=["id", "name", "files", "size", "last used", "manifest", "folder"],
        rows=lambda: [
            [
                r.id,
                r.name,
                str(r.files),
                human_size(r.bytes),
                time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.last_used)),
                r.manifest_sha256[:12],
                str(r.folder),
            ]
            for r in records
        ],
    )
