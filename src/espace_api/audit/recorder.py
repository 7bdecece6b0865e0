"""Record audit events (IHE BALP-like fields), one per patient touched."""

from collections.abc import Iterable

from sqlalchemy.ext.asyncio import AsyncConnection

from espace_api.auth.identity import Identity
from espace_api.clock import Clock
from espace_api.storage import audit_repository

# AuditEvent.action codes: C create, R read/vread/history, U update, D delete, E search
ACTIONS = {"create": "C", "read": "R", "vread": "R", "history": "R", "update": "U"}
ACTIONS |= {"delete": "D", "search": "E", "patch": "U"}


async def record(
    conn: AsyncConnection,
    clock: Clock,
    identity: Identity,
    subtype: str,
    *,
    resource_type: str | None,
    resource_id: str | None = None,
    patient_ids: Iterable[str | None] = (None,),
    query: str | None = None,
    outcome: str = "0",
) -> None:
    """Write one event per distinct patient (None = no patient) in the caller's transaction."""
    now = clock.now()
    events = [
        {
            "id": clock.ids(),
            "recorded": now,
            "patient_id": patient_id,
            "action": ACTIONS.get(subtype, "E"),
            "subtype": subtype,
            "outcome": outcome,
            "agent_kind": identity.kind,
            "agent_sub": identity.subject,
            "client_id": identity.client_id,
            "token_jti": identity.token_id,
            "purpose": identity.purpose,
            "resource_type": resource_type,
            "resource_id": resource_id,
            "query": query,
        }
        for patient_id in dict.fromkeys(patient_ids)
    ]
    await audit_repository.insert_events(conn, events)
