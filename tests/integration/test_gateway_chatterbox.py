"""Chatterbox through the gateway (`"model": "chatterbox"`), against the session's real tritonserver serving the
tiny-random Chatterbox export beside Orpheus: every way of streaming the same seeded audio, its own options
(bounded, refused by Orpheus), voices cloned from a clip without a transcript and spoken by sending the stored
clip (the voice model runs once per clip in the pipeline), codec mismatches as 422 both ways, and a speech job."""

from __future__ import annotations

import asyncio
import base64
import io
import json

import av
import httpx
import numpy as np
import pytest
import soundfile as sf

from tritone.ensemble import tensors as T

from .stack import run_gateway
from .test_gateway_jobs import gateway as job_gateway
from .test_gateway_jobs import has_status, wait_for

pytestmark = pytest.mark.integration
RATE = 24000
MAX_SENTENCE_S = 0.6  # random weights rarely say stop: each sentence is capped at 15 speech tokens
TEXT = "Hello there, how are you doing today?"
CLIP_S = 3.0


@pytest.fixture
def settings(gateway_settings):
    return gateway_settings.model_copy(update={"speech_max_sentence_s": MAX_SENTENCE_S})


@pytest.fixture
def url(settings):
    with run_gateway(settings) as gateway:
        yield gateway


def speech(url, **body) -> httpx.Response:
    return httpx.post(f"{url}/v1/audio/speech", json={"model": "chatterbox", "input": TEXT, "seed": 5, **body},
                      timeout=120)


def pcm(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return np.frombuffer(response.content, "<i2")


def decode(data: bytes) -> tuple[np.ndarray, int]:
    with av.open(io.BytesIO(data)) as container:
        frames = [frame.to_ndarray().reshape(-1) for frame in container.decode(audio=0)]
        return np.concatenate(frames), container.streams.audio[0].rate


def clip(seconds: float = CLIP_S, rate: int = RATE) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    voiced = 0.3 * np.sin(2 * np.pi * 180 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    buffer = io.BytesIO()
    sf.write(buffer, voiced.astype(np.float32), rate, format="WAV")
    return buffer.getvalue()


def upload(url, name: str, data: bytes, **form) -> httpx.Response:
    return httpx.post(f"{url}/v1/audio/voices", files={"file": ("clip.wav", data)}, data={"name": name, **form},
                      timeout=120)


def inferences(stack, model: str) -> int:
    stats = httpx.get(f"http://{stack.http_url}/v2/models/{model}/stats", timeout=10).json()
    return int(stats["model_stats"][0]["inference_stats"]["success"]["count"])


def test_every_format_and_sse_carry_the_same_seeded_audio_at_24_khz(url):
    plain = pcm(speech(url, response_format="pcm"))
    assert 0 < len(plain) <= MAX_SENTENCE_S * RATE
    wav = speech(url, response_format="wav")
    assert (wav.status_code, wav.headers["content-type"], wav.headers["x-sample-rate"]) == (200, "audio/wav", "24000")
    audio, rate = decode(wav.content)
    assert rate == RATE
    np.testing.assert_array_equal(audio, plain)  # the same seed, the same samples
    mp3 = speech(url, response_format="mp3")
    assert (mp3.status_code, mp3.headers["content-type"], mp3.headers["x-sample-rate"]) == (200, "audio/mpeg", "24000")
    audio, rate = decode(mp3.content)
    assert rate == RATE and len(plain) <= len(audio) <= len(plain) + 3 * 1152  # the encoder's padding, no more

    events = [json.loads(line.removeprefix("data: "))
              for line in speech(url, response_format="pcm", stream_format="sse").text.splitlines() if line]
    deltas = [event for event in events if event["type"] == "speech.audio.delta"]
    assert [event["type"] for event in events[len(deltas):]] == ["speech.caption", "speech.audio.done"]
    streamed = np.frombuffer(b"".join(base64.b64decode(event["audio"]) for event in deltas), "<i2")
    np.testing.assert_array_equal(streamed, plain)
    done = events[-1]
    assert (done["sample_rate"], done["duration"], done["format"]) == (RATE, len(plain) / RATE, "pcm")
    assert done["usage"]["output_tokens"] > 0


def test_a_long_input_is_its_sentences_spoken_alone_back_to_back(url):
    first, second = TEXT, "The quick brown fox jumps over the lazy dog."
    alone = [pcm(speech(url, input=sentence, response_format="pcm")) for sentence in (first, second)]
    events = [json.loads(line.removeprefix("data: ")) for line in
              speech(url, input=f"{first} {second}", response_format="pcm", stream_format="sse").text.splitlines()
              if line]
    whole = np.frombuffer(b"".join(base64.b64decode(e["audio"]) for e in events if e["type"] == "speech.audio.delta"),
                          "<i2")
    np.testing.assert_array_equal(whole, np.concatenate(alone))
    assert [(e["text"], e["start_sample"], e["end_sample"]) for e in events if e["type"] == "speech.caption"] == \
        [(first, 0, len(alone[0])), (second, len(alone[0]), len(whole))]


def test_its_options_reach_the_model_and_are_bounded_and_orpheus_refuses_them(url):
    plain = pcm(speech(url, response_format="pcm"))
    assert not np.array_equal(pcm(speech(url, response_format="pcm", exaggeration=1.5, cfg_weight=0.2, min_p=0.2)),
                              plain)  # sent: the same seed speaks otherwise
    for field, value, rule in (("exaggeration", 2.5, "less than or equal to 2"),
                               ("cfg_weight", -0.5, "greater than or equal to 0"),
                               ("min_p", 1.5, "less than or equal to 1")):
        refused = speech(url, **{field: value})
        assert (refused.status_code, refused.json()["error"]) == (400, {
            "message": f"{field}: Input should be {rule}", "type": "invalid_request_error", "param": field,
            "code": "invalid_value"})
    refused = speech(url, voice="alloy")  # OpenAI's names are Orpheus' speakers
    assert (refused.status_code, refused.json()["error"]["message"]) == (400, (
        "voice: unknown voice 'alloy'; use a built-in voice (default), or the id or name of a stored voice "
        "(GET /v1/audio/voices)"))
    refused = speech(url, model="orpheus", voice="tara", exaggeration=0.7)
    assert (refused.status_code, refused.json()["error"]) == (400, {
        "message": "exaggeration: orpheus does not take this option; it is chatterbox's",
        "type": "invalid_request_error", "param": "exaggeration", "code": "unsupported_parameter"})


def test_a_voice_from_a_clip_without_transcript_is_encoded_once_and_refused_by_orpheus(url, triton_stack):
    before = inferences(triton_stack, T.CHATTERBOX_VOICE)
    created = upload(url, "Clipped", clip(), model="chatterbox")  # no transcript
    assert created.status_code == 201, created.text
    voice = created.json()
    assert (voice["codec"], voice["codec_version"], voice["transcript"]) == (T.CHATTERBOX_VOICE, "1", "")
    assert voice["frames"] == 25 * CLIP_S  # its S3 prompt tokens: 25 a second
    assert inferences(triton_stack, T.CHATTERBOX_VOICE) == before + 1
    again = upload(url, "Same clip", clip(), model="chatterbox", transcript="words")  # same content: that voice
    assert (again.status_code, again.json()["id"]) == (200, voice["id"])

    first = pcm(speech(url, voice=voice["id"], response_format="pcm"))
    assert inferences(triton_stack, T.CHATTERBOX_VOICE) == before + 2  # the pipeline's own, for the stored clip
    assert len(first) > 0
    np.testing.assert_array_equal(pcm(speech(url, voice="Clipped", response_format="pcm")), first)
    assert inferences(triton_stack, T.CHATTERBOX_VOICE) == before + 2  # cached by content: not again
    assert not np.array_equal(pcm(speech(url, voice="default", response_format="pcm")), first)

    refused = speech(url, model="orpheus", voice="Clipped")
    assert (refused.status_code, refused.json()["error"]) == (422, {
        "message": f"voice: 'Clipped' ({voice['id']}) holds codes of codec chatterbox_voice version 1, but orpheus "
                   "speaks from codec snac_encoder version 1; clone the voice again for orpheus "
                   "(POST /v1/audio/voices with model=orpheus)",
        "type": "invalid_request_error", "param": "voice", "code": "voice_codec_mismatch"})
    needs_words = upload(url, "Orpheus voice", clip(), model="orpheus")
    assert (needs_words.status_code, needs_words.json()["error"]["param"]) == (400, "transcript")


def test_an_orpheus_voice_is_422_for_chatterbox(url):
    created = upload(url, "Narrator", clip(), transcript="The words spoken in the clip.")  # the first model: orpheus
    assert created.status_code == 201, created.text
    voice = created.json()
    refused = speech(url, voice=voice["id"])
    assert (refused.status_code, refused.json()["error"]) == (422, {
        "message": f"voice: 'Narrator' ({voice['id']}) holds codes of codec snac_encoder version 1, but chatterbox "
                   "speaks from codec chatterbox_voice version 1; clone the voice again for chatterbox "
                   "(POST /v1/audio/voices with model=chatterbox)",
        "type": "invalid_request_error", "param": "voice", "code": "voice_codec_mismatch"})


def test_a_chatterbox_speech_job_speaks_with_its_options(url, triton_stack, tmp_path):
    """The job's audio is what the same sentence, options and seed give through /v1/audio/speech."""
    options = {"exaggeration": 0.9, "cfg_weight": 0.3, "min_p": 0.1, "seed": 5}
    streamed = pcm(speech(url, response_format="pcm", **options))

    async def scenario():
        async with job_gateway(triton_stack, tmp_path, speech_max_sentence_s=MAX_SENTENCE_S) as client:
            refused = await client.post("/v1/jobs", json={"type": "speech", "input": TEXT, "exaggeration": 0.9})
            job = (await client.post("/v1/jobs", json={"type": "speech", "model": "chatterbox", "input": TEXT,
                                                       **options})).json()
            done = await wait_for(client, job["id"], has_status("succeeded", "failed"), timeout=120)
            audio = await client.get(f"/v1/jobs/{job['id']}/audio", params={"format": "wav"})
            return refused, job, done, audio

    refused, job, done, audio = asyncio.run(scenario())
    assert (refused.status_code, refused.json()["error"]["code"]) == (400, "unsupported_parameter")
    assert (job["model"], done["status"]) == ("chatterbox", "succeeded"), done
    samples, rate = sf.read(io.BytesIO(audio.content), dtype="int16")
    assert rate == RATE
    np.testing.assert_array_equal(samples, streamed)
