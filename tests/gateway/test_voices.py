"""Cloned voices: uploads checked from their headers before anything decodes them, encoded once through
the (fake) codec encoder, stored across restarts (in SQLite and in PostgreSQL), and spoken with their codes and
transcript."""

import io

import httpx
import numpy as np
import pytest
import soundfile as sf

from tritone.ensemble import tensors as T
from tritone.gateway.audio_probe import ClipInfo, probe
from tritone.gateway.settings import Settings
from tests.integration.stack import run_gateway
from tests.unit.test_speech_client import serve  # noqa: F401 - the fake server fixture
from tests.gateway.test_speech import fake_triton, module_gateway, sent_inputs, speak, text_input  # noqa: F401

SR = 24000
TRANSCRIPT = "This is what the clip says."


def clip(seconds=3.0, rate=SR, channels=1, fmt="WAV", subtype=None) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    tone = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, np.stack([tone] * channels, axis=1), rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


@pytest.fixture
def fake(serve):  # noqa: F811
    return serve(speak)


@pytest.fixture
def settings(fake, tmp_path, database):
    """On each backend (the `database` fixture): voices stored in SQLite or in a real PostgreSQL."""
    return Settings(triton_grpc_url=fake[1], data_dir=tmp_path / "gateway", job_workers=0,
                    database_url=database.url.render_as_string(hide_password=False))


@pytest.fixture
def gateway(settings):
    with run_gateway(settings) as url:
        yield url


def upload(url, data, filename="clip.wav", name="Narrator", transcript=TRANSCRIPT, **headers):
    return httpx.post(f"{url}/v1/audio/voices", files={"file": (filename, data)},
                      data={"name": name, "transcript": transcript}, headers=headers, timeout=30)


# --- headers alone -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "name", "expected"),
    [
        (clip(fmt="WAV"), "a.wav", ClipInfo("wav", "pcm16", SR, 1, 3.0)),
        (clip(2.0, 44100, 2, "WAV", "FLOAT"), "a.WAV", ClipInfo("wav", "float32", 44100, 2, 2.0)),
        (clip(fmt="FLAC"), "a.flac", ClipInfo("flac", "flac", SR, 1, 3.0)),
        (clip(fmt="OGG", subtype="VORBIS"), "a.ogg", ClipInfo("ogg", "vorbis", SR, 1, 3.0)),
        (clip(2.0, 48000, 1, "OGG", "OPUS"), "a.opus", ClipInfo("ogg", "opus", 48000, 1, 2.0)),
    ],
)
def test_format_rate_channels_and_duration_come_from_the_headers(data, name, expected):
    assert probe(data, name) == expected


def test_mp3_duration_from_its_frames():
    info = probe(clip(4.0, 44100, 2, "MP3", "MPEG_LAYER_III"), "a.mp3")
    assert (info.format, info.sample_rate, info.channels) == ("mp3", 44100, 2)
    assert info.duration == pytest.approx(4.0, abs=0.1)


# --- bad uploads: a 4xx naming the problem, and the encoder never called -----------------------------------

def silence(seconds: float, rate: int, fmt: str) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, np.zeros(int(seconds * rate), np.int16), rate, format=fmt)
    return buffer.getvalue()


TEN_MINUTES = silence(600.0, 16000, "FLAC")  # compresses to little: under the size limit


@pytest.mark.parametrize(
    ("data", "filename", "status", "message"),
    [
        (b"", "clip.wav", 400, "file: the file is empty"),
        (clip()[:20000], "clip.wav", 400,
         "file: truncated or damaged WAV file: the header announces 144000 bytes of audio, the file holds 19956"),
        (clip(fmt="FLAC")[:30], "clip.flac", 400, "file: truncated or damaged FLAC file: no STREAMINFO block"),
        (np.random.default_rng(0).bytes(50_000), "clip.wav", 415, "file: the content is not WAV, FLAC, MP3 or Ogg audio"),
        (TEN_MINUTES, "clip.flac", 400, "file: the clip lasts 600.00 s; a voice clip must last 1 to 30 s"),
        (clip(0.5), "clip.wav", 400, "file: the clip lasts 0.50 s; a voice clip must last 1 to 30 s"),
        (clip(3.0, 8000, 2), "clip.wav", 400, "file: the clip is sampled at 8000 Hz; a voice clip needs at least 16000 Hz"),
        (clip(3.0, SR, 6), "clip.wav", 400, "file: the clip has 6 channels; a voice clip must be mono or stereo"),
        (clip(), "clip.mp3", 415, "file: the content is WAV but the file name ends in .mp3"),
        (clip(fmt="FLAC"), "clip.ogg", 415, "file: the content is FLAC but the file name ends in .ogg"),
        (clip(), "clip.txt", 415, "file: .txt files are not taken; upload a .flac, .mp3, .ogg, .wav file"),
        (clip(), "clip", 415, "file: the file name 'clip' has no extension; upload a .flac, .mp3, .ogg, .wav file"),
    ],
    ids=["empty", "truncated-wav", "truncated-flac", "random-bytes", "ten-minutes", "too-short", "8khz-stereo",
         "six-channels", "wav-named-mp3", "flac-named-ogg", "unknown-extension", "no-extension"],
)
def test_bad_reference_audio_is_refused_before_decoding(module_gateway, fake_triton, data, filename, status,  # noqa: F811
                                                        message):
    gateway = module_gateway[3]
    reply = upload(gateway, data, filename)
    assert reply.status_code == status
    assert reply.json()["error"]["message"] == message and reply.json()["error"]["param"] == "file"
    assert fake_triton[0].encoded == []
    assert [v["type"] for v in httpx.get(f"{gateway}/v1/audio/voices").json()["data"]] == ["builtin"] * 8


def test_a_flac_bomb_is_refused_once_its_decoded_audio_passes_the_limit(module_gateway, fake_triton):  # noqa: F811
    """Ten minutes of audio under a header that says 5 s: decoding stops at 30.5 s, nothing is encoded."""
    from tests.unit.test_audio_probe import set_flac_total_samples

    bomb = set_flac_total_samples(silence(600.0, 48000, "FLAC"), 5 * 48000)
    reply = upload(module_gateway[3], bomb, "bomb.flac")
    assert (reply.status_code, reply.json()["error"]) == (400, {
        "message": "file: the clip holds more than 30.5 s of audio (decoding stopped there), though its header says "
                   "5.00 s; a voice clip must last 1 to 30 s",
        "type": "invalid_request_error", "param": "file", "code": "invalid_audio"})
    assert fake_triton[0].encoded == []


def test_a_192_khz_stereo_clip_is_accepted_and_resampled_to_24_khz(gateway, fake):
    reply = upload(gateway, clip(3.0, 192000, 2, "WAV", "PCM_24"), "studio.wav", name="Studio")
    assert reply.status_code == 201, reply.text
    (encoded,) = fake[0].encoded
    assert encoded.shape == (1, 3 * SR)


def test_a_file_over_the_size_limit_is_a_413(settings, fake):
    with run_gateway(settings.model_copy(update={"voice_max_bytes": 100_000})) as url:
        small = upload(url, clip(1.5))  # 72 KB
        assert small.status_code == 201
        reply = upload(url, clip(10.0))  # 480 KB: refused from the Content-Length, unread
        assert reply.status_code == 413
        assert reply.json()["error"] == {"message": "file: 469 KiB is over the 98 KiB limit for a voice clip",
                                         "type": "invalid_request_error", "param": "file", "code": "file_too_large"}
        assert len(fake[0].encoded) == 1


@pytest.mark.parametrize(
    ("form", "status", "message", "param"),
    [
        ({"name": "tara"}, 400, "name: 'tara' is taken by a built-in voice or looks like a voice id; choose another",
         "name"),
        ({"name": "Alloy"}, 400, "name: 'Alloy' is taken by a built-in voice or looks like a voice id; choose another",
         "name"),
        ({"name": ""}, 400, "name: Field required", "name"),  # an empty form field is a missing one
        ({"name": "x" * 65}, 400, "name: String should have at most 64 characters", "name"),
        ({"transcript": " "}, 400, "transcript: must not be blank", "transcript"),
        ({"transcript": "x" * 1001}, 400, "transcript: String should have at most 1000 characters", "transcript"),
    ],
)
def test_bad_names_and_transcripts_are_named(module_gateway, fake_triton, form, status, message, param):  # noqa: F811
    reply = upload(module_gateway[3], clip(), **form)
    assert (reply.status_code, reply.json()["error"]["message"], reply.json()["error"]["param"]) == \
        (status, message, param)
    assert fake_triton[0].encoded == []


# --- the round trip ------------------------------------------------------------------------------------------


def test_a_voice_is_encoded_once_stored_spoken_with_its_codes_and_deleted(gateway, fake):
    stereo_44k = clip(2.0, 44100, 2, "MP3", "MPEG_LAYER_III")
    created = upload(gateway, stereo_44k, "take one.mp3")
    assert created.status_code == 201, created.text
    voice = created.json()
    assert created.headers["location"] == f"/v1/audio/voices/{voice['id']}"
    assert voice["id"].startswith("voice_") and voice["name"] == "Narrator" and voice["transcript"] == TRANSCRIPT
    assert voice["type"] == "audio_sample" and voice["duration"] == pytest.approx(2.0, abs=0.06)
    (encoded,) = fake[0].encoded  # mono at 24 kHz, once
    assert encoded.shape[0] == 1 and abs(encoded.shape[1] - 2 * SR) < 0.06 * SR
    assert voice["frames"] == encoded.shape[1] // 2048

    again = upload(gateway, stereo_44k, "copy.mp3", name="Another name")  # same content: the same voice
    assert (again.status_code, again.json()["id"]) == (200, voice["id"])
    assert len(fake[0].encoded) == 1
    assert upload(gateway, clip(), name="Narrator").status_code == 409  # another clip, a taken name

    listed = httpx.get(f"{gateway}/v1/audio/voices").json()["data"]
    assert [v["id"] for v in listed] == ["tara", "leah", "jess", "leo", "dan", "mia", "zac", "zoe", voice["id"]]
    assert listed[0] == {"id": "tara", "object": "audio.voice", "type": "builtin", "name": "tara", "aliases": ["alloy"]}
    assert httpx.get(f"{gateway}/v1/audio/voices/{voice['id']}").json() == voice

    for chosen in ("Narrator", voice["id"], {"id": voice["id"]}):
        reply = httpx.post(f"{gateway}/v1/audio/speech", json={"input": "Now in my voice.", "voice": chosen,
                                                                  "response_format": "wav"}, timeout=30)
        assert reply.status_code == 200
        inputs = sent_inputs(fake[0], -1)
        assert list(inputs) == [T.TEXT, T.REFERENCE_TEXT, T.REFERENCE_CODES]
        assert text_input(inputs[T.REFERENCE_TEXT]) == TRANSCRIPT
        frames = voice["frames"]
        assert np.frombuffer(inputs[T.REFERENCE_CODES], np.int64).tolist() == list(np.arange(7 * frames) % 4096)
    assert len(fake[0].encoded) == 1  # speaking never encodes again

    assert httpx.delete(f"{gateway}/v1/audio/voices/{voice['id']}").json() == \
        {"id": voice["id"], "object": "voice.deleted", "deleted": True}
    assert httpx.get(f"{gateway}/v1/audio/voices/{voice['id']}").status_code == 404
    assert httpx.delete(f"{gateway}/v1/audio/voices/{voice['id']}").status_code == 404
    assert httpx.post(f"{gateway}/v1/audio/speech", json={"input": "Hi.", "voice": "Narrator"}).status_code == 400
    assert httpx.delete(f"{gateway}/v1/audio/voices/tara").status_code == 409


def test_stored_voices_outlive_the_gateway(settings, fake):
    with run_gateway(settings) as url:
        voice = upload(url, clip(fmt="FLAC"), "clip.flac").json()
    with run_gateway(settings) as url:
        assert httpx.get(f"{url}/v1/audio/voices/{voice['id']}").json() == voice
        assert httpx.post(f"{url}/v1/audio/speech", json={"input": "Still here.", "voice": voice["id"]},
                          timeout=30).status_code == 200
    assert len(fake[0].encoded) == 1


def test_with_api_keys_each_key_has_its_own_voices(settings):
    with run_gateway(settings.model_copy(update={"api_keys": ["a", "b"]})) as url:
        assert upload(url, clip()).status_code == 401
        voice = upload(url, clip(), Authorization="Bearer a").json()
        as_b = {"Authorization": "Bearer b"}
        assert httpx.get(f"{url}/v1/audio/voices/{voice['id']}", headers=as_b).status_code == 404
        assert len(httpx.get(f"{url}/v1/audio/voices", headers=as_b).json()["data"]) == 8
        assert upload(url, clip(), Authorization="Bearer b").json()["id"] != voice["id"]
