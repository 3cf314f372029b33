"""Cloned voices in SQLite (`voices.sqlite3` beside the jobs), so they survive a gateway restart.

A voice is what speaking with it needs, the clip's codes [rows, frames] and its transcript, the codec
that made those codes (its encoder's Triton model name and version: codes serve only models of that
codec), plus the normalized clip itself (mono WAV at the codec's rate under `voices/`) so it can be
encoded again for another codec. The codes are computed once, at upload; speech with a stored voice
sends them and never re-encodes. Voices are deduplicated by content (the normalized samples and the
transcript) per codec: the same clip uploaded again is the same voice, found before anything is encoded.

Databases from before codecs were recorded are migrated on open: their voices were all encoded by
`snac_encoder` version 1, the only codec there was (LEGACY_CODEC).

Blocking methods behind one lock, as gateway/job_store.py; async callers use asyncio.to_thread.
"""

from __future__ import annotations

import io
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

from tritone.gateway.sqlite import connect

_SCHEMA = """
CREATE TABLE IF NOT EXISTS voices (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    owner TEXT NOT NULL,
    name TEXT NOT NULL,
    transcript TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    codes BLOB NOT NULL,
    codec TEXT NOT NULL,
    codec_version TEXT NOT NULL,
    frames INTEGER NOT NULL,
    duration REAL NOT NULL,
    created_at REAL NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS voices_name ON voices (owner, name);
"""
LEGACY_CODEC = ("snac_encoder", "1")  # what made the codes of voices stored before the codec was recorded
_CODEC_INDEX = "CREATE UNIQUE INDEX IF NOT EXISTS voices_content_codec ON voices (owner, content_hash, codec, codec_version)"


def _migrate(db: sqlite3.Connection) -> None:
    """Record the codec of voices stored before it was (LEGACY_CODEC); deduplicate by content per codec."""
    columns = {row["name"] for row in db.execute("PRAGMA table_info(voices)")}
    if "codec" not in columns:
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(f"ALTER TABLE voices ADD COLUMN codec TEXT NOT NULL DEFAULT '{LEGACY_CODEC[0]}'")
            db.execute(f"ALTER TABLE voices ADD COLUMN codec_version TEXT NOT NULL DEFAULT '{LEGACY_CODEC[1]}'")
            db.execute("DROP INDEX IF EXISTS voices_content")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    db.execute(_CODEC_INDEX)


class NameTaken(Exception):
    def __init__(self, voice: "Voice"):
        super().__init__(voice.name)
        self.voice = voice


@dataclass(frozen=True)
class Voice:
    id: str
    owner: str
    name: str
    transcript: str
    frames: int
    duration: float  # seconds of the stored clip
    created_at: float
    codec: str  # the Triton model that encoded the codes
    codec_version: str  # and its version

    def to_dict(self) -> dict:
        """The API's voice object."""
        return {"id": self.id, "object": "audio.voice", "type": "audio_sample", "name": self.name, "transcript": self.transcript,
                "duration": round(self.duration, 3), "frames": self.frames, "codec": self.codec,
                "codec_version": self.codec_version, "created_at": int(self.created_at)}


def _npy(codes: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(codes, np.int64), allow_pickle=False)
    return buffer.getvalue()


class VoiceStore:
    def __init__(self, data_dir: Path | str):
        self.data_dir = Path(data_dir)
        self.clips_dir = self.data_dir / "voices"
        self.clips_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = connect(self.data_dir / "voices.sqlite3", _SCHEMA)
        _migrate(self._db)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def clip_path(self, voice_id: str) -> Path:
        return self.clips_dir / f"{voice_id}.wav"

    @staticmethod
    def _voice(row: sqlite3.Row) -> Voice:
        return Voice(id=row["id"], owner=row["owner"], name=row["name"], transcript=row["transcript"],
                     frames=row["frames"], duration=row["duration"], created_at=row["created_at"],
                     codec=row["codec"], codec_version=row["codec_version"])

    def _one(self, sql: str, args: tuple) -> Voice | None:
        with self._lock:
            row = self._db.execute(sql, args).fetchone()
        return None if row is None else self._voice(row)

    def find(self, owner: str, id_or_name: str) -> Voice | None:
        """A voice by id, else by name."""
        return (self._one("SELECT * FROM voices WHERE owner = ? AND id = ?", (owner, id_or_name))
                or self._one("SELECT * FROM voices WHERE owner = ? AND name = ?", (owner, id_or_name)))

    def find_content(self, owner: str, content_hash: str, codec: tuple[str, str]) -> Voice | None:
        """The voice of this content whose codes `codec` (encoder, version) made."""
        return self._one("SELECT * FROM voices WHERE owner = ? AND content_hash = ? AND codec = ? AND codec_version = ?",
                         (owner, content_hash, *codec))

    def list(self, owner: str) -> list[Voice]:
        """Oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM voices WHERE owner = ? ORDER BY seq", (owner,)).fetchall()
        return [self._voice(row) for row in rows]

    def codes(self, voice_id: str) -> np.ndarray:
        with self._lock:
            row = self._db.execute("SELECT codes FROM voices WHERE id = ?", (voice_id,)).fetchone()
        if row is None:
            raise KeyError(voice_id)
        return np.load(io.BytesIO(row["codes"]), allow_pickle=False)

    def add(self, owner: str, name: str, transcript: str, content_hash: str, codes: np.ndarray, clip: np.ndarray,
            sample_rate: int, codec: tuple[str, str]) -> tuple[Voice, bool]:
        """(voice, created): the stored voice with this content and `codec` (encoder, version) if there is one
        (created False).

        Raises NameTaken when another voice of this owner has the name.
        """
        voice_id = "voice_" + uuid.uuid4().hex[:24]
        path = self.clip_path(voice_id)
        soundfile.write(path, clip, sample_rate, subtype="FLOAT")
        try:
            with self._lock:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    row = self._db.execute("SELECT * FROM voices WHERE owner = ? AND content_hash = ? AND codec = ? "
                                           "AND codec_version = ?", (owner, content_hash, *codec)).fetchone()
                    if row is None:
                        taken = self._db.execute("SELECT * FROM voices WHERE owner = ? AND name = ?",
                                                 (owner, name)).fetchone()
                        if taken is not None:
                            raise NameTaken(self._voice(taken))
                        self._db.execute(
                            "INSERT INTO voices (id, owner, name, transcript, content_hash, codes, codec, codec_version, "
                            "frames, duration, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            (voice_id, owner, name, transcript, content_hash, _npy(codes), *codec,
                             int(codes.shape[-1]), len(clip) / sample_rate, time.time()))
                        row = self._db.execute("SELECT * FROM voices WHERE id = ?", (voice_id,)).fetchone()
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        created = row["id"] == voice_id
        if not created:  # stored meanwhile by a concurrent upload of the same clip
            path.unlink(missing_ok=True)
        return self._voice(row), created

    def delete(self, owner: str, voice_id: str) -> bool:
        with self._lock:
            deleted = self._db.execute("DELETE FROM voices WHERE owner = ? AND id = ?", (owner, voice_id)).rowcount
        if deleted:
            self.clip_path(voice_id).unlink(missing_ok=True)
        return bool(deleted)
