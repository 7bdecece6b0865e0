"""What the resource service calls for documents (Binary content and ITI-65 rules).

Two calls, both inside the service's transaction (see docs/documents.md):

- `replay(ctx, rtype, body)` at the start of `service.create`: an ITI-65 deposit whose
  masterIdentifier the patient already has returns the existing document (200), or 409.
- `prepare(ctx, rtype, content, patient_id, id_, version_id)` at the end of
  `service._prepare`: moves inline Binary data to the blob store (and links it to the
  version), applies the DocumentReference deposit rules, supersedes replaced documents.
"""

from typing import TYPE_CHECKING, Any

import orjson

from espace_api.documents import binary, rules
from espace_api.documents.patient_state import check_accepts_deposits
from espace_api.fhir.errors import FhirError
from espace_api.fhir.registry import REGISTRY, ResourceType
from espace_api.fhir.values import split_reference
from espace_api.resources.results import Result, version_headers
from espace_api.storage import repository
from espace_api.storage.document_repository import documents_with_identifier
from espace_api.storage.repository import StoredRow

if TYPE_CHECKING:
    from espace_api.resources.service import Context


async def _store(ctx: "Context") -> Any:
    return await binary.store_for(ctx.conn.engine, ctx.settings, ctx.clock)


def _facts_key(facts: list[tuple[int, str]]) -> list[tuple[int, str]]:
    return sorted(facts)


async def replay(ctx: "Context", rtype: ResourceType, body: Any) -> Result | None:
    """The existing document for a repeated deposit (same masterIdentifier, same content).

    Returns None when the masterIdentifier is new for the patient; raises 409
    `DUPLICATE_DOCUMENT` when it is taken by different content (or by a document the caller
    cannot see).
    """
    if rtype.name != rules.DOCREF or not isinstance(body, dict):
        return None
    master = body.get("masterIdentifier")
    if not isinstance(master, dict) or not master.get("value"):
        return None
    subject = body.get("subject")
    ref = subject.get("reference") if isinstance(subject, dict) else None
    if not isinstance(ref, str):
        return None
    if "?" in ref:
        from espace_api.resources import service

        await service.resolve_conditional_references(ctx, {"subject": subject})
        ref = subject["reference"]
    split = split_reference(ref)
    if not split or split[0] != "Patient":
        return None
    patient_id = split[1]
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
    new_facts = await rules.complete_attachments(ctx, store, incoming, patient_id)
    for row in rows:
        existing = orjson.loads(row.json)
        facts = rules.stored_facts(existing)
        if facts is None:
            facts = await rules.complete_attachments(ctx, store, existing, patient_id)
        if _facts_key(facts) != _facts_key(new_facts):
            continue
        visible = await repository.get_current(ctx.conn, rules.DOCREF, row.id, ctx.policy(rtype))
        if visible is None or visible.json is None:
            continue
        result = Result(
            200,
            visible.json,
            resource_type=rules.DOCREF,
            id=row.id,
            version_id=visible.version_id,
            last_updated=visible.last_updated,
        )
        return version_headers(result, ctx.base, location=True)
    raise FhirError.conflict(
        f"masterIdentifier {system}|{value} is already used by another document of this patient",
        "DUPLICATE_DOCUMENT",
    )


def _same_identifier(content: dict[str, Any], system: str, value: str) -> bool:
    master = content.get("masterIdentifier") or {}
    return master.get("system", "") == system and str(master.get("value")) == value


async def prepare(
    ctx: "Context",
    rtype: ResourceType,
    content: dict[str, Any],
    patient_id: str | None,
    id_: str,
    version_id: int,
    patient: StoredRow | None = None,
) -> dict[str, Any]:
    """Apply document rules to a validated resource about to be written; return it.

    `patient` is the compartment Patient's current row, as the service read it."""
    if rtype.name == binary.BINARY:
        if version_id == 1:
            check_accepts_deposits(ctx.identity, patient)
        if "data" in content:
            store = await _store(ctx)
            content, info = await binary.ingest_inline(store, ctx.settings, content, patient_id)
            if info is not None and patient_id is not None:
                await binary.link(ctx.conn, patient_id, id_, version_id, info)
        return content
    if rtype.name != rules.DOCREF or rules.superseding.get():
        return content
    if version_id == 1:
        check_accepts_deposits(ctx.identity, patient)
    rules.check_required(content, ctx.identity)
    rules.add_default_confidentiality(content)
    await rules.complete_attachments(ctx, await _store(ctx), content, patient_id)
    if version_id == 1:
        await supersede(ctx, rules.replaced_targets(content), patient_id, id_)
    return content


async def supersede(
    ctx: "Context", targets: list[str], patient_id: str | None, new_id: str
) -> None:
    """Mark each replaced document `superseded` (a new version, same transaction)."""
    from espace_api.resources import service

    rtype = REGISTRY[rules.DOCREF]
    for target in targets:
        where = ["DocumentReference.relatesTo.target"]
        if target == new_id:
            raise FhirError.unprocessable("A document cannot replace itself", "INVALID_REFERENCE")
        current = await repository.get_current(
            ctx.conn, rules.DOCREF, target, ctx.policy(rtype), for_update=True
        )
        if current is None or current.deleted or current.json is None:
            raise FhirError.unprocessable(
                f"Replaced DocumentReference/{target} not found", "REFERENCE_NOT_FOUND", where
            )
        if current.patient_id != patient_id:
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
        token = rules.superseding.set(True)
        try:
            await service.write_update(ctx, rtype, current, old)
        finally:
            rules.superseding.reset(token)
