"""Synthetic FHIR fixtures (test identities only: INS test OID 1.2.250.1.213.1.4.10)."""

import uuid
from typing import Any

INS_TEST = "urn:oid:1.2.250.1.213.1.4.10"
# A hospital's local patient number (IPP): not an INS, so several Patients may share one.
LOCAL_ID = "urn:oid:1.2.250.1.71.4.2.7.999"
LOINC = "http://loinc.org"
FHIR_JSON = {"Content-Type": "application/fhir+json"}


def new_ins() -> str:
    """A random 15-digit synthetic test INS."""
    return str(uuid.uuid4().int)[:15]


def patient(
    family: str = "Testeur", given: str = "Camille", ins: str | None = None, **extra: Any
) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": INS_TEST, "value": ins or new_ins()}],
        "name": [{"family": family, "given": [given]}],
        "gender": "female",
        "birthDate": "1980-05-17",
        **extra,
    }


def document(
    patient_id: str, code: str = "11488-4", date: str = "2024-03-01T10:00:00Z", **extra: Any
) -> dict[str, Any]:
    return {
        "resourceType": "DocumentReference",
        "masterIdentifier": {
            "system": "urn:ietf:rfc:3986",
            "value": f"urn:oid:1.2.3.{uuid.uuid4().int % 10**12}",
        },
        "status": "current",
        "type": {"coding": [{"system": LOINC, "code": code}]},
        "category": [{"coding": [{"system": LOINC, "code": "11488-4"}]}],
        "subject": {"reference": f"Patient/{patient_id}"},
        "date": date,
        "author": [{"reference": "Practitioner/rpps-10001"}],
        "custodian": {"reference": "Organization/finess-123456789"},
        "content": [
            {
                "attachment": {
                    "contentType": "text/plain",
                    "data": "SGVsbG8=",
                    "title": "Compte rendu de consultation",
                }
            }
        ],
        "context": {"period": {"start": date[:10]}},
        **extra,
    }


async def create(client: Any, headers: dict[str, str], resource: dict[str, Any]) -> dict[str, Any]:
    """POST a resource and return the created body (asserting 201)."""
    r = await client.post(
        f"/{resource['resourceType']}", json=resource, headers={**headers, **FHIR_JSON}
    )
    assert r.status_code == 201, r.text
    return r.json()


def consent(
    patient_id: str, status: str = "active", category: str = "59284-0", **extra: Any
) -> dict[str, Any]:
    return {
        "resourceType": "Consent",
        "status": status,
        "scope": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                    "code": "patient-privacy",
                }
            ]
        },
        "category": [{"coding": [{"system": LOINC, "code": category}]}],
        "patient": {"reference": f"Patient/{patient_id}"},
        **extra,
    }


def communication(
    patient_id: str, sent: str = "2024-03-01T10:00:00Z", status: str = "completed", **extra: Any
) -> dict[str, Any]:
    return {
        "resourceType": "Communication",
        "status": status,
        "subject": {"reference": f"Patient/{patient_id}"},
        "sender": {"reference": "Practitioner/rpps-10001"},
        "recipient": [{"reference": f"Patient/{patient_id}"}],
        "sent": sent,
        "payload": [{"contentString": "Bonjour"}],
        **extra,
    }


async def search(client: Any, headers: dict[str, str], path: str, **params: Any) -> dict[str, Any]:
    """GET a search and return the Bundle (asserting 200)."""
    r = await client.get(path, params=params, headers=headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["resourceType"] == "Bundle" and body["type"] == "searchset"
    return body


def created(response: Any, resource_type: str = "DocumentReference") -> dict[str, Any]:
    """The first resource of a type in a transaction-response (the one a deposit wrote)."""
    return next(
        e["resource"]
        for e in response.json()["entry"]
        if e["resource"]["resourceType"] == resource_type
    )


def ids(bundle: dict[str, Any], mode: str | None = "match") -> list[str]:
    """Ids of a Bundle's entries (of one search mode; None = all), in order."""
    return [
        e["resource"]["id"]
        for e in bundle.get("entry", [])
        if mode is None or e.get("search", {}).get("mode") == mode
    ]


CONSENT_KIND = "https://espace-api.org/fhir/CodeSystem/consent-kind"
PRO_SCOPES = "user/*.rs user/Consent.cud"


def privacy_consent(
    patient_id: str,
    kind: str,
    *,
    actors: list[dict[str, Any]] | None = None,
    data: list[str] | None = None,
    status: str = "active",
    **provision: Any,
) -> dict[str, Any]:
    """A Consent of one espace-api kind (care-relationship, mask, block, ...)."""
    prov: dict[str, Any] = dict(provision)
    if actors:
        prov["actor"] = [
            {
                "role": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                            "code": "IRCP",
                        }
                    ]
                },
                "reference": ref,
            }
            for ref in actors
        ]
    if data:
        prov["data"] = [{"meaning": "instance", "reference": {"reference": d}} for d in data]
    return {
        "resourceType": "Consent",
        "status": status,
        "scope": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                    "code": "patient-privacy",
                }
            ]
        },
        "category": [{"coding": [{"system": CONSENT_KIND, "code": kind}]}],
        "patient": {"reference": f"Patient/{patient_id}"},
        **({"provision": prov} if prov else {}),
    }


def practitioner_ref(rpps: str) -> dict[str, Any]:
    return {"reference": f"Practitioner/rpps-{rpps.removeprefix('rpps-')}"}


async def grant_care(client: Any, headers: dict[str, str], patient_id: str, rpps: str) -> str:
    """The professional (their token in `headers`) records a care relationship; its id."""
    body = privacy_consent(patient_id, "care-relationship", actors=[practitioner_ref(rpps)])
    return (await create(client, headers, body))["id"]


def with_local_id(body: dict[str, Any], value: str) -> dict[str, Any]:
    """`body` with an extra local (non-INS) identifier, which Patients may share."""
    return {**body, "identifier": [*body["identifier"], {"system": LOCAL_ID, "value": value}]}
