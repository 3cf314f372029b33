"""One error type for the gateway, rendered in OpenAI's envelope, and the mapping from Triton.

    {"error": {"message": "...", "type": "invalid_request_error", "param": "duration", "code": "invalid_value"}}
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tritone.client.errors import ClientError, GenerationError, ServerUnavailableError
from tritone.gateway.schemas import JOB_TYPES, TRITON_FIELDS

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


def unavailable(message: str, code: str) -> APIError:
    """503 with Retry-After: not ready now (Triton unreachable or stopping, a model unloaded or unhealthy)."""
    return APIError(503, message, type="server_error", code=code, headers={"Retry-After": RETRY_AFTER_S})


def triton_unavailable(detail: str = "") -> APIError:
    return unavailable("Triton is not reachable" + (f": {detail}" if detail else ""), "triton_unavailable")


class StreamStalled(ClientError):
    """A stream sent nothing for `seconds` after its audio began: its model's python stub died or hangs."""

    def __init__(self, model: str, seconds: float):
        self.model, self.seconds = model, seconds
        super().__init__(f"{model} sent no audio for {seconds:g} s: the stream was cancelled and {model} is reloaded")


# Triton's words for a model that cannot serve now, and the code a 503 carries for them
NOT_SERVING = (
    ("is not healthy", "model_unhealthy"),  # "Stub process 'musicgen_0_0' is not healthy.": the stub died
    ("Request for unknown model", "model_unavailable"),  # unloaded or unloading: "... has no available versions"
    ("Server is stopping", "triton_stopping"),  # draining before exit
    ("is shutting down (unloaded, or the server is stopping)", "triton_stopping"),  # the engine stopped under it
    ("Server not ready", "triton_stopping"),  # a pipeline's call to its codec while Triton stops
)


def from_client_error(error: ClientError) -> APIError:
    """Map what the Triton pipeline said to an HTTP status, keeping its message."""
    if isinstance(error, ServerUnavailableError):
        return triton_unavailable(str(error))
    if isinstance(error, StreamStalled):
        return unavailable(str(error), "model_unhealthy")
    if isinstance(error, GenerationError):
        for words, code in NOT_SERVING:
            if words in error.message:
                return unavailable(error.message, code)
        if error.status == "INVALID_ARGUMENT":
            param = error.message.split(":", 1)[0] if ":" in error.message else None
            return APIError(400, error.message, param=param, code="invalid_value")
        if error.status == "UNAVAILABLE":  # every decode slot busy and the queue full
            return APIError(429, error.message, type="rate_limit_error", code="server_at_capacity",
                            headers={"Retry-After": RETRY_AFTER_S})
        if error.status in ("DEADLINE_EXCEEDED", "CANCELLED"):
            return APIError(504, error.message, type="server_error", code="generation_timeout")
    return APIError(502, f"generation failed: {error}", type="server_error", code="upstream_error")


def with_api_fields(error: APIError, fields: dict[str, str]) -> APIError:
    """`error` naming the API field a Triton tensor was filled from (param and message prefix), e.g. text -> prompt."""
    field = fields.get(error.param or "")
    if field is None:
        return error
    message = field + error.message.removeprefix(error.param) if error.message.startswith(f"{error.param}:") \
        else error.message
    return APIError(error.status, message, type=error.type, param=field, code=error.code, headers=error.headers)


def _api_error(request: Request, exc: APIError) -> JSONResponse:
    route = getattr(request.scope.get("route"), "path", "")
    return with_api_fields(exc, TRITON_FIELDS.get(route, {})).response()


# pydantic's wording where it misleads or says too little, by error type
_RULES = {"finite_number": lambda error: f"must be a finite number, got {error['input']!r}",
          "value_error": lambda error: str(error["ctx"]["error"])}  # our validators' words, without pydantic's prefix


def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0]
    if first["type"] == "json_invalid":
        return _bad_body(f"invalid JSON at position {first['loc'][-1]}: {first['ctx']['error']}")
    location = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path")]
    if first.get("loc", ())[:1] == ("body",) and location[:1] and location[0] in JOB_TYPES:
        location = location[1:]  # the job body's variant (its `type`), not a field
    param = ".".join(location) or None
    rule = _RULES[first["type"]](first) if first["type"] in _RULES else first["msg"]
    return APIError(400, f"{param or 'body'}: {rule}", param=param, code="invalid_value").response()


def _bad_body(problem: str) -> JSONResponse:
    """400 for a body that is not JSON at all; `param` is null: no field of it could be read."""
    return APIError(400, f"body: {problem}", code="invalid_json").response()


_UNPARSABLE_BODY = "There was an error parsing the body"  # FastAPI's 400, raised from the parser's exception


def _unparsable(cause: BaseException) -> str:
    """Why FastAPI could not parse the body."""
    if isinstance(cause, UnicodeDecodeError):
        return f"is not UTF-8 text (byte 0x{cause.object[cause.start]:02x} at position {cause.start})"
    if isinstance(cause, RecursionError):
        return "the JSON is nested too deeply"
    return f"cannot be parsed ({type(cause).__name__}: {cause})"


def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    if exc.status_code == 400 and exc.detail == _UNPARSABLE_BODY and exc.__cause__ is not None:
        return _bad_body(_unparsable(exc.__cause__))
    kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
    return APIError(exc.status_code, str(exc.detail), type=kind, headers=getattr(exc, "headers", None)).response()


def _database_unavailable(request: Request, exc) -> JSONResponse:
    return exc.api_error().response()  # 503 database_unavailable, Retry-After


def install(app: FastAPI) -> None:
    from tritone.gateway.database import DatabaseUnavailable  # it imports this module

    app.add_exception_handler(APIError, _api_error)
    app.add_exception_handler(DatabaseUnavailable, _database_unavailable)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
