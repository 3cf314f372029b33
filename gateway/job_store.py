"""Jobs in SQLite (stdlib sqlite3, WAL): long generations that survive a gateway restart.

One connection, serialized by a lock; every method is blocking, so async callers run them with
`asyncio.to_thread`. Status moves queued -> running -> succeeded | failed, and queued or running
-> cancelled; every transition is one statement guarded by the expected current status, so a
cancel racing the runner's finish has exactly one winner. Jobs run in submission order (`seq`).

Disk use is bounded three ways: a finished job and its audio are deleted once they are older than
a time to live (`expire`, swept by the runner), a client deletes them at will (`delete`), and a new
job is refused (`StorageFull`) when the audio stored plus what queued and running jobs will write
would pass a byte budget or leave too little free disk.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tritone.gateway.sqlite import connect

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "queued", "running", "succeeded", "failed", "cancelled"
TERMINAL = (SUCCEEDED, FAILED, CANCELLED)
RESULT_BYTES_PER_S = 4 * 32000  # a result is float32 WAV at MusicGen's 32 kHz (speech: 24 kHz): bytes per second
INPUT_PREVIEW_CHARS = 200  # a speech job's object shows the start of its text

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    owner TEXT NOT NULL,
    idempotency_key TEXT,
    body_hash TEXT NOT NULL,
    params TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    progress REAL NOT NULL DEFAULT 0,
    eta_s REAL,
    error TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_idempotency ON jobs (owner, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, seq);
"""


class QueueFull(Exception):
    pass


class IdempotencyConflict(Exception):
    pass


class JobNotFound(Exception):
    pass


class StorageFull(Exception):
    """A new job would pass the disk budget or leave too little free disk; the message says which and by how much."""


@dataclass(frozen=True)
class StorageLimits:
    budget_bytes: int = 0  # results on disk + what queued and running jobs will write; 0: no budget
    min_free_bytes: int = 0  # free disk to leave once every queued and running job has written its result


def _size(count: float) -> str:
    return f"{count / 2**30:.2f} GiB" if count >= 2**30 else f"{count / 2**20:.1f} MiB"


class JobFinished(Exception):
    """Cancel of a job that already ended."""

    def __init__(self, job: "Job"):
        super().__init__(job.status)
        self.job = job


@dataclass(frozen=True)
class Job:
    id: str
    owner: str
    params: dict[str, Any]  # prompt, duration, temperature, top_k, top_p, guidance_scale, seed, response_format
    status: str
    created_at: float
    started_at: float | None
    finished_at: float | None
    progress: float  # percent
    eta_s: float | None
    error: str | None
    queue_position: int | None = None  # 1-based, queued jobs only

    @property
    def type(self) -> str:
        return self.params.get("type", "music")

    @property
    def prompt(self) -> str:
        return self.params["prompt"]

    @property
    def duration(self) -> float:
        return float(self.params["duration"])

    @property
    def estimated_s(self) -> float:
        """Seconds of audio it will write at most (a music job: its duration; speech: a bound from its text)."""
        return float(self.params.get("duration") or self.params.get("estimated_s") or 0.0)

    @property
    def response_format(self) -> str:
        return self.params.get("response_format", "wav")

    def to_dict(self) -> dict[str, Any]:
        """The API's job object."""
        def stamp(t):
            return None if t is None else int(t)

        succeeded = self.status == SUCCEEDED
        if self.type == "speech":  # the text itself may be 500,000 characters: its size and start
            what = {"model": self.params["model"], "voice": self.params.get("voice"),
                    "input": self.params["input"][:INPUT_PREVIEW_CHARS], "input_chars": len(self.params["input"]),
                    "captions_url": f"/v1/jobs/{self.id}/captions" if succeeded else None}
        else:
            what = {"prompt": self.prompt, "duration": self.duration}
        return {
            "id": self.id,
            "object": "job",
            "type": self.type,
            "status": self.status,
            **what,
            "response_format": self.response_format,
            "created_at": stamp(self.created_at),
            "started_at": stamp(self.started_at),
            "finished_at": stamp(self.finished_at),
            "queue_position": self.queue_position,
            "progress": round(self.progress, 1),
            "eta_s": None if self.eta_s is None else round(self.eta_s, 1),
            "error": self.error,
            "audio_url": f"/v1/jobs/{self.id}/audio" if self.status == SUCCEEDED else None,
        }


def body_hash(params: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class JobStore:
    def __init__(self, data_dir: Path | str, clock: Callable[[], float] = time.time):
        self.clock = clock  # wall-clock seconds: created, started and finished times, and expiry
        self.data_dir = Path(data_dir)
        self.results_dir = self.data_dir / "results"
        self.results_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.data_dir / "jobs.sqlite3"
        self._lock = threading.Lock()
        self._db = connect(self.path, _SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def result_path(self, job_id: str) -> Path:
        return self.results_dir / f"{job_id}.wav"

    def captions_path(self, job_id: str) -> Path:
        return self.results_dir / f"{job_id}.captions.json"

    def _remove_results(self, job_id: str) -> None:
        self.result_path(job_id).unlink(missing_ok=True)
        self.captions_path(job_id).unlink(missing_ok=True)

    # -- reads -----------------------------------------------------------------------------------

    def _queued_positions(self) -> dict[str, int]:
        rows = self._db.execute("SELECT id FROM jobs WHERE status = ? ORDER BY seq", (QUEUED,)).fetchall()
        return {row["id"]: i for i, row in enumerate(rows, start=1)}

    @staticmethod
    def _job(row: sqlite3.Row, positions: dict[str, int] | None = None) -> Job:
        return Job(id=row["id"], owner=row["owner"], params=json.loads(row["params"]), status=row["status"],
                   created_at=row["created_at"], started_at=row["started_at"], finished_at=row["finished_at"],
                   progress=row["progress"], eta_s=row["eta_s"], error=row["error"],
                   queue_position=(positions or {}).get(row["id"]) if row["status"] == QUEUED else None)

    def _get(self, job_id: str) -> Job | None:
        row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            return None
        positions = self._queued_positions() if row["status"] == QUEUED else None
        return self._job(row, positions)

    def get(self, job_id: str, owner: str | None = None) -> Job | None:
        """The job, or None; with `owner`, only that owner's job."""
        with self._lock:
            job = self._get(job_id)
        if job is None or (owner is not None and job.owner != owner):
            return None
        return job

    def list(self, owner: str | None = None, limit: int = 100) -> list[Job]:
        """Newest first."""
        with self._lock:
            if owner is None:
                rows = self._db.execute("SELECT * FROM jobs ORDER BY seq DESC LIMIT ?", (limit,)).fetchall()
            else:
                rows = self._db.execute("SELECT * FROM jobs WHERE owner = ? ORDER BY seq DESC LIMIT ?",
                                        (owner, limit)).fetchall()
            positions = self._queued_positions()
        return [self._job(row, positions) for row in rows]

    def stored_bytes(self) -> int:
        """Bytes of job audio on disk (finished results and partial files)."""
        total = 0
        for path in self.results_dir.iterdir():
            try:
                total += path.stat().st_size
            except FileNotFoundError:  # deleted meanwhile
                pass
        return total

    def _pending_bytes(self) -> int:
        """What queued and running jobs will write."""
        seconds = self._db.execute("SELECT COALESCE(SUM(COALESCE(json_extract(params, '$.duration'), "
                                   "json_extract(params, '$.estimated_s'))), 0) FROM jobs "
                                   "WHERE status IN (?, ?)", (QUEUED, RUNNING)).fetchone()[0]
        return int(seconds * RESULT_BYTES_PER_S)

    def _check_storage(self, seconds: float, limits: StorageLimits) -> None:
        needed, pending = int(seconds * RESULT_BYTES_PER_S), self._pending_bytes()
        if limits.budget_bytes:
            stored = self.stored_bytes()
            if stored + pending + needed > limits.budget_bytes:
                raise StorageFull(
                    f"job storage is full: {_size(stored)} of job audio is stored and {_size(pending)} reserved by "
                    f"queued and running jobs; this job needs {_size(needed)} more, over the "
                    f"{_size(limits.budget_bytes)} budget (TRITONE_JOB_DISK_BUDGET_BYTES). Delete finished jobs "
                    "(DELETE /v1/jobs/{id}) or wait until they expire")
        free = shutil.disk_usage(self.results_dir).free
        if free - pending - needed < limits.min_free_bytes:
            raise StorageFull(
                f"the disk is almost full: {_size(free)} free, {_size(pending)} reserved by queued and running jobs "
                f"and {_size(needed)} needed by this one would leave less than {_size(limits.min_free_bytes)} "
                "(TRITONE_JOB_MIN_FREE_BYTES)")

    def queued_count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM jobs WHERE status = ?", (QUEUED,)).fetchone()[0]

    # -- writes ----------------------------------------------------------------------------------

    def create(self, owner: str, params: dict[str, Any], *, idempotency_key: str | None = None,
               max_queued: int | None = None, storage: StorageLimits | None = None) -> tuple[Job, bool]:
        """(job, created). The same idempotency key and body returns the existing job with created False.

        Raises IdempotencyConflict (key reused with another body), QueueFull or StorageFull.
        """
        digest = body_hash(params)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if idempotency_key is not None:
                    row = self._db.execute("SELECT * FROM jobs WHERE owner = ? AND idempotency_key = ?",
                                           (owner, idempotency_key)).fetchone()
                    if row is not None:
                        if row["body_hash"] != digest:
                            raise IdempotencyConflict(idempotency_key)
                        self._db.execute("COMMIT")
                        return self._get(row["id"]), False
                if max_queued is not None:
                    queued = self._db.execute("SELECT COUNT(*) FROM jobs WHERE status = ?", (QUEUED,)).fetchone()[0]
                    if queued >= max_queued:
                        raise QueueFull(queued)
                if storage is not None:
                    self._check_storage(float(params.get("duration") or params["estimated_s"]), storage)
                job_id = "job_" + uuid.uuid4().hex
                self._db.execute(
                    "INSERT INTO jobs (id, owner, idempotency_key, body_hash, params, status, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (job_id, owner, idempotency_key, digest, json.dumps(params), QUEUED, self.clock()))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return self._get(job_id), True

    def claim_next(self) -> Job | None:
        """Mark the oldest queued job running and return it (None when nothing is queued)."""
        with self._lock:
            rows = self._db.execute(
                "UPDATE jobs SET status = ?, started_at = ?, progress = 0, eta_s = NULL, error = NULL "
                "WHERE seq = (SELECT seq FROM jobs WHERE status = ? ORDER BY seq LIMIT 1) RETURNING *",
                (RUNNING, self.clock(), QUEUED)).fetchall()  # fetchall: the statement completes, the write commits
            return self._job(rows[0]) if rows else None

    def update_progress(self, job_id: str, progress: float, eta_s: float | None) -> str | None:
        """Record progress of a running job; returns the job's status (cancelled: stop generating)."""
        with self._lock:
            self._db.execute("UPDATE jobs SET progress = ?, eta_s = ? WHERE id = ? AND status = ?",
                             (min(100.0, max(0.0, progress)), eta_s, job_id, RUNNING))
            row = self._db.execute("SELECT status FROM jobs WHERE id = ?", (job_id,)).fetchone()
            return None if row is None else row["status"]

    def finish(self, job_id: str, status: str, error: str | None = None) -> bool:
        """running -> succeeded or failed; False if the job is no longer running (it was cancelled)."""
        assert status in (SUCCEEDED, FAILED)
        with self._lock:
            done = status == SUCCEEDED
            cursor = self._db.execute(
                "UPDATE jobs SET status = ?, finished_at = ?, error = ?, "
                "progress = CASE WHEN ? THEN 100 ELSE progress END, eta_s = CASE WHEN ? THEN 0 ELSE NULL END "
                "WHERE id = ? AND status = ?",
                (status, self.clock(), error, done, done, job_id, RUNNING))
            return cursor.rowcount == 1

    def cancel(self, job_id: str, owner: str | None = None) -> tuple[Job, str]:
        """Cancel a queued or running job: (the cancelled job, its status before).

        Raises JobNotFound, or JobFinished when it already ended.
        """
        with self._lock:
            job = self._get(job_id)
            if job is None or (owner is not None and job.owner != owner):
                raise JobNotFound(job_id)
            if job.status in TERMINAL:
                raise JobFinished(job)
            self._db.execute("UPDATE jobs SET status = ?, finished_at = ?, eta_s = NULL WHERE id = ? AND status = ?",
                             (CANCELLED, self.clock(), job_id, job.status))
            return self._get(job_id), job.status

    def delete(self, job_id: str, owner: str | None = None) -> bool:
        """Delete the job and its audio (a running job should be cancelled first); False if there is none."""
        with self._lock:
            deleted = self._db.execute("DELETE FROM jobs WHERE id = ? AND (? IS NULL OR owner = ?) RETURNING id",
                                       (job_id, owner, owner)).fetchall()
        if deleted:
            self._remove_results(job_id)
        return bool(deleted)

    def expire(self, before: float) -> list[str]:
        """Delete jobs that ended before `before` (wall-clock seconds) and their audio; returns their ids."""
        with self._lock:
            rows = self._db.execute(
                f"DELETE FROM jobs WHERE status IN ({', '.join('?' * len(TERMINAL))}) AND finished_at < ? RETURNING id",
                (*TERMINAL, before)).fetchall()
        for row in rows:
            self._remove_results(row["id"])
        return [row["id"] for row in rows]

    def requeue(self, job_id: str) -> bool:
        """running -> queued, from scratch (its place in the queue is its original submission order)."""
        with self._lock:
            cursor = self._db.execute(
                "UPDATE jobs SET status = ?, started_at = NULL, progress = 0, eta_s = NULL WHERE id = ? AND status = ?",
                (QUEUED, job_id, RUNNING))
            return cursor.rowcount == 1

    def recover(self) -> list[str]:
        """At startup: jobs left running by a stopped gateway are queued again from scratch.

        Returns their ids; partial results (temporary files) are removed.
        """
        with self._lock:
            rows = self._db.execute(
                "UPDATE jobs SET status = ?, started_at = NULL, progress = 0, eta_s = NULL WHERE status = ? "
                "RETURNING id", (QUEUED, RUNNING)).fetchall()
        for partial in self.results_dir.glob("*.tmp*"):
            partial.unlink(missing_ok=True)
        return [row["id"] for row in rows]
