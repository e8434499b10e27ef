"""The job records: one SQLite table (stdlib ``sqlite3``), safe across crashes.

Every state change is its own committed statement, so a host that dies loses no
queued or finished record. ``JobStore`` is not thread-aware beyond one lock: the
manager calls it from its dispatcher thread and from the host's threads.
"""
from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
import uuid
from pathlib import Path

from ..config.files import regular_file
from ..errors import WanError, one_line, printable

FINISHED = ("done", "failed", "interrupted", "cancelled")
JOBS_DB = Path(".deforum-wan") / "jobs.sqlite"  # inside the output folder
PROGRESS_KEYS = ("window", "windows", "step", "steps", "frames_written", "frames")



def jobs_db_path(outdir: str | os.PathLike) -> Path:
    """Where a host (the WebUI, ``ui``) keeps the job table of an output folder."""
    return Path(outdir).expanduser() / JOBS_DB


_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,
    settings TEXT NOT NULL,
    resume TEXT,
    progress TEXT NOT NULL DEFAULT '{}',
    run_dir TEXT,
    timestring TEXT,
    video TEXT,
    settings_file TEXT,
    preview TEXT,
    drift_chart TEXT,
    error TEXT,
    message TEXT,
    created REAL NOT NULL,
    started REAL,
    finished REAL
)
"""
# Columns a caller may set through update(); the rest are fixed at insert.
_UPDATABLE = ("status", "progress", "run_dir", "timestring", "video", "settings_file", "preview",
              "drift_chart", "error", "message", "started", "finished")
_PUBLIC = ("id", "name", "status", "progress", "run_dir", "timestring", "video", "settings_file",
           "preview", "drift_chart", "error", "message", "resume", "created", "started", "finished")


# Columns added after the first release: a database written by an older version gets them.
_ADDED = {"drift_chart": "TEXT"}


def _add_columns(db: sqlite3.Connection) -> None:
    have = {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
    for name, kind in _ADDED.items():
        if name not in have:
            db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {kind}")


def empty_progress() -> dict:
    return {key: 0 for key in PROGRESS_KEYS}


class JobNotFound(WanError, LookupError):
    """No job has this id."""


class DatabaseLocked(WanError):
    """Another process serves this job database."""


class StoreUnavailable(WanError):
    """The job database cannot be read or written now (disk full, read-only, damaged)."""


class _ProcessLock:
    """An exclusive lock on ``<db>.lock`` for this process's lifetime (freed if it dies)."""

    def __init__(self, path: Path):
        self.path = path
        try:  # O_NONBLOCK: a FIFO put in its place must not hang the host
            self.fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NONBLOCK", 0), 0o644)
        except OSError as exc:
            raise WanError(f"cannot open lock file {path}: {exc.strerror or exc}") from None
        try:
            if os.name == "nt":
                import msvcrt

                msvcrt.locking(self.fd, msvcrt.LK_NBLCK, 1)
            else:
                import fcntl

                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self.fd)
            raise DatabaseLocked(f"job database {path.with_suffix('')} is in use by another "
                                 "process (one WebUI or standalone UI per database)") from None

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor drops the lock on every platform
            self.fd = None


class JobStore:
    def __init__(self, db_path: str | os.PathLike):
        self.path = Path(db_path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except (OSError, ValueError) as exc:  # ValueError: a NUL in the name
            raise WanError(f"cannot create {self.path.parent}: {getattr(exc, 'strerror', None) or exc}") from None
        if os.path.lexists(self.path):  # SQLite would block on a FIFO or read a device
            regular_file(self.path, f"job database {self.path}")
        self._plock = _ProcessLock(self.path.with_name(self.path.name + ".lock"))
        self._lock = threading.RLock()
        self._db = None
        try:
            # Autocommit: each statement is durable on its own; batches use BEGIN/COMMIT.
            self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None,
                                       timeout=10)
            self._db.row_factory = sqlite3.Row
            self._db.execute(_SCHEMA)
            _add_columns(self._db)
            # A damaged file can have a readable first page; find out now, not at the first list().
            check = self._db.execute("PRAGMA quick_check(1)").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError(f"damaged ({one_line(check)})")
        except sqlite3.Error as exc:
            if self._db is not None:
                self._db.close()
            self._plock.release()
            raise WanError(f"cannot open job database {self.path}: {exc}") from None

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
            self._plock.release()

    @contextlib.contextmanager
    def _guarded(self, doing: str):
        """The lock, and a database error (disk full, read-only, damaged) as one line."""
        with self._lock:
            if self._db is None:
                raise StoreUnavailable(f"job database {self.path} is closed")
            try:
                yield self._db
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"job database {self.path}: cannot {doing} ({exc})") from None

    # --- writes ----------------------------------------------------------------------
    def add(self, items: list[tuple[str, dict, str | None]]) -> list[str]:
        """Insert (name, settings, resume) records as queued, all or none."""
        now = time.time()
        rows = [(uuid.uuid4().hex[:12], printable(name), printable(json.dumps(settings, ensure_ascii=False)),
                 resume, now) for name, settings, resume in items]
        with self._guarded("store the new jobs") as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(
                    "INSERT INTO jobs (id, name, status, settings, resume, progress, created) "
                    f"VALUES (?, ?, 'queued', ?, ?, '{json.dumps(empty_progress())}', ?)", rows)
                db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                raise
        return [row[0] for row in rows]

    def claim_next(self) -> dict | None:
        """The oldest queued job, switched to running (with its settings), or None."""
        with self._guarded("read the queue") as db:
            while True:
                row = db.execute("SELECT * FROM jobs WHERE status = 'queued' ORDER BY seq LIMIT 1").fetchone()
                if row is None:
                    return None
                try:
                    settings = json.loads(row["settings"])
                    if not isinstance(settings, dict):
                        raise ValueError("not an object")
                except (TypeError, ValueError):  # a damaged row: reported on that job, the queue goes on
                    message = "its stored settings are unreadable (a damaged database row); submit it again"
                    db.execute("UPDATE jobs SET status = 'failed', error = ?, message = ?, finished = ? WHERE seq = ?",
                               (message, message, time.time(), row["seq"]))
                    continue
                db.execute("UPDATE jobs SET status = 'running', started = ?, error = NULL, message = NULL "
                           "WHERE id = ?", (time.time(), row["id"]))
                job = self._public(row)
                job.update(status="running", settings=settings)
                return job

    def update(self, job_id: str, **fields) -> None:
        bad = set(fields) - set(_UPDATABLE)
        if bad:
            raise ValueError(f"cannot update {sorted(bad)}")
        if "progress" in fields:
            fields["progress"] = json.dumps(fields["progress"])
        if not fields:
            return
        cols = ", ".join(f"{key} = ?" for key in fields)
        with self._guarded("record the job") as db:
            db.execute(f"UPDATE jobs SET {cols} WHERE id = ?", (*_storable(fields), job_id))

    def set_status_if(self, job_id: str, old: str, new: str, **fields) -> bool:
        """Atomically move ``job_id`` from ``old`` to ``new``; False when it was not ``old``."""
        fields = {"status": new, **fields}
        cols = ", ".join(f"{key} = ?" for key in fields)
        with self._guarded("record the job") as db:
            cur = db.execute(f"UPDATE jobs SET {cols} WHERE id = ? AND status = ?", (*_storable(fields), job_id, old))
            return cur.rowcount == 1

    def recover(self) -> list[dict]:
        """Jobs left ``running`` by a process that died: those that had started writing
        become interrupted (resumable), the others go back to the queue."""
        with self._guarded("read the jobs") as db:
            rows = [self._public(r) for r in
                    db.execute("SELECT * FROM jobs WHERE status = 'running' ORDER BY seq")]
            for job in rows:
                if job["run_dir"]:
                    self.update(job["id"], status="interrupted", finished=time.time(),
                                message=f"the host stopped while this job ran; its frames are kept in "
                                        f"{job['run_dir']}; resume it to continue")
                else:
                    self.update(job["id"], status="queued", started=None)
            return rows

    def get(self, job_id: str) -> dict:
        with self._guarded("read the job") as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (str(job_id),)).fetchone()
        if row is None:
            raise JobNotFound(f"no job {job_id!r}")
        return self._public(row)

    def settings(self, job_id: str) -> dict:
        with self._guarded("read the job") as db:
            row = db.execute("SELECT settings FROM jobs WHERE id = ?", (str(job_id),)).fetchone()
        if row is None:
            raise JobNotFound(f"no job {job_id!r}")
        try:
            return json.loads(row["settings"])
        except (TypeError, ValueError):
            raise StoreUnavailable(f"job {job_id}: its stored settings are unreadable (a damaged row)") from None

    def list(self) -> list[dict]:
        with self._guarded("read the jobs") as db:
            return [self._public(r) for r in db.execute("SELECT * FROM jobs ORDER BY seq")]

    def count(self, status: str) -> int:
        with self._guarded("read the queue") as db:
            return db.execute("SELECT COUNT(*) FROM jobs WHERE status = ?", (status,)).fetchone()[0]

    @staticmethod
    def _public(row: sqlite3.Row) -> dict:
        job = {key: row[key] for key in _PUBLIC}
        try:
            progress = json.loads(row["progress"] or "{}")
        except (TypeError, ValueError):
            progress = {}
        job["progress"] = {**empty_progress(), **(progress if isinstance(progress, dict) else {})}
        return job


def _storable(fields: dict) -> list:
    # An error message may quote a lone surrogate, which SQLite cannot store as UTF-8.
    return [printable(v) if isinstance(v, str) else v for v in fields.values()]
