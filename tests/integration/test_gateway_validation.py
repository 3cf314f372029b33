"""Triton's own refusals through the gateway name the API's field, not Triton's tensor: a prompt or an input
that fits the character limit but not the text encoder's token limit (a real tritonserver, tiny-random)."""

from __future__ import annotations

import httpx
import pytest

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(("path", "body", "param"), [
    ("/v1/audio/music", {"prompt": "a" * 2000, "duration": 1}, "prompt"),
    ("/v1/audio/speech", {"input": "\U0001F600" * 4096, "response_format": "pcm"}, "input"),
], ids=["music-prompt", "speech-input"])
def test_a_text_over_the_token_limit_is_named_by_its_api_field(gateway_url, path, body, param):
    reply = httpx.post(f"{gateway_url}{path}", json=body, timeout=120)
    error = reply.json()["error"]
    assert (reply.status_code, error["param"], error["code"]) == (400, param, "invalid_value")
    assert error["message"].startswith(f"{param}: is ") and " tokens long; the limit is " in error["message"]
