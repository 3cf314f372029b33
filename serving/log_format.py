"""One log format for every tritone process: readable text by default, one JSON object per line with
`TRITONE_LOG_FORMAT=json`. Each record carries the request id it concerns (`request_id`, "-" when none):
the gateway's X-Request-Id, which it also sends to Triton as the gRPC request's id, where the engine logs it.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import datetime, timezone

FORMATS = ("text", "json")
ENV = "TRITONE_LOG_FORMAT"
TEXT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "request_id"}


class JsonFormatter(logging.Formatter):
    """time, level, logger, request_id, message, the `extra` fields, and the exception if any."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        entry.update({key: value for key, value in vars(record).items() if key not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class RequestIdDefault(logging.Filter):
    """Records without a request id get "-" (or what `current` says: the gateway's request in flight)."""

    def __init__(self, current=None):
        super().__init__()
        self.current = current

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = self.current() if self.current else "-"
        return True


def log_format() -> str:
    fmt = os.environ.get(ENV, "text").strip().lower() or "text"
    if fmt not in FORMATS:
        raise ValueError(f"{ENV} must be one of {FORMATS}, got {fmt!r}")
    return fmt


def configure(logger: str, fmt: str | None = None, level: int = logging.INFO, current=None,
              stream=None) -> logging.Handler:
    """Send `logger`'s records (and its children's) to stderr in `fmt` (default: from the environment)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if (fmt or log_format()) == "json" else logging.Formatter(TEXT))
    handler.addFilter(RequestIdDefault(current))
    target = logging.getLogger(logger)
    for old in [h for h in target.handlers if getattr(h, "tritone", False)]:
        target.removeHandler(old)
    handler.tritone = True
    target.addHandler(handler)
    target.setLevel(level)
    target.propagate = False
    return handler
