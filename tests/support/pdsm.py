"""PDSm-shaped ITI-65 Bundles as French vendors send them (synthetic data only).

A lab report (PDF), a hospital discharge letter and an imaging report, each a transaction
Bundle: List SubmissionSet, DocumentReference declaring the PDSm profile with a contained
author (PractitionerRole + Practitioner), custodian, securityLabel (confidentiality and
visibility codes of TRE_A07), the isArchived extension, and the Binary with the content.
"""

import base64
import hashlib
import uuid
from typing import Any

from espace_api.access.vocabulary import VISIBILITY_DISPLAY, VISIBILITY_SYSTEM
from espace_api.documents.rules import CONFIDENTIALITY, PDSM_BASE
from espace_api.fhir.registry import PDSM_IS_ARCHIVED_URL

PDSM_DOCUMENT = PDSM_BASE + "pdsm-comprehensive-document-reference"
LOINC = "http://loinc.org"
RPPS = "urn:oid:1.2.250.1.71.4.2.1"
FINESS = "http://finess.sante.gouv.fr"

# (LOINC document type, title, content type)
LAB_REPORT = ("11502-2", "CR d'examens biologiques", "application/pdf")
DISCHARGE_LETTER = ("11490-0", "Lettre de liaison à la sortie", "application/pdf")
IMAGING_REPORT = ("18748-4", "CR d'imagerie médicale", "application/pdf")


def pdf_of(title: str) -> bytes:
    """A small synthetic PDF whose text names the document (distinct each call)."""
    text = f"{title} {uuid.uuid4()}".encode()
    return b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n% " + text + b"\n%%EOF\n"


def urn() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def pdsm_bundle(
    patient_id: str,
    kind: tuple[str, str, str] = LAB_REPORT,
    *,
    visibility: tuple[str, ...] = (),
    data: bytes | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(transaction Bundle, its DocumentReference) for one PDSm deposit."""
    code, title, content_type = kind
    data = data if data is not None else pdf_of(title)
    bin_url, doc_url = urn(), urn()
    labels: list[dict[str, Any]] = [
        {"coding": [{"system": CONFIDENTIALITY, "code": "N", "display": "normal"}]}
    ]
    labels += [
        {"coding": [{"system": VISIBILITY_SYSTEM, "code": c, "display": VISIBILITY_DISPLAY[c]}]}
        for c in visibility
    ]
    author = [
        {
            "resourceType": "Practitioner",
            "id": "pract",
            "identifier": [{"system": RPPS, "value": "810000012345"}],
            "name": [{"family": "Synthèse", "given": ["Alex"], "prefix": ["Dr"]}],
        },
        {
            "resourceType": "PractitionerRole",
            "id": "author",
            "practitioner": {"reference": "#pract"},
            "organization": {"identifier": {"system": FINESS, "value": "010000001"}},
        },
    ]
    doc: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "meta": {"profile": [PDSM_DOCUMENT]},
        "contained": author,
        "extension": [{"url": PDSM_IS_ARCHIVED_URL, "valueBoolean": False}],
        "masterIdentifier": {
            "system": "urn:ietf:rfc:3986",
            "value": f"urn:oid:1.2.250.1.{uuid.uuid4().int % 10**15}",
        },
        "status": "current",
        "type": {"coding": [{"system": LOINC, "code": code, "display": title}]},
        "category": [{"coding": [{"system": LOINC, "code": code}]}],
        "subject": {"reference": f"Patient/{patient_id}"},
        "date": "2026-11-02T09:30:00+01:00",
        "author": [{"reference": "#author"}],
        "custodian": {
            "identifier": {"system": FINESS, "value": "010000001"},
            "display": "CH Synthèse",
        },
        "securityLabel": labels,
        "content": [
            {
                "attachment": {
                    "contentType": content_type,
                    "language": "fr-FR",
                    "url": bin_url,
                    "size": len(data),
                    "hash": base64.b64encode(hashlib.sha1(data).digest()).decode(),
                    "title": title,
                    "creation": "2026-11-02T09:00:00+01:00",
                },
                "format": {
                    "system": "http://ihe.net/fhir/ihe.formatcode.fhir/CodeSystem/formatcode",
                    "code": "urn:ihe:iti:xds-sd:pdf:2008",
                },
            }
        ],
        "context": {"period": {"start": "2026-11-01T08:00:00+01:00"}},
    }
    submission = {
        "resourceType": "List",
        "meta": {"profile": [PDSM_BASE + "pdsm-submissionset-comprehensive"]},
        "extension": [
            {
                "url": "https://profiles.ihe.net/ITI/MHD/StructureDefinition/ihe-sourceId",
                "valueIdentifier": {"value": "urn:oid:1.2.250.1.999.1"},
            }
        ],
        "identifier": [
            {
                "system": "urn:ietf:rfc:3986",
                "value": f"urn:oid:1.2.250.2.{uuid.uuid4().int % 10**15}",
            }
        ],
        "status": "current",
        "mode": "working",
        "code": {
            "coding": [
                {
                    "system": "https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes",
                    "code": "submissionset",
                }
            ]
        },
        "subject": {"reference": f"Patient/{patient_id}"},
        "date": "2026-11-02T09:31:00+01:00",
        "entry": [{"item": {"reference": doc_url}}],
    }
    binary = {
        "resourceType": "Binary",
        "contentType": content_type,
        "data": base64.b64encode(data).decode(),
    }
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": urn(),
                "resource": submission,
                "request": {"method": "POST", "url": "List"},
            },
            {
                "fullUrl": doc_url,
                "resource": doc,
                "request": {"method": "POST", "url": "DocumentReference"},
            },
            {
                "fullUrl": bin_url,
                "resource": binary,
                "request": {"method": "POST", "url": "Binary"},
            },
        ],
    }
    return bundle, doc
