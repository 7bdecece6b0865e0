"""Request/response plumbing shared by FHIR routes: body limits, formats, Prefer."""

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from espace_api.auth.identity import Identity
from espace_api.config import Settings
from espace_api.fhir.errors import FhirError
from espace_api.fhir.validation import parse_json
from espace_api.resources.results import Result
from espace_api.resources.service import Context

FHIR_JSON = "application/fhir+json; charset=utf-8"
JSON_TYPES = ("application/fhir+json", "application/json", "application/json+fhir")


def settings_of(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def check_accept(request: Request) -> None:
    """406 unless the client accepts JSON (XML comes with a later issue)."""
    fmt = request.query_params.get("_format")
    if fmt and fmt not in ("json", *JSON_TYPES):
        raise FhirError(
            406, "NOT_ACCEPTABLE", f"_format '{fmt}' is not supported", issue_type="not-supported"
        )
    accept = request.headers.get("accept", "")
    if not accept or fmt:
        return
    types = [part.split(";")[0].strip().lower() for part in accept.split(",")]
    if not any(t in ("*/*", "application/*", *JSON_TYPES) for t in types):
        raise FhirError(
            406,
            "NOT_ACCEPTABLE",
            f"Cannot produce {accept}; use application/fhir+json",
            issue_type="not-supported",
        )


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


def to_response(result: Result, request: Request | None = None) -> Response:
    """Render a service Result; honours Prefer: return=minimal."""
    body = result.json
    if (
        request is not None
        and result.status in (200, 201)
        and prefer(request, "return") == "minimal"
    ):
        body = None
    if isinstance(body, str):
        body = body.encode()
    return Response(
        body, result.status, headers=result.headers, media_type=FHIR_JSON if body else None
    )


@asynccontextmanager
async def context(request: Request, identity: Identity) -> AsyncIterator[Context]:
    """A service Context inside one database transaction (committed on success)."""
    app = request.app
    async with app.state.engine.begin() as conn:
        yield Context(conn, identity, app.state.settings, app.state.clock)


async def run(
    request: Request, identity: Identity, call: Callable[[Context], Awaitable[Result]]
) -> Response:
    """Run one service call in its own transaction and render the result."""
    check_accept(request)
    async with context(request, identity) as ctx:
        result = await call(ctx)
    return to_response(result, request)
