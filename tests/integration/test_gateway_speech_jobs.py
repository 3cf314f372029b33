"""Speech jobs through the gateway against a real tritonserver on CPU (tiny-random Orpheus): a long text
spoken sentence by sentence in the background, its audio and sentence captions downloaded."""

from __future__ import annotations

import asyncio
import io
import json
import re
import time

import pytest
import soundfile

from tritone.client.sentences import split_sentences
from tritone.gateway.schemas import MAX_SPEECH_JOB_CHARS

from tritone.client.metrics import read_engine_metrics
from tritone.ensemble import tensors as T
from .stack import PausedModel
from .test_gateway_jobs import error_of, gateway, has_status, wait_for

pytestmark = pytest.mark.integration

RATE, FRAME = 24000, 2048
SENTENCE_S = 0.2  # each sentence capped at 2 frames: random weights rarely end a sentence themselves
SENTENCES = ("Hello there, how are you doing today?", "The quick brown fox jumps over the lazy dog.",
             "She sells sea shells by the sea shore.", "Thank you so much for listening, see you next time!")
CUE = re.compile(r"(\d\d):(\d\d):(\d\d)[.,](\d\d\d) --> (\d\d):(\d\d):(\d\d)[.,](\d\d\d)")


def orpheus_metrics(stack) -> dict[str, float]:
    return read_engine_metrics(stack.metrics_url, T.ORPHEUS)


def long_text(chars: int) -> str:
    words, i = [], 0
    while sum(len(w) + 1 for w in words) < chars:
        words.append(SENTENCES[i % len(SENTENCES)])
        i += 1
    return " ".join(words)


def cues(text: str) -> list[tuple[float, float, str]]:
    """(start s, end s, text) of each cue of a WebVTT or SRT file."""
    found = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if match := CUE.fullmatch(line):
            h1, m1, s1, ms1, h2, m2, s2, ms2 = map(int, match.groups())
            found.append((h1 * 3600 + m1 * 60 + s1 + ms1 / 1000, h2 * 3600 + m2 * 60 + s2 + ms2 / 1000, lines[i + 1]))
    return found


async def speech_job(client, status=202, **body) -> dict:
    response = await client.post("/v1/jobs", json={"type": "speech", "voice": "tara", **body})
    assert response.status_code == status, response.text
    return response.json()


def test_a_20000_character_speech_job_completes_with_captions_that_add_up_to_its_audio(triton_stack, tmp_path):
    text = long_text(20_000)
    sentences = split_sentences(text)

    async def scenario():
        async with gateway(triton_stack, tmp_path, speech_max_sentence_s=SENTENCE_S) as client:
            job = await speech_job(client, input=text, seed=1, temperature=0)
            done = await wait_for(client, job["id"], has_status("succeeded", "failed"), timeout=600)
            audio = await client.get(f"/v1/jobs/{job['id']}/audio")
            files = {fmt: await client.get(f"/v1/jobs/{job['id']}/captions", params={"format": fmt})
                     for fmt in ("json", "vtt", "srt")}
            default = await client.get(f"/v1/jobs/{job['id']}/captions")
            return job, done, audio, files, default

    job, done, audio, files, default = asyncio.run(scenario())
    assert (job["type"], job["model"], job["voice"], job["input_chars"]) == ("speech", "orpheus", "tara", len(text))
    assert job["input"] == text[:200] and "prompt" not in job
    assert done["status"] == "succeeded", done["error"]
    assert done["progress"] == 100 and done["captions_url"] == f"/v1/jobs/{job['id']}/captions"
    samples, rate = soundfile.read(io.BytesIO(audio.content))
    assert rate == RATE and len(samples) > 0 and len(samples) % FRAME == 0

    track = files["json"].json()
    captions = track["captions"]
    assert (track["level"], track["sample_rate"], len(captions)) == ("sentence", RATE, len(sentences))
    assert [c["text"] for c in captions] == sentences
    assert captions[0]["start_sample"] == 0 and captions[-1]["end_sample"] == len(samples)
    assert all(a["end_sample"] == b["start_sample"] for a, b in zip(captions, captions[1:]))  # back to back
    assert sum(c["end_sample"] - c["start_sample"] for c in captions) == len(samples)
    assert track["duration"] == len(samples) / RATE

    assert files["vtt"].headers["content-type"] == "text/vtt; charset=utf-8"
    assert files["vtt"].text.startswith("WEBVTT\n\n") and default.text == files["vtt"].text
    for fmt in ("vtt", "srt"):
        found = cues(files[fmt].text)
        assert [text for _, _, text in found] == sentences
        assert found[0][0] == 0.0 and found[-1][1] == round(len(samples) / RATE, 3)
        assert all(a[1] == b[0] for a, b in zip(found, found[1:]))


def test_a_speech_job_cancelled_mid_way_stops_its_streams(triton_stack, tmp_path):
    before = orpheus_metrics(triton_stack)

    async def scenario():
        async with gateway(triton_stack, tmp_path, speech_max_sentence_s=2.0) as client:
            job = await speech_job(client, input=long_text(3000))
            # the tiny model speaks a sentence faster than a cancel travels: its engine is paused (SIGSTOP of the
            # stub) while the job is cancelled, so the cancel finds sentences mid-way; continued, it drops them
            with PausedModel(triton_stack, T.ORPHEUS) as engine:
                await wait_for(client, job["id"], lambda j: j["status"] == "running" and j["progress"] > 0,
                               timeout=120)
                engine.pause()
                cancel = await client.post(f"/v1/jobs/{job['id']}/cancel")
                await asyncio.sleep(0.5)  # the job's streams are closed meanwhile
            deadline = time.monotonic() + 30
            while orpheus_metrics(triton_stack)["tritone_decode_slots_active"] > 0:
                assert time.monotonic() < deadline, "decode slots still held after the job was cancelled"
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.6)
            final = (await client.get(f"/v1/jobs/{job['id']}")).json()
            captions = await client.get(f"/v1/jobs/{job['id']}/captions")
            return cancel, final, captions

    cancel, final, captions = asyncio.run(scenario())
    after = orpheus_metrics(triton_stack)
    assert cancel.status_code == 200 and final["status"] == "cancelled" and 0 < final["progress"] < 100
    assert after["tritone_streams_cancelled_total"] > before["tritone_streams_cancelled_total"]
    assert captions.status_code == 409 and error_of(captions)["code"] == "job_not_succeeded"


@pytest.mark.parametrize(("body", "param", "message"), [
    ({"input": " "}, "input", "input: must not be blank"),
    ({"input": "x" * (MAX_SPEECH_JOB_CHARS + 1)}, "input",
     f"input: String should have at most {MAX_SPEECH_JOB_CHARS} characters"),
    ({"input": "Hello there.", "voice": "nobody"}, "voice", "voice: unknown voice 'nobody'"),
    ({"input": "Hello there.", "duration": 3}, "duration", "duration: Extra inputs are not permitted"),
])
def test_bad_speech_jobs_are_refused_naming_the_field(triton_stack, tmp_path, body, param, message):
    async def scenario():
        async with gateway(triton_stack, tmp_path) as client:
            response = await client.post("/v1/jobs", json={"type": "speech", **body})
            music_captions = None
            if param == "input":  # and a music job has no captions
                music = (await client.post("/v1/jobs", json={"prompt": "drums", "duration": 0.5})).json()
                music = await wait_for(client, music["id"], has_status("succeeded"))
                music_captions = await client.get(f"/v1/jobs/{music['id']}/captions")
            return response, music_captions

    response, music_captions = asyncio.run(scenario())
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert error["param"] == param and error["message"].startswith(message)
    if music_captions is not None:
        assert music_captions.status_code == 409 and error_of(music_captions)["code"] == "job_has_no_captions"


def test_a_speech_job_survives_a_gateway_restart(triton_stack, tmp_path):
    text = long_text(600)

    async def scenario():
        async with gateway(triton_stack, tmp_path, job_workers=1, speech_max_sentence_s=1.0) as client:
            job = await speech_job(client, input=text, seed=2, temperature=0)
            await wait_for(client, job["id"], has_status("running"), timeout=60)
        async with gateway(triton_stack, tmp_path, job_workers=1, speech_max_sentence_s=1.0) as client:
            done = await wait_for(client, job["id"], has_status("succeeded", "failed"), timeout=300)
            captions = (await client.get(f"/v1/jobs/{job['id']}/captions", params={"format": "json"})).json()
            audio = (await client.get(f"/v1/jobs/{job['id']}/audio", params={"format": "pcm"})).content
        return done, captions, audio

    done, captions, audio = asyncio.run(scenario())
    assert done["status"] == "succeeded", done["error"]
    assert len(captions["captions"]) == len(split_sentences(text))
    assert captions["captions"][-1]["end_sample"] * 2 == len(audio)  # 16-bit PCM: every sample, none twice
    assert json.loads(json.dumps(captions)) == captions
