"""Jobs (with leases), job parts, voices (with their clips) and stream slots.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SEQ = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("seq", SEQ, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(64), nullable=False, unique=True),
        sa.Column("owner", sa.Text, nullable=False),
        sa.Column("idempotency_key", sa.String(255)),
        sa.Column("body_hash", sa.String(64), nullable=False),
        sa.Column("params", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("started_at", sa.Float),
        sa.Column("finished_at", sa.Float),
        sa.Column("progress", sa.Float, nullable=False, server_default=sa.text("0")),
        sa.Column("eta_s", sa.Float),
        sa.Column("error", sa.Text),
        sa.Column("reserved_s", sa.Float, nullable=False, server_default=sa.text("0")),
        sa.Column("lease_owner", sa.String(128)),
        sa.Column("lease_token", sa.BigInteger, nullable=False, server_default=sa.text("0")),
        sa.Column("lease_expires_at", sa.Float),
    )
    op.create_index("jobs_idempotency", "jobs", ["owner", "idempotency_key"], unique=True,
                    sqlite_where=sa.text("idempotency_key IS NOT NULL"),
                    postgresql_where=sa.text("idempotency_key IS NOT NULL"))
    op.create_index("jobs_status", "jobs", ["status", "seq"])
    op.create_table(
        "job_parts",
        sa.Column("job_id", sa.String(64), primary_key=True),
        sa.Column("part", sa.Integer, primary_key=True),
        sa.Column("sample_rate", sa.Integer, nullable=False),
        sa.Column("samples", sa.BigInteger, nullable=False),
        sa.Column("audio", sa.LargeBinary, nullable=False),
        sa.Column("codes", sa.LargeBinary),
        sa.Column("text", sa.Text),
    )
    op.create_table(
        "voices",
        sa.Column("seq", SEQ, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(64), nullable=False, unique=True),
        sa.Column("owner", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("transcript", sa.Text, nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("codes", sa.LargeBinary, nullable=False),
        sa.Column("codec", sa.String(128), nullable=False),
        sa.Column("codec_version", sa.String(32), nullable=False),
        sa.Column("frames", sa.Integer, nullable=False),
        sa.Column("duration", sa.Float, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("clip", sa.LargeBinary),
    )
    op.create_index("voices_name", "voices", ["owner", "name"], unique=True)
    op.create_index("voices_content_codec", "voices", ["owner", "content_hash", "codec", "codec_version"],
                    unique=True)
    op.create_table(
        "stream_slots",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("key_digest", sa.String(64), nullable=False),
        sa.Column("replica", sa.String(128), nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
    )
    op.create_index("stream_slots_key", "stream_slots", ["key_digest"])
    op.create_index("stream_slots_replica", "stream_slots", ["replica"])


def downgrade() -> None:
    for table in ("stream_slots", "voices", "job_parts", "jobs"):
        op.drop_table(table)
