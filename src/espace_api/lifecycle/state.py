"""The space lifecycle as pure data: states, transitions, and the Patient extension.

    notified --activate / opposition window ends--> active
    notified --oppose--> opposed      (what was deposited while notified is deleted)
    active   --close--> closed        (kept `SPACE_RETENTION_DAYS`, or until an early purge)
    opposed | closed --reopen--> active

The authoritative state is a `patient_spaces` row; the Patient resource shows it in the
server-owned extension `SPACE_STATUS_URL` (written in the same transaction), from which the
deposit path reads it without another query.
"""

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from espace_api.auth.identity import Identity
from espace_api.fhir.errors import FhirError
from espace_api.fhir.registry import (  # declared with its search parameter
    SPACE_STATUS_URL as SPACE_STATUS_URL,
)
from espace_api.fhir.values import date_range, format_instant

NOTICE_DATE_URL = "https://espace-api.org/fhir/StructureDefinition/notice-date"
NOTIFIED, ACTIVE, OPPOSED, CLOSED = "notified", "active", "opposed", "closed"
STATES = (NOTIFIED, ACTIVE, OPPOSED, CLOSED)
ACTIONS = ("activate", "oppose", "close", "reopen", "expire")
TRANSITIONS = {
    (NOTIFIED, "activate"): ACTIVE,
    (NOTIFIED, "expire"): ACTIVE,  # the opposition window ended without objection
    (NOTIFIED, "oppose"): OPPOSED,
    (ACTIVE, "close"): CLOSED,
    (OPPOSED, "reopen"): ACTIVE,
    (CLOSED, "reopen"): ACTIVE,
}
_FIELDS = (
    ("notified", "notified_at"),
    ("opposition-deadline", "opposition_deadline"),
    ("activated", "activated_at"),
    ("opposed", "opposed_at"),
    ("closed", "closed_at"),
    ("purge-after", "purge_after"),
)


@dataclass(frozen=True)
class Space:
    """One patient's space."""

    state: str
    notified_at: datetime | None = None
    opposition_deadline: datetime | None = None
    activated_at: datetime | None = None
    opposed_at: datetime | None = None
    closed_at: datetime | None = None
    closure_reason: str | None = None
    purge_after: datetime | None = None

    def effective(self, now: datetime) -> str:
        """The state at `now`: a notified space whose window ended is active."""
        if self.state == NOTIFIED and self.opposition_deadline and self.opposition_deadline <= now:
            return ACTIVE
        return self.state


def transition(
    space: Space,
    action: str,
    now: datetime,
    *,
    retention: Any = None,
    reason: str | None = None,
) -> Space:
    """The space after `action` at `now` (409 `INVALID_TRANSITION` when not allowed).

    `retention` (a timedelta) is how long a closed space is kept before its purge."""
    current = space.effective(now) if action != "expire" else space.state
    target = TRANSITIONS.get((current, action))
    if target is None:
        raise FhirError.conflict(f"A space that is {current} cannot {action}", "INVALID_TRANSITION")
    if target == ACTIVE:
        return replace(
            space,
            state=ACTIVE,
            activated_at=now,
            closed_at=None,
            closure_reason=None,
            purge_after=None,
        )
    if target == OPPOSED:
        return replace(space, state=OPPOSED, opposed_at=now)
    return replace(
        space,
        state=CLOSED,
        closed_at=now,
        closure_reason=reason,
        purge_after=now + retention if retention is not None else None,
    )


def extension(space: Space) -> dict[str, Any]:
    """The Patient extension showing the space."""
    parts: list[dict[str, Any]] = [{"url": "status", "valueCode": space.state}]
    for url, attr in _FIELDS:
        value = getattr(space, attr)
        if value is not None:
            parts.append({"url": url, "valueDateTime": format_instant(value)})
    if space.closure_reason:
        parts.append({"url": "closure-reason", "valueString": space.closure_reason})
    return {"url": SPACE_STATUS_URL, "extension": parts}


def from_patient(patient: dict[str, Any]) -> Space | None:
    """The space shown in a Patient resource (None when it shows none)."""
    for ext in patient.get("extension") or []:
        if ext.get("url") != SPACE_STATUS_URL:
            continue
        values = {p.get("url"): p for p in ext.get("extension") or []}
        status = (values.get("status") or {}).get("valueCode")
        if status not in STATES:
            return None
        times = {
            attr: date_range(values[url]["valueDateTime"])[0]
            for url, attr in _FIELDS
            if url in values
        }
        reason = (values.get("closure-reason") or {}).get("valueString")
        return Space(status, closure_reason=reason, **times)
    return None


def with_extension(patient: dict[str, Any], space: Space) -> dict[str, Any]:
    """`patient` showing `space` (any client-sent space or notice extension replaced)."""
    others = [
        e
        for e in patient.get("extension") or []
        if e.get("url") not in (SPACE_STATUS_URL, NOTICE_DATE_URL)
    ]
    patient["extension"] = [*others, extension(space)]
    return patient


def notice_date(patient: dict[str, Any]) -> datetime | None:
    """The date the information notice was sent, when an enrolment gives it."""
    for ext in patient.get("extension") or []:
        if ext.get("url") == NOTICE_DATE_URL:
            value = ext.get("valueDate") or ext.get("valueDateTime")
            if isinstance(value, str):
                try:
                    return date_range(value)[0]
                except ValueError:
                    break
            break
    return None


def check_accepts_deposits(
    identity: Identity, patient: dict[str, Any] | None, now: datetime
) -> None:
    """Refuse a deposit into an opposed or closed space (operators are never refused:
    migration, recovery). A Patient that shows no space (created before the lifecycle)
    accepts deposits."""
    if patient is None or identity.kind == "operator":
        return
    space = from_patient(patient)
    state = space.effective(now) if space else ACTIVE
    if state == OPPOSED:
        raise FhirError.unprocessable(
            "This person has opposed the creation of their health space: no deposit",
            "PATIENT_OPPOSED",
        )
    if state == CLOSED:
        raise FhirError.unprocessable(
            "This person's health space is closed: no deposit", "PATIENT_SPACE_CLOSED"
        )
