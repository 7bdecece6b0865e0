"""Structured logs: one JSON object per line, with the request id (api/access_log.py).

Messages are the code's own texts (route templates, error types, counts); nothing of a
request's content is formatted into them (see docs/core.md and tests/test_core_logging.py).
"""

import logging
from datetime import UTC, datetime

import orjson

from espace_api.api.access_log import REQUEST_ID


class JsonFormatter(logging.Formatter):
    """`{"ts", "level", "logger", "message", "request_id"}` per record."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = REQUEST_ID.get()
        if rid is not None:
            out["request_id"] = rid
        return orjson.dumps(out).decode()


def configure(level: str, fmt: str) -> None:
    """Root logging: JSON lines (`fmt="json"`) or plain text."""
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)
