"""Transaction and batch Bundles (POST /) through HTTP against Postgres."""

import uuid

from sqlalchemy import func, select, true

from espace_api.db.schema import audit_events, resource_versions, resources
from tests.support.auth import code_of
from tests.support.fhir import (
    FHIR_JSON,
    INS_TEST,
    LOCAL_ID,
    create,
    document,
    ids,
    patient,
    search,
    with_local_id,
)


async def row_counts(app) -> tuple[int, int, int]:
    """(resources, resource_versions, audit_events) row counts."""
    async with app.state.engine.connect() as conn:
        return tuple(
            [
                (await conn.execute(select(func.count()).select_from(t).where(w))).scalar_one()
                for t, w in (
                    (resources, true()),
                    (resource_versions, true()),
                    # refused requests leave refusal events (outcome 4): count the others
                    (audit_events, audit_events.c.outcome == "0"),
                )
            ]
        )


def urn() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def post(resource: dict, full_url: str | None = None, **request: str) -> dict:
    entry = {
        "resource": resource,
        "request": {"method": "POST", "url": resource["resourceType"], **request},
    }
    if full_url:
        entry["fullUrl"] = full_url
    return entry


def bundle(kind: str, *entries: dict) -> dict:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


async def send(client, headers, body):
    return await client.post("/", json=body, headers={**headers, **FHIR_JSON})


async def test_transaction_resolves_urn_references_in_request_order(client, auth):
    ops = await auth.operator()
    p_url, ins = urn(), uuid.uuid4().hex[:15]
    doc = document("placeholder")
    doc["subject"] = {"reference": p_url}
    existing = await create(client, ops, patient())
    # the document comes first: processing must not depend on entry order
    body = bundle(
        "transaction",
        post(doc, urn()),
        post(patient(ins=ins), p_url),
        {"request": {"method": "GET", "url": f"Patient/{existing['id']}"}},
    )
    r = await send(client, ops, body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["type"] == "transaction-response"
    assert len(out["entry"]) == 3
    doc_entry, pat_entry, read_entry = out["entry"]
    assert doc_entry["response"]["status"].startswith("201")
    assert pat_entry["response"]["status"].startswith("201")
    assert read_entry["response"]["status"].startswith("200")
    assert read_entry["resource"]["id"] == existing["id"]
    for entry in (doc_entry, pat_entry):
        assert entry["response"]["etag"] == 'W/"1"'
        assert entry["response"]["location"].endswith("/_history/1")
    assert doc_entry["resource"]["resourceType"] == "DocumentReference"
    pid = pat_entry["resource"]["id"]
    assert pat_entry["response"]["location"].endswith(f"/Patient/{pid}/_history/1")
    assert doc_entry["resource"]["subject"]["reference"] == f"Patient/{pid}"
    # stored as rewritten and findable
    found = await search(client, ops, "/DocumentReference", patient=pid)
    assert ids(found) == [doc_entry["resource"]["id"]]
    found = await search(client, ops, "/Patient", identifier=f"{INS_TEST}|{ins}")
    assert ids(found) == [pid]


async def test_transaction_failing_entry_writes_nothing(client, auth, app):
    ops = await auth.operator()
    ins1, ins2 = uuid.uuid4().hex[:15], uuid.uuid4().hex[:15]
    p_url = urn()
    doc = document("placeholder")
    doc["subject"] = {"reference": p_url}
    bad = patient(birthDate="not-a-date")
    before = await row_counts(app)
    body = bundle(
        "transaction",
        post(patient(ins=ins1), p_url),
        post(doc, urn()),
        post(bad),
        post(patient(ins=ins2)),
    )
    r = await send(client, ops, body)
    assert r.status_code == 400, r.text
    outcome = r.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["details"]["coding"][0]["code"] == "INVALID_RESOURCE"
    assert "Bundle.entry[2]" in outcome["issue"][0]["diagnostics"]
    assert await row_counts(app) == before
    for ins in (ins1, ins2):
        assert (await search(client, ops, "/Patient", identifier=f"{INS_TEST}|{ins}"))["total"] == 0


async def test_transaction_failure_in_later_phase_rolls_back(client, auth, app):
    ops = await auth.operator()
    ins = uuid.uuid4().hex[:15]
    victim = await create(client, ops, patient())
    before = await row_counts(app)
    body = bundle(
        "transaction",
        {"request": {"method": "DELETE", "url": f"Patient/{victim['id']}"}},
        post(patient(ins=ins)),
        {"request": {"method": "GET", "url": "Patient/does-not-exist"}},
    )
    r = await send(client, ops, body)
    assert r.status_code == 404, r.text
    assert await row_counts(app) == before
    assert (await client.get(f"/Patient/{victim['id']}", headers=ops)).status_code == 200
    assert (await search(client, ops, "/Patient", identifier=f"{INS_TEST}|{ins}"))["total"] == 0


async def test_transaction_conditional_create(client, auth, app):
    ops = await auth.operator()
    ins = uuid.uuid4().hex[:15]
    existing = await create(client, ops, patient(ins=ins))
    p_url = urn()
    doc = document("placeholder")
    doc["subject"] = {"reference": p_url}
    cond = f"identifier={INS_TEST}|{ins}"
    body = bundle("transaction", post(patient(ins=ins), p_url, ifNoneExist=cond), post(doc))
    r = await send(client, ops, body)
    assert r.status_code == 200, r.text
    pat_entry, doc_entry = r.json()["entry"]
    assert pat_entry["response"]["status"].startswith("200")
    assert pat_entry["resource"]["id"] == existing["id"]
    assert doc_entry["resource"]["subject"]["reference"] == f"Patient/{existing['id']}"
    assert (await search(client, ops, "/Patient", identifier=f"{INS_TEST}|{ins}"))["total"] == 1
    # no match: created once, and the reference points at the new one
    ins2 = uuid.uuid4().hex[:15]
    p_url = urn()
    doc = document("placeholder")
    doc["subject"] = {"reference": p_url}
    cond = f"identifier={INS_TEST}|{ins2}"
    body = bundle("transaction", post(patient(ins=ins2), p_url, ifNoneExist=cond), post(doc))
    r = await send(client, ops, body)
    pat_entry, doc_entry = r.json()["entry"]
    assert pat_entry["response"]["status"].startswith("201")
    assert doc_entry["resource"]["subject"]["reference"] == f"Patient/{pat_entry['resource']['id']}"
    # ambiguous match (two Patients share a local, non-INS number): 412, nothing written
    local = uuid.uuid4().hex
    for _ in range(2):
        await create(client, ops, with_local_id(patient(), local))
    before = await row_counts(app)
    cond = f"identifier={LOCAL_ID}|{local}"
    body = bundle("transaction", post(with_local_id(patient(), local), urn(), ifNoneExist=cond))
    r = await send(client, ops, body)
    assert r.status_code == 412
    assert await row_counts(app) == before
    # a second Patient with the same INS: 409, nothing written
    body = bundle("transaction", post(patient(ins=ins), urn()))
    r = await send(client, ops, body)
    assert r.status_code == 409 and code_of(r) == "INS_CONFLICT"
    assert await row_counts(app) == before


async def test_transaction_update_and_delete_entries(client, auth):
    ops = await auth.operator()
    a = await create(client, ops, patient(family="Avant"))
    b = await create(client, ops, patient())
    a["name"][0]["family"] = "Apres"
    body = bundle(
        "transaction",
        {
            "resource": a,
            "request": {"method": "PUT", "url": f"Patient/{a['id']}", "ifMatch": 'W/"1"'},
        },
        {"request": {"method": "DELETE", "url": f"Patient/{b['id']}"}},
    )
    r = await send(client, ops, body)
    assert r.status_code == 200, r.text
    put_entry, del_entry = r.json()["entry"]
    assert put_entry["response"]["status"].startswith("200")
    assert put_entry["response"]["etag"] == 'W/"2"'
    assert del_entry["response"]["status"].startswith("204")
    assert (await client.get(f"/Patient/{a['id']}", headers=ops)).json()["name"][0]["family"] == (
        "Apres"
    )
    assert (await client.get(f"/Patient/{b['id']}", headers=ops)).status_code == 410
    # a stale If-Match fails the whole transaction
    body = bundle(
        "transaction",
        post(patient(ins=(ins := uuid.uuid4().hex[:15]))),
        {
            "resource": a,
            "request": {"method": "PUT", "url": f"Patient/{a['id']}", "ifMatch": 'W/"1"'},
        },
    )
    r = await send(client, ops, body)
    assert r.status_code == 412
    assert (await search(client, ops, "/Patient", identifier=f"{INS_TEST}|{ins}"))["total"] == 0


async def test_batch_entries_succeed_independently(client, auth, app):
    ops = await auth.operator()
    ins1, ins2 = uuid.uuid4().hex[:15], uuid.uuid4().hex[:15]
    before = await row_counts(app)
    body = bundle(
        "batch",
        post(patient(ins=ins1)),
        post(patient(birthDate="17/05/1980")),
        post(patient(ins=ins2)),
        {"request": {"method": "GET", "url": "Patient/does-not-exist"}},
    )
    r = await send(client, ops, body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["type"] == "batch-response"
    first, bad, third, missing = out["entry"]
    assert first["response"]["status"].startswith("201")
    assert third["response"]["status"].startswith("201")
    assert bad["response"]["status"].startswith("400")
    outcome = bad["response"]["outcome"]
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["details"]["coding"][0]["code"] == "INVALID_RESOURCE"
    assert missing["response"]["status"].startswith("404")
    assert missing["response"]["outcome"]["resourceType"] == "OperationOutcome"
    for ins in (ins1, ins2):
        assert (await search(client, ops, "/Patient", identifier=f"{INS_TEST}|{ins}"))["total"] == 1
    resources_after, versions_after, _ = await row_counts(app)
    assert (resources_after, versions_after) == (before[0] + 2, before[1] + 2)


async def test_batch_refuses_urn_references(client, auth):
    ops = await auth.operator()
    doc = document("placeholder")
    doc["subject"] = {"reference": urn()}
    r = await send(client, ops, bundle("batch", post(doc)))
    assert r.status_code == 200
    assert r.json()["entry"][0]["response"]["status"].startswith("400")


async def test_wrong_bundle_type_or_shape_is_400(client, auth, app):
    ops = await auth.operator()
    before = await row_counts(app)
    for body in (
        bundle("collection", post(patient())),
        bundle("searchset"),
        {"resourceType": "Patient"},
        bundle("transaction", {"resource": patient()}),  # no request
        bundle("transaction", {"request": {"method": "POST", "url": "Nope"}, "resource": {}}),
        bundle("transaction", {"request": {"method": "TRACE", "url": "Patient"}}),
    ):
        r = await send(client, ops, body)
        assert r.status_code == 400, (body, r.text)
        assert r.json()["resourceType"] == "OperationOutcome"
        assert r.json()["issue"][0]["details"]["coding"][0]["code"] == "INVALID_BUNDLE"
    assert await row_counts(app) == before


async def test_transaction_unresolved_urn_is_refused(client, auth, app):
    ops = await auth.operator()
    before = await row_counts(app)
    doc = document("placeholder")
    doc["subject"] = {"reference": urn()}
    r = await send(client, ops, bundle("transaction", post(patient()), post(doc)))
    assert r.status_code == 422
    assert r.json()["issue"][0]["details"]["coding"][0]["code"] == "REFERENCE_NOT_FOUND"
    assert await row_counts(app) == before


async def test_transaction_scopes_apply_per_entry(client, auth, app):
    ops = await auth.operator()
    p = await create(client, ops, patient())
    other = await create(client, ops, patient())
    me = await auth.patient(p["id"])
    before = await row_counts(app)
    r = await send(
        client, me, bundle("transaction", post(document(p["id"])), post(document(other["id"])))
    )
    assert r.status_code == 403
    assert await row_counts(app) == before


async def test_a_patient_written_earlier_in_a_bundle_is_read_anew(client, auth):
    """A request reads the Patient it writes into once (`Context.patients`); a write of that
    Patient in the same request drops what it read: a deposit after its deletion is refused."""
    ops = await auth.operator()
    p = await create(client, ops, patient())
    body = bundle(
        "batch",
        post(document(p["id"])),
        {"request": {"method": "DELETE", "url": f"Patient/{p['id']}"}},
        post(document(p["id"])),
    )
    r = await send(client, ops, body)
    assert r.status_code == 200, r.text
    first, deleted, after = (e["response"] for e in r.json()["entry"])
    assert first["status"].startswith("201"), first
    assert deleted["status"].startswith("204"), deleted
    assert after["status"].startswith("422"), after
    assert after["outcome"]["issue"][0]["details"]["coding"][0]["code"] == "REFERENCE_NOT_FOUND"
