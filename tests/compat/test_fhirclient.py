"""fhirclient (SMART on FHIR Python client, R4 models, strict parsing) against the live server.

A vendor's software does SMART Backend Services with fhirclient alone: `prepare()` reads
/metadata and finds the token endpoint there, `authorize()` exchanges a signed client
assertion (client_credentials) for an access token. Every response is parsed by
fhirclient's strict R4 models (unknown or mistyped elements raise), so the test proves our
JSON is R4 as fhirclient reads it: CapabilityStatement, Patient, DocumentReference, search,
include and history Bundles, OperationOutcome.
"""

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from fhirclient import client as smart_client
from fhirclient.models.bundle import Bundle
from fhirclient.models.capabilitystatement import CapabilityStatement
from fhirclient.models.documentreference import DocumentReference
from fhirclient.models.operationoutcome import OperationOutcome
from fhirclient.models.patient import Patient
from fhirclient.server import FHIRNotFoundException

from tests.support.auth import VendorKey
from tests.support.fhir import INS_TEST, document, patient
from tests.support.live_server import LiveServer

SYSTEM_SCOPES = "system/Patient.s system/DocumentReference.crs"


@pytest.fixture(scope="module")
def operator(live: LiveServer, operator_token: str) -> smart_client.FHIRClient:
    """An operator session restored from a token (fhirclient's documented `state`)."""
    state = {
        "app_id": "ops-test",
        "server": {
            "base_uri": live.url,
            "auth_type": "oauth2",
            "auth": {"access_token": operator_token},
        },
    }
    return smart_client.FHIRClient(state=state)


@pytest.fixture(scope="module")
def vendor(live: LiveServer, operator_token: str) -> dict[str, Any]:
    """A system client registered through the operator API with a vendor's public key."""
    key = VendorKey("ES384")
    client_id = f"lgc-fhirclient-{uuid.uuid4().hex[:6]}"
    registration = {
        "client_id": client_id,
        "kind": "system",
        "name": "fhirclient compat",
        "organization": "finess:010000001",
        "scopes": SYSTEM_SCOPES,
        "jwks": key.jwks,
    }
    r = requests.post(
        f"{live.url}/auth/clients",
        json=registration,
        headers={"Authorization": f"Bearer {operator_token}"},
        timeout=10,
    )
    assert r.status_code == 201, r.text
    return {"client_id": client_id, "key": key}


@pytest.fixture(scope="module")
def smart(live: LiveServer, vendor: dict[str, Any]) -> smart_client.FHIRClient:
    """SMART Backend Services, all by fhirclient: discovery from /metadata, then
    client_credentials with our signed assertion."""
    assertion = vendor["key"].assertion(
        vendor["client_id"], f"{live.url}/auth/token", datetime.now(UTC)
    )
    settings = {
        "app_id": vendor["client_id"],
        "api_base": live.url,
        "jwt_token": assertion,
        "scope": SYSTEM_SCOPES,
    }
    smart = smart_client.FHIRClient(settings=settings)
    smart.wants_patient = False  # a backend service: no launch/patient scope
    assert not smart.prepare()  # metadata read, token endpoint found, no token yet
    smart.authorize()
    assert smart.ready
    return smart


def test_backend_services_token(smart: smart_client.FHIRClient, live: LiveServer) -> None:
    cs = smart.server.capabilityStatement
    assert isinstance(cs, CapabilityStatement)
    assert cs.fhirVersion == "4.0.1"
    assert smart.server.auth._token_uri == f"{live.url}/auth/token"
    assert {r.type for r in cs.rest[0].resource} >= {"Patient", "DocumentReference"}
    granted = requests.get(
        f"{live.url}/Patient",
        params={"identifier": f"{INS_TEST}|000000000000000"},
        headers={"Authorization": f"Bearer {smart.server.auth.access_token}"},
        timeout=10,
    )
    assert granted.status_code == 200


def test_read_and_search_with_models(
    smart: smart_client.FHIRClient, operator: smart_client.FHIRClient
) -> None:
    # The operator enrols a patient (model -> POST); accents round-trip as UTF-8.
    enrolled = Patient(patient(family="Lefèvre", given="Éloïse"))
    created = enrolled.create(operator.server)
    pid = created["id"]

    # The vendor finds the patient by INS, then deposits a document.
    ins = enrolled.identifier[0].value
    found = list(
        Patient.where({"identifier": f"{INS_TEST}|{ins}"}).perform_resources_iter(smart.server)
    )
    assert [p.id for p in found] == [pid]
    assert found[0].name[0].family == "Lefèvre" and found[0].name[0].given == ["Éloïse"]
    assert found[0].birthDate.isostring == "1980-05-17"

    doc = DocumentReference(document(pid))
    doc_id = doc.create(smart.server)["id"]
    read = DocumentReference.read(doc_id, smart.server)
    assert read.subject.reference == f"Patient/{pid}"
    assert read.meta.versionId == "1"
    assert read.content[0].attachment.contentType == "text/plain"
    assert read.date.isostring.startswith("2024-03-01T10:00:00")

    by_patient = DocumentReference.where({"patient": pid})
    assert [d.id for d in by_patient.perform_resources_iter(smart.server)] == [doc_id]

    with pytest.raises(FHIRNotFoundException) as missing:
        DocumentReference.read(f"absent-{uuid.uuid4().hex[:8]}", smart.server)
    outcome = OperationOutcome(missing.value.response.json())
    assert outcome.issue[0].code == "not-found"


def test_paging_include_history_with_models(operator: smart_client.FHIRClient) -> None:
    pid = Patient(patient(family="Pages")).create(operator.server)["id"]
    ids = {
        DocumentReference(document(pid, date=f"2024-01-{day:02d}T08:00:00Z")).create(
            operator.server
        )["id"]
        for day in range(1, 13)
    }

    search = DocumentReference.where({"patient": pid, "_count": "5", "_sort": "date"})
    pages = list(search.perform_iter(operator.server))  # follows Bundle.link next
    assert [len(p.entry) for p in pages] == [5, 5, 2]
    assert all(p.total == 12 for p in pages)
    resources = [e.resource for p in pages for e in p.entry]
    assert {r.id for r in resources} == ids
    assert [r.date.isostring[:10] for r in resources] == [f"2024-01-{d:02d}" for d in range(1, 13)]

    included = DocumentReference.where({"patient": pid, "_count": "3"}).include("subject")
    bundle = next(included.perform_iter(operator.server))
    modes = [(e.search.mode, e.resource.resource_type) for e in bundle.entry]
    assert modes.count(("include", "Patient")) == 1
    assert modes.count(("match", "DocumentReference")) == 3

    history = Bundle.read_from(f"Patient/{pid}/_history", operator.server)
    assert history.type == "history" and history.entry[0].request.method == "POST"


def test_strict_r4_parsing_of_other_outputs(
    operator: smart_client.FHIRClient, live: LiveServer, operator_token: str
) -> None:
    """Subsetted, summary, history and transaction-response Bundles and error outcomes, as
    fhirclient's strict R4 models read them."""
    server = operator.server
    pid = Patient(patient(family="Strict")).create(server)["id"]
    DocumentReference(document(pid)).create(server)
    for path in (
        f"DocumentReference?patient={pid}&_summary=true",
        f"DocumentReference?patient={pid}&_elements=type,date",
        f"DocumentReference?patient={pid}&_summary=count",
        f"Patient?_id={pid}&_revinclude=DocumentReference:subject",
        "DocumentReference/_history?_count=5",
        "_history?_count=5",
    ):
        bundle = Bundle.read_from(path, server)
        assert bundle.type in ("searchset", "history"), path

    tx = Bundle(
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "fullUrl": "urn:uuid:0b7c1b4e-0000-4000-8000-000000000001",
                    "resource": patient(family="Strict"),
                    "request": {"method": "POST", "url": "Patient"},
                }
            ],
        }
    )
    response = Bundle(tx.create(server))
    assert response.type == "transaction-response"
    assert response.entry[0].response.status.startswith("201")

    for status, call in (
        (401, lambda: requests.get(f"{live.url}/Patient", timeout=10)),
        (
            412,
            lambda: requests.put(
                f"{live.url}/Patient/{pid}",
                json={**patient(), "id": pid},
                headers={"Authorization": f"Bearer {operator_token}", "If-Match": 'W/"9"'},
                timeout=10,
            ),
        ),
    ):
        r = call()
        assert r.status_code == status
        OperationOutcome(r.json())
