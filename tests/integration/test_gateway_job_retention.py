"""Job audio does not pile up: DELETE /v1/jobs/{id} removes a job and its audio (stopping it first), finished
jobs expire after job_ttl_s, and a job past the disk budget is refused with 507 (a real tritonserver)."""

from __future__ import annotations

import asyncio
import time

import pytest

from .stack import read_metrics
from tritone.gateway.job_store import JobStore

from .test_gateway_jobs import error_of, gateway, has_status, running_job, stored_samples, submit, wait_for

pytestmark = pytest.mark.integration


def test_deleting_a_job_removes_its_audio_and_later_requests_get_404(triton_stack, tmp_path):
    async def scenario():
        async with gateway(triton_stack, tmp_path) as client:
            job = await submit(client, duration=1.0, seed=1)
            await wait_for(client, job["id"], has_status("succeeded"))
            existed = stored_samples(tmp_path, job["id"]) > 0
            deleted = await client.delete(f"/v1/jobs/{job['id']}")
            after = [await client.get(f"/v1/jobs/{job['id']}"), await client.get(f"/v1/jobs/{job['id']}/audio"),
                     await client.delete(f"/v1/jobs/{job['id']}")]
            listed = (await client.get("/v1/jobs")).json()["data"]
            return job, existed, stored_samples(tmp_path, job["id"]) > 0, deleted, after, listed

    job, existed, exists, deleted, after, listed = asyncio.run(scenario())
    assert existed and not exists
    assert (deleted.status_code, deleted.json()) == (200, {"id": job["id"], "object": "job.deleted", "deleted": True})
    assert [reply.status_code for reply in after] == [404, 404, 404]
    assert error_of(after[2]) == {"message": f"job {job['id']} not found", "type": "not_found_error",
                                  "param": "job_id", "code": "job_not_found"}
    assert listed == []


def test_deleting_a_running_job_stops_its_generation_first(triton_stack, tmp_path):
    before = read_metrics(triton_stack)

    async def scenario():
        async with gateway(triton_stack, tmp_path) as client:
            job = await running_job(client)
            deleted = await client.delete(f"/v1/jobs/{job['id']}")
            await asyncio.sleep(0.6)  # longer than the progress interval: the job stays gone
            return job, deleted, await client.get(f"/v1/jobs/{job['id']}")

    job, deleted, got = asyncio.run(scenario())
    assert deleted.status_code == 200 and got.status_code == 404
    store = JobStore(tmp_path)
    try:
        assert store.stored_bytes() == 0  # no audio of it (nor of any job) is stored
    finally:
        store.close()
    deadline = time.monotonic() + 10
    while read_metrics(triton_stack)["tritone_decode_slots_active"] > 0:  # freed at the next decode step
        assert time.monotonic() < deadline
        time.sleep(0.05)
    after = read_metrics(triton_stack)
    assert after["tritone_streams_completed_total"] == before["tritone_streams_completed_total"]  # never finished


def test_a_key_cannot_delete_another_keys_job(triton_stack, tmp_path):
    alice, bob = {"Authorization": "Bearer alice"}, {"Authorization": "Bearer bob"}

    async def scenario():
        async with gateway(triton_stack, tmp_path, api_keys=["alice", "bob"]) as client:
            job = await submit(client, duration=1.0, headers=alice)
            by_bob = await client.delete(f"/v1/jobs/{job['id']}", headers=bob)
            still = await client.get(f"/v1/jobs/{job['id']}", headers=alice)
            by_alice = await client.delete(f"/v1/jobs/{job['id']}", headers=alice)
            return by_bob, still, by_alice

    by_bob, still, by_alice = asyncio.run(scenario())
    assert by_bob.status_code == 404 and error_of(by_bob)["code"] == "job_not_found"
    assert still.status_code == 200 and by_alice.status_code == 200


def test_a_finished_job_and_its_audio_expire_after_the_ttl(triton_stack, tmp_path):
    async def scenario():
        async with gateway(triton_stack, tmp_path, job_ttl_s=1.0, job_sweep_interval_s=0.1) as client:
            job = await submit(client, duration=1.0)
            done = await wait_for(client, job["id"], has_status("succeeded", "failed"))
            deadline = time.monotonic() + 10
            while (reply := await client.get(f"/v1/jobs/{job['id']}")).status_code == 200:
                assert time.monotonic() < deadline, reply.json()
                await asyncio.sleep(0.05)
            return job, done, reply

    job, done, reply = asyncio.run(scenario())
    assert done["status"] == "succeeded" and reply.status_code == 404
    assert stored_samples(tmp_path, job["id"]) == 0


def test_a_job_past_the_disk_budget_is_507_insufficient_storage(triton_stack, tmp_path):
    async def scenario():
        async with gateway(triton_stack, tmp_path, job_disk_budget_bytes=1_000_000) as client:
            fits = await submit(client, duration=5.0)  # 0.61 MiB of float32 audio at 32 kHz
            refused = await client.post("/v1/jobs", json={"prompt": "lo-fi piano", "duration": 5.0})
            await client.delete(f"/v1/jobs/{fits['id']}")  # deleting frees the budget
            return refused, await client.post("/v1/jobs", json={"prompt": "lo-fi piano", "duration": 5.0})

    refused, after_delete = asyncio.run(scenario())
    assert refused.status_code == 507
    assert error_of(refused) == {
        "message": "job storage is full: 0.0 MiB of job audio is stored and 0.6 MiB reserved by queued and running "
                   "jobs; this job needs 0.6 MiB more, over the 1.0 MiB budget (TRITONE_JOB_DISK_BUDGET_BYTES). "
                   "Delete finished jobs (DELETE /v1/jobs/{id}) or wait until they expire",
        "type": "server_error", "param": None, "code": "insufficient_storage"}
    assert after_delete.status_code == 202
