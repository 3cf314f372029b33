"""Jobs through the gateway against a real tritonserver on CPU (tiny-random MusicGen)."""

from __future__ import annotations

import asyncio
import io
import time
from contextlib import asynccontextmanager

import httpx
import pytest
import soundfile

from tritone.gateway.job_store import JobStore
from tritone.gateway.main import create_app
from tritone.gateway.settings import Settings

from .stack import read_metrics

pytestmark = pytest.mark.integration

SAMPLE_RATE = 32000


@asynccontextmanager
async def gateway(server, data_dir, **overrides):
    """The app with its lifespan running (ASGITransport alone does not run it), and a client for it."""
    settings = Settings(triton_grpc_url=server.grpc_url, triton_metrics_url=server.metrics_url, data_dir=data_dir,
                        **overrides)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://gateway") as client:
            yield client


async def submit(client, status=202, headers=None, **body) -> dict:
    response = await client.post("/v1/jobs", json={"prompt": "lo-fi piano", **body}, headers=headers)
    assert response.status_code == status, response.text
    return response.json()


async def wait_for(client, job_id: str, condition, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = (await client.get(f"/v1/jobs/{job_id}")).json()
        if condition(job):
            return job
        assert time.monotonic() < deadline, f"gave up waiting on {job}"
        await asyncio.sleep(0.02)


def has_status(*statuses):
    return lambda job: job["status"] in statuses


async def running_job(client, duration: float = 20.0) -> dict:
    """A job submitted and waited on until a worker generates it."""
    job = await submit(client, duration=duration)
    return await wait_for(client, job["id"], has_status("running"))


def stored_samples(data_dir, job_id: str) -> int:
    """Samples of a job's audio in the gateway's database (its stored windows or sentences)."""
    store = JobStore(data_dir)
    try:
        return sum(part.samples for part in store.parts(job_id))
    finally:
        store.close()


def error_of(response: httpx.Response) -> dict:
    return response.json()["error"]


async def queued_gauge(client) -> float:
    text = (await client.get("/metrics")).text
    line = next(line for line in text.splitlines() if line.startswith("tritone_gateway_jobs_queued "))
    return float(line.split()[-1])


def test_a_job_runs_to_succeeded_and_its_audio_downloads_as_wav_and_flac(triton_stack, tmp_path):
    async def scenario():
        async with gateway(triton_stack, tmp_path) as client:
            response = await client.post("/v1/jobs", json={"prompt": "lo-fi piano", "duration": 3.0, "seed": 7})
            assert response.status_code == 202
            job = response.json()
            assert response.headers["location"] == f"/v1/jobs/{job['id']}"
            assert job["object"] == "job" and job["status"] in ("queued", "running")
            assert (job["prompt"], job["duration"], job["response_format"]) == ("lo-fi piano", 3.0, "wav")
            done = await wait_for(client, job["id"], has_status("succeeded", "failed"))
            listed = (await client.get("/v1/jobs")).json()
            wav = await client.get(done["audio_url"])
            flac = await client.get(f"/v1/jobs/{job['id']}/audio", params={"format": "flac"})
            return done, listed, wav, flac

    done, listed, wav, flac = asyncio.run(scenario())
    assert done["status"] == "succeeded", done
    assert done["progress"] == 100 and done["eta_s"] == 0 and done["error"] is None and done["queue_position"] is None
    assert done["created_at"] <= done["started_at"] <= done["finished_at"]
    assert done["audio_url"] == f"/v1/jobs/{done['id']}/audio"
    assert listed["object"] == "list" and listed["data"] == [done]
    assert (tmp_path / "tritone.sqlite3").exists() and stored_samples(tmp_path, done["id"]) == 3 * SAMPLE_RATE

    assert wav.status_code == 200 and wav.headers["content-type"] == "audio/wav"
    audio, rate = soundfile.read(io.BytesIO(wav.content), dtype="float32")
    assert rate == SAMPLE_RATE and len(audio) == 3 * SAMPLE_RATE and abs(audio).max() > 0
    assert flac.status_code == 200 and flac.headers["content-type"] == "audio/flac"
    from_flac, rate = soundfile.read(io.BytesIO(flac.content), dtype="float32")
    assert rate == SAMPLE_RATE and len(from_flac) == len(audio)
    assert abs(from_flac - audio).max() < 1e-3  # both 16-bit from the same float32 result


def test_cancelling_a_running_job_cancels_its_grpc_stream_and_frees_the_decode_slot(triton_stack, tmp_path):
    before = read_metrics(triton_stack)

    async def scenario():
        async with gateway(triton_stack, tmp_path) as client:
            job = await running_job(client)
            deadline = time.monotonic() + 30
            while read_metrics(triton_stack)["tritone_decode_slots_active"] == 0:  # Triton is generating it
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
            cancel = await client.post(f"/v1/jobs/{job['id']}/cancel")
            after = None
            for _ in range(100):  # the slot is freed at the next decode step
                after = read_metrics(triton_stack)
                if after["tritone_streams_cancelled_total"] > before["tritone_streams_cancelled_total"]:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.6)  # longer than the progress interval: nothing overwrites the cancellation
            final = (await client.get(f"/v1/jobs/{job['id']}")).json()
            again = await client.post(f"/v1/jobs/{job['id']}/cancel")
            audio = await client.get(f"/v1/jobs/{job['id']}/audio")
            return job, cancel, after, final, again, audio

    job, cancel, after, final, again, audio = asyncio.run(scenario())
    assert cancel.status_code == 200 and cancel.json()["status"] == "cancelled"
    assert final["status"] == "cancelled" and final["progress"] < 100 and final["audio_url"] is None
    assert final["finished_at"] is not None
    assert after["tritone_streams_cancelled_total"] == before["tritone_streams_cancelled_total"] + 1
    assert after["tritone_decode_slots_active"] == 0
    assert after["tritone_decode_steps_total"] - before["tritone_decode_steps_total"] < 20 * 50
    assert again.status_code == 409 and error_of(again)["message"] == f"job {job['id']} is already cancelled"
    assert audio.status_code == 409
    assert error_of(audio)["message"] == f"job {job['id']} is cancelled; its audio is available once it has succeeded"
    assert stored_samples(tmp_path, job["id"]) == 0


def test_jobs_survive_a_gateway_restart(triton_stack, tmp_path):
    async def scenario():
        async with gateway(triton_stack, tmp_path, job_workers=1) as client:
            finished = await submit(client, duration=1.0, seed=1)
            finished = await wait_for(client, finished["id"], has_status("succeeded"))
            audio_before = (await client.get(finished["audio_url"])).content
            interrupted = await submit(client, duration=20.0)  # still generating when the gateway stops
            await wait_for(client, interrupted["id"], has_status("running"))
        async with gateway(triton_stack, tmp_path, job_workers=0) as client:
            requeued = (await client.get(f"/v1/jobs/{interrupted['id']}")).json()
            queued = await submit(client, duration=2.0)
            await asyncio.sleep(0.3)
            still_queued = (await client.get(f"/v1/jobs/{queued['id']}")).json()
        async with gateway(triton_stack, tmp_path, job_workers=1) as client:
            after = (await client.get(f"/v1/jobs/{finished['id']}")).json()
            audio_after = (await client.get(finished["audio_url"])).content
            ran = await wait_for(client, queued["id"], has_status("succeeded", "failed"))
            resumed = await wait_for(client, interrupted["id"], has_status("succeeded", "failed"))
            listed = (await client.get("/v1/jobs")).json()["data"]
        return finished, audio_before, requeued, still_queued, after, audio_after, ran, resumed, listed

    finished, audio_before, requeued, still_queued, after, audio_after, ran, resumed, listed = asyncio.run(scenario())
    assert after == finished and audio_after == audio_before
    assert requeued["status"] == "queued" and requeued["progress"] == 0 and requeued["started_at"] is None
    assert requeued["queue_position"] == 1  # it was submitted first, so it runs first
    assert still_queued["status"] == "queued" and still_queued["queue_position"] == 2
    assert ran["status"] == "succeeded" and resumed["status"] == "succeeded" and resumed["progress"] == 100
    assert resumed["started_at"] <= ran["started_at"]
    assert [job["id"] for job in listed] == [ran["id"], resumed["id"], finished["id"]]
    audio, rate = soundfile.read(io.BytesIO(asyncio.run(_download(triton_stack, tmp_path, resumed["id"]))))
    assert rate == SAMPLE_RATE and len(audio) == 20 * SAMPLE_RATE


async def _download(server, data_dir, job_id: str) -> bytes:
    async with gateway(server, data_dir, job_workers=0) as client:
        response = await client.get(f"/v1/jobs/{job_id}/audio")
        assert response.status_code == 200
        return response.content


def test_a_full_queue_is_429_with_retry_after_and_queue_positions_move_up(triton_stack, tmp_path):
    async def scenario():
        async with gateway(triton_stack, tmp_path, job_workers=0, max_queued_jobs=2) as client:
            first = await submit(client, duration=1.0)
            second = await submit(client, duration=1.0)
            full = await client.post("/v1/jobs", json={"prompt": "one too many", "duration": 1.0})
            cancelled = await client.post(f"/v1/jobs/{first['id']}/cancel")
            moved = (await client.get(f"/v1/jobs/{second['id']}")).json()
            gauge = [await queued_gauge(client)]
            third = await submit(client, duration=1.0)  # the cancelled job made room
            gauge.append(await queued_gauge(client))
            return first, second, full, cancelled, moved, third, gauge

    first, second, full, cancelled, moved, third, gauge = asyncio.run(scenario())
    assert gauge == [1, 2]
    assert (first["queue_position"], second["queue_position"]) == (1, 2)
    assert full.status_code == 429 and full.headers["retry-after"] == "10"
    assert full.json() == {"error": {"message": "the job queue is full (2 jobs waiting); retry later",
                                     "type": "rate_limit_error", "param": None, "code": "job_queue_full"}}
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["queue_position"] is None
    assert moved["queue_position"] == 1 and third["queue_position"] == 2


def test_a_key_past_its_own_queue_limit_is_429_while_another_key_still_queues(triton_stack, tmp_path):
    alice, bob = {"Authorization": "Bearer alice"}, {"Authorization": "Bearer bob"}

    async def scenario():
        async with gateway(triton_stack, tmp_path, job_workers=0, api_keys=["alice", "bob"],
                           max_queued_jobs_per_key=1) as client:
            await submit(client, duration=1.0, headers=alice)
            full = await client.post("/v1/jobs", json={"prompt": "one more", "duration": 1.0}, headers=alice)
            other = await submit(client, duration=1.0, headers=bob)
            return full, other

    full, other = asyncio.run(scenario())
    assert full.status_code == 429 and full.headers["retry-after"] == "10"
    assert full.json() == {"error": {
        "message": "this key's job queue is full (1 waiting, TRITONE_MAX_QUEUED_JOBS_PER_KEY); retry once one of "
                   "them has started", "type": "rate_limit_error", "param": None, "code": "job_queue_full_for_key"}}
    assert other["status"] == "queued" and other["queue_position"] == 2


def test_an_idempotent_submit_returns_the_same_job(triton_stack, tmp_path):
    async def scenario():
        async with gateway(triton_stack, tmp_path, job_workers=0) as client:
            key = {"Idempotency-Key": "song-42"}
            first = await client.post("/v1/jobs", json={"prompt": "lo-fi piano", "duration": 5.0}, headers=key)
            retry = await client.post("/v1/jobs", json={"prompt": "lo-fi piano", "duration": 5.0}, headers=key)
            changed = await client.post("/v1/jobs", json={"prompt": "lo-fi piano", "duration": 6.0}, headers=key)
            other = await client.post("/v1/jobs", json={"prompt": "lo-fi piano", "duration": 5.0},
                                      headers={"Idempotency-Key": "song-43"})
            listed = (await client.get("/v1/jobs")).json()["data"]
            return first, retry, changed, other, listed

    first, retry, changed, other, listed = asyncio.run(scenario())
    assert first.status_code == 202 and retry.status_code == 200
    assert retry.json()["id"] == first.json()["id"] and retry.headers["location"] == first.headers["location"]
    assert changed.status_code == 409
    assert error_of(changed) == {"message": "Idempotency-Key 'song-42' was already used with a different request body",
                                 "type": "invalid_request_error", "param": "Idempotency-Key",
                                 "code": "idempotency_key_reused"}
    assert other.status_code == 202 and other.json()["id"] != first.json()["id"]
    assert len(listed) == 2


def test_unknown_jobs_are_404_and_jobs_without_audio_are_409(triton_stack, tmp_path):
    async def scenario():
        async with gateway(triton_stack, tmp_path, job_workers=0) as client:
            queued = await submit(client, duration=1.0)
            return queued, {
                "get": await client.get("/v1/jobs/job_nope"),
                "cancel": await client.post("/v1/jobs/job_nope/cancel"),
                "audio": await client.get("/v1/jobs/job_nope/audio"),
                "queued_audio": await client.get(f"/v1/jobs/{queued['id']}/audio"),
                "bad_format": await client.get(f"/v1/jobs/{queued['id']}/audio", params={"format": "ogg"}),
                "too_long": await client.post("/v1/jobs", json={"prompt": "x", "duration": 301}),
                "stream_field": await client.post("/v1/jobs", json={"prompt": "x", "stream": True}),
            }

    queued, responses = asyncio.run(scenario())
    for name in ("get", "cancel", "audio"):
        assert responses[name].status_code == 404
        assert error_of(responses[name]) == {"message": "job job_nope not found", "type": "not_found_error",
                                             "param": "job_id", "code": "job_not_found"}
    assert responses["queued_audio"].status_code == 409
    assert error_of(responses["queued_audio"])["message"] == (
        f"job {queued['id']} is queued; its audio is available once it has succeeded")
    assert responses["bad_format"].status_code == 400 and error_of(responses["bad_format"])["param"] == "format"
    assert responses["too_long"].status_code == 400
    assert error_of(responses["too_long"])["message"] == "duration: must be at most 300 seconds, got 301"
    assert responses["stream_field"].status_code == 400 and error_of(responses["stream_field"])["param"] == "stream"


def test_a_job_longer_than_the_pipeline_limit_is_generated_in_windows(triton_stack, tmp_path):
    async def scenario():
        async with gateway(triton_stack, tmp_path) as client:
            job = await submit(client, duration=45.0, seed=3)
            midway = await wait_for(client, job["id"], lambda j: j["status"] != "queued" and j["progress"] > 0)
            done = await wait_for(client, job["id"], has_status("succeeded", "failed"), timeout=120)
            return midway, done, (await client.get(f"/v1/jobs/{job['id']}/audio")).content if done["audio_url"] else b""

    midway, done, wav = asyncio.run(scenario())
    assert midway["status"] == "running" and 0 < midway["progress"] < 100 and midway["eta_s"] > 0, midway
    assert done["status"] == "succeeded", done
    audio, rate = soundfile.read(io.BytesIO(wav))
    assert rate == SAMPLE_RATE and len(audio) == 45 * SAMPLE_RATE
