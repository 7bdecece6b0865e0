"""The patient space lifecycle (issue 9), through HTTP, with the injected clock."""

import asyncio
from datetime import timedelta
from typing import Any

import orjson
import pytest
from fhir.resources.R4B.patient import Patient
from sqlalchemy import func, select

from espace_api.db.schema import audit_events, patient_spaces, resources
from espace_api.fhir.ins import ins_problem, nir_key, with_key
from espace_api.lifecycle.service import run_due
from tests.support.auth import code_of
from tests.support.clock import shifted
from tests.support.fhir import FHIR_JSON, INS_TEST, create, document, patient

SPACE = "https://espace-api.org/fhir/StructureDefinition/space-status"
LGC_SCOPES = "system/DocumentReference.crs system/Binary.c system/Patient.s system/List.c"


def space_of(resource: dict[str, Any]) -> dict[str, Any]:
    ext = next(e for e in resource["extension"] if e["url"] == SPACE)
    return {
        p["url"]: next(v for k, v in p.items() if k.startswith("value")) for p in ext["extension"]
    }


async def enrol_one(client: Any, auth: Any, **extra: Any) -> tuple[str, dict[str, str]]:
    pid = (await create(client, await auth.operator(), patient(family="Cycle", **extra)))["id"]
    return pid, await auth.patient(pid)


async def act(client: Any, headers: dict[str, str], pid: str, action: str, **params: Any):
    body = None
    if params:
        body = {
            "resourceType": "Parameters",
            "parameter": [
                {"name": k, "valueBoolean" if isinstance(v, bool) else "valueString": v}
                for k, v in params.items()
            ],
        }
    return await client.post(
        f"/Patient/{pid}/${action}", json=body, headers={**headers, **FHIR_JSON}
    )


async def deposit(client: Any, auth: Any, pid: str):
    lgc = await auth.system("lgc-cycle", LGC_SCOPES)
    return await client.post("/DocumentReference", json=document(pid), headers={**lgc, **FHIR_JSON})


async def patient_events(client: Any, me: dict[str, str], pid: str) -> list[str]:
    r = await client.get(f"/AuditEvent?patient={pid}&_count=100", headers=me)
    return [e["resource"]["subtype"][0]["code"] for e in r.json().get("entry", [])]


# ---------------------------------------------------------------- the INS key


def test_ins_key_follows_the_nir_rule():
    assert nir_key("2690549588157") == 80  # 97 - (2690549588157 mod 97)
    assert ins_problem("269054958815780") is None
    assert ins_problem("269054958815781") is not None
    corsica_a, corsica_b = with_key("185052A123456"), with_key("185052B123456")
    assert corsica_a[-2:] != corsica_b[-2:]  # 2A counts as 19, 2B as 18
    assert nir_key("185052A123456") == 97 - 1850519123456 % 97
    assert nir_key("185052B123456") == 97 - 1850518123456 % 97
    assert ins_problem("12345") is not None


# ---------------------------------------------------------------- enrolment and states


async def test_enrolment_starts_a_notified_space_with_its_window(client, auth, app):
    notice = "2026-01-05"
    extra = {
        "extension": [
            {
                "url": "https://espace-api.org/fhir/StructureDefinition/notice-date",
                "valueDate": notice,
            }
        ]
    }
    pid, me = await enrol_one(client, auth, **extra)
    shown = space_of((await client.get(f"/Patient/{pid}", headers=me)).json())
    assert shown["status"] == "notified"
    assert shown["notified"].startswith(notice)
    assert shown["opposition-deadline"].startswith("2026-02-16")  # 6 weeks later
    ops = await auth.operator()
    found = await client.get(f"/Patient?space-status=notified&_id={pid}", headers=ops)
    assert found.json()["total"] == 1


async def test_only_an_operator_enrols(client, auth):
    system = await auth.system("lgc-enrol", "system/Patient.cs")
    r = await client.post("/Patient", json=patient(), headers={**system, **FHIR_JSON})
    assert r.status_code == 403 and code_of(r) == "ENROLMENT_OPERATOR_ONLY"


async def test_the_space_extension_is_the_servers(client, auth):
    pid, me = await enrol_one(client, auth)
    current = (await client.get(f"/Patient/{pid}", headers=me)).json()
    for ext in current["extension"]:
        if ext["url"] == SPACE:
            ext["extension"] = [{"url": "status", "valueCode": "closed"}]
    r = await client.put(f"/Patient/{pid}", json=current, headers={**me, **FHIR_JSON})
    assert r.status_code == 200 and space_of(r.json())["status"] == "notified"


async def test_activation_by_the_person(client, auth):
    pid, me = await enrol_one(client, auth)
    r = await act(client, me, pid, "activate")
    assert r.status_code == 200, r.text
    assert space_of(r.json())["status"] == "active"
    assert "space-active" in await patient_events(client, me, pid)
    r = await act(client, me, pid, "activate")
    assert r.status_code == 409 and code_of(r) == "INVALID_TRANSITION"


async def test_objection_deletes_what_arrived_while_notified(client, auth, app):
    pid, me = await enrol_one(client, auth)
    doc = await deposit(client, auth, pid)
    assert doc.status_code == 201, doc.text
    r = await act(client, me, pid, "oppose", reason="I do not want a space")
    assert r.status_code == 200 and space_of(r.json())["status"] == "opposed"
    async with app.state.engine.connect() as conn:
        left = await conn.execute(
            select(resources.c.resource_type).where(resources.c.patient_id == pid)
        )
        assert [m[0] for m in left] == ["Patient"], "only the Patient (and its objection) stay"
    refused = await deposit(client, auth, pid)
    assert refused.status_code == 422 and code_of(refused) == "PATIENT_OPPOSED"
    events = await patient_events(client, me, pid)
    assert "space-opposed" in events
    r = await act(client, me, pid, "reopen")
    assert r.status_code == 200 and space_of(r.json())["status"] == "active"
    assert (await deposit(client, auth, pid)).status_code == 201


async def test_closure_refuses_deposits_keeps_data_and_reopens(client, auth):
    pid, me = await enrol_one(client, auth)
    doc = (await deposit(client, auth, pid)).json()
    await act(client, me, pid, "activate")
    r = await act(client, me, pid, "close", reason="moving abroad")
    shown = space_of(r.json())
    assert shown["status"] == "closed" and shown["closure-reason"] == "moving abroad"
    assert shown["purge-after"] > shown["closed"]
    refused = await deposit(client, auth, pid)
    assert refused.status_code == 422 and code_of(refused) == "PATIENT_SPACE_CLOSED"
    assert (await client.get(f"/DocumentReference/{doc['id']}", headers=me)).status_code == 200
    r = await act(client, me, pid, "reopen")
    shown = space_of(r.json())
    assert shown["status"] == "active" and "purge-after" not in shown
    assert (await client.get(f"/DocumentReference/{doc['id']}", headers=me)).status_code == 200


async def test_transitions_that_do_not_exist(client, auth):
    pid, me = await enrol_one(client, auth)
    r = await act(client, me, pid, "close")
    assert r.status_code == 409 and code_of(r) == "INVALID_TRANSITION"
    await act(client, me, pid, "activate")
    r = await act(client, me, pid, "oppose")
    assert r.status_code == 409, "an active space is closed, not opposed"
    other, _ = await enrol_one(client, auth)
    assert (await act(client, me, other, "oppose")).status_code == 404
    doctor = await auth.user("rpps-3001")
    assert (await act(client, doctor, pid, "close")).status_code == 403


async def test_unknown_ins_has_its_own_code(client, auth):
    lgc = await auth.system("lgc-cycle", LGC_SCOPES)
    body = document("x")
    body["subject"] = {"reference": f"Patient?identifier={INS_TEST}|999999999999999"}
    r = await client.post("/DocumentReference", json=body, headers={**lgc, **FHIR_JSON})
    assert r.status_code == 422 and code_of(r) == "PATIENT_UNKNOWN"


# ---------------------------------------------------------------- the clock and the job


async def test_the_window_ends_by_itself(client, auth, app):
    pid, _ = await enrol_one(client, auth)
    days = app.state.settings.space_opposition_days
    with shifted(app, timedelta(days=days - 1)):
        r = await act(client, await auth.patient(pid), pid, "oppose")
        assert r.status_code == 200, "still in the window: the objection is taken"
    pid, _ = await enrol_one(client, auth)
    with shifted(app, timedelta(days=days, minutes=1)):
        # Lazily: before any job ran, the space counts as active.
        r = await act(client, await auth.patient(pid), pid, "oppose")
        assert r.status_code == 409 and code_of(r) == "INVALID_TRANSITION"
        await run_due(app.state.engine, app.state.settings, app.state.clock)
        shown = (await client.get(f"/Patient/{pid}", headers=await auth.patient(pid))).json()
        assert space_of(shown)["status"] == "active"
        assert (await run_due(app.state.engine, app.state.settings, app.state.clock))[
            "activated"
        ] == 0, "running again changes nothing"


async def test_concurrent_jobs_activate_each_space_once(client, auth, app):
    pids = [(await enrol_one(client, auth))[0] for _ in range(12)]
    days = app.state.settings.space_opposition_days
    with shifted(app, timedelta(days=days + 1)):
        runs = await asyncio.gather(
            *(
                run_due(app.state.engine, app.state.settings, app.state.clock, batch=3)
                for _ in range(3)
            )
        )
    assert sum(r["activated"] for r in runs) >= len(pids)
    async with app.state.engine.connect() as conn:
        states = await conn.execute(
            select(patient_spaces.c.state).where(patient_spaces.c.patient_id.in_(pids))
        )
        assert {m[0] for m in states} == {"active"}
        per_patient = await conn.execute(
            select(audit_events.c.patient_id, func.count())
            .where(audit_events.c.patient_id.in_(pids), audit_events.c.subtype == "space-active")
            .group_by(audit_events.c.patient_id)
        )
        assert {count for _, count in per_patient} == {1}


async def test_retention_ends_in_a_purge(client, auth, app):
    kept, me = await enrol_one(client, auth)
    early, them = await enrol_one(client, auth)
    for pid, headers, delete in ((kept, me, False), (early, them, True)):
        await deposit(client, auth, pid)
        await act(client, headers, pid, "activate")
        await act(client, headers, pid, "close", deleteData=delete)
    settings = app.state.settings
    with shifted(app, timedelta(days=settings.space_early_deletion_days + 1)):
        done = await run_due(app.state.engine, settings, app.state.clock)
        assert done["purged"] >= 1
    async with app.state.engine.connect() as conn:
        count = select(func.count()).select_from(resources)
        assert (await conn.execute(count.where(resources.c.patient_id == early))).scalar() == 0
        assert (await conn.execute(count.where(resources.c.patient_id == kept))).scalar() >= 2
        events = select(func.count()).select_from(audit_events)
        assert (await conn.execute(events.where(audit_events.c.patient_id == early))).scalar() == 0
    with shifted(app, timedelta(days=settings.space_retention_days + 1)):
        await run_due(app.state.engine, settings, app.state.clock)
    async with app.state.engine.connect() as conn:
        assert (await conn.execute(count.where(resources.c.patient_id == kept))).scalar() == 0


# ---------------------------------------------------------------- bulk enrolment


def line(ins: str, **extra: Any) -> bytes:
    body = {
        "resourceType": "Patient",
        "identifier": [{"system": INS_TEST, "value": ins}],
        "name": [{"family": "Lot", "given": ["Alix"]}],
        "birthDate": "1990-02-03",
        "gender": "female",
        **extra,
    }
    return orjson.dumps(body)


def fresh_ins(n: int) -> str:
    import uuid

    return with_key("1" + str(uuid.uuid4().int)[:12])


async def enrol_file(client: Any, ops: dict[str, str], body: bytes, query: str = "") -> list[dict]:
    r = await client.post(
        f"/Patient/$enrol{query}",
        content=body,
        headers={**ops, "Content-Type": "application/fhir+ndjson"},
    )
    assert r.status_code == 200, r.text
    return [orjson.loads(x) for x in r.content.splitlines() if x.strip()]


async def test_bulk_enrolment_reports_every_line_and_is_idempotent(client, auth):
    ops = await auth.operator()
    good = [fresh_ins(i) for i in range(3)]
    existing = (await create(client, ops, patient(ins=fresh_ins(9))))["identifier"][0]["value"]
    bad_key = good[0][:-2] + f"{(int(good[0][-2:]) + 1) % 100:02d}"
    lines = [
        line(good[0]),
        line(good[1], address=[{"city": "Lyon"}]),
        line(bad_key),
        line(good[2], birthDate="03/02/1990"),
        b'{"resourceType": "Patient", "name": [{"family": "X"}], "birthDate": "1990"}',
        line(good[1]),
        line(existing),
        line(good[2], photo=[{"contentType": "image/png"}]),
        b"not json",
    ]
    report = await enrol_file(client, ops, b"\n".join(lines) + b"\n", "?notice-date=2026-03-01")
    assert [r["line"] for r in report] == list(range(1, 10))
    statuses = [(r["status"], r.get("code")) for r in report]
    assert statuses == [
        ("created", None),
        ("created", None),
        ("rejected", "INVALID_INS"),
        ("rejected", "INVALID_RESOURCE"),
        ("rejected", "INVALID_RESOURCE"),
        ("rejected", "DUPLICATE_INS"),
        ("unchanged", None),
        ("rejected", "INVALID_RESOURCE"),
        ("rejected", "INVALID_JSON"),
    ]
    created = report[0]["id"]
    stored = (await client.get(f"/Patient/{created}", headers=ops)).json()
    Patient.model_validate(stored)  # the bulk path stores valid FHIR
    shown = space_of(stored)
    assert shown["status"] == "notified" and shown["notified"].startswith("2026-03-01")
    again = await enrol_file(client, ops, b"\n".join(lines))
    assert [(r["status"], r.get("id")) for r in again][:2] == [
        ("unchanged", report[0]["id"]),
        ("unchanged", report[1]["id"]),
    ]


async def test_bulk_enrolment_is_an_operators_act(client, auth):
    _pid, me = await enrol_one(client, auth)
    r = await client.post(
        "/Patient/$enrol",
        content=line(fresh_ins(1)),
        headers={**me, "Content-Type": "application/fhir+ndjson"},
    )
    assert r.status_code == 403 and code_of(r) == "ENROLMENT_OPERATOR_ONLY"
    ops = await auth.operator()
    r = await client.post(
        "/Patient/$enrol", content=line(fresh_ins(1)), headers={**ops, **FHIR_JSON}
    )
    assert r.status_code == 415


@pytest.mark.parametrize("state", ["notified", "active"])
async def test_deposits_are_accepted_while_notified_or_active(client, auth, state):
    pid, me = await enrol_one(client, auth)
    if state == "active":
        await act(client, me, pid, "activate")
    assert (await deposit(client, auth, pid)).status_code == 201


async def test_an_endless_line_is_rejected_alone(client, auth):
    ops = await auth.operator()
    body = line(fresh_ins(21)) + b"\n" + b"x" * (200 * 1024) + b"\n" + line(fresh_ins(22))
    report = await enrol_file(client, ops, body)
    assert [(r["line"], r["status"], r.get("code")) for r in report] == [
        (1, "created", None),
        (2, "rejected", "LINE_TOO_LONG"),
        (3, "created", None),
    ]


async def test_the_job_ends_the_window_of_a_deleted_patient(client, auth, app):
    ops = await auth.operator()
    pid = (await create(client, ops, patient(family="Gone")))["id"]
    assert (await client.delete(f"/Patient/{pid}", headers=ops)).status_code in (200, 204)
    with shifted(app, timedelta(days=43)):
        await run_due(app.state.engine, app.state.settings, app.state.clock)
    async with app.state.engine.connect() as conn:
        row = (
            await conn.execute(select(patient_spaces).where(patient_spaces.c.patient_id == pid))
        ).first()
    assert row is not None and row.state == "active"
