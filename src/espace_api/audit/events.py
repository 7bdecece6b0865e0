"""Audit rows as FHIR R4 AuditEvent resources (IHE BALP patterns, simplified)."""

import base64
from typing import Any

from espace_api.fhir.values import format_instant

AUDIT_TYPE = {
    "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
    "code": "rest",
    "display": "RESTful Operation",
}
INTERACTION_SYSTEM = "http://hl7.org/fhir/restful-interaction"
INTERACTIONS = frozenset({"read", "vread", "update", "patch", "delete", "history", "create"})
INTERACTIONS |= {"search"}
OWN_SUBTYPES = "https://espace-api.org/fhir/CodeSystem/audit-subtype"
PURPOSE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
ROLE_SYSTEM = "http://terminology.hl7.org/CodeSystem/extra-security-role-type"
AGENT_TYPES = {
    "patient": ("humanuser", "human user"),
    "user": ("humanuser", "human user"),
    "system": ("dataprocessor", "data processor"),
    "operator": ("dataprocessor", "data processor"),
    "app": ("dataprocessor", "data processor"),
}
CLIENT_ID_SYSTEM = "https://espace-api.org/fhir/sid/client-id"
DETAIL_URL = "https://espace-api.org/fhir/StructureDefinition/audit-detail"


def _agent(row: dict[str, Any]) -> dict[str, Any]:
    agent: dict[str, Any] = {"requestor": True}
    kind = row["agent_kind"]
    if kind in AGENT_TYPES:
        code, display = AGENT_TYPES[kind]
        agent["type"] = {"coding": [{"system": ROLE_SYSTEM, "code": code, "display": display}]}
    if kind == "app" and row["client_id"]:
        agent["who"] = {"identifier": {"system": CLIENT_ID_SYSTEM, "value": row["client_id"]}}
    elif row["practitioner"]:
        agent["who"] = {
            "identifier": {"system": "urn:oid:1.2.250.1.71.4.2.1", "value": row["practitioner"]}
        }
    elif row["agent_sub"]:
        agent["who"] = {"identifier": {"value": row["agent_sub"]}}
    else:
        agent["who"] = {"display": "unauthenticated caller"}
    if row["client_id"]:
        agent["altId"] = row["client_id"]
    if row["token_jti"]:
        agent["policy"] = [row["token_jti"]]
    if kind:
        agent["name"] = kind
    return agent


def _on_behalf_of(row: dict[str, Any]) -> list[dict[str, Any]]:
    """For an app's access: the patient who authorised it, as a second, non-requesting agent."""
    if row["agent_kind"] != "app" or not row["agent_sub"]:
        return []
    who = {"identifier": {"value": row["agent_sub"]}}
    return [{"requestor": False, "who": who, "name": "patient"}]


def audit_event(row: dict[str, Any]) -> dict[str, Any]:
    """One stored audit row as an AuditEvent resource."""
    subtype = row["subtype"]
    system = INTERACTION_SYSTEM if subtype in INTERACTIONS else OWN_SUBTYPES
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": row["id"],
        "type": AUDIT_TYPE,
        "subtype": [{"system": system, "code": subtype}],
        "action": row["action"],
        "recorded": format_instant(row["recorded"]),
        "outcome": row["outcome"],
        "agent": [_agent(row), *_on_behalf_of(row)],
        "source": {"observer": {"display": "espace-api"}},
    }
    if row["purpose"]:
        event["purposeOfEvent"] = [{"coding": [{"system": PURPOSE_SYSTEM, "code": row["purpose"]}]}]
    if row["detail"]:
        event["outcomeDesc"] = row["detail"]
    entities: list[dict[str, Any]] = []
    if row["patient_id"]:
        entities.append({"what": {"reference": f"Patient/{row['patient_id']}"}})
    if row["resource_type"]:
        what = (
            {"reference": f"{row['resource_type']}/{row['resource_id']}"}
            if row["resource_id"]
            else {"display": row["resource_type"]}
        )
        entity: dict[str, Any] = {"what": what}
        if row["query"]:
            entity["query"] = base64.b64encode(row["query"].encode()).decode("ascii")
        entities.append(entity)
    if entities:
        event["entity"] = entities
    return event
