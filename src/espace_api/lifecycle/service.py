"""Lifecycle transitions and the scheduled job.

`apply` performs `$activate`, `$oppose`, `$close` and `$reopen` for the patient (own space)
or an operator; `run_due` is `espace-api lifecycle run`: it activates spaces whose opposition
window ended and purges closed spaces whose retention ended, in batches locked with SKIP
LOCKED (several jobs may run at once; re-running does nothing new). Every transition writes
the space row, the Patient (its extension) and an AuditEvent in one transaction.
"""

import logging
from datetime import timedelta

import orjson
from sqlalchemy import true
from sqlalchemy.ext.asyncio import AsyncEngine

from espace_api.audit import recorder
from espace_api.auth.identity import Identity
from espace_api.clock import Clock
from espace_api.config import Settings
from espace_api.fhir.errors import FhirError
from espace_api.fhir.registry import REGISTRY
from espace_api.lifecycle import state
from espace_api.lifecycle.state import Space
from espace_api.resources import service
from espace_api.resources.behaviour import Behaviours
from espace_api.resources.results import Result
from espace_api.resources.service import Context
from espace_api.storage import repository
from espace_api.storage import space_repository as spaces

log = logging.getLogger("espace_api.lifecycle")
PATIENT = REGISTRY["Patient"]
JOB = Identity(kind="operator", subject="lifecycle-job", client_id="lifecycle-job")
MAX_REASON = 500


async def apply(
    ctx: Context,
    patient_id: str,
    action: str,
    *,
    reason: str | None = None,
    early_deletion: bool = False,
) -> Result:
    """One transition of a space; the updated Patient."""
    identity = ctx.identity
    if identity.kind not in ("patient", "operator") and action != "expire":
        raise FhirError.forbidden(
            "Only the person (or an operator) changes the state of their space", "FORBIDDEN"
        )
    if identity.kind == "patient" and identity.patient_id != patient_id:
        raise FhirError.not_found(f"Patient/{patient_id} not found")
    if reason is not None and len(reason) > MAX_REASON:
        raise FhirError.bad_request(f"reason is longer than {MAX_REASON} characters")
    row = await repository.get_current(
        ctx.conn, "Patient", patient_id, ctx.policy(PATIENT), for_update=True
    )
    if row is None or row.deleted or row.json is None:
        raise FhirError.not_found(f"Patient/{patient_id} not found")
    now = ctx.now
    current = await spaces.get_space(ctx.conn, patient_id, for_update=True) or Space(state.ACTIVE)
    retention = timedelta(
        days=ctx.settings.space_early_deletion_days
        if early_deletion
        else ctx.settings.space_retention_days
    )
    new = state.transition(current, action, now, retention=retention, reason=reason)
    await spaces.save_space(ctx.conn, patient_id, new, now)
    content = state.with_extension(orjson.loads(row.json), new)
    result = await service.write_update(ctx, PATIENT, row, content, system_write=True)
    purged = 0
    if new.state == state.OPPOSED:  # what arrived while notified goes with the objection
        purged = await spaces.purge_content(ctx.conn, patient_id, keep_patient=True)
    detail = (
        f"{action}" + (f": {reason}" if reason else "") + (f" ({purged} deleted)" if purged else "")
    )
    await recorder.record(
        ctx.conn,
        ctx.clock,
        identity,
        f"space-{new.state}",
        resource_type="Patient",
        resource_id=patient_id,
        patient_ids=[patient_id],
        detail=detail,
    )
    return result


async def _expire(ctx: Context, patient_id: str) -> None:
    """End an opposition window; a deleted Patient's space changes state without a write."""
    row = await repository.get_current(ctx.conn, "Patient", patient_id, true())
    if row is not None and not row.deleted:
        await apply(ctx, patient_id, "expire")
        return
    current = await spaces.get_space(ctx.conn, patient_id, for_update=True)
    if current is not None:
        new = state.transition(current, "expire", ctx.now)
        await spaces.save_space(ctx.conn, patient_id, new, ctx.now)


async def run_due(
    engine: AsyncEngine, settings: Settings, clock: Clock, *, batch: int = 200
) -> dict[str, int]:
    """Activate expired opposition windows and purge ended retentions; counts done."""
    done = {"activated": 0, "purged": 0}
    while True:
        async with engine.begin() as conn:
            ctx = Context(conn, JOB, settings, clock, Behaviours())
            expiring, purging = await spaces.due(conn, clock.now(), batch)
            for patient_id in expiring:
                await _expire(ctx, patient_id)
            for patient_id in purging:
                await spaces.purge_content(conn, patient_id, keep_patient=False)
            done["activated"] += len(expiring)
            done["purged"] += len(purging)
        if len(expiring) < batch and len(purging) < batch:
            break
    log.info("lifecycle run: %(activated)d activated, %(purged)d purged", done)
    return done
