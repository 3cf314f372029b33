"""Who may call what, on the real app with no Triton (its addresses are closed, so a request that gets past the keys
and reaches Triton is a 503 `triton_unavailable`): every route × (no key, wrong key, generation key, admin key), the
OpenAPI document against the same table, trusted proxies, and the anonymous stream limits."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

import tritone.gateway.__main__ as gateway_main
from tritone.gateway.auth import served_routes
from tritone.gateway.errors import APIError
from tritone.gateway.main import create_app
from tritone.gateway.settings import Settings

GENERATION_KEY, ADMIN_KEY = "k-generate", "k-admin"
CALLERS = {"no key": None, "wrong key": "k-nope", "generation key": GENERATION_KEY, "admin key": ADMIN_KEY}
CLOSED = "127.0.0.1:9"  # nothing listens on the discard port
MUSIC = {"prompt": "drums", "duration": 1}


def settings_for(tmp_path, **fields) -> Settings:
    return Settings(triton_grpc_url=CLOSED, triton_http_url=f"http://{CLOSED}",
                    triton_metrics_url=f"http://{CLOSED}/metrics", triton_timeout_s=2.0, data_dir=tmp_path,
                    job_workers=0, **fields)


def bearer(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


@dataclass(frozen=True)
class Row:
    url: str
    statuses: tuple[int, int, int, int]  # as CALLERS: no key, wrong key, generation key, admin key
    body: dict | None = None


def open_to_all(status: int) -> tuple[int, int, int, int]:
    return status, status, status, status


def any_key(status: int) -> tuple[int, int, int, int]:
    return 401, 401, status, status


def admin_only(status: int) -> tuple[int, int, int, int]:
    return 401, 401, 403, status


# (method, route path) -> what each caller gets. Past the keys: 400 for an empty body, 404 for an unknown id,
# 503 where the route asks Triton.
TABLE = {
    ("GET", "/"): Row("/", open_to_all(200)),
    ("GET", "/static/{name}"): Row("/static/app.js", open_to_all(200)),
    ("GET", "/docs"): Row("/docs", open_to_all(200)),
    ("GET", "/docs/oauth2-redirect"): Row("/docs/oauth2-redirect", open_to_all(200)),
    ("GET", "/docs/assets/{name}"): Row("/docs/assets/swagger-ui.css", open_to_all(200)),
    ("GET", "/redoc"): Row("/redoc", open_to_all(200)),
    ("GET", "/openapi.json"): Row("/openapi.json", open_to_all(200)),
    ("GET", "/healthz"): Row("/healthz", open_to_all(200)),
    ("GET", "/readyz"): Row("/readyz", open_to_all(503)),
    ("POST", "/v1/audio/music"): Row("/v1/audio/music", any_key(400), {}),
    ("POST", "/v1/audio/speech"): Row("/v1/audio/speech", any_key(400), {}),
    ("GET", "/v1/audio/voices"): Row("/v1/audio/voices", any_key(200)),
    ("POST", "/v1/audio/voices"): Row("/v1/audio/voices", any_key(400)),
    ("GET", "/v1/audio/voices/{voice_id}"): Row("/v1/audio/voices/voice_none", any_key(404)),
    ("DELETE", "/v1/audio/voices/{voice_id}"): Row("/v1/audio/voices/voice_none", any_key(404)),
    ("POST", "/v1/jobs"): Row("/v1/jobs", any_key(400), {}),
    ("GET", "/v1/jobs"): Row("/v1/jobs", any_key(200)),
    ("GET", "/v1/jobs/{job_id}"): Row("/v1/jobs/job_none", any_key(404)),
    ("DELETE", "/v1/jobs/{job_id}"): Row("/v1/jobs/job_none", any_key(404)),
    ("POST", "/v1/jobs/{job_id}/cancel"): Row("/v1/jobs/job_none/cancel", any_key(404)),
    ("GET", "/v1/jobs/{job_id}/audio"): Row("/v1/jobs/job_none/audio", any_key(404)),
    ("GET", "/v1/jobs/{job_id}/captions"): Row("/v1/jobs/job_none/captions", any_key(404)),
    ("GET", "/v1/models"): Row("/v1/models", any_key(503)),
    ("GET", "/v1/models/{model_id}"): Row("/v1/models/tts-1", any_key(503)),
    ("GET", "/v1/audio/models"): Row("/v1/audio/models", any_key(200)),
    ("POST", "/v1/models/{name}/load"): Row("/v1/models/musicgen/load", admin_only(503)),
    ("POST", "/v1/models/{name}/unload"): Row("/v1/models/musicgen/unload", admin_only(503)),
    ("GET", "/metrics"): Row("/metrics", admin_only(200)),
    ("GET", "/v1/resources"): Row("/v1/resources", admin_only(200)),
}
REFUSAL_CODES = {"no key": "missing_api_key", "wrong key": "invalid_api_key", "generation key": "admin_key_required"}


def endpoints(app) -> list[tuple[str, str]]:
    """Every (method, path) the app serves; HEAD is GET's automatic twin."""
    return sorted((method, route.path) for route in served_routes(app.routes) for method in route.methods - {"HEAD"})


def keyed_app(data_dir) -> FastAPI:
    return create_app(settings_for(data_dir, api_keys=[GENERATION_KEY], admin_keys=[ADMIN_KEY]))


SERVED = endpoints(keyed_app("never-written"))  # without its lifespan the app touches no file


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    app = keyed_app(tmp_path_factory.mktemp("keyed"))
    with TestClient(app) as client:
        yield client


@pytest.mark.parametrize("endpoint", SERVED, ids=" ".join)
def test_every_route_answers_each_caller_with_its_exact_status(keyed, endpoint):
    assert endpoint in TABLE, f"{endpoint}: a new route needs a row in TABLE (who may call it?)"
    method, _ = endpoint
    row = TABLE[endpoint]
    responses = {caller: keyed.request(method, row.url, headers=bearer(key), json=row.body)
                 for caller, key in CALLERS.items()}
    assert tuple(response.status_code for response in responses.values()) == row.statuses
    for caller, response in responses.items():
        if response.status_code in (401, 403):
            assert response.json()["error"]["code"] == REFUSAL_CODES[caller]
        if response.status_code == 401:
            assert response.headers["WWW-Authenticate"] == "Bearer"
        if response.status_code == 503:
            assert int(response.headers["Retry-After"]) > 0


def test_the_table_has_no_row_for_a_route_that_is_gone():
    assert sorted(TABLE) == SERVED


def documented_refusals(schema: dict, route: APIRoute) -> dict[str, bool]:
    operation = schema["paths"][route.path][next(iter(route.methods)).lower()]
    return {"401": "401" in operation["responses"], "403": "403" in operation["responses"],
            "security": operation.get("security") == [{"bearer": []}]}


def test_openapi_lists_401_and_403_exactly_where_the_table_refuses(keyed):
    schema = keyed.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}
    assert "ErrorBody" in schema["components"]["schemas"]
    for route in served_routes(keyed.app.routes):
        if isinstance(route, APIRoute) and route.include_in_schema:
            statuses = TABLE[(next(iter(route.methods)), route.path)].statuses
            refused = statuses[0] == 401
            assert documented_refusals(schema, route) == {"401": refused, "403": 403 in statuses,
                                                          "security": refused}, route.path


def test_without_keys_openapi_lists_no_401_or_403(tmp_path):
    app = create_app(settings_for(tmp_path))
    schema = app.openapi()
    for route in served_routes(app.routes):
        if isinstance(route, APIRoute) and route.include_in_schema:
            assert documented_refusals(schema, route) == {"401": False, "403": False, "security": False}, route.path


# Other key configurations, on the routes that tell them apart: (settings, method, url, body, caller) -> status, code
CONFIGURATIONS = [
    # generation keys only: admin routes are refused to everyone, generation keys included
    ({"api_keys": [GENERATION_KEY]}, "GET", "/metrics", None, "no key", 401, "missing_api_key"),
    ({"api_keys": [GENERATION_KEY]}, "GET", "/metrics", None, "generation key", 403, "admin_key_required"),
    ({"api_keys": [GENERATION_KEY]}, "POST", "/v1/models/musicgen/unload", None, "generation key", 403,
     "admin_key_required"),
    ({"api_keys": [GENERATION_KEY]}, "POST", "/v1/audio/music", {}, "generation key", 400, "invalid_value"),
    # admin keys only: generation is open, admin routes need the admin key
    ({"admin_keys": [ADMIN_KEY]}, "POST", "/v1/audio/music", {}, "no key", 400, "invalid_value"),
    ({"admin_keys": [ADMIN_KEY]}, "GET", "/v1/resources", None, "no key", 401, "missing_api_key"),
    ({"admin_keys": [ADMIN_KEY]}, "GET", "/v1/resources", None, "wrong key", 401, "invalid_api_key"),
    ({"admin_keys": [ADMIN_KEY]}, "POST", "/v1/models/musicgen/load", None, "admin key", 503, "triton_unavailable"),
    # no keys at all: everything is open (a trusted network; the gateway listens on 127.0.0.1 by default)
    ({}, "POST", "/v1/models/musicgen/unload", None, "no key", 503, "triton_unavailable"),
    ({}, "POST", "/v1/audio/music", {}, "no key", 400, "invalid_value"),
]


@pytest.mark.parametrize("fields, method, url, body, caller, status, code", CONFIGURATIONS)
def test_each_key_configuration_guards_the_routes_as_documented(tmp_path, fields, method, url, body, caller, status,
                                                                code):
    with TestClient(create_app(settings_for(tmp_path, **fields))) as client:
        response = client.request(method, url, headers=bearer(CALLERS[caller]), json=body)
    assert (response.status_code, response.json()["error"]["code"]) == (status, code)


@pytest.mark.parametrize("header", ["Basic k-generate", "Bearer", "k-generate", "Bearer   "])
def test_anything_but_a_bearer_key_is_a_missing_key(keyed, header):
    response = keyed.get("/v1/jobs", headers={"Authorization": header})
    assert (response.status_code, response.json()["error"]["code"]) == (401, "missing_api_key")


@pytest.mark.parametrize("header", ["Bearer k-generate", "bearer k-generate", "Bearer  k-generate "])
def test_a_bearer_key_is_read_case_insensitively_and_trimmed(keyed, header):
    assert keyed.get("/v1/jobs", headers={"Authorization": header}).status_code == 200


# --- anonymous clients: trusted proxies, per-client and global stream limits ----------------------------------------

PROXY = "10.0.0.1"


def behind_peers(app):
    """`app` behind a stand-in for the TCP layer: each request's peer address is the one its X-Test-Peer names."""
    async def asgi(scope, receive, send):
        peer = dict(scope.get("headers", ())).get(b"x-test-peer")
        await app({**scope, "client": (peer.decode(), 40000)} if peer else scope, receive, send)

    return asgi


@pytest.fixture(scope="module")
def anonymous(tmp_path_factory):
    """An app without keys (1 stream per client, 3 in all, X-Forwarded-For trusted from PROXY only) and a client."""
    app = create_app(settings_for(tmp_path_factory.mktemp("anonymous"), max_streams_per_key=1,
                                  max_anonymous_streams=3, forwarded_allow_ips=[PROXY]))
    with TestClient(behind_peers(app)) as client:
        yield app, client


def from_peer(anonymous, peer: str, forwarded_for: str | None = None):
    """POST a valid music request as the TCP peer `peer`, optionally naming a client in X-Forwarded-For."""
    headers = {"X-Test-Peer": peer, **({"X-Forwarded-For": forwarded_for} if forwarded_for else {})}
    return anonymous[1].post("/v1/audio/music", json=MUSIC, headers=headers)


@pytest.fixture
def holding(anonymous):
    """hold(client): that client has a stream open, until the test ends."""
    held: list[str] = []

    def hold(client: str) -> None:
        asyncio.run(anonymous[0].state.limiter.acquire(client))
        held.append(client)

    yield hold
    for client in held:
        anonymous[0].state.limiter.release(client)


def status_and_code(response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


def test_a_forged_forwarded_for_from_an_untrusted_peer_does_not_change_the_client(anonymous, holding):
    holding("203.0.113.7")
    assert status_and_code(from_peer(anonymous, "203.0.113.7", "198.51.100.99")) == (429, "too_many_streams")
    assert status_and_code(from_peer(anonymous, "203.0.113.8", "203.0.113.7")) == (503, "triton_unavailable")


def test_a_trusted_proxy_names_the_client(anonymous, holding):
    holding("198.51.100.1")
    refused = from_peer(anonymous, PROXY, "198.51.100.1")
    assert status_and_code(refused) == (429, "too_many_streams") and refused.headers["Retry-After"] == "1"
    assert status_and_code(from_peer(anonymous, PROXY, "198.51.100.2")) == (503, "triton_unavailable")
    assert status_and_code(from_peer(anonymous, PROXY, "203.0.113.9, 198.51.100.1")) == (429, "too_many_streams")


def test_an_ipv6_client_is_one_client_across_its_64(anonymous, holding):
    holding("2001:db8:0:1::/64")
    assert status_and_code(from_peer(anonymous, "2001:db8:0:1::abcd")) == (429, "too_many_streams")
    assert status_and_code(from_peer(anonymous, "2001:db8:0:2::abcd")) == (503, "triton_unavailable")


def test_the_global_anonymous_cap_refuses_every_address_once_reached(anonymous, holding):
    for client in ("192.0.2.1", "192.0.2.2", "192.0.2.3"):
        holding(client)
    for peer, forwarded_for in (("192.0.2.4", None), ("2001:db8::1", None), (PROXY, "192.0.2.5")):
        refused = from_peer(anonymous, peer, forwarded_for)
        assert status_and_code(refused) == (429, "too_many_anonymous_streams")
        assert refused.headers["Retry-After"] == "2"


def test_with_api_keys_there_is_no_global_cap_only_the_per_key_limit(tmp_path):
    app = create_app(settings_for(tmp_path, api_keys=["a", "b"], max_streams_per_key=2, max_anonymous_streams=1))
    limiter = app.state.limiter
    for key in ("a", "a", "b", "b"):
        asyncio.run(limiter.acquire(key))
    with pytest.raises(APIError) as refused:
        asyncio.run(limiter.acquire("a"))
    assert (refused.value.status, refused.value.code) == (429, "too_many_streams")
    limiter.release("a")
    asyncio.run(limiter.acquire("a"))


def test_uvicorn_is_not_left_to_trust_forwarded_headers_on_its_own(monkeypatch):
    calls = []
    monkeypatch.setattr(gateway_main.uvicorn, "run", lambda app, **options: calls.append(options))
    gateway_main.main(["--port", "8123"])
    assert calls[0]["proxy_headers"] is False and calls[0]["port"] == 8123

