"""create / read / vread / update / delete / history through HTTP."""

import asyncio
import uuid

from tests.support.auth import code_of
from tests.support.fhir import FHIR_JSON, LOCAL_ID, create, document, patient, with_local_id


async def test_create_read_roundtrip(client, auth):
    ops = await auth.operator()
    r = await client.post("/Patient", json=patient(), headers={**ops, **FHIR_JSON})
    assert r.status_code == 201, r.text
    body = r.json()
    pid = body["id"]
    assert body["meta"]["versionId"] == "1"
    assert r.headers["etag"] == 'W/"1"'
    assert r.headers["location"].endswith(f"/Patient/{pid}/_history/1")
    assert r.headers["content-type"].startswith("application/fhir+json")
    got = await client.get(f"/Patient/{pid}", headers=ops)
    assert got.status_code == 200
    assert got.json() == body
    assert got.headers["etag"] == 'W/"1"'
    assert "last-modified" in got.headers


async def test_server_assigns_id_ignoring_client_id(client, auth):
    ops = await auth.operator()
    created = await create(client, ops, patient(id="my-own-id"))
    assert created["id"] != "my-own-id"


async def test_update_versions_and_vread(client, auth):
    ops = await auth.operator()
    p = await create(client, ops, patient(family="Avant"))
    p["name"][0]["family"] = "Apres"
    r = await client.put(f"/Patient/{p['id']}", json=p, headers={**ops, **FHIR_JSON})
    assert r.status_code == 200, r.text
    assert r.json()["meta"]["versionId"] == "2"
    v1 = await client.get(f"/Patient/{p['id']}/_history/1", headers=ops)
    assert v1.status_code == 200 and v1.json()["name"][0]["family"] == "Avant"
    v2 = await client.get(f"/Patient/{p['id']}/_history/2", headers=ops)
    assert v2.json()["name"][0]["family"] == "Apres"
    assert (await client.get(f"/Patient/{p['id']}/_history/9", headers=ops)).status_code == 404


async def test_if_match_mismatch_is_412(client, auth):
    ops = await auth.operator()
    p = await create(client, ops, patient())
    headers = {**ops, **FHIR_JSON, "If-Match": 'W/"7"'}
    r = await client.put(f"/Patient/{p['id']}", json=p, headers=headers)
    assert r.status_code == 412
    assert r.json()["resourceType"] == "OperationOutcome"
    ok = await client.put(f"/Patient/{p['id']}", json=p, headers={**headers, "If-Match": 'W/"1"'})
    assert ok.status_code == 200


async def test_concurrent_if_match_exactly_one_wins(client, auth):
    ops = await auth.operator()
    p = await create(client, ops, patient())
    headers = {**ops, **FHIR_JSON, "If-Match": 'W/"1"'}

    async def attempt(i: int) -> int:
        body = {**p, "name": [{"family": f"Writer{i}"}]}
        return (await client.put(f"/Patient/{p['id']}", json=body, headers=headers)).status_code

    statuses = await asyncio.gather(*(attempt(i) for i in range(8)))
    assert sorted(statuses) == [200] + [412] * 7
    history = (await client.get(f"/Patient/{p['id']}/_history", headers=ops)).json()
    assert history["total"] == 2


async def test_delete_then_gone_history_kept(client, auth):
    ops = await auth.operator()
    p = await create(client, ops, patient())
    r = await client.delete(f"/Patient/{p['id']}", headers=ops)
    assert r.status_code == 204
    gone = await client.get(f"/Patient/{p['id']}", headers=ops)
    assert gone.status_code == 410
    assert gone.json()["issue"][0]["code"] == "deleted"
    history = (await client.get(f"/Patient/{p['id']}/_history", headers=ops)).json()
    assert history["type"] == "history"
    assert history["total"] == 2
    first = history["entry"][0]
    assert first["request"]["method"] == "DELETE" and "resource" not in first
    assert history["entry"][1]["resource"]["id"] == p["id"]
    assert (await client.delete(f"/Patient/{p['id']}", headers=ops)).status_code == 204


async def test_conditional_create(client, auth):
    ops = await auth.operator()
    body = patient()
    ins = body["identifier"][0]
    cond = {**ops, **FHIR_JSON, "If-None-Exist": f"identifier={ins['system']}|{ins['value']}"}
    first = await client.post("/Patient", json=body, headers=cond)
    assert first.status_code == 201
    again = await client.post("/Patient", json=body, headers=cond)
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    duplicate = await client.post("/Patient", json=body, headers={**ops, **FHIR_JSON})
    assert duplicate.status_code == 409 and code_of(duplicate) == "INS_CONFLICT"
    local = uuid.uuid4().hex
    for _ in range(2):  # two Patients sharing a local (non-INS) number
        await create(client, ops, with_local_id(patient(), local))
    cond = {**ops, **FHIR_JSON, "If-None-Exist": f"identifier={LOCAL_ID}|{local}"}
    ambiguous = await client.post("/Patient", json=patient(), headers=cond)
    assert ambiguous.status_code == 412


async def test_document_must_reference_existing_patient(client, auth):
    ops = await auth.operator()
    r = await client.post(
        "/DocumentReference", json=document("no-such-patient"), headers={**ops, **FHIR_JSON}
    )
    assert r.status_code == 422
    assert r.json()["issue"][0]["details"]["coding"][0]["code"] == "REFERENCE_NOT_FOUND"


async def test_read_unknown_is_404(client, auth):
    ops = await auth.operator()
    r = await client.get("/Patient/does-not-exist", headers=ops)
    assert r.status_code == 404
    assert r.json()["resourceType"] == "OperationOutcome"


async def test_instance_history_bad_paging_is_400(client, auth):
    ops = await auth.operator()
    p = await create(client, ops, patient())
    for query in ("_count=abc", "_since=yesterday", "_offset=-1"):
        r = await client.get(f"/Patient/{p['id']}/_history?{query}", headers=ops)
        assert r.status_code == 400, query
        assert r.json()["issue"][0]["details"]["coding"][0]["code"] == "INVALID_SEARCH"
    page = (await client.get(f"/Patient/{p['id']}/_history?_count=1", headers=ops)).json()
    assert page["total"] == 1 and len(page["entry"]) == 1
