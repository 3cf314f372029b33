"""The gateway takes each model's limits and facts from its Triton config (written once, in its family's spec), not
from code of its own: the request schemas in /openapi.json (what /docs shows) and the 400s state the config's
values, a limit changed in the spec changes both, the speakers the config lists are the built-in voices; and with
two speech models whose codecs differ, a voice stored with one codec's codes is refused by the other with a 422
naming both. Through the real app (TestClient, lifespan run) against a fake Triton, an in-process gRPC server whose
configs are the specs' rendered (tests/unit/test_speech_client.py)."""

import sqlite3
import time
from concurrent import futures
from contextlib import contextmanager

import grpc

from fastapi.testclient import TestClient
from tritonclient.grpc import model_config_pb2 as pb
from tritonclient.grpc import service_pb2_grpc

from tritone.ensemble import tensors as T
from tritone.gateway.main import create_app
from tritone.gateway.settings import Settings, SpeechModel
from tritone.gateway.voice_store import LEGACY_CODEC, VoiceStore
from tritone.serving.triton import free_port
from tests.unit.test_speech_client import FakeOrpheus, spec_configs, start_fake
from tests.gateway.test_speech import sent_inputs, speak, text_input
from tests.gateway.test_voices import TRANSCRIPT, clip


@contextmanager
def gateway(tmp_path, configs=None, **settings):
    fake, url, server = start_fake(speak, configs)
    try:
        app = create_app(Settings(triton_grpc_url=url, data_dir=tmp_path / "gateway", job_workers=0, **settings))
        with TestClient(app) as client:
            yield client, fake
    finally:
        server.stop(None)


def error(reply) -> tuple[int, dict]:
    return reply.status_code, reply.json()["error"]


def invalid(param: str, message: str) -> dict:
    return {"message": message, "type": "invalid_request_error", "param": param, "code": "invalid_value"}


def upload(client, name="Narrator", seconds=3.0, **form):
    return client.post("/v1/audio/voices", files={"file": ("clip.wav", clip(seconds))},
                       data={"name": name, "transcript": TRANSCRIPT, **form})


def properties(api: dict, schema: str) -> dict:
    return api["components"]["schemas"][schema]["properties"]


def test_the_schemas_state_the_limits_the_specs_write(tmp_path):
    with gateway(tmp_path) as (client, _):
        api = client.get("/openapi.json").json()
        music, job = properties(api, "MusicBody"), properties(api, "JobBody")
        assert (music["duration"]["minimum"], music["duration"]["maximum"], music["prompt"]["maxLength"]) == \
            (0.1, 30, 2000)
        assert (job["duration"]["minimum"], "maximum" in job["duration"], job["prompt"]["maxLength"]) == \
            (0.1, False, 2000)
        assert properties(api, "SpeechBody")["voice"]["description"] == (
            "A built-in speaker (orpheus: tara, leah, jess, leo, dan, mia, zac, zoe; chatterbox: default), an OpenAI "
            "voice name (alloy, ash, ... map to built-in speakers), or a stored voice's id or name "
            "(GET /v1/audio/voices). Default: orpheus: tara; chatterbox: default.")
        assert api["paths"]["/v1/audio/voices"]["post"]["summary"] == \
            "Clone a voice from a clip: orpheus: 1 to 30 s and its transcript; chatterbox: 1 to 30 s"
        assert error(client.post("/v1/audio/music", json={"prompt": "x", "duration": 31})) == \
            (400, invalid("duration", "duration: Input should be less than or equal to 30"))


def test_a_limit_changed_in_the_spec_changes_the_docs_and_the_400_without_gateway_code(tmp_path):
    configs = spec_configs(**{T.MUSICGEN: {"max_duration_s": "12", "min_duration_s": "0.5", "max_text_chars": "50"},
                              T.ORPHEUS: {"speakers": "ava,bo", "min_reference_s": "2", "max_reference_s": "5"}})
    with gateway(tmp_path, configs) as (client, fake):
        api = client.get("/openapi.json").json()
        music, job = properties(api, "MusicBody"), properties(api, "JobBody")
        assert (music["duration"]["minimum"], music["duration"]["maximum"], music["prompt"]["maxLength"]) == \
            (0.5, 12, 50)
        assert (job["duration"]["minimum"], job["prompt"]["maxLength"]) == (0.5, 50)
        assert job["duration"]["description"] == (
            "Seconds of audio to generate, up to 300 (max_job_duration_s); beyond 12 s (the music model's "
            "max_duration_s) it is generated in windows, window i with seed + i.")
        assert error(client.post("/v1/audio/music", json={"prompt": "x", "duration": 13})) == \
            (400, invalid("duration", "duration: Input should be less than or equal to 12"))
        assert error(client.post("/v1/audio/music", json={"prompt": "x", "duration": 0.2})) == \
            (400, invalid("duration", "duration: Input should be greater than or equal to 0.5"))
        assert error(client.post("/v1/jobs", json={"prompt": "x" * 51})) == \
            (400, invalid("prompt", "prompt: String should have at most 50 characters"))

        # the speakers: listed, offered in the docs, and the first is the default voice
        assert properties(api, "SpeechBody")["voice"]["description"].startswith(
            "A built-in speaker (orpheus: ava, bo; chatterbox: default), ")
        assert properties(api, "SpeechBody")["voice"]["description"].endswith(
            " Default: orpheus: ava; chatterbox: default.")
        assert [voice["id"] for voice in client.get("/v1/audio/voices").json()["data"]] == ["ava", "bo"]
        for model, facts in (("orpheus", ("snac_encoder", True)), ("chatterbox", ("chatterbox_voice", False))):
            listed = client.get("/v1/audio/voices", params={"model": model}).json()  # what the web page reads
            assert (listed["model"], listed["codec"], listed["transcript_required"]) == (model, *facts)
        assert client.post("/v1/audio/speech", json={"input": "Hello there."}).status_code == 200
        assert text_input(sent_inputs(fake, -1)[T.VOICE]) == "ava"
        assert error(client.post("/v1/audio/speech", json={"input": "Hello there.", "voice": "tara"}))[1]["message"] \
            .startswith("voice: unknown voice 'tara'; use a built-in voice (ava, bo), ")

        # a voice clip's lengths
        assert api["paths"]["/v1/audio/voices"]["post"]["summary"] == \
            "Clone a voice from a clip: orpheus: 2 to 5 s and its transcript; chatterbox: 1 to 30 s"
        assert error(upload(client, seconds=6.0)) == (400, {
            "message": "file: the clip lasts 6.00 s; a voice clip must last 2 to 5 s", "type": "invalid_request_error",
            "param": "file", "code": "invalid_audio"})
        assert upload(client, seconds=3.0).status_code == 201


def test_limits_unknown_at_start_are_read_at_the_first_request(tmp_path):
    """Triton not up when the gateway starts: no limit in the schema (Triton still refuses), until a request comes."""
    port = free_port()
    app = create_app(Settings(triton_grpc_url=f"127.0.0.1:{port}", data_dir=tmp_path, job_workers=0))
    with TestClient(app) as client:
        assert "maximum" not in properties(client.get("/openapi.json").json(), "MusicBody")["duration"]
        fake = FakeOrpheus(speak)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(fake, server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        server.start()
        try:
            deadline = time.monotonic() + 20  # the gateway's gRPC channel reconnects with backoff: 503s until then
            while (status := client.post("/v1/audio/music", json={"prompt": "x", "duration": 1}).status_code) == 503:
                assert time.monotonic() < deadline
                time.sleep(0.2)
            assert status == 200
            assert properties(client.get("/openapi.json").json(), "MusicBody")["duration"]["maximum"] == 30
            assert error(client.post("/v1/audio/music", json={"prompt": "x", "duration": 31})) == \
                (400, invalid("duration", "duration: Input should be less than or equal to 30"))
        finally:
            server.stop(None)


def test_a_voice_is_refused_by_a_speech_model_whose_codec_differs(tmp_path):
    configs = spec_configs()
    for name, like in (("other", T.ORPHEUS), ("mimi_encoder", T.SNAC_ENCODER)):  # a second speech model and codec
        configs[name] = pb.ModelConfig()
        configs[name].CopyFrom(configs[like])
        configs[name].name = name
    models = {T.ORPHEUS: SpeechModel(codec_encoder=T.SNAC_ENCODER), "other": SpeechModel(codec_encoder="mimi_encoder")}
    with gateway(tmp_path, configs, speech_models=models) as (client, fake):
        created = upload(client)
        assert created.status_code == 201, created.text
        voice = created.json()
        assert (voice["codec"], voice["codec_version"], fake.encoders) == (T.SNAC_ENCODER, "1", [T.SNAC_ENCODER])

        refused = client.post("/v1/audio/speech", json={"model": "other", "input": "Hi there.", "voice": "Narrator"})
        assert (refused.status_code, refused.json()["error"]) == (422, {
            "message": f"voice: 'Narrator' ({voice['id']}) holds codes of codec snac_encoder version 1, but other "
                       "speaks from codec mimi_encoder version 1; clone the voice again for other "
                       "(POST /v1/audio/voices with model=other)",
            "type": "invalid_request_error", "param": "voice", "code": "voice_codec_mismatch"})
        assert client.post("/v1/audio/speech", json={"input": "Hi there.", "voice": "Narrator"}).status_code == 200
        assert sent_inputs(fake, -1).keys() == {T.TEXT, T.REFERENCE_TEXT, T.REFERENCE_CODES}

        again = upload(client, name="Narrator for other", model="other")  # the same clip, the other codec
        assert again.status_code == 201 and again.json()["id"] != voice["id"]
        assert (again.json()["codec"], fake.encoders) == ("mimi_encoder", [T.SNAC_ENCODER, "mimi_encoder"])
        spoken = client.post("/v1/audio/speech", json={"model": "other", "input": "Hi.", "voice": "Narrator for other"})
        assert spoken.status_code == 200 and fake.requests[-1].model_name == "other"


def test_speech_models_are_json_in_the_environment(monkeypatch):
    monkeypatch.setenv("TRITONE_SPEECH_MODELS", '{"orpheus": {"codec_encoder": "snac_encoder", "aliases": ["tts-1"]}, '
                                                '"other": {"codec_encoder": "mimi_encoder", "voices": ["ava"]}}')
    assert Settings().speech_models == {
        "orpheus": SpeechModel(codec_encoder="snac_encoder", aliases=["tts-1"]),
        "other": SpeechModel(codec_encoder="mimi_encoder", voices=["ava"])}
    monkeypatch.delenv("TRITONE_SPEECH_MODELS")
    assert Settings().speech_models == {
        "orpheus": SpeechModel(codec_encoder="snac_encoder", aliases=["tts-1", "tts-1-hd", "gpt-4o-mini-tts"]),
        "chatterbox": SpeechModel(codec_encoder="chatterbox_voice", codes_output="prompt_tokens")}


OLD_SCHEMA = """
CREATE TABLE voices (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, owner TEXT NOT NULL,
    name TEXT NOT NULL, transcript TEXT NOT NULL, content_hash TEXT NOT NULL, codes BLOB NOT NULL,
    frames INTEGER NOT NULL, duration REAL NOT NULL, created_at REAL NOT NULL);
CREATE UNIQUE INDEX voices_content ON voices (owner, content_hash);
CREATE UNIQUE INDEX voices_name ON voices (owner, name);
"""


def test_voices_stored_before_codecs_were_recorded_are_snac_voices(tmp_path):
    import numpy as np

    from tritone.gateway.voice_store import _npy

    db = sqlite3.connect(tmp_path / "voices.sqlite3")
    db.executescript(OLD_SCHEMA)
    codes = np.arange(14, dtype=np.int64).reshape(7, 2)
    db.execute("INSERT INTO voices (id, owner, name, transcript, content_hash, codes, frames, duration, created_at) "
               "VALUES ('voice_old', '', 'Old', 'words', 'hash', ?, 2, 1.5, 1.0)", (_npy(codes),))
    db.commit()
    db.close()
    store = VoiceStore(tmp_path)
    try:
        old = store.find("", "Old")
        assert (old.id, old.codec, old.codec_version) == ("voice_old", "snac_encoder", "1") and LEGACY_CODEC == \
            ("snac_encoder", "1")
        assert store.find_content("", "hash", LEGACY_CODEC) == old
        assert store.find_content("", "hash", ("mimi_encoder", "1")) is None
        np.testing.assert_array_equal(store.codes("voice_old"), codes)
        # the same content, another codec: a voice of its own (content is unique per codec now)
        clip_ = np.zeros(24, np.float32)
        other, created = store.add("", "Old for mimi", "words", "hash", codes, clip_, 24, ("mimi_encoder", "1"))
        assert created and other.id != "voice_old" and other.codec == "mimi_encoder"
    finally:
        store.close()
    reopened = VoiceStore(tmp_path)  # migrating twice changes nothing
    try:
        assert [(voice.name, voice.codec) for voice in reopened.list("")] == \
            [("Old", "snac_encoder"), ("Old for mimi", "mimi_encoder")]
    finally:
        reopened.close()


def test_a_speech_model_triton_lacks_is_a_503_and_the_others_serve_as_before(tmp_path):
    """The default settings name orpheus and chatterbox; a Triton without chatterbox's models serves orpheus."""
    configs = {name: config for name, config in spec_configs().items() if not name.startswith(T.CHATTERBOX)}
    with gateway(tmp_path, configs) as (client, fake):
        assert client.get("/v1/audio/models").json() == {
            "models": [{"id": "orpheus"}, {"id": "tts-1"}, {"id": "tts-1-hd"}, {"id": "gpt-4o-mini-tts"}]}
        assert properties(client.get("/openapi.json").json(), "SpeechBody")["voice"]["description"].startswith(
            "A built-in speaker (tara, leah, jess, leo, dan, mia, zac, zoe), ")
        refused = client.post("/v1/audio/speech", json={"model": "chatterbox", "input": "Hello there."})
        assert (refused.status_code, refused.json()["error"]) == (503, {
            "message": "chatterbox is not loaded in Triton (or Triton is not reachable): its limits are unknown",
            "type": "server_error", "param": None, "code": "model_unavailable"})
        assert upload(client, model="chatterbox").status_code == 503
        assert client.post("/v1/audio/speech", json={"input": "Hello there."}).status_code == 200
        assert fake.requests[-1].model_name == T.ORPHEUS
