"""Every read of health data leaves an audit event naming the patient, who, and how."""

import asyncio

from sqlalchemy import select

from espace_api.db.schema import audit_events
from tests.support.documents import pdf
from tests.support.fhir import FHIR_JSON, PRO_SCOPES, create, document, grant_care, patient


async def events(app, patient_id: str) -> list[dict]:
    async with app.state.engine.connect() as conn:
        rows = await conn.execute(
            select(audit_events)
            .where(audit_events.c.patient_id == patient_id)
            .order_by(audit_events.c.recorded)
        )
        return [dict(r._mapping) for r in rows]


async def test_reads_searches_and_downloads_are_audited(client, auth, app):
    ops = await auth.operator()
    pid = (await create(client, ops, patient()))["id"]
    binary = await client.post(
        "/Binary",
        content=pdf(),
        headers={**ops, "Content-Type": "application/pdf", "X-Security-Context": f"Patient/{pid}"},
    )
    assert binary.status_code == 201, binary.text
    doc = document(pid)
    doc["content"][0]["attachment"] = {
        "contentType": "application/pdf",
        "url": f"Binary/{binary.json()['id']}",
        "title": "CR",
    }
    doc = await create(client, ops, doc)
    doctor = await auth.user("rpps-777", scopes=PRO_SCOPES)
    await grant_care(client, doctor, pid, "777")
    before = len(await events(app, pid))

    calls = [
        ("read", f"/DocumentReference/{doc['id']}"),
        ("vread", f"/DocumentReference/{doc['id']}/_history/1"),
        ("search", f"/DocumentReference?patient={pid}"),
        ("history", f"/DocumentReference/{doc['id']}/_history"),
        ("read", f"/Binary/{binary.json()['id']}"),
    ]
    for _, url in calls:
        r = await client.get(url, headers=doctor)
        assert r.status_code == 200, (url, r.text)

    new = (await events(app, pid))[before:]
    assert [e["subtype"] for e in new] == [subtype for subtype, _ in calls]
    for e in new:
        assert e["agent_kind"] == "user" and e["agent_sub"] == "rpps-777"
        assert e["token_jti"], "the token id ties the event to one access token"
        assert e["outcome"] == "0"
    assert new[2]["action"] == "E" and new[2]["query"] == f"patient={pid}"


async def test_one_search_audits_every_patient_it_shows(client, auth, app):
    ops = await auth.operator()
    a = (await create(client, ops, patient(family="Auditee")))["id"]
    b = (await create(client, ops, patient(family="Auditee")))["id"]
    counts = {p: len(await events(app, p)) for p in (a, b)}
    r = await client.get("/Patient?family=Auditee", headers=await auth.system("hospital-x"))
    assert r.status_code == 403  # software never browses Patients
    r = await client.get("/Patient?family=Auditee", headers=ops)
    assert {e["resource"]["id"] for e in r.json()["entry"]} >= {a, b}
    for p in (a, b):
        assert len(await events(app, p)) == counts[p] + 1


async def test_refused_read_is_recorded_as_a_refused_attempt(client, auth, app):
    ops = await auth.operator()
    mine = (await create(client, ops, patient()))["id"]
    other = (await create(client, ops, patient()))["id"]
    doc = await create(client, ops, document(other))
    before = len(await events(app, other))
    r = await client.get(f"/DocumentReference/{doc['id']}", headers=await auth.patient(mine))
    assert r.status_code == 404
    new = (await events(app, other))[before:]
    assert len(new) == 1, "the owner sees the attempt"
    assert new[0]["outcome"] == "4" and new[0]["detail"] == "404 NOT_FOUND"
    assert new[0]["agent_kind"] == "patient" and new[0]["resource_id"] == doc["id"]


async def test_writes_are_audited_with_the_depositing_client(client, auth, app):
    ops = await auth.operator()
    pid = (await create(client, ops, patient()))["id"]
    lgc = await auth.system("lgc-audit")
    r = await client.post("/DocumentReference", json=document(pid), headers={**lgc, **FHIR_JSON})
    assert r.status_code == 201, r.text
    last = (await events(app, pid))[-1]
    assert (last["action"], last["subtype"]) == ("C", "create")
    assert last["client_id"] == "lgc-audit" and last["agent_kind"] == "system"


async def test_concurrent_reads_each_leave_their_row(client, auth, app):
    """Reads' audit rows are group-committed: every one of many concurrent reads has its
    row, written before its response."""
    ops = await auth.operator()
    pid = (await create(client, ops, patient(family="Burst")))["id"]
    me = await auth.patient(pid)
    before = len(await events(app, pid))
    responses = await asyncio.gather(
        *(client.get(f"/Patient/{pid}", headers=me) for _ in range(40))
    )
    assert {r.status_code for r in responses} == {200}
    reads = [e for e in (await events(app, pid))[before:] if e["subtype"] == "read"]
    assert len(reads) == 40
    assert len({e["id"] for e in reads}) == 40
