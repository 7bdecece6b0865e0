"""IHE MHD conformance against IHE's own examples (tests/conformance/mhd, see its README).

Every Provide Document Bundle (ITI-65) of the MHD IG is posted as published, with only its
patient references rewritten to a Patient of this server (the Bundle's own Patient entry is
that patient, so it goes too). Each is accepted, or refused with the status and the element
that the table below names, and nothing of a refused Bundle is written. ITI-66 (Find
Document Lists) searches the accepted SubmissionSets and Folders.
"""

import json
import pathlib
from typing import Any

import orjson
import pytest

from tests.support.fhir import FHIR_JSON, created, search
from tests.test_documents_deposit import footprint, new_patient, send

EXAMPLES = pathlib.Path(__file__).parent / "conformance" / "mhd"
VENDOR_SCOPES = "system/DocumentReference.crus system/Binary.crs system/List.crus system/Patient.s"
SUBMISSIONSET = "https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes|submissionset"

# Example -> None (accepted) or (status, OperationOutcome code, an element it must name).
EXPECTED: dict[str, tuple[int, str, str] | None] = {
    "ex-comprehensiveProvideDocumentBundleSimple": None,
    "ex-comprehensiveProvideDocumentBundleComplete": None,
    "ex-unContainedComprehensiveProvideDocumentBundleComplete": None,
    # Minimal metadata: no type nor category, which every document of a space carries.
    "ex-minimalProvideDocumentBundleSimple": (422, "MISSING_METADATA", "DocumentReference.type"),
    # No subject at all (only a contained sourcePatientInfo): a space is one patient's.
    "ex-minimalProvideDocumentBundleSimpleContained": (
        422,
        "MISSING_METADATA",
        "DocumentReference.subject",
    ),
    "ex-dummyBundleDocAndBinary": (422, "MISSING_METADATA", "DocumentReference.subject"),
    # Its two documents share one masterIdentifier (a document's unique id) with different
    # content: the second is a conflicting deposit.
    "ex-comprehensiveProvideDocumentBundleMultiple": (409, "DUPLICATE_DOCUMENT", "Bundle.entry[2]"),
    # The new document declares size 24 for its 23 bytes ("Thanks for all the fish").
    "ex-comprehensiveProvideDocumentBundleReplace": (
        422,
        "SIZE_MISMATCH",
        "DocumentReference.content[0].attachment.size",
    ),
    # `PUT List` without an id: FHIR updates Type/id (or Type?search).
    "ex-ProvideDocumentBundle-addToFolder": (400, "INVALID_BUNDLE", "Bundle.entry[2].request.url"),
    # The FHIR Document Publish option (a Bundle as content) is not offered: send a Binary.
    "ex-comprehensiveProvideDocumentBundleDocument": (400, "INVALID_BUNDLE", "Bundle.entry[2]"),
}


def provide_bundles() -> list[pathlib.Path]:
    return sorted(
        f
        for f in EXAMPLES.glob("Bundle-*.json")
        if json.loads(f.read_text())["type"] == "transaction"
    )


def for_patient(bundle: dict[str, Any], patient_id: str) -> dict[str, Any]:
    """The example with its patient references pointing at `patient_id` (nothing else)."""
    own = {e["fullUrl"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"}
    bundle = {**bundle, "entry": [e for e in bundle["entry"] if e["fullUrl"] not in own]}
    text = orjson.dumps(bundle).decode()
    for ref in own | {"Patient/ex-patient"}:
        text = text.replace(f'"{ref}"', f'"Patient/{patient_id}"')
    return json.loads(text)


def test_every_provide_bundle_has_an_expectation():
    assert {json.loads(f.read_text())["id"] for f in provide_bundles()} == set(EXPECTED)


@pytest.fixture
async def vendor(auth) -> dict[str, str]:
    return await auth.system("lgc-mhd-examples", VENDOR_SCOPES)


@pytest.mark.parametrize("path", provide_bundles(), ids=lambda p: p.stem.removeprefix("Bundle-"))
async def test_ihe_example(path, client, auth, app, vendor):
    example = json.loads(path.read_text())
    pid = await new_patient(client, auth)
    bundle = for_patient(example, pid)
    before = await footprint(app, pid)
    r = await send(client, vendor, bundle)
    expected = EXPECTED[example["id"]]
    if expected is not None:
        status, code, element = expected
        body = r.json()
        assert r.status_code == status, r.text
        assert body["resourceType"] == "OperationOutcome"
        assert body["issue"][0]["details"]["coding"][0]["code"] == code
        assert element in [e for issue in body["issue"] for e in issue.get("expression", [])]
        assert await footprint(app, pid) == before
        return
    assert r.status_code == 200, r.text
    response = r.json()
    assert response["type"] == "transaction-response"
    # One entry per request entry, in the same order, each 201 with its location (MHD).
    sent = [e["resource"]["resourceType"] for e in bundle["entry"]]
    got = [e["response"]["location"].split("/")[-4] for e in response["entry"]]
    assert got == sent
    assert {e["response"]["status"] for e in response["entry"]} == {"201 Created"}
    for entry in response["entry"]:
        if entry["resource"]["resourceType"] == "Binary":
            # The Binary carried no securityContext: it took its document's patient.
            assert entry["resource"]["securityContext"] == {"reference": f"Patient/{pid}"}
    patient = await auth.patient(pid)
    docs = await search(client, patient, "/DocumentReference", patient=pid)
    assert docs["total"] == sum(1 for t in sent if t == "DocumentReference")
    content = await client.get(
        docs["entry"][0]["resource"]["content"][0]["attachment"]["url"], headers=patient
    )
    assert content.status_code == 200 and content.content == b"Hello World"


async def test_binary_no_document_points_at_keeps_its_422(client, auth, app, vendor):
    pid = await new_patient(client, auth)
    example = json.loads(
        (EXAMPLES / "Bundle-ex-comprehensiveProvideDocumentBundleSimple.json").read_text()
    )
    bundle = for_patient(example, pid)
    binary = next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "Binary")
    binary["fullUrl"] = "urn:uuid:0f0e0d0c-0000-4000-8000-000000000001"  # now unreferenced
    doc = next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "DocumentReference")
    doc["resource"]["content"][0]["attachment"]["data"] = binary["resource"]["data"]
    del doc["resource"]["content"][0]["attachment"]["url"]
    before = await footprint(app, pid)
    r = await send(client, vendor, bundle)
    assert r.status_code == 422, r.text
    assert r.json()["issue"][0]["details"]["coding"][0]["code"] == "BINARY_PATIENT_REQUIRED"
    assert await footprint(app, pid) == before
    standalone = {"resourceType": "Binary", "contentType": "text/plain", "data": "SGVsbG8="}
    r = await client.post("/Binary", json=standalone, headers={**vendor, **FHIR_JSON})
    assert r.status_code == 422
    assert r.json()["issue"][0]["expression"] == ["Binary.securityContext"]


async def test_binary_of_two_patients_documents_is_refused(client, auth, app, vendor):
    example = json.loads(
        (EXAMPLES / "Bundle-ex-comprehensiveProvideDocumentBundleSimple.json").read_text()
    )
    first, second = await new_patient(client, auth), await new_patient(client, auth)
    bundle = for_patient(example, first)
    doc = next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "DocumentReference")
    other = json.loads(json.dumps(doc))
    other["fullUrl"] = "urn:uuid:0f0e0d0c-0000-4000-8000-000000000002"
    other["resource"]["subject"] = {"reference": f"Patient/{second}"}
    other["resource"]["masterIdentifier"]["value"] += ".2"
    bundle["entry"].append(other)
    r = await send(client, vendor, bundle)
    assert r.status_code == 422, r.text
    assert r.json()["issue"][0]["details"]["coding"][0]["code"] == "BINARY_OTHER_PATIENT"
    assert await footprint(app, first) == await footprint(app, second) == (1, 1, 0)


async def test_find_document_lists_iti66(client, auth, vendor):
    example = json.loads(
        (EXAMPLES / "Bundle-ex-comprehensiveProvideDocumentBundleComplete.json").read_text()
    )
    pid = await new_patient(client, auth)
    r = await send(client, vendor, for_patient(example, pid))
    assert r.status_code == 200, r.text
    lists = {
        e["resource"]["code"]["coding"][0]["code"]: e["resource"]["id"]
        for e in r.json()["entry"]
        if e["resource"]["resourceType"] == "List"
    }
    patient = await auth.patient(pid)

    async def found(**params: str) -> list[str]:
        bundle = await search(client, patient, "/List", patient=pid, **params)
        return [e["resource"]["id"] for e in bundle.get("entry", [])]

    submission, folder = lists["submissionset"], lists["folder"]
    assert await found(code=SUBMISSIONSET, status="current") == [submission]
    assert await found(code="folder") == [folder]
    assert sorted(await found(designationType="http://snomed.info/sct|225728007")) == sorted(
        [submission, folder]
    )
    assert await found(designationType="http://snomed.info/sct|284548004") == [folder]
    assert await found(sourceId="urn:oid:1.2.3.4") == [submission]
    assert await found(sourceId="urn:oid:9.9.9") == []
    ss_id = "urn:ietf:rfc:3986|urn:oid:1.2.840.113556.1.8000.2554.58783.21864.3474.19410.44358"
    ss_id += ".58254.41281.46349"
    assert await found(identifier=ss_id) == [submission]
    assert await found(date="ge2004-10-01", code="submissionset") == [submission]
    assert await found(date="lt2004-01-01") == []
    assert await found(status="retired") == []
    # POST _search is the same search (MHD: the Document Responder supports both).
    r = await client.post(
        "/List/_search",
        data={"patient": pid, "code": "submissionset"},
        headers=patient,
    )
    assert [e["resource"]["id"] for e in r.json()["entry"]] == [submission]
    # Another patient and another vendor find nothing of it.
    stranger = await new_patient(client, auth)
    r = await client.get("/List", params={"patient": pid}, headers=await auth.patient(stranger))
    assert r.status_code in (200, 403)
    assert r.status_code == 403 or r.json().get("total", 0) == 0
    other = await auth.system("lgc-other", VENDOR_SCOPES)
    bundle = await search(client, other, "/List", patient=pid)
    assert bundle["total"] == 0


async def test_find_document_lists_by_source(client, auth, vendor):
    example = json.loads(
        (
            EXAMPLES / "Bundle-ex-unContainedComprehensiveProvideDocumentBundleComplete.json"
        ).read_text()
    )
    pid = await new_patient(client, auth)
    r = await send(client, vendor, for_patient(example, pid))
    assert r.status_code == 200, r.text
    submission = created(r, "List")["id"]
    patient = await auth.patient(pid)
    bundle = await search(
        client, patient, "/List", patient=pid, source="Practitioner/ex-practitioner"
    )
    assert [e["resource"]["id"] for e in bundle["entry"]] == [submission]
    bundle = await search(client, patient, "/List", patient=pid, source="Practitioner/other")
    assert bundle["total"] == 0
