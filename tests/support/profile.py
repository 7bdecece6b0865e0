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
