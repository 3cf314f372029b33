"""Every response carries X-Request-Id: the client's when it sent a usable one, else a new one."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from tritone.gateway.main import create_app
from tests.unit.test_auth_routes import settings_for


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with TestClient(create_app(settings_for(tmp_path_factory.mktemp("ids"), voice_max_bytes=1000))) as client:
        yield client


def test_the_clients_request_id_is_echoed(client):
    reply = client.get("/healthz", headers={"X-Request-Id": "trace-42/abc"})
    assert reply.headers["x-request-id"] == "trace-42/abc"


@pytest.mark.parametrize("sent", [None, "", "a b", "x" * 129, "tab\there"])
def test_a_missing_or_unusable_id_is_replaced_by_a_new_one(client, sent):
    headers = {} if sent is None else {"X-Request-Id": sent}
    first, second = (client.get("/healthz", headers=headers).headers["x-request-id"] for _ in range(2))
    assert re.fullmatch(r"req_[0-9a-f]{32}", first) and first != second


def test_refusals_carry_it_too(client):
    assert client.get("/v1/nothing", headers={"X-Request-Id": "r1"}).headers["x-request-id"] == "r1"  # 404
    reply = client.post("/v1/audio/voices", headers={"X-Request-Id": "r2"}, content=b"x" * 200_000)
    assert (reply.status_code, reply.headers["x-request-id"]) == (413, "r2")  # the upload guard's own answer
    reply = client.post("/v1/audio/music", headers={"X-Request-Id": "r3"}, json={"prompt": ""})
    assert (reply.status_code, reply.headers["x-request-id"]) == (400, "r3")
    assert len(reply.headers.get_list("x-request-id")) == 1
