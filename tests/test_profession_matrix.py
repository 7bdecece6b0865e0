"""The profession matrix: which professions read which document types (access/matrix.py)."""

import json

import pytest
from jose.jwt import get_unverified_claims

from espace_api.access.matrix import DEFAULT_PATH, MatrixError, load
from espace_api.main import create_app
from tests.support.auth import DOCTOR, PHYSIOTHERAPIST, VendorKey, token_form
from tests.support.documents import pdf
from tests.support.fhir import PRO_SCOPES, create, created, grant_care, patient, search
from tests.test_auth_issuer import TOKEN_URL, register, request_token
from tests.test_documents_deposit import iti65, send

SOFTWARE_SCOPES = "system/DocumentReference.crs system/Binary.crs system/Patient.s system/List.c"
LAB, IMAGING, UNLISTED = "11502-2", "18748-4", "34133-9"


async def deposit(client, vendor, pid: str, type_code: str) -> tuple[str, str]:
    """A PDSm-complete deposit of one document type; (DocumentReference id, Binary url)."""
    coding = [{"system": "http://loinc.org", "code": type_code}]
    bundle, _ = iti65(pid, pdf(), type={"coding": coding}, category=[{"coding": coding}])
    r = await send(client, vendor, bundle)
    assert r.status_code == 200, r.text
    doc = created(r)
    return doc["id"], doc["content"][0]["attachment"]["url"]


@pytest.fixture
async def space(client, auth):
    """A patient with a lab report, an imaging report and an unlisted document type."""
    pid = (await create(client, await auth.operator(), patient(family="Matrix")))["id"]
    vendor = await auth.system("lgc-matrix", SOFTWARE_SCOPES)
    docs = {code: await deposit(client, vendor, pid, code) for code in (LAB, IMAGING, UNLISTED)}
    return pid, docs


async def professional(client, auth, pid: str, rpps: str, profession: str | None):
    headers = await auth.user(f"rpps-{rpps}", PRO_SCOPES, profession=profession)
    await grant_care(client, headers, pid, rpps)
    return headers


async def test_a_physiotherapist_cannot_read_a_lab_report_a_gp_can(client, auth, space):
    pid, docs = space
    gp = await professional(client, auth, pid, "7010", DOCTOR)
    physio = await professional(client, auth, pid, "7070", PHYSIOTHERAPIST)
    for code, (doc_id, content) in docs.items():
        assert (await client.get(f"/DocumentReference/{doc_id}", headers=gp)).status_code == 200
        assert (await client.get(f"/{content}", headers=gp)).status_code == 200
        expected = 404 if code == LAB else 200
        r = await client.get(f"/DocumentReference/{doc_id}", headers=physio)
        assert r.status_code == expected, (code, r.text)
        assert (await client.get(f"/{content}", headers=physio)).status_code == expected
    found = await search(client, physio, "/DocumentReference", patient=pid)
    assert found["total"] == 2
    assert {e["resource"]["id"] for e in found["entry"]} == {
        docs[IMAGING][0],
        docs[UNLISTED][0],
    }
    assert (await search(client, gp, "/DocumentReference", patient=pid))["total"] == 3
    lab_search = await search(client, physio, "/DocumentReference", patient=pid, type=LAB)
    assert lab_search["total"] == 0


async def test_an_unknown_profession_reads_no_listed_type(client, auth, space):
    pid, docs = space
    nobody = await professional(client, auth, pid, "7099", None)
    found = await search(client, nobody, "/DocumentReference", patient=pid)
    assert [e["resource"]["id"] for e in found["entry"]] == [docs[UNLISTED][0]]


async def test_the_author_always_sees_what_it_deposited(client, auth):
    pid = (await create(client, await auth.operator(), patient(family="Author")))["id"]
    physio_software = await auth.system(
        "lgc-physio", SOFTWARE_SCOPES, practitioner="rpps-7071", profession=PHYSIOTHERAPIST
    )
    doc_id, content = await deposit(client, physio_software, pid, LAB)
    r = await client.get(f"/DocumentReference/{doc_id}", headers=physio_software)
    assert r.status_code == 200
    assert (await client.get(f"/{content}", headers=physio_software)).status_code == 200


async def test_explain_names_the_matrix_rule(client, auth, space):
    pid, docs = space
    me = await auth.patient(pid)
    await professional(client, auth, pid, "7072", PHYSIOTHERAPIST)
    url = f"/DocumentReference/{docs[LAB][0]}/$explain"
    r = await client.get(url, params={"practitioner": "rpps-7072", "profession": "70"}, headers=me)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["parameter"][0] == {"name": "visible", "valueBoolean": False}
    rules = {
        part["code"]["valueCode"]: part
        for p in body["parameter"]
        if p["name"] == "rule"
        for part in [{x["name"]: x for x in p["part"]}]
    }
    matrix = rules["profession-matrix"]
    assert matrix["holds"]["valueBoolean"] is False
    assert load().version in matrix["description"]["valueString"]
    assert "profession 70" in matrix["description"]["valueString"]
    assert rules["care-relationship"]["holds"]["valueBoolean"] is True


async def test_a_token_carries_the_profession_of_the_professional_it_names(client, auth, app, now):
    key = VendorKey("ES384")
    client_id = await register(client, auth, key)
    assertion = key.assertion(
        client_id, TOKEN_URL, now, practitioner="10001234567", profession=PHYSIOTHERAPIST
    )
    r = await request_token(client, token_form(assertion, "system/Patient.s"))
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    assert get_unverified_claims(token)["profession"] == PHYSIOTHERAPIST
    identity = await app.state.authenticator.identity_for(token)
    assert identity.profession == PHYSIOTHERAPIST
    bad = key.assertion(client_id, TOKEN_URL, now, practitioner="10001234567", profession="x y")
    r = await request_token(client, token_form(bad, "system/Patient.s"))
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"


def test_a_bad_matrix_stops_the_start(tmp_path, settings):
    shipped = json.loads(DEFAULT_PATH.read_text())
    cases = {
        "not-json.json": "{",
        "no-version.json": json.dumps({**shipped, "version": ""}),
        "unknown-profession.json": json.dumps(
            {**shipped, "documentTypes": {LAB: {"readers": ["10", "99"]}}}
        ),
    }
    for name, text in cases.items():
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(MatrixError):
            create_app(settings.model_copy(update={"profession_matrix_file": str(path)}))
    good = tmp_path / "good.json"
    good.write_text(json.dumps({**shipped, "version": "local-1"}))
    create_app(settings.model_copy(update={"profession_matrix_file": str(good)}))
    assert load(good).version == "local-1"
