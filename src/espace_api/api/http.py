"""Request/response plumbing shared by FHIR routes: body limits, formats, Prefer."""

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlencode

import orjson
from fastapi import Request
from fastapi.responses import Response

from espace_api.auth.identity import Identity
from espace_api.config import Settings
from espace_api.db.engine import autocommit_connection
from espace_api.fhir import formats
from espace_api.fhir.errors import FhirError, operation_outcome
from espace_api.fhir.validation import parse_json
from espace_api.resources.results import Result
from espace_api.resources.service import Context
from espace_api.storage import audit_repository

FHIR_JSON = "application/fhir+json; charset=utf-8"
JSON_TYPES = ("application/fhir+json", "application/json", "application/json+fhir")


def settings_of(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def check_accept(request: Request) -> formats.Format:
    """The response format (`_format`, then Accept): JSON or XML; 406 otherwise."""
    return formats.negotiate(request.query_params.get("_format"), request.headers.get("accept"))


async def read_body(request: Request, *, json_only: bool = True) -> bytes:
    """The request body, refusing wrong content types (415) and oversize bodies (413)."""
    limit = settings_of(request).max_body_bytes
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if json_only and ctype not in JSON_TYPES:
        raise FhirError(
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            f"Content-Type '{ctype or 'none'}' is not supported; use application/fhir+json",
            issue_type="not-supported",
        )
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def operation_parameters(request: Request) -> dict[str, dict[str, Any]]:
    """name -> parameter of an operation's optional Parameters body (empty without a body)."""
    if request.headers.get("content-length") in (None, "0"):
        return {}
    body = parse_json(await read_body(request))
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        return {}
    return {
        p["name"]: p
        for p in body.get("parameter") or []
        if isinstance(p, dict) and isinstance(p.get("name"), str)
    }


def _too_large(limit: int) -> FhirError:
    return FhirError(413, "BODY_TOO_LARGE", f"Body exceeds {limit} bytes", issue_type="too-costly")


async def read_resource(request: Request) -> Any:
    """Parse a JSON resource body."""
    return parse_json(await read_body(request))


def prefer(request: Request, key: str) -> str | None:
    """A value of the Prefer header, e.g. prefer(request, 'return')."""
    for part in request.headers.get("prefer", "").split(";"):
        for item in part.split(","):
            name, _, value = item.strip().partition("=")
            if name.strip().lower() == key:
                return value.strip().strip('"').lower()
    return None


# Query parameters that shape a response rather than select resources.
RESPONSE_PARAMS = frozenset({"_format", "_pretty"})


def create_criteria(request: Request) -> str | None:
    """A conditional create's criteria: If-None-Exist, or the POST's query string (fhirpy's
    `get_or_create()` and `create(**criteria)` send them so). Parsed strictly, like
    If-None-Exist: an unknown parameter is a 400, never a silent match-all."""
    header = request.headers.get("if-none-exist")
    if header:
        return header
    items = [(k, v) for k, v in request.query_params.multi_items() if k not in RESPONSE_PARAMS]
    return urlencode(items) if items else None


WRITE_METHODS = ("POST", "PUT", "PATCH")


def strict_handling(request: Request) -> bool:
    """`Prefer: handling=strict` (unknown search parameters are refused, not ignored)."""
    return prefer(request, "handling") == "strict"


def _written_outcome(result: Result) -> bytes:
    action = "Created" if result.status == 201 else "Updated"
    message = f"{action} {result.resource_type}/{result.id} version {result.version_id}"
    return orjson.dumps(operation_outcome("informational", message, severity="information"))


def not_modified(request: Request, result: Result) -> bool:
    """Conditional read: If-None-Match (ETag) or else If-Modified-Since says unchanged."""
    if request.method not in ("GET", "HEAD") or result.status != 200:
        return False
    if_none_match = request.headers.get("if-none-match")
    if if_none_match and result.version_id is not None:
        tags = {t.strip().removeprefix("W/").strip('"') for t in if_none_match.split(",")}
        return "*" in tags or str(result.version_id) in tags
    since = request.headers.get("if-modified-since")
    if since and result.last_updated is not None:
        try:
            limit = parsedate_to_datetime(since)
        except (TypeError, ValueError, IndexError):
            return False
        if limit.tzinfo is None:
            return False
        return result.last_updated.replace(microsecond=0) <= limit
    return False


def to_response(result: Result, request: Request | None = None) -> Response:
    """Render a service Result: Prefer return=minimal|representation|OperationOutcome on
    writes, conditional read (304), response format (JSON/XML) and `_pretty`."""
    body = result.json
    if request is None:
        fmt: formats.Format = "json"
        pretty = False
    else:
        fmt = check_accept(request)
        pretty = formats.is_pretty(request.query_params.get("_pretty"))
        if not_modified(request, result):
            keep = ("ETag", "Last-Modified", "Content-Location")
            headers = {k: v for k, v in result.headers.items() if k in keep}
            return Response(None, 304, headers=headers)
        if (
            request.method in WRITE_METHODS
            and result.status in (200, 201)
            and result.id is not None
        ):
            returned = prefer(request, "return")
            if returned == "minimal":
                body = None
            elif returned == "operationoutcome":
                body = _written_outcome(result)
    if body:
        body = formats.render(body, fmt, pretty)
    return Response(
        body or None,
        result.status,
        headers=result.headers,
        media_type=formats.MEDIA_TYPES[fmt] if body else None,
    )


@asynccontextmanager
async def context(
    request: Request, identity: Identity, *, autocommit: bool = False
) -> AsyncIterator[Context]:
    """A service Context inside one database transaction (committed on success); with
    `autocommit`, each statement commits by itself (a read and its audit row: two round
    trips instead of four). In autocommit the audit rows wait until the connection is back
    in the pool, then are group-committed (storage/audit_writer.py): a request waiting for
    its audit row to be durable holds no connection, and the row is durable before the
    response leaves (also when the call failed after recording)."""
    app = request.app
    if autocommit:
        deferred: list[dict[str, Any]] = []
        try:
            queue = {audit_repository.DEFERRED: deferred}
            async with autocommit_connection(app.state.engine, **queue) as conn:
                yield Context(
                    conn, identity, app.state.settings, app.state.clock, app.state.behaviours
                )
        finally:
            await audit_repository.write_deferred(app.state.engine, deferred)
        return
    async with app.state.engine.begin() as conn:
        yield Context(conn, identity, app.state.settings, app.state.clock, app.state.behaviours)


async def run(
    request: Request,
    identity: Identity,
    call: Callable[[Context], Awaitable[Result]],
    *,
    autocommit: bool = False,
) -> Response:
    """Run one service call in its own transaction (or in autocommit: a read whose only
    write is its audit row) and render the result."""
    check_accept(request)
    async with context(request, identity, autocommit=autocommit) as ctx:
        result = await call(ctx)
    return to_response(result, request)
