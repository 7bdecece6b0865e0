"""Helpers for the document tests: the documents wiring, PDSm-complete deposits, content."""

import base64
import hashlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

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


async def chunks(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]
