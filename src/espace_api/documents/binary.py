"""Binary resources whose bytes live in the blob store (ARCHITECTURE.md principle 4).

A stored Binary row keeps `contentType` and `securityContext` only; its bytes are a blob of
the patient, linked by a `blob_refs` row (resource type, id, version -> sha256) written in the
same transaction as the Binary version. `securityContext` must name the Patient (that is what
puts the Binary in the patient's compartment, and the blob key is per patient). In a
transaction Bundle a Binary may leave it out, as IHE MHD's examples do: it then belongs to the
patient of the DocumentReference whose attachment points at it (`subjects_in_bundle`).

The blob store of an engine is opened once per process (`store_for`), or installed by the
application at start-up (`documents.setup.start`).
"""

import base64
import binascii
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from espace_api.blobs import BlobInfo, BlobStore, open_blob_store
from espace_api.clock import Clock
from espace_api.config import Settings
from espace_api.documents.content import check_allowed, check_signature
from espace_api.fhir.errors import FhirError
from espace_api.storage import blob_repository as blob_repo

BINARY = "Binary"

_stores: dict[int, tuple[AsyncEngine, BlobStore]] = {}


def install_store(engine: AsyncEngine, store: BlobStore) -> None:
    """Make `store` the blob store used with `engine` (application start-up, tests)."""
    _stores[id(engine.sync_engine)] = (engine, store)


def remove_store(engine: AsyncEngine) -> BlobStore | None:
    """Forget the blob store of `engine` (application shutdown); returns it."""
    entry = _stores.pop(id(engine.sync_engine), None)
    return entry[1] if entry else None


async def store_for(engine: AsyncEngine, settings: Settings, clock: Clock) -> BlobStore:
    """The blob store used with `engine`, opened from settings on first use."""
    entry = _stores.get(id(engine.sync_engine))
    if entry is not None and entry[0] is engine:
        return entry[1]
    store = await open_blob_store(settings, engine, clock)
    install_store(engine, store)
    return store


def decode_data(data: Any, where: str) -> bytes:
    """Base64 `data` element -> bytes (400 when it is not base64)."""
    if not isinstance(data, str):
        raise FhirError.bad_request(f"{where} must be base64", "INVALID_RESOURCE")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise FhirError.bad_request(
            f"{where} is not valid base64", "INVALID_RESOURCE", expression=[where]
        ) from None


def subjects_in_bundle(ref: str, bundle: Sequence[dict[str, Any]]) -> set[str | None]:
    """The subjects (None for a missing one) of the Bundle's DocumentReferences whose
    attachment is `ref` (Binary/id)."""
    return {
        (doc.get("subject") or {}).get("reference")
        for doc in bundle
        if doc.get("resourceType") == "DocumentReference"
        for item in doc.get("content") or []
        if _points_at((item.get("attachment") or {}).get("url"), ref)
    }


def _points_at(url: Any, ref: str) -> bool:
    return isinstance(url, str) and (url == ref or url.endswith("/" + ref))


def require_patient(patient_id: str | None) -> str:
    """A Binary's patient, or 422 when its securityContext does not name one."""
    if not patient_id:
        raise FhirError.unprocessable(
            "Binary.securityContext must reference the Patient the content belongs to (in a "
            "transaction it may be left out when one DocumentReference of the Bundle points "
            "at the Binary)",
            "BINARY_PATIENT_REQUIRED",
            expression=["Binary.securityContext"],
        )
    return patient_id


async def ingest_inline(
    store: BlobStore, settings: Settings, content: dict[str, Any], patient_id: str | None
) -> tuple[dict[str, Any], BlobInfo | None]:
    """Move an inline `Binary.data` into the blob store; return the content without it.

    Checks the content type (allow-list, magic numbers). A Binary without data is returned
    unchanged with no blob.
    """
    if "data" not in content:
        return content, None
    patient = require_patient(patient_id)
    mt = check_allowed(content.get("contentType"), settings, where="Binary.contentType")
    raw = decode_data(content["data"], "Binary.data")
    check_signature(mt, raw, complete=True, where="Binary.data")
    info = await store.put(patient, raw, max_bytes=settings.max_body_bytes)
    stripped = {k: v for k, v in content.items() if k != "data"}
    return stripped, info


async def link(
    conn: AsyncConnection, patient_id: str, id_: str, version_id: int, info: BlobInfo
) -> None:
    """Record that Binary/id version `version_id` is the blob (same transaction as the row)."""
    await blob_repo.add_blob_refs(conn, patient_id, BINARY, id_, version_id, [info.sha256])


async def content_of(
    conn: AsyncConnection, store: BlobStore, patient_id: str, id_: str, version_id: int
) -> BlobInfo | None:
    """The blob of one Binary version (None for a Binary stored without blob)."""
    shas = await blob_repo.refs_of_version(conn, patient_id, BINARY, id_, version_id)
    if not shas:
        return None
    return await store.stat(patient_id, shas[0])
