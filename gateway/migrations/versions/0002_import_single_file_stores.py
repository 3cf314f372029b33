"""SQLite only: import the stores of gateways from before the shared database.

Those kept jobs in `jobs.sqlite3` with their audio under `results/` (`<id>.wav`, a speech job's captions
in `<id>.captions.json`), and voices in `voices.sqlite3` with their clips under `voices/`, all in the data
dir, which is where the SQLite database is now (`tritone.sqlite3`). Rows are copied (voices from before
codecs were recorded are `snac_encoder` version 1's, the only codec there was), results become job parts
(a speech result one part per caption, so its captions come back), clips move into the voices table.
Jobs that were running are queued again, as that gateway would have done at its restart. The old files
are left where they are.

Revision ID: 0002
Revises: 0001
"""

import json
import sqlite3
from pathlib import Path

import soundfile
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

LEGACY_CODEC = ("snac_encoder", "1")


def _rows(path: Path, table: str) -> list[dict]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone() is None:
            return []
        return [dict(row) for row in db.execute(f"SELECT * FROM {table} ORDER BY seq")]
    finally:
        db.close()


def _parts(job_id: str, results: Path) -> list[dict]:
    wav = results / f"{job_id}.wav"
    if not wav.exists():
        return []
    audio, rate = soundfile.read(wav, dtype="float32")
    captions = results / f"{job_id}.captions.json"
    if not captions.exists():
        return [{"job_id": job_id, "part": 0, "sample_rate": rate, "samples": len(audio),
                 "audio": audio.astype("<f4").tobytes(), "codes": None, "text": None}]
    cues = json.loads(captions.read_text())["captions"]
    return [{"job_id": job_id, "part": i, "sample_rate": rate, "samples": cue["end_sample"] - cue["start_sample"],
             "audio": audio[cue["start_sample"]:cue["end_sample"]].astype("<f4").tobytes(), "codes": None,
             "text": cue["text"]} for i, cue in enumerate(cues)]


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite" or not bind.engine.url.database:
        return
    folder = Path(bind.engine.url.database).parent
    tables = sa.MetaData()
    tables.reflect(bind, only=("jobs", "job_parts", "voices"))
    jobs, parts, voices = (tables.tables[name] for name in ("jobs", "job_parts", "voices"))
    if (folder / "jobs.sqlite3").exists():
        for row in _rows(folder / "jobs.sqlite3", "jobs"):
            params = json.loads(row["params"])
            running = row["status"] == "running"
            bind.execute(jobs.insert().values(
                id=row["id"], owner=row["owner"], idempotency_key=row["idempotency_key"], body_hash=row["body_hash"],
                params=row["params"], status="queued" if running else row["status"], created_at=row["created_at"],
                started_at=None if running else row["started_at"], finished_at=row["finished_at"],
                progress=0 if running else row["progress"], eta_s=None if running else row["eta_s"],
                error=row["error"], reserved_s=float(params.get("duration") or params.get("estimated_s") or 0)))
            if row["status"] == "succeeded":
                for part in _parts(row["id"], folder / "results"):
                    bind.execute(parts.insert().values(**part))
    if (folder / "voices.sqlite3").exists():
        for row in _rows(folder / "voices.sqlite3", "voices"):
            clip = folder / "voices" / f"{row['id']}.wav"
            bind.execute(voices.insert().values(
                id=row["id"], owner=row["owner"], name=row["name"], transcript=row["transcript"],
                content_hash=row["content_hash"], codes=row["codes"], codec=row.get("codec") or LEGACY_CODEC[0],
                codec_version=row.get("codec_version") or LEGACY_CODEC[1], frames=row["frames"],
                duration=row["duration"], created_at=row["created_at"],
                clip=clip.read_bytes() if clip.exists() else None))


def downgrade() -> None:
    pass
