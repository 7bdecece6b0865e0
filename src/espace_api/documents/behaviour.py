"""The documents package's type behaviours (registered in `documents.setup.register`).

- `BinaryContent` (Binary): in a transaction, a Binary without securityContext takes the
  patient of the DocumentReference pointing at it; before a version is written, refuse a
  deposit into a closed or opposed space and move inline `data` to the blob store; after it
  is written, link the version to its blob (`blob_refs`, same transaction).
- `DocumentRules` (DocumentReference): replay of an ITI-65 retry by masterIdentifier (200
  with the existing document, or 409); before write, the deposit rules (space state, PDSm
  required metadata, default confidentiality, attachment size/hash); after a create, the
  documents it `replaces` become `superseded` (through `ctx.write_update`, a system write).

See docs/documents.md for the rules and docs/core.md for the hook points.
"""

from collections.abc import Sequence
from typing import Any

import orjson

from espace_api.blobs import BlobInfo, BlobStore
from espace_api.documents import binary, rules
from espace_api.fhir.errors import FhirError
from espace_api.fhir.registry import REGISTRY, ResourceType
from espace_api.fhir.values import split_reference
from espace_api.lifecycle.state import check_accepts_deposits
from espace_api.metrics.counters import DEPOSITS
from espace_api.resources.behaviour import HookContext, TypeBehaviour, WriteEvent
from espace_api.resources.results import Result, replayed
from espace_api.storage import repository
from espace_api.storage.document_repository import documents_with_identifier
from espace_api.storage.repository import StoredRow

BLOB = "blob"  # WriteEvent.carry key: the BlobInfo of a Binary's inline data


def _json(row: StoredRow | None) -> dict[str, Any] | None:
    return orjson.loads(row.json) if row is not None and row.json is not None else None


async def _store(ctx: HookContext) -> BlobStore:
    return await binary.store_for(ctx.conn.engine, ctx.settings, ctx.clock)


class BinaryContent(TypeBehaviour):
    """Binary: content in the blob store, linked to each version."""

    bundle_order = -1  # before the DocumentReferences whose size and hash it gives

    def in_transaction(
        self, ref: str | None, resource: dict[str, Any], bundle: Sequence[dict[str, Any]]
    ) -> None:
        """A Binary without securityContext takes its document's patient (IHE MHD)."""
        if ref is None or resource.get("securityContext"):
            return
        subjects = binary.subjects_in_bundle(ref, bundle)
        if None in subjects:
            raise FhirError.unprocessable(
                "DocumentReference.subject is required: the Binary it points at belongs to "
                "that patient",
                "MISSING_METADATA",
                expression=["DocumentReference.subject", "Binary.securityContext"],
            )
        if len(subjects) > 1:
            raise FhirError.unprocessable(
                "DocumentReferences of different patients point at the same Binary",
                "BINARY_OTHER_PATIENT",
                expression=["Binary.securityContext"],
            )
        if subjects:
            resource["securityContext"] = {"reference": subjects.pop()}

    async def before_write(self, ctx: HookContext, event: WriteEvent) -> dict[str, Any] | None:
        content = event.content
        if content is None:
            return None
        if event.is_create:
            check_accepts_deposits(ctx.identity, _json(event.patient), event.now)
        if "data" in content:
            stored, info = await binary.ingest_inline(
                await _store(ctx), ctx.settings, content, event.patient_id
            )
            event.carry[BLOB] = info
            return stored
        return content

    async def after_write(self, ctx: HookContext, event: WriteEvent) -> None:
        info: BlobInfo | None = event.carry.get(BLOB)
        if info is not None and event.patient_id is not None:
            await binary.link(ctx.conn, event.patient_id, event.id, event.version_id, info)
            ctx.blobs[(event.id, event.version_id)] = info


class DocumentRules(TypeBehaviour):
    """DocumentReference: IHE MHD ITI-65 deposit rules (French PDSm profile)."""

    # PDSm: archived documents are left out of searches that do not ask about isArchived.
    default_search = (("isArchived:not", "true"),)

    async def replay(self, ctx: HookContext, rtype: ResourceType, body: Any) -> Result | None:
        """The existing document for a repeated deposit (same masterIdentifier, same content).

        Returns None when the masterIdentifier is new for the patient; raises 409
        `DUPLICATE_DOCUMENT` when it is taken by different content (or by a document the
        caller cannot see).
        """
        if not isinstance(body, dict):
            return None
        master = body.get("masterIdentifier")
        if not isinstance(master, dict) or not master.get("value"):
            return None
        patient_id = await _subject_patient(ctx, body)
        if patient_id is None:
            return None
        system, value = master.get("system", ""), str(master["value"])
        rows = [
            row
            for row in await documents_with_identifier(ctx.conn, patient_id, system, value)
            if _same_identifier(orjson.loads(row.json), system, value)
        ]
        if not rows:
            return None
        store = await _store(ctx)
        incoming = orjson.loads(orjson.dumps(body))  # facts are computed on a copy
        new_facts = sorted(await rules.complete_attachments(ctx, store, incoming, patient_id))
        for row in rows:
            existing = orjson.loads(row.json)
            facts = rules.stored_facts(existing)
            if facts is None:
                facts = await rules.complete_attachments(ctx, store, existing, patient_id)
            if sorted(facts) != new_facts:
                continue
            visible = await repository.get_current(
                ctx.conn, rules.DOCREF, row.id, ctx.policy(rtype)
            )
            if visible is None or visible.json is None:
                continue
            return replayed(
                rules.DOCREF,
                row.id,
                visible.json,
                visible.version_id,
                visible.last_updated,
                ctx.base,
            )
        raise FhirError.conflict(
            f"masterIdentifier {system}|{value} is already used by another document of this "
            "patient",
            "DUPLICATE_DOCUMENT",
        )

    async def before_write(self, ctx: HookContext, event: WriteEvent) -> dict[str, Any] | None:
        content = event.content
        if content is None or event.system_write:
            return content
        if event.is_create:
            check_accepts_deposits(ctx.identity, _json(event.patient), event.now)
        rules.check_required(content, ctx.identity)
        rules.add_default_confidentiality(content)
        await rules.complete_attachments(ctx, await _store(ctx), content, event.patient_id)
        previous = _json(event.previous)
        if previous is not None and content.get("status") == "superseded":
            rules.check_supersede_only(previous, content)
        return content

    async def after_write(self, ctx: HookContext, event: WriteEvent) -> None:
        if event.content is None or event.system_write or not event.is_create:
            return
        for target in rules.replaced_targets(event.content):
            await _supersede(ctx, target, event)
        DEPOSITS.labels("accepted", "").inc()


async def _subject_patient(ctx: HookContext, body: dict[str, Any]) -> str | None:
    """The Patient id a DocumentReference body names as subject (conditional resolved)."""
    subject = body.get("subject")
    ref = subject.get("reference") if isinstance(subject, dict) else None
    if not isinstance(ref, str):
        return None
    if "?" in ref:
        assert isinstance(subject, dict)
        await ctx.resolve_references({"subject": subject})
        ref = subject["reference"]
    split = split_reference(ref)
    if not split or split[0] != "Patient":
        return None
    return split[1]


def _same_identifier(content: dict[str, Any], system: str, value: str) -> bool:
    master = content.get("masterIdentifier") or {}
    return master.get("system", "") == system and str(master.get("value")) == value


async def _supersede(ctx: HookContext, target: str, event: WriteEvent) -> None:
    """Mark a replaced document `superseded` (a new version, same transaction)."""
    rtype = REGISTRY[rules.DOCREF]
    where = ["DocumentReference.relatesTo.target"]
    if target == event.id:
        raise FhirError.unprocessable("A document cannot replace itself", "INVALID_REFERENCE")
    current = await repository.get_current(
        ctx.conn, rules.DOCREF, target, ctx.policy(rtype), for_update=True
    )
    if current is None or current.deleted or current.json is None:
        raise FhirError.unprocessable(
            f"Replaced DocumentReference/{target} not found", "REFERENCE_NOT_FOUND", where
        )
    if current.patient_id != event.patient_id:
        raise FhirError.unprocessable(
            f"DocumentReference/{target} belongs to another patient",
            "REPLACES_OTHER_PATIENT",
            where,
        )
    old = orjson.loads(current.json)
    if old.get("status") != "current":
        raise FhirError.conflict(
            f"DocumentReference/{target} is '{old.get('status')}', not current: "
            "only a current document can be replaced",
            "DOCUMENT_NOT_CURRENT",
        )
    old["status"] = "superseded"
    await ctx.write_update(rtype, current, old)
