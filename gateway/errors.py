"""One error type for the gateway, rendered in OpenAI's envelope, and the mapping from Triton.

    {"error": {"message": "...", "type": "invalid_request_error", "param": "duration", "code": "invalid_value"}}
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from client.errors import ClientError, GenerationError, ServerUnavailableError

RETRY_AFTER_S = "2"


class APIError(Exception):
    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def triton_unavailable(detail: str = "") -> APIError:
    message = "Triton is not reachable" + (f": {detail}" if detail else "")
    return APIError(503, message, type="server_error", code="triton_unavailable", headers={"Retry-After": RETRY_AFTER_S})


def from_client_error(error: ClientError) -> APIError:
    """Map what the Triton pipeline said to an HTTP status, keeping its message."""
    if isinstance(error, ServerUnavailableError):
        return triton_unavailable(str(error))
    if isinstance(error, GenerationError):
        if error.status == "INVALID_ARGUMENT":
            param = error.message.split(":", 1)[0] if ":" in error.message else None
            return APIError(422, error.message, param=param, code="invalid_value")
        if error.status == "UNAVAILABLE":  # every decode slot busy and the queue full
            return APIError(429, error.message, type="rate_limit_error", code="server_at_capacity",
                            headers={"Retry-After": RETRY_AFTER_S})
        if error.status in ("DEADLINE_EXCEEDED", "CANCELLED"):
            return APIError(504, error.message, type="server_error", code="generation_timeout")
    return APIError(502, f"generation failed: {error}", type="server_error", code="upstream_error")


def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0]
    location = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path")]
    param = ".".join(location) or None
    message = f"{param}: {first['msg']}" if param else first["msg"]
    return APIError(422, message, param=param, code="invalid_value").response()


def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
    return APIError(exc.status_code, str(exc.detail), type=kind, headers=getattr(exc, "headers", None)).response()


def install(app: FastAPI) -> None:
    app.add_exception_handler(APIError, lambda request, exc: exc.response())
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
