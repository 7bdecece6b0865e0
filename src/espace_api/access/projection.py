"""What a caller without access to a space sees of its Patient: enough to deposit.

Software, and professionals without a care relationship, find a Patient only by an exact INS
lookup (access/policy.py) and get this projection: id, meta, identifier, name, birthDate,
gender and the space status; never address, telecom, contacts or privacy settings.
"""

from typing import Any

import orjson

from espace_api.fhir.registry import SPACE_STATUS_URL
from espace_api.fhir.search import mark_subsetted

KEPT = ("resourceType", "id", "meta", "identifier", "name", "birthDate", "gender")


def project_patient(json: str) -> str:
    """The projection of a stored Patient's JSON."""
    full: dict[str, Any] = orjson.loads(json)
    out = {k: full[k] for k in KEPT if k in full}
    space = [e for e in full.get("extension") or [] if e.get("url") == SPACE_STATUS_URL]
    if space:
        out["extension"] = space
    return orjson.dumps(mark_subsetted(out)).decode()
