"""Synthetic FHIR fixtures (test identities only: INS test OID 1.2.250.1.213.1.4.10)."""

import uuid
from typing import Any

INS_TEST = "urn:oid:1.2.250.1.213.1.4.10"
LOINC = "http://loinc.org"
FHIR_JSON = {"Content-Type": "application/fhir+json"}


def new_ins() -> str:
    """A random 15-digit synthetic test INS."""
    return str(uuid.uuid4().int)[:15]


def patient(family: str = "Testeur", given: str = "Camille", ins: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": INS_TEST, "value": ins or new_ins()}],
        "name": [{"family": family, "given": [given]}],
        "gender": "female",
        "birthDate": "1980-05-17",
        **extra,
    }


def document(patient_id: str, code: str = "11488-4", date: str = "2024-03-01T10:00:00Z", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "DocumentReference",
        "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:oid:1.2.3.{uuid.uuid4().int % 10**12}"},
        "status": "current",
        "type": {"coding": [{"system": LOINC, "code": code}]},
        "category": [{"coding": [{"system": LOINC, "code": "11488-4"}]}],
        "subject": {"reference": f"Patient/{patient_id}"},
        "date": date,
        "author": [{"reference": "Practitioner/rpps-10001"}],
        "content": [{"attachment": {"contentType": "text/plain", "data": "SGVsbG8="}}],
        **extra,
    }


async def create(client: Any, headers: dict[str, str], resource: dict[str, Any]) -> dict[str, Any]:
    """POST a resource and return the created body (asserting 201)."""
    r = await client.post(f"/{resource['resourceType']}", json=resource, headers={**headers, **FHIR_JSON})
    assert r.status_code == 201, r.text
    return r.json()
