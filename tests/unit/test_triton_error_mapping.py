"""What Triton says -> the gateway's HTTP status: not ready is a 503 with Retry-After, never a 502."""

from __future__ import annotations

import pytest

from tritone.client.errors import GenerationError, ServerUnavailableError
from tritone.gateway.errors import StreamStalled, from_client_error


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (GenerationError(None, "Request for unknown model: 'musicgen' has no available versions"), 503,
         "model_unavailable"),
        (GenerationError(None, "Server is stopping, scheduler for model has stopped accepting new inference requests"),
         503, "triton_stopping"),
        (GenerationError("UNAVAILABLE", "Server is stopping, scheduler for model has stopped accepting new inference "
                                        "requests"), 503, "triton_stopping"),
        (GenerationError("INTERNAL", "INTERNAL: orpheus is shutting down (unloaded, or the server is stopping)"), 503,
         "triton_stopping"),
        (GenerationError("INTERNAL", "INTERNAL: snac_decoder: Model snac_decoder - Error when running inference: "
                                     "Server not ready"), 503, "triton_stopping"),
        (GenerationError(None, "Stub process 'musicgen_0_0' is not healthy."), 503, "model_unhealthy"),
        (StreamStalled("musicgen", 15), 503, "model_unhealthy"),
        (ServerUnavailableError("127.0.0.1:8001"), 503, "triton_unavailable"),
        (GenerationError("UNAVAILABLE", "every decode slot is busy and the queue is full"), 429, "server_at_capacity"),
        (GenerationError(None, "something unexpected"), 502, "upstream_error"),
    ],
)
def test_triton_errors_map_to_http(error, status, code):
    api_error = from_client_error(error)
    assert (api_error.status, api_error.code) == (status, code)
    assert api_error.headers.get("Retry-After") == ("2" if status in (503, 429) else None)


def test_a_stall_says_what_happened():
    assert str(StreamStalled("musicgen", 15)) == \
        "musicgen sent no audio for 15 s: the stream was cancelled and musicgen is reloaded"
