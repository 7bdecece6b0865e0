"""Helpers for the document tests: the documents wiring, PDSm-complete deposits, content."""

import base64
import hashlib
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from espace_api.documents import hooks, setup
from espace_api.resources import service, transaction
from tests.support.fhir import LOINC

PDF = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n" + b"x" * 2000 + b"\n%%EOF\n"
SYSTEM_SCOPES = "system/DocumentReference.crs system/Binary.crs system/Patient.s system/List.c"


def sha1_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha1(data).digest()).decode()


def pdf(size: int = 3000) -> bytes:
    """A synthetic PDF of about `size` bytes (distinct each call)."""
    body = uuid.uuid4().hex.encode() * max(1, (size - 40) // 32)
    return b"%PDF-1.7\n" + body + b"\n%%EOF\n"


def pdsm_document(patient_id: str, url: str | None = None, **extra: Any) -> dict[str, Any]:
    """A DocumentReference with every element the French MHD profile requires."""
    attachment: dict[str, Any] = {"contentType": "application/pdf", "title": "Compte rendu"}
    if url is not None:
        attachment["url"] = url
    doc: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "masterIdentifier": {
            "system": "urn:ietf:rfc:3986",
            "value": f"urn:oid:1.2.250.{uuid.uuid4().int % 10**12}",
        },
        "status": "current",
        "type": {"coding": [{"system": LOINC, "code": "11502-2"}]},
        "category": [{"coding": [{"system": LOINC, "code": "11502-2"}]}],
        "subject": {"reference": f"Patient/{patient_id}"},
        "date": "2024-03-01T10:00:00Z",
        "author": [{"reference": "Practitioner/rpps-10001"}],
        "custodian": {"reference": "Organization/finess-123456789"},
        "content": [{"attachment": attachment}],
        "context": {"period": {"start": "2024-03-01T08:00:00Z"}},
    }
    doc.update(extra)
    return doc


def binary_resource(patient_id: str, data: bytes, content_type: str = "application/pdf") -> dict:
    return {
        "resourceType": "Binary",
        "contentType": content_type,
        "securityContext": {"reference": f"Patient/{patient_id}"},
        "data": base64.b64encode(data).decode(),
    }


@pytest.fixture
def documents_routes(app: Any) -> Iterator[Any]:
    """The Binary content routes installed ahead of the generic ones, for one test."""
    saved = list(app.router.routes)
    was = getattr(app.state, "documents_installed", False)
    app.state.documents_installed = False
    setup.install(app)
    yield app
    app.router.routes[:] = saved
    app.state.documents_installed = was


@pytest.fixture
def wired(monkeypatch: pytest.MonkeyPatch, documents_routes: Any) -> Iterator[None]:
    """The service calling the document hooks as docs/documents.md asks; a no-op once the
    service does it itself (it then imports `documents.hooks as document_hooks`)."""
    if not hasattr(service, "document_hooks"):
        original_create = service.create
        original_prepare = service._prepare

        async def create(ctx, rtype, body, *, if_none_exist=None, id_=None):  # type: ignore[no-untyped-def]
            service.policy.require_scope(ctx.identity, rtype, "c")
            existing = await hooks.replay(ctx, rtype, body)
            if existing is not None:
                return existing
            return await original_create(ctx, rtype, body, if_none_exist=if_none_exist, id_=id_)

        async def prepare(ctx, rtype, body, id_, version_id, now):  # type: ignore[no-untyped-def]
            content, patient_id = await original_prepare(ctx, rtype, body, id_, version_id, now)
            content = await hooks.prepare(ctx, rtype, content, patient_id, id_, version_id)
            return content, patient_id

        monkeypatch.setattr(service, "create", create)
        monkeypatch.setattr(service, "_prepare", prepare)
    original_rewrite = transaction._rewrite

    def rewrite(entries, mapping):  # type: ignore[no-untyped-def]
        # FHIR transactions rewrite urn:uuid in `url` elements too (Attachment.url -> Binary).
        for entry in entries:
            if isinstance(entry.resource, dict):
                for item in entry.resource.get("content") or []:
                    att = item.get("attachment") if isinstance(item, dict) else None
                    if isinstance(att, dict) and att.get("url") in mapping:
                        att["url"] = mapping[att["url"]]
        return original_rewrite(entries, mapping)

    monkeypatch.setattr(transaction, "_rewrite", rewrite)
    yield None


async def chunks(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]
