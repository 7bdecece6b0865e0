"""Examples of the OpenAPI document: an ITI-65 deposit, a Patient lookup by INS and a search
answer. Synthetic data (INS test OID), fixed values so that the document does not drift;
tests/test_openapi_document.py posts the deposit example to the server and checks that it
is accepted."""

import base64
import hashlib
from typing import Any, NamedTuple

from espace_api.documents.rules import CONFIDENTIALITY, PDSM_BASE
from espace_api.fhir.ins import INS_TEST_NIR
from espace_api.fhir.registry import MHD_SOURCE_ID_URL

LOINC = "http://loinc.org"
INS = f"{INS_TEST_NIR}|248039912345678"
PATIENT = "Patient/example-patient"
BASE = "https://espace.example.org"
CONTENT = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n% Compte rendu\n%%EOF\n"
DOC_URL = "urn:uuid:5f2c3a1e-8d4b-4c7a-9e1f-2b3c4d5e6f70"
BIN_URL = "urn:uuid:5f2c3a1e-8d4b-4c7a-9e1f-2b3c4d5e6f71"
LIST_URL = "urn:uuid:5f2c3a1e-8d4b-4c7a-9e1f-2b3c4d5e6f72"


class Example(NamedTuple):
    name: str
    summary: str
    request: dict[str, Any] | None = None
    query: dict[str, str] | None = None
    response: dict[str, Any] | None = None


def document_reference(patient: str = PATIENT, binary_url: str = BIN_URL) -> dict[str, Any]:
    """A DocumentReference with what IHE MHD and the French PDSm profile require."""
    return {
        "resourceType": "DocumentReference",
        "meta": {"profile": [PDSM_BASE + "pdsm-comprehensive-document-reference"]},
        "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": "urn:oid:1.2.250.1.999.7.1"},
        "status": "current",
        "type": {"coding": [{"system": LOINC, "code": "11502-2", "display": "CR de biologie"}]},
        "category": [{"coding": [{"system": LOINC, "code": "11502-2"}]}],
        "subject": {"reference": patient},
        "date": "2026-11-02T09:30:00+01:00",
        "author": [{"reference": "Practitioner/rpps-810000012345"}],
        "custodian": {"reference": "Organization/finess-010000001"},
        "securityLabel": [{"coding": [{"system": CONFIDENTIALITY, "code": "N"}]}],
        "content": [
            {
                "attachment": {
                    "contentType": "application/pdf",
                    "url": binary_url,
                    "size": len(CONTENT),
                    "hash": base64.b64encode(hashlib.sha1(CONTENT).digest()).decode(),
                    "title": "Compte rendu d'examens biologiques",
                    "creation": "2026-11-02T09:00:00+01:00",
                }
            }
        ],
        "context": {"period": {"start": "2026-11-01T08:00:00+01:00"}},
    }


def iti65_bundle(patient: str = PATIENT) -> dict[str, Any]:
    """A complete ITI-65 Provide Document Bundle: SubmissionSet, DocumentReference, Binary."""
    submission = {
        "resourceType": "List",
        "extension": [{"url": MHD_SOURCE_ID_URL, "valueIdentifier": {"value": "urn:oid:1.2.3"}}],
        "identifier": [{"system": "urn:ietf:rfc:3986", "value": "urn:oid:1.2.250.1.999.8.1"}],
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
        "subject": {"reference": patient},
        "date": "2026-11-02T09:31:00+01:00",
        "entry": [{"item": {"reference": DOC_URL}}],
    }
    binary = {
        "resourceType": "Binary",
        "contentType": "application/pdf",
        "data": base64.b64encode(CONTENT).decode(),
    }
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": LIST_URL,
                "resource": submission,
                "request": {"method": "POST", "url": "List"},
            },
            {
                "fullUrl": DOC_URL,
                "resource": document_reference(patient),
                "request": {"method": "POST", "url": "DocumentReference"},
            },
            {
                "fullUrl": BIN_URL,
                "resource": binary,
                "request": {"method": "POST", "url": "Binary"},
            },
        ],
    }


def _searchset(resource: dict[str, Any], url: str) -> dict[str, Any]:
    rtype, id_ = resource["resourceType"], resource["id"]
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": 1,
        "link": [{"relation": "self", "url": url}],
        "entry": [
            {"fullUrl": f"{BASE}/{rtype}/{id_}", "resource": resource, "search": {"mode": "match"}}
        ],
    }


def _patient() -> dict[str, Any]:
    system, value = INS.split("|")
    return {
        "resourceType": "Patient",
        "id": "example-patient",
        "meta": {"versionId": "1", "lastUpdated": "2026-11-02T08:00:00Z"},
        "identifier": [{"system": system, "value": value}],
        "name": [{"family": "Testeur", "given": ["Camille"]}],
        "birthDate": "1980-03-24",
        "gender": "female",
    }


def _stored_document() -> dict[str, Any]:
    doc = document_reference(binary_url=f"{BASE}/Binary/example-binary")
    doc.update(
        id="example-document", meta={"versionId": "1", "lastUpdated": "2026-11-02T08:31:00Z"}
    )
    return doc


EXAMPLES: dict[tuple[str, str], Example] = {
    ("POST", "/"): Example(
        "iti65",
        "ITI-65 Provide Document Bundle (SubmissionSet, DocumentReference, Binary)",
        request=iti65_bundle(),
    ),
    ("GET", "/Patient"): Example(
        "ins-lookup",
        "A vendor finds the Patient by INS (exact identifier=system|value)",
        query={"identifier": INS},
        response=_searchset(_patient(), f"{BASE}/Patient?identifier={INS}"),
    ),
    ("GET", "/DocumentReference"): Example(
        "patient-documents",
        "A patient's lab reports (ITI-67)",
        query={"patient": "example-patient", "type": f"{LOINC}|11502-2"},
        response=_searchset(
            _stored_document(),
            f"{BASE}/DocumentReference?patient=example-patient&type={LOINC}|11502-2",
        ),
    ),
}


def for_operation(path: str, method: str) -> Example | None:
    return EXAMPLES.get((method, path))
