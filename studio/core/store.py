"""The studio's database: jobs, job events, artifacts, adapters, library models, datasets,
settings, hashes.

One SQLite file in the studio home, in WAL mode (readers never block the writer, and a crash
mid-write never corrupts it), with foreign keys on. The schema is versioned with
``PRAGMA user_version`` and an ordered list of migrations: a database of any older version is
brought up to date when it is opened, one migration per transaction, and a database written by a
newer studio is refused rather than damaged. A later schema change appends a migration to
:data:`MIGRATIONS`; existing migrations are never edited.

A :class:`Store` is shared by the GUI thread and the device worker threads: it holds one
connection guarded by a lock, and every write runs in a ``BEGIN IMMEDIATE`` transaction so that
another process on the same database (the CLI next to the GUI) waits its turn instead of failing.
Requests, recipes, payloads and settings are stored as JSON; the store takes and returns plain
dicts and the records of :mod:`studio.core.records`.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from studio.core.datasets import DatasetManifest
from studio.core.errors import StudioError
from studio.core.events import JobState
from studio.core.hashing import sha256_file
from studio.core.records import (
    AdapterRecord,
    ArtifactRecord,
    DatasetRecord,
    JobKind,
    JobRecord,
    ModelEntry,
    Priority,
)
from studio.core.settings import Settings

log = logging.getLogger(__name__)

__all__ = ["INTERRUPTED_ERROR", "MIGRATIONS", "SCHEMA_VERSION", "Store", "TimeLike"]

#: The error recorded on jobs that were running when the studio stopped.
INTERRUPTED_ERROR = "the studio stopped while this job ran"

#: A point in time for artifact filters: a Unix timestamp, a datetime or a date (local midnight).
TimeLike = float | int | dt.datetime | dt.date

#: How long a connection waits for another process's write before giving up (seconds).
_BUSY_TIMEOUT = 30.0

#: Job columns that ``update_job`` may change (artifact ids come from the artifacts table).
_JOB_FIELDS = (
    "kind",
    "state",
    "priority",
    "component",
    "request",
    "created",
    "started",
    "finished",
    "error",
    "step",
    "total",
    "position",
)


# --- migrations ---------------------------------------------------------------------------------
# Each migration runs inside one transaction. Statements run one by one: sqlite3's executescript
# would commit the surrounding transaction first.


def _migration_1_initial(conn: sqlite3.Connection) -> None:
    """The first schema: every table the studio keeps."""
    for statement in (
        """CREATE TABLE jobs (
            id TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            state TEXT NOT NULL,
            priority INTEGER NOT NULL,
            component TEXT NOT NULL,
            request TEXT NOT NULL,
            created REAL NOT NULL,
            started REAL,
            finished REAL,
            error TEXT,
            step INTEGER NOT NULL DEFAULT 0,
            total INTEGER NOT NULL DEFAULT 0,
            position INTEGER NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX jobs_by_state ON jobs (state, priority, position, created)",
        "CREATE INDEX jobs_by_created ON jobs (created)",
        """CREATE TABLE job_events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
            time REAL NOT NULL,
            type TEXT NOT NULL,
            payload TEXT NOT NULL
        )""",
        "CREATE INDEX job_events_by_job ON job_events (job_id, id)",
        """CREATE TABLE artifacts (
            id TEXT PRIMARY KEY,
            job_id TEXT REFERENCES jobs (id) ON DELETE SET NULL,
            path TEXT NOT NULL UNIQUE,
            modality TEXT NOT NULL,
            generator TEXT NOT NULL,
            model TEXT,
            prompt TEXT NOT NULL,
            created REAL NOT NULL,
            recipe TEXT NOT NULL
        )""",
        "CREATE INDEX artifacts_by_created ON artifacts (created)",
        "CREATE INDEX artifacts_by_job ON artifacts (job_id)",
        """CREATE TABLE adapters (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            path TEXT NOT NULL,
            modality TEXT NOT NULL,
            base_model TEXT NOT NULL,
            sha256 TEXT,
            created REAL NOT NULL,
            job_id TEXT REFERENCES jobs (id) ON DELETE SET NULL,
            extra TEXT NOT NULL DEFAULT '{}'
        )""",
        "CREATE INDEX adapters_by_name ON adapters (name)",
        """CREATE TABLE library_models (
            ref TEXT PRIMARY KEY,
            path TEXT NOT NULL,
            kind TEXT,
            size_bytes INTEGER,
            modality TEXT,
            name TEXT,
            added REAL NOT NULL
        )""",
        "CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        """CREATE TABLE file_hashes (
            path TEXT PRIMARY KEY,
            size INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL,
            sha256 TEXT NOT NULL
        )""",
    ):
        conn.execute(statement)


def _migration_2_search_text(conn: sqlite3.Connection) -> None:
    """Case-insensitive prompt search for every script: a case-folded copy of each prompt.

    SQLite's LIKE and lower() fold ASCII only; Python's casefold also folds "É" and "ß".
    """
    conn.execute("ALTER TABLE artifacts ADD COLUMN search_text TEXT NOT NULL DEFAULT ''")
    rows = conn.execute("SELECT id, prompt FROM artifacts").fetchall()
    conn.executemany(
        "UPDATE artifacts SET search_text = ? WHERE id = ?",
        [(_fold(row[1]), row[0]) for row in rows],
    )


def _migration_3_model_free_adapters(conn: sqlite3.Connection) -> None:
    """Adapters made by a trainer that uses no model: ``base_model`` may be NULL, and a new
    ``generators`` column (a JSON list of generator ids) says what such an adapter is for.

    SQLite cannot drop a NOT NULL constraint, so the table is rebuilt, rows and ids kept (no
    other table refers to it).
    """
    for statement in (
        """CREATE TABLE adapters_new (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            path TEXT NOT NULL,
            modality TEXT NOT NULL,
            base_model TEXT,
            sha256 TEXT,
            created REAL NOT NULL,
            job_id TEXT REFERENCES jobs (id) ON DELETE SET NULL,
            extra TEXT NOT NULL DEFAULT '{}',
            generators TEXT NOT NULL DEFAULT '[]'
        )""",
        # rowid too: it breaks ties between adapters of the same time, newest first
        "INSERT INTO adapters_new (rowid, id, name, path, modality, base_model, sha256, created, "
        "job_id, extra) SELECT rowid, id, name, path, modality, base_model, sha256, created, "
        "job_id, extra FROM adapters",
        "DROP TABLE adapters",
        "ALTER TABLE adapters_new RENAME TO adapters",
        "CREATE INDEX adapters_by_name ON adapters (name)",
    ):
        conn.execute(statement)


def _migration_4_datasets(conn: sqlite3.Connection) -> None:
    """The dataset library: each folder a training used, with the manifest of its files then.

    One row per folder and manifest (a folder whose files changed is a new row); ``manifest`` is
    the manifest's text (one ``path<TAB>size<TAB>sha256`` line per file, sorted).
    """
    for statement in (
        """CREATE TABLE datasets (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            folder TEXT NOT NULL,
            manifest_sha256 TEXT NOT NULL,
            manifest TEXT NOT NULL,
            files INTEGER NOT NULL,
            bytes INTEGER NOT NULL,
            created REAL NOT NULL,
            last_used REAL NOT NULL,
            UNIQUE (folder, manifest_sha256)
        )""",
        "CREATE INDEX datasets_by_name ON datasets (name)",
        "CREATE INDEX datasets_by_last_used ON datasets (last_used)",
    ):
        conn.execute(statement)


#: Ordered migrations: ``MIGRATIONS[n]`` brings a database from version ``n`` to ``n + 1``.
MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (
    _migration_1_initial,
    _migration_2_search_text,
    _migration_3_model_free_adapters,
    _migration_4_datasets,
)

#: The schema version this studio writes.
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(
    conn: sqlite3.Connection,
    target: int = SCHEMA_VERSION,
    migrations: Sequence[Callable[[sqlite3.Connection], None]] = MIGRATIONS,
) -> int:
    """Bring the database of ``conn`` (in autocommit mode) up to ``target``; return the version.

    Safe when several processes open the same database at once: each step re-reads the version
    inside its write transaction. Raises :class:`StudioError` for a database newer than known.
    """
    while True:
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = _user_version(conn)
            if version > len(migrations):
                raise StudioError(
                    f"the studio database has schema version {version}, newer than this "
                    f"studio knows ({len(migrations)}): update aigc-studio, or use another "
                    "studio home (STUDIO_HOME)"
                )
            if version >= target:
                conn.execute("COMMIT")
                return version
            migrations[version](conn)
            conn.execute(f"PRAGMA user_version = {version + 1}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        log.info("studio database migrated to schema version %d", version + 1)


def _user_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def connect(path: Path) -> sqlite3.Connection:
    """Open ``path`` the way the store does: autocommit, WAL, foreign keys, busy timeout."""
    conn = sqlite3.connect(
        str(path), timeout=_BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
    )
    try:
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA foreign_keys = ON")
        mode = str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]).lower()
        if mode != "wal":
            # e.g. some network file systems: still correct, only readers and writers wait more
            log.warning("SQLite WAL mode is not available for %s (journal mode %s)", path, mode)
        # NORMAL is crash-safe in WAL mode (the database is never corrupted); it may lose the
        # last commits only on power loss, and spares an fsync per progress event.
        conn.execute("PRAGMA synchronous = NORMAL")
    except BaseException:
        conn.close()
        raise
    return conn


# --- helpers ------------------------------------------------------------------------------------


def _unusable(path: Path, exc: sqlite3.DatabaseError) -> StudioError:
    return StudioError(
        f"cannot open the studio database {path}: {exc}. If the file is damaged, move it away "
        "and the studio starts with an empty one (your output files stay where they are)"
    )


def _fold(text: str | None) -> str:
    return (text or "").casefold()


def _json_default(obj: Any) -> Any:
    """JSON for the odd values in payloads: paths, enums, pydantic models, numpy scalars, sets."""
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json")
    if isinstance(obj, set | frozenset):
        return sorted(obj, key=str)
    if isinstance(obj, dt.datetime | dt.date):
        return obj.isoformat()
    item = getattr(obj, "item", None)  # numpy scalars
    if callable(item) and getattr(obj, "ndim", None) == 0:
        return item()
    return str(obj)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=_json_default)


def _timestamp(value: TimeLike) -> float:
    if isinstance(value, dt.datetime):
        return value.timestamp()
    if isinstance(value, dt.date):
        return dt.datetime.combine(value, dt.time()).timestamp()
    return float(value)


def _like_term(term: str) -> str:
    """``%term%`` for LIKE ... ESCAPE '\\', with the wildcards of the user's text escaped."""
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _path_key(path: str | Path) -> str:
    return str(Path(path).expanduser().resolve())


def _job_from_row(row: sqlite3.Row, artifact_ids: list[str]) -> JobRecord:
    return JobRecord(
        id=row["id"],
        kind=JobKind(row["kind"]),
        state=JobState(row["state"]),
        priority=Priority(row["priority"]),
        component=row["component"],
        request=json.loads(row["request"]),
        created=row["created"],
        started=row["started"],
        finished=row["finished"],
        error=row["error"],
        step=row["step"],
        total=row["total"],
        position=row["position"],
        artifact_ids=artifact_ids,
    )


def _artifact_from_row(row: sqlite3.Row) -> ArtifactRecord:
    return ArtifactRecord(
        id=row["id"],
        job_id=row["job_id"],
        path=Path(row["path"]),
        modality=row["modality"],
        generator=row["generator"],
        model=row["model"],
        prompt=row["prompt"],
        created=row["created"],
        recipe=json.loads(row["recipe"]),
    )


def _adapter_from_row(row: sqlite3.Row) -> AdapterRecord:
    return AdapterRecord(
        id=row["id"],
        name=row["name"],
        path=Path(row["path"]),
        modality=row["modality"],
        base_model=row["base_model"],
        sha256=row["sha256"],
        created=row["created"],
        job_id=row["job_id"],
        extra=json.loads(row["extra"]),
        generators=tuple(json.loads(row["generators"])),
    )


def _dataset_from_row(row: sqlite3.Row) -> DatasetRecord:
    return DatasetRecord(
        id=row["id"],
        name=row["name"],
        folder=Path(row["folder"]),
        manifest=DatasetManifest.parse(row["manifest"]),
        created=row["created"],
        last_used=row["last_used"],
    )


def _job_value(name: str, value: Any) -> Any:
    """A JobRecord field as stored in its column."""
    if name == "state":
        return str(JobState(value))
    if name == "kind":
        return str(JobKind(value))
    if name == "priority":
        return int(value) if isinstance(value, Priority) else int(Priority(value))
    if name == "request":
        return _dumps(value)
    return value


# --- the store ----------------------------------------------------------------------------------


class Store:
    """The studio database at ``path`` (created and migrated on open). Safe to share across threads.

    Missing records raise :class:`KeyError` from the ``get_*`` methods; lists are newest first.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        try:
            conn = connect(self.path)
        except sqlite3.DatabaseError as exc:
            raise _unusable(self.path, exc) from exc
        try:
            migrate(conn)
        except BaseException as exc:
            conn.close()
            if isinstance(exc, sqlite3.DatabaseError):
                raise _unusable(self.path, exc) from exc
            raise
        self._conn = conn

    # -- life cycle ------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the database (idempotent). Any later call raises :class:`StudioError`."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        """The database's schema version (``PRAGMA user_version``)."""
        with self._tx() as conn:
            return _user_version(conn)

    @contextmanager
    def _tx(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        """One transaction on the shared connection, under the lock (a consistent snapshot)."""
        with self._lock:
            conn = self._conn
            if conn is None:
                raise StudioError(f"the studio database {self.path} is closed")
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    # -- jobs ------------------------------------------------------------------------------------
    def add_job(self, rec: JobRecord) -> None:
        """Store a new job (its ``artifact_ids`` are ignored: artifacts link to their job)."""
        columns = ("id", *_JOB_FIELDS)
        values = [rec.id, *(_job_value(name, getattr(rec, name)) for name in _JOB_FIELDS)]
        with self._tx(write=True) as conn:
            conn.execute(
                f"INSERT INTO jobs ({', '.join(columns)}) "
                f"VALUES ({', '.join('?' for _ in columns)})",
                values,
            )

    def update_job(self, job_id: str, **fields: Any) -> None:
        """Change some fields of a job, e.g. ``update_job(id, state=JobState.RUNNING, step=3)``.

        Raises :class:`KeyError` for an unknown job and :class:`TypeError` for an unknown field.
        """
        unknown = sorted(set(fields) - set(_JOB_FIELDS))
        if unknown:
            raise TypeError(
                f"update_job() cannot change {', '.join(unknown)}; "
                f"allowed: {', '.join(_JOB_FIELDS)}"
            )
        with self._tx(write=True) as conn:
            if fields:
                assignments = ", ".join(f"{name} = ?" for name in fields)
                values = [_job_value(name, value) for name, value in fields.items()]
                cursor = conn.execute(
                    f"UPDATE jobs SET {assignments} WHERE id = ?", [*values, job_id]
                )
                found = cursor.rowcount > 0
            else:
                found = conn.execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if not found:
                raise KeyError(f"no job {job_id!r}")

    def get_job(self, job_id: str) -> JobRecord:
        """The job ``job_id`` with its artifact ids; :class:`KeyError` if there is none."""
        with self._tx() as conn:
            row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                raise KeyError(f"no job {job_id!r}")
            return self._jobs_with_artifacts(conn, [row])[0]

    def list_jobs(
        self, states: Iterable[JobState | str] | None = None, limit: int | None = 200
    ) -> list[JobRecord]:
        """Jobs, newest first, optionally only those in ``states``; at most ``limit``."""
        sql = "SELECT * FROM jobs"
        params: list[Any] = []
        if states is not None:
            wanted = [str(JobState(s)) for s in states]
            sql += f" WHERE state IN ({', '.join('?' for _ in wanted)})"
            params += wanted
        sql += " ORDER BY created DESC, rowid DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        with self._tx() as conn:
            return self._jobs_with_artifacts(conn, conn.execute(sql, params).fetchall())

    def queued_jobs(self) -> list[JobRecord]:
        """Queued jobs in run order: priority, then position, then submission time."""
        with self._tx() as conn:
            rows = conn.execute(
                "SELECT * FROM jobs WHERE state = ? ORDER BY priority, position, created, rowid",
                (str(JobState.QUEUED),),
            ).fetchall()
            return self._jobs_with_artifacts(conn, rows)

    def mark_interrupted(self) -> list[str]:
        """At start: jobs left running or paused by a stopped studio become interrupted.

        Queued jobs stay queued (they never started). Returns the ids of the interrupted jobs.
        """
        active = (str(JobState.RUNNING), str(JobState.PAUSED))
        with self._tx(write=True) as conn:
            ids = [
                row[0]
                for row in conn.execute(
                    "SELECT id FROM jobs WHERE state IN (?, ?) ORDER BY created, rowid", active
                )
            ]
            conn.execute(
                "UPDATE jobs SET state = ?, error = ?, finished = ? WHERE state IN (?, ?)",
                (str(JobState.INTERRUPTED), INTERRUPTED_ERROR, time.time(), *active),
            )
        return ids

    def _jobs_with_artifacts(
        self, conn: sqlite3.Connection, rows: Sequence[sqlite3.Row]
    ) -> list[JobRecord]:
        ids = [row["id"] for row in rows]
        artifacts: dict[str, list[str]] = {job_id: [] for job_id in ids}
        # chunks keep the statement under SQLite's bound-parameter limit
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            for job_id, artifact_id in conn.execute(
                f"SELECT job_id, id FROM artifacts WHERE job_id IN "
                f"({', '.join('?' for _ in chunk)}) ORDER BY created, rowid",
                chunk,
            ):
                artifacts[job_id].append(artifact_id)
        return [_job_from_row(row, artifacts[row["id"]]) for row in rows]

    # -- job events ------------------------------------------------------------------------------
    def add_job_event(
        self, job_id: str, type: str, payload: dict[str, Any], time_: float | None = None
    ) -> None:
        """Append an event to a job's history. ``payload`` must be JSON-able (paths are fine)."""
        with self._tx(write=True) as conn:
            conn.execute(
                "INSERT INTO job_events (job_id, time, type, payload) VALUES (?, ?, ?, ?)",
                (job_id, time.time() if time_ is None else time_, type, _dumps(payload)),
            )

    def job_events(self, job_id: str) -> list[dict[str, Any]]:
        """A job's events in the order they were added: ``{id, job_id, time, type, payload}``."""
        with self._tx() as conn:
            rows = conn.execute(
                "SELECT * FROM job_events WHERE job_id = ? ORDER BY id", (job_id,)
            ).fetchall()
        return [
            {
                "id": row["id"],
                "job_id": row["job_id"],
                "time": row["time"],
                "type": row["type"],
                "payload": json.loads(row["payload"]),
            }
            for row in rows
        ]

    # -- artifacts -------------------------------------------------------------------------------
    def add_artifact(self, rec: ArtifactRecord) -> None:
        """Store an artifact (its path is stored absolute; ``job_id`` must be a stored job)."""
        with self._tx(write=True) as conn:
            conn.execute(
                "INSERT INTO artifacts (id, job_id, path, modality, generator, model, prompt, "
                "created, recipe, search_text) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    rec.id,
                    rec.job_id,
                    _path_key(rec.path),
                    rec.modality,
                    rec.generator,
                    rec.model,
                    rec.prompt,
                    rec.created,
                    _dumps(rec.recipe),
                    _fold(rec.prompt),
                ),
            )

    def get_artifact(self, artifact_id: str) -> ArtifactRecord:
        """The artifact ``artifact_id``; :class:`KeyError` if there is none."""
        with self._tx() as conn:
            row = conn.execute("SELECT * FROM artifacts WHERE id = ?", (artifact_id,)).fetchone()
        if row is None:
            raise KeyError(f"no artifact {artifact_id!r}")
        return _artifact_from_row(row)

    def artifact_by_path(self, path: str | Path) -> ArtifactRecord | None:
        """The artifact whose main file is ``path`` (compared as absolute paths), if any."""
        with self._tx() as conn:
            row = conn.execute(
                "SELECT * FROM artifacts WHERE path = ?", (_path_key(path),)
            ).fetchone()
        return None if row is None else _artifact_from_row(row)

    def list_artifacts(
        self,
        *,
        modality: str | None = None,
        query: str | None = None,
        model: str | None = None,
        generator: str | None = None,
        since: TimeLike | None = None,
        until: TimeLike | None = None,
        job_id: str | None = None,
        limit: int | None = 500,
    ) -> list[ArtifactRecord]:
        """Artifacts, newest first, filtered by every argument given.

        ``query`` searches the prompts, ignoring case: every whitespace-separated word must occur
        (as a substring). ``since <= created < until``; times are timestamps, datetimes or dates.
        ``model`` is the exact model reference, ``job_id`` the job that made them.
        """
        where: list[str] = []
        params: list[Any] = []
        for column, value in (
            ("modality", modality),
            ("model", model),
            ("generator", generator),
            ("job_id", job_id),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        for term in _fold(query).split():
            where.append("search_text LIKE ? ESCAPE '\\'")
            params.append(_like_term(term))
        if since is not None:
            where.append("created >= ?")
            params.append(_timestamp(since))
        if until is not None:
            where.append("created < ?")
            params.append(_timestamp(until))
        sql = "SELECT * FROM artifacts"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created DESC, rowid DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        with self._tx() as conn:
            rows = conn.execute(sql, params).fetchall()
        return [_artifact_from_row(row) for row in rows]

    def delete_artifact(self, artifact_id: str) -> None:
        """Forget an artifact (its files are the caller's business); KeyError if unknown."""
        with self._tx(write=True) as conn:
            if conn.execute("DELETE FROM artifacts WHERE id = ?", (artifact_id,)).rowcount == 0:
                raise KeyError(f"no artifact {artifact_id!r}")

    # -- adapters --------------------------------------------------------------------------------
    def add_adapter(self, rec: AdapterRecord) -> None:
        """Store an adapter in the library (ids are unique; names need not be)."""
        with self._tx(write=True) as conn:
            conn.execute(
                "INSERT INTO adapters (id, name, path, modality, base_model, sha256, created, "
                "job_id, extra, generators) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    rec.id,
                    rec.name,
                    _path_key(rec.path),
                    rec.modality,
                    rec.base_model,
                    rec.sha256,
                    rec.created,
                    rec.job_id,
                    _dumps(rec.extra),
                    _dumps(list(rec.generators)),
                ),
            )

    def list_adapters(self, modality: str | None = None) -> list[AdapterRecord]:
        """Adapters in the library, newest first, optionally of one modality."""
        sql = "SELECT * FROM adapters"
        params: list[Any] = []
        if modality is not None:
            sql += " WHERE modality = ?"
            params.append(modality)
        with self._tx() as conn:
            rows = conn.execute(sql + " ORDER BY created DESC, rowid DESC", params).fetchall()
        return [_adapter_from_row(row) for row in rows]

    def find_adapter(self, id_or_name: str) -> AdapterRecord | None:
        """The adapter with this id, else the newest one with this name, else ``None``."""
        with self._tx() as conn:
            row = conn.execute("SELECT * FROM adapters WHERE id = ?", (id_or_name,)).fetchone()
            if row is None:
                row = conn.execute(
                    "SELECT * FROM adapters WHERE name = ? ORDER BY created DESC, rowid DESC",
                    (id_or_name,),
                ).fetchone()
        return None if row is None else _adapter_from_row(row)

    def delete_adapter(self, adapter_id: str) -> None:
        """Forget an adapter (its files are the caller's business); KeyError if unknown."""
        with self._tx(write=True) as conn:
            if conn.execute("DELETE FROM adapters WHERE id = ?", (adapter_id,)).rowcount == 0:
                raise KeyError(f"no adapter {adapter_id!r}")

    # -- datasets --------------------------------------------------------------------------------
    def record_dataset(
        self,
        folder: str | Path,
        manifest: DatasetManifest,
        *,
        name: str | None = None,
        used: float | None = None,
    ) -> DatasetRecord:
        """Record that a training used ``folder`` holding the files of ``manifest``; return it.

        A folder and manifest recorded before keep their record (and id): ``last_used`` moves
        to ``used`` (default: now), and the name changes only when ``name`` is given. A new one
        is named ``name``, else as the newest record of the same folder, else as the folder.
        """
        key = _path_key(folder)
        now = time.time() if used is None else float(used)
        with self._tx(write=True) as conn:
            row = conn.execute(
                "SELECT id FROM datasets WHERE folder = ? AND manifest_sha256 = ?",
                (key, manifest.sha256),
            ).fetchone()
            if row is not None:
                dataset_id = row[0]
                conn.execute(
                    "UPDATE datasets SET last_used = ?, name = COALESCE(?, name) WHERE id = ?",
                    (now, name, dataset_id),
                )
            else:
                if name is None:
                    named = conn.execute(
                        "SELECT name FROM datasets WHERE folder = ? "
                        "ORDER BY created DESC, rowid DESC LIMIT 1",
                        (key,),
                    ).fetchone()
                    name = named[0] if named is not None else Path(key).name or key
                dataset_id = uuid.uuid4().hex
                conn.execute(
                    "INSERT INTO datasets (id, name, folder, manifest_sha256, manifest, files, "
                    "bytes, created, last_used) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        dataset_id,
                        name,
                        key,
                        manifest.sha256,
                        manifest.text(),
                        manifest.files,
                        manifest.bytes,
                        now,
                        now,
                    ),
                )
            stored = conn.execute("SELECT * FROM datasets WHERE id = ?", (dataset_id,)).fetchone()
        return _dataset_from_row(stored)

    def list_datasets(self) -> list[DatasetRecord]:
        """The dataset library, most recently used first."""
        with self._tx() as conn:
            rows = conn.execute(
                "SELECT * FROM datasets ORDER BY last_used DESC, rowid DESC"
            ).fetchall()
        return [_dataset_from_row(row) for row in rows]

    def find_dataset(self, ref: str) -> DatasetRecord | None:
        """The dataset with this id, else the most recently used one with this name, else
        ``None``."""
        with self._tx() as conn:
            row = conn.execute("SELECT * FROM datasets WHERE id = ?", (ref,)).fetchone()
            if row is None:
                row = conn.execute(
                    "SELECT * FROM datasets WHERE name = ? ORDER BY last_used DESC, rowid DESC",
                    (ref,),
                ).fetchone()
        return None if row is None else _dataset_from_row(row)

    def dataset_version(self, folder: str | Path, manifest_sha256: str) -> DatasetRecord | None:
        """The record of ``folder`` with the manifest of that hash, if there is one."""
        with self._tx() as conn:
            row = conn.execute(
                "SELECT * FROM datasets WHERE folder = ? AND manifest_sha256 = ?",
                (_path_key(folder), manifest_sha256),
            ).fetchone()
        return None if row is None else _dataset_from_row(row)

    # -- library models --------------------------------------------------------------------------
    def add_library_model(
        self,
        ref: str,
        path: str | Path,
        kind: str | None,
        size_bytes: int | None,
        *,
        modality: str | None = None,
        name: str | None = None,
    ) -> None:
        """Add (or update) a local model folder or file the user imported, under ``ref``."""
        with self._tx(write=True) as conn:
            conn.execute(
                "INSERT INTO library_models (ref, path, kind, size_bytes, modality, name, added) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (ref) DO UPDATE SET "
                "path = excluded.path, kind = excluded.kind, size_bytes = excluded.size_bytes, "
                "modality = excluded.modality, name = excluded.name",
                (ref, _path_key(path), kind, size_bytes, modality, name, time.time()),
            )

    def list_library_models(self) -> list[ModelEntry]:
        """The imported models, newest first, as ``ModelEntry(source="library")``."""
        with self._tx() as conn:
            rows = conn.execute(
                "SELECT * FROM library_models ORDER BY added DESC, rowid DESC"
            ).fetchall()
        return [
            ModelEntry(
                ref=row["ref"],
                source="library",
                modality=row["modality"],
                size_bytes=row["size_bytes"],
                downloaded=True,
                path=Path(row["path"]),
                kind=row["kind"],
                name=row["name"],
            )
            for row in rows
        ]

    def remove_library_model(self, ref: str) -> None:
        """Forget an imported model (its files stay); KeyError if unknown."""
        with self._tx(write=True) as conn:
            if conn.execute("DELETE FROM library_models WHERE ref = ?", (ref,)).rowcount == 0:
                raise KeyError(f"no library model {ref!r}")

    # -- settings --------------------------------------------------------------------------------
    def load_settings(self) -> Settings:
        """The stored settings. A stored value that is unknown or invalid is skipped with a
        warning (the default applies), so a damaged or newer database never stops the studio.
        """
        with self._tx() as conn:
            rows = conn.execute("SELECT key, value FROM settings ORDER BY key").fetchall()
        data: dict[str, Any] = {}
        for key, raw in rows:
            try:
                data[key] = json.loads(raw)
            except ValueError:
                log.warning("ignoring stored setting %r: its value is not JSON (%.80r)", key, raw)
        while True:
            try:
                return Settings.model_validate(data)
            except ValidationError as exc:
                bad: dict[str, str] = {}
                for error in exc.errors():
                    key = str(error["loc"][0]) if error["loc"] else ""
                    if key in data:
                        bad.setdefault(key, error["msg"])
                if not bad:  # cannot blame one key: fall back to the defaults entirely
                    log.warning("ignoring the stored settings: %s", exc)
                    return Settings.model_validate({})
                for key, message in bad.items():
                    if key not in Settings.model_fields:
                        message = "not a setting of this studio version"
                    log.warning(
                        "ignoring stored setting %r = %.80r: %s", key, data.pop(key), message
                    )

    def save_settings(self, settings: Settings) -> None:
        """Store ``settings``: values that differ from the defaults are kept, the others removed
        (so a better default in a later version reaches users who never changed it). Stored keys
        this version does not know (from a newer studio) are left alone.
        """
        values = settings.model_dump(mode="json")
        defaults = Settings.model_validate({}).model_dump(mode="json")
        with self._tx(write=True) as conn:
            for key, value in values.items():
                if value == defaults.get(key):
                    conn.execute("DELETE FROM settings WHERE key = ?", (key,))
                else:
                    conn.execute(
                        "INSERT INTO settings (key, value) VALUES (?, ?) "
                        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                        (key, _dumps(value)),
                    )

    # -- file hashes -----------------------------------------------------------------------------
    def file_sha256(self, path: str | Path) -> str:
        """The sha256 of a file, cached by (path, size, mtime_ns): a changed file is re-hashed."""
        real = Path(path).expanduser().resolve()
        key = str(real)
        before = real.stat()
        with self._tx() as conn:
            row = conn.execute(
                "SELECT size, mtime_ns, sha256 FROM file_hashes WHERE path = ?", (key,)
            ).fetchone()
        if row is not None and (row[0], row[1]) == (before.st_size, before.st_mtime_ns):
            return str(row[2])
        digest = sha256_file(real)  # outside the lock: big weights take seconds
        after = real.stat()
        if (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns):
            with self._tx(write=True) as conn:
                conn.execute(
                    "INSERT INTO file_hashes (path, size, mtime_ns, sha256) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (path) DO UPDATE SET size = excluded.size, "
                    "mtime_ns = excluded.mtime_ns, sha256 = excluded.sha256",
                    (key, after.st_size, after.st_mtime_ns, digest),
                )
        return digest
