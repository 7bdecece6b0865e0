"""Server behaviours that existing FHIR client libraries rely on (found by tests/compat):
JSON Merge Patch (fhirpy's `patch()`), conditional create criteria in the POST query string
(fhirpy's `get_or_create()`), conditional patch (fhirpy's `searchset.patch()`), the token
endpoint in /metadata (fhirclient)."""

from tests.support.fhir import FHIR_JSON, INS_TEST, create, patient

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


async def test_conditional_create_criteria_in_query(client, auth) -> None:
    ops = await auth.operator()
    body = patient(family="Querycond")
    ins = f"{INS_TEST}|{body['identifier'][0]['value']}"
    headers = {**ops, **FHIR_JSON}

    first = await client.post("/Patient", params={"identifier": ins}, json=body, headers=headers)
    assert first.status_code == 201, first.text
    again = await client.post(
        "/Patient", params={"identifier": ins, "_format": "json"}, json=body, headers=headers
    )
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]

    # criteria are parsed strictly (never an unknown parameter silently matching everything)
    unknown = await client.post("/Patient", params={"nope": "x"}, json=body, headers=headers)
    assert unknown.status_code == 400
    # response-only parameters are not criteria: a plain create
    plain = await client.post(
        "/Patient", params={"_pretty": "true"}, json=patient(), headers=headers
    )
    assert plain.status_code == 201


async def test_metadata_names_the_token_endpoint(client) -> None:
    """fhirclient discovers OAuth endpoints only from the CapabilityStatement (SMART
    oauth-uris extension), not from .well-known/smart-configuration."""
    cs = (await client.get("/metadata")).json()
    (ext,) = cs["rest"][0]["security"]["extension"]
    assert ext["url"] == "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
    assert ext["extension"] == [
        {"url": "token", "valueUri": "http://test/auth/token"},
        {"url": "authorize", "valueUri": "http://test/auth/authorize"},
    ]
    wellknown = (await client.get("/.well-known/smart-configuration")).json()
    assert wellknown["token_endpoint"] == "http://test/auth/token"


async def test_conditional_patch(client, auth) -> None:
    """PATCH /Type?criteria (fhirpy's `searchset.patch()`): 1 match -> patched, 0 -> 404,
    several -> 412, none given -> 400."""
    ops = await auth.operator()
    body = patient(family="Condpatch", active=True)
    ins = f"{INS_TEST}|{body['identifier'][0]['value']}"
    p = await create(client, ops, body)

    r = await client.patch(
        "/Patient", params={"identifier": ins}, json={"active": False}, headers={**ops, **JSON}
    )
    assert r.status_code == 200, r.text
    assert r.json()["id"] == p["id"] and r.json()["active"] is False
    ops_patch = [{"op": "add", "path": "/gender", "value": "male"}]
    r = await client.patch(
        "/Patient",
        params={"identifier": ins},
        json=ops_patch,
        headers={**ops, "Content-Type": "application/json-patch+json", "If-Match": 'W/"2"'},
    )
    assert r.status_code == 200 and r.json()["meta"]["versionId"] == "3"

    absent = await client.patch(
        "/Patient",
        params={"identifier": f"{INS_TEST}|0"},
        json={"active": True},
        headers={**ops, **JSON},
    )
    assert absent.status_code == 404
    await create(client, ops, patient(family="Condpatchtwin"))
    await create(client, ops, patient(family="Condpatchtwin"))
    several = await client.patch(
        "/Patient",
        params={"family": "Condpatchtwin"},
        json={"active": True},
        headers={**ops, **JSON},
    )
    assert several.status_code == 412
    bare = await client.patch("/Patient", json={"active": True}, headers={**ops, **JSON})
    assert bare.status_code == 400
