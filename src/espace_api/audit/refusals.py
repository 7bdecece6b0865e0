"""Refused requests on patient data leave an audit event too (outcome 4, minor failure).

A 401, 403 or 404 on a resource route is recorded in its own transaction (the request's own
transaction rolled back), naming the patient when the path or query names one: the patient
sees who tried and failed. A refused entry of a batch is recorded in the batch's transaction;
a refused entry of a transaction Bundle names its entry's target on the error. Recording
never changes the answer: a failure to record is logged (without health data) and the
refusal goes out as it was.
"""

import logging

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncConnection

from espace_api.audit import recorder
from espace_api.auth.identity import Identity
from espace_api.clock import Clock
from espace_api.fhir.errors import FhirError
from espace_api.fhir.registry import REGISTRY
from espace_api.fhir.values import split_reference
from espace_api.storage import audit_repository

log = logging.getLogger("espace_api.audit")
RECORDED = frozenset({401, 403, 404})
SUBTYPES = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


def target_of(path: str) -> tuple[str | None, str | None]:
    """(type, id) named by a resource path such as /DocumentReference/x/_history/2."""
    parts = [p for p in path.split("?")[0].split("/") if p]
    if not parts or parts[0] not in REGISTRY:
        return None, None
    id_ = parts[1] if len(parts) > 1 and not parts[1].startswith(("_", "$")) else None
    return parts[0], id_


async def record(
    conn: AsyncConnection,
    clock: Clock,
    identity: Identity | None,
    method: str,
    rtype: str,
    id_: str | None,
    named_patient: str | None,
    exc: FhirError,
) -> None:
    """One refusal event for a request on `rtype` (and `id_`), in `conn`'s transaction."""
    patient = None
    if id_ is not None and rtype == "Patient":
        patient = id_
    elif id_ is not None and REGISTRY[rtype].in_patient_compartment:
        patient = await audit_repository.patient_of(conn, rtype, id_)
    elif named_patient:
        split = split_reference(named_patient)
        patient = split[1] if split and split[0] in (None, "Patient") else None
    subtype = ("read" if id_ else "search") if method == "GET" else SUBTYPES.get(method, "read")
    await recorder.record(
        conn,
        clock,
        identity,
        subtype,
        resource_type=rtype,
        resource_id=id_,
        patient_ids=[patient],
        outcome=recorder.REFUSED,
        detail=f"{exc.status} {exc.code}",
    )


async def record_refusal(request: Request, exc: FhirError) -> None:
    """Audit a refused HTTP request on patient data (best effort, own transaction)."""
    if exc.status not in RECORDED:
        return
    method, path = request.method, request.url.path
    if exc.entry_target is not None:  # an entry of a transaction Bundle
        method, path = exc.entry_target
    rtype, id_ = target_of(path)
    if rtype is None:
        return
    app = request.app
    query = request.query_params
    named = query.get("patient") or query.get("subject")
    try:
        async with app.state.engine.begin() as conn:
            identity = getattr(request.state, "identity", None)
            await record(conn, app.state.clock, identity, method, rtype, id_, named, exc)
    except Exception as err:  # never turn a refusal into a 500
        log.warning("could not audit a refused request: %s", type(err).__name__)
