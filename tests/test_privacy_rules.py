"""The patient's privacy choices, one rule at a time (issue 8), through HTTP."""

from datetime import timedelta
from typing import Any

import pytest
from fhir.resources.R4B.auditevent import AuditEvent
from sqlalchemy import text

from tests.support.auth import code_of
from tests.support.clock import shifted
from tests.support.fhir import (
    FHIR_JSON,
    PRO_SCOPES,
    create,
    document,
    grant_care,
    patient,
    practitioner_ref,
    privacy_consent,
)

VISIBILITY = (
    "https://mos.esante.gouv.fr/NOS/TRE_A07-StatusVisibiliteDocument/FHIR/"
    "TRE-A07-StatusVisibiliteDocument"
)
SETTINGS_URL = "https://espace-api.org/fhir/StructureDefinition/privacy-settings"
JSON_PATCH = {"Content-Type": "application/json-patch+json"}
READ_SCOPES = "system/DocumentReference.crus system/Binary.crs system/Patient.s system/List.c"


async def space(client: Any, auth: Any) -> tuple[str, dict[str, str], dict[str, str]]:
    """A new patient; (id, patient token, software token that deposits and reads its own)."""
    ops = await auth.operator()
    pid = (await create(client, ops, patient(family="Rules")))["id"]
    return pid, await auth.patient(pid), await auth.system("lgc-rules", READ_SCOPES)


def codes(resource: dict[str, Any]) -> set[str]:
    return {
        c["code"]
        for label in resource.get("securityLabel", [])
        for c in label.get("coding", [])
        if c.get("system") == VISIBILITY
    }


async def status(client: Any, headers: dict[str, str], url: str) -> int:
    return (await client.get(url, headers=headers)).status_code


def label_patch(op: str, index: int | None = None, code: str = "MASQUE_PS") -> list[dict]:
    if op == "add":
        return [
            {
                "op": "add",
                "path": "/securityLabel/-",
                "value": {"coding": [{"system": VISIBILITY, "code": code}]},
            }
        ]
    return [{"op": "remove", "path": f"/securityLabel/{index}"}]


def label_index(resource: dict[str, Any], code: str) -> int:
    for i, label in enumerate(resource["securityLabel"]):
        if any(c.get("code") == code for c in label.get("coding", [])):
            return i
    raise AssertionError(f"no {code} label")


# ---------------------------------------------------------------- care relationship


async def test_a_professional_needs_a_care_relationship(client, auth, app):
    pid, me, lgc = await space(client, auth)
    doc = await create(client, lgc, document(pid))
    doctor = await auth.user("rpps-2001", PRO_SCOPES)
    url = f"/DocumentReference/{doc['id']}"
    assert await status(client, doctor, url) == 404
    r = await client.get(f"/DocumentReference?patient={pid}", headers=doctor)
    assert r.json()["total"] == 0
    consent_id = await grant_care(client, doctor, pid, "2001")
    assert await status(client, doctor, url) == 200
    # The patient lists the authorisation, with a server-set period, and revokes it.
    listed = (await client.get(f"/Consent?patient={pid}", headers=me)).json()
    care = next(e["resource"] for e in listed["entry"] if e["resource"]["id"] == consent_id)
    period = care["provision"]["period"]
    assert period["start"] and period["end"] > period["start"]
    assert (await client.delete(f"/Consent/{consent_id}", headers=me)).status_code == 204
    assert await status(client, doctor, url) == 404


async def test_a_care_relationship_expires(client, auth, app):
    pid, _, lgc = await space(client, auth)
    doc = await create(client, lgc, document(pid))
    doctor = await auth.user("rpps-2002", PRO_SCOPES)
    await grant_care(client, doctor, pid, "2002")
    url = f"/DocumentReference/{doc['id']}"
    days = app.state.settings.care_relationship_days
    with shifted(app, timedelta(days=days - 1)):
        assert await status(client, await auth.user("rpps-2002", PRO_SCOPES), url) == 200
    with shifted(app, timedelta(days=days + 1)):
        assert await status(client, await auth.user("rpps-2002", PRO_SCOPES), url) == 404


async def test_a_professional_records_a_care_relationship_for_themselves_only(client, auth):
    pid, _, _ = await space(client, auth)
    doctor = await auth.user("rpps-2003", PRO_SCOPES)
    body = privacy_consent(pid, "care-relationship", actors=[practitioner_ref("9999")])
    r = await client.post("/Consent", json=body, headers={**doctor, **FHIR_JSON})
    assert r.status_code == 403 and code_of(r) == "OTHER_ACTOR"
    mask = privacy_consent(pid, "mask")
    r = await client.post("/Consent", json=mask, headers={**doctor, **FHIR_JSON})
    assert r.status_code == 403 and code_of(r) == "CONSENT_KIND_NOT_ALLOWED"


async def test_professionals_do_not_see_the_patients_choices(client, auth):
    pid, me, _ = await space(client, auth)
    doctor = await auth.user("rpps-2004", PRO_SCOPES)
    own = await grant_care(client, doctor, pid, "2004")
    block = await create(
        client, me, privacy_consent(pid, "block", actors=[practitioner_ref("7777")])
    )
    r = await client.get(f"/Consent?patient={pid}", headers=doctor)
    assert [e["resource"]["id"] for e in r.json()["entry"]] == [own]
    assert await status(client, doctor, f"/Consent/{block['id']}") == 404


# ---------------------------------------------------------------- blocking


async def test_a_blocked_professional_loses_even_their_own_deposits(client, auth):
    pid, me, _ = await space(client, auth)
    doctor = await auth.user("rpps-2005", f"{PRO_SCOPES} user/DocumentReference.c")
    await grant_care(client, doctor, pid, "2005")
    doc = await create(client, doctor, document(pid))
    url = f"/DocumentReference/{doc['id']}"
    assert await status(client, doctor, url) == 200
    await create(client, me, privacy_consent(pid, "block", actors=[practitioner_ref("2005")]))
    assert await status(client, doctor, url) == 404
    r = await client.get(f"/Patient/{pid}/$everything", headers=doctor)
    assert r.status_code == 404


async def test_blocking_an_organisation_blocks_its_professionals(client, auth):
    pid, me, lgc = await space(client, auth)
    doc = await create(client, lgc, document(pid))
    doctor = await auth.user("rpps-2006", PRO_SCOPES)
    await grant_care(client, doctor, pid, "2006")
    hospital = {"reference": "Organization/finess-330000001"}
    await create(client, me, privacy_consent(pid, "block", actors=[hospital]))
    assert await status(client, doctor, f"/DocumentReference/{doc['id']}") == 200
    staff = await auth.issuer.mint(
        kind="user",
        subject="rpps-2007",
        scope=PRO_SCOPES,
        practitioner="rpps-2007",
        organization="finess:330000001",
    )
    staff_headers = {"Authorization": f"Bearer {staff.access_token}"}
    care = privacy_consent(pid, "care-relationship", actors=[practitioner_ref("2007")])
    r = await client.post("/Consent", json=care, headers={**staff_headers, **FHIR_JSON})
    assert r.status_code == 422, "a blocked professional cannot even reach the space"
    assert await status(client, staff_headers, f"/DocumentReference/{doc['id']}") == 404


# ---------------------------------------------------------------- masking


async def test_mask_consent_and_label_never_disagree(client, auth):
    pid, me, lgc = await space(client, auth)
    doc = await create(client, lgc, document(pid))
    doctor = await auth.user("rpps-2010", PRO_SCOPES)
    await grant_care(client, doctor, pid, "2010")
    url = f"/DocumentReference/{doc['id']}"
    # Hidden with a Consent -> the document carries MASQUE_PS.
    mask = await create(
        client, me, privacy_consent(pid, "mask", data=[f"DocumentReference/{doc['id']}"])
    )
    current = (await client.get(url, headers=me)).json()
    assert "MASQUE_PS" in codes(current)
    assert await status(client, doctor, url) == 404
    # Shown again by patching the label (the DMP's way) -> the Consent no longer holds it.
    patch = label_patch("remove", label_index(current, "MASQUE_PS"))
    r = await client.patch(url, json=patch, headers={**me, **JSON_PATCH})
    assert r.status_code == 200, r.text
    consent = (await client.get(f"/Consent/{mask['id']}", headers=me)).json()
    assert consent["status"] == "inactive"
    assert await status(client, doctor, url) == 200
    # Hidden again by label -> hidden; deleting a mask Consent clears what it set.
    r = await client.patch(url, json=label_patch("add"), headers={**me, **JSON_PATCH})
    assert r.status_code == 200 and await status(client, doctor, url) == 404
    second = await create(
        client, me, privacy_consent(pid, "mask", data=[f"DocumentReference/{doc['id']}"])
    )
    assert (await client.delete(f"/Consent/{second['id']}", headers=me)).status_code == 204
    assert "MASQUE_PS" not in codes((await client.get(url, headers=me)).json())
    assert await status(client, doctor, url) == 200


async def test_a_professional_cannot_unmask(client, auth):
    pid, me, lgc = await space(client, auth)
    doc = await create(client, lgc, document(pid))
    url = f"/DocumentReference/{doc['id']}"
    r = await client.patch(url, json=label_patch("add"), headers={**me, **JSON_PATCH})
    assert r.status_code == 200
    masked = r.json()
    r = await client.patch(
        url,
        json=label_patch("remove", label_index(masked, "MASQUE_PS")),
        headers={**lgc, **JSON_PATCH},
    )
    assert r.status_code == 403 and code_of(r) == "LABEL_CHANGE_NOT_ALLOWED"


async def test_mask_all_hides_every_document_even_in_an_emergency(client, auth):
    pid, me, lgc = await space(client, auth)
    docs = [await create(client, lgc, document(pid)) for _ in range(2)]
    doctor = await auth.user("rpps-2011", PRO_SCOPES)
    await grant_care(client, doctor, pid, "2011")
    await create(client, me, privacy_consent(pid, "mask"))  # no data: every document
    emergency = await auth.user("rpps-2012", PRO_SCOPES)
    r = await client.post(
        f"/Patient/{pid}/$break-the-glass", headers={**emergency, "X-BTG-Reason": "coma"}
    )
    assert r.status_code == 201
    for who in (doctor, emergency):
        r = await client.get(f"/DocumentReference?patient={pid}", headers=who)
        assert r.json()["total"] == 0
        for doc in docs:
            assert await status(client, who, f"/DocumentReference/{doc['id']}") == 404
    ext = (await client.get(f"/Patient/{pid}", headers=me)).json()["extension"]
    settings = {e["url"]: e for e in next(x for x in ext if x["url"] == SETTINGS_URL)["extension"]}
    assert settings["mask-all"]["valueBoolean"] is True


async def test_default_visibility_masks_new_deposits_until_released(client, auth):
    pid, me, lgc = await space(client, auth)
    doctor = await auth.user("rpps-2013", PRO_SCOPES)
    await grant_care(client, doctor, pid, "2013")
    before = await create(client, lgc, document(pid))
    await create(client, me, privacy_consent(pid, "default-visibility", type="deny"))
    shown = (await client.get(f"/Patient/{pid}", headers=me)).json()
    settings = next(e for e in shown["extension"] if e["url"] == SETTINGS_URL)["extension"]
    assert {"url": "default-visibility", "valueCode": "masked"} in settings
    after = await create(client, lgc, document(pid))
    assert "MASQUE_PS" in codes(after) and "MASQUE_PS" not in codes(before)
    assert await status(client, doctor, f"/DocumentReference/{before['id']}") == 200
    assert await status(client, doctor, f"/DocumentReference/{after['id']}") == 404
    url = f"/DocumentReference/{after['id']}"
    patch = label_patch("remove", label_index(after, "MASQUE_PS"))
    assert (await client.patch(url, json=patch, headers={**me, **JSON_PATCH})).status_code == 200
    assert await status(client, doctor, url) == 200


async def test_the_privacy_settings_extension_is_the_servers(client, auth):
    pid, me, _ = await space(client, auth)
    current = (await client.get(f"/Patient/{pid}", headers=me)).json()
    forged = {
        "url": SETTINGS_URL,
        "extension": [{"url": "default-visibility", "valueCode": "masked"}],
    }
    current["extension"] = [forged]
    r = await client.put(f"/Patient/{pid}", json=current, headers={**me, **FHIR_JSON})
    assert r.status_code == 200, r.text
    settings = next(e for e in r.json()["extension"] if e["url"] == SETTINGS_URL)["extension"]
    assert {"url": "default-visibility", "valueCode": "visible"} in settings


# ---------------------------------------------------------------- not yet announced


async def test_a_document_not_yet_announced_is_released_by_a_professional(client, auth):
    pid, me, lgc = await space(client, auth)
    body = document(pid)
    body["securityLabel"] = [{"coding": [{"system": VISIBILITY, "code": "INVISIBLE_PATIENT"}]}]
    doc = await create(client, lgc, body)
    url = f"/DocumentReference/{doc['id']}"
    assert await status(client, me, url) == 404
    r = await client.get(f"/DocumentReference?patient={pid}", headers=me)
    assert doc["id"] not in {e["resource"]["id"] for e in r.json().get("entry", [])}
    release = label_patch("remove", label_index(doc, "INVISIBLE_PATIENT"))
    r = await client.patch(url, json=release, headers={**lgc, **JSON_PATCH})
    assert r.status_code == 200, r.text
    assert await status(client, me, url) == 200


async def test_a_document_not_yet_announced_is_shown_after_the_delay(client, auth, app):
    pid, _, lgc = await space(client, auth)
    body = document(pid)
    body["securityLabel"] = [{"coding": [{"system": VISIBILITY, "code": "INVISIBLE_PATIENT"}]}]
    doc = await create(client, lgc, body)
    url = f"/DocumentReference/{doc['id']}"
    days = app.state.settings.invisible_patient_release_days
    with shifted(app, timedelta(days=days - 1)):
        assert await status(client, await auth.patient(pid), url) == 404
    with shifted(app, timedelta(days=days, minutes=1)):
        assert await status(client, await auth.patient(pid), url) == 200


async def test_a_patient_cannot_set_invisible_patient(client, auth):
    pid, me, _ = await space(client, auth)
    body = document(pid)
    body["securityLabel"] = [{"coding": [{"system": VISIBILITY, "code": "INVISIBLE_PATIENT"}]}]
    r = await client.post("/DocumentReference", json=body, headers={**me, **FHIR_JSON})
    assert r.status_code == 403 and code_of(r) == "LABEL_CHANGE_NOT_ALLOWED"


# ---------------------------------------------------------------- break-the-glass


async def test_break_the_glass_is_refused_where_the_law_says(client, auth):
    pid, me, lgc = await space(client, auth)
    url = f"/Patient/{pid}/$break-the-glass"
    doctor = await auth.user("rpps-2020", PRO_SCOPES)
    r = await client.post(url, headers=doctor)
    assert r.status_code == 400 and code_of(r) == "BTG_REASON_REQUIRED"
    for who in (me, lgc):
        r = await client.post(url, headers={**who, "X-BTG-Reason": "x"})
        assert r.status_code == 403 and code_of(r) == "BTG_NOT_ALLOWED"
    await create(client, me, privacy_consent(pid, "block", actors=[practitioner_ref("2020")]))
    r = await client.post(url, headers={**doctor, "X-BTG-Reason": "emergency"})
    assert r.status_code == 403 and code_of(r) == "BLOCKED"
    await create(client, me, privacy_consent(pid, "oppose-btg"))
    other = await auth.user("rpps-2021", PRO_SCOPES)
    r = await client.post(url, headers={**other, "X-BTG-Reason": "emergency"})
    assert r.status_code == 403 and code_of(r) == "BTG_OPPOSED"
    r = await client.post(
        f"/Patient/{pid}x/$break-the-glass", headers={**other, "X-BTG-Reason": "e"}
    )
    assert r.status_code == 404


async def test_break_the_glass_is_time_limited_traced_and_shown(client, auth, app):
    pid, me, lgc = await space(client, auth)
    doc = await create(client, lgc, document(pid))
    doctor = await auth.user("rpps-2022", PRO_SCOPES)
    url = f"/DocumentReference/{doc['id']}"
    assert await status(client, doctor, url) == 404
    reason = {
        "resourceType": "Parameters",
        "parameter": [{"name": "reason", "valueString": "cardiac arrest, no relative"}],
    }
    r = await client.post(
        f"/Patient/{pid}/$break-the-glass", json=reason, headers={**doctor, **FHIR_JSON}
    )
    assert r.status_code == 201, r.text
    assert await status(client, doctor, url) == 200
    minutes = app.state.settings.break_the_glass_minutes
    with shifted(app, timedelta(minutes=minutes + 1)):
        assert await status(client, await auth.user("rpps-2022", PRO_SCOPES), url) == 404
    # Shown to the patient: the access in their Consents, the event in their access history.
    consents = (await client.get(f"/Consent?patient={pid}", headers=me)).json()
    kinds = [
        c["code"]
        for e in consents["entry"]
        for cat in e["resource"].get("category", [])
        for c in cat["coding"]
    ]
    assert "break-the-glass" in kinds
    history = (await client.get(f"/AuditEvent?patient={pid}&purpose=BTG", headers=me)).json()
    assert history["total"] == 1
    event = history["entry"][0]["resource"]
    assert event["outcomeDesc"] == "cardiac arrest, no relative"
    assert event["agent"][0]["who"]["identifier"]["value"] == "rpps-2022"


# ---------------------------------------------------------------- access history


async def test_the_patient_reads_their_access_history(client, auth, app):
    pid, me, lgc = await space(client, auth)
    doc = await create(client, lgc, document(pid))
    doctor = await auth.user("rpps-2030", PRO_SCOPES)
    await grant_care(client, doctor, pid, "2030")
    assert await status(client, doctor, f"/DocumentReference/{doc['id']}") == 200
    r = await client.get(f"/AuditEvent?patient={pid}&agent=rpps-2030&subtype=read", headers=me)
    assert r.status_code == 200 and r.json()["total"] == 1
    event = r.json()["entry"][0]["resource"]
    AuditEvent.model_validate(event)  # a valid R4 AuditEvent
    assert {"reference": f"DocumentReference/{doc['id']}"} in [e["what"] for e in event["entity"]]
    recorded = event["recorded"]
    r = await client.get(f"/AuditEvent?patient={pid}&date=gt{recorded}", headers=me)
    assert all(e["resource"]["recorded"] > recorded for e in r.json().get("entry", []))
    own = await client.get(f"/AuditEvent/{event['id']}", headers=me)
    assert own.status_code == 200
    # Nobody else's: another patient sees nothing of it, a professional reads no history.
    _other_pid, other, _ = await space(client, auth)
    r = await client.get(f"/AuditEvent?patient={pid}", headers=other)
    assert r.json()["total"] == 0
    assert (await client.get(f"/AuditEvent/{event['id']}", headers=other)).status_code == 404
    r = await client.get(f"/AuditEvent?patient={pid}", headers=doctor)
    assert r.status_code == 403


async def test_audit_events_cannot_change(client, auth, app):
    pid, me, _ = await space(client, auth)
    event = (await client.get(f"/AuditEvent?patient={pid}", headers=me)).json()["entry"][0]
    eid = event["resource"]["id"]
    ops = await auth.operator()
    for method in ("PUT", "DELETE", "PATCH"):
        r = await client.request(method, f"/AuditEvent/{eid}", headers={**ops, **FHIR_JSON})
        assert r.status_code == 405, (method, r.status_code)
    async with app.state.engine.connect() as conn:
        for sql in ("UPDATE audit_events SET outcome = '8'", "DELETE FROM audit_events"):
            with pytest.raises(Exception, match="append-only"):
                await conn.execute(text(sql))
            await conn.rollback()


# ---------------------------------------------------------------- $explain, $everything


def _rules(parameters: dict[str, Any]) -> dict[str, bool]:
    out = {}
    for p in parameters["parameter"]:
        if p["name"] == "rule":
            part = {x["name"]: x for x in p["part"]}
            out[part["code"]["valueCode"]] = part["holds"]["valueBoolean"]
    return out


async def test_explain_answers_why_from_the_policy(client, auth):
    pid, me, lgc = await space(client, auth)
    doc = await create(client, lgc, document(pid))
    doctor = await auth.user("rpps-2040", PRO_SCOPES)
    await grant_care(client, doctor, pid, "2040")
    url = f"/DocumentReference/{doc['id']}/$explain"
    r = await client.get(f"{url}?practitioner=rpps-2040&profession=10", headers=me)
    assert r.status_code == 200, r.text
    first = r.json()["parameter"][0]
    assert first == {"name": "visible", "valueBoolean": True}
    assert _rules(r.json())["care-relationship"] is True
    await client.patch(
        f"/DocumentReference/{doc['id']}", json=label_patch("add"), headers={**me, **JSON_PATCH}
    )
    why = (await client.get(f"{url}?practitioner=rpps-2040&profession=10", headers=me)).json()
    assert why["parameter"][0]["valueBoolean"] is False
    assert _rules(why)["not-masked"] is False and _rules(why)["care-relationship"] is True
    stranger = (await client.get(f"{url}?practitioner=rpps-9", headers=me)).json()
    assert _rules(stranger)["care-relationship"] is False
    author = (await client.get(f"{url}?client=lgc-rules", headers=me)).json()
    assert author["parameter"][0]["valueBoolean"] is True and _rules(author)["author"] is True
    assert (await client.get(f"{url}?practitioner=x", headers=doctor)).status_code == 403
    r = await client.get(f"{url}?practitioner=x", headers=await auth.operator())
    assert r.status_code == 200
    r = await client.get(url, headers=me)
    assert r.status_code == 400


async def test_everything_is_the_right_of_access(client, auth):
    pid, me, lgc = await space(client, auth)
    docs = [await create(client, lgc, document(pid)) for _ in range(3)]
    mask = privacy_consent(pid, "mask", data=[f"DocumentReference/{docs[0]['id']}"])
    await create(client, me, mask)
    mine = (await client.get(f"/Patient/{pid}/$everything", headers=me)).json()
    types = {e["resource"]["resourceType"] for e in mine["entry"]}
    assert {"Patient", "DocumentReference", "Consent"} <= types
    assert {d["id"] for d in docs} <= {e["resource"]["id"] for e in mine["entry"]}
    doctor = await auth.user("rpps-2050", PRO_SCOPES)
    await grant_care(client, doctor, pid, "2050")
    theirs = (await client.get(f"/Patient/{pid}/$everything", headers=doctor)).json()
    seen = {e["resource"]["id"] for e in theirs["entry"]}
    assert docs[0]["id"] not in seen and {docs[1]["id"], docs[2]["id"]} <= seen
    assert "Consent" in {e["resource"]["resourceType"] for e in theirs["entry"]}  # their own
    paged = (
        await client.get(f"/Patient/{pid}/$everything?_type=DocumentReference&_count=2", headers=me)
    ).json()
    assert paged["total"] == 3 and len(paged["entry"]) == 2
    assert any(link["relation"] == "next" for link in paged["link"])
