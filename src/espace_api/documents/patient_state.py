"""Whether a patient's space accepts deposits: not closed, not opposed.

Until the space lifecycle (opposition, closure, reopening) has its own resource, the state
is read from the Patient resource:
- `Patient.active = false`: the space is closed (archived);
- extension `SPACE_STATUS_URL` with valueCode `opposed` (the person objected to the creation
  of their space) or `closed`.
A closed or opposed space accepts no new document (422 `PATIENT_SPACE_CLOSED` /
`PATIENT_OPPOSED`), whoever deposits. Operators are not refused (migration, recovery).
"""

from typing import Any

import orjson

from espace_api.auth.identity import Identity
from espace_api.fhir.errors import FhirError
from espace_api.storage.repository import StoredRow

SPACE_STATUS_URL = "https://espace-api.org/fhir/StructureDefinition/space-status"


def space_status(patient: dict[str, Any]) -> str:
    """`open`, `closed` or `opposed`."""
    for ext in patient.get("extension") or []:
        if ext.get("url") == SPACE_STATUS_URL and ext.get("valueCode") in ("opposed", "closed"):
            return str(ext["valueCode"])
    if patient.get("active") is False:
        return "closed"
    return "open"


def check_accepts_deposits(identity: Identity, patient: StoredRow | None) -> None:
    """Refuse a deposit into a closed or opposed space (`patient`: the row the service
    already read to check that the Patient exists)."""
    if patient is None or patient.json is None or identity.kind == "operator":
        return
    status = space_status(orjson.loads(patient.json))
    if status == "opposed":
        raise FhirError.unprocessable(
            "This person has opposed the creation of their health space: no deposit",
            "PATIENT_OPPOSED",
        )
    if status == "closed":
        raise FhirError.unprocessable(
            "This person's health space is closed: no deposit", "PATIENT_SPACE_CLOSED"
        )
