"""The one access policy (ARCHITECTURE.md principle 2).

`visible()` returns a SQL predicate on the `resources` table that every query of resources
ANDs in, so totals, paging, includes and history are right by construction. Scope checks
and write rules live here too. Masking and consent (later issues) extend `visible()`.
"""

from typing import Any

from sqlalchemy import ColumnElement, Table, and_, exists, false, or_, true

from espace_api.auth.identity import Identity, Interaction
from espace_api.db.schema import resources
from espace_api.fhir.errors import FhirError
from espace_api.fhir.indexing import references_in
from espace_api.fhir.registry import REGISTRY, ResourceType
from espace_api.fhir.values import split_reference

INTERACTION_NAMES = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}


def require_scope(identity: Identity, rtype: ResourceType, interaction: Interaction) -> None:
    """403 unless a granted scope covers this interaction on this type."""
    if not identity.allows(rtype.name, interaction):
        raise FhirError.forbidden(
            f"Token scopes do not allow {INTERACTION_NAMES[interaction]} on {rtype.name}",
            "INSUFFICIENT_SCOPE",
            headers={"WWW-Authenticate": 'Bearer error="insufficient_scope"'},
        )


def visible(identity: Identity, rtype: ResourceType, table: Table) -> ColumnElement[bool]:
    """SQL predicate: rows of `rtype` in `table` (resources or resource_versions) this
    identity may see."""
    c = table.c
    if identity.kind == "patient":
        if not rtype.in_patient_compartment:
            return true()
        if identity.patient_id is None:
            return false()
        return c.patient_id == identity.patient_id
    if identity.kind == "system":
        if rtype.name == "Patient":
            return true()  # finding a patient by INS; the service requires `identifier`
        if "created_by" in c:
            return c.created_by == identity.actor
        current = resources.alias()
        return exists().where(
            current.c.resource_type == c.resource_type,
            current.c.id == c.id,
            current.c.created_by == identity.actor,
        )
    return true()  # user (masking comes with the consent issue) and operator


def visible_any(
    identity: Identity, table: Table, interaction: Interaction = "r"
) -> ColumnElement[bool]:
    """Cross-type predicate (system-level history): OR over the registered types whose scope
    covers `interaction`, each with its own `visible()`. 403 when no type is covered."""
    allowed = [rt for rt in REGISTRY.values() if identity.allows(rt.name, interaction)]
    if not allowed:
        raise FhirError.forbidden(
            f"Token scopes do not allow {INTERACTION_NAMES[interaction]} on any type",
            "INSUFFICIENT_SCOPE",
        )
    return or_(
        *(and_(table.c.resource_type == rt.name, visible(identity, rt, table)) for rt in allowed)
    )


def check_system_patient_search(identity: Identity, rtype: ResourceType, names: set[str]) -> None:
    """A machine may look a Patient up by identifier only, never browse."""
    if identity.kind == "system" and rtype.name == "Patient" and "identifier" not in names:
        raise FhirError.forbidden(
            "Machine clients may search Patient by identifier only", "SEARCH_NOT_ALLOWED"
        )


def check_write(
    identity: Identity, rtype: ResourceType, patient_id: str | None, content: dict[str, Any]
) -> None:
    """Write rules that depend on the content: a patient writes only into their own space."""
    if identity.kind != "patient":
        return
    if rtype.in_patient_compartment and patient_id != identity.patient_id:
        raise FhirError.forbidden(
            "A patient may only write resources of their own space", "OTHER_PATIENT"
        )
    if not rtype.in_patient_compartment:
        raise FhirError.forbidden(f"Patients may not write {rtype.name}", "FORBIDDEN_TYPE")
    for ref in references_in(content):
        split = split_reference(ref["reference"])
        if split and split[0] == "Patient" and split[1] != identity.patient_id:
            raise FhirError.forbidden(
                "A patient may not reference another patient", "OTHER_PATIENT"
            )
