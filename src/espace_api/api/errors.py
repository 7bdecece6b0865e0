"""Exception handlers: every error leaves as an OperationOutcome, never a stack trace."""

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from sqlalchemy.exc import DBAPIError, IntegrityError
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from espace_api.audit.refusals import record_refusal
from espace_api.db.availability import unavailable
from espace_api.fhir.errors import FhirError, operation_outcome
from espace_api.metrics.counters import DEPOSITS

log = logging.getLogger("espace_api.errors")
FHIR_JSON = "application/fhir+json; charset=utf-8"

HTTP_CODES = {
    404: ("not-found", "NOT_FOUND"),
    405: ("not-supported", "METHOD_NOT_ALLOWED"),
    406: ("not-supported", "NOT_ACCEPTABLE"),
    413: ("too-costly", "BODY_TOO_LARGE"),
    415: ("not-supported", "UNSUPPORTED_MEDIA_TYPE"),
}


def outcome_response(
    status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> Response:
    """An OperationOutcome response."""
    return Response(orjson.dumps(body), status, headers=headers, media_type=FHIR_JSON)


async def refusal_response(request: Request, exc: FhirError) -> Response:
    """A FhirError's OperationOutcome, the refusal audited (audit/refusals.py) and counted
    when it refuses a deposit."""
    if _is_deposit(request, exc):
        DEPOSITS.labels("refused", exc.code).inc()
    await record_refusal(request, exc)
    return outcome_response(exc.status, exc.outcome(), exc.headers)


def _is_deposit(request: Request, exc: FhirError) -> bool:
    """A refused DocumentReference or Binary create (plain POST or a Bundle entry)."""
    method, path = request.method, request.url.path
    if exc.entry_target is not None:
        method, path = exc.entry_target
    return method == "POST" and path.strip("/").split("/")[0] in ("DocumentReference", "Binary")


async def _fhir_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, FhirError)
    return await refusal_response(request, exc)


async def _http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    issue_type, code = HTTP_CODES.get(exc.status_code, ("processing", f"HTTP_{exc.status_code}"))
    message = exc.detail if isinstance(exc.detail, str) else "Request refused"
    if exc.status_code == 404 and message == "Not Found":
        message = "Unknown resource type or path"
    return outcome_response(
        exc.status_code, operation_outcome(issue_type, message, code), dict(exc.headers or {})
    )


async def _validation_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    where = ".".join(str(p) for p in first.get("loc", ()))
    return outcome_response(
        400, operation_outcome("invalid", f"{where}: {first.get('msg')}", "BAD_REQUEST")
    )


async def _integrity_error(_: Request, exc: Exception) -> Response:
    log.warning("integrity conflict: %s", type(exc).__name__)
    return outcome_response(
        409,
        operation_outcome("conflict", "Concurrent change conflicts with this request", "CONFLICT"),
    )


# Text Postgres refuses (a NUL character in a parameter or in JSON): the client's data.
UNSTORABLE_TEXT = ("22021", "22P05")


async def _db_error(_: Request, exc: Exception) -> Response:
    # Serialization failures and deadlocks are retryable conflicts; text Postgres cannot
    # store is the client's; an unreachable database is a 503; anything else is a 500.
    if _sqlstate(exc) in ("40001", "40P01"):
        return await _integrity_error(_, exc)
    return _failure(exc)


RETRY_AFTER_SECONDS = 2


def _unavailable(exc: BaseException) -> Response:
    """503 `DATABASE_UNAVAILABLE` with Retry-After: the database cannot be reached now
    (restart, failover, network); the client retries (an ITI-65 deposit is idempotent on
    its masterIdentifier)."""
    cause = getattr(exc, "orig", None) or exc.__cause__ or exc
    log.warning(
        "database unavailable: %s (%s, sqlstate %s)",
        type(exc).__name__,
        type(cause).__name__,
        getattr(cause, "sqlstate", None),
    )
    outcome = operation_outcome(
        "transient", "The database cannot be reached for a moment: retry", "DATABASE_UNAVAILABLE"
    )
    return outcome_response(503, outcome, {"Retry-After": str(RETRY_AFTER_SECONDS)})


def _failure(exc: BaseException) -> Response:
    """The answer to a database error or an exception no handler took: 400 for text Postgres
    cannot store, 503 when the database is unreachable, else a 500 (logged by type, place
    and SQLSTATE only). The fast path (api/fast_path.py) and raw asyncpg queries are
    outside the exception handlers: a NUL in a search value or an id reaches Postgres there."""
    if _sqlstate(exc) in UNSTORABLE_TEXT:
        return _unstorable()
    if unavailable(exc):
        return _unavailable(exc)
    _log_unexpected(exc)
    return _internal()


def _sqlstate(exc: BaseException) -> str | None:
    """Postgres' SQLSTATE of a SQLAlchemy error (its `orig`) or of a raw asyncpg one."""
    state = getattr(exc, "sqlstate", None) or getattr(getattr(exc, "orig", None), "sqlstate", None)
    return state if isinstance(state, str) else None


def _unstorable() -> Response:
    message = "The request contains characters that cannot be stored (NUL)"
    return outcome_response(400, operation_outcome("invalid", message, "BAD_REQUEST"))


def _internal() -> Response:
    return outcome_response(
        500, operation_outcome("exception", "Internal server error", "INTERNAL_ERROR")
    )


def _log_unexpected(exc: BaseException) -> None:
    # Log the type and where it happened only: messages may carry health data.
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}" if tb else "?"
    log.error("unhandled %s at %s (sqlstate %s)", type(exc).__name__, where, _sqlstate(exc))


# The handlers of the errors a service call raises, most specific first (IntegrityError is
# a DBAPIError): registered on the application by `install`, applied by `handled`.
Handler = Callable[[Request, Exception], Awaitable[Response]]
_SERVICE_HANDLERS: tuple[tuple[type[Exception], Handler], ...] = (
    (FhirError, _fhir_error),
    (IntegrityError, _integrity_error),
    (DBAPIError, _db_error),
)


async def handled(request: Request, exc: Exception) -> Response | None:
    """The answer the application's exception handlers give to `exc`, for code outside
    FastAPI's routing (api/fast_path.py); None for what only the 500 guard takes."""
    for kind, handler in _SERVICE_HANDLERS:
        if isinstance(exc, kind):
            return await handler(request, exc)
    return None


async def _unexpected(_: Request, exc: Exception) -> Response:
    return _failure(exc)


class CatchAll:
    """Pure ASGI middleware: an unexpected exception becomes a 500 OperationOutcome (503
    when it says the database is unreachable: raw driver errors and failed connects are
    not DBAPIErrors).

    Starlette's handler for `Exception` answers and then re-raises to the server, whose
    error log prints the traceback with the exception message (possibly health data).
    This middleware answers and stops there.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception as exc:
            response = _failure(exc)
            if not started:
                await response(scope, receive, send)


def install(app: FastAPI) -> None:
    """Register the handlers on the application."""
    for kind, handler in _SERVICE_HANDLERS:
        app.add_exception_handler(kind, handler)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)  # errors raised in outer middleware
    app.add_middleware(CatchAll)
