"""A running job whose lease another replica took over: its gateway (uvicorn, a fake Triton) stops the job and
writes nothing more into it, on SQLite and on a real PostgreSQL (the `database` fixture)."""

import logging
import threading
import time

import httpx
import numpy as np

from tritone.gateway import job_store as js
from tritone.gateway.job_store import JobStore
from tritone.gateway.settings import Settings
from tests.integration.stack import run_gateway
from tests.unit.test_speech_client import serve  # noqa: F401 - the fake server fixture
from tests.gateway.test_speech import speak

SENTENCES = ["The first sentence is here.", "A second one follows it.", "And the third ends it.", "Then a fourth one.",
             "And at last a fifth."]
TEXT = " ".join(SENTENCES)


def test_a_gateway_whose_job_was_taken_over_stops_it_and_writes_nothing_more(database, serve, tmp_path):  # noqa: F811
    release = threading.Event()

    def script(text, fake):  # the first sentence at once, the others once the test lets them
        return speak(text, fake) if text == SENTENCES[0] else [lambda: release.wait(20), *speak(text, fake)]

    fake, triton_url = serve(script)
    settings = Settings(triton_grpc_url=triton_url, data_dir=tmp_path, job_workers=1, replica_id="replica-a",
                        database_url=database.url.render_as_string(hide_password=False))
    thief = JobStore(database, clock=lambda: time.time() + 1000, replica="replica-b")  # sees a's lease expired
    lines: list[str] = []
    handler = logging.Handler()  # the gateway's logger does not propagate (serving/log_format.py)
    handler.emit = lambda record: lines.append(record.getMessage())
    logging.getLogger("tritone.gateway").addHandler(handler)
    try:
        with run_gateway(settings) as url:
            job = httpx.post(f"{url}/v1/jobs", json={"type": "speech", "input": TEXT, "voice": "tara"}).json()
            deadline = time.monotonic() + 20
            first = round(100 * len(SENTENCES[0]) / len("".join(SENTENCES)), 1)
            while httpx.get(f"{url}/v1/jobs/{job['id']}").json()["progress"] != first:  # sentence 0 is stored
                assert time.monotonic() < deadline
                time.sleep(0.02)
            taken = thief.claim_next()
            assert taken.lease == js.Lease(job["id"], "replica-b", 2)
            release.set()  # replica a's other sentences finish now: their writes are refused
            stopped = f"job {job['id']}: replica replica-a no longer holds its lease (token 1); replica replica-b " \
                      "took it over (token 2): stopped, nothing more written"
            while stopped not in lines:
                assert time.monotonic() < deadline, lines
                time.sleep(0.02)
            time.sleep(0.3)
            seen = httpx.get(f"{url}/v1/jobs/{job['id']}").json()
        assert [part.index for part in thief.parts(job["id"])] == [0]
        # a's last write was its progress after the first sentence; the job is b's now
        assert seen["status"] == "running" and seen["progress"] == first
        assert len(fake.ended) == 5  # a's streams were all closed: it stopped generating
        assert thief.save_part(taken.lease, 1, np.zeros(4, np.float32), 24000, text=SENTENCES[1]) == js.RUNNING
    finally:
        logging.getLogger("tritone.gateway").removeHandler(handler)
        release.set()
        thief.close()
