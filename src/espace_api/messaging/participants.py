"""Who takes part in a message: its sender and recipients as actor keys.

A participant is the message's Patient (`patient:<id>`), a Practitioner
(`practitioner:<rpps>`), an Organization (`organization:<finess>`), by reference or logical
identifier (access/actors.py), or a PractitionerRole (its practitioner and organisation
keys, read from the directory). The access policy lets exactly these actors see the message.
"""

from typing import Any

import orjson

from espace_api.access import actors
from espace_api.auth.identity import Identity
from espace_api.fhir.errors import FhirError
from espace_api.fhir.registry import REGISTRY
from espace_api.fhir.values import split_reference
from espace_api.resources.behaviour import HookContext
from espace_api.storage import repository
from espace_api.storage.message_repository import Participant, Viewer

ROLE = "PractitionerRole"


def _invalid(where: str, why: str, code: str = "INVALID_PARTICIPANT") -> FhirError:
    return FhirError.unprocessable(f"{where}: {why}", code, [where])


def _label(ref: dict[str, Any]) -> str:
    """The Reference as receipts show it (reference or identifier, without display)."""
    kept = {k: ref[k] for k in ("reference", "identifier", "type") if k in ref}
    return orjson.dumps(kept).decode()


async def _keys(ctx: HookContext, ref: Any, patient_id: str, where: str) -> list[str]:
    if not isinstance(ref, dict):
        raise _invalid(where, "a Reference is required", "MISSING_METADATA")
    split = split_reference(ref["reference"]) if isinstance(ref.get("reference"), str) else None
    if split and split[0] == "Patient":
        if split[1] != patient_id:
            raise _invalid(where, "the only Patient a message names is its subject")
        return [f"patient:{patient_id}"]
    if split and split[0] == ROLE:
        role = await repository.get_current(ctx.conn, ROLE, split[1], ctx.policy(REGISTRY[ROLE]))
        if role is None or role.deleted or role.json is None:
            raise _invalid(where, f"PractitionerRole/{split[1]} not found", "REFERENCE_NOT_FOUND")
        body = orjson.loads(role.json)
        keys = [actors.reference_key(body.get(k)) for k in ("practitioner", "organization")]
        found = [k for k in keys if k]
        if not found:
            raise _invalid(where, f"PractitionerRole/{split[1]} names no professional")
        return found
    key = actors.reference_key(ref)
    if key is None:
        raise _invalid(
            where,
            "a participant is the message's Patient, a Practitioner, a PractitionerRole or an "
            "Organization (by reference, RPPS or FINESS identifier)",
        )
    return [key]


async def participants_of(
    ctx: HookContext, content: dict[str, Any], patient_id: str
) -> list[Participant]:
    """The sender and recipients of a message (422 when one is missing or not allowed)."""
    recipients = content.get("recipient") or []
    if not recipients:
        raise _invalid("Communication.recipient", "at least one is required", "MISSING_METADATA")
    found: list[Participant] = []
    named = [("sender", "Communication.sender", content.get("sender"))]
    named += [("recipient", f"Communication.recipient[{i}]", r) for i, r in enumerate(recipients)]
    for role, where, ref in named:
        keys = await _keys(ctx, ref, patient_id, where)
        assert isinstance(ref, dict)  # _keys refused anything else
        found += [Participant(role, key, _label(ref)) for key in keys]
    if f"patient:{patient_id}" not in {p.actor for p in found}:
        raise _invalid(
            "Communication.recipient",
            "the message's Patient (its subject) must be its sender or a recipient",
            "PATIENT_NOT_PARTICIPANT",
        )
    return found


def check_sender(identity: Identity, found: list[Participant], patient_id: str) -> None:
    """403 `SENDER_NOT_CALLER` unless the sender is the caller: the patient themselves, the
    professional or their organisation, or the organisation a machine posts for."""
    if identity.kind == "operator":
        return
    sender = {p.actor for p in found if p.role == "sender"}
    mine = (
        {f"patient:{patient_id}"}
        if identity.kind == "patient"
        else set(actors.identity_keys(identity))
    )
    if not sender & mine:
        raise FhirError.forbidden(
            "Communication.sender must be the caller (the patient, the professional, or the "
            "organisation the token acts for)",
            "SENDER_NOT_CALLER",
        )


def viewer(identity: Identity) -> Viewer:
    """Whose receipts and unread counts the caller's reads touch (operators: nobody's)."""
    if identity.kind == "operator":
        return Viewer()
    if identity.kind == "patient":
        return Viewer(space_patient=True)
    return Viewer(actors.identity_keys(identity))
