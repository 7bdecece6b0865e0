"""Synthetic health-profile, measurement and agenda resources (test identities only)."""

from typing import Any

from espace_api.access.vocabulary import VISIBILITY_SYSTEM

SNOMED = "http://snomed.info/sct"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
ALLERGY_CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
CVX = "http://hl7.org/fhir/sid/cvx"
MASKED = {"system": VISIBILITY_SYSTEM, "code": "MASQUE_PS"}


def concept(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


def condition(
    pid: str, code: str = "44054006", onset: str = "2015-06-01", **extra: Any
) -> dict[str, Any]:
    """A medical history item (default: type 2 diabetes)."""
    return {
        "resourceType": "Condition",
        "subject": {"reference": f"Patient/{pid}"},
        "code": concept(SNOMED, code),
        "clinicalStatus": concept(CLINICAL, "active"),
        "onsetDateTime": onset,
        **extra,
    }


def allergy(pid: str, code: str = "91936005", **extra: Any) -> dict[str, Any]:
    """An allergy (default: penicillin)."""
    return {
        "resourceType": "AllergyIntolerance",
        "patient": {"reference": f"Patient/{pid}"},
        "code": concept(SNOMED, code),
        "clinicalStatus": concept(ALLERGY_CLINICAL, "active"),
        "recordedDate": "2020-01-15",
        **extra,
    }


def medication(pid: str, code: str = "60000000", **extra: Any) -> dict[str, Any]:
    """A current treatment."""
    return {
        "resourceType": "MedicationStatement",
        "status": "active",
        "subject": {"reference": f"Patient/{pid}"},
        "medicationCodeableConcept": concept("http://snomed.info/sct", code),
        "effectiveDateTime": "2023-02-01",
        **extra,
    }


def family_history(pid: str, code: str = "22298006", **extra: Any) -> dict[str, Any]:
    """A relative's condition (default: the father's myocardial infarction)."""
    return {
        "resourceType": "FamilyMemberHistory",
        "status": "completed",
        "patient": {"reference": f"Patient/{pid}"},
        "date": "2022-09-10",
        "relationship": concept("http://terminology.hl7.org/CodeSystem/v3-RoleCode", "FTH"),
        "condition": [{"code": concept(SNOMED, code)}],
        **extra,
    }


def immunization(
    pid: str, vaccine: str = "115", date: str = "2021-04-01", **extra: Any
) -> dict[str, Any]:
    """A vaccination (default CVX 115: Tdap)."""
    return {
        "resourceType": "Immunization",
        "status": "completed",
        "patient": {"reference": f"Patient/{pid}"},
        "vaccineCode": concept(CVX, vaccine),
        "occurrenceDateTime": date,
        **extra,
    }


LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
CLIENT_SYSTEM = "https://espace-api.org/fhir/NamingSystem/client-id"
SERVICE_SCOPES = "system/Observation.crs system/Patient.s"


def quantity(value: float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


def measure(
    pid: str,
    code: str,
    value: float,
    unit: str,
    at: str = "2026-11-01T08:00:00Z",
    device: str | None = "Device/cgm-1",
    **extra: Any,
) -> dict[str, Any]:
    """A measurement with one value (glucose 2345-7, weight 29463-7, heart rate 8867-4 ...)."""
    body: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                    }
                ]
            }
        ],
        "code": concept(LOINC, code),
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": at,
        "valueQuantity": quantity(value, unit),
        **extra,
    }
    if device:
        body["device"] = {"reference": device}
    return body


def blood_pressure(
    pid: str,
    systolic: float,
    diastolic: float,
    at: str = "2026-11-01T08:00:00Z",
    unit: str = "mm[Hg]",
) -> dict[str, Any]:
    body = measure(pid, "85354-9", 0, unit, at, device="Device/tensio-1")
    del body["valueQuantity"]
    body["component"] = [
        {"code": concept(LOINC, "8480-6"), "valueQuantity": quantity(systolic, unit)},
        {"code": concept(LOINC, "8462-4"), "valueQuantity": quantity(diastolic, unit)},
    ]
    return body


def connected_service(pid: str, client_id: str) -> dict[str, Any]:
    """The patient connects a service (machine client) that adds their measurements."""
    return {
        "resourceType": "Consent",
        "status": "active",
        "scope": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                    "code": "patient-privacy",
                }
            ]
        },
        "category": [
            {
                "coding": [
                    {
                        "system": "https://espace-api.org/fhir/CodeSystem/consent-kind",
                        "code": "connected-service",
                    }
                ]
            }
        ],
        "patient": {"reference": f"Patient/{pid}"},
        "provision": {
            "actor": [
                {
                    "role": concept(
                        "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "PRF"
                    ),
                    "reference": {"identifier": {"system": CLIENT_SYSTEM, "value": client_id}},
                }
            ]
        },
    }


def batch(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"resource": r, "request": {"method": "POST", "url": r["resourceType"]}}
            for r in resources
        ],
    }


BOOKING_SCOPES = "system/Appointment.crus system/Patient.s"


def appointment(
    pid: str,
    start: str = "2026-12-10T09:00:00Z",
    end: str = "2026-12-10T09:20:00Z",
    status: str = "booked",
    **extra: Any,
) -> dict[str, Any]:
    """A consultation booked with a GP."""
    return {
        "resourceType": "Appointment",
        "status": status,
        "serviceType": [concept(SNOMED, "394814009")],
        "start": start,
        "end": end,
        "participant": [
            {"actor": {"reference": f"Patient/{pid}"}, "status": "accepted"},
            {"actor": {"reference": "Practitioner/rpps-10001"}, "status": "accepted"},
        ],
        **extra,
    }
