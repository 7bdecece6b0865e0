"""The profile package's type behaviours (registered by `profile.setup.register`).

- `ProfileWriters` (health profile types, Observation, Appointment): who may write what
  (profile/writers.py), checked before every client write; nothing new goes into an opposed
  or closed space (as for documents).
- `Agenda` (Appointment): a scheduled appointment has start and end; writers cancel, never
  delete (405), so the agenda keeps cancelled appointments with their status; a booking
  service writes only for a patient who connected it.
- `Measurements` (Observation): LOINC code and UCUM unit checked against the table
  (profile/measurements.py), a machine client only for a patient who connected it
  (profile/connections.py); the measured values written to `observation_values` in the same
  transaction; a repeated measurement (same patient, device, code and time) answered with
  the stored Observation instead of being stored twice; a connected service's batch Bundle
  is checked and written set-based (`create_many`, profile/ingest.py) with the same rules.
"""

from collections.abc import Sequence
from typing import Any

import orjson

from espace_api.fhir.errors import FhirError
from espace_api.fhir.indexing import compartment_patient
from espace_api.fhir.registry import ResourceType
from espace_api.lifecycle.state import check_accepts_deposits
from espace_api.profile import agenda, connections, ingest, measurements, writers
from espace_api.resources.behaviour import HookContext, TypeBehaviour, WriteEvent
from espace_api.resources.results import Result, replayed
from espace_api.storage import observation_repository as values_repo
from espace_api.storage import repository


def previous_content(event: WriteEvent) -> dict[str, Any] | None:
    """The JSON of the version being replaced (None for a create)."""
    prev = event.previous
    return orjson.loads(prev.json) if prev is not None and prev.json is not None else None


class ProfileWriters(TypeBehaviour):
    """Who writes the health profile, measurements and agenda."""

    async def before_write(self, ctx: HookContext, event: WriteEvent) -> dict[str, Any] | None:
        if event.system_write:
            return event.content
        author = event.previous.created_by if event.previous is not None else None
        writers.check_writer(ctx.identity, event.rtype.name, author, event.is_create)
        writers.check_label(ctx.identity, event.content, previous_content(event))
        if event.is_create and event.patient is not None and event.patient.json is not None:
            check_accepts_deposits(ctx.identity, orjson.loads(event.patient.json), event.now)
        if event.content is not None and event.patient_id is None:
            where = f"{event.rtype.name}.{event.rtype.compartment[0]}"
            raise FhirError.unprocessable(
                f"{where} must reference the patient whose space this is",
                "MISSING_METADATA",
                [where],
            )
        return event.content


class Agenda(TypeBehaviour):
    """Appointment: scheduled ones say when; cancelled ones are kept."""

    async def before_write(self, ctx: HookContext, event: WriteEvent) -> dict[str, Any] | None:
        if event.system_write:
            return event.content
        if event.content is None:
            if ctx.identity.kind != "operator":
                raise agenda.refuse_delete()
            return None
        agenda.check_appointment(event.content)
        await connections.check_connected(ctx.conn, ctx.identity, event.patient_id, ctx.now)
        return event.content


class Measurements(TypeBehaviour):
    """Observation: validated measurements, stored once, in the narrow values table."""

    bulk_applies = (ProfileWriters,)

    async def create_many(
        self, ctx: HookContext, rtype: ResourceType, bodies: Sequence[Any]
    ) -> list[Result | FhirError] | None:
        """A connected service's batch of readings, set-based (profile/ingest.py); other
        callers' batches run entry by entry."""
        if ctx.identity.kind != "system" or not ctx.identity.allows(rtype.name, "c"):
            return None
        return await ingest.create_many(ctx, rtype, list(bodies))

    async def replay(self, ctx: HookContext, rtype: ResourceType, body: Any) -> Result | None:
        """The caller's Observation already holding this measurement, answered 200."""
        if not isinstance(body, dict):
            return None
        patient_id = compartment_patient(rtype, body)
        try:
            found = measurements.measurement(body)
        except (FhirError, ValueError, AttributeError, TypeError):
            return None  # the create refuses it with the right error
        if patient_id is None or not found.values:
            return None
        device = found.device or ctx.identity.actor
        codes = [v.code for v in found.values]
        holder = await values_repo.holder_of(ctx.conn, patient_id, device, codes, found.effective)
        if holder is None:
            return None
        row = await repository.get_current(ctx.conn, rtype.name, holder, ctx.policy(rtype))
        if row is None or row.json is None:
            return None  # not the caller's to see: the write's unique index answers 409
        return replayed(
            row.resource_type, row.id, row.json, row.version_id, row.last_updated, ctx.base
        )

    async def before_write(self, ctx: HookContext, event: WriteEvent) -> dict[str, Any] | None:
        if event.content is None:
            return None
        event.carry["measurement"] = measurements.measurement(event.content)
        if not event.system_write:
            await connections.check_connected(ctx.conn, ctx.identity, event.patient_id, ctx.now)
        return event.content

    async def after_write(self, ctx: HookContext, event: WriteEvent) -> None:
        if event.patient_id is None:
            return
        found: measurements.Measurement | None = event.carry.get("measurement")
        rows: list[values_repo.ValueRow] = []
        if found is not None and event.content is not None:
            author = event.previous.created_by if event.previous is not None else None
            device = found.device or author or ctx.identity.actor
            rows = [
                values_repo.ValueRow(v.code, found.effective, v.value, v.unit, device)
                for v in found.values
            ]
        stored = await values_repo.replace_values(
            ctx.conn, event.patient_id, event.id, rows, fresh=event.is_create
        )
        if stored < len(rows):
            raise FhirError(
                409,
                "DUPLICATE_MEASUREMENT",
                "Another Observation already holds this measurement (same patient, device, "
                "code and effective time)",
                issue_type="duplicate",
            )
