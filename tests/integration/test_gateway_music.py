"""POST /v1/audio/music and the operational routes, through a real gateway and tritonserver."""

from __future__ import annotations

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
from tritone.ensemble.musicgen.metadata import CHECKPOINT_DIR
from tritone.gateway.settings import Settings
from tritone.serving.triton import free_port

from .reference import load
from .stack import family_models, own_stack, read_metrics, run_gateway

pytestmark = pytest.mark.integration
RATE = 32000


def music(url: str, **body) -> httpx.Response:
    return httpx.post(f"{url}/v1/audio/music", json={"prompt": "lo-fi piano with rain", "duration": 1.0, **body},
                      timeout=60)


def decode(data: bytes) -> tuple[np.ndarray, int]:
    """Decode any container with FFmpeg (PyAV): samples of the first audio stream and its rate."""
    with av.open(io.BytesIO(data)) as container:
        frames = [frame.to_ndarray().reshape(-1) for frame in container.decode(audio=0)]
        return np.concatenate(frames), container.streams.audio[0].rate


def test_a_streamed_wav_decodes_to_the_asked_rate_and_length(gateway_url):
    with httpx.stream("POST", f"{gateway_url}/v1/audio/music", timeout=60,
                      json={"prompt": "lo-fi piano with rain", "duration": 2.0}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "audio/wav"
        assert response.headers["transfer-encoding"] == "chunked"
        pieces = list(response.iter_bytes())
    audio, rate = sf.read(io.BytesIO(b"".join(pieces)))
    assert (rate, len(audio)) == (RATE, 2 * RATE)


@pytest.mark.parametrize(
    ("fmt", "content_type", "rate", "slack"),
    [
        ("wav", "audio/wav", RATE, 0),
        ("flac", "audio/flac", RATE, 0),
        ("mp3", "audio/mpeg", RATE, 3 * 1152),  # a streamed mp3 has no gapless header: encoder padding
        ("opus", "audio/ogg; codecs=opus", 48000, 0),
    ],
)
@pytest.mark.parametrize("stream", [True, False])
def test_each_format_decodes_with_a_content_type_true_to_its_bytes(gateway_url, fmt, content_type, rate, slack, stream):
    response = music(gateway_url, response_format=fmt, stream=stream, duration=1.5)
    assert response.status_code == 200
    assert response.headers["content-type"] == content_type and response.headers["x-sample-rate"] == str(rate)
    audio, decoded_rate = decode(response.content)
    assert decoded_rate == rate
    assert 1.5 * rate <= len(audio) <= 1.5 * rate + (slack if stream else 0)


def test_pcm_is_raw_little_endian_16_bit(gateway_url):
    response = music(gateway_url, response_format="pcm", duration=0.5)
    assert response.status_code == 200
    assert response.headers["content-type"] == "audio/pcm;rate=32000;channels=1;format=s16le"
    assert response.headers["x-sample-rate"] == "32000"
    assert len(response.content) == RATE // 2 * 2


def test_sse_streams_base64_deltas_and_one_done_event(gateway_url, tiny_model_repository):
    response = music(gateway_url, stream_format="sse", response_format="wav", duration=1.0)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [json.loads(line.removeprefix("data: ")) for line in response.text.splitlines() if line]
    assert [e["type"] for e in events[:-1]] == ["music.audio.delta"] * (len(events) - 1)
    _, tokenizer = load(tiny_model_repository / T.MUSICGEN / "1" / CHECKPOINT_DIR)
    prompt = len(tokenizer("lo-fi piano with rain").input_ids)
    codes = 4 * 50  # 4 codebooks x 50 frames sampled
    assert events[-1] == {"type": "music.audio.done", "sample_rate": RATE, "duration": 1.0, "format": "wav",
                          "usage": {"input_tokens": prompt, "output_tokens": codes, "total_tokens": prompt + codes}}
    audio, rate = sf.read(io.BytesIO(b"".join(base64.b64decode(e["audio"]) for e in events[:-1])))
    assert (rate, len(audio)) == (RATE, RATE)


def envelope(message, param, code="invalid_value", type_="invalid_request_error"):
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


@pytest.mark.parametrize(
    ("body", "status", "expected"),
    [
        ({"prompt": ""}, 400, envelope("prompt: String should have at least 1 character", "prompt")),
        ({"prompt": "   "}, 400, envelope("prompt: must not be blank", "prompt")),
        ({"prompt": "x" * 2001}, 400, envelope("prompt: String should have at most 2000 characters", "prompt")),
        ({"duration": 0}, 400, envelope("duration: Input should be greater than or equal to 0.1", "duration")),
        ({"duration": 0.05}, 400, envelope("duration: Input should be greater than or equal to 0.1", "duration")),
        ({"duration": 1000}, 400, envelope("duration: Input should be less than or equal to 30", "duration")),
        ({"duration": "long"}, 400, envelope("duration: Input should be a valid number", "duration")),  # strict
        ({"temperature": -1}, 400, envelope("temperature: Input should be greater than or equal to 0", "temperature")),
        ({"top_k": -1}, 400, envelope("top_k: Input should be greater than or equal to 0", "top_k")),
        ({"top_p": 0}, 400, envelope("top_p: Input should be greater than 0", "top_p")),
        ({"guidance_scale": 0.5}, 400, envelope("guidance_scale: Input should be greater than or equal to 1", "guidance_scale")),
        ({"seed": -1}, 400, envelope("seed: Input should be greater than or equal to 0", "seed")),
        ({"response_format": "aac"}, 400, envelope("response_format: Input should be 'wav', 'flac', 'mp3', 'opus' or 'pcm'", "response_format")),
        ({"stream_format": "ws"}, 400, envelope("stream_format: Input should be 'audio' or 'sse'", "stream_format")),
        ({"volume": 11}, 400, envelope("volume: Extra inputs are not permitted", "volume")),
        # checked by the pipeline itself: the tiny model has 64 codes per codebook
        ({"top_k": 100}, 400, envelope("top_k: must be in [0, 64] (0 disables it), got 100", "top_k")),
    ],
)
def test_bad_input_is_a_4xx_naming_the_field(gateway_url, body, status, expected):
    response = music(gateway_url, **body)
    assert response.status_code == status
    assert response.json() == expected


def test_a_missing_prompt_is_named(gateway_url):
    response = httpx.post(f"{gateway_url}/v1/audio/music", json={"duration": 1}, timeout=10)
    assert response.status_code == 400
    assert response.json() == envelope("prompt: Field required", "prompt")


def test_triton_down_is_a_503_with_retry_after_not_a_hang(tmp_path):
    settings = Settings(triton_grpc_url=f"127.0.0.1:{free_port()}", triton_metrics_url=f"http://127.0.0.1:{free_port()}/m",
                        data_dir=tmp_path)
    with run_gateway(settings) as url:
        started = time.monotonic()
        response = music(url)
        assert response.status_code == 503
        assert response.headers["retry-after"] == "2"
        assert response.json()["error"]["code"] == "triton_unavailable"
        assert time.monotonic() - started < 10
        ready = httpx.get(f"{url}/readyz", timeout=20)
        assert ready.status_code == 503 and ready.headers["retry-after"] == "2"
        assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}


def test_a_client_that_disconnects_mid_stream_cancels_the_generation(gateway_url, triton_stack):
    before = read_metrics(triton_stack)
    with httpx.stream("POST", f"{gateway_url}/v1/audio/music", timeout=60,
                      json={"prompt": "endless drone", "duration": 30}) as response:
        assert response.status_code == 200
        next(response.iter_bytes())  # audio is flowing; now hang up
    for _ in range(100):
        after = read_metrics(triton_stack)
        if after["tritone_streams_cancelled_total"] > before["tritone_streams_cancelled_total"]:
            break
        time.sleep(0.05)
    assert after["tritone_streams_cancelled_total"] == before["tritone_streams_cancelled_total"] + 1
    assert after["tritone_decode_slots_active"] == 0
    assert after["tritone_decode_steps_total"] - before["tritone_decode_steps_total"] < 30 * 50 + 3


def test_api_keys_gate_generation_and_limit_concurrent_streams(gateway_settings):
    settings = gateway_settings.model_copy(update={"api_keys": ["k1"], "max_streams_per_key": 1})
    with run_gateway(settings) as url:
        body = {"prompt": "drums", "duration": 0.5}
        missing = httpx.post(f"{url}/v1/audio/music", json=body)
        assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
        assert missing.json()["error"]["code"] == "missing_api_key"
        wrong = httpx.post(f"{url}/v1/audio/music", json=body, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
        auth = {"Authorization": "Bearer k1"}
        assert httpx.post(f"{url}/v1/audio/music", json=body, headers=auth, timeout=30).status_code == 200
        with httpx.stream("POST", f"{url}/v1/audio/music", json={"prompt": "drums", "duration": 20}, headers=auth,
                          timeout=30) as first:
            assert first.status_code == 200
            second = httpx.post(f"{url}/v1/audio/music", json=body, headers=auth, timeout=30)
            assert second.status_code == 429
            assert second.json()["error"]["message"] == "too many concurrent streams for this key (limit 1)"


def test_health_readiness_and_metrics(gateway_url):
    assert httpx.get(f"{gateway_url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{gateway_url}/readyz").json() == {"status": "ready", "music_model": "musicgen",
                                                         "speech_models": ["orpheus", "chatterbox"],
                                                         "triton_replicas": {"ready": 1, "total": 1}}
    assert music(gateway_url, duration=0.5).status_code == 200
    text = httpx.get(f"{gateway_url}/metrics").text
    assert 'tritone_gateway_requests_total{route="/v1/audio/music",status="200"} 1.0' in text
    assert 'tritone_gateway_time_to_first_audio_seconds_count{model="musicgen"} 1.0' in text
    assert 'tritone_gateway_real_time_factor_ratio_count{model="musicgen"} 1.0' in text
    assert "tritone_gateway_active_streams 0.0" in text
    assert 'tritone_gateway_audio_seconds_total{model="musicgen"} 0.5' in text
    assert 'tritone_gateway_request_duration_seconds_count{route="/v1/audio/music",status="200"} 1.0' in text
    assert "process_resident_memory_bytes" in text


def test_models_lists_what_triton_has_with_the_pipeline_limits(gateway_url):
    models = {m["id"]: m for m in httpx.get(f"{gateway_url}/v1/models", timeout=10).json()["data"]}
    assert set(models) == {"musicgen", "musicgen_tokenizer", "musicgen_text_encoder", "musicgen_text_conditioning",
                           "musicgen_codec_decoder", "orpheus", "snac_encoder", "snac_decoder",
                           "tts-1", "tts-1-hd", "gpt-4o-mini-tts",  # OpenAI's names for orpheus
                           "chatterbox", "chatterbox_voice", "chatterbox_flow", "chatterbox_vocoder", "chatterbox_codec"}
    assert all(m["ready"] and m["state"] == "READY" for m in models.values())
    assert {m.get("parent") for m in models.values()} == {None, "orpheus"}
    assert all(m["owned_by"] == "tritone" and isinstance(m["created"], int) for m in models.values())
    assert models["musicgen"]["sample_rate"] == RATE
    assert models["musicgen"]["max_duration_s"] == 30.0
    assert models["musicgen"]["max_text_tokens"] == 256
    assert (models["chatterbox"]["sample_rate"], models["chatterbox"]["max_duration_s"]) == (24000, 40.0)


def test_models_unload_and_load_through_the_repository_api(tiny_model_repository, tmp_path):
    with own_stack(tiny_model_repository, tmp_path, models=family_models("musicgen")) as (_, gateway_url):
        assert httpx.post(f"{gateway_url}/v1/models/nope/load").json()["error"]["message"] == \
            "no model named 'nope' in the repository"
        unloaded = httpx.post(f"{gateway_url}/v1/models/musicgen_codec_decoder/unload", timeout=60)
        assert unloaded.json() == {"id": "musicgen_codec_decoder", "ready": False}
        states = {m["id"]: m["state"] for m in httpx.get(f"{gateway_url}/v1/models").json()["data"]}
        assert states["musicgen_codec_decoder"] == "UNAVAILABLE"
        loaded = httpx.post(f"{gateway_url}/v1/models/musicgen_codec_decoder/load", timeout=60)
        assert loaded.json() == {"id": "musicgen_codec_decoder", "ready": True}
        assert music(gateway_url, duration=0.5).status_code == 200


def test_resources_report_gateway_and_triton_memory(gateway_url):
    body = httpx.get(f"{gateway_url}/v1/resources", timeout=10).json()
    assert body["gateway"]["max_rss_bytes"] > 10 * 2**20
    assert body["triton"]["nv_cpu_memory_used_bytes"] > 0


def test_an_idle_pipeline_is_unloaded_and_loaded_again_on_the_next_request(tiny_model_repository, tmp_path):
    with own_stack(tiny_model_repository, tmp_path, models=family_models("musicgen"), idle_unload_s=1.0) as (_, url):
        assert music(url, duration=0.5).status_code == 200
        for _ in range(100):
            states = {m["id"]: m["state"] for m in httpx.get(f"{url}/v1/models", timeout=10).json()["data"]}
            if states["musicgen"] != "READY":
                break
            time.sleep(0.1)
        assert states["musicgen"] in ("UNLOADING", "UNAVAILABLE")
        ready = httpx.get(f"{url}/readyz", timeout=10)  # the speech family is not loaded here: musicgen comes first
        assert ready.status_code == 503 and ready.json()["reason"].startswith("musicgen is "), ready.text
        response = music(url, duration=0.5)  # loads it again first
        assert response.status_code == 200
        assert len(sf.read(io.BytesIO(response.content))[0]) == RATE // 2
