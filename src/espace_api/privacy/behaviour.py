"""The privacy package's type behaviours (registered by `privacy.setup.register`).

- `ConsentRules` (Consent): who may write which kind, server-set periods; after each write,
  the Consent's access rules (`access_rules`) are replaced in the same transaction, a mask
  Consent's documents get (or lose) the MASQUE_PS label, and the Patient's privacy-settings
  extension is refreshed.
- `DocumentVisibility` (DocumentReference): who may change which visibility label; a
  professional's deposit starts masked when the patient chose so; a patient unmasking a
  document takes it out of the mask Consents that listed it.
- `PrivacySettings` (Patient): the `privacy-settings` extension is the server's, computed from
  the rules in force (a client cannot set it).

Labels are the single truth for one document's visibility; a mask Consent is applied as labels,
so the two ways of hiding a document cannot disagree.
"""

from datetime import timedelta
from typing import Any

import orjson

from espace_api.access import vocabulary as v
from espace_api.fhir.errors import FhirError
from espace_api.fhir.registry import REGISTRY
from espace_api.privacy import consents
from espace_api.resources.behaviour import HookContext, TypeBehaviour, WriteEvent
from espace_api.storage import access_repository as rules_repo
from espace_api.storage import repository

SETTINGS_URL = "https://espace-api.org/fhir/StructureDefinition/privacy-settings"
SETTINGS_KINDS = frozenset({v.MASK, v.DEFAULT_VISIBILITY, v.OPPOSE_BTG, v.OPPOSE_SAMU})
PROFESSIONALS = ("user", "system")


def _previous(event: WriteEvent) -> dict[str, Any] | None:
    prev = event.previous
    return orjson.loads(prev.json) if prev is not None and prev.json is not None else None


class ConsentRules(TypeBehaviour):
    """Consent: the patient's privacy choices, compiled into access rules."""

    async def before_write(self, ctx: HookContext, event: WriteEvent) -> dict[str, Any] | None:
        content = event.content
        if content is None:
            return None
        kind = v.consent_kind(content)
        previous = _previous(event)
        if previous is not None and v.consent_kind(previous) != kind:
            raise FhirError.unprocessable(
                "A Consent's kind (category) cannot change", "INVALID_CONSENT", ["Consent.category"]
            )
        consents.check_writer(ctx.identity, kind, event.system_write)
        max_care = timedelta(days=ctx.settings.care_relationship_days)
        consents.complete(content, ctx.identity, kind, event.now, max_care)
        return content

    async def after_write(self, ctx: HookContext, event: WriteEvent) -> None:
        patient_id = event.patient_id
        if patient_id is None:
            return
        content, previous = event.content, _previous(event)
        await rules_repo.replace_rules(ctx.conn, patient_id, event.id, consents.rules_of(content))
        before = consents.active_masked_documents(previous)
        after = consents.active_masked_documents(content)
        for doc_id in sorted(after - before):
            await _label(ctx, patient_id, doc_id, on=True)
        for doc_id in sorted(before - after):
            if not await rules_repo.consents_listing(ctx.conn, patient_id, doc_id, event.id):
                await _label(ctx, patient_id, doc_id, on=False)
        kinds = {v.consent_kind(c) for c in (content, previous) if c is not None}
        if kinds & SETTINGS_KINDS:
            await _refresh_settings(ctx, patient_id)


async def _label(ctx: HookContext, patient_id: str, doc_id: str, *, on: bool) -> None:
    """Set or clear MASQUE_PS on one of the patient's documents (a system write)."""
    rtype = REGISTRY["DocumentReference"]
    row = await repository.get_current(
        ctx.conn, rtype.name, doc_id, ctx.policy(rtype), for_update=True
    )
    if row is None or row.deleted or row.json is None or row.patient_id != patient_id:
        raise FhirError.unprocessable(
            f"DocumentReference/{doc_id} is not a document of this space",
            "REFERENCE_NOT_FOUND",
            ["Consent.provision.data"],
        )
    content = orjson.loads(row.json)
    if v.set_visibility(content, v.MASQUE_PS, on):
        await ctx.write_update(rtype, row, content)


async def _refresh_settings(ctx: HookContext, patient_id: str) -> None:
    """Rewrite the Patient (a system write) so that its privacy-settings extension shows the
    rules now in force; PrivacySettings.before_write computes the extension."""
    rtype = REGISTRY["Patient"]
    row = await repository.get_current(
        ctx.conn, "Patient", patient_id, ctx.policy(rtype), for_update=True
    )
    if row is None or row.deleted or row.json is None:
        return
    content = orjson.loads(row.json)
    wanted = await settings_extension(ctx, patient_id)
    if _settings_of(content) != wanted:
        await ctx.write_update(rtype, row, content)


def _settings_of(content: dict[str, Any]) -> dict[str, Any] | None:
    for ext in content.get("extension") or []:
        if ext.get("url") == SETTINGS_URL:
            return dict(ext)
    return None


def settings_extension_of(present: set[str]) -> dict[str, Any]:
    """The privacy-settings extension for the kinds of rules in force."""
    return {
        "url": SETTINGS_URL,
        "extension": [
            {
                "url": "default-visibility",
                "valueCode": "masked" if v.DEFAULT_MASKED in present else "visible",
            },
            {"url": "mask-all", "valueBoolean": v.MASK_ALL in present},
            {"url": "oppose-break-the-glass", "valueBoolean": v.OPPOSE_BTG in present},
            {"url": "oppose-samu", "valueBoolean": v.OPPOSE_SAMU in present},
        ],
    }


def default_settings_extension() -> dict[str, Any]:
    """The privacy settings of a new space (no Consent yet): the national defaults."""
    return settings_extension_of(set())


async def settings_extension(ctx: HookContext, patient_id: str | None) -> dict[str, Any]:
    """The privacy-settings extension from the patient's rules in force (defaults if none)."""
    if patient_id is None:
        return default_settings_extension()
    kinds = (v.DEFAULT_MASKED, v.MASK_ALL, v.OPPOSE_BTG, v.OPPOSE_SAMU)
    rules = await rules_repo.rules_in_force(ctx.conn, patient_id, kinds, ctx.now)
    return settings_extension_of({r.kind for r in rules})


class PrivacySettings(TypeBehaviour):
    """Patient: the privacy-settings extension is computed, never taken from the client."""

    async def before_write(self, ctx: HookContext, event: WriteEvent) -> dict[str, Any] | None:
        content = event.content
        if content is None:
            return None
        others = [e for e in content.get("extension") or [] if e.get("url") != SETTINGS_URL]
        patient_id = None if event.is_create else event.id  # a new Patient has no Consent
        content["extension"] = [*others, await settings_extension(ctx, patient_id)]
        return content


class DocumentVisibility(TypeBehaviour):
    """DocumentReference: who may change which visibility label."""

    async def before_write(self, ctx: HookContext, event: WriteEvent) -> dict[str, Any] | None:
        content = event.content
        if content is None or event.system_write:
            return content
        kind = ctx.identity.kind
        new = v.visibility_codes(content)
        previous = _previous(event)
        old = v.visibility_codes(previous) if previous is not None else set()
        if kind == "patient":
            own = {v.MASQUE_PS, v.INVISIBLE_REPRESENTANTS_LEGAUX}
            _check_changes(new, old, own, own)
        elif kind in PROFESSIONALS and event.is_create:
            if v.MASQUE_PS not in new and event.patient_id is not None:
                masked = await rules_repo.rules_in_force(
                    ctx.conn, event.patient_id, (v.DEFAULT_MASKED,), event.now
                )
                if masked:  # the patient wants new documents masked until they release them
                    v.set_visibility(content, v.MASQUE_PS, True)
        elif kind in PROFESSIONALS:
            _check_changes(
                new, old, {v.MASQUE_PS, v.INVISIBLE_REPRESENTANTS_LEGAUX}, {v.INVISIBLE_PATIENT}
            )
        return content

    async def after_write(self, ctx: HookContext, event: WriteEvent) -> None:
        if event.system_write or event.content is None or event.patient_id is None:
            return
        previous = _previous(event)
        if previous is None:
            return
        unmasked = v.MASQUE_PS in v.visibility_codes(previous) - v.visibility_codes(event.content)
        if not unmasked:
            return
        for consent_id in await rules_repo.consents_listing(ctx.conn, event.patient_id, event.id):
            await _unlist(ctx, consent_id, event.id)


def _check_changes(new: set[str], old: set[str], may_add: set[str], may_remove: set[str]) -> None:
    """403 when a visibility label is added or removed that this caller may not change."""
    added, removed = new - old, old - new
    wrong = sorted((added - may_add) | (removed - may_remove))
    if wrong:
        raise FhirError.forbidden(
            f"This caller may not change the visibility label(s) {', '.join(wrong)}",
            "LABEL_CHANGE_NOT_ALLOWED",
        )


async def _unlist(ctx: HookContext, consent_id: str, doc_id: str) -> None:
    """Take a document out of a mask Consent (inactive when it lists nothing else)."""
    rtype = REGISTRY["Consent"]
    row = await repository.get_current(
        ctx.conn, "Consent", consent_id, ctx.policy(rtype), for_update=True
    )
    if row is None or row.json is None:
        return
    content = orjson.loads(row.json)
    prov = content.get("provision") or {}
    kept = [
        d
        for d in prov.get("data") or []
        if (d.get("reference") or {}).get("reference") != f"DocumentReference/{doc_id}"
    ]
    if kept:
        prov["data"] = kept
    else:
        content["status"] = "inactive"
    await ctx.write_update(rtype, row, content)
