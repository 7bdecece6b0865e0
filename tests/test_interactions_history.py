"""Type-level and system-level _history: _since, _count, and the access policy."""

import uuid

from tests.support.fhir import FHIR_JSON, create, document, patient


def entry_keys(bundle: dict) -> list[tuple[str, str, str]]:
    """(type, id, version) of each entry, from fullUrl and response.etag."""
    out = []
    for e in bundle.get("entry", []):
        rtype, id_ = e["fullUrl"].split("/")[-2:]
        out.append((rtype, id_, e["response"]["etag"].strip('W/"')))
    return out


async def _space(client, ops):
    """A patient with two document versions and a deletion; another patient with a document."""
    p = await create(client, ops, patient())
    doc = await create(client, ops, document(p["id"]))
    doc["status"] = "superseded"
    r = await client.put(f"/DocumentReference/{doc['id']}", json=doc, headers={**ops, **FHIR_JSON})
    assert r.status_code == 200
    gone = await create(client, ops, document(p["id"]))
    assert (await client.delete(f"/DocumentReference/{gone['id']}", headers=ops)).status_code == 204
    q = await create(client, ops, patient())
    q_doc = await create(client, ops, document(q["id"]))
    return p, doc, gone, q, q_doc


async def test_type_history_patient_sees_own_compartment_only(client, auth):
    ops = await auth.operator()
    p, doc, gone, _q, q_doc = await _space(client, ops)
    own = await auth.patient(p["id"])
    r = await client.get("/DocumentReference/_history", headers=own)
    assert r.status_code == 200, r.text
    bundle = r.json()
    assert bundle["type"] == "history"
    keys = entry_keys(bundle)
    assert keys == [
        ("DocumentReference", gone["id"], "2"),
        ("DocumentReference", gone["id"], "1"),
        ("DocumentReference", doc["id"], "2"),
        ("DocumentReference", doc["id"], "1"),
    ]
    assert bundle["total"] == 4
    assert bundle["entry"][0]["request"]["method"] == "DELETE"
    assert "resource" not in bundle["entry"][0]
    assert bundle["entry"][2]["resource"]["status"] == "superseded"
    assert all(k[1] != q_doc["id"] for k in keys)


async def test_type_history_since_and_count(client, auth):
    ops = await auth.operator()
    p, doc, gone, *_ = await _space(client, ops)
    since = doc["meta"]["lastUpdated"]
    own = await auth.patient(p["id"])
    r = await client.get(
        "/DocumentReference/_history", params={"_since": since, "_count": "2"}, headers=own
    )
    bundle = r.json()
    assert bundle["total"] == 4  # doc v1 was written exactly at _since: included
    assert len(bundle["entry"]) == 2
    links = {link["relation"]: link["url"] for link in bundle["link"]}
    assert "_since=" in links["next"] and "_count=2" in links["next"]
    page2 = await client.get(links["next"].removeprefix("http://test"), headers=own)
    assert [k[1] for k in entry_keys(page2.json())] == [doc["id"], doc["id"]]
    later = gone["meta"]["lastUpdated"]
    r = await client.get("/DocumentReference/_history", params={"_since": later}, headers=own)
    assert {k[1] for k in entry_keys(r.json())} == {gone["id"]}
    bad = await client.get("/DocumentReference/_history?_since=yesterday", headers=own)
    assert bad.status_code == 400
    bad = await client.get("/DocumentReference/_history?_count=x", headers=own)
    assert bad.status_code == 400


async def test_system_history_applies_policy_across_types(client, auth):
    ops = await auth.operator()
    p, doc, gone, q, q_doc = await _space(client, ops)
    own = await auth.patient(p["id"])
    r = await client.get("/_history", params={"_since": p["meta"]["lastUpdated"]}, headers=own)
    assert r.status_code == 200, r.text
    keys = entry_keys(r.json())
    ids = {k[1] for k in keys}
    assert {p["id"], doc["id"], gone["id"]} <= ids
    assert q["id"] not in ids and q_doc["id"] not in ids
    # only this patient's compartment, plus types outside any compartment
    for e in r.json().get("entry", []):
        res = e.get("resource")
        if res and res["resourceType"] == "Patient":
            assert res["id"] == p["id"]
        if res and res["resourceType"] == "DocumentReference":
            assert res["subject"]["reference"] == f"Patient/{p['id']}"
    # the operator sees both patients
    everything = await client.get(
        "/_history", params={"_since": p["meta"]["lastUpdated"]}, headers=ops
    )
    all_ids = {k[1] for k in entry_keys(everything.json())}
    assert {p["id"], q["id"], q_doc["id"]} <= all_ids


async def test_system_history_scopes(client, auth):
    ops = await auth.operator()
    p, _doc, *_ = await _space(client, ops)
    docs_only = await auth.patient(p["id"], scopes="patient/DocumentReference.rs")
    r = await client.get(
        "/_history", params={"_since": p["meta"]["lastUpdated"]}, headers=docs_only
    )
    assert r.status_code == 200
    assert {k[0] for k in entry_keys(r.json())} == {"DocumentReference"}
    write_only = await auth.patient(p["id"], scopes="patient/DocumentReference.c")
    assert (await client.get("/_history", headers=write_only)).status_code == 403
    assert (await client.get("/Patient/_history", headers=docs_only)).status_code == 403


async def test_system_client_history_sees_its_own_writes(client, auth):
    ops = await auth.operator()
    p = await create(client, ops, patient())
    client_id = f"lgc-hist-{uuid.uuid4().hex[:6]}"
    lgc = await auth.system(client_id, scopes="system/DocumentReference.cruds")
    mine = await create(client, lgc, document(p["id"]))
    await create(client, ops, document(p["id"]))  # written by someone else
    r = await client.get("/_history", headers=lgc)
    assert r.status_code == 200, r.text
    assert entry_keys(r.json()) == [("DocumentReference", mine["id"], "1")]
    r = await client.get("/DocumentReference/_history", headers=lgc)
    assert entry_keys(r.json()) == [("DocumentReference", mine["id"], "1")]
