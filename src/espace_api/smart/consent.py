"""An app grant as a FHIR Consent of the patient, and revocation through that Consent.

The Consent (kind `app-grant` in the espace-api consent-kind system) says which app
(`provision.actor`, the client id), which scopes (`provision.code`, one per scope), and for
how long (`provision.period`); its identifier is the grant id the app's tokens carry. The
patient revokes it with `POST /Consent/{id}/$revoke` (status -> inactive) or DELETE; either
write revokes the grant in the same transaction (`AppGrants.after_write`), so the app's next
request is refused (auth/authenticator.py checks the grant on every request).
"""

from datetime import datetime
from typing import Any

import orjson

from espace_api.access import policy
from espace_api.access import vocabulary as v
from espace_api.audit.events import CLIENT_ID_SYSTEM as CLIENT_SYSTEM
from espace_api.fhir.errors import FhirError
from espace_api.fhir.registry import REGISTRY
from espace_api.fhir.values import format_instant
from espace_api.resources.behaviour import HookContext, TypeBehaviour, WriteEvent
from espace_api.resources.results import Result
from espace_api.storage import repository
from espace_api.storage import smart_repository as grants

SMART_APP = v.APP_GRANT
GRANT_SYSTEM = "https://espace-api.org/fhir/sid/smart-grant"
SCOPE_SYSTEM = "https://espace-api.org/fhir/CodeSystem/smart-scope"


def grant_consent(
    *,
    grant_id: str,
    patient_id: str,
    client_id: str,
    app_name: str,
    scope: str,
    start: datetime,
    end: datetime,
) -> dict[str, Any]:
    """The Consent recording what a patient granted an app."""
    return {
        "resourceType": "Consent",
        "status": "active",
        "identifier": [{"system": GRANT_SYSTEM, "value": grant_id}],
        "scope": v.PRIVACY_SCOPE,
        "category": [{"coding": [{"system": v.CONSENT_KIND_SYSTEM, "code": SMART_APP}]}],
        "patient": {"reference": f"Patient/{patient_id}"},
        "performer": [{"reference": f"Patient/{patient_id}"}],
        "dateTime": format_instant(start),
        "provision": {
            "type": "permit",
            "period": {"start": format_instant(start), "end": format_instant(end)},
            "actor": [
                {
                    "role": v.RECIPIENT_ROLE,
                    "reference": {
                        "identifier": {"system": CLIENT_SYSTEM, "value": client_id},
                        "display": app_name,
                    },
                }
            ],
            "code": [{"coding": [{"system": SCOPE_SYSTEM, "code": s}]} for s in scope.split()],
        },
    }


def grant_of(content: dict[str, Any] | None) -> str | None:
    """The grant id of an `app-grant` Consent, or None for any other Consent."""
    if content is None or v.consent_kind(content) != SMART_APP:
        return None
    for identifier in content.get("identifier") or []:
        if identifier.get("system") == GRANT_SYSTEM and isinstance(identifier.get("value"), str):
            return str(identifier["value"])
    return None


class AppGrants(TypeBehaviour):
    """Consent: an app grant's Consent made inactive or deleted revokes the grant."""

    async def after_write(self, ctx: HookContext, event: WriteEvent) -> None:
        previous = event.previous
        before = orjson.loads(previous.json) if previous and previous.json else None
        grant_id = grant_of(event.content) or grant_of(before)
        if grant_id is None:
            return
        if event.content is None or event.content.get("status") != "active":
            await grants.revoke_grant(ctx.conn, grant_id, event.now)


async def revoke(ctx: HookContext, consent_id: str) -> Result:
    """`POST /Consent/{id}/$revoke`: the patient (or an operator) ends an app's access."""
    rtype = REGISTRY["Consent"]
    policy.require_scope(ctx.identity, rtype, "u")
    row = await repository.get_current(
        ctx.conn, rtype.name, consent_id, ctx.policy(rtype), for_update=True
    )
    if row is None or row.deleted or row.json is None:
        raise FhirError.not_found(f"Consent/{consent_id} not found")
    if ctx.identity.kind not in ("patient", "operator"):
        raise FhirError.forbidden("Only the patient revokes an app's access", "NOT_THE_PATIENT")
    content = orjson.loads(row.json)
    if grant_of(content) is None:
        raise FhirError.unprocessable(
            "This Consent is not an app's access grant", "NOT_AN_APP_GRANT", ["Consent.category"]
        )
    content["status"] = "inactive"
    return await ctx.write_update(rtype, row, content)
