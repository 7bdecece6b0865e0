"""Issue 21: a vendor cannot list the population, a patient cannot take another's INS.

The three harvesting queries found with the README's vendor token, the exact lookup that
must keep working, the projection, the INS register, the lookup audit and miss counter."""

import uuid
from typing import Any

import asyncpg
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from espace_api.db.schema import audit_events
from tests.support.auth import code_of
from tests.support.fhir import (
    FHIR_JSON,
    INS_TEST,
    PRO_SCOPES,
    create,
    document,
    grant_care,
    new_ins,
    patient,
)

VENDOR_SCOPES = "system/DocumentReference.crs system/Binary.c system/Patient.s system/List.c"
PRIVATE = ("address", "telecom", "contact", "maritalStatus")
FULL = {
    "address": [{"city": "Lyon", "line": ["1 rue de la Paix"]}],
    "telecom": [{"system": "phone", "value": "0600000000"}],
    "contact": [{"name": {"family": "Proche"}}],
}


async def enrolled(client: Any, auth: Any, **extra: Any) -> dict[str, Any]:
    return await create(client, await auth.operator(), patient(**{**FULL, **extra}))


def ins_of(p: dict[str, Any]) -> str:
    return next(i["value"] for i in p["identifier"] if i["system"] == INS_TEST)


async def vendor(auth: Any, name: str = "lgc-lookup") -> dict[str, str]:
    return await auth.system(name, VENDOR_SCOPES)


# ---------------------------------------------------------------- the three harvests


@pytest.mark.parametrize(
    "params",
    [
        {"identifier": f"{INS_TEST}|"},  # a system with no value
        {"identifier:missing": "false"},
        {"identifier:not": "x"},
        {"identifier": "|123456789012345"},  # a value with no system
        {"identifier": "123456789012345"},  # no system at all
        {"identifier": f"urn:oid:1.2.3|{'1' * 15}"},  # not an INS system
        {"identifier:exact": f"{INS_TEST}|1"},
        {"identifier": f"{INS_TEST}|1", "_sort": "family"},
        {"identifier": f"{INS_TEST}|1", "name": "x"},
        {"identifier": f"{INS_TEST}|1", "_has:DocumentReference:patient:status": "current"},
        {"identifier": f"{INS_TEST}|1", "_id": "x"},
        {"identifier": ",".join(f"{INS_TEST}|{n:015d}" for n in range(11))},  # 11 > 10
        {"family": "Lookup"},
        {"_elements": "name,birthDate"},
        {"_id": "x"},
        {"general-practitioner.identifier": "x"},
        {},
    ],
)
@pytest.mark.parametrize("for_practitioner", [None, "10001234567"])
async def test_a_vendor_cannot_walk_the_patients(client, auth, params, for_practitioner):
    await enrolled(client, auth, family="Lookup")
    # with or without a professional named in the token (the README's walkthrough names one)
    lgc = await auth.system("lgc-lookup", VENDOR_SCOPES, practitioner=for_practitioner)
    r = await client.get("/Patient", params=params, headers=lgc)
    assert r.status_code == 403, (params, r.status_code, r.text[:200])
    assert code_of(r) == "PATIENT_LOOKUP_ONLY"
    # the same through POST _search and inside a batch
    r = await client.post(
        "/Patient/_search",
        data=params,
        headers={**lgc, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 403 and code_of(r) == "PATIENT_LOOKUP_ONLY"
    query = "&".join(f"{k}={v}" for k, v in params.items())
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"request": {"method": "GET", "url": f"Patient?{query}"}}],
    }
    r = await client.post("/", json=bundle, headers={**lgc, **FHIR_JSON})
    assert r.status_code == 200
    entry = r.json()["entry"][0]
    assert entry["response"]["status"].startswith("403"), entry
    assert "resource" not in entry or entry["resource"]["resourceType"] != "Bundle"


async def test_a_vendor_reads_no_patient_by_id_and_no_history(client, auth):
    p = await enrolled(client, auth)
    lgc = await auth.system("lgc-reader", "system/Patient.rs system/DocumentReference.c")
    assert (await client.get(f"/Patient/{p['id']}", headers=lgc)).status_code == 404
    r = await client.get(f"/Patient/{p['id']}/_history", headers=lgc)
    assert r.status_code == 404 or r.json().get("total", 0) == 0
    r = await client.get(f"/Patient/{p['id']}/$everything", headers=lgc)
    assert r.status_code in (403, 404)


# ---------------------------------------------------------------- the exact lookup


async def test_the_exact_lookup_works_and_shows_only_what_a_deposit_needs(client, auth):
    p = await enrolled(client, auth)
    other = await enrolled(client, auth)
    lgc = await vendor(auth)
    r = await client.get("/Patient", params={"identifier": f"{INS_TEST}|{ins_of(p)}"}, headers=lgc)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["total"] == 1 and [e["resource"]["id"] for e in body["entry"]] == [p["id"]]
    seen = body["entry"][0]["resource"]
    assert set(seen) <= {"resourceType", "id", "meta", "identifier", "name", "birthDate",
                         "gender", "extension"}  # fmt: skip
    for key in PRIVATE:
        assert key not in seen
    assert [e["url"] for e in seen["extension"]] == [
        "https://espace-api.org/fhir/StructureDefinition/space-status"
    ]
    assert {"code": "SUBSETTED"}.items() <= seen["meta"]["tag"][-1].items()
    # several INS in one lookup (at most 10), each exact
    both = f"{INS_TEST}|{ins_of(p)},{INS_TEST}|{ins_of(other)}"
    r = await client.get("/Patient", params={"identifier": both}, headers=lgc)
    assert {e["resource"]["id"] for e in r.json()["entry"]} == {p["id"], other["id"]}
    # the lookup then the deposit, as the README's walkthrough does
    doc = await create(client, lgc, document(p["id"]))
    assert doc["subject"]["reference"] == f"Patient/{p['id']}"


async def test_a_professional_without_access_gets_the_projection_only(client, auth):
    p = await enrolled(client, auth)
    doctor = await auth.user("rpps-21001", PRO_SCOPES)
    query = {"identifier": f"{INS_TEST}|{ins_of(p)}"}
    seen = (await client.get("/Patient", params=query, headers=doctor)).json()["entry"][0]
    assert all(k not in seen["resource"] for k in PRIVATE)
    assert (await client.get(f"/Patient/{p['id']}", headers=doctor)).status_code == 404
    r = await client.get("/Patient", params={"family": "Testeur"}, headers=doctor)
    assert r.status_code == 200 and p["id"] not in {
        e["resource"]["id"] for e in r.json().get("entry", [])
    }
    await grant_care(client, doctor, p["id"], "21001")
    seen = (await client.get("/Patient", params=query, headers=doctor)).json()["entry"][0]
    assert seen["resource"]["address"] == FULL["address"]  # with access: the whole Patient
    assert (await client.get(f"/Patient/{p['id']}", headers=doctor)).status_code == 200


async def test_a_vendor_finds_its_own_documents_by_ins(client, auth):
    p = await enrolled(client, auth)
    lgc = await vendor(auth, "lgc-iti67")
    theirs = await create(client, await vendor(auth, "lgc-other"), document(p["id"]))
    mine = await create(client, lgc, document(p["id"]))
    r = await client.get(
        "/DocumentReference",
        params={"patient.identifier": f"{INS_TEST}|{ins_of(p)}"},
        headers=lgc,
    )
    found = {e["resource"]["id"] for e in r.json()["entry"]}
    assert found == {mine["id"]} and theirs["id"] not in found


# ---------------------------------------------------------------- the INS register


async def test_a_patient_cannot_take_another_ins(client, auth):
    victim = await enrolled(client, auth)
    mine = await enrolled(client, auth)
    me = await auth.patient(mine["id"])
    taken = {**mine, "identifier": [{"system": INS_TEST, "value": ins_of(victim)}]}
    r = await client.put(f"/Patient/{mine['id']}", json=taken, headers={**me, **FHIR_JSON})
    assert r.status_code == 403 and code_of(r) == "INS_READ_ONLY"
    added = {**mine, "identifier": [*mine["identifier"], {"system": INS_TEST, "value": new_ins()}]}
    r = await client.put(f"/Patient/{mine['id']}", json=added, headers={**me, **FHIR_JSON})
    assert r.status_code == 403 and code_of(r) == "INS_READ_ONLY"
    patch = [{"op": "replace", "path": "/identifier/0/value", "value": ins_of(victim)}]
    r = await client.patch(
        f"/Patient/{mine['id']}",
        json=patch,
        headers={**me, "Content-Type": "application/json-patch+json"},
    )
    assert r.status_code == 403 and code_of(r) == "INS_READ_ONLY"
    # the rest of their Patient stays theirs to edit
    moved = {**mine, "address": [{"city": "Brest"}]}
    moved.pop("meta", None)
    r = await client.put(f"/Patient/{mine['id']}", json=moved, headers={**me, **FHIR_JSON})
    assert r.status_code == 200, r.text
    # the vendor lookup of the victim's INS still finds the victim alone
    lgc = await vendor(auth)
    r = await client.get(
        "/Patient", params={"identifier": f"{INS_TEST}|{ins_of(victim)}"}, headers=lgc
    )
    assert [e["resource"]["id"] for e in r.json()["entry"]] == [victim["id"]]


async def test_an_operator_cannot_give_one_ins_to_two_patients(client, auth, app):
    ops = await auth.operator()
    first = await enrolled(client, auth)
    second = await enrolled(client, auth)
    r = await client.post("/Patient", json=patient(ins=ins_of(first)), headers={**ops, **FHIR_JSON})
    assert r.status_code == 409 and code_of(r) == "INS_CONFLICT"
    moved = {**second, "identifier": first["identifier"]}
    r = await client.put(f"/Patient/{second['id']}", json=moved, headers={**ops, **FHIR_JSON})
    assert r.status_code == 409 and code_of(r) == "INS_CONFLICT"
    assert (await client.get(f"/Patient/{second['id']}", headers=ops)).json()[
        "identifier"
    ] == second["identifier"]
    # the same inside a batch: that entry is 409, nothing of it is stored
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {
                "resource": patient(family="Doublon", ins=ins_of(first)),
                "request": {"method": "POST", "url": "Patient"},
            }
        ],
    }
    r = await client.post("/", json=batch, headers={**ops, **FHIR_JSON})
    assert r.json()["entry"][0]["response"]["status"].startswith("409")
    found = await client.get("/Patient", params={"family": "Doublon"}, headers=ops)
    assert found.json()["total"] == 0
    # an operator may change an INS (enrolment correction) to a free one
    fixed = {**second, "identifier": [{"system": INS_TEST, "value": new_ins()}]}
    r = await client.put(f"/Patient/{second['id']}", json=fixed, headers={**ops, **FHIR_JSON})
    assert r.status_code == 200
    # a deleted Patient frees its INS
    assert (await client.delete(f"/Patient/{first['id']}", headers=ops)).status_code == 204
    await create(client, ops, patient(ins=ins_of(first)))


async def test_the_database_refuses_a_duplicate_ins(client, auth, app):
    p = await enrolled(client, auth)
    url = make_url(app.state.settings.database_url).set(drivername="postgresql")
    conn = await asyncpg.connect(url.render_as_string(hide_password=False))
    try:
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute(
                "INSERT INTO patient_ins (system, value, patient_id) VALUES ($1, $2, $3)",
                INS_TEST,
                ins_of(p),
                str(uuid.uuid4()),
            )
    finally:
        await conn.close()


# ---------------------------------------------------------------- audit and brute-force signal


async def test_every_lookup_is_audited_and_misses_are_counted(client, auth, app):
    p = await enrolled(client, auth)
    name = f"lgc-{uuid.uuid4().hex[:8]}"
    lgc = await vendor(auth, name)
    await client.get("/Patient", params={"identifier": f"{INS_TEST}|{ins_of(p)}"}, headers=lgc)
    for _ in range(3):
        r = await client.get(
            "/Patient", params={"identifier": f"{INS_TEST}|{new_ins()}"}, headers=lgc
        )
        assert r.status_code == 200 and r.json()["total"] == 0
    async with app.state.engine.connect() as conn:
        rows = (
            await conn.execute(
                select(audit_events).where(
                    audit_events.c.client_id == name, audit_events.c.detail == "patient-lookup"
                )
            )
        ).all()
    assert len(rows) == 4
    assert [r.patient_id for r in rows].count(p["id"]) == 1  # who looked up whom
    metrics = (await client.get("/metrics")).text
    assert f'espace_patient_lookups_total{{client_id="{name}",outcome="miss"}} 3.0' in metrics
    assert f'espace_patient_lookups_total{{client_id="{name}",outcome="found"}} 1.0' in metrics
    assert ins_of(p) not in metrics
