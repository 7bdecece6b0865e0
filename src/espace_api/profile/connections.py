"""Connected services: a machine client adds a patient's measurements or appointments only
while the patient has connected it (an active Consent of kind `connected-service` naming its
client id)."""

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from espace_api.access import actors
from espace_api.access import vocabulary as v
from espace_api.auth.identity import Identity
from espace_api.fhir.errors import FhirError
from espace_api.storage import access_repository


async def check_connected(
    conn: AsyncConnection, identity: Identity, patient_id: str | None, now: datetime
) -> None:
    """403 `SERVICE_NOT_CONNECTED` for a machine client the patient has not connected."""
    if identity.kind != "system" or patient_id is None:
        return
    key = actors.client_key(identity.client_id or identity.subject)
    rules = await access_repository.rules_in_force(conn, patient_id, (v.CONNECTED_SERVICE,), now)
    if not any(rule.actor == key for rule in rules):
        raise FhirError.forbidden(
            "The patient has not connected this service (a connected-service Consent naming "
            "its client id)",
            "SERVICE_NOT_CONNECTED",
        )
