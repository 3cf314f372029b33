"""Per-key stream limits counted in the database (gateway/stream_slots.py): two limiters are two gateway replicas
on one database, on SQLite and on a real PostgreSQL (the `database` fixture)."""

from __future__ import annotations

import asyncio

import pytest

from tritone.gateway.errors import APIError
from tritone.gateway.stream_slots import SharedStreamLimiter


class Clock:
    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def replicas(database, limit=2, total=None, clock=None):
    clock = clock or Clock()
    return [SharedStreamLimiter(database, limit, total, replica=f"replica-{name}", ttl_s=30.0, clock=clock)
            for name in "ab"]


def refusal(coroutine) -> APIError:
    with pytest.raises(APIError) as refused:
        asyncio.run(coroutine)
    return refused.value


def test_a_key_limited_to_2_streams_gets_2_across_both_replicas_not_4(database):
    a, b = replicas(database)

    async def scenario():
        await a.acquire("k1")
        await b.acquire("k1")
        return a.active("k1"), b.active()

    assert asyncio.run(scenario()) == (2, 2)
    for limiter in (a, b):
        refused = refusal(limiter.acquire("k1"))
        assert (refused.status, refused.code, refused.message, refused.headers) == (
            429, "too_many_streams", "too many concurrent streams for this key (limit 2)", {"Retry-After": "1"})
    assert a.active("k1") == 2

    async def other_key_then_release():
        await b.acquire("k2")  # another key has its own 2
        a.release("k1")
        await a.settled()
        await b.acquire("k1")  # the slot a gave back
        return a.active("k1"), a.active()

    assert asyncio.run(other_key_then_release()) == (2, 3)


def test_the_slots_of_a_replica_that_died_expire_and_a_live_replica_keeps_its_own(database):
    clock = Clock()
    a, b = replicas(database, clock=clock)
    asyncio.run(a.acquire("k"))
    asyncio.run(b.acquire("k"))
    clock.now += 20
    assert b.renew() == 1  # b streams on; a died and renews nothing
    clock.now += 15  # a's slot expired 5 s ago, b's renewed one lives 15 s more
    assert b.active("k") == 1
    asyncio.run(b.acquire("k"))
    assert b.active("k") == 2
    assert refusal(b.acquire("k")).code == "too_many_streams"


def test_anonymous_clients_share_one_cap_across_replicas(database):
    a, b = replicas(database, limit=4, total=3)

    async def scenario():
        await a.acquire("10.0.0.1")
        await b.acquire("10.0.0.2")
        await b.acquire("10.0.0.3")

    asyncio.run(scenario())
    refused = refusal(a.acquire("10.0.0.4"))
    assert (refused.status, refused.code) == (429, "too_many_anonymous_streams")
    assert refused.message == "the server's 3 concurrent streams without an API key are all in use"


def test_keys_are_stored_as_digests(database):
    from sqlalchemy import select

    from tritone.gateway.db_schema import stream_slots

    a, _ = replicas(database)
    asyncio.run(a.acquire("sk-secret-key"))
    with database.transaction() as connection:
        rows = connection.execute(select(stream_slots.c.key_digest, stream_slots.c.replica)).all()
    assert [(len(digest), replica) for digest, replica in rows] == [(64, "replica-a")]
    assert "sk-secret-key" not in rows[0][0]
