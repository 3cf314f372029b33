"""Jobs in the gateway's database (gateway/database.py: SQLite or PostgreSQL): long generations that survive
a gateway restart and that any gateway replica sharing the database can run.

Every method is blocking, so async callers run them with `asyncio.to_thread`. Status moves queued ->
running -> succeeded | failed, and queued or running -> cancelled; every transition is one guarded
statement, so a cancel racing the runner's finish has exactly one winner. Jobs run in submission order
(`seq`).

Leases: `claim_next` gives the oldest queued job (or a running one whose lease expired: its replica
died) to this replica with a lease: the replica's id, an expiry `lease_s` ahead, and a token bumped by
every claim. PostgreSQL picks the row with `FOR UPDATE SKIP LOCKED`, so replicas claiming at once take
different jobs; SQLite does it in one guarded statement inside `BEGIN IMMEDIATE` (one writer at a time).
Every write of a runner (`heartbeat`, `update_progress`, `save_part`, `finish`, `release`) carries its
`Lease` and is guarded by its owner and token (fencing): after another replica took the job over it
raises `LeaseLost` and writes nothing.

Audio: a job's audio is stored as it is generated, one part per finished music window (with its codes,
which the next window continues from) or spoken sentence (with its text, its caption), so a replica
taking a job over continues after the last finished part and the result is the parts' concatenation.

Storage is bounded three ways: a finished job and its audio are deleted once older than a time to live
(`expire`, swept by the runner), a client deletes them at will (`delete`), and a new job is refused
(`StorageFull`) when the audio stored plus what queued and running jobs will write would pass a byte
budget or, on SQLite, leave too little free disk where the database file is.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Connection, and_, case, delete, func, insert, or_, select, update

from tritone.gateway.captions import CaptionTrack
from tritone.gateway.database import Database, default_url
from tritone.gateway.db_schema import job_parts, jobs

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "queued", "running", "succeeded", "failed", "cancelled"
TERMINAL = (SUCCEEDED, FAILED, CANCELLED)
RESULT_BYTES_PER_S = 4 * 32000  # a result is float32 samples at MusicGen's 32 kHz (speech: 24 kHz): bytes per second
INPUT_PREVIEW_CHARS = 200  # a speech job's object shows the start of its text
LEASE_S = 30.0  # a claim holds a job this long; the runner renews it every third of it


class QueueFull(Exception):
    """The queue holds `max_queued` jobs (`per_key`: that many of this owner's)."""

    def __init__(self, queued: int, per_key: bool = False):
        super().__init__(queued)
        self.queued, self.per_key = queued, per_key


class IdempotencyConflict(Exception):
    pass


class JobNotFound(Exception):
    pass


class StorageFull(Exception):
    """A new job would pass the storage budget or leave too little free disk; the message says which and by how much."""


class LeaseLost(Exception):
    """Another replica took the job over (this replica's lease expired): stop, write nothing more."""

    def __init__(self, lease: "Lease", holder: str | None, token: int | None):
        self.lease = lease
        super().__init__(f"job {lease.job_id}: replica {lease.owner} no longer holds its lease (token {lease.token}); "
                         + (f"replica {holder} took it over (token {token})" if holder else "the job was released"))


@dataclass(frozen=True)
class StorageLimits:
    budget_bytes: int = 0  # job audio stored + what queued and running jobs will write; 0: no budget
    min_free_bytes: int = 0  # SQLite: free disk to leave once every queued and running job has written its result


def _size(count: float) -> str:
    return f"{count / 2**30:.2f} GiB" if count >= 2**30 else f"{count / 2**20:.1f} MiB"


class JobFinished(Exception):
    """Cancel of a job that already ended."""

    def __init__(self, job: "Job"):
        super().__init__(job.status)
        self.job = job


@dataclass(frozen=True)
class Lease:
    job_id: str
    owner: str  # the replica
    token: int  # the claim's number: a later claim's is larger


@dataclass(frozen=True)
class Part:
    """A finished music window or spoken sentence of a job (audio only when asked for)."""
    index: int
    sample_rate: int
    samples: int
    codes: np.ndarray | None
    text: str | None
    audio: np.ndarray | None = None

    @property
    def seconds(self) -> float:
        return self.samples / self.sample_rate


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
    lease: Lease | None = None  # set on the job claim_next returns

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


def replica_id() -> str:
    """This process's name among the replicas: host, pid and a random suffix (a restarted pod is a new replica)."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array, np.int64), allow_pickle=False)
    return buffer.getvalue()


def open_database(database: Database | Path | str) -> tuple[Database, bool]:
    """(database, owned): a Database as given, or the default SQLite file of a data dir (owned: closed with the store)."""
    if isinstance(database, Database):
        database.migrate()
        return database, False
    opened = Database(default_url(database), data_dir=database)
    opened.migrate()
    return opened, True


class JobStore:
    def __init__(self, database: Database | Path | str, clock: Callable[[], float] = time.time,
                 replica: str | None = None, lease_s: float = LEASE_S):
        self.clock = clock  # wall-clock seconds: created, started and finished times, leases and expiry
        self.db, self._owned = open_database(database)
        self.replica = replica or replica_id()
        self.lease_s = lease_s

    def close(self) -> None:
        if self._owned:
            self.db.close()

    # -- reads -----------------------------------------------------------------------------------

    @staticmethod
    def _queued_positions(connection: Connection) -> dict[str, int]:
        rows = connection.execute(select(jobs.c.id).where(jobs.c.status == QUEUED).order_by(jobs.c.seq)).all()
        return {row.id: i for i, row in enumerate(rows, start=1)}

    @staticmethod
    def _job(row, positions: dict[str, int] | None = None, lease: Lease | None = None) -> Job:
        return Job(id=row.id, owner=row.owner, params=json.loads(row.params), status=row.status,
                   created_at=row.created_at, started_at=row.started_at, finished_at=row.finished_at,
                   progress=row.progress, eta_s=row.eta_s, error=row.error,
                   queue_position=(positions or {}).get(row.id) if row.status == QUEUED else None, lease=lease)

    def _get(self, connection: Connection, job_id: str) -> Job | None:
        row = connection.execute(select(jobs).where(jobs.c.id == job_id)).first()
        if row is None:
            return None
        return self._job(row, self._queued_positions(connection) if row.status == QUEUED else None)

    def get(self, job_id: str, owner: str | None = None) -> Job | None:
        """The job, or None; with `owner`, only that owner's job."""
        with self.db.transaction() as connection:
            job = self._get(connection, job_id)
        if job is None or (owner is not None and job.owner != owner):
            return None
        return job

    def list(self, owner: str | None = None, limit: int = 100) -> list[Job]:
        """Newest first."""
        query = select(jobs).order_by(jobs.c.seq.desc()).limit(limit)
        if owner is not None:
            query = query.where(jobs.c.owner == owner)
        with self.db.transaction() as connection:
            rows = connection.execute(query).all()
            positions = self._queued_positions(connection)
        return [self._job(row, positions) for row in rows]

    def stored_bytes(self) -> int:
        """Bytes of job audio stored (finished results and the parts of running jobs)."""
        with self.db.transaction() as connection:
            return self._stored_bytes(connection)

    @staticmethod
    def _stored_bytes(connection: Connection) -> int:
        return int(connection.execute(select(func.coalesce(func.sum(func.length(job_parts.c.audio)), 0))).scalar())

    @staticmethod
    def _pending_bytes(connection: Connection) -> int:
        """What queued and running jobs will write."""
        seconds = connection.execute(select(func.coalesce(func.sum(jobs.c.reserved_s), 0))
                                     .where(jobs.c.status.in_((QUEUED, RUNNING)))).scalar()
        return int(seconds * RESULT_BYTES_PER_S)

    def _check_storage(self, connection: Connection, seconds: float, limits: StorageLimits) -> None:
        needed, pending = int(seconds * RESULT_BYTES_PER_S), self._pending_bytes(connection)
        if limits.budget_bytes:
            stored = self._stored_bytes(connection)
            if stored + pending + needed > limits.budget_bytes:
                raise StorageFull(
                    f"job storage is full: {_size(stored)} of job audio is stored and {_size(pending)} reserved by "
                    f"queued and running jobs; this job needs {_size(needed)} more, over the "
                    f"{_size(limits.budget_bytes)} budget (TRITONE_JOB_DISK_BUDGET_BYTES). Delete finished jobs "
                    "(DELETE /v1/jobs/{id}) or wait until they expire")
        if not self.db.is_sqlite:  # a database server's disk is its own to watch
            return
        free = shutil.disk_usage(Path(self.db.url.database).parent).free
        if free - pending - needed < limits.min_free_bytes:
            raise StorageFull(
                f"the disk is almost full: {_size(free)} free, {_size(pending)} reserved by queued and running jobs "
                f"and {_size(needed)} needed by this one would leave less than {_size(limits.min_free_bytes)} "
                "(TRITONE_JOB_MIN_FREE_BYTES)")

    def queued_count(self) -> int:
        with self.db.transaction() as connection:
            return connection.execute(select(func.count()).where(jobs.c.status == QUEUED)).scalar()

    def parts(self, job_id: str, audio: bool = False) -> list[Part]:
        """The job's finished windows or sentences, in order (their samples too with `audio`)."""
        columns = [job_parts.c.part, job_parts.c.sample_rate, job_parts.c.samples, job_parts.c.codes, job_parts.c.text]
        with self.db.transaction() as connection:
            rows = connection.execute(select(*columns, *([job_parts.c.audio] if audio else []))
                                      .where(job_parts.c.job_id == job_id).order_by(job_parts.c.part)).all()
        return [Part(row.part, row.sample_rate, row.samples,
                     None if row.codes is None else np.load(io.BytesIO(row.codes), allow_pickle=False), row.text,
                     np.frombuffer(row.audio, "<f4") if audio else None) for row in rows]

    def audio(self, job_id: str) -> tuple[np.ndarray, int] | None:
        """The job's audio (its parts joined) and sample rate; None when it has none."""
        parts = self.parts(job_id, audio=True)
        if not parts:
            return None
        return np.concatenate([part.audio for part in parts]).astype(np.float32), parts[0].sample_rate

    def captions(self, job_id: str) -> CaptionTrack | None:
        """A speech job's captions: each part's sentence over its samples; None when it has no parts."""
        parts = self.parts(job_id)
        if not parts:
            return None
        track = CaptionTrack(parts[0].sample_rate)
        for part in parts:
            track.add(part.text or "", part.samples)
        return track

    # -- writes ----------------------------------------------------------------------------------

    def create(self, owner: str, params: dict[str, Any], *, idempotency_key: str | None = None,
               max_queued: int | None = None, max_queued_per_owner: int | None = None,
               storage: StorageLimits | None = None) -> tuple[Job, bool]:
        """(job, created). The same idempotency key and body returns the existing job with created False.

        Raises IdempotencyConflict (key reused with another body), QueueFull (`max_queued` jobs queued in all, or
        `max_queued_per_owner` of this owner's: counted in the database, so over every replica) or StorageFull.
        """
        digest = body_hash(params)
        seconds = float(params.get("duration") or params.get("estimated_s") or 0.0)
        with self.db.transaction() as connection:
            self._lock_queue(connection)
            if idempotency_key is not None:
                row = connection.execute(select(jobs).where(jobs.c.owner == owner,
                                                            jobs.c.idempotency_key == idempotency_key)).first()
                if row is not None:
                    if row.body_hash != digest:
                        raise IdempotencyConflict(idempotency_key)
                    return self._get(connection, row.id), False
            if max_queued is not None:
                queued = connection.execute(select(func.count()).where(jobs.c.status == QUEUED)).scalar()
                if queued >= max_queued:
                    raise QueueFull(queued)
            if max_queued_per_owner is not None:
                mine = connection.execute(select(func.count()).where(jobs.c.status == QUEUED,
                                                                     jobs.c.owner == owner)).scalar()
                if mine >= max_queued_per_owner:
                    raise QueueFull(mine, per_key=True)
            if storage is not None:
                self._check_storage(connection, seconds, storage)
            job_id = "job_" + uuid.uuid4().hex
            connection.execute(insert(jobs).values(
                id=job_id, owner=owner, idempotency_key=idempotency_key, body_hash=digest, params=json.dumps(params),
                status=QUEUED, created_at=self.clock(), progress=0.0, reserved_s=seconds, lease_token=0))
            return self._get(connection, job_id), True

    def _lock_queue(self, connection: Connection) -> None:
        """Serialize submissions across replicas (the queue limit and the budget are checked, then a row added)."""
        if not self.db.is_sqlite:  # SQLite: BEGIN IMMEDIATE did already
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7455135018)")

    def claim_next(self) -> Job | None:
        """Lease the oldest queued job, or a running one whose lease expired, to this replica; None when there is none.

        A taken-over job keeps its parts and progress: its runner continues after them.
        """
        now = self.clock()
        claimable = or_(jobs.c.status == QUEUED,
                        and_(jobs.c.status == RUNNING, or_(jobs.c.lease_expires_at.is_(None),
                                                           jobs.c.lease_expires_at < now)))
        pick = select(jobs.c.seq).where(claimable).order_by(jobs.c.seq).limit(1)
        fresh = jobs.c.status == QUEUED
        with self.db.transaction() as connection:
            if self.db.is_sqlite:
                target = jobs.c.seq == pick.scalar_subquery()
            else:
                seq = connection.execute(pick.with_for_update(skip_locked=True)).scalar()
                if seq is None:
                    return None
                target = jobs.c.seq == seq
            row = connection.execute(
                update(jobs).where(target, claimable).values(
                    status=RUNNING, started_at=func.coalesce(jobs.c.started_at, now),
                    progress=case((fresh, 0.0), else_=jobs.c.progress),
                    eta_s=case((fresh, None), else_=jobs.c.eta_s), error=None,
                    lease_owner=self.replica, lease_token=jobs.c.lease_token + 1,
                    lease_expires_at=now + self.lease_s).returning(*jobs.c)).first()
        if row is None:
            return None
        return self._job(row, lease=Lease(row.id, self.replica, row.lease_token))

    def _held(self, lease: Lease):
        return and_(jobs.c.id == lease.job_id, jobs.c.status == RUNNING, jobs.c.lease_owner == lease.owner,
                    jobs.c.lease_token == lease.token)

    def _refused(self, connection: Connection, lease: Lease) -> str | None:
        """After a guarded write changed nothing: the job's status if it stopped (cancelled, deleted: None);
        LeaseLost if it runs under another lease."""
        row = connection.execute(select(jobs.c.status, jobs.c.lease_owner, jobs.c.lease_token)
                                 .where(jobs.c.id == lease.job_id)).first()
        if row is None:
            return None
        if row.status == RUNNING or row.status == QUEUED:
            raise LeaseLost(lease, row.lease_owner, row.lease_token)
        return row.status

    def _renew(self, connection: Connection, lease: Lease, **values) -> str | None:
        """Renew `lease` (and set `values`) if it is still held: RUNNING; else what _refused says."""
        done = connection.execute(update(jobs).where(self._held(lease))
                                  .values(lease_expires_at=self.clock() + self.lease_s, **values)).rowcount
        return RUNNING if done == 1 else self._refused(connection, lease)

    def heartbeat(self, lease: Lease) -> str | None:
        """Renew the lease; returns the job's status (cancelled: stop generating). Raises LeaseLost."""
        with self.db.transaction() as connection:
            return self._renew(connection, lease)

    def update_progress(self, lease: Lease, progress: float, eta_s: float | None) -> str | None:
        """Record progress of a running job (renewing the lease); returns the job's status (cancelled: stop
        generating). Raises LeaseLost."""
        with self.db.transaction() as connection:
            return self._renew(connection, lease, progress=min(100.0, max(0.0, progress)), eta_s=eta_s)

    def save_part(self, lease: Lease, index: int, audio: np.ndarray, sample_rate: int,
                  codes: np.ndarray | None = None, text: str | None = None) -> str | None:
        """Store a finished window or sentence, in the same transaction as the lease check: written only while the
        lease is held. Returns the job's status (cancelled: nothing written); raises LeaseLost."""
        with self.db.transaction() as connection:
            status = self._renew(connection, lease)
            if status != RUNNING:
                return status
            connection.execute(delete(job_parts).where(job_parts.c.job_id == lease.job_id, job_parts.c.part == index))
            connection.execute(insert(job_parts).values(
                job_id=lease.job_id, part=index, sample_rate=sample_rate, samples=len(audio),
                audio=np.ascontiguousarray(audio, "<f4").tobytes(), codes=None if codes is None else _npy(codes),
                text=text))
            return RUNNING

    def finish(self, lease: Lease, status: str, error: str | None = None) -> bool:
        """running -> succeeded or failed; False if the job is no longer running (it was cancelled). Raises LeaseLost."""
        assert status in (SUCCEEDED, FAILED)
        done = status == SUCCEEDED
        values = dict(status=status, finished_at=self.clock(), error=error, lease_owner=None, lease_expires_at=None,
                      progress=100.0 if done else jobs.c.progress, eta_s=0.0 if done else None)
        with self.db.transaction() as connection:
            if connection.execute(update(jobs).where(self._held(lease)).values(**values)).rowcount == 1:
                return True
            self._refused(connection, lease)
            return False

    def release(self, lease: Lease) -> bool:
        """running -> queued (a replica stopping gracefully), as if never started: another replica, or this one
        restarted, continues after its finished parts. False if the lease is no longer held."""
        with self.db.transaction() as connection:
            return connection.execute(update(jobs).where(self._held(lease)).values(
                status=QUEUED, started_at=None, progress=0.0, eta_s=None, lease_owner=None,
                lease_expires_at=None)).rowcount == 1

    def cancel(self, job_id: str, owner: str | None = None) -> tuple[Job, str]:
        """Cancel a queued or running job: (the cancelled job, its status before).

        Raises JobNotFound, or JobFinished when it already ended.
        """
        with self.db.transaction() as connection:
            job = self._get(connection, job_id)
            if job is None or (owner is not None and job.owner != owner):
                raise JobNotFound(job_id)
            if job.status in TERMINAL:
                raise JobFinished(job)
            connection.execute(update(jobs).where(jobs.c.id == job_id, jobs.c.status == job.status).values(
                status=CANCELLED, finished_at=self.clock(), eta_s=None, lease_owner=None, lease_expires_at=None))
            return self._get(connection, job_id), job.status

    def delete(self, job_id: str, owner: str | None = None) -> bool:
        """Delete the job and its audio (a running job should be cancelled first); False if there is none."""
        query = delete(jobs).where(jobs.c.id == job_id)
        if owner is not None:
            query = query.where(jobs.c.owner == owner)
        with self.db.transaction() as connection:
            deleted = connection.execute(query).rowcount
            if deleted:
                connection.execute(delete(job_parts).where(job_parts.c.job_id == job_id))
        return bool(deleted)

    def expire(self, before: float) -> list[str]:
        """Delete jobs that ended before `before` (wall-clock seconds) and their audio; returns their ids."""
        with self.db.transaction() as connection:
            ids = connection.execute(select(jobs.c.id).where(jobs.c.status.in_(TERMINAL), jobs.c.finished_at < before)
                                     .order_by(jobs.c.seq)).scalars().all()
            if ids:
                connection.execute(delete(jobs).where(jobs.c.id.in_(ids)))
                connection.execute(delete(job_parts).where(job_parts.c.job_id.in_(ids)))
        return list(ids)

    def recover(self) -> list[str]:
        """At startup: running jobs whose lease expired (their replica stopped) are queued again, keeping their
        finished parts (they continue after them). Returns their ids."""
        now = self.clock()
        with self.db.transaction() as connection:
            ids = connection.execute(select(jobs.c.id).where(
                jobs.c.status == RUNNING, or_(jobs.c.lease_expires_at.is_(None), jobs.c.lease_expires_at < now))
                .order_by(jobs.c.seq)).scalars().all()
            if ids:
                connection.execute(update(jobs).where(jobs.c.id.in_(ids), jobs.c.status == RUNNING).values(
                    status=QUEUED, started_at=None, progress=0.0, eta_s=None, lease_owner=None,
                    lease_expires_at=None))
        return list(ids)
