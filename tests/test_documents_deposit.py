"""IHE MHD ITI-65 deposits (transaction Bundles) and their rules, through HTTP."""

import base64
import uuid
from typing import Any

from sqlalchemy import func, select

from espace_api.db.schema import resource_versions, resources
from espace_api.documents.rules import CONFIDENTIALITY, PDSM_BASE
from espace_api.storage import blob_repository as blob_repo
from tests.support.documents import (
    SYSTEM_SCOPES,
    binary_resource,
    pdf,
    pdsm_document,
    sha1_b64,
)
from tests.support.fhir import FHIR_JSON, LOINC, create, patient

PDSM_PROFILE = PDSM_BASE + "pdsm-comprehensive-document-reference"


def urn() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def post(resource: dict, full_url: str | None = None) -> dict:
    entry: dict[str, Any] = {
        "resource": resource,
        "request": {"method": "POST", "url": resource["resourceType"]},
    }
    if full_url:
        entry["fullUrl"] = full_url
    return entry


def iti65(patient_id: str, data: bytes, **doc_extra: Any) -> tuple[dict, dict]:
    """A Provide Document Bundle: Binary + DocumentReference + List (SubmissionSet)."""
    bin_url, doc_url = urn(), urn()
    doc = pdsm_document(patient_id, bin_url, **doc_extra)
    submission = {
        "resourceType": "List",
        "status": "current",
        "mode": "working",
        "subject": {"reference": f"Patient/{patient_id}"},
        "entry": [{"item": {"reference": doc_url}}],
    }
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            post(binary_resource(patient_id, data), bin_url),
            post(doc, doc_url),
            post(submission, urn()),
        ],
    }
    return bundle, doc


async def send(client, headers, bundle):
    return await client.post("/", json=bundle, headers={**headers, **FHIR_JSON})


async def new_patient(client, auth, **extra) -> str:
    return (await create(client, await auth.operator(), patient(**extra)))["id"]


async def lgc(auth) -> dict[str, str]:
    return await auth.system("lgc-iti65", SYSTEM_SCOPES)


async def footprint(app, pid: str) -> tuple[int, ...]:
    """Rows that belong to a patient: resources, versions, content references."""
    async with app.state.engine.connect() as conn:
        counts = []
        for table in (resources, resource_versions, blob_repo.blob_refs):
            stmt = select(func.count()).select_from(table).where(table.c.patient_id == pid)
            counts.append((await conn.execute(stmt)).scalar_one())
        return tuple(counts)


async def refused(client, app, headers, bundle, pid: str, status: int, expected: str):
    """Send a deposit that must be refused with `expected`, and write nothing."""
    before = await footprint(app, pid)
    r = await send(client, headers, bundle)
    assert r.status_code == status and code(r) == expected, r.text
    assert r.json()["resourceType"] == "OperationOutcome"
    assert await footprint(app, pid) == before
    return r


def code(r) -> str:
    return r.json()["issue"][0]["details"]["coding"][0]["code"]


def entry_ids(r) -> list[str]:
    return [e["response"]["location"].split("/")[-3] for e in r.json()["entry"]]


async def read_doc(client, auth, doc_id: str) -> dict:
    r = await client.get(f"/DocumentReference/{doc_id}", headers=await auth.operator())
    assert r.status_code == 200, r.text
    return r.json()


async def test_provide_document_bundle(client, auth, app):
    pid = await new_patient(client, auth)
    headers = await lgc(auth)
    data = pdf(50 * 1024)
    bundle, _ = iti65(pid, data)
    r = await send(client, headers, bundle)
    assert r.status_code == 200, r.text
    bin_id, doc_id, _ = entry_ids(r)
    doc = await read_doc(client, auth, doc_id)
    att = doc["content"][0]["attachment"]
    assert att["url"] == f"Binary/{bin_id}"
    assert att["size"] == len(data) and att["hash"] == sha1_b64(data)
    assert {"system": CONFIDENTIALITY, "code": "N", "display": "normal"} in [
        c for label in doc["securityLabel"] for c in label["coding"]
    ]
    # The patient finds it by type and date (ITI-67), then downloads the same bytes (ITI-68).
    mine = await auth.patient(pid)
    found = await client.get(
        "/DocumentReference",
        params={"patient": pid, "type": f"{LOINC}|11502-2", "date": "ge2024-03-01"},
        headers=mine,
    )
    assert [e["resource"]["id"] for e in found.json()["entry"]] == [doc_id]
    elsewhere = await client.get(
        "/DocumentReference",
        params={"patient": pid, "type": f"{LOINC}|11502-2", "date": "lt2024-03-01"},
        headers=mine,
    )
    assert elsewhere.json()["total"] == 0
    raw = await client.get(f"/Binary/{bin_id}", headers=mine)
    assert raw.status_code == 200 and raw.content == data
    async with app.state.engine.connect() as conn:
        stored = (
            await conn.execute(
                select(resources.c.content).where(
                    resources.c.resource_type == "Binary", resources.c.id == bin_id
                )
            )
        ).scalar_one()
        assert "data" not in stored
        assert await blob_repo.refs_of_version(conn, pid, "Binary", bin_id, 1)


async def test_missing_metadata_is_422_with_every_element(client, auth, app):
    pid = await new_patient(client, auth)
    bundle, doc = iti65(pid, pdf())
    for name in ("type", "category"):
        del doc[name]
    r = await refused(client, app, await lgc(auth), bundle, pid, 422, "MISSING_METADATA")
    paths = [e for issue in r.json()["issue"] for e in issue["expression"]]
    assert paths == ["DocumentReference.type", "DocumentReference.category"]


async def test_the_pdsm_profile_adds_its_required_elements(client, auth, app):
    pid = await new_patient(client, auth)
    headers = await lgc(auth)
    bundle, doc = iti65(pid, pdf())
    for name in ("custodian", "date", "context"):
        del doc[name]
    del doc["content"][0]["attachment"]["title"]
    assert (await send(client, headers, bundle)).status_code == 200  # plain MHD: accepted
    bundle, doc = iti65(pid, pdf(), meta={"profile": [PDSM_PROFILE]})
    for name in ("custodian", "date", "context"):
        del doc[name]
    del doc["content"][0]["attachment"]["title"]
    r = await refused(client, app, headers, bundle, pid, 422, "MISSING_METADATA")
    paths = [e for issue in r.json()["issue"] for e in issue["expression"]]
    assert paths == [
        "DocumentReference.date",
        "DocumentReference.custodian",
        "DocumentReference.content[0].attachment.title",
        "DocumentReference.content[0].attachment.size",
        "DocumentReference.content[0].attachment.hash",
        "DocumentReference.context.period.start",
    ]


async def test_size_and_hash_are_verified(client, auth, app):
    pid = await new_patient(client, auth)
    headers = await lgc(auth)
    data = pdf()
    bundle, doc = iti65(pid, data)
    doc["content"][0]["attachment"]["hash"] = sha1_b64(b"something else")
    await refused(client, app, headers, bundle, pid, 422, "HASH_MISMATCH")
    bundle, doc = iti65(pid, data)
    doc["content"][0]["attachment"]["size"] = len(data) + 1
    await refused(client, app, headers, bundle, pid, 422, "SIZE_MISMATCH")
    bundle, doc = iti65(pid, data)
    doc["content"][0]["attachment"].update(size=len(data), hash=sha1_b64(data))
    r = await send(client, headers, bundle)
    assert r.status_code == 200, r.text


async def test_content_type_rules(client, auth, app):
    pid = await new_patient(client, auth)
    headers = await lgc(auth)
    bundle, doc = iti65(pid, pdf())
    doc["content"][0]["attachment"]["contentType"] = "application/x-msdownload"
    await refused(client, app, headers, bundle, pid, 422, "CONTENT_TYPE_NOT_ALLOWED")
    bundle, doc = iti65(pid, pdf())
    doc["content"][0]["attachment"]["contentType"] = "image/png"  # the Binary is a PDF
    await refused(client, app, headers, bundle, pid, 422, "CONTENT_TYPE_MISMATCH")
    bundle, _ = iti65(pid, b"this is not a PDF at all")
    await refused(client, app, headers, bundle, pid, 422, "CONTENT_TYPE_MISMATCH")


async def test_inline_attachment_gets_size_and_hash(client, auth, app):
    pid = await new_patient(client, auth)
    text = "Résultat: normal".encode()
    doc = pdsm_document(pid)
    doc["content"][0]["attachment"].update(
        contentType="text/plain", data=base64.b64encode(text).decode()
    )
    r = await client.post(
        "/DocumentReference", json=doc, headers={**(await lgc(auth)), **FHIR_JSON}
    )
    assert r.status_code == 201, r.text
    att = r.json()["content"][0]["attachment"]
    assert att["size"] == len(text) and att["hash"] == sha1_b64(text)


async def test_same_master_identifier_is_idempotent_or_conflict(client, auth, app):
    pid = await new_patient(client, auth)
    headers = await lgc(auth)
    data = pdf()
    bundle, doc = iti65(pid, data)
    first = await send(client, headers, bundle)
    assert first.status_code == 200, first.text
    doc_id = entry_ids(first)[1]

    again, _ = iti65(pid, data, masterIdentifier=doc["masterIdentifier"])
    r = await send(client, headers, again)
    assert r.status_code == 200, r.text
    assert r.json()["entry"][1]["response"]["status"] == "200 OK"
    assert entry_ids(r)[1] == doc_id
    assert (await read_doc(client, auth, doc_id))["meta"]["versionId"] == "1"
    # The retry's content entry is answered by the stored Binary: no second copy of it.
    assert r.json()["entry"][0]["response"]["status"] == "200 OK"
    assert entry_ids(r)[0] == entry_ids(first)[0]
    async with app.state.engine.connect() as conn:
        binaries = await conn.scalar(
            select(func.count())
            .select_from(resources)
            .where(resources.c.resource_type == "Binary", resources.c.patient_id == pid)
        )
    assert binaries == 1

    other, _ = iti65(pid, pdf(), masterIdentifier=doc["masterIdentifier"])
    await refused(client, app, headers, other, pid, 409, "DUPLICATE_DOCUMENT")


async def test_replacement_supersedes_in_the_same_transaction(client, auth, app):
    pid = await new_patient(client, auth)
    headers = await lgc(auth)
    first = await send(client, headers, iti65(pid, pdf())[0])
    old_id = entry_ids(first)[1]
    replaces = [{"code": "replaces", "target": {"reference": f"DocumentReference/{old_id}"}}]
    r = await send(client, headers, iti65(pid, pdf(), relatesTo=replaces)[0])
    assert r.status_code == 200, r.text
    old = await read_doc(client, auth, old_id)
    assert old["status"] == "superseded" and old["meta"]["versionId"] == "2"
    new = await read_doc(client, auth, entry_ids(r)[1])
    assert new["status"] == "current"

    # The superseded document cannot be replaced again; nothing of that Bundle is kept.
    await refused(
        client,
        app,
        headers,
        iti65(pid, pdf(), relatesTo=replaces)[0],
        pid,
        409,
        "DOCUMENT_NOT_CURRENT",
    )
    assert (await read_doc(client, auth, old_id))["meta"]["versionId"] == "2"

    # Replacing another patient's document is refused.
    other = await new_patient(client, auth)
    theirs = entry_ids(await send(client, headers, iti65(other, pdf())[0]))[1]
    cross = [{"code": "replaces", "target": {"reference": f"DocumentReference/{theirs}"}}]
    await refused(
        client,
        app,
        headers,
        iti65(pid, pdf(), relatesTo=cross)[0],
        pid,
        422,
        "REPLACES_OTHER_PATIENT",
    )


async def test_binary_must_name_its_patient(client, auth, app):
    pid = await new_patient(client, auth)
    bundle, _ = iti65(pid, pdf())
    bundle["entry"][0]["resource"]["securityContext"] = {"reference": "DocumentReference/x"}
    await refused(client, app, await lgc(auth), bundle, pid, 422, "BINARY_PATIENT_REQUIRED")


async def test_patient_adds_own_document_with_less_metadata(client, auth, app):
    pid = await new_patient(client, auth)
    headers = await auth.patient(pid)
    data = pdf()
    r = await client.post(
        "/Binary",
        content=data,
        headers={
            **headers,
            "Content-Type": "application/pdf",
            "X-Security-Context": f"Patient/{pid}",
        },
    )
    assert r.status_code == 201, r.text
    doc = {
        "resourceType": "DocumentReference",
        "status": "current",
        "subject": {"reference": f"Patient/{pid}"},
        "content": [
            {"attachment": {"contentType": "application/pdf", "url": f"Binary/{r.json()['id']}"}}
        ],
    }
    created = await client.post("/DocumentReference", json=doc, headers={**headers, **FHIR_JSON})
    assert created.status_code == 201, created.text
    assert created.json()["content"][0]["attachment"]["hash"] == sha1_b64(data)
