"""French deposits (ANS PDSm / DMP): profiled Bundles, labels, replacement, archive."""

import copy

import pytest

from tests.support.auth import DOCTOR
from tests.support.fhir import (
    INS_TEST,
    PRO_SCOPES,
    create,
    created,
    grant_care,
    new_ins,
    patient,
    search,
)
from tests.support.pdsm import DISCHARGE_LETTER, IMAGING_REPORT, LAB_REPORT, pdsm_bundle
from tests.test_documents_deposit import footprint, send
from tests.test_lifecycle import act, enrol_one, space_of

VENDOR_SCOPES = "system/DocumentReference.crus system/Binary.crs system/Patient.s system/List.c"
JSON_PATCH = {"Content-Type": "application/json-patch+json"}


@pytest.fixture
async def pid(client, auth) -> str:
    return (await create(client, await auth.operator(), patient(family="Pdsm")))["id"]


@pytest.fixture
async def vendor(auth) -> dict[str, str]:
    return await auth.system("lgc-pdsm", VENDOR_SCOPES)


@pytest.mark.parametrize("kind", [LAB_REPORT, DISCHARGE_LETTER, IMAGING_REPORT])
async def test_pdsm_bundles_are_accepted(client, auth, pid, vendor, kind):
    bundle, _ = pdsm_bundle(pid, kind)
    r = await send(client, vendor, bundle)
    assert r.status_code == 200, r.text
    doc = created(r)
    assert doc["contained"][1]["resourceType"] == "PractitionerRole"
    binary = created(r, "Binary")
    assert binary["securityContext"] == {"reference": f"Patient/{pid}"}
    mine = await auth.patient(pid)
    found = await search(client, mine, "/DocumentReference", patient=pid, type=kind[0])
    assert [e["resource"]["id"] for e in found["entry"]] == [doc["id"]]


@pytest.mark.parametrize(
    "element",
    [
        "date",
        "author",
        "custodian",
        "content[0].attachment.title",
        "content[0].attachment.size",
        "content[0].attachment.hash",
        "context.period.start",
    ],
)
async def test_each_missing_pdsm_element_is_named(client, app, pid, vendor, element):
    bundle, doc = pdsm_bundle(pid, LAB_REPORT)
    *parents, last = element.replace("[0]", ".0").split(".")
    node = doc
    for step in parents:
        node = node[int(step)] if step.isdigit() else node[step]
    del node[last]
    before = await footprint(app, pid)
    r = await send(client, vendor, bundle)
    assert r.status_code == 422, r.text
    paths = [e for issue in r.json()["issue"] for e in issue.get("expression", [])]
    assert paths == [f"DocumentReference.{element}"]
    assert await footprint(app, pid) == before


async def test_visibility_labels_at_deposit_reach_every_actor(client, auth, pid, vendor):
    doctor = await auth.user("rpps-8101", PRO_SCOPES, profession=DOCTOR)
    await grant_care(client, doctor, pid, "8101")
    mine = await auth.patient(pid)
    ids = {}
    for label in ("MASQUE_PS", "INVISIBLE_PATIENT"):
        bundle, _ = pdsm_bundle(pid, DISCHARGE_LETTER, visibility=(label,))
        r = await send(client, vendor, bundle)
        assert r.status_code == 200, r.text
        ids[label] = created(r)["id"]
    sees = {
        "doctor": (doctor, {"MASQUE_PS": 404, "INVISIBLE_PATIENT": 200}),
        "patient": (mine, {"MASQUE_PS": 200, "INVISIBLE_PATIENT": 404}),
        "author software": (vendor, {"MASQUE_PS": 200, "INVISIBLE_PATIENT": 200}),
    }
    for who, (headers, expected) in sees.items():
        for label, status in expected.items():
            r = await client.get(f"/DocumentReference/{ids[label]}", headers=headers)
            assert r.status_code == status, (who, label)


async def test_replacement_as_the_dmp_does_it(client, auth, pid, vendor, app):
    bundle, _ = pdsm_bundle(pid, LAB_REPORT)
    r = await send(client, vendor, bundle)
    old = created(r)
    new_bundle, new_doc = pdsm_bundle(pid, LAB_REPORT)
    new_doc["relatesTo"] = [
        {"code": "replaces", "target": {"reference": f"DocumentReference/{old['id']}"}}
    ]
    superseded = {**copy.deepcopy(old), "status": "superseded"}
    put = {
        "resource": superseded,
        "request": {"method": "PUT", "url": f"DocumentReference/{old['id']}"},
    }
    changed = copy.deepcopy(put)
    changed["resource"]["content"][0]["attachment"]["title"] = "Autre titre"
    before = await footprint(app, pid)
    r = await send(client, vendor, {**new_bundle, "entry": [*new_bundle["entry"], changed]})
    assert r.status_code == 422, r.text
    assert r.json()["issue"][0]["details"]["coding"][0]["code"] == "SUPERSEDE_CHANGES_OTHER"
    assert "DocumentReference.content" in r.json()["issue"][0]["expression"]
    assert await footprint(app, pid) == before
    r = await send(client, vendor, {**new_bundle, "entry": [*new_bundle["entry"], put]})
    assert r.status_code == 200, r.text
    statuses = [e["response"]["status"] for e in r.json()["entry"]]
    assert statuses == ["201 Created", "201 Created", "201 Created", "200 OK"]
    mine = await auth.patient(pid)
    got = (await client.get(f"/DocumentReference/{old['id']}", headers=mine)).json()
    assert got["status"] == "superseded"
    current = await search(client, mine, "/DocumentReference", patient=pid, status="current")
    assert [e["resource"]["id"] for e in current["entry"]] == [created(r)["id"]]


async def test_archive_and_unarchive_by_patch(client, auth, pid, vendor):
    bundle, _ = pdsm_bundle(pid, IMAGING_REPORT)
    doc = created(await send(client, vendor, bundle))
    kept, _ = pdsm_bundle(pid, LAB_REPORT)
    other = created(await send(client, vendor, kept))
    mine = await auth.patient(pid)

    async def listed(**params: str) -> list[str]:
        found = await search(client, mine, "/DocumentReference", patient=pid, **params)
        return sorted(e["resource"]["id"] for e in found.get("entry", []))

    assert await listed() == sorted([doc["id"], other["id"]])
    archive = [{"op": "replace", "path": "/extension/0/valueBoolean", "value": True}]
    url = f"/DocumentReference/{doc['id']}"
    r = await client.patch(url, json=archive, headers={**vendor, **JSON_PATCH})
    assert r.status_code == 200, r.text
    assert await listed() == [other["id"]]  # left out of default searches
    assert await listed(isArchived="true") == [doc["id"]]  # returned when asked for
    assert await listed(isArchived="false") == [other["id"]]
    assert (await client.get(url, headers=mine)).status_code == 200  # still readable by id
    unarchive = [{"op": "replace", "path": "/extension/0/valueBoolean", "value": False}]
    r = await client.patch(url, json=unarchive, headers={**mine, **JSON_PATCH})
    assert r.status_code == 200, r.text
    assert await listed() == sorted([doc["id"], other["id"]])


async def test_a_vendor_reads_the_space_status_before_depositing(client, auth, vendor):
    ins = new_ins()
    pid, me = await enrol_one(client, auth, ins=ins)
    await act(client, me, pid, "activate")
    lookup = {"identifier": f"{INS_TEST}|{ins}"}
    found = await search(client, vendor, "/Patient", **lookup)
    assert space_of(found["entry"][0]["resource"])["status"] == "active"
    assert (await act(client, me, pid, "close", reason="moving abroad")).status_code == 200
    shown = space_of((await search(client, vendor, "/Patient", **lookup))["entry"][0]["resource"])
    assert shown["status"] == "closed" and shown["closure-reason"] == "moving abroad"
    assert shown["closed"] and shown["purge-after"] > shown["closed"]
    bundle, _ = pdsm_bundle(pid, LAB_REPORT)
    r = await send(client, vendor, bundle)
    assert r.status_code == 422 and r.json()["issue"][0]["details"]["coding"][0]["code"] == (
        "PATIENT_SPACE_CLOSED"
    )
