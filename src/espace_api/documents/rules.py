"""IHE MHD ITI-65 deposit rules for DocumentReference (French PDSm profile), issue 4.

- Required metadata (professional deposits, i.e. `system` and `user` callers): masterIdentifier,
  status, type, category, subject, content.attachment (contentType, url or data), as IHE MHD
  writes them. A document declaring the French PDSm profile in `meta.profile` must also carry
  date, author, custodian, attachment title, size and hash, and context.period.start. Every
  missing element is one issue of a 422 `MISSING_METADATA`. Patients adding their own
  documents need subject and content only.
- Content: contentType on the allow-list; bytes (inline `data` or the referenced `Binary`)
  matching it; `size` and `hash` (base64 SHA-1) computed when absent, verified when present
  (422 `SIZE_MISMATCH` / `HASH_MISMATCH`).
- Confidentiality: a securityLabel from v3-Confidentiality is added (N) when none is given.
- Idempotency: a create whose masterIdentifier the patient already has returns the existing
  document (200) when the content is the same, else 409 `DUPLICATE_DOCUMENT`.
- relatesTo `replaces`: the target (same patient) becomes `superseded` in the same transaction;
  replacing a document that is not `current` is 409 `DOCUMENT_NOT_CURRENT`.
- A deposit into a closed space, or the space of a person who opposed it, is refused
  (see `lifecycle.state`).
"""

import base64
import binascii
import hashlib
from typing import Any

import orjson

from espace_api.auth.identity import Identity
from espace_api.blobs import BlobStore
from espace_api.documents import binary
from espace_api.documents.content import check_allowed, check_signature, media_type
from espace_api.fhir.errors import FhirError
from espace_api.fhir.registry import REGISTRY
from espace_api.fhir.values import split_reference
from espace_api.resources.behaviour import HookContext
from espace_api.storage import repository

DOCREF = "DocumentReference"
CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
PROFESSIONAL_KINDS = frozenset({"system", "user"})
# The French MHD profiles (ANS "PDSm", interop.esante.gouv.fr/ig/fhir/pdsm): a document that
# declares one of them in meta.profile must carry its extra required elements.
PDSM_BASE = "https://interop.esante.gouv.fr/ig/fhir/pdsm/StructureDefinition/"
PDSM_PROFILES = frozenset(
    PDSM_BASE + name
    for name in ("pdsm-comprehensive-document-reference", "pdsm-simplified-publish")
)


def _present(value: Any) -> bool:
    return value not in (None, "", [], {})


def _get(node: Any, *path: str | int) -> Any:
    for part in path:
        if isinstance(part, int):
            node = node[part] if isinstance(node, list) and len(node) > part else None
        else:
            node = node.get(part) if isinstance(node, dict) else None
    return node


def declares_pdsm(content: dict[str, Any]) -> bool:
    """Whether the document declares a French PDSm profile in `meta.profile`."""
    profiles = _get(content, "meta", "profile")
    return isinstance(profiles, list) and any(
        isinstance(p, str) and p.split("|")[0] in PDSM_PROFILES for p in profiles
    )


def missing_metadata(content: dict[str, Any], identity: Identity) -> list[str]:
    """FHIRPath-like expressions of the required elements that are missing."""
    missing: list[str] = []
    professional = identity.kind in PROFESSIONAL_KINDS
    pdsm = professional and declares_pdsm(content)
    need = ["subject"]
    if professional:
        need = ["masterIdentifier", "status", "type", "category", "subject"]
    if pdsm:
        need += ["date", "author", "custodian"]
    for name in need:
        if not _present(content.get(name)):
            missing.append(f"DocumentReference.{name}")
    if name_value := content.get("masterIdentifier"):
        if not _present(name_value.get("value")):
            missing.append("DocumentReference.masterIdentifier.value")
    contents = content.get("content")
    if not contents:
        missing.append("DocumentReference.content")
    for i, item in enumerate(contents or []):
        att = item.get("attachment") or {}
        where = f"DocumentReference.content[{i}].attachment"
        if not _present(att.get("contentType")):
            missing.append(f"{where}.contentType")
        if not _present(att.get("url")) and not _present(att.get("data")):
            missing.append(f"{where}.url")
        if pdsm:
            missing += [
                f"{where}.{n}" for n in ("title", "size", "hash") if not _present(att.get(n))
            ]
    if pdsm and not _present(_get(content, "context", "period", "start")):
        missing.append("DocumentReference.context.period.start")
    return missing


def check_required(content: dict[str, Any], identity: Identity) -> None:
    """422 `MISSING_METADATA`, one issue per missing element."""
    missing = missing_metadata(content, identity)
    if not missing:
        return
    issues = [
        {
            "severity": "error",
            "code": "required",
            "diagnostics": f"{path} is required",
            "expression": [path],
        }
        for path in missing
    ]
    raise FhirError(
        422,
        "MISSING_METADATA",
        f"{missing[0]} is required"
        + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""),
        issue_type="required",
        expression=[missing[0]],
        extra_issues=issues[1:],
    )


def add_default_confidentiality(content: dict[str, Any]) -> None:
    """Add confidentiality N (normal) unless a v3-Confidentiality label is present."""
    labels = content.setdefault("securityLabel", [])
    for label in labels:
        for coding in label.get("coding", []):
            if coding.get("system") == CONFIDENTIALITY:
                return
    labels.append({"coding": [{"system": CONFIDENTIALITY, "code": "N", "display": "normal"}]})


def binary_id(url: str, base_url: str) -> str | None:
    """`Binary/x`, `<base>/Binary/x` (optionally `/_history/n`) -> `x`; None otherwise."""
    rest = url
    if url.startswith(base_url.rstrip("/") + "/"):
        rest = url[len(base_url.rstrip("/")) + 1 :]
    parts = rest.split("/")
    if len(parts) in (2, 4) and parts[0] == binary.BINARY and parts[1]:
        if len(parts) == 2 or parts[2] == "_history":
            return parts[1]
    return None


def _sha1_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha1(data, usedforsecurity=False).digest()).decode("ascii")


def _same_hash(given: Any, actual: str) -> bool:
    if not isinstance(given, str):
        return False
    try:
        return base64.b64decode(given, validate=True) == base64.b64decode(actual)
    except (binascii.Error, ValueError):
        return False


async def attachment_facts(
    ctx: HookContext, store: BlobStore, att: dict[str, Any], patient_id: str | None, where: str
) -> tuple[str, int, str]:
    """(media type, size, base64 SHA-1) of an attachment's actual content.

    Inline `data` is decoded and checked; a `url` must name a Binary of the same patient
    that the caller can see, whose stored content is used.
    """
    mt = check_allowed(att.get("contentType"), ctx.settings, where=f"{where}.contentType")
    if _present(att.get("data")):
        raw = binary.decode_data(att["data"], f"{where}.data")
        check_signature(mt, raw, complete=True, where=f"{where}.data")
        return mt, len(raw), _sha1_b64(raw)
    url = att.get("url")
    bid = binary_id(url, ctx.settings.base_url) if isinstance(url, str) else None
    if bid is None:
        raise FhirError.unprocessable(
            f"{where}.url must reference a Binary of this server (Binary/id)",
            "ATTACHMENT_URL_NOT_SUPPORTED",
            expression=[f"{where}.url"],
        )
    row = await repository.get_current(
        ctx.conn, binary.BINARY, bid, ctx.policy(REGISTRY[binary.BINARY])
    )
    if row is None or row.deleted or row.json is None:
        raise FhirError.unprocessable(
            f"{where}.url: Binary/{bid} not found", "REFERENCE_NOT_FOUND", [f"{where}.url"]
        )
    if row.patient_id != patient_id:
        raise FhirError.unprocessable(
            f"{where}.url: Binary/{bid} belongs to another patient",
            "BINARY_OTHER_PATIENT",
            [f"{where}.url"],
        )
    stored = orjson.loads(row.json)
    if media_type(stored.get("contentType")) != mt:
        raise FhirError(
            422,
            "CONTENT_TYPE_MISMATCH",
            f"{where}.contentType '{mt}' differs from Binary/{bid}'s "
            f"'{media_type(stored.get('contentType'))}'",
            issue_type="value",
            expression=[f"{where}.contentType"],
        )
    assert row.patient_id is not None  # a Binary lives in a patient's compartment
    info = ctx.blobs.get((bid, row.version_id))  # written by this request: known
    if info is None:
        info = await binary.content_of(ctx.conn, store, row.patient_id, bid, row.version_id)
    if info is not None:
        return mt, info.size, info.sha1
    if _present(stored.get("data")):  # a Binary stored inline (before blobs were wired)
        raw = binary.decode_data(stored["data"], "Binary.data")
        return mt, len(raw), _sha1_b64(raw)
    raise FhirError.unprocessable(
        f"{where}.url: Binary/{bid} has no content", "REFERENCE_NOT_FOUND", [f"{where}.url"]
    )


async def complete_attachments(
    ctx: HookContext, store: BlobStore, content: dict[str, Any], patient_id: str | None
) -> list[tuple[int, str]]:
    """Fill in or verify each attachment's size and hash; return the (size, hash) list."""
    facts: list[tuple[int, str]] = []
    for i, item in enumerate(content.get("content") or []):
        att = item.setdefault("attachment", {})
        where = f"DocumentReference.content[{i}].attachment"
        facts.append(await complete_attachment(ctx, store, att, patient_id, where))
    return facts


async def complete_attachment(
    ctx: HookContext, store: BlobStore, att: dict[str, Any], patient_id: str | None, where: str
) -> tuple[int, str]:
    """Check one attachment's content (allow-list, magic numbers, the Binary it names) and
    fill in or verify its size and hash (documents, and messages' attachments)."""
    _, size, sha1 = await attachment_facts(ctx, store, att, patient_id, where)
    if "size" in att and att["size"] != size:
        raise FhirError.unprocessable(
            f"{where}.size is {att['size']} but the content has {size} bytes",
            "SIZE_MISMATCH",
            [f"{where}.size"],
        )
    if "hash" in att and not _same_hash(att["hash"], sha1):
        raise FhirError.unprocessable(
            f"{where}.hash is not the SHA-1 of the content", "HASH_MISMATCH", [f"{where}.hash"]
        )
    att["size"], att["hash"] = size, sha1
    return size, sha1


def stored_facts(content: dict[str, Any]) -> list[tuple[int, str]] | None:
    """(size, hash) of a stored document's attachments (None if some are unknown)."""
    facts = []
    for item in content.get("content") or []:
        att = item.get("attachment") or {}
        if not isinstance(att.get("size"), int) or not isinstance(att.get("hash"), str):
            return None
        facts.append((att["size"], att["hash"]))
    return facts


# What a superseding write may differ in from the version it replaces (the DMP's replacement:
# the old document is PUT with status=superseded and nothing else changed).
_SUPERSEDE_FREE = frozenset({"id", "meta", "text", "status"})


def check_supersede_only(previous: dict[str, Any], content: dict[str, Any]) -> None:
    """422 `SUPERSEDE_CHANGES_OTHER` when a write setting `superseded` changes anything else."""
    changed = sorted(
        key
        for key in (set(previous) | set(content)) - _SUPERSEDE_FREE
        if previous.get(key) != content.get(key)
    )
    if changed:
        raise FhirError.unprocessable(
            "Superseding a document changes its status only; this write also changes "
            + ", ".join(changed),
            "SUPERSEDE_CHANGES_OTHER",
            [f"DocumentReference.{key}" for key in changed],
        )


def replaced_targets(content: dict[str, Any]) -> list[str]:
    """Ids of the DocumentReferences this one `replaces`."""
    ids = []
    for rel in content.get("relatesTo") or []:
        if rel.get("code") != "replaces":
            continue
        ref = _get(rel, "target", "reference")
        split = split_reference(ref) if isinstance(ref, str) else None
        if not split or split[0] != DOCREF:
            raise FhirError.unprocessable(
                "relatesTo.target of a replacement must reference a DocumentReference",
                "INVALID_REFERENCE",
                ["DocumentReference.relatesTo.target"],
            )
        ids.append(split[1])
    return ids
