"""Bulk ingest (issue 12): a connected service's batch Bundle of Observations is checked in
Python and written set-based (profile/ingest.py), with the answers, duplicates, refusals,
audit events and index rows of the entry-by-entry path. Through HTTP."""

import asyncio

from sqlalchemy import func, select, text

from espace_api.db.schema import audit_events, observation_values, resources
from espace_api.profile import ingest
from espace_api.storage import observation_repository
from tests.support.auth import code_of
from tests.support.fhir import FHIR_JSON, create, ids, search
from tests.support.profile import LOINC, SERVICE_SCOPES, batch, blood_pressure, measure
from tests.test_profile_measurements import connected, space

GLUCOSE = "2345-7"


def readings(pid: str, n: int, day: str = "2026-11-02", device: str = "Device/cgm-1") -> list:
    return [
        measure(
            pid,
            GLUCOSE,
            90 + i,
            "mg/dL",
            at=f"{day}T{i // 12:02d}:{i % 12 * 5:02d}:00Z",
            device=device,
        )
        for i in range(n)
    ]


async def push(client, headers, bodies) -> list[dict]:
    r = await client.post("/", json=batch(bodies), headers={**headers, **FHIR_JSON})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["type"] == "batch-response"
    return [e["response"] for e in body["entry"]]


def statuses(answers) -> list[str]:
    return [a["status"] for a in answers]


def locations(answers) -> list[str]:
    return [a["location"].split("/_history")[0] for a in answers]


def entry_code(answer) -> str:
    return answer["outcome"]["issue"][0]["details"]["coding"][0]["code"]


async def count(app, stmt) -> int:
    async with app.state.engine.connect() as conn:
        return int((await conn.execute(stmt)).scalar_one())


def values_of(pid: str):
    return (
        select(func.count())
        .select_from(observation_values)
        .where(observation_values.c.patient_id == pid)
    )


def observations_of(pid: str):
    r = resources
    return (
        select(func.count())
        .select_from(r)
        .where(r.c.patient_id == pid, r.c.resource_type == "Observation")
    )


async def test_the_bulk_path_answers_the_batch(client, auth, app, monkeypatch):
    pid, me = await space(client, auth, "Vrac")
    service = await connected(client, auth, pid, me, "cgm-bulk-1")
    calls = []
    real = ingest.create_many

    async def spy(*args, **kwargs):
        calls.append(len(args[2]))
        return await real(*args, **kwargs)

    monkeypatch.setattr(ingest, "create_many", spy)
    answers = await push(client, service, readings(pid, 30))
    assert calls == [30]  # one set-based call for the Bundle
    assert statuses(answers) == ["201 Created"] * 30
    first = answers[0]
    assert first["etag"] == 'W/"1"' and first["location"].endswith("/_history/1")
    assert "lastModified" in first
    assert await count(app, values_of(pid)) == 30
    assert await count(app, observations_of(pid)) == 30
    # One create event per Observation, naming the patient and the service.
    a = audit_events
    events = select(func.count()).where(
        a.c.patient_id == pid, a.c.subtype == "create", a.c.resource_type == "Observation"
    )
    assert await count(app, events.select_from(a).where(a.c.client_id == "cgm-bulk-1")) == 30
    # A patient's own batch keeps the entry-by-entry path.
    calls.clear()
    mine = await push(client, me, readings(pid, 2, day="2026-11-05", device="Device/scale-1"))
    assert statuses(mine) == ["201 Created"] * 2 and calls == []


async def test_the_same_bundle_twice_stores_nothing_twice(client, auth, app):
    pid, me = await space(client, auth, "Deuxfois")
    service = await connected(client, auth, pid, me, "cgm-bulk-2")
    bodies = readings(pid, 40)
    first = await push(client, service, bodies)
    assert statuses(first) == ["201 Created"] * 40
    again = await push(client, service, bodies)
    assert statuses(again) == ["200 OK"] * 40
    assert locations(again) == locations(first)
    assert all(a["etag"] == 'W/"1"' for a in again)
    assert await count(app, values_of(pid)) == 40
    assert await count(app, observations_of(pid)) == 40


async def test_a_mixed_bundle_answers_each_entry(client, auth, app):
    pid, me = await space(client, auth, "Melange")
    service = await connected(client, auth, pid, me, "cgm-bulk-3")
    stored = await push(client, service, readings(pid, 2))
    new = readings(pid, 4)[2:]
    kg = measure(pid, GLUCOSE, 1.2, "kg", at="2026-11-02T20:00:00Z")
    unknown = measure(pid, "99999-9", 1, "mg/dL", at="2026-11-02T21:00:00Z")
    not_fhir = measure(pid, GLUCOSE, 90, "mg/dL", at="2026-11-02T22:00:00Z", bogus=1)
    bp = blood_pressure(pid, 131, 84, at="2026-11-02T07:00:00Z")
    absent = measure(pid, "8867-4", 0, "/min", at="2026-11-02T07:30:00Z", valueQuantity=None)
    absent = {k: v for k, v in absent.items() if v is not None}
    absent["dataAbsentReason"] = {"text": "sensor off"}
    nobody = measure("no-such-patient", GLUCOSE, 90, "mg/dL", at="2026-11-02T23:00:00Z")
    bodies = [new[0], readings(pid, 1)[0], kg, new[1], unknown, not_fhir, bp, absent, nobody]
    answers = await push(client, service, bodies)
    assert statuses(answers) == [
        "201 Created",
        "200 OK",
        "422",
        "201 Created",
        "422",
        "400",
        "201 Created",
        "201 Created",
        "422",
    ]
    assert locations(answers[1:2]) == locations(stored[:1])
    assert [entry_code(answers[i]) for i in (2, 4, 5, 8)] == [
        "INVALID_UNIT",
        "UNSUPPORTED_CODE",
        "INVALID_RESOURCE",
        "REFERENCE_NOT_FOUND",
    ]
    issue = answers[2]["outcome"]["issue"][0]
    assert issue["expression"] == ["Observation.valueQuantity.code"]
    assert issue["diagnostics"].startswith("Bundle.entry[2]: ")
    # 2 before + 2 glucose + the blood pressure's 2 components; the absent value has none.
    assert await count(app, values_of(pid)) == 6
    assert await count(app, observations_of(pid)) == 6


async def test_a_duplicate_inside_one_bundle_is_stored_once(client, auth, app):
    pid, me = await space(client, auth, "Doublon")
    service = await connected(client, auth, pid, me, "cgm-bulk-4")
    bodies = readings(pid, 3)
    same_time_other_value = {**bodies[1], "valueQuantity": {**bodies[1]["valueQuantity"]}}
    same_time_other_value["valueQuantity"]["value"] = 250
    answers = await push(client, service, [*bodies, bodies[0], same_time_other_value])
    assert statuses(answers) == ["201 Created"] * 3 + ["200 OK"] * 2
    made = locations(answers)
    assert made[3] == made[0] and made[4] == made[1]
    assert answers[3]["etag"] == 'W/"1"'
    assert await count(app, values_of(pid)) == 3
    # Another device at the same moment is another measurement.
    other = await push(
        client, service, [{**bodies[0], "device": {"reference": "Device/cgm-9"}}] * 2
    )
    assert statuses(other) == ["201 Created", "200 OK"]
    assert await count(app, values_of(pid)) == 4


async def test_a_service_without_the_patients_consent_writes_nothing(client, auth, app):
    pid, me = await space(client, auth, "Relie")
    other_id, _ = await space(client, auth, "Pasrelie")
    service = await connected(client, auth, pid, me, "cgm-bulk-5")
    bodies = [*readings(pid, 2), *readings(other_id, 2)]
    answers = await push(client, service, bodies)
    assert statuses(answers) == ["201 Created"] * 2 + ["403"] * 2
    assert {entry_code(a) for a in answers[2:]} == {"SERVICE_NOT_CONNECTED"}
    assert await count(app, values_of(other_id)) == 0
    assert await count(app, observations_of(other_id)) == 0
    stranger = await auth.system("cgm-bulk-stranger", SERVICE_SCOPES)
    answers = await push(client, stranger, readings(pid, 3, day="2026-11-09"))
    assert statuses(answers) == ["403"] * 3
    assert await count(app, values_of(pid)) == 2
    # Each refused entry leaves its audit event (outcome 4), as entry by entry.
    a = audit_events
    refused = (
        select(func.count())
        .select_from(a)
        .where(a.c.client_id == "cgm-bulk-stranger", a.c.outcome == "4", a.c.subtype == "create")
    )
    assert await count(app, refused) == 3
    # A service that may not create Observations falls back to the entry-by-entry refusals.
    reader = await auth.system("cgm-bulk-5", "system/Observation.rs")
    answers = await push(client, reader, readings(pid, 2, day="2026-11-10"))
    assert statuses(answers) == ["403"] * 2
    assert {entry_code(x) for x in answers} == {"INSUFFICIENT_SCOPE"}


async def test_search_lastn_and_summary_find_what_the_bulk_path_wrote(client, auth, app):
    pid, me = await space(client, auth, "Indexe")
    service = await connected(client, auth, pid, me, "cgm-bulk-6")
    bodies = readings(pid, 24, day="2026-11-03")  # 00:00Z to 01:55Z
    answers = await push(client, service, bodies)
    made = locations(answers)
    newest = made[-1].rsplit("/", 1)[1]
    found = await search(
        client,
        me,
        "/Observation",
        patient=pid,
        code=f"{LOINC}|{GLUCOSE}",
        date=["ge2026-11-03T01:00:00Z", "lt2026-11-03T02:00:00Z"],
        _sort="-date",
        _count=3,
    )
    assert found["total"] == 12 and ids(found)[0] == newest
    for params in (
        {"category": "vital-signs"},
        {"status": "final"},
        {"device": "Device/cgm-1"},
        {"subject": f"Patient/{pid}"},
    ):
        assert (await search(client, me, "/Observation", patient=pid, **params))["total"] == 24
    r = await client.get("/Observation/$lastn", params={"patient": pid}, headers=me)
    assert [e["resource"]["id"] for e in r.json()["entry"]] == [newest]
    params = {"patient": pid, "code": GLUCOSE, "date": ["ge2026-11-03", "lt2026-11-04"]}
    r = await client.get("/Observation/$daily-summary", params=params, headers=me)
    parts = {p["name"]: p for p in r.json()["parameter"][0]["part"]}
    assert parts["count"]["valueInteger"] == 24
    assert parts["max"]["valueQuantity"]["value"] == 113
    # The index rows are those the entry-by-entry path writes for the same Observation.
    single = await create(client, me, measure(pid, GLUCOSE, 90, "mg/dL", at="2026-11-04T08:00:00Z"))
    bulk_id = made[0].rsplit("/", 1)[1]
    assert await index_rows(app, bulk_id) == await index_rows(app, single["id"])
    # The versions: history of a bulk-written Observation is its first version.
    r = await client.get(f"/Observation/{bulk_id}/_history", headers=me)
    assert r.json()["total"] == 1


async def index_rows(app, resource_id: str) -> list[tuple]:
    """A resource's index rows, without its id and with dates replaced by their kind."""
    out = []
    async with app.state.engine.connect() as conn:
        for table, cols in (
            ("search_token", "param, system, code, text"),
            ("search_string", "param, value, exact"),
            ("search_date", "param, (high - low)::text"),
            ("search_reference", "param, target_type, target_id"),
        ):
            rows = await conn.execute(
                text(f"SELECT {cols} FROM {table} WHERE resource_id = :id ORDER BY 1, 2"),
                {"id": resource_id},
            )
            out += [(table, *row) for row in rows]
    return sorted(out, key=repr)


async def test_two_services_racing_on_the_same_readings_store_them_once(client, auth, app):
    pid, me = await space(client, auth, "Course")
    service = await connected(client, auth, pid, me, "cgm-bulk-7")
    bodies = readings(pid, 20)
    first, second = await asyncio.gather(
        push(client, service, bodies), push(client, service, bodies)
    )
    for a, b in zip(first, second, strict=True):
        assert sorted([a["status"], b["status"]]) == ["200 OK", "201 Created"]
        assert a["location"] == b["location"]
    assert await count(app, values_of(pid)) == 20
    assert await count(app, observations_of(pid)) == 20


async def test_a_reading_stored_meanwhile_is_answered_as_a_replay(client, auth, app, monkeypatch):
    """A concurrent Bundle stored the reading after this one looked: the unique index keeps
    it out, the entry answers 200 with the stored Observation and nothing is written."""
    pid, me = await space(client, auth, "Entretemps")
    service = await connected(client, auth, pid, me, "cgm-bulk-9")
    bodies = readings(pid, 6)
    stored = await push(client, service, bodies[:3])
    real = observation_repository.holders
    looked = []

    async def missed_first(*args):
        looked.append(args[1])
        return {} if len(looked) == 1 else await real(*args)

    monkeypatch.setattr(observation_repository, "holders", missed_first)
    answers = await push(client, service, bodies)
    assert len(looked) == 2  # before the checks (nothing seen), after the insert
    assert statuses(answers) == ["200 OK"] * 3 + ["201 Created"] * 3
    assert locations(answers[:3]) == locations(stored)
    assert await count(app, values_of(pid)) == 6
    assert await count(app, observations_of(pid)) == 6


async def test_another_services_reading_is_a_conflict(client, auth, app):
    """Two services sending the same device's reading: the second sees nothing of the
    first's Observation, its entry is 409 and nothing is doubled."""
    pid, me = await space(client, auth, "Deuxservices")
    one = await connected(client, auth, pid, me, "cgm-bulk-10")
    two = await connected(client, auth, pid, me, "cgm-bulk-11")
    bodies = readings(pid, 2)
    assert statuses(await push(client, one, bodies)) == ["201 Created"] * 2
    answers = await push(client, two, [*bodies, *readings(pid, 3)[2:]])
    assert statuses(answers) == ["409", "409", "201 Created"]
    assert {entry_code(a) for a in answers[:2]} == {"DUPLICATE_MEASUREMENT"}
    assert await count(app, values_of(pid)) == 3
    assert await count(app, observations_of(pid)) == 3


async def test_a_failure_leaves_nothing_of_the_bundle(client, auth, app, monkeypatch):
    pid, me = await space(client, auth, "Panne")
    service = await connected(client, auth, pid, me, "cgm-bulk-8")
    real = observation_repository.copy_rows

    async def fail_at_audit(conn, table, rows):
        if table.name == "audit_events":
            raise RuntimeError("disk full")
        await real(conn, table, rows)

    monkeypatch.setattr(observation_repository, "copy_rows", fail_at_audit)
    r = await client.post("/", json=batch(readings(pid, 10)), headers={**service, **FHIR_JSON})
    assert r.status_code == 500 and code_of(r) == "INTERNAL_ERROR"
    monkeypatch.undo()
    assert await count(app, values_of(pid)) == 0
    assert await count(app, observations_of(pid)) == 0
    for table in ("resource_versions", "search_token", "search_date", "search_reference"):
        stmt = text(
            f"SELECT count(*) FROM {table} WHERE patient_id = :p AND resource_type = 'Observation'"
        )
        async with app.state.engine.connect() as conn:
            assert (await conn.execute(stmt, {"p": pid})).scalar_one() == 0
    # The service's retry stores the Bundle.
    assert statuses(await push(client, service, readings(pid, 10))) == ["201 Created"] * 10
