"""Record audit events (IHE BALP-like fields), one per patient touched."""

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from espace_api.auth.identity import Identity
from espace_api.clock import Clock
from espace_api.storage import audit_repository

# AuditEvent.action codes: C create, R read/vread/history, U update, D delete, E execute
# (search and operations).
ACTIONS = {"create": "C", "read": "R", "vread": "R", "history": "R", "update": "U"}
ACTIONS |= {"delete": "D", "search": "E", "patch": "U", "everything": "R"}
SUCCESS, REFUSED = "0", "4"  # AuditEvent.outcome: success, minor failure (refused request)


async def record(
    conn: AsyncConnection,
    clock: Clock,
    identity: Identity | None,
    subtype: str,
    *,
    resource_type: str | None,
    resource_id: str | None = None,
    patient_ids: Iterable[str | None] = (None,),
    query: str | None = None,
    outcome: str = SUCCESS,
    purpose: str | None = None,
    detail: str | None = None,
) -> None:
    """Write one event per distinct patient (None = no patient) in the caller's transaction.

    `identity` is None for a refused request whose token could not be verified."""
    rows = events(
        clock,
        identity,
        subtype,
        resource_type=resource_type,
        resource_id=resource_id,
        patient_ids=patient_ids,
        query=query,
        outcome=outcome,
        purpose=purpose,
        detail=detail,
    )
    await audit_repository.insert_events(conn, rows)


def events(
    clock: Clock,
    identity: Identity | None,
    subtype: str,
    *,
    resource_type: str | None,
    resource_id: str | None = None,
    patient_ids: Iterable[str | None] = (None,),
    query: str | None = None,
    outcome: str = SUCCESS,
    purpose: str | None = None,
    detail: str | None = None,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """The audit rows `record` writes (bulk paths write them themselves, e.g. by COPY)."""
    now = now or clock.now()
    agent = {
        # An app the patient authorised (SMART App Launch) is the agent, not the patient.
        "agent_kind": ("app" if identity.grant_id else identity.kind) if identity else None,
        "agent_sub": identity.subject if identity else None,
        "client_id": identity.client_id if identity else None,
        "token_jti": identity.token_id if identity else None,
        "purpose": purpose or (identity.purpose if identity else None),
        "practitioner": identity.practitioner if identity else None,
        "organization": identity.organization if identity else None,
    }
    return [
        {
            "id": clock.ids(),
            "recorded": now,
            "patient_id": patient_id,
            "action": ACTIONS.get(subtype, "E"),
            "subtype": subtype,
            "outcome": outcome,
            **agent,
            "resource_type": resource_type,
            "resource_id": resource_id,
            "query": query,
            "detail": detail,
        }
        for patient_id in dict.fromkeys(patient_ids)
    ]
