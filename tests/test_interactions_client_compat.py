"""Server behaviours that existing FHIR client libraries rely on (found by tests/compat):
JSON Merge Patch (fhirpy's `patch()`)."""

from tests.support.fhir import FHIR_JSON, create, patient

JSON = {"Content-Type": "application/json"}
MERGE = {"Content-Type": "application/merge-patch+json"}


async def test_merge_patch(client, auth) -> None:
    ops = await auth.operator()
    p = await create(client, ops, patient(family="Merge", active=True))
    url = f"/Patient/{p['id']}"

    r = await client.patch(url, json={"active": False, "birthDate": None}, headers={**ops, **JSON})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["active"] is False and "birthDate" not in body
    assert body["name"] == p["name"] and body["meta"]["versionId"] == "2"

    r = await client.patch(
        url, json={"name": [{"family": "Fusion"}], "gender": None}, headers={**ops, **MERGE}
    )
    assert r.status_code == 200, r.text
    assert r.json()["name"] == [{"family": "Fusion"}] and "gender" not in r.json()

    history = (await client.get(f"{url}/_history", headers=ops)).json()
    assert history["entry"][0]["request"]["method"] == "PATCH"

    # id and resourceType stay; a non-object is a malformed patch; the result is validated
    assert (
        await client.patch(url, json={"id": "other"}, headers={**ops, **MERGE})
    ).status_code == 422
    assert (await client.patch(url, json=[1], headers={**ops, **MERGE})).status_code == 400
    r = await client.patch(url, json={"birthDate": "not-a-date"}, headers={**ops, **JSON})
    assert r.status_code == 422
    # application/fhir+json stays FHIRPath Patch: a non-Parameters body is refused
    r = await client.patch(url, json={"active": True}, headers={**ops, **FHIR_JSON})
    assert r.status_code == 400

