"""Concurrent streams per key counted in the shared database, so a key's limit holds across gateway replicas.

Each running stream holds a row of `stream_slots` (the key's digest, never the key; the replica; an
expiry), renewed every third of `ttl_s` while it streams: the slots of a replica that died expire by
themselves. Acquiring counts the key's live slots (and, for anonymous clients, everyone's) and adds one
in one transaction, serialized across replicas (a PostgreSQL advisory lock; SQLite's BEGIN IMMEDIATE).

While the database is unavailable, streams are still served: the replica counts them in its own memory
(gateway/auth.py's StreamLimiter, the same limits per replica) until it is back.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from collections.abc import Callable

from sqlalchemy import delete, func, insert, select, update

from tritone.gateway.auth import StreamLimiter, too_many_anonymous, too_many_streams
from tritone.gateway.database import Database, DatabaseUnavailable
from tritone.gateway.db_schema import stream_slots

log = logging.getLogger("tritone.gateway")

SLOTS_LOCK = 7_455_135_019  # PostgreSQL advisory lock: one replica at a time counts and adds a slot


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class SharedStreamLimiter:
    """StreamLimiter's limits (at most `limit` concurrent streams per key; with `total`, at most that many in all)
    counted over every replica of one database."""

    def __init__(self, database: Database, limit: int, total: int | None = None, *, replica: str,
                 ttl_s: float = 30.0, clock: Callable[[], float] = time.time):
        self.db, self.limit, self.total, self.replica, self.ttl_s, self.clock = \
            database, limit, total, replica, ttl_s, clock
        self.local = StreamLimiter(limit, total)  # while the database is away
        self._held: dict[str, list[str | None]] = {}  # key -> its slots here (None: counted locally)
        self._pending: set[asyncio.Task] = set()
        self._renewer: asyncio.Task | None = None

    # -- the database side (blocking) -------------------------------------------------------------------------

    def _take(self, key: str) -> str:
        now, digest = self.clock(), key_digest(key)
        with self.db.transaction() as connection:
            if not self.db.is_sqlite:
                connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({SLOTS_LOCK})")
            connection.execute(delete(stream_slots).where(stream_slots.c.expires_at < now))
            if self.total is not None and \
                    connection.execute(select(func.count()).select_from(stream_slots)).scalar() >= self.total:
                raise too_many_anonymous(self.total)
            if connection.execute(select(func.count()).where(stream_slots.c.key_digest == digest)).scalar() \
                    >= self.limit:
                raise too_many_streams(self.limit)
            slot = uuid.uuid4().hex
            connection.execute(insert(stream_slots).values(id=slot, key_digest=digest, replica=self.replica,
                                                           expires_at=now + self.ttl_s))
        return slot

    def _give_back(self, slot: str) -> None:
        with self.db.transaction() as connection:
            connection.execute(delete(stream_slots).where(stream_slots.c.id == slot))

    def renew(self) -> int:
        """Push the expiry of this replica's slots ttl_s ahead; returns how many it holds."""
        held = [slot for slots in self._held.values() for slot in slots if slot is not None]
        if held:
            with self.db.transaction() as connection:
                connection.execute(update(stream_slots).where(stream_slots.c.id.in_(held))
                                   .values(expires_at=self.clock() + self.ttl_s))
        return len(held)

    def active(self, key: str | None = None) -> int:
        """Live slots in the database (of `key`), over every replica."""
        query = select(func.count()).select_from(stream_slots).where(stream_slots.c.expires_at >= self.clock())
        if key is not None:
            query = query.where(stream_slots.c.key_digest == key_digest(key))
        with self.db.transaction() as connection:
            return connection.execute(query).scalar()

    # -- StreamLimiter's interface --------------------------------------------------------------------------------

    async def acquire(self, key: str) -> None:
        try:
            slot = await asyncio.to_thread(self._take, key)
        except DatabaseUnavailable as error:
            log.warning("stream limits counted on this replica only: %s", error)
            await self.local.acquire(key)
            slot = None
        self._held.setdefault(key, []).append(slot)

    def release(self, key: str) -> None:
        slots = self._held.get(key)
        if not slots:
            return
        slot = slots.pop()
        if not slots:
            del self._held[key]
        if slot is None:
            self.local.release(key)
            return
        task = asyncio.get_running_loop().create_task(self._delete(slot))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _delete(self, slot: str) -> None:
        try:
            await asyncio.to_thread(self._give_back, slot)
        except DatabaseUnavailable as error:  # it expires instead (no longer renewed)
            log.warning("stream slot not given back: %s", error)

    async def settled(self) -> None:
        """Wait until the slots released so far are gone from the database."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    # -- lifecycle ------------------------------------------------------------------------------------------------

    def start(self) -> None:
        self._renewer = asyncio.get_running_loop().create_task(self._renew_periodically(), name="stream-slots")

    async def _renew_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.ttl_s / 3)
            try:
                await asyncio.to_thread(self.renew)
            except DatabaseUnavailable as error:
                log.warning("stream slots not renewed: %s", error)

    async def stop(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            await asyncio.gather(self._renewer, return_exceptions=True)
        await self.settled()
