"""French access rules: the emergency call centre (SAMU-Centre 15) and its opposition; a
minor's legal representatives."""

from datetime import date, timedelta

import pytest

from espace_api.access.vocabulary import ROLE_CODE_SYSTEM, VISIBILITY_SYSTEM
from tests.support.auth import DOCTOR, bearer
from tests.support.clock import shifted
from tests.support.fhir import (
    INS_TEST,
    PRO_SCOPES,
    create,
    created,
    new_ins,
    patient,
    privacy_consent,
)
from tests.support.pdsm import DISCHARGE_LETTER, pdsm_bundle
from tests.test_documents_deposit import send

VENDOR_SCOPES = "system/DocumentReference.crus system/Binary.crs system/Patient.s system/List.c"
CALL_CENTRE = "750000001"
JSON_PATCH = {"Content-Type": "application/json-patch+json"}


@pytest.fixture
def call_centres(app):
    """The app configured with one emergency call centre (restored afterwards)."""
    saved = app.state.settings
    app.state.settings = saved.model_copy(update={"emergency_call_centres": CALL_CENTRE})
    yield
    app.state.settings = saved


def related(minor_id: str, code: str, ins: str) -> dict:
    """A RelatedPerson of the minor's space naming a person by INS."""
    return {
        "resourceType": "RelatedPerson",
        "patient": {"reference": f"Patient/{minor_id}"},
        "identifier": [{"system": INS_TEST, "value": ins}],
        "relationship": [{"coding": [{"system": ROLE_CODE_SYSTEM, "code": code}]}],
        "name": [{"family": "Representant"}],
    }


async def professional_at(auth, rpps: str, finess: str) -> dict[str, str]:
    issued = await auth.issuer.mint(
        kind="user",
        subject=rpps,
        scope=PRO_SCOPES,
        practitioner=rpps,
        organization=f"finess:{finess}",
        profession=DOCTOR,
    )
    return bearer(issued.access_token)


async def test_the_call_centre_doctor_reaches_a_space_unless_opposed(client, auth, call_centres):
    pid = (await create(client, await auth.operator(), patient(family="Samu")))["id"]
    vendor = await auth.system("lgc-samu", VENDOR_SCOPES)
    bundle, _ = pdsm_bundle(pid, DISCHARGE_LETTER)
    r = await send(client, vendor, bundle)
    assert r.status_code == 200, r.text
    doc_id = created(r)["id"]
    url = f"/DocumentReference/{doc_id}"
    regulator = await professional_at(auth, "rpps-8301", CALL_CENTRE)
    elsewhere = await professional_at(auth, "rpps-8302", "750000002")
    assert (await client.get(url, headers=regulator)).status_code == 200
    assert (await client.get(url, headers=elsewhere)).status_code == 404
    me = await auth.patient(pid)
    opposition = await create(client, me, privacy_consent(pid, "oppose-samu"))
    assert (await client.get(url, headers=regulator)).status_code == 404
    shown = (await client.get(f"/Patient/{pid}", headers=me)).json()
    settings = next(e for e in shown["extension"] if e["url"].endswith("privacy-settings"))
    assert {"url": "oppose-samu", "valueBoolean": True} in settings["extension"]
    r = await client.delete(f"/Consent/{opposition['id']}", headers=me)
    assert r.status_code in (200, 204)
    assert (await client.get(url, headers=regulator)).status_code == 200


async def test_a_legal_representative_acts_for_a_minor_until_18(client, auth, app):
    ops = await auth.operator()
    today = date.today()
    turns_18 = today + timedelta(days=30)
    born = turns_18.replace(year=turns_18.year - 18)
    minor = await create(client, ops, patient(family="Mineur", birthDate=born.isoformat()))
    mother_ins = new_ins()
    mother = await create(client, ops, patient(family="Mere", ins=mother_ins))
    friend_ins = new_ins()
    friend = await create(client, ops, patient(family="Ami", ins=friend_ins))
    for code, ins in (("MTH", mother_ins), ("FRND", friend_ins)):
        await create(client, ops, related(minor["id"], code, ins))
    vendor = await auth.system("lgc-minor", VENDOR_SCOPES)
    ids = {}
    for labels in ((), ("INVISIBLE_REPRESENTANTS_LEGAUX",)):
        bundle, _ = pdsm_bundle(minor["id"], DISCHARGE_LETTER, visibility=labels)
        r = await send(client, vendor, bundle)
        assert r.status_code == 200, r.text
        entries = {e["resource"]["resourceType"]: e["resource"] for e in r.json()["entry"]}
        ids[labels] = (entries["DocumentReference"]["id"], entries["Binary"]["id"])
    shared, private = ids[()], ids[("INVISIBLE_REPRESENTANTS_LEGAUX",)]

    async def reads(pid: str) -> dict[str, int]:
        headers = await auth.patient(pid)
        out = {}
        for name, (doc, binary) in (("shared", shared), ("private", private)):
            out[name] = (await client.get(f"/DocumentReference/{doc}", headers=headers)).status_code
            out[name + "-content"] = (
                await client.get(f"/Binary/{binary}", headers=headers)
            ).status_code
        found = await client.get(
            "/DocumentReference", params={"patient": minor["id"]}, headers=headers
        )
        out["search"] = found.json().get("total", -1) if found.status_code == 200 else -1
        return out

    assert await reads(minor["id"]) == {
        "shared": 200,
        "shared-content": 200,
        "private": 200,
        "private-content": 200,
        "search": 2,
    }
    assert await reads(mother["id"]) == {
        "shared": 200,
        "shared-content": 200,
        "private": 404,
        "private-content": 404,
        "search": 1,
    }
    nothing = {
        "shared": 404,
        "shared-content": 404,
        "private": 404,
        "private-content": 404,
        "search": 0,
    }
    assert await reads(friend["id"]) == nothing  # a friend is no legal representative
    mother_headers = await auth.patient(mother["id"])
    r = await client.get(f"/Patient/{minor['id']}", headers=mother_headers)
    assert r.status_code == 200
    # With the minor's rights: hide a document from professionals, record a Consent.
    hide = [
        {
            "op": "add",
            "path": "/securityLabel/-",
            "value": {"coding": [{"system": VISIBILITY_SYSTEM, "code": "MASQUE_PS"}]},
        }
    ]
    r = await client.patch(
        f"/DocumentReference/{shared[0]}", json=hide, headers={**mother_headers, **JSON_PATCH}
    )
    assert r.status_code == 200, r.text
    r = await client.post(
        "/Consent", json=privacy_consent(minor["id"], "oppose-btg"), headers=mother_headers
    )
    assert r.status_code == 201, r.text
    friend_headers = await auth.patient(friend["id"])
    r = await client.post(
        "/Consent", json=privacy_consent(minor["id"], "oppose-btg"), headers=friend_headers
    )
    assert r.status_code == 403
    with shifted(app, timedelta(days=29)):
        assert (await reads(mother["id"]))["shared"] == 200
    with shifted(app, timedelta(days=31)):  # the minor is 18: the access ends by itself
        assert await reads(mother["id"]) == nothing
        late = await auth.patient(mother["id"])
        r = await client.post(
            "/Consent", json=privacy_consent(minor["id"], "oppose-samu"), headers=late
        )
        assert r.status_code == 403
        assert (await reads(minor["id"]))["search"] == 2
