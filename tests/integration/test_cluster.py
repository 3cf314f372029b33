"""The cluster on one machine: one PostgreSQL (tests/postgres.py), two tritonservers (tiny-random, CPU) and two
gateway processes (`python -m tritone.gateway`, uvicorn), each gateway's Triton target naming both Tritons
(`ipv4:a,b`, as `dns:///triton-headless:8001` names every pod), all on 127.0.0.1. Started once, in one test:

1. a voice uploaded through gateway A speaks through gateway B, the same audio as through A;
2. a key limited to 2 streams gets 2 over both gateways (the third is 429 on either);
3. 12 concurrent speech streams through both gateways: all 200, and both Tritons completed some;
4. a seeded 60 s music job whose gateway is SIGKILLed after its first window is finished by the other once the
   lease (3 s) expires: exactly 60 s, the same audio as the same job run undisturbed beside it;
5. SIGKILL one Triton while 8 music streams run: the streams it ran end visibly failed (an audio body cut off
   without its chunked end, SSE with an `error` event), the others complete; every new stream succeeds on the
   other Triton, and /readyz reports 1 of 2 replicas.

Each Triton closes every gRPC connection after 2 s (--grpc-max-connection-age; the streams on it get a grace), so
the gateways reconnect, as they must to find new replicas by DNS, and all of the above holds across it.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import psycopg
import pytest
import soundfile

from tritone.client.metrics import read_engine_metrics
from tritone.ensemble import tensors as T
from tritone.serving.triton import TritonServer, free_port

from .test_gateway_speech import FIRST, SECOND, clip_wav

pytestmark = pytest.mark.integration

MUSIC_RATE = 32000
SPEECH_MAX_SENTENCE_S = 0.5  # random weights rarely end a sentence: each is capped
LEASE_S = 3.0
JOB_S = 60.0  # three windows of MusicGen's 30 s: 30 s, then 20 s and 10 s on 10 s of context
STREAM_KEYS = [f"k{i}" for i in range(1, 7)]  # 6 keys x 2 streams: the 12 concurrent streams
KEYS = ["limited", *STREAM_KEYS]
# Each Triton closes a gateway's connection every 2 s (the containers: every 60 s, serving/container.py), its streams
# running on: everything below runs over connections replaced under it
CONNECTION_AGE = ["--grpc-max-connection-age=2000", "--grpc-max-connection-age-grace=600000"]


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


class Gateway:
    """`python -m tritone.gateway` in a process of its own (killable), its log in a file."""

    def __init__(self, name: str, target: str, database_url: str, data_dir: Path, log_dir: Path):
        self.name, self.port = name, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"gateway-{name}.log"
        env = {**os.environ, "TRITONE_DATABASE_URL": database_url, "TRITONE_TRITON_GRPC_URL": target,
               "TRITONE_REPLICA_ID": f"gateway-{name}", "TRITONE_DATA_DIR": str(data_dir / name),
               "TRITONE_JOB_LEASE_S": str(LEASE_S), "TRITONE_JOB_WORKERS": "1", "TRITONE_API_KEYS": json.dumps(KEYS),
               "TRITONE_MAX_STREAMS_PER_KEY": "2", "TRITONE_SPEECH_MAX_SENTENCE_S": str(SPEECH_MAX_SENTENCE_S)}
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "tritone.gateway", "--port", str(self.port)],
                                            env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)

    def ready(self) -> dict | None:
        assert self.process.poll() is None, f"gateway {self.name} exited:\n{self.log()}"
        try:
            reply = httpx.get(f"{self.url}/readyz", timeout=5)
        except httpx.TransportError:
            return None
        return reply.json() if reply.status_code == 200 else None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        self.process.kill()  # SIGKILL: no lease released, nothing flushed
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def client_ports(port: int) -> set[int]:
    """The client-side ports of the established TCP connections to `port` on this machine (Linux's tables; gRPC's
    sockets are IPv6 ones, dual-stack, even to 127.0.0.1)."""
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, remote, state = line.split()[1:4]
            if state == "01" and int(remote.rsplit(":", 1)[1], 16) == port:
                ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


def wait_until(condition, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(interval)
    return result


def completed(server: TritonServer, model: str) -> float:
    return read_engine_metrics(server.metrics_url, model)["tritone_streams_completed_total"]


def speak(url: str, key: str, **body) -> httpx.Response:
    return httpx.post(f"{url}/v1/audio/speech", headers=auth(key), timeout=120,
                      json={"input": FIRST, "voice": "tara", "response_format": "pcm", **body})


def test_two_gateways_and_two_tritons_on_one_postgresql(tiny_model_repository, postgres, tmp_path):
    timings: dict[str, float] = {}
    started = time.monotonic()
    database_url = postgres.create_database("tritone_cluster")
    tritons = [TritonServer() for _ in range(2)]
    gateways: list[Gateway] = []
    try:
        for i, server in enumerate(tritons):  # both load at once
            server.start(tiny_model_repository, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                         model_config_name="cpu", model_control_mode="explicit", load_models=["*"],
                         log_file=tmp_path / f"tritonserver-{i}.log", extra_args=CONNECTION_AGE)
        target = "ipv4:" + ",".join(f"127.0.0.1:{server.grpc_port}" for server in tritons)
        for server in tritons:
            server.wait_ready(timeout=240)
        gateways = [Gateway(name, target, database_url, tmp_path, tmp_path) for name in ("a", "b")]
        a, b = gateways
        for gateway in gateways:
            ready = wait_until(gateway.ready, 120, f"gateway {gateway.name} ready")
            assert ready["triton_replicas"] == {"ready": 2, "total": 2}
        first_connections = client_ports(tritons[1].grpc_port)
        timings["start"] = time.monotonic() - started

        # 1. a voice stored through a speaks through b, with the same stored codes
        step = time.monotonic()
        created = httpx.post(f"{a.url}/v1/audio/voices", files={"file": ("me.wav", clip_wav())}, headers=auth("k1"),
                             data={"name": "Me", "transcript": FIRST}, timeout=120)
        assert created.status_code == 201, created.text
        voice = created.json()
        assert httpx.get(f"{b.url}/v1/audio/voices/{voice['id']}", headers=auth("k1")).json() == voice
        through_a = speak(a.url, "k1", input=SECOND, voice="Me", temperature=0)
        through_b = speak(b.url, "k1", input=SECOND, voice="Me", temperature=0)
        assert (through_a.status_code, through_b.status_code) == (200, 200), through_b.text
        assert len(through_b.content) > 0 and through_b.content == through_a.content
        assert speak(b.url, "k2", input=SECOND, voice="Me").status_code == 400  # another key's voice: not found
        timings["voice"] = time.monotonic() - step

        # 2. a key limited to 2 streams gets 2 over both gateways
        step = time.monotonic()
        # 60 sentences of 0.5 s each, spoken one after another: seconds of generation, while music's 30 s take
        # half a second on tiny-random (and would fit in the sockets' buffers)
        held = {"input": " ".join([FIRST] * 60), "voice": "tara", "response_format": "pcm", "temperature": 0}
        with httpx.Client(timeout=120) as client:
            opened = [client.send(client.build_request("POST", f"{url}/v1/audio/speech", json=held,
                                                       headers=auth("limited")), stream=True)
                      for url in (a.url, b.url)]
            try:
                assert [reply.status_code for reply in opened] == [200, 200]
                third = [speak(url, "limited") for url in (a.url, b.url)]
                assert [reply.status_code for reply in third] == [429, 429]
                assert third[0].json()["error"]["code"] == "too_many_streams"
                lengths = [len(reply.read()) for reply in opened]  # both ran to their end meanwhile
                assert lengths[0] == lengths[1] >= 60 * 2 * 2048, lengths  # at least a frame a sentence
            finally:
                for reply in opened:
                    reply.close()
        timings["limit"] = time.monotonic() - step

        # 3. 12 concurrent streams through both gateways land on both Tritons
        step = time.monotonic()
        before = [completed(server, T.ORPHEUS) for server in tritons]

        async def twelve():
            async with httpx.AsyncClient(timeout=120) as client:
                return await asyncio.gather(*(
                    client.post(f"{gateway.url}/v1/audio/speech", headers=auth(key),
                                json={"input": FIRST, "voice": "tara", "response_format": "pcm"})
                    for key in STREAM_KEYS for gateway in gateways))

        replies = asyncio.run(twelve())
        assert [reply.status_code for reply in replies] == [200] * 12, [reply.text[:200] for reply in replies]
        grown = [completed(server, T.ORPHEUS) - was for server, was in zip(tritons, before)]
        assert sum(grown) == 12 and min(grown) >= 1, grown
        timings["12 streams"] = time.monotonic() - step

        # 4. a 60 s job: its gateway killed after the first window, the other one finishes it
        step = time.monotonic()
        job_body = {"prompt": "lo-fi piano", "duration": JOB_S, "seed": 11}
        jobs = [httpx.post(f"{a.url}/v1/jobs", json=job_body, headers=auth("k1"), timeout=30) for _ in range(2)]
        assert [reply.status_code for reply in jobs] == [202, 202], jobs[0].text
        undisturbed, disturbed = (reply.json()["id"] for reply in jobs)
        with psycopg.connect(database_url, autocommit=True) as db:
            def owner_once_a_window_is_stored() -> str | None:  # one worker each: the jobs run on different gateways
                owner = db.execute("SELECT lease_owner FROM jobs WHERE id = %s", (disturbed,)).fetchone()[0]
                parts = db.execute("SELECT count(*) FROM job_parts WHERE job_id = %s", (disturbed,)).fetchone()[0]
                return owner if parts >= 1 else None

            owner = wait_until(owner_once_a_window_is_stored, 120, "the job's first window", interval=0.02)
            victim = next(gateway for gateway in gateways if f"gateway-{gateway.name}" == owner)
            victim.kill()
            parts_at_death = db.execute("SELECT count(*) FROM job_parts WHERE job_id = %s", (disturbed,)).fetchone()[0]
        survivor = next(gateway for gateway in gateways if gateway is not victim)
        assert 1 <= parts_at_death < 3

        def finished(job_id: str) -> dict | None:
            job = httpx.get(f"{survivor.url}/v1/jobs/{job_id}", headers=auth("k1"), timeout=10).json()
            return job if job["status"] in ("succeeded", "failed") else None

        for job_id in (undisturbed, disturbed):
            done = wait_until(lambda: finished(job_id), 240, f"job {job_id}", interval=0.2)
            assert done["status"] == "succeeded", done
        audio = {}
        for job_id in (undisturbed, disturbed):
            reply = httpx.get(f"{survivor.url}/v1/jobs/{job_id}/audio", headers=auth("k1"), timeout=60)
            samples, rate = soundfile.read(io.BytesIO(reply.content), dtype="float32")
            assert rate == MUSIC_RATE and len(samples) == JOB_S * MUSIC_RATE
            audio[job_id] = samples
        with psycopg.connect(database_url, autocommit=True) as db:
            codes = {job_id: [np.load(io.BytesIO(row[0])) for row in db.execute(
                "SELECT codes FROM job_parts WHERE job_id = %s ORDER BY part", (job_id,))]
                for job_id in (undisturbed, disturbed)}
        assert len(codes[disturbed]) == len(codes[undisturbed]) == 3
        for got, expected in zip(codes[disturbed], codes[undisturbed]):  # no window lost or generated twice
            np.testing.assert_array_equal(got, expected)
        # The audio: the same up to one step of 16 bits. The codec decodes each stream's frames batched with
        # whatever else runs on its Triton (here: the other job), and a batch's float sums may round differently.
        assert np.abs(audio[disturbed] - audio[undisturbed]).max() <= 2 ** -15
        assert f"job {disturbed}: continuing after window {parts_at_death} of 3" in survivor.log()
        timings["job takeover"] = time.monotonic() - step

        # 5. SIGKILL a Triton while 8 music streams run through the surviving gateway
        step = time.monotonic()
        dead, alive = tritons
        long_music = {"prompt": "endless drone", "duration": 30}

        async def kill_mid_load():
            async with httpx.AsyncClient(timeout=120) as client:
                bodies = [{**long_music, "response_format": "pcm", **({"stream_format": "sse"} if i % 2 else {})}
                          for i in range(8)]
                streams = await asyncio.gather(*(
                    client.send(client.build_request("POST", f"{survivor.url}/v1/audio/music", json=body,
                                                     headers=auth(STREAM_KEYS[i // 2])), stream=True)
                    for i, body in enumerate(bodies)))
                assert [reply.status_code for reply in streams] == [200] * 8
                running = read_engine_metrics(dead.metrics_url, T.MUSICGEN)["tritone_decode_slots_active"]
                dead.note_shared_memory()
                os.killpg(dead.pid, signal.SIGKILL)
                return running, await asyncio.gather(*(outcome(reply, body) for reply, body in zip(streams, bodies)))

        async def outcome(reply: httpx.Response, body: dict) -> str:
            try:
                data = b"".join([piece async for piece in reply.aiter_raw()])
            except httpx.RemoteProtocolError as error:
                assert "incomplete chunked read" in str(error)
                return "failed"
            finally:
                await reply.aclose()
            if body.get("stream_format") == "sse":
                events = [json.loads(line.removeprefix("data: ")) for line in data.decode().splitlines()
                          if line.startswith("data: ")]
                if events[-1]["type"] == "error":
                    assert events[-1]["error"]["code"] == "triton_unavailable", events[-1]
                    return "failed"
                assert events[-1]["type"] == "music.audio.done" and events[-1]["duration"] == 30, events[-1]
                return "complete"
            assert len(data) == 30 * MUSIC_RATE * 2, len(data)  # s16le: the whole 30 s, never a clean short body
            return "complete"

        running, outcomes = asyncio.run(kill_mid_load())
        print(f"Triton killed with {running:.0f} streams generating on it: {outcomes}")
        assert running >= 1  # the killed Triton was generating
        assert 1 <= outcomes.count("failed") <= running, (running, outcomes)
        ready = httpx.get(f"{survivor.url}/readyz", timeout=10)
        assert (ready.status_code, ready.json()["triton_replicas"]) == (200, {"ready": 1, "total": 2})
        before = completed(alive, T.ORPHEUS)
        after_kill = [speak(survivor.url, STREAM_KEYS[i % len(STREAM_KEYS)]) for i in range(6)]
        assert [reply.status_code for reply in after_kill] == [200] * 6
        assert completed(alive, T.ORPHEUS) - before == 6
        connections = client_ports(alive.grpc_port)  # every connection the test began with was replaced
        assert first_connections and connections and not first_connections & connections
        timings["triton kill"] = time.monotonic() - step
    finally:
        for gateway in gateways:
            gateway.stop()
        for server in tritons:
            server.stop(timeout=10)
        timings["total"] = time.monotonic() - started
        print("cluster test timings (s):", {name: round(seconds, 1) for name, seconds in timings.items()})
