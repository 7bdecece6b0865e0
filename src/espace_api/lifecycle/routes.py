"""Lifecycle over HTTP (thin): the person's $activate, $oppose, $close, $reopen on their own
Patient, and the operator's bulk `$enrol` (NDJSON in, NDJSON report out)."""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from espace_api.api.fhir_routes import SECURED
from espace_api.api.http import operation_parameters, run, settings_of
from espace_api.auth.dependency import current_identity
from espace_api.auth.identity import Identity
from espace_api.fhir.errors import FhirError
from espace_api.fhir.values import date_range
from espace_api.lifecycle import enrolment, service

router = APIRouter()
Caller = Annotated[Identity, Depends(current_identity)]
NDJSON = ("application/fhir+ndjson", "application/x-ndjson", "application/ndjson")


def _add(action: str, summary: str) -> None:
    async def transition(id: str, request: Request, identity: Caller) -> Response:
        params = await operation_parameters(request)
        reason = params.get("reason", {}).get("valueString")
        early = params.get("deleteData", {}).get("valueBoolean") is True
        return await run(
            request,
            identity,
            lambda ctx: service.apply(
                ctx,
                id,
                action,
                reason=reason if isinstance(reason, str) else None,
                early_deletion=early,
            ),
        )

    router.add_api_route(
        f"/Patient/{{id}}/${action}",
        transition,
        methods=["POST"],
        tags=["Patient"],
        summary=summary,
        name=f"Patient.{action}",
        operation_id=f"Patient_{action}",
        response_class=Response,
        dependencies=SECURED,
    )


_add("activate", "activate one's space now (before the opposition window ends)")
_add("oppose", "oppose the creation of one's space (what was deposited is deleted)")
_add("close", "close one's space (kept for the retention period; deleteData: early purge)")
_add("reopen", "reopen an opposed or closed space")


@router.post(
    "/Patient/$enrol",
    tags=["Patient"],
    summary="bulk enrolment from NDJSON (operator): a per-line NDJSON report",
    dependencies=SECURED,
    response_class=Response,
)
async def enrol(request: Request, identity: Caller) -> Response:
    """Stream the body's Patients into the database, batch by batch."""
    if identity.kind != "operator":
        raise FhirError.forbidden("Enrolment is an operator's act", "ENROLMENT_OPERATOR_ONLY")
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in NDJSON:
        raise FhirError(
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            "Enrolment takes application/fhir+ndjson (one Patient per line)",
            issue_type="not-supported",
        )
    notice = None
    if request.query_params.get("notice-date"):
        try:
            notice = date_range(request.query_params["notice-date"])[0]
        except ValueError:
            raise FhirError.bad_request("Invalid notice-date", "BAD_REQUEST") from None
    app = request.app
    report = enrolment.enrol(
        app.state.engine,
        settings_of(request),
        app.state.clock,
        identity,
        _lines(request),
        notice=notice,
    )
    # The report is gathered before answering: a streamed answer would read the request body
    # while Starlette listens for a disconnect on the same channel (the two race for it).
    lines = [line async for line in report]
    return Response(b"".join(lines), media_type="application/x-ndjson")


async def _lines(request: Request) -> AsyncIterator[bytes]:
    """The body's lines, as they arrive (a line beyond `MAX_LINE` bytes comes as `TOO_LONG`)."""
    pending = b""
    skipping = False
    async for chunk in request.stream():
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if skipping:
                skipping = False
                continue
            yield line if len(line) <= enrolment.MAX_LINE else enrolment.TOO_LONG
        if len(pending) > enrolment.MAX_LINE and not skipping:
            yield enrolment.TOO_LONG
            skipping, pending = True, b""
        elif skipping:
            pending = b""
    if pending and not skipping:
        yield pending if len(pending) <= enrolment.MAX_LINE else enrolment.TOO_LONG
