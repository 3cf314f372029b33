"""The voice store on SQLite and on a real PostgreSQL (the `database` fixture: one suite, two backends)."""

from __future__ import annotations

import numpy as np
import pytest

from tritone.gateway import voice_store as vs
from tritone.gateway.voice_store import VoiceStore

SNAC = ("snac_encoder", "1")


@pytest.fixture
def store(database):
    store = VoiceStore(database)
    yield store
    store.close()


def codes(frames: int = 3, start: int = 0) -> np.ndarray:
    return (np.arange(7 * frames, dtype=np.int64) + start).reshape(7, frames)


def clip(seconds: float = 0.5, rate: int = 24000) -> np.ndarray:
    return np.linspace(-0.5, 0.5, int(seconds * rate), dtype=np.float32)


def test_a_voice_is_stored_with_its_codes_clip_and_codec(store):
    voice, created = store.add("alice", "Narrator", "What the clip says.", "hash-1", codes(), clip(), 24000, SNAC)
    assert created and voice.id.startswith("voice_") and (voice.frames, voice.duration) == (3, 0.5)
    assert (voice.codec, voice.codec_version) == SNAC
    assert voice.to_dict() == {"id": voice.id, "object": "audio.voice", "type": "audio_sample", "name": "Narrator",
                               "transcript": "What the clip says.", "duration": 0.5, "frames": 3,
                               "codec": "snac_encoder", "codec_version": "1", "created_at": int(voice.created_at)}
    np.testing.assert_array_equal(store.codes(voice.id), codes())
    samples, rate = store.clip(voice.id)
    assert rate == 24000
    np.testing.assert_array_equal(samples, clip())
    assert store.find("alice", voice.id) == voice and store.find("alice", "Narrator") == voice
    assert store.find("bob", "Narrator") is None and store.find("alice", "nobody") is None
    with pytest.raises(KeyError):
        store.codes("voice_missing")


def test_content_is_deduplicated_per_owner_and_codec_and_names_are_unique(store):
    first, _ = store.add("alice", "A", "words", "hash", codes(), clip(), 24000, SNAC)
    again, created = store.add("alice", "Another name", "words", "hash", codes(), clip(), 24000, SNAC)
    assert not created and again == first
    assert store.find_content("alice", "hash", SNAC) == first
    assert store.find_content("alice", "hash", ("mimi_encoder", "1")) is None
    other_codec, created = store.add("alice", "A for mimi", "words", "hash", codes(2), clip(), 24000,
                                     ("mimi_encoder", "1"))
    assert created and other_codec.id != first.id
    with pytest.raises(vs.NameTaken) as taken:
        store.add("alice", "A", "other words", "hash-2", codes(), clip(), 24000, SNAC)
    assert taken.value.voice == first
    bobs, created = store.add("bob", "A", "words", "hash", codes(), clip(), 24000, SNAC)  # per owner
    assert created and bobs.id != first.id
    assert [voice.name for voice in store.list("alice")] == ["A", "A for mimi"]
    assert store.delete("alice", first.id) and not store.delete("alice", first.id)
    assert not store.delete("alice", bobs.id)  # another owner's
    assert [voice.name for voice in store.list("alice")] == ["A for mimi"]


def test_a_voice_stored_through_one_replica_is_known_to_another(database):
    a, b = VoiceStore(database), VoiceStore(database)
    voice, _ = a.add("", "Shared", "words", "hash", codes(), clip(), 24000, SNAC)
    assert b.find("", "Shared") == voice
    np.testing.assert_array_equal(b.codes(voice.id), codes())
    assert b.delete("", voice.id) and a.find("", voice.id) is None
