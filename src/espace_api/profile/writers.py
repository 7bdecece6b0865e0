"""Who writes the health profile, the measurements and the agenda.

The patient (or a minor's legal representative, `access.policy.check_write`) and the
operator write every type. Others only where the domain says so:

- AllergyIntolerance, MedicationStatement, Condition, FamilyMemberHistory: nobody else (the
  patient's own account of their health);
- Immunization: professionals and their software (a vaccinating pharmacist or doctor);
- Observation: approved third-party services (machine tokens) that the patient connected
  (Consent `connected-service`, profile/connections.py);
- Appointment: booking services (machine tokens) that the patient connected.

A writer other than the patient changes only what it created, and never the patient's
visibility label (MASQUE_PS in meta.security).
"""

from typing import Any

from espace_api.access import vocabulary as v
from espace_api.auth.identity import Identity
from espace_api.fhir.errors import FhirError

PATIENT_ONLY = frozenset(
    {"AllergyIntolerance", "MedicationStatement", "Condition", "FamilyMemberHistory"}
)
OTHER_WRITERS: dict[str, frozenset[str]] = {
    **{name: frozenset() for name in PATIENT_ONLY},
    "Immunization": frozenset({"user", "system"}),
    "Observation": frozenset({"system"}),
    "Appointment": frozenset({"system"}),
}
TYPES = tuple(OTHER_WRITERS)


def is_own_account(identity: Identity) -> bool:
    """The patient (or their representative) and the operator write without restriction."""
    return identity.kind in ("patient", "operator")


def check_writer(
    identity: Identity, type_name: str, previous_author: str | None, is_create: bool
) -> None:
    """403 `WRITER_NOT_ALLOWED` when this caller may not write this type (or this resource:
    another writer's)."""
    if is_own_account(identity):
        return
    if identity.kind not in OTHER_WRITERS[type_name]:
        raise FhirError.forbidden(
            f"{type_name} is written by the patient; a {identity.kind} token may not write it",
            "WRITER_NOT_ALLOWED",
        )
    if not is_create and previous_author != identity.actor:
        raise FhirError.forbidden(
            f"Only the patient or its author changes this {type_name}", "WRITER_NOT_ALLOWED"
        )


def masked(content: dict[str, Any] | None) -> bool:
    """Whether the entry carries the patient's MASQUE_PS label in meta.security."""
    if content is None:
        return False
    return any(
        isinstance(c, dict)
        and c.get("system") == v.VISIBILITY_SYSTEM
        and c.get("code") == v.MASQUE_PS
        for c in (content.get("meta") or {}).get("security") or []
    )


def check_label(
    identity: Identity, content: dict[str, Any] | None, previous: dict[str, Any] | None
) -> None:
    """Only the patient hides or shows an entry (403 `LABEL_CHANGE_NOT_ALLOWED`)."""
    if is_own_account(identity) or content is None:
        return
    if masked(content) != masked(previous):
        raise FhirError.forbidden(
            "Only the patient hides an entry from professionals (MASQUE_PS in meta.security)",
            "LABEL_CHANGE_NOT_ALLOWED",
        )
