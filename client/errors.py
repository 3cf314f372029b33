"""Typed errors raised by the musicgen client."""

from __future__ import annotations

import re

import grpc
from tritonclient.utils import InferenceServerException

_REQUEST_ID_PREFIX = re.compile(r"^\[request id: [^\]]*\]\s*")
_STATUS_NAMES = frozenset(code.name for code in grpc.StatusCode)


class ClientError(Exception):
    """Base class of every error this package raises."""


class ServerUnavailableError(ClientError):
    """The Triton gRPC endpoint could not be reached."""

    def __init__(self, url: str, detail: str = ""):
        self.url = url
        self.detail = detail
        super().__init__(f"cannot reach Triton at {url}: is `make serve` running?")


class GenerationError(ClientError):
    """The server rejected or failed the request; `status` is a gRPC status name or None."""

    def __init__(self, status: str | None, message: str):
        self.status = status
        self.message = message
        super().__init__(f"{status}: {message}" if status else message)


class StreamContractError(ClientError):
    """The response stream broke the musicgen streaming contract."""


def split_status(text: str) -> tuple[str | None, str]:
    """Split "[request id: x] INVALID_ARGUMENT: msg" into ("INVALID_ARGUMENT", "msg")."""
    text = _REQUEST_ID_PREFIX.sub("", text.strip())
    head, sep, rest = text.partition(":")
    if sep and head.strip() in _STATUS_NAMES:
        return head.strip(), rest.strip()
    return None, text


def error_from_stream(exc: InferenceServerException) -> GenerationError:
    """Convert an InferenceServerException carried by the stream."""
    parsed_status, message = split_status(exc.message() or "")
    status = (exc.status() or "").removeprefix("StatusCode.") or parsed_status
    return GenerationError(status, message)


def error_from_rpc(exc: grpc.aio.AioRpcError, url: str) -> ClientError:
    """Convert a failure of the gRPC call itself."""
    if exc.code() == grpc.StatusCode.UNAVAILABLE:
        return ServerUnavailableError(url, exc.details() or "")
    return GenerationError(exc.code().name, exc.details() or "")
