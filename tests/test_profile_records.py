"""The health profile (issue 12): AllergyIntolerance, MedicationStatement, Condition,
FamilyMemberHistory, Immunization. Written by the patient (Immunization also by professional
software), read by professionals under the privacy rules. Refusals first."""

import pytest

from tests.support.auth import code_of
from tests.support.fhir import (
    FHIR_JSON,
    PRO_SCOPES,
    create,
    grant_care,
    ids,
    patient,
    practitioner_ref,
    privacy_consent,
    search,
)
from tests.support.profile import (
    CVX,
    MASKED,
    SNOMED,
    allergy,
    condition,
    family_history,
    immunization,
    medication,
)

PROFILE_SCOPES = (
    "system/Immunization.crus system/Condition.crus system/AllergyIntolerance.crus system/Patient.s"
)


async def space(client, auth, family: str = "Profil") -> tuple[str, dict[str, str]]:
    pid = (await create(client, await auth.operator(), patient(family=family)))["id"]
    return pid, await auth.patient(pid)


async def test_another_patient_neither_reads_nor_writes_a_profile(client, auth):
    pid, me = await space(client, auth)
    _, other = await space(client, auth, "Autre")
    cond = await create(client, me, condition(pid))
    r = await client.get(f"/Condition/{cond['id']}", headers=other)
    assert r.status_code == 404
    found = await search(client, other, "/Condition", patient=pid)
    assert found["total"] == 0
    r = await client.post("/Condition", json=condition(pid), headers={**other, **FHIR_JSON})
    assert r.status_code == 403 and code_of(r) == "OTHER_PATIENT"
    r = await client.put(
        f"/Condition/{cond['id']}",
        json={**cond, "note": [{"text": "x"}]},
        headers={**other, **FHIR_JSON},
    )
    assert r.status_code == 404
    assert (await client.delete(f"/Condition/{cond['id']}", headers=other)).status_code == 404


async def test_software_writes_vaccinations_only_and_never_browses(client, auth):
    pid, me = await space(client, auth)
    mine = await create(client, me, immunization(pid, date="2010-01-01"))
    cond = await create(client, me, condition(pid))
    vendor = await auth.system("lgc-vaccin", PROFILE_SCOPES)
    # The patient's account is theirs: software does not write a Condition or an allergy.
    for body in (condition(pid), allergy(pid)):
        r = await client.post(
            f"/{body['resourceType']}", json=body, headers={**vendor, **FHIR_JSON}
        )
        assert r.status_code == 403 and code_of(r) == "WRITER_NOT_ALLOWED", r.text
    given = await create(client, vendor, immunization(pid, date="2024-10-15"))
    # It sees what it recorded, nothing else of the space.
    assert (await client.get(f"/Condition/{cond['id']}", headers=vendor)).status_code == 404
    assert (await client.get(f"/Immunization/{mine['id']}", headers=vendor)).status_code == 404
    found = await search(client, vendor, "/Immunization", patient=pid)
    assert ids(found) == [given["id"]]
    assert (await search(client, vendor, "/Condition", patient=pid))["total"] == 0
    # It corrects its own record, not the patient's.
    r = await client.put(
        f"/Immunization/{given['id']}",
        json={**given, "lotNumber": "AB12"},
        headers={**vendor, **FHIR_JSON},
    )
    assert r.status_code == 200, r.text
    # The patient sees both vaccinations.
    found = await search(client, me, "/Immunization", patient=pid, _sort="-date")
    assert ids(found) == [given["id"], mine["id"]]


async def test_a_professional_reads_the_profile_through_care_and_loses_it_when_blocked(
    client, auth
):
    pid, me = await space(client, auth)
    cond = await create(client, me, condition(pid))
    hidden = await create(client, me, condition(pid, code="86406008", meta={"security": [MASKED]}))
    doctor = await auth.user("rpps-12001", scopes=PRO_SCOPES)
    stranger = await auth.user("rpps-12002", scopes=PRO_SCOPES)
    # No care relationship: nothing.
    assert (await client.get(f"/Condition/{cond['id']}", headers=doctor)).status_code == 404
    await grant_care(client, doctor, pid, "12001")
    assert (await client.get(f"/Condition/{cond['id']}", headers=doctor)).status_code == 200
    assert (await client.get(f"/Condition/{cond['id']}", headers=stranger)).status_code == 404
    # An entry the patient hid (MASQUE_PS) stays hidden; the patient still sees it.
    assert (await client.get(f"/Condition/{hidden['id']}", headers=doctor)).status_code == 404
    assert ids(await search(client, doctor, "/Condition", patient=pid)) == [cond["id"]]
    assert (await search(client, me, "/Condition", patient=pid))["total"] == 2
    # A professional, even with write scopes, does not write the patient's history.
    writer = await auth.user("rpps-12001", scopes="user/*.cruds")
    r = await client.post("/Condition", json=condition(pid), headers={**writer, **FHIR_JSON})
    assert r.status_code == 403 and code_of(r) == "WRITER_NOT_ALLOWED"
    # Blocked: nothing at all.
    await create(client, me, privacy_consent(pid, "block", actors=[practitioner_ref("12001")]))
    assert (await client.get(f"/Condition/{cond['id']}", headers=doctor)).status_code == 404
    assert (await search(client, doctor, "/Condition", patient=pid))["total"] == 0


async def test_a_professional_records_a_vaccination_but_does_not_unmask(client, auth):
    pid, me = await space(client, auth)
    pharmacist = await auth.user("rpps-12003", scopes="user/*.cruds user/Consent.cud")
    await grant_care(client, pharmacist, pid, "12003")
    given = await create(client, pharmacist, immunization(pid, vaccine="141", date="2025-10-20"))
    hidden = await create(client, me, immunization(pid, meta={"security": [MASKED]}))
    assert (
        await client.get(f"/Immunization/{hidden['id']}", headers=pharmacist)
    ).status_code == 404
    # Hiding is the patient's choice: the author may not add the label either.
    r = await client.put(
        f"/Immunization/{given['id']}",
        json={**given, "meta": {"security": [MASKED]}},
        headers={**pharmacist, **FHIR_JSON},
    )
    assert r.status_code == 403 and code_of(r) == "LABEL_CHANGE_NOT_ALLOWED"
    # The patient hides the pharmacist's record from the other professionals; its author
    # still sees it, as the depositor of a masked document does.
    doctor = await auth.user("rpps-12004", scopes=PRO_SCOPES)
    await grant_care(client, doctor, pid, "12004")
    url = f"/Immunization/{given['id']}"
    assert (await client.get(url, headers=doctor)).status_code == 200
    r = await client.put(
        url, json={**given, "meta": {"security": [MASKED]}}, headers={**me, **FHIR_JSON}
    )
    assert r.status_code == 200, r.text
    assert (await client.get(url, headers=doctor)).status_code == 404
    assert (await client.get(url, headers=pharmacist)).status_code == 200


@pytest.mark.parametrize(
    ("body", "searches"),
    [
        (
            condition,
            [
                ("code", f"{SNOMED}|44054006"),
                ("clinical-status", "active"),
                ("onset-date", "ge2015"),
            ],
        ),
        (
            allergy,
            [("code", "91936005"), ("clinical-status", "active"), ("date", "2020-01")],
        ),
        (medication, [("code", "60000000"), ("effective", "ge2023"), ("status", "active")]),
        (family_history, [("code", "22298006"), ("date", "2022"), ("relationship", "FTH")]),
        (
            immunization,
            [("vaccine-code", f"{CVX}|115"), ("date", "le2021-12-31"), ("status", "completed")],
        ),
    ],
)
async def test_crud_and_search_of_each_profile_type(client, auth, body, searches):
    pid, me = await space(client, auth)
    made = await create(client, me, body(pid))
    rtype, id_ = made["resourceType"], made["id"]
    r = await client.get(f"/{rtype}/{id_}", headers=me)
    assert r.status_code == 200 and r.json()["id"] == id_
    for name, value in searches:
        found = await search(client, me, f"/{rtype}", patient=pid, **{name: value})
        assert ids(found) == [id_], (name, value)
    found = await search(client, me, f"/{rtype}", patient=pid, **{searches[0][0]: "other-code"})
    assert found["total"] == 0
    updated = {**made, "note": [{"text": "précisé par le patient"}]}
    r = await client.put(f"/{rtype}/{id_}", json=updated, headers={**me, **FHIR_JSON})
    assert r.status_code == 200 and r.json()["meta"]["versionId"] == "2"
    assert (await client.delete(f"/{rtype}/{id_}", headers=me)).status_code in (200, 204)
    assert (await client.get(f"/{rtype}/{id_}", headers=me)).status_code == 410


async def test_a_profile_entry_with_a_bad_code_is_refused_with_its_element(client, auth):
    pid, me = await space(client, auth)
    bad = condition(pid, clinicalStatus="active")  # a string where a CodeableConcept goes
    r = await client.post("/Condition", json=bad, headers={**me, **FHIR_JSON})
    assert r.status_code == 400
    assert "clinicalStatus" in str(r.json()["issue"][0].get("expression"))
