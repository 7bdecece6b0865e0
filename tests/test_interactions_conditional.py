"""Conditional update, conditional delete and conditional read through HTTP."""

import asyncio
import uuid
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime

from tests.support.fhir import FHIR_JSON, INS_TEST, LOCAL_ID, create, patient, with_local_id


def by_ins(body: dict) -> str:
    return f"identifier={INS_TEST}|{body['identifier'][0]['value']}"


# ---------------------------------------------------------------- conditional update


async def test_conditional_update_creates_then_updates(client, auth):
    ops = await auth.operator()
    body = patient(family="Premier")
    query = by_ins(body)
    created = await client.put(f"/Patient?{query}", json=body, headers={**ops, **FHIR_JSON})
    assert created.status_code == 201, created.text
    pid = created.json()["id"]
    assert created.headers["location"].endswith(f"/Patient/{pid}/_history/1")
    body["name"][0]["family"] = "Second"
    updated = await client.put(f"/Patient?{query}", json=body, headers={**ops, **FHIR_JSON})
    assert updated.status_code == 200, updated.text
    assert updated.json()["id"] == pid
    assert updated.json()["meta"]["versionId"] == "2"
    assert updated.json()["name"][0]["family"] == "Second"
    # a body id that names the matched resource is fine, another id is refused
    same = await client.put(
        f"/Patient?{query}", json={**body, "id": pid}, headers={**ops, **FHIR_JSON}
    )
    assert same.status_code == 200
    other = await client.put(
        f"/Patient?{query}", json={**body, "id": "someone-else"}, headers={**ops, **FHIR_JSON}
    )
    assert other.status_code == 400
    # If-Match applies to the matched resource
    stale = await client.put(
        f"/Patient?{query}", json=body, headers={**ops, **FHIR_JSON, "If-Match": 'W/"1"'}
    )
    assert stale.status_code == 412


async def test_conditional_update_ambiguous_is_412(client, auth):
    ops = await auth.operator()
    local = uuid.uuid4().hex
    await create(client, ops, with_local_id(patient(), local))
    await create(client, ops, with_local_id(patient(), local))  # one local number, twice
    query = f"identifier={LOCAL_ID}|{local}"
    r = await client.put(f"/Patient?{query}", json=patient(), headers={**ops, **FHIR_JSON})
    assert r.status_code == 412
    assert r.json()["issue"][0]["details"]["coding"][0]["code"] == "AMBIGUOUS_MATCH"


async def test_conditional_update_needs_criteria(client, auth):
    ops = await auth.operator()
    r = await client.put("/Patient", json=patient(), headers={**ops, **FHIR_JSON})
    assert r.status_code == 400
    unknown = await client.put("/Patient?nope=1", json=patient(), headers={**ops, **FHIR_JSON})
    assert unknown.status_code == 400


async def test_conditional_update_no_match_with_id(client, auth):
    ops = await auth.operator()
    # Patient does not allow update-as-create: a client id with no match is refused
    body = {**patient(), "id": "client-chosen-patient"}
    r = await client.put(f"/Patient?{by_ins(body)}", json=body, headers={**ops, **FHIR_JSON})
    assert r.status_code == 400
    # Organization does: the client's id is kept
    org = {
        "resourceType": "Organization",
        "id": "finess-cond-1",
        "identifier": [{"system": "urn:oid:1.2.250.1.71.4.2.2", "value": "cond-1"}],
        "name": "Clinique Conditionnelle",
    }
    query = "identifier=urn:oid:1.2.250.1.71.4.2.2|cond-1"
    created = await client.put(f"/Organization?{query}", json=org, headers={**ops, **FHIR_JSON})
    assert created.status_code == 201, created.text
    assert created.json()["id"] == "finess-cond-1"


async def test_concurrent_conditional_updates_create_once(client, auth):
    ops = await auth.operator()
    body = patient()
    query = by_ins(body)
    statuses = await asyncio.gather(
        *(
            client.put(f"/Patient?{query}", json=body, headers={**ops, **FHIR_JSON})
            for _ in range(4)
        )
    )
    assert sorted(r.status_code for r in statuses) == [200, 200, 200, 201]
    found = (await client.get(f"/Patient?{query}", headers=ops)).json()
    assert found["total"] == 1


# ---------------------------------------------------------------- conditional delete


async def test_conditional_delete(client, auth):
    ops = await auth.operator()
    body = patient()
    p = await create(client, ops, body)
    query = by_ins(body)
    r = await client.delete(f"/Patient?{query}", headers=ops)
    assert r.status_code == 204
    assert (await client.get(f"/Patient/{p['id']}", headers=ops)).status_code == 410
    # nothing matches any more: still 204, nothing to delete
    again = await client.delete(f"/Patient?{query}", headers=ops)
    assert again.status_code == 204


async def test_conditional_delete_ambiguous_is_412_and_deletes_nothing(client, auth):
    ops = await auth.operator()
    local = uuid.uuid4().hex
    a = await create(client, ops, with_local_id(patient(), local))
    b = await create(client, ops, with_local_id(patient(), local))
    r = await client.delete(f"/Patient?identifier={LOCAL_ID}|{local}", headers=ops)
    assert r.status_code == 412
    for p in (a, b):
        assert (await client.get(f"/Patient/{p['id']}", headers=ops)).status_code == 200


async def test_conditional_delete_needs_criteria_and_scope(client, auth):
    ops = await auth.operator()
    assert (await client.delete("/Patient", headers=ops)).status_code == 400
    reader = await auth.user(scopes="user/*.rs")
    r = await client.delete("/Patient?identifier=x|y", headers=reader)
    assert r.status_code == 403


# ---------------------------------------------------------------- conditional read


async def test_conditional_read_if_none_match(client, auth):
    ops = await auth.operator()
    p = await create(client, ops, patient())
    url = f"/Patient/{p['id']}"
    r = await client.get(url, headers={**ops, "If-None-Match": 'W/"1"'})
    assert r.status_code == 304
    assert r.content == b""
    assert r.headers["etag"] == 'W/"1"'
    changed = await client.get(url, headers={**ops, "If-None-Match": 'W/"0"'})
    assert changed.status_code == 200 and changed.json()["id"] == p["id"]
    p["gender"] = "male"
    await client.put(url, json=p, headers={**ops, **FHIR_JSON})
    assert (await client.get(url, headers={**ops, "If-None-Match": 'W/"1"'})).status_code == 200
    assert (await client.get(url, headers={**ops, "If-None-Match": 'W/"2"'})).status_code == 304


async def test_conditional_read_if_modified_since(client, auth):
    ops = await auth.operator()
    p = await create(client, ops, patient())
    url = f"/Patient/{p['id']}"
    first = await client.get(url, headers=ops)
    last_modified = first.headers["last-modified"]
    r = await client.get(url, headers={**ops, "If-Modified-Since": last_modified})
    assert r.status_code == 304
    earlier = parsedate_to_datetime(last_modified).timestamp() - 3600
    before = format_datetime(datetime.fromtimestamp(earlier, UTC), usegmt=True)
    r = await client.get(url, headers={**ops, "If-Modified-Since": before})
    assert r.status_code == 200
    junk = await client.get(url, headers={**ops, "If-Modified-Since": "yesterday"})
    assert junk.status_code == 200
    # 304 never hides a refusal: deleted is still 410
    await client.delete(url, headers=ops)
    gone = await client.get(url, headers={**ops, "If-None-Match": 'W/"1"'})
    assert gone.status_code == 410
