"""Database faults, with a real PostgreSQL (tests/postgres.py) and a gateway (uvicorn) whose Triton is a fake gRPC
server: unreachable at start is one clear line naming the host and port (never the password) and a non-zero
exit; lost while running, the job and voice routes answer 503 with Retry-After while plain speech keeps
streaming; once it is back they recover without a restart."""

import os
import subprocess
import sys

import httpx
import pytest

from tritone.gateway.settings import Settings
from tritone.serving.triton import free_port
from tests.integration.stack import run_gateway
from tests.unit.test_speech_client import serve  # noqa: F401 - the fake server fixture
from tests.gateway.test_speech import SAMPLES_PER_CHAR, speak


def test_an_unreachable_database_at_start_is_a_clear_error_and_a_non_zero_exit(tmp_path):
    port = free_port()  # nothing listens there
    env = {**os.environ, "TRITONE_DATABASE_URL": f"postgresql://tritone:s3cret-pw@127.0.0.1:{port}/tritone",
           "TRITONE_DATA_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "tritone.gateway", "--port", str(free_port())], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"tritone gateway: cannot reach the database (postgresql at 127.0.0.1:{port}/tritone): connection failed: "
        f'connection to server at "127.0.0.1", port {port} failed: Connection refused; check TRITONE_DATABASE_URL '
        "and that the database server is running")
    assert "s3cret-pw" not in done.stderr + done.stdout


def refused_for_the_database(reply: httpx.Response, port: int) -> bool:
    error = reply.json()["error"]
    return (reply.status_code, reply.headers.get("retry-after"), error["type"], error["code"]) == \
        (503, "2", "server_error", "database_unavailable") and error["message"].startswith(
            f"the database is not reachable: postgresql at 127.0.0.1:{port}/tritone_tests: connection failed: ")


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
def test_a_lost_database_is_503_on_job_and_voice_routes_while_speech_streams_and_then_recovers(
        postgres, database, serve, tmp_path):  # noqa: F811
    _, triton_url = serve(speak)
    settings = Settings(triton_grpc_url=triton_url, data_dir=tmp_path, job_workers=1,
                        database_url=database.url.render_as_string(hide_password=False))
    text = "Still speaking."
    job = {"type": "speech", "input": "A job.", "voice": "tara"}
    with run_gateway(settings) as url:
        assert httpx.get(f"{url}/v1/jobs").json() == {"object": "list", "data": []}
        postgres.stop("immediate")
        try:
            replies = [httpx.get(f"{url}/v1/jobs"), httpx.post(f"{url}/v1/jobs", json=job),
                       httpx.get(f"{url}/v1/jobs/job_123"), httpx.get(f"{url}/v1/audio/voices"),
                       httpx.delete(f"{url}/v1/audio/voices/voice_123")]
            spoken = httpx.post(f"{url}/v1/audio/speech", json={"input": text, "voice": "tara",
                                                               "response_format": "pcm"}, timeout=30)
        finally:
            postgres.start()
        assert [reply.status_code for reply in replies] == [503] * 5
        assert all(refused_for_the_database(reply, postgres.port) for reply in replies), replies[0].json()
        assert spoken.status_code == 200 and len(spoken.content) == 2 * SAMPLES_PER_CHAR * len(text)

        # back: the same gateway recovers without a restart (stale connections are checked before use)
        created = httpx.post(f"{url}/v1/jobs", json=job)
        assert created.status_code == 202, created.text
        listed = httpx.get(f"{url}/v1/jobs").json()["data"]
        assert [item["id"] for item in listed] == [created.json()["id"]]
        assert httpx.get(f"{url}/v1/audio/voices").status_code == 200
