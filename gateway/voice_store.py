"""Cloned voices in the gateway's database (gateway/database.py: SQLite or PostgreSQL), so they survive a
gateway restart and every replica sharing the database speaks them.

A voice is what speaking with it needs, the clip's codes [rows, frames] and its transcript, the codec
that made those codes (its encoder's Triton model name and version: codes serve only models of that
codec), plus the normalized clip itself (mono float32 WAV at the codec's rate, in the row) so it can be
encoded again for another codec. The codes are computed once, at upload; speech with a stored voice
sends them and never re-encodes. Voices are deduplicated by content (the normalized samples and the
transcript) per codec: the same clip uploaded again is the same voice, found before anything is encoded.

Stores from before the shared database (`voices.sqlite3` and `voices/` in the data dir, voices from before
codecs were recorded among them: `snac_encoder` version 1's, LEGACY_CODEC) are imported by the SQLite
migration (gateway/migrations/versions/0002_import_single_file_stores.py).

Blocking methods, as gateway/job_store.py; async callers use asyncio.to_thread.
"""

from __future__ import annotations

import io
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError

from tritone.gateway.database import Database
from tritone.gateway.db_schema import voices
from tritone.gateway.job_store import open_database

LEGACY_CODEC = ("snac_encoder", "1")  # what made the codes of voices stored before the codec was recorded


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


def _wav(clip: np.ndarray, sample_rate: int) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, clip, sample_rate, subtype="FLOAT", format="WAV")
    return buffer.getvalue()


_VOICE = [voices.c[name] for name in ("id", "owner", "name", "transcript", "frames", "duration", "created_at", "codec",
                                      "codec_version")]


class VoiceStore:
    def __init__(self, database: Database | Path | str):
        self.db, self._owned = open_database(database)

    def close(self) -> None:
        if self._owned:
            self.db.close()

    @staticmethod
    def _voice(row) -> Voice:
        return Voice(id=row.id, owner=row.owner, name=row.name, transcript=row.transcript, frames=row.frames,
                     duration=row.duration, created_at=row.created_at, codec=row.codec, codec_version=row.codec_version)

    def _one(self, *where) -> Voice | None:
        with self.db.transaction() as connection:
            row = connection.execute(select(*_VOICE).where(*where)).first()
        return None if row is None else self._voice(row)

    def find(self, owner: str, id_or_name: str) -> Voice | None:
        """A voice by id, else by name."""
        return (self._one(voices.c.owner == owner, voices.c.id == id_or_name)
                or self._one(voices.c.owner == owner, voices.c.name == id_or_name))

    def find_content(self, owner: str, content_hash: str, codec: tuple[str, str]) -> Voice | None:
        """The voice of this content whose codes `codec` (encoder, version) made."""
        return self._one(voices.c.owner == owner, voices.c.content_hash == content_hash, voices.c.codec == codec[0],
                         voices.c.codec_version == codec[1])

    def list(self, owner: str) -> list[Voice]:
        """Oldest first."""
        with self.db.transaction() as connection:
            rows = connection.execute(select(*_VOICE).where(voices.c.owner == owner).order_by(voices.c.seq)).all()
        return [self._voice(row) for row in rows]

    def codes(self, voice_id: str) -> np.ndarray:
        with self.db.transaction() as connection:
            data = connection.execute(select(voices.c.codes).where(voices.c.id == voice_id)).scalar()
        if data is None:
            raise KeyError(voice_id)
        return np.load(io.BytesIO(data), allow_pickle=False)

    def clip(self, voice_id: str) -> tuple[np.ndarray, int]:
        """The normalized clip and its sample rate."""
        with self.db.transaction() as connection:
            data = connection.execute(select(voices.c.clip).where(voices.c.id == voice_id)).scalar()
        if data is None:
            raise KeyError(voice_id)
        return soundfile.read(io.BytesIO(data), dtype="float32")

    def add(self, owner: str, name: str, transcript: str, content_hash: str, codes: np.ndarray, clip: np.ndarray,
            sample_rate: int, codec: tuple[str, str]) -> tuple[Voice, bool]:
        """(voice, created): the stored voice with this content and `codec` (encoder, version) if there is one
        (created False).

        Raises NameTaken when another voice of this owner has the name.
        """
        voice_id = "voice_" + uuid.uuid4().hex[:24]
        same_content = (voices.c.owner == owner, voices.c.content_hash == content_hash, voices.c.codec == codec[0],
                        voices.c.codec_version == codec[1])
        try:
            with self.db.transaction() as connection:
                row = connection.execute(select(*_VOICE).where(*same_content)).first()
                if row is not None:
                    return self._voice(row), False
                taken = connection.execute(select(*_VOICE).where(voices.c.owner == owner, voices.c.name == name)).first()
                if taken is not None:
                    raise NameTaken(self._voice(taken))
                connection.execute(insert(voices).values(
                    id=voice_id, owner=owner, name=name, transcript=transcript, content_hash=content_hash,
                    codes=_npy(codes), codec=codec[0], codec_version=codec[1], frames=int(codes.shape[-1]),
                    duration=len(clip) / sample_rate, created_at=time.time(), clip=_wav(clip, sample_rate)))
                row = connection.execute(select(*_VOICE).where(voices.c.id == voice_id)).first()
        except IntegrityError:  # another replica stored this content or took the name meanwhile (PostgreSQL)
            existing = self.find_content(owner, content_hash, codec)
            if existing is not None:
                return existing, False
            taken = self._one(voices.c.owner == owner, voices.c.name == name)
            if taken is not None:
                raise NameTaken(taken) from None
            raise
        return self._voice(row), True

    def delete(self, owner: str, voice_id: str) -> bool:
        with self.db.transaction() as connection:
            return bool(connection.execute(delete(voices).where(voices.c.owner == owner,
                                                                voices.c.id == voice_id)).rowcount)
