"""French access rules: the emergency call centre (SAMU-Centre 15) and its opposition."""

import pytest

from tests.support.auth import DOCTOR, bearer
from tests.support.fhir import PRO_SCOPES, create, patient, privacy_consent
from tests.support.pdsm import DISCHARGE_LETTER, pdsm_bundle
from tests.test_documents_deposit import send

VENDOR_SCOPES = "system/DocumentReference.crus system/Binary.crs system/Patient.s system/List.c"
CALL_CENTRE = "750000001"


@pytest.fixture
def call_centres(app):
    """The app configured with one emergency call centre (restored afterwards)."""
    saved = app.state.settings
    app.state.settings = saved.model_copy(update={"emergency_call_centres": CALL_CENTRE})
    yield
    app.state.settings = saved


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
    doc_id = next(
        e["resource"]["id"]
        for e in r.json()["entry"]
        if e["resource"]["resourceType"] == "DocumentReference"
    )
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
