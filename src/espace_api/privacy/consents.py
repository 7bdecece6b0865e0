"""A patient's Consent -> the access rules the policy reads (access/policy.py).

Each Consent carries its kind in `category` (system `access.vocabulary.CONSENT_KIND_SYSTEM`):

| kind | provision | rules (access_rules.kind / actor) |
| --- | --- | --- |
| care-relationship | actor (Practitioner / Organization), period | care-relationship per actor |
| block | actor | block per actor |
| mask | data (DocumentReferences) | labels MASQUE_PS on those documents (no rule) |
| mask | no data | mask-all (every document hidden from professionals) |
| default-visibility | type = deny | default-masked (new deposits start masked) |
| oppose-btg, oppose-samu | - | the opposition |
| break-the-glass | actor, period (set by the server) | break-the-glass per actor |
| connected-service | actor (a machine client by client id), period | one per client |

Only an `active` Consent has rules. Unknown or missing kinds are stored with no effect.
"""

from datetime import datetime, timedelta
from typing import Any

from espace_api.access import actors
from espace_api.access import vocabulary as v
from espace_api.auth.identity import Identity
from espace_api.fhir.errors import FhirError
from espace_api.fhir.values import date_range, format_instant, split_reference
from espace_api.storage.access_repository import AccessRule

# Kinds whose rules name actors (provision.actor).
ACTOR_KINDS = (v.CARE_RELATIONSHIP, v.BLOCK, v.BREAK_THE_GLASS, v.CONNECTED_SERVICE)
# Who may write each kind: patients write their own choices; professionals record their own
# care relationship; break-the-glass is written by the server's operation only.
PATIENT_KINDS = frozenset(
    {
        v.CARE_RELATIONSHIP,
        v.MASK,
        v.BLOCK,
        v.DEFAULT_VISIBILITY,
        v.OPPOSE_BTG,
        v.OPPOSE_SAMU,
        v.CONNECTED_SERVICE,
    }
)
PROFESSIONAL_KINDS = frozenset({v.CARE_RELATIONSHIP})
WHERE = "Consent.provision"


def _provision(content: dict[str, Any]) -> dict[str, Any]:
    prov = content.get("provision")
    return prov if isinstance(prov, dict) else {}


def actor_keys(content: dict[str, Any]) -> list[str]:
    """The actor keys a Consent's provision names (422 for an actor we cannot identify)."""
    keys = []
    for i, actor in enumerate(_provision(content).get("actor") or []):
        key = actors.reference_key(actor.get("reference"))
        if key is None:
            raise FhirError.unprocessable(
                f"{WHERE}.actor[{i}].reference must name a Practitioner (RPPS) or an "
                "Organization (FINESS)",
                "INVALID_CONSENT",
                [f"{WHERE}.actor[{i}].reference"],
            )
        keys.append(key)
    return keys


def masked_documents(content: dict[str, Any]) -> list[str]:
    """Ids of the DocumentReferences a mask Consent lists in provision.data."""
    ids = []
    for i, item in enumerate(_provision(content).get("data") or []):
        ref = (item.get("reference") or {}).get("reference")
        split = split_reference(ref) if isinstance(ref, str) else None
        if not split or split[0] != "DocumentReference":
            raise FhirError.unprocessable(
                f"{WHERE}.data[{i}].reference must reference a DocumentReference",
                "INVALID_CONSENT",
                [f"{WHERE}.data[{i}].reference"],
            )
        ids.append(split[1])
    return ids


def _period(content: dict[str, Any]) -> tuple[datetime | None, datetime | None]:
    period = _provision(content).get("period") or {}
    try:
        start = date_range(period["start"])[0] if period.get("start") else None
        end = date_range(period["end"])[0] if period.get("end") else None
    except ValueError:
        raise FhirError.unprocessable(
            f"{WHERE}.period is not a valid period", "INVALID_CONSENT", [f"{WHERE}.period"]
        ) from None
    return start, end


def check_writer(identity: Identity, kind: str | None, system_write: bool) -> None:
    """403 when this caller may not write a Consent of this kind."""
    if identity.kind == "operator" or system_write:
        return
    allowed = PATIENT_KINDS if identity.kind == "patient" else PROFESSIONAL_KINDS
    if kind is None and identity.kind == "patient":
        return  # a consent of the patient's own, with no effect on access
    if kind not in allowed:
        raise FhirError.forbidden(
            f"{identity.kind} callers may not write a Consent of kind '{kind}'",
            "CONSENT_KIND_NOT_ALLOWED",
        )


def complete(
    content: dict[str, Any],
    identity: Identity,
    kind: str | None,
    now: datetime,
    max_care: timedelta,
) -> None:
    """Check a Consent's provision for its kind and fill in server-set values."""
    if kind in ACTOR_KINDS:
        keys = actor_keys(content)
        if not keys:
            raise FhirError.unprocessable(
                f"A '{kind}' Consent needs {WHERE}.actor", "INVALID_CONSENT", [f"{WHERE}.actor"]
            )
        if kind == v.CARE_RELATIONSHIP and identity.kind in ("user", "system"):
            own = set(actors.identity_keys(identity))
            if not set(keys) <= own:
                raise FhirError.forbidden(
                    "A professional records a care relationship for themselves (or their "
                    "organisation) only",
                    "OTHER_ACTOR",
                )
    if kind == v.CONNECTED_SERVICE and any(not k.startswith("client:") for k in keys):
        raise FhirError.unprocessable(
            f"A '{kind}' Consent names services by client id ({actors.CLIENT_SYSTEM})",
            "INVALID_CONSENT",
            [f"{WHERE}.actor"],
        )
    if kind == v.MASK:
        masked_documents(content)  # validates the references
    if kind == v.CARE_RELATIONSHIP:
        start, end = _period(content)
        start = start or now
        latest = start + max_care
        end = min(end or latest, latest)
        if end <= start:
            raise FhirError.unprocessable(
                f"{WHERE}.period must end after it starts", "INVALID_CONSENT", [f"{WHERE}.period"]
            )
        prov = content.setdefault("provision", {})
        prov["period"] = {"start": format_instant(start), "end": format_instant(end)}
    _period(content)  # any kind: a period must be readable


def rules_of(content: dict[str, Any] | None) -> list[AccessRule]:
    """The access rules an (active) Consent puts in force; [] for anything else."""
    if content is None or content.get("status") != "active":
        return []
    kind = v.consent_kind(content)
    start, end = _period(content)
    if kind in ACTOR_KINDS:
        return [AccessRule(kind, key, start, end) for key in actor_keys(content)]
    if kind == v.MASK and not _provision(content).get("data"):
        return [AccessRule(v.MASK_ALL, "", start, end)]
    if kind == v.DEFAULT_VISIBILITY and _provision(content).get("type") == "deny":
        return [AccessRule(v.DEFAULT_MASKED, "", start, end)]
    if kind in (v.OPPOSE_BTG, v.OPPOSE_SAMU):
        return [AccessRule(kind, "", start, end)]
    return []


def active_masked_documents(content: dict[str, Any] | None) -> set[str]:
    """The documents an active mask Consent lists (empty for anything else)."""
    if content is None or content.get("status") != "active":
        return set()
    if v.consent_kind(content) != v.MASK:
        return set()
    return set(masked_documents(content))
