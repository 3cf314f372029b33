"""The gateway's tables (SQLAlchemy Core), one schema for SQLite and PostgreSQL.

The tables' history is in gateway/migrations (Alembic): this module describes the current shape for
the stores' queries; a change here comes with a new migration.

- `jobs`: one row a job, with its lease (`lease_owner`, `lease_token`, `lease_expires_at`) while a
  replica runs it.
- `job_parts`: a job's audio as it is generated, one row per finished music window or spoken sentence
  (float32 samples; a window's codes, which the next window continues from; a sentence's text, its
  caption). The result is the parts' concatenation in `part` order.
- `voices`: cloned voices: codes, transcript, the codec that made them, and the normalized clip (WAV).
- `stream_slots`: one row per running stream of a key (its digest), renewed while it streams, so
  per-key limits hold across gateway replicas and a dead replica's slots free themselves.
"""

from __future__ import annotations

from sqlalchemy import (BigInteger, Column, Float, Index, Integer, LargeBinary, MetaData, String, Table, Text,
                        text)

metadata = MetaData()

jobs = Table(
    "jobs", metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("owner", Text, nullable=False),
    Column("idempotency_key", String(255)),
    Column("body_hash", String(64), nullable=False),
    Column("params", Text, nullable=False),  # JSON
    Column("status", String(16), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float),
    Column("finished_at", Float),
    Column("progress", Float, nullable=False, server_default=text("0")),
    Column("eta_s", Float),
    Column("error", Text),
    Column("reserved_s", Float, nullable=False, server_default=text("0")),  # seconds of audio it will write at most
    Column("lease_owner", String(128)),  # the replica running it
    Column("lease_token", BigInteger, nullable=False, server_default=text("0")),  # bumped by every claim: fencing
    Column("lease_expires_at", Float),
)
Index("jobs_idempotency", jobs.c.owner, jobs.c.idempotency_key, unique=True,
      sqlite_where=jobs.c.idempotency_key.isnot(None), postgresql_where=jobs.c.idempotency_key.isnot(None))
Index("jobs_status", jobs.c.status, jobs.c.seq)

job_parts = Table(
    "job_parts", metadata,
    Column("job_id", String(64), primary_key=True),
    Column("part", Integer, primary_key=True),  # window or sentence index
    Column("sample_rate", Integer, nullable=False),
    Column("samples", BigInteger, nullable=False),
    Column("audio", LargeBinary, nullable=False),  # float32 little-endian samples
    Column("codes", LargeBinary),  # a music window's codes [codebooks, frames] (.npy)
    Column("text", Text),  # a speech part's sentence
)

voices = Table(
    "voices", metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("owner", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("transcript", Text, nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("codes", LargeBinary, nullable=False),  # .npy
    Column("codec", String(128), nullable=False),
    Column("codec_version", String(32), nullable=False),
    Column("frames", Integer, nullable=False),
    Column("duration", Float, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("clip", LargeBinary),  # the normalized clip, float32 WAV
)
Index("voices_name", voices.c.owner, voices.c.name, unique=True)
Index("voices_content_codec", voices.c.owner, voices.c.content_hash, voices.c.codec, voices.c.codec_version,
      unique=True)

stream_slots = Table(
    "stream_slots", metadata,
    Column("id", String(64), primary_key=True),
    Column("key_digest", String(64), nullable=False),
    Column("replica", String(128), nullable=False),
    Column("expires_at", Float, nullable=False),
)
Index("stream_slots_key", stream_slots.c.key_digest)
Index("stream_slots_replica", stream_slots.c.replica)
