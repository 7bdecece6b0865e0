"""The agenda (Appointment): a booked appointment says when; a cancelled one stays, with its
status (an Appointment is cancelled by an update, never deleted by its writers)."""

from typing import Any

from espace_api.fhir.errors import FhirError

# FHIR invariant app-3: only these may lack start and end.
UNSCHEDULED = frozenset({"proposed", "cancelled", "waitlist"})


def check_appointment(content: dict[str, Any]) -> None:
    """422 `MISSING_METADATA` for a scheduled appointment without start and end."""
    if content.get("status") in UNSCHEDULED:
        return
    for element in ("start", "end"):
        if not content.get(element):
            raise FhirError.unprocessable(
                f"A {content.get('status')} appointment needs Appointment.{element}",
                "MISSING_METADATA",
                [f"Appointment.{element}"],
            )


def refuse_delete() -> FhirError:
    """405: an appointment is cancelled (status), so that the agenda keeps it."""
    return FhirError(
        405,
        "METHOD_NOT_ALLOWED",
        "An Appointment is not deleted: cancel it (status cancelled); the agenda keeps it",
        issue_type="not-supported",
    )
