"""The OpenAPI document: valid OpenAPI, every registered type described, every error code the
source raises listed, and its ITI-65 example accepted by the server as it stands."""

import ast
import json
import re
from pathlib import Path

from openapi_spec_validator import validate

from espace_api.fhir.error_codes import ERROR_CODES
from espace_api.fhir.registry import REGISTRY
from espace_api.openapi import examples

ROOT = Path(__file__).resolve().parents[1]
SPEC = json.loads((ROOT / "openapi" / "openapi.json").read_text())
CODE = re.compile(r"^[A-Z][A-Z0-9_]{2,}$")
RAISERS = {
    "FhirError",
    "bad_request",
    "forbidden",
    "not_found",
    "conflict",
    "precondition",
    "unprocessable",
    "TokenError",
    "_invalid",
}


def test_spec_is_valid_openapi() -> None:
    validate(SPEC)


def test_every_registered_type_has_schema_and_typed_operations() -> None:
    schemas, paths = SPEC["components"]["schemas"], SPEC["paths"]
    for name in REGISTRY:
        assert schemas[name]["properties"]["resourceType"]["const"] == name
        create = paths[f"/{name}"]["post"]
        assert create["responses"]["201"]["headers"]["Location"]
        body = create["requestBody"]["content"]["application/fhir+json"]["schema"]
        assert body == {"$ref": f"#/components/schemas/{name}"}
        search = {p.get("name") for p in paths[f"/{name}"]["get"]["parameters"]}
        assert {p.name for p in REGISTRY[name].params} <= search
        assert {"$ref": "#/components/parameters/_count"} in paths[f"/{name}"]["get"]["parameters"]


def test_error_code_enumeration_lists_every_code_raised() -> None:
    raised: set[str] = set()
    for file in (ROOT / "src" / "espace_api").rglob("*.py"):
        for node in ast.walk(ast.parse(file.read_text())):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            values = [*node.args, *(k.value for k in node.keywords if k.arg == "code")]
            if name not in RAISERS and not any(k.arg == "code" for k in node.keywords):
                continue
            raised |= {
                v.value
                for v in values
                if isinstance(v, ast.Constant) and isinstance(v.value, str) and CODE.match(v.value)
            }
    assert raised - set(ERROR_CODES) == set()
    assert SPEC["components"]["schemas"]["ErrorCode"]["enum"] == list(ERROR_CODES)


async def test_iti65_example_is_accepted(client, auth) -> None:
    operator = await auth.operator()
    created = await client.post(
        "/Patient",
        headers={**operator, "Content-Type": "application/fhir+json"},
        json={
            "resourceType": "Patient",
            "identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.10", "value": "248039912300077"}],
        },
    )
    assert created.status_code == 201, created.text
    bundle = examples.iti65_bundle(f"Patient/{created.json()['id']}")
    published = SPEC["paths"]["/"]["post"]["requestBody"]["content"]["application/fhir+json"]
    assert published["examples"]["iti65"]["value"] == examples.iti65_bundle()
    vendor = await auth.system()
    answer = await client.post(
        "/", headers={**vendor, "Content-Type": "application/fhir+json"}, json=bundle
    )
    assert answer.status_code == 200, answer.text
    statuses = [e["response"]["status"] for e in answer.json()["entry"]]
    assert all(s.startswith("201") for s in statuses), statuses


async def test_empty_required_array_is_refused(client, auth) -> None:
    """Found by the fuzzer: `"category": []` passed the model and was stored without it."""
    operator = await auth.operator()
    answer = await client.post(
        "/Consent",
        headers={**operator, "Content-Type": "application/fhir+json"},
        json={
            "resourceType": "Consent",
            "status": "active",
            "scope": {"text": "privacy"},
            "category": [],
            "patient": {"reference": "Patient/nobody"},
        },
    )
    assert answer.status_code == 400, answer.text
    issue = answer.json()["issue"][0]
    assert issue["details"]["coding"][0]["code"] == "INVALID_RESOURCE"
    assert issue["expression"] == ["Consent.category"]


async def test_nul_and_control_characters_are_client_errors(client, auth) -> None:
    """Found by the fuzzer: a NUL in JSON or in a search value was a 500 (Postgres refuses
    it); a form feed echoed in `diagnostics` made the OperationOutcome invalid FHIR."""
    operator = await auth.operator()
    json_nul = await client.post(
        "/Binary",
        headers={**operator, "Content-Type": "application/fhir+json"},
        content=b'{"resourceType": "Binary", "contentType": "text/plain\\u0000"}',
    )
    assert json_nul.status_code == 400, json_nul.text
    assert json_nul.json()["issue"][0]["details"]["coding"][0]["code"] == "INVALID_JSON"
    query_nul = await client.get("/Patient", params={"name": "a\x00b"}, headers=operator)
    assert query_nul.status_code == 400, query_nul.text
    path_nul = await client.get("/Patient/a%00b", headers=operator)
    assert path_nul.status_code == 400, path_nul.text
    feed = await client.get("/Communication/w%0Cx", headers=operator)
    assert feed.status_code == 404
    assert "\x0c" not in feed.json()["issue"][0]["diagnostics"]


async def test_security_schemes_are_the_flows_the_server_serves(client) -> None:
    schemes = SPEC["components"]["securitySchemes"]
    backend = schemes["smart_backend"]["flows"]["clientCredentials"]
    app = schemes["smart_app"]["flows"]["authorizationCode"]
    discovery = (await client.get("/.well-known/smart-configuration")).json()
    assert discovery["token_endpoint"].endswith(backend["tokenUrl"])
    assert discovery["authorization_endpoint"].endswith(app["authorizationUrl"])
    assert "S256" in discovery["code_challenge_methods_supported"]
    assert {"launch/patient", "offline_access", "patient/Observation.cruds"} <= set(app["scopes"])
    read = SPEC["paths"]["/DocumentReference/{id}"]["get"]["security"]
    assert {"smart_backend": ["system/DocumentReference.r"]} in read
    assert {"smart_app": ["patient/DocumentReference.r"]} in read
