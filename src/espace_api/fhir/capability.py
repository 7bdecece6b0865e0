"""CapabilityStatement generated from the registry (never hand-maintained)."""

from typing import Any

from espace_api import __version__
from espace_api.fhir.patch import JSON_MERGE_PATCH, JSON_PATCH
from espace_api.fhir.registry import INTERACTIONS, REGISTRY
from espace_api.fhir.search import SPECIAL

SECURITY_SYSTEM = "http://terminology.hl7.org/CodeSystem/restful-security-service"
SECURITY_TEXT = "SMART on FHIR v2 bearer tokens; see /.well-known/smart-configuration"
# SMART's CapabilityStatement extension naming the OAuth endpoints: clients that discover
# through /metadata rather than .well-known (fhirclient) find the token endpoint here.
OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"

OWN_OPERATIONS = "https://espace-api.org/fhir/OperationDefinition"
# Operations per type (name, canonical definition): privacy operations (issue 8), deposit
# receipts (issue 15).
OPERATIONS = {
    "Patient": [
        ("everything", "http://hl7.org/fhir/OperationDefinition/Patient-everything"),
        ("break-the-glass", f"{OWN_OPERATIONS}/Patient-break-the-glass"),
    ],
    "DocumentReference": [
        ("deposit-status", f"{OWN_OPERATIONS}/DocumentReference-deposit-status"),
    ],
    "Consent": [("revoke", f"{OWN_OPERATIONS}/Consent-revoke")],  # an app's grant (smart/)
    # Measurements (issue 12, profile/operations.py).
    "Observation": [
        ("lastn", "http://hl7.org/fhir/OperationDefinition/Observation-lastn"),
        ("daily-summary", f"{OWN_OPERATIONS}/Observation-daily-summary"),
    ],
}
EXPLAIN = ("explain", f"{OWN_OPERATIONS}/Resource-explain")
# The access history: read-only, not a stored resource type (audit/service.py).
AUDIT_EVENT: dict[str, Any] = {
    "type": "AuditEvent",
    "documentation": "The access history: patients read their own, operators any; read-only.",
    "interaction": [{"code": "read"}, {"code": "search-type"}],
    "searchParam": [
        {"name": name, "type": kind}
        for name, kind in (
            ("patient", "reference"),
            ("date", "date"),
            ("agent", "token"),
            ("subtype", "token"),
            ("action", "token"),
            ("purpose", "token"),
            ("outcome", "token"),
            ("entity", "reference"),
        )
    ],
}

FORMATS = ["application/fhir+json", "json", "application/fhir+xml", "xml"]
PATCH_FORMATS = [JSON_PATCH, JSON_MERGE_PATCH, "application/fhir+json"]


def capability_statement(
    base_url: str, published: str, token_url: str | None = None
) -> dict[str, Any]:
    """The server's CapabilityStatement; `token_url` (the built-in issuer's token endpoint,
    if enabled) goes into the SMART oauth-uris security extension."""
    resources = []
    for rtype in REGISTRY.values():
        params = [*SPECIAL.values(), *rtype.params]
        resources.append(
            {
                "type": rtype.name,
                "documentation": rtype.documentation,
                "interaction": [
                    {"code": code} for code in INTERACTIONS if code in rtype.interactions
                ],
                "versioning": "versioned-update",
                "readHistory": True,
                "updateCreate": rtype.update_create,
                "conditionalCreate": True,
                "conditionalRead": "full-support",
                "conditionalUpdate": "update" in rtype.interactions,
                "conditionalDelete": "single"
                if "delete" in rtype.interactions
                else "not-supported",
                "referencePolicy": ["literal", "logical"],
                "searchInclude": [
                    f"{rtype.name}:{p.name}" for p in rtype.params if p.type == "reference"
                ],
                "searchRevInclude": [
                    f"{other.name}:{p.name}"
                    for other in REGISTRY.values()
                    for p in other.params
                    if p.type == "reference" and (not p.targets or rtype.name in p.targets)
                ],
                "searchParam": [
                    {"name": p.name, "type": p.type, "documentation": p.description} for p in params
                ],
            }
        )
        operations = OPERATIONS.get(rtype.name, []) + (
            [EXPLAIN] if rtype.in_patient_compartment else []
        )
        if operations:
            resources[-1]["operation"] = [
                {"name": name, "definition": definition} for name, definition in operations
            ]
    resources.append(AUDIT_EVENT)
    security: dict[str, Any] = {
        "cors": False,
        "service": [{"coding": [{"system": SECURITY_SYSTEM, "code": "SMART-on-FHIR"}]}],
        "description": SECURITY_TEXT,
    }
    if token_url:
        # The authorization endpoint of SMART App Launch (smart/) sits beside the token one.
        authorize_url = token_url.removesuffix("/token") + "/authorize"
        uris = [{"url": "token", "valueUri": token_url}]
        uris.append({"url": "authorize", "valueUri": authorize_url})
        security["extension"] = [{"url": OAUTH_URIS, "extension": uris}]
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": published,
        "kind": "instance",
        "software": {"name": "espace-api", "version": __version__},
        "implementation": {"description": "espace-api FHIR R4 server", "url": base_url},
        "fhirVersion": "4.0.1",
        "format": FORMATS,
        "patchFormat": PATCH_FORMATS,
        "rest": [
            {
                "mode": "server",
                "security": security,
                "resource": resources,
                "interaction": [
                    {"code": "transaction"},
                    {"code": "batch"},
                    {"code": "history-system"},
                ],
            }
        ],
    }
