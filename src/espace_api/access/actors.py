"""Who a rule is about: professionals and organisations as access-rule actor keys.

A key is `practitioner:<RPPS>` or `organization:<FINESS>`, or `client:<client id>` for a
registered machine client (a connected service the patient names by its client id, system
`CLIENT_SYSTEM`). Identities carry them as token
claims (`practitioner`, `organization` = `finess:<n>`); Consents name them as references
(`Practitioner/rpps-<n>`, `Organization/finess-<n>`) or logical identifiers (RPPS national id
urn:oid:1.2.250.1.71.4.2.1, FINESS http://finess.sante.gouv.fr or urn:oid:1.2.250.1.71.4.2.2).
"""

from typing import Any

from espace_api.auth.identity import Identity
from espace_api.fhir.values import split_reference

RPPS_SYSTEM = "urn:oid:1.2.250.1.71.4.2.1"
FINESS_SYSTEMS = ("http://finess.sante.gouv.fr", "urn:oid:1.2.250.1.71.4.2.2")
CLIENT_SYSTEM = "https://espace-api.org/fhir/NamingSystem/client-id"


def practitioner_key(value: str) -> str:
    return "practitioner:" + value.removeprefix("rpps-").removeprefix("rpps:")


def organization_key(value: str) -> str:
    return "organization:" + value.removeprefix("finess-").removeprefix("finess:")


def client_key(client_id: str) -> str:
    return "client:" + client_id


def identity_keys(identity: Identity) -> tuple[str, ...]:
    """The actor keys an identity acts as (its professional, then its organisation)."""
    keys = []
    if identity.practitioner:
        keys.append(practitioner_key(identity.practitioner))
    if identity.organization:
        keys.append(organization_key(identity.organization))
    return tuple(keys)


def reference_key(ref: Any) -> str | None:
    """The actor key of a Reference to a Practitioner or Organization, or None."""
    if not isinstance(ref, dict):
        return None
    if isinstance(ref.get("reference"), str):
        split = split_reference(ref["reference"])
        if split and split[0] == "Practitioner":
            return practitioner_key(split[1])
        if split and split[0] == "Organization":
            return organization_key(split[1])
        return None
    ident = ref.get("identifier")
    if isinstance(ident, dict) and isinstance(ident.get("value"), str):
        if ident.get("system") == RPPS_SYSTEM:
            value = ident["value"]
            return practitioner_key(value[1:] if len(value) == 12 and value[0] == "8" else value)
        if ident.get("system") in FINESS_SYSTEMS:
            return organization_key(ident["value"])
        if ident.get("system") == CLIENT_SYSTEM:
            return client_key(ident["value"])
    return None
