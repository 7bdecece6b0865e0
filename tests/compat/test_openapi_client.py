"""A client generated from the committed OpenAPI document by openapi-python-client (into a
temporary directory, during the test) enrols a Patient, deposits a DocumentReference and
reads both back from the live server, through its typed models."""

import base64
import hashlib
import importlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from espace_api.openapi import examples
from tests.support.live_server import LiveServer

SPEC = Path(__file__).resolve().parents[2] / "openapi" / "openapi.json"
GENERATOR = Path(sys.executable).parent / "openapi-python-client"
PACKAGE = "espace_client"


@pytest.fixture(scope="session")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The generated package's name, importable for the session."""
    root = tmp_path_factory.mktemp("openapi-client")
    config = root / "config.yml"
    config.write_text(f"package_name_override: {PACKAGE}\npost_hooks: []\n")
    subprocess.run(
        [
            str(GENERATOR),
            "generate",
            "--path",
            str(SPEC),
            "--meta",
            "none",
            "--output-path",
            str(root / PACKAGE),
            "--config",
            str(config),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    sys.path.insert(0, str(root))
    try:
        yield PACKAGE
    finally:
        sys.path.remove(str(root))


def _module(package: str, name: str) -> ModuleType:
    return importlib.import_module(f"{package}.{name}")


def test_generated_client_creates_deposits_and_reads(
    generated: str, live: LiveServer, operator_token: str
) -> None:
    client_mod = _module(generated, "client")
    models = _module(generated, "models")
    create_patient = _module(generated, "api.patient.patient_create")
    read_patient = _module(generated, "api.patient.patient_read")
    create_doc = _module(generated, "api.document_reference.document_reference_create")
    read_doc = _module(generated, "api.document_reference.document_reference_read")

    def client(token: str) -> Any:
        return client_mod.AuthenticatedClient(base_url=live.url, token=token)

    ins = "248039912300042"
    patient = models.Patient.from_dict(
        {
            "resourceType": "Patient",
            "identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.10", "value": ins}],
            "name": [{"family": "Généré", "given": ["Client"]}],
        }
    )
    created = create_patient.sync_detailed(client=client(operator_token), body=patient)
    assert created.status_code == 201, created.content
    assert isinstance(created.parsed, models.Patient)
    patient_id = created.parsed.id
    assert created.headers["Location"].startswith(f"{live.url}/Patient/{patient_id}")

    content = b"%PDF-1.7\n% generated client\n%%EOF\n"
    doc = examples.document_reference(f"Patient/{patient_id}")
    doc["masterIdentifier"]["value"] = "urn:oid:1.2.250.1.999.7.42"
    doc["content"][0]["attachment"] = {
        "contentType": "application/pdf",
        "data": base64.b64encode(content).decode(),
        "size": len(content),
        "hash": base64.b64encode(hashlib.sha1(content).digest()).decode(),
        "title": "Compte rendu",
    }
    vendor = live.token("system")
    deposited = create_doc.sync_detailed(
        client=client(vendor), body=models.DocumentReference.from_dict(doc)
    )
    assert deposited.status_code == 201, deposited.content
    doc_id = deposited.parsed.id

    patient_token = live.token("patient", patient_id=patient_id)
    read_back = read_doc.sync(doc_id, client=client(patient_token))
    assert isinstance(read_back, models.DocumentReference)
    assert read_back.subject.reference == f"Patient/{patient_id}"
    assert read_back.master_identifier.value == "urn:oid:1.2.250.1.999.7.42"
    me = read_patient.sync(patient_id, client=client(patient_token))
    assert isinstance(me, models.Patient)
    assert me.identifier[0].value == ins

    # Another patient's token gets the typed OperationOutcome (404), never the document.
    other = live.token("patient", patient_id="someone-else")
    refused = read_doc.sync_detailed(doc_id, client=client(other))
    assert refused.status_code == 404
    assert isinstance(refused.parsed, models.OperationOutcome)
