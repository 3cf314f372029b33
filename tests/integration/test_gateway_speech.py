"""POST /v1/audio/speech and the voices API through a real gateway and tritonserver serving the tiny-random
Orpheus export (`orpheus`, `snac_encoder`, `snac_decoder`), and OpenAI's own Python client."""

from __future__ import annotations

import base64
import io
import json
import time
import typing

import av
import httpx
import numpy as np
import openai
import pytest
import soundfile as sf
from openai import OpenAI
from openai.types.audio import speech_create_params

from tritone.client.metrics import read_engine_metrics
from tritone.ensemble import tensors as T
from tritone.ensemble.orpheus.format import TOKENS_PER_FRAME
from tritone.ensemble.orpheus.spec import SPEAKERS

from tests.orpheus_reference import reference_prompt

from .stack import run_gateway

pytestmark = pytest.mark.integration
RATE = 24000
FRAME = 2048  # SNAC 24 kHz: samples per 7-code frame
MAX_SENTENCE_S = 1.5  # random weights rarely say end-of-speech: each sentence is capped
# sentences the tiny tokenizer was trained on (export/speech_tiny.py)
FIRST = "Hello there, how are you doing today?"
SECOND = "The quick brown fox jumps over the lazy dog."
THIRD = "She sells sea shells by the sea shore."
SENTENCES = (FIRST, SECOND, "I can't believe it's already the end of the week.",
             "Please leave a message after the tone, and I'll call you back.",
             "Our flight to Lisbon departs at seven thirty tomorrow morning.", THIRD,
             "Turn left at the next corner, then keep going straight for two miles.",
             "Thank you so much for listening, see you next time!")


@pytest.fixture
def speech_settings(gateway_settings):
    return gateway_settings.model_copy(update={"speech_max_sentence_s": MAX_SENTENCE_S})


@pytest.fixture
def url(speech_settings):
    with run_gateway(speech_settings) as gateway:
        yield gateway


def speech(url, **body) -> httpx.Response:
    return httpx.post(f"{url}/v1/audio/speech", json={"input": FIRST, "voice": "tara", **body}, timeout=120)


def decode(data: bytes) -> tuple[np.ndarray, int]:
    with av.open(io.BytesIO(data)) as container:
        frames = [frame.to_ndarray().reshape(-1) for frame in container.decode(audio=0)]
        return np.concatenate(frames), container.streams.audio[0].rate


def pcm(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return np.frombuffer(response.content, "<i2")


@pytest.mark.parametrize(
    ("fmt", "content_type", "rate", "slack"),
    [
        ("mp3", "audio/mpeg", RATE, 3 * 1152),
        ("opus", "audio/ogg; codecs=opus", 48000, 0),
        ("aac", "audio/aac", RATE, 2 * 1024),
        ("flac", "audio/flac", RATE, 0),
        ("wav", "audio/wav", RATE, 0),
    ],
)
def test_each_format_decodes_to_whole_frames_at_24_khz(url, fmt, content_type, rate, slack):
    samples = len(pcm(speech(url, response_format="pcm", temperature=0)))
    assert samples > 0 and samples % FRAME == 0 and samples <= MAX_SENTENCE_S * RATE + FRAME
    response = speech(url, response_format=fmt, temperature=0)
    assert response.status_code == 200
    assert (response.headers["content-type"], response.headers["x-sample-rate"]) == (content_type, str(rate))
    audio, decoded_rate = decode(response.content)
    assert decoded_rate == rate
    assert samples * rate // RATE <= len(audio) <= samples * rate // RATE + slack
    if fmt == "flac":  # sent whole at the end: libsndfile reads its exact length
        assert sf.info(io.BytesIO(response.content)).frames == samples


def test_sse_deltas_decode_to_the_same_audio_and_done_carries_the_lm_usage(url, tiny_model_repository):
    plain = pcm(speech(url, response_format="pcm", temperature=0))
    response = speech(url, response_format="pcm", temperature=0, stream_format="sse")
    events = [json.loads(line.removeprefix("data: ")) for line in response.text.splitlines() if line]
    assert [e["type"] for e in events[-2:]] == ["speech.caption", "speech.audio.done"]
    assert {e["type"] for e in events[:-2]} == {"speech.audio.delta"}
    assert events[-2] == {"type": "speech.caption", "text": FIRST, "start": 0.0, "end": len(plain) / RATE,
                          "start_sample": 0, "end_sample": len(plain)}
    events = events[:-2] + events[-1:]
    frames, cap = len(plain) // FRAME, int(MAX_SENTENCE_S * RATE / FRAME)
    prompt = len(reference_prompt(tiny_model_repository, FIRST, "tara", None, None))
    sampled = TOKENS_PER_FRAME * frames + (frames < cap)  # 7 codes a frame, and the end token unless capped
    assert events[-1] == {"type": "speech.audio.done", "sample_rate": RATE, "duration": len(plain) / RATE,
                          "format": "pcm",
                          "usage": {"input_tokens": prompt, "output_tokens": sampled, "total_tokens": prompt + sampled}}
    streamed = np.frombuffer(b"".join(base64.b64decode(e["audio"]) for e in events[:-1]), "<i2")
    np.testing.assert_array_equal(streamed, plain)


def test_sse_captions_each_sentence_with_the_samples_it_spoke(url):
    text = f"{FIRST} {SECOND} {THIRD}"
    response = speech(url, input=text, response_format="pcm", temperature=0, stream_format="sse")
    events = [json.loads(line.removeprefix("data: ")) for line in response.text.splitlines() if line]
    audio = np.frombuffer(b"".join(base64.b64decode(e["audio"]) for e in events if e["type"] == "speech.audio.delta"),
                          "<i2")
    captions = [e for e in events if e["type"] == "speech.caption"]
    assert [c["text"] for c in captions] == [FIRST, SECOND, THIRD]
    assert captions[0]["start_sample"] == 0 and captions[-1]["end_sample"] == len(audio)
    assert all(a["end_sample"] == b["start_sample"] for a, b in zip(captions, captions[1:]))
    assert all(c["end"] == c["end_sample"] / RATE for c in captions)
    spoken = 0  # each caption comes after its sentence's audio
    for event in events:
        if event["type"] == "speech.audio.delta":
            spoken += len(base64.b64decode(event["audio"])) // 2
        elif event["type"] == "speech.caption":
            assert spoken >= event["end_sample"]


def test_a_long_input_is_its_sentences_spoken_alone_back_to_back(url):
    """Greedy with one seed: the whole equals each sentence's audio generated alone, concatenated."""
    alone = [pcm(speech(url, input=sentence, response_format="pcm", temperature=0, seed=3))
             for sentence in (FIRST, SECOND, THIRD)]
    whole = pcm(speech(url, input=f"{FIRST} {SECOND}\n{THIRD}", response_format="pcm", temperature=0, seed=3))
    assert len(whole) == sum(map(len, alone))
    np.testing.assert_array_equal(whole, np.concatenate(alone))


def test_openai_voice_names_and_the_models_own_refusals(speech_settings):
    orpheus = speech_settings.speech_models[T.ORPHEUS]
    offered = orpheus.model_copy(update={"voices": [*SPEAKERS, "bob"]})  # the model's speakers, and one more
    settings = speech_settings.model_copy(update={"speech_models": {T.ORPHEUS: offered}})
    with run_gateway(settings) as url:
        assert speech(url, voice="ash").status_code == 200  # -> leo
        refused = speech(url, voice="bob")  # listed by this gateway, unknown to the checkpoint
        assert refused.status_code == 400
        assert refused.json()["error"]["param"] == "voice"
        assert refused.json()["error"]["message"].startswith("voice: 'bob' is not a speaker of this checkpoint")
        too_many = speech(url, top_k=100_000)  # checked by the model: it knows its codebook size
        assert too_many.status_code == 400 and too_many.json()["error"]["param"] == "top_k"


def test_speed_stretches_the_real_stream(url):
    normal = len(pcm(speech(url, response_format="pcm", temperature=0)))
    slow = len(pcm(speech(url, response_format="pcm", temperature=0, speed=0.5)))
    assert slow == round(normal / 0.5)


def test_the_official_openai_client_streams_a_24_khz_wav(speech_settings):
    with run_gateway(speech_settings.model_copy(update={"api_keys": ["sk-test"]})) as gateway:
        client = OpenAI(base_url=gateway + "/v1", api_key="sk-test", max_retries=0)
        with client.audio.speech.with_streaming_response.create(
                model="tts-1", voice="alloy", input=f"{FIRST} {SECOND}", response_format="wav") as response:
            assert response.headers["content-type"] == "audio/wav"
            pieces = list(response.iter_bytes())
        audio, rate = sf.read(io.BytesIO(b"".join(pieces)))
        assert rate == RATE and len(audio) > 0 and len(audio) % FRAME == 0
        formats = typing.get_args(typing.get_type_hints(speech_create_params.SpeechCreateParams)["response_format"])
        assert set(formats) == {"mp3", "opus", "aac", "flac", "wav", "pcm"}  # every format the SDK offers
        for fmt in formats:
            data = client.audio.speech.create(model="tts-1", voice="alloy", input=FIRST, response_format=fmt,
                                              extra_body={"temperature": 0}).content
            if fmt == "pcm":
                assert len(data) > 0 and len(data) % (2 * FRAME) == 0
            else:
                decoded, decoded_rate = decode(data)
                assert len(decoded) > 0 and decoded_rate in (RATE, 48000), fmt  # Opus decodes at 48 kHz
        model = client.models.retrieve("tts-1")
        assert (model.id, model.object, model.owned_by, model.parent) == ("tts-1", "model", "tritone", "orpheus")
        assert "tts-1-hd" in {m.id for m in client.models.list()}
        with pytest.raises(Exception) as missing:
            client.models.retrieve("tts-2")
        assert getattr(missing.value, "status_code", None) == 404
        with client.audio.speech.with_streaming_response.create(
                model="tts-1", voice="alloy", input=FIRST, response_format="pcm", stream_format="sse") as response:
            events = [json.loads(line.removeprefix("data: ")) for line in response.iter_lines() if line]
        usage = events[-1]["usage"]
        assert events[-1]["type"] == "speech.audio.done" and usage["input_tokens"] > 0 and usage["output_tokens"] > 0
        assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
        with pytest.raises(openai.BadRequestError) as invalid:  # 400 invalid_request_error, as OpenAI answers
            client.audio.speech.create(model="tts-1", voice="alloy", input=FIRST, speed=9.0)
        assert (invalid.value.status_code, invalid.value.param) == (400, "speed")
        assert invalid.value.type == "invalid_request_error"
        wrong = OpenAI(base_url=gateway + "/v1", api_key="nope", max_retries=0)
        with pytest.raises(openai.AuthenticationError) as refused:  # 401, as OpenAI answers a wrong key
            wrong.audio.speech.create(model="tts-1", voice="alloy", input=FIRST)
        assert refused.value.status_code == 401 and refused.value.code == "invalid_api_key"


def clip_wav(seconds: float = 2.0, rate: int = 44100) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    voice = 0.2 * np.sin(2 * np.pi * 180 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    buffer = io.BytesIO()
    sf.write(buffer, np.stack([voice, voice * 0.8], axis=1).astype(np.float32), rate, format="WAV")
    return buffer.getvalue()


def test_the_openai_sdk_clones_a_voice_with_audio_voices_create(url):
    client = OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    voice = client.audio.voices.create(audio_sample=("me.wav", clip_wav(), "audio/wav"), name="Sdk", consent="cons_1",
                                       extra_body={"transcript": FIRST})
    assert (voice.object, voice.type, voice.name) == ("audio.voice", "audio_sample", "Sdk")
    assert voice.id.startswith("voice_") and voice.created_at > 0
    spoken = pcm(speech(url, input=SECOND, voice=voice.id, response_format="pcm", temperature=0))
    assert len(spoken) > 0 and len(spoken) % FRAME == 0
    with pytest.raises(openai.BadRequestError) as missing:  # Orpheus clones from the clip's words: no transcript, no voice
        client.audio.voices.create(audio_sample=("me.wav", clip_wav(), "audio/wav"), name="Mute", consent="cons_1")
    assert (missing.value.param, missing.value.code) == ("transcript", "missing_field")


def test_a_stored_voice_round_trip_across_a_restart(speech_settings):
    with run_gateway(speech_settings) as url:
        created = httpx.post(f"{url}/v1/audio/voices", files={"file": ("me.wav", clip_wav())},
                             data={"name": "Me", "transcript": FIRST}, timeout=120)
        assert created.status_code == 201, created.text
        voice = created.json()
        assert voice["frames"] in (2 * RATE // FRAME, 2 * RATE // FRAME + 1)  # 23.4 frames of audio
        ids = [v["id"] for v in httpx.get(f"{url}/v1/audio/voices").json()["data"]]
        assert ids[-1] == voice["id"] and "tara" in ids
        spoken = pcm(speech(url, input=SECOND, voice="Me", response_format="pcm", temperature=0))
        assert len(spoken) > 0 and len(spoken) % FRAME == 0
    with run_gateway(speech_settings) as url:  # a new gateway process state, the same data_dir
        assert httpx.get(f"{url}/v1/audio/voices/{voice['id']}").json() == voice
        again = pcm(speech(url, input=SECOND, voice={"id": voice["id"]}, response_format="pcm", temperature=0))
        np.testing.assert_array_equal(again, spoken)  # the stored codes, not a new encoding
        assert httpx.delete(f"{url}/v1/audio/voices/{voice['id']}").json()["deleted"] is True
        assert httpx.get(f"{url}/v1/audio/voices/{voice['id']}").status_code == 404
        assert speech(url, voice=voice["id"]).status_code == 400


def test_codes_of_a_stored_voice_are_what_the_encoder_gives(speech_settings, triton_stack):
    """The voice's codes are snac_encoder's for the normalized clip (24 kHz mono), asked directly."""
    from tritonclient.grpc import InferenceServerClient, InferInput, InferRequestedOutput

    from tritone.client.clip import decode_clip
    from tritone.gateway.voice_store import VoiceStore

    with run_gateway(speech_settings) as url:
        voice = httpx.post(f"{url}/v1/audio/voices", files={"file": ("me.wav", clip_wav(1.5))},
                           data={"name": "Me", "transcript": FIRST}, timeout=120).json()
    store = VoiceStore(speech_settings.data_dir)
    try:
        stored = store.codes(voice["id"])
    finally:
        store.close()
    clip = decode_clip(io.BytesIO(clip_wav(1.5)), RATE)
    audio = InferInput(T.AUDIO, [1, len(clip)], "FP32")
    audio.set_data_from_numpy(clip[None, :])
    client = InferenceServerClient(triton_stack.grpc_url)
    direct = client.infer(T.SNAC_ENCODER, [audio], outputs=[InferRequestedOutput(T.AUDIO_CODES)])
    expected = direct.as_numpy(T.AUDIO_CODES)[0]
    assert stored.shape[0] == TOKENS_PER_FRAME
    np.testing.assert_array_equal(stored, expected)


def test_a_client_that_disconnects_leaves_no_active_slot(speech_settings, triton_stack):
    # 72 sentences, greedy: about 100 s of speech, far more than is generated before the hang-up (the
    # tiny model may finish the first sentence before the gateway notices, so a cancel is not certain)
    text = " ".join(SENTENCES * 9)
    before = read_engine_metrics(triton_stack.metrics_url, model=T.ORPHEUS)
    with run_gateway(speech_settings.model_copy(update={"speech_max_sentence_s": 20.0})) as url:
        with httpx.stream("POST", f"{url}/v1/audio/speech", timeout=120, json={
                "input": text, "voice": "tara", "response_format": "pcm", "temperature": 0}) as response:
            assert response.status_code == 200
            next(response.iter_bytes())  # audio is flowing; now hang up
        # at rest: nothing active, and no step for 1 s (the engine's gauges are written at its steps, so a
        # sentence whose cancellation reaches the engine a few steps late shows as steps, not as a slot)
        deadline, steps, still_since = time.monotonic() + 20, None, time.monotonic()
        while time.monotonic() < deadline:
            after = read_engine_metrics(triton_stack.metrics_url, model=T.ORPHEUS)
            gateway = httpx.get(f"{url}/metrics").text
            if after["tritone_decode_steps_total"] != steps:
                steps, still_since = after["tritone_decode_steps_total"], time.monotonic()
            elif after["tritone_decode_slots_active"] == 0 and after["tritone_requests_waiting"] == 0 and \
                    "tritone_gateway_active_streams 0.0" in gateway and time.monotonic() - still_since >= 1.0:
                break
            time.sleep(0.1)
        assert after["tritone_decode_slots_active"] == 0 and after["tritone_requests_waiting"] == 0
        assert "tritone_gateway_active_streams 0.0" in gateway
        # at most the sentence being played and the one started ahead reached the engine, and it has stopped
        started = sum(after[f"tritone_streams_{end}_total"] - before[f"tritone_streams_{end}_total"]
                      for end in ("completed", "cancelled", "failed"))
        assert 1 <= started <= 2
        time.sleep(0.3)
        assert read_engine_metrics(triton_stack.metrics_url, model=T.ORPHEUS)["tritone_decode_steps_total"] == \
            after["tritone_decode_steps_total"]
