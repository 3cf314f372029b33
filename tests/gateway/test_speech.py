"""POST /v1/audio/speech on a real gateway (uvicorn) whose Triton is a fake gRPC server: formats, OpenAI's
request shape and error envelope, voices, speed, SSE, sentence streaming and cancellation."""

import base64
import io
import json
import time

import av
import httpx
import numpy as np
import pytest
import soundfile as sf

from tritone.ensemble import tensors as T
from tritone.gateway.settings import Settings
from tests.integration.stack import run_gateway
from tests.unit.test_client import response
from tests.unit.test_speech_client import serve, start_fake  # noqa: F401 - serve: the fake server fixture

SR = 24000
SAMPLES_PER_CHAR = SR // 100  # the fake speaks 10 ms per character


def speak(text, fake):
    """Two chunks of a 200 Hz tone, 10 ms per character of the text."""
    n = len(text) * SAMPLES_PER_CHAR
    tone = (0.3 * np.sin(2 * np.pi * 200 * np.arange(n) / SR)).astype(np.float32)
    return [response(0, audio=tone[:n // 2], sample_rate=SR), response(1, audio=tone[n // 2:], sample_rate=SR,
                                                                       final=True)]


@pytest.fixture(scope="module")
def module_gateway(tmp_path_factory):
    """One fake Triton and one gateway for the tests that leave nothing behind."""
    fake, url, server = start_fake(speak)
    settings = Settings(triton_grpc_url=url, data_dir=tmp_path_factory.mktemp("gateway"), job_workers=0)
    try:
        with run_gateway(settings) as gateway_url:
            yield fake, url, settings, gateway_url
    finally:
        server.stop(None)


@pytest.fixture
def fake_triton(module_gateway):
    fake, url, _, _ = module_gateway
    fake.requests.clear()
    fake.texts.clear()
    fake.encoded.clear()
    return fake, url


@pytest.fixture
def settings(module_gateway):
    return module_gateway[2]


@pytest.fixture
def gateway(module_gateway, fake_triton):
    return module_gateway[3]


def speech(url, **body):
    return httpx.post(f"{url}/v1/audio/speech", json={"input": "Hello there, my friend.", **body}, timeout=30)


def decode(data: bytes) -> tuple[np.ndarray, int]:
    with av.open(io.BytesIO(data)) as container:
        frames = [frame.to_ndarray().reshape(-1) for frame in container.decode(audio=0)]
        return np.concatenate(frames), container.streams.audio[0].rate


def sent_inputs(fake, i=0) -> dict[str, bytes]:
    request = fake.requests[i]
    return {tensor.name: raw for tensor, raw in zip(request.inputs, request.raw_input_contents)}


def text_input(raw: bytes) -> str:
    return raw[4:].decode()  # BYTES: 4-byte length, then the UTF-8


HELLO = len("Hello there, my friend.") * SAMPLES_PER_CHAR


@pytest.mark.parametrize(
    ("fmt", "content_type", "rate", "slack"),
    [
        ("mp3", "audio/mpeg", SR, 3 * 1152),  # streamed mp3: no gapless header, the encoder's padding stays
        ("opus", "audio/ogg; codecs=opus", 48000, 0),
        ("aac", "audio/aac", SR, 2 * 1024),  # ADTS: the encoder's priming and last frame's padding stay
        ("flac", "audio/flac", SR, 0),
        ("wav", "audio/wav", SR, 0),
    ],
)
def test_each_format_decodes_at_its_rate(gateway, fmt, content_type, rate, slack):
    reply = speech(gateway, response_format=fmt)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == content_type and reply.headers["x-sample-rate"] == str(rate)
    audio, decoded_rate = decode(reply.content)
    assert decoded_rate == rate
    assert HELLO * rate // SR <= len(audio) <= HELLO * rate // SR + slack


def test_mp3_is_the_default_and_pcm_is_raw_s16le(gateway):
    assert speech(gateway).headers["content-type"] == "audio/mpeg"
    reply = speech(gateway, response_format="pcm")
    assert reply.headers["content-type"] == "audio/pcm;rate=24000;channels=1;format=s16le"
    assert len(reply.content) == 2 * HELLO


def envelope(message, param, code="invalid_value", type_="invalid_request_error"):
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


@pytest.mark.parametrize(
    ("body", "status", "expected"),
    [
        ({"input": ""}, 400, envelope("input: String should have at least 1 character", "input")),
        ({"input": "x" * 4097}, 400, envelope("input: String should have at most 4096 characters", "input")),
        ({"input": " \n "}, 400, envelope("input: must not be blank", "input")),
        ({"speed": 0.1}, 400, envelope("speed: Input should be greater than or equal to 0.25", "speed")),
        ({"speed": 5}, 400, envelope("speed: Input should be less than or equal to 4", "speed")),
        ({"response_format": "ogg"}, 400, envelope(
            "response_format: Input should be 'mp3', 'opus', 'aac', 'flac', 'wav' or 'pcm'", "response_format")),
        ({"stream_format": "ws"}, 400, envelope("stream_format: Input should be 'audio' or 'sse'", "stream_format")),
        ({"volume": 11}, 400, envelope("volume: Extra inputs are not permitted", "volume")),
        ({"model": "tts-2"}, 404, envelope(
            "model: 'tts-2' is not a speech model here; use one of orpheus, tts-1, tts-1-hd, gpt-4o-mini-tts, "
            "chatterbox",
            "model", code="model_not_found")),
        ({"exaggeration": 0.7}, 400, envelope("exaggeration: orpheus does not take this option; it is chatterbox's",
                                              "exaggeration", code="unsupported_parameter")),
        ({"model": "tts-1", "cfg_weight": 0.3, "min_p": 0.1}, 400, envelope(
            "min_p: orpheus does not take this option; it is chatterbox's", "min_p", code="unsupported_parameter")),
        ({"model": "chatterbox", "exaggeration": 2.5}, 400, envelope(
            "exaggeration: Input should be less than or equal to 2", "exaggeration")),
        ({"model": "chatterbox", "cfg_weight": -0.1}, 400, envelope(
            "cfg_weight: Input should be greater than or equal to 0", "cfg_weight")),
        ({"model": "chatterbox", "min_p": "0.1"}, 400, envelope("min_p: Input should be a valid number", "min_p")),
        ({"voice": "nobody"}, 400, envelope(
            "voice: unknown voice 'nobody'; use a built-in voice (tara, leah, jess, leo, dan, mia, zac, zoe), an "
            "OpenAI voice name, or the id or name of a stored voice (GET /v1/audio/voices)", "voice",
            code="voice_not_found")),
        ({"voice": {"id": "voice_missing"}}, 400, envelope(
            "voice: unknown voice 'voice_missing'; use a built-in voice (tara, leah, jess, leo, dan, mia, zac, zoe), "
            "an OpenAI voice name, or the id or name of a stored voice (GET /v1/audio/voices)", "voice",
            code="voice_not_found")),
    ],
)
def test_bad_requests_get_openais_envelope_naming_the_field(gateway, fake_triton, body, status, expected):
    reply = speech(gateway, **body)
    assert (reply.status_code, reply.json()) == (status, expected)
    assert fake_triton[0].requests == []  # refused before Triton


def test_the_longest_input_is_accepted(gateway):
    reply = speech(gateway, input="word " * 819 + "end.", response_format="pcm")  # 4099 -> 4096 characters
    assert reply.status_code == 400
    reply = speech(gateway, input=("Say it. " * 512)[:4096], response_format="pcm")
    assert reply.status_code == 200


@pytest.mark.parametrize("model", ["orpheus", "tts-1", "tts-1-hd", "gpt-4o-mini-tts", "gpt-4o-mini-tts-2025-12-15"])
def test_openais_model_names_are_orpheus(gateway, fake_triton, model):
    assert speech(gateway, model=model).status_code == 200
    assert fake_triton[0].requests[-1].model_name == T.ORPHEUS


def test_every_voice_the_openai_sdk_offers_maps_to_a_built_in_speaker():
    from typing import get_args

    from openai.types.audio import speech_create_params

    offered = {name for arg in get_args(speech_create_params.Voice) for name in get_args(arg) if isinstance(name, str)}
    assert {"alloy", "marin", "cedar"} <= offered
    assert offered <= set(Settings().speech_voice_aliases)


@pytest.mark.parametrize(("voice", "speaker"), [(None, "tara"), ("leo", "leo"), ("Zoe", "zoe"), ("alloy", "tara"),
                                                ("nova", "leah"), ("onyx", "leo"), ("shimmer", "jess"),
                                                ("marin", "leah"), ("cedar", "dan")])
def test_voices_map_to_built_in_speakers(gateway, fake_triton, voice, speaker):
    body = {} if voice is None else {"voice": voice}
    assert speech(gateway, **body).status_code == 200
    assert text_input(sent_inputs(fake_triton[0])[T.VOICE]) == speaker


def test_instructions_are_accepted_and_ignored_sampling_options_are_sent(gateway, fake_triton):
    fake = fake_triton[0]
    assert speech(gateway, instructions="Speak like a pirate.", temperature=0, seed=9, top_p=0.5,
                  repetition_penalty=1.1).status_code == 200
    inputs = sent_inputs(fake)
    assert list(inputs) == [T.TEXT, T.VOICE, T.TEMPERATURE, T.TOP_P, T.REPETITION_PENALTY, T.SEED]
    assert text_input(inputs[T.TEXT]) == "Hello there, my friend."
    assert np.frombuffer(inputs[T.SEED], np.int64)[0] == 9


def test_sse_sends_speech_audio_deltas_a_caption_per_sentence_then_done(gateway):
    reply = speech(gateway, stream_format="sse", response_format="wav")
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/event-stream")
    events = [json.loads(line.removeprefix("data: ")) for line in reply.text.splitlines() if line]
    deltas = [e for e in events if e["type"] == "speech.audio.delta"]
    assert len(deltas) >= 1 and all(set(e) == {"type", "audio"} for e in deltas)
    assert events[-2] == {"type": "speech.caption", "text": "Hello there, my friend.", "start": 0.0,
                          "end": HELLO / SR, "start_sample": 0, "end_sample": HELLO}  # after the sentence's audio
    assert events[-1] == {"type": "speech.audio.done", "sample_rate": SR, "duration": HELLO / SR, "format": "wav"}
    assert events[:-2] == deltas
    audio, rate = decode(b"".join(base64.b64decode(e["audio"]) for e in deltas))
    assert (rate, len(audio)) == (SR, HELLO)


def test_sse_of_opus_says_the_48_khz_it_decodes_at(gateway):
    reply = speech(gateway, stream_format="sse", response_format="opus")
    events = [json.loads(line.removeprefix("data: ")) for line in reply.text.splitlines() if line]
    assert events[-1] == {"type": "speech.audio.done", "sample_rate": 48000, "duration": HELLO / SR, "format": "opus"}
    audio, rate = decode(b"".join(base64.b64decode(e["audio"]) for e in events if e["type"] == "speech.audio.delta"))
    assert (rate, len(audio)) == (48000, HELLO * 48000 // SR)


def test_long_input_is_spoken_sentence_by_sentence_in_order(gateway, fake_triton):
    sentences = ["The first sentence is here.", "A second one follows it.", "And the third ends it."]
    reply = speech(gateway, input="  ".join(sentences), response_format="pcm")
    samples = np.frombuffer(reply.content, "<i2")
    assert len(samples) == sum(len(s) for s in sentences) * SAMPLES_PER_CHAR
    assert sorted(text_input(sent_inputs(fake_triton[0], i)[T.TEXT]) for i in range(3)) == sorted(sentences)


@pytest.mark.parametrize("speed", [0.25, 0.5, 2.0, 4.0])
def test_speed_scales_the_duration_and_keeps_the_pitch(gateway, speed):
    reply = speech(gateway, input="A sentence long enough to hear the tempo change, twice over.", speed=speed,
                   response_format="pcm")
    audio = np.frombuffer(reply.content, "<i2").astype(np.float32) / 32767
    expected = len("A sentence long enough to hear the tempo change, twice over.") * SAMPLES_PER_CHAR / speed
    assert abs(len(audio) - expected) <= 0.01 * expected
    core = audio[len(audio) // 4: 3 * len(audio) // 4]
    peak = np.argmax(np.abs(np.fft.rfft(core))) * SR / len(core)
    assert peak == pytest.approx(200, abs=8)  # a time stretch, not a resampling


def test_a_client_that_disconnects_cancels_every_open_sentence(settings, serve):  # noqa: F811
    def forever(text, fake):
        yield from speak(text, fake)[:1]
        while True:
            time.sleep(0.01)
            yield response(1, audio=np.zeros(240, np.float32), sample_rate=SR)

    fake, url = serve(lambda text, fake: forever(text, fake))
    with run_gateway(settings.model_copy(update={"triton_grpc_url": url})) as gateway:
        text = "The first sentence is here. A second one follows it. And the third ends it."
        with httpx.stream("POST", f"{gateway}/v1/audio/speech", json={"input": text, "response_format": "pcm"},
                          timeout=30) as reply:
            assert reply.status_code == 200
            stream = reply.iter_bytes()
            next(stream)
            deadline = time.monotonic() + 10
            while len(fake.texts) < 2 and time.monotonic() < deadline:  # the next sentence is open too
                next(stream)
        deadline = time.monotonic() + 10
        while len(fake.ended) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sorted(fake.ended) == sorted(fake.texts) == ["A second one follows it.", "The first sentence is here."]
        metrics = httpx.get(f"{gateway}/metrics").text
        assert "tritone_gateway_active_streams 0.0" in metrics


def test_open_webui_lists_voices_and_models_and_speaks_as_it_does(gateway, fake_triton):
    # What Open WebUI's audio router sends for an OpenAI-engine TTS at a custom base URL: the voice
    # and model lists without a key, reading {"voices": [{"id", "name"}]} and {"models": [{"id"}]},
    # then POST /audio/speech with {"input", "model", "voice"} and its Authorization header.
    base = f"{gateway}/v1"
    voices = {voice["id"]: voice["name"] for voice in httpx.get(f"{base}/audio/voices", timeout=10).json()["voices"]}
    assert {"tara", "leah", "leo"} <= set(voices) and voices["tara"] == "tara"
    models = [model["id"] for model in httpx.get(f"{base}/audio/models", timeout=10).json()["models"]]
    assert models == ["orpheus", "tts-1", "tts-1-hd", "gpt-4o-mini-tts", "chatterbox"]
    reply = httpx.post(f"{base}/audio/speech", json={"input": "Hello there.", "model": "tts-1", "voice": "tara"},
                       headers={"Authorization": "Bearer sk-unused"}, timeout=30)
    assert (reply.status_code, reply.headers["content-type"]) == (200, "audio/mpeg")
    assert text_input(sent_inputs(fake_triton[0])[T.VOICE]) == "tara"


@pytest.mark.parametrize("fmt", ["wav", "mp3", "flac"])
def test_stream_false_returns_one_whole_file_with_its_exact_length(gateway, fmt):
    reply = speech(gateway, response_format=fmt, stream=False)
    assert reply.status_code == 200 and "chunked" not in reply.headers.get("transfer-encoding", "")
    assert int(reply.headers["content-length"]) == len(reply.content)
    audio, rate = sf.read(io.BytesIO(reply.content))  # exact headers: libsndfile reads even the mp3's length
    assert rate == SR and abs(len(audio) - HELLO) <= (0 if fmt != "mp3" else 1152)
