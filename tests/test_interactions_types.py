"""Directory and compartment types: update-as-create with client ids, searches, policy."""

import uuid

from tests.support.fhir import FHIR_JSON, create, patient

RPPS = "urn:oid:1.2.250.1.71.4.2.1"
FINESS = "urn:oid:1.2.250.1.71.4.2.2"


def practitioner(id_: str, family: str = "Docteur", given: str = "Alex") -> dict:
    return {
        "resourceType": "Practitioner",
        "id": id_,
        "identifier": [{"system": RPPS, "value": id_}],
        "active": True,
        "name": [{"family": family, "given": [given]}],
    }


def organization(id_: str, name: str = "Centre de Sante Test") -> dict:
    return {
        "resourceType": "Organization",
        "id": id_,
        "identifier": [{"system": FINESS, "value": id_}],
        "active": True,
        "name": name,
    }


async def test_update_as_create_with_client_id(client, auth):
    ops = await auth.operator()
    pid = f"rpps-{uuid.uuid4().hex[:8]}"
    created = await client.put(
        f"/Practitioner/{pid}", json=practitioner(pid), headers={**ops, **FHIR_JSON}
    )
    assert created.status_code == 201, created.text
    assert created.json()["id"] == pid
    assert created.headers["location"].endswith(f"/Practitioner/{pid}/_history/1")
    again = await client.put(
        f"/Practitioner/{pid}", json=practitioner(pid, family="Autre"), headers={**ops, **FHIR_JSON}
    )
    assert again.status_code == 200
    assert again.json()["meta"]["versionId"] == "2"
    oid = f"finess-{uuid.uuid4().hex[:8]}"
    org = await client.put(
        f"/Organization/{oid}", json=organization(oid), headers={**ops, **FHIR_JSON}
    )
    assert org.status_code == 201
    # types without updateCreate refuse a client id
    role = {"resourceType": "PractitionerRole", "id": "role-x", "active": True}
    refused = await client.put("/PractitionerRole/role-x", json=role, headers={**ops, **FHIR_JSON})
    assert refused.status_code == 404


async def test_directory_searches(client, auth):
    ops = await auth.operator()
    tag = uuid.uuid4().hex[:8]
    pid, oid = f"rpps-{tag}", f"finess-{tag}"
    await client.put(
        f"/Practitioner/{pid}",
        json=practitioner(pid, family=f"Fam{tag}", given="Noa"),
        headers={**ops, **FHIR_JSON},
    )
    await client.put(
        f"/Organization/{oid}",
        json=organization(oid, f"Clinique {tag}"),
        headers={**ops, **FHIR_JSON},
    )
    role = await create(
        client,
        ops,
        {
            "resourceType": "PractitionerRole",
            "active": True,
            "practitioner": {"reference": f"Practitioner/{pid}"},
            "organization": {"reference": f"Organization/{oid}"},
            "code": [{"coding": [{"system": "urn:oid:1.2.250.1.213.1.1.5.5", "code": "10"}]}],
        },
    )

    async def ids(url: str) -> list[str]:
        r = await client.get(url, headers=ops)
        assert r.status_code == 200, r.text
        return [e["resource"]["id"] for e in r.json().get("entry", [])]

    assert await ids(f"/Practitioner?family=fam{tag}") == [pid]
    assert await ids(f"/Practitioner?name=fam{tag}&given=noa&active=true") == [pid]
    assert await ids(f"/Practitioner?identifier={RPPS}|{pid}") == [pid]
    assert await ids(f"/Organization?name=clinique {tag}") == [oid]
    assert await ids(f"/PractitionerRole?organization=Organization/{oid}") == [role["id"]]
    assert await ids(f"/PractitionerRole?practitioner={pid}&role=10") == [role["id"]]


async def test_related_person_and_list_are_in_the_patient_compartment(client, auth):
    ops = await auth.operator()
    p = await create(client, ops, patient())
    q = await create(client, ops, patient())
    own = await auth.patient(p["id"])
    related = await create(
        client,
        own,
        {
            "resourceType": "RelatedPerson",
            "patient": {"reference": f"Patient/{p['id']}"},
            "name": [{"family": "Proche", "given": ["Sam"]}],
            "relationship": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
                            "code": "SIS",
                        }
                    ]
                }
            ],
        },
    )
    folder = await create(
        client,
        own,
        {
            "resourceType": "List",
            "status": "current",
            "mode": "working",
            "subject": {"reference": f"Patient/{p['id']}"},
            "code": {"coding": [{"system": "http://example.org/list", "code": "folder"}]},
            "date": "2024-04-01",
        },
    )
    r = await client.get(f"/RelatedPerson?patient={p['id']}&relationship=SIS", headers=own)
    assert [e["resource"]["id"] for e in r.json()["entry"]] == [related["id"]]
    r = await client.get("/List?code=folder&status=current&date=2024-04", headers=own)
    assert [e["resource"]["id"] for e in r.json()["entry"]] == [folder["id"]]
    # another patient neither sees nor writes them
    other = await auth.patient(q["id"])
    assert (await client.get(f"/List/{folder['id']}", headers=other)).status_code == 404
    assert (await client.get("/List?code=folder", headers=other)).json()["total"] == 0
    foreign = {
        "resourceType": "List",
        "status": "current",
        "mode": "working",
        "subject": {"reference": f"Patient/{p['id']}"},
    }
    r = await client.post("/List", json=foreign, headers={**other, **FHIR_JSON})
    assert r.status_code == 403
    # patients may not write directory types
    r = await client.put(
        "/Practitioner/rpps-by-patient",
        json=practitioner("rpps-by-patient"),
        headers={**own, **FHIR_JSON},
    )
    assert r.status_code == 403
