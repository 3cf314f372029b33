"""Two gateways (two apps, each with its own connections and limiter) on one real PostgreSQL, in front of one
fake Triton: a voice stored through one speaks through the other, and a key limited to 2 concurrent streams
gets 2 over both gateways, not 4."""

import threading
import time
from contextlib import ExitStack

import httpx
import numpy as np
import pytest

from tritone.ensemble import tensors as T
from tritone.gateway.settings import Settings
from tests.integration.stack import run_gateway
from tests.unit.test_client import response
from tests.unit.test_speech_client import serve  # noqa: F401 - the fake server fixture
from tests.gateway.test_speech import SR, sent_inputs, speak
from tests.gateway.test_voices import TRANSCRIPT, clip, upload

KEY = {"Authorization": "Bearer k"}


def settings_for(triton_url, database, data_dir, name, **extra) -> Settings:
    return Settings(triton_grpc_url=triton_url, data_dir=data_dir / name, job_workers=0, replica_id=name,
                    api_keys=["k"], database_url=database.url.render_as_string(hide_password=False), **extra)


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
def test_a_voice_stored_through_one_gateway_speaks_through_the_other(database, serve, tmp_path):  # noqa: F811
    fake, triton_url = serve(speak)
    with run_gateway(settings_for(triton_url, database, tmp_path, "a")) as a, \
            run_gateway(settings_for(triton_url, database, tmp_path, "b")) as b:
        voice = upload(a, clip(), **KEY).json()
        assert httpx.get(f"{b}/v1/audio/voices/{voice['id']}", headers=KEY).json() == voice
        reply = httpx.post(f"{b}/v1/audio/speech", headers=KEY, timeout=30,
                           json={"input": "Spoken through b.", "voice": "Narrator", "response_format": "pcm"})
        assert reply.status_code == 200
        inputs = sent_inputs(fake, -1)
        assert list(inputs) == [T.TEXT, T.REFERENCE_TEXT, T.REFERENCE_CODES]
        assert inputs[T.REFERENCE_TEXT][4:].decode() == TRANSCRIPT
        assert np.frombuffer(inputs[T.REFERENCE_CODES], np.int64).size == 7 * voice["frames"]
        assert len(fake.encoded) == 1  # encoded once, through a


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
def test_a_key_limited_to_2_streams_gets_2_over_both_gateways(database, serve, tmp_path):  # noqa: F811
    finish = threading.Event()

    def held(text, fake):  # a first chunk at once, the rest when the test lets it
        return [response(0, audio=np.zeros(SR // 10, np.float32), sample_rate=SR), lambda: finish.wait(20),
                response(1, audio=np.zeros(SR // 10, np.float32), sample_rate=SR, final=True)]

    _, triton_url = serve(held)
    body = {"input": "Held open.", "voice": "tara", "response_format": "pcm"}
    try:
        with run_gateway(settings_for(triton_url, database, tmp_path, "a", max_streams_per_key=2)) as a, \
                run_gateway(settings_for(triton_url, database, tmp_path, "b", max_streams_per_key=2)) as b, \
                ExitStack() as streams:
            opened = [streams.enter_context(httpx.stream("POST", f"{url}/v1/audio/speech", json=body, headers=KEY,
                                                         timeout=30)) for url in (a, b)]
            assert [reply.status_code for reply in opened] == [200, 200]
            third = [httpx.post(f"{url}/v1/audio/speech", json=body, headers=KEY, timeout=30) for url in (a, b)]
            assert [reply.status_code for reply in third] == [429, 429]
            assert third[1].json()["error"] == {"message": "too many concurrent streams for this key (limit 2)",
                                                "type": "rate_limit_error", "param": None,
                                                "code": "too_many_streams"}
            finish.set()
            assert [len(reply.read()) for reply in opened] == [2 * 2 * SR // 10] * 2  # both ran to their end
            for reply in opened:
                reply.close()
            deadline = time.monotonic() + 5  # the slots are given back (deleted in the background)
            while (again := httpx.post(f"{b}/v1/audio/speech", json=body, headers=KEY, timeout=30)).status_code == 429:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert again.status_code == 200
    finally:
        finish.set()
