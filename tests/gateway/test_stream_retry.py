"""A stream refused before its first chunk is opened once more, on the next replica (round_robin), and only then:
a real gateway (uvicorn) in front of two fake Tritons named by one `ipv4:` target."""

import logging

import httpx
import numpy as np
import pytest

from tritone.gateway.settings import Settings
from tests.integration.stack import run_gateway
from tests.integration.test_gateway_faults import gateway_metric
from tests.unit.test_client import response
from tests.unit.test_speech_client import serve  # noqa: F401 - the fake server fixture
from tests.gateway.test_speech import SAMPLES_PER_CHAR, SR, speak

BODY = {"input": "Hello there.", "voice": "tara", "response_format": "pcm"}
AT_CAPACITY = "UNAVAILABLE: orpheus is at capacity: 4 streams generating and 4 waiting; retry later"


def at_capacity(text, fake):
    return [AT_CAPACITY]


def gateway_for(tmp_path, *urls) -> Settings:
    return Settings(triton_grpc_url="ipv4:" + ",".join(urls), data_dir=tmp_path, job_workers=0)


def retried(url: str, kind: str) -> float:
    try:
        return gateway_metric(url, f'tritone_gateway_streams_retried_total{{kind="{kind}"}}')
    except KeyError:
        return 0.0


STOPPING = "Server is stopping, scheduler for model has stopped accepting new inference requests"


@pytest.mark.parametrize(("refusal", "kind"), [(AT_CAPACITY, "server_at_capacity"), (STOPPING, "triton_stopping")])
def test_a_replica_that_refuses_costs_one_retry_on_the_other(serve, tmp_path, refusal, kind):  # noqa: F811
    full, full_url = serve(lambda text, fake: [refusal])
    free, free_url = serve(speak)
    lines: list[str] = []
    handler = logging.Handler()  # the gateway's logger does not propagate (serving/log_format.py)
    handler.emit = lambda record: lines.append(record.getMessage())
    with run_gateway(gateway_for(tmp_path, full_url, free_url)) as url:
        logging.getLogger("tritone.gateway").addHandler(handler)
        try:
            replies = [httpx.post(f"{url}/v1/audio/speech", json=BODY, timeout=30) for _ in range(8)]
        finally:
            logging.getLogger("tritone.gateway").removeHandler(handler)
        assert [reply.status_code for reply in replies] == [200] * 8
        assert {len(reply.content) for reply in replies} == {2 * len(BODY["input"]) * SAMPLES_PER_CHAR}
        assert len(free.texts) == 8 and len(full.texts) >= 3  # round_robin: about every other first try
        assert retried(url, kind) == len(full.texts)  # each refusal retried, once
    message = refusal.removeprefix("UNAVAILABLE: ")
    said = f"orpheus stream refused before its first chunk ({kind}: {message}); opening it again on the next replica"
    assert lines.count(said) == len(full.texts), lines


def test_both_replicas_refusing_is_429_after_one_retry(serve, tmp_path):  # noqa: F811
    one, one_url = serve(at_capacity)
    two, two_url = serve(at_capacity)
    with run_gateway(gateway_for(tmp_path, one_url, two_url)) as url:
        for attempt in range(1, 4):
            reply = httpx.post(f"{url}/v1/audio/speech", json=BODY, timeout=30)
            assert (reply.status_code, reply.headers["retry-after"]) == (429, "2")
            assert reply.json()["error"] == {"message": AT_CAPACITY.removeprefix("UNAVAILABLE: "),
                                             "type": "rate_limit_error", "param": None, "code": "server_at_capacity"}
            assert len(one.texts) + len(two.texts) == 2 * attempt  # the first try and one retry, no more
        assert len(one.texts) == len(two.texts) == 3  # each retry went to the other replica
        assert retried(url, "server_at_capacity") == 3


def test_a_replica_that_is_down_gets_no_streams(serve, tmp_path):  # noqa: F811
    from tritone.serving.triton import free_port

    up, up_url = serve(speak)
    down_url = f"127.0.0.1:{free_port()}"  # nothing listens there
    with run_gateway(gateway_for(tmp_path, down_url, up_url)) as url:
        replies = [httpx.post(f"{url}/v1/audio/speech", json=BODY, timeout=30) for _ in range(6)]
        assert [reply.status_code for reply in replies] == [200] * 6 and len(up.texts) == 6


def test_a_stream_that_fails_after_its_first_chunk_is_not_retried(serve, tmp_path):  # noqa: F811
    def breaks(text, fake):
        return [response(0, audio=np.zeros(SR // 10, np.float32), sample_rate=SR), AT_CAPACITY]

    one, one_url = serve(breaks)
    two, two_url = serve(breaks)
    with run_gateway(gateway_for(tmp_path, one_url, two_url)) as url:
        with httpx.stream("POST", f"{url}/v1/audio/speech", json=BODY, timeout=30) as reply:
            assert reply.status_code == 200
            with pytest.raises(httpx.RemoteProtocolError, match="incomplete chunked read"):
                reply.read()  # cut off: visibly failed, not a short clean body
        assert len(one.texts) + len(two.texts) == 1
        assert retried(url, "server_at_capacity") == 0
        assert gateway_metric(url, "tritone_gateway_streams_failed_total") == 1
