"""What a caller without access to a space sees of its Patient: enough to deposit.

Software, and professionals without a care relationship, find a Patient only by an exact INS
lookup (access/policy.py) and get this projection: id, meta, identifier, name, birthDate,
gender and the space status; never address, telecom, contacts or privacy settings.
"""

from typing import Any

import orjson

from espace_api.fhir.registry import SPACE_STATUS_URL

KEPT = ("resourceType", "id", "meta", "identifier", "name", "birthDate", "gender")


def project_patient(json: str) -> str:
    """The projection of a stored Patient's JSON."""
    full: dict[str, Any] = orjson.loads(json)
    out = {k: full[k] for k in KEPT if k in full}
    space = [e for e in full.get("extension") or [] if e.get("url") == SPACE_STATUS_URL]
    if space:
        out["extension"] = space
    meta = dict(out.get("meta") or {})
    meta["tag"] = [*meta.get("tag", []), SUBSETTED]
    out["meta"] = meta
    return orjson.dumps(out).decode()


# FHIR marks a resource returned incompletely with the SUBSETTED tag.
SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
    "display": "subsetted",
}
