"""Connected services: a machine client adds a patient's measurements only while the patient
has connected it (an active Consent of kind `data-feed` naming its client id)."""

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from espace_api.access import actors
from espace_api.access import vocabulary as v
from espace_api.auth.identity import Identity
from espace_api.fhir.errors import FhirError
from espace_api.storage import access_repository


async def check_feed(
    conn: AsyncConnection, identity: Identity, patient_id: str | None, now: datetime
) -> None:
    """403 `FEED_NOT_CONSENTED` for a machine client the patient has not connected."""
    if identity.kind != "system" or patient_id is None:
        return
    key = actors.client_key(identity.client_id or identity.subject)
    rules = await access_repository.rules_in_force(conn, patient_id, (v.DATA_FEED,), now)
    if not any(rule.actor == key for rule in rules):
        raise FhirError.forbidden(
            "The patient has not connected this service (Consent data-feed naming its client id)",
            "FEED_NOT_CONSENTED",
        )
