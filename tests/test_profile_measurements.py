"""Measurements from connected devices (issue 12): LOINC/UCUM validation, services the
patient connected pushing batches, duplicates stored once, search, $lastn, $daily-summary.
Refusals first."""

from tests.support.auth import code_of
from tests.support.fhir import FHIR_JSON, PRO_SCOPES, create, grant_care, ids, patient, search
from tests.support.profile import (
    LOINC,
    SERVICE_SCOPES,
    batch,
    blood_pressure,
    connected_service,
    measure,
)
from tests.test_lifecycle import act

GLUCOSE, WEIGHT, HEART = "2345-7", "29463-7", "8867-4"


async def space(client, auth, family: str = "Mesure") -> tuple[str, dict[str, str]]:
    pid = (await create(client, await auth.operator(), patient(family=family)))["id"]
    return pid, await auth.patient(pid)


async def connected(client, auth, pid, me, client_id: str) -> dict[str, str]:
    """A service's token, connected by the patient."""
    await create(client, me, connected_service(pid, client_id))
    return await auth.system(client_id, SERVICE_SCOPES)


async def post(client, headers, body):
    return await client.post(
        f"/{body['resourceType']}", json=body, headers={**headers, **FHIR_JSON}
    )


def outcome(r) -> tuple[str, list[str]]:
    issue = r.json()["issue"][0]
    return code_of(r), issue.get("expression", [])


async def test_a_service_the_patient_did_not_connect_writes_nothing(client, auth):
    pid, me = await space(client, auth)
    other_id, other = await space(client, auth, "Autre")
    service = await connected(client, auth, pid, me, "cgm-only-one")
    r = await post(client, service, measure(other_id, GLUCOSE, 95, "mg/dL"))
    assert r.status_code == 403 and code_of(r) == "SERVICE_NOT_CONNECTED"
    stranger = await auth.system("cgm-stranger", SERVICE_SCOPES)
    r = await post(client, stranger, measure(pid, GLUCOSE, 95, "mg/dL"))
    assert r.status_code == 403 and code_of(r) == "SERVICE_NOT_CONNECTED"
    # A consent naming a professional instead of a client is refused.
    bad = connected_service(pid, "x")
    bad["provision"]["actor"][0]["reference"] = {"reference": "Practitioner/rpps-1"}
    r = await post(client, me, bad)
    assert r.status_code == 422 and code_of(r) == "INVALID_CONSENT"
    # Other patients' tokens see nothing of it.
    await create(client, service, measure(pid, GLUCOSE, 95, "mg/dL"))
    assert (await search(client, other, "/Observation", patient=pid))["total"] == 0
    r = await client.get("/Observation/$lastn", params={"patient": pid}, headers=other)
    assert r.status_code == 200 and r.json()["total"] == 0


async def test_a_service_pushes_but_never_browses(client, auth):
    pid, me = await space(client, auth)
    service = await connected(client, auth, pid, me, "cgm-nobrowse")
    own = await create(client, me, measure(pid, WEIGHT, 70, "kg", device=None))
    pushed = await create(client, service, measure(pid, GLUCOSE, 95, "mg/dL"))
    assert ids(await search(client, service, "/Observation", patient=pid)) == [pushed["id"]]
    assert (await client.get(f"/Observation/{own['id']}", headers=service)).status_code == 404
    r = await client.get("/Observation/$lastn", params={"patient": pid}, headers=service)
    assert [e["resource"]["id"] for e in r.json().get("entry", [])] == [pushed["id"]]
    # A professional sees measurements through a care relationship only.
    doctor = await auth.user("rpps-12101", scopes=PRO_SCOPES)
    r = await client.get("/Observation/$lastn", params={"patient": pid}, headers=doctor)
    assert r.json()["total"] == 0
    await grant_care(client, doctor, pid, "12101")
    r = await client.get("/Observation/$lastn", params={"patient": pid}, headers=doctor)
    assert r.json()["total"] == 2


async def test_codes_and_units_are_checked(client, auth):
    pid, me = await space(client, auth)
    cases = [
        (measure(pid, GLUCOSE, 1.2, "kg"), "INVALID_UNIT", "Observation.valueQuantity.code"),
        (measure(pid, "99999-9", 1, "kg"), "UNSUPPORTED_CODE", "Observation.code"),
        (measure(pid, HEART, 60, "/min", valueQuantity=None), "MISSING_VALUE", "Observation"),
        (
            blood_pressure(pid, 120, 80, unit="kg"),
            "INVALID_UNIT",
            "Observation.component[0].valueQuantity.code",
        ),
    ]
    no_ucum = measure(pid, WEIGHT, 70, "kg")
    no_ucum["valueQuantity"]["system"] = "http://example.org/units"
    cases.append((no_ucum, "INVALID_UNIT", "Observation.valueQuantity.code"))
    panel = blood_pressure(pid, 120, 80)
    del panel["component"]
    cases.append((panel, "MISSING_VALUE", "Observation.component"))
    undated = measure(pid, WEIGHT, 70, "kg")
    del undated["effectiveDateTime"]
    cases.append((undated, "MISSING_METADATA", "Observation.effective[x]"))
    for body, code, where in cases:
        body = {k: v for k, v in body.items() if v is not None}
        r = await post(client, me, body)
        assert r.status_code == 422, (code, r.text)
        assert outcome(r) == (code, [where])
    assert (await search(client, me, "/Observation", patient=pid))["total"] == 0
    # Accepted units are converted to the code's canonical unit for summaries (g/L -> mg/dL).
    await create(client, me, measure(pid, GLUCOSE, 1.1, "g/L"))
    await create(client, me, blood_pressure(pid, 121, 79))


async def test_batch_ingest_stores_each_measurement_once(client, auth):
    pid, me = await space(client, auth)
    service = await connected(client, auth, pid, me, "cgm-batch")
    readings = [
        measure(pid, GLUCOSE, 90 + i, "mg/dL", at=f"2026-11-02T{i // 12:02d}:{i % 12 * 5:02d}:00Z")
        for i in range(48)
    ]
    bad = measure(pid, GLUCOSE, 5, "kg", at="2026-11-02T23:00:00Z")
    first = await client.post(
        "/", json=batch([*readings, readings[0], bad]), headers={**service, **FHIR_JSON}
    )
    assert first.status_code == 200, first.text
    statuses = [e["response"]["status"] for e in first.json()["entry"]]
    assert statuses[:48] == ["201 Created"] * 48
    assert statuses[48] == "200 OK"  # the same reading twice in one batch: stored once
    assert statuses[49] == "422"
    issue = first.json()["entry"][49]["response"]["outcome"]["issue"][0]
    assert issue["details"]["coding"][0]["code"] == "INVALID_UNIT"
    made = [e["response"]["location"].split("/_history")[0] for e in first.json()["entry"][:49]]
    assert made[48] == made[0]
    # The service retries the whole batch: nothing new.
    again = await client.post("/", json=batch(readings), headers={**service, **FHIR_JSON})
    assert [e["response"]["status"] for e in again.json()["entry"]] == ["200 OK"] * 48
    assert [e["response"]["location"].split("/_history")[0] for e in again.json()["entry"]] == made[
        :48
    ]
    found = await search(client, me, "/Observation", patient=pid, _summary="count")
    assert found["total"] == 48
    # Another device measuring at the same moment is another measurement.
    other = await create(client, service, {**readings[0], "device": {"reference": "Device/cgm-2"}})
    assert other["id"] not in made


async def test_search_lastn_and_daily_summary(client, auth):
    pid, me = await space(client, auth)
    service = await connected(client, auth, pid, me, "cgm-summary")
    # Europe/Paris is UTC+1 in November: 23:30Z on the 3rd is the 4th in Paris.
    values = [
        ("2026-11-03T06:00:00Z", 80, "mg/dL"),
        ("2026-11-03T12:00:00Z", 1.4, "g/L"),
        ("2026-11-03T18:00:00Z", 110, "mg/dL"),
        ("2026-11-03T23:30:00Z", 100, "mg/dL"),
        ("2026-11-04T07:00:00Z", 90, "mg/dL"),
    ]
    made = [
        (await create(client, service, measure(pid, GLUCOSE, v, u, at=at)))["id"]
        for at, v, u in values
    ]
    weight = [
        (await create(client, me, measure(pid, WEIGHT, w, "kg", at=at, device=None)))["id"]
        for at, w in (("2026-11-01T07:00:00Z", 71.5), ("2026-11-04T07:00:00Z", 71.0))
    ]
    bp = (await create(client, me, blood_pressure(pid, 128, 82, at="2026-11-04T08:00:00Z")))["id"]
    # Search: patient, code, date range, newest first, paged.
    found = await search(
        client,
        me,
        "/Observation",
        patient=pid,
        code=f"{LOINC}|{GLUCOSE}",
        date=["ge2026-11-03T10:00:00Z", "lt2026-11-04T00:00:00Z"],
        _sort="-date",
        _count=2,
    )
    assert found["total"] == 3 and ids(found) == [made[3], made[2]]
    assert any(link["relation"] == "next" for link in found["link"])
    # $lastn: the latest per code (a blood pressure once, for both its components).
    r = await client.get("/Observation/$lastn", params={"patient": pid}, headers=me)
    assert r.status_code == 200, r.text
    assert sorted(e["resource"]["id"] for e in r.json()["entry"]) == sorted(
        [made[4], weight[1], bp]
    )
    r = await client.get(
        "/Observation/$lastn", params={"patient": pid, "code": GLUCOSE, "max": 2}, headers=me
    )
    assert [e["resource"]["id"] for e in r.json()["entry"]] == [made[4], made[3]]
    r = await client.get(
        "/Observation/$lastn", params={"patient": pid, "code": f"{LOINC}|85354-9"}, headers=me
    )
    assert [e["resource"]["id"] for e in r.json()["entry"]] == [bp]
    # Daily summary per Paris day, in mg/dL (1.4 g/L = 140 mg/dL).
    params = {"patient": pid, "code": GLUCOSE, "date": ["ge2026-11-03", "lt2026-11-05"]}
    r = await client.get("/Observation/$daily-summary", params=params, headers=me)
    assert r.status_code == 200, r.text
    days = {}
    for p in r.json()["parameter"]:
        parts = {x["name"]: x for x in p["part"]}
        days[parts["day"]["valueDate"]] = (
            parts["count"]["valueInteger"],
            parts["min"]["valueQuantity"]["value"],
            parts["max"]["valueQuantity"]["value"],
            parts["mean"]["valueQuantity"]["value"],
            parts["mean"]["valueQuantity"]["code"],
        )
    assert days == {
        "2026-11-03": (3, 80, 140, (80 + 140 + 110) / 3, "mg/dL"),
        "2026-11-04": (2, 90, 100, 95, "mg/dL"),
    }
    # A deleted measurement leaves the summary and $lastn.
    assert (await client.delete(f"/Observation/{made[4]}", headers=me)).status_code in (200, 204)
    r = await client.get("/Observation/$daily-summary", params=params, headers=me)
    last = r.json()["parameter"][-1]["part"]
    assert {x["name"]: x for x in last}["count"]["valueInteger"] == 1
    r = await client.get(
        "/Observation/$lastn", params={"patient": pid, "code": GLUCOSE}, headers=me
    )
    assert [e["resource"]["id"] for e in r.json()["entry"]] == [made[3]]


async def test_operation_parameters_are_checked(client, auth):
    pid, me = await space(client, auth)
    bad = [
        ("/Observation/$lastn", {}),
        ("/Observation/$lastn", {"patient": pid, "max": "0"}),
        ("/Observation/$daily-summary", {"patient": pid}),
        ("/Observation/$daily-summary", {"patient": pid, "date": ["ge2024-01-01", "lt2026-01-01"]}),
        (
            "/Observation/$daily-summary",
            {"patient": pid, "date": ["ge2026-01-01", "lt2026-01-02"], "tz": "Mars/Base"},
        ),
    ]
    for path, params in bad:
        r = await client.get(path, params=params, headers=me)
        assert r.status_code == 400, (path, params, r.text)
        assert r.json()["resourceType"] == "OperationOutcome"


async def test_nothing_goes_into_a_closed_space(client, auth):
    pid, me = await space(client, auth)
    service = await connected(client, auth, pid, me, "cgm-closed")
    assert (await act(client, me, pid, "activate")).status_code == 200
    assert (await act(client, me, pid, "close")).status_code == 200
    r = await post(client, service, measure(pid, GLUCOSE, 95, "mg/dL"))
    assert r.status_code == 422 and code_of(r) == "PATIENT_SPACE_CLOSED"


async def test_the_capability_statement_lists_the_new_types_and_operations(client):
    rest = (await client.get("/metadata")).json()["rest"][0]["resource"]
    by_type = {r["type"]: r for r in rest}
    for name in ("AllergyIntolerance", "MedicationStatement", "Condition", "FamilyMemberHistory"):
        assert "create" in {i["code"] for i in by_type[name]["interaction"]}
    assert {o["name"] for o in by_type["Observation"]["operation"]} >= {"lastn", "daily-summary"}
    assert "delete" not in {i["code"] for i in by_type["Appointment"]["interaction"]}
