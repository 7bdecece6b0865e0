"""PATCH, conditional update and conditional delete entries inside Bundles."""

import base64

import orjson

from tests.support.fhir import FHIR_JSON, INS_TEST, create, patient


def binary_patch(ops: list[dict]) -> dict:
    return {
        "resourceType": "Binary",
        "contentType": "application/json-patch+json",
        "data": base64.b64encode(orjson.dumps(ops)).decode(),
    }


def fhirpath_replace(path: str, value: dict) -> dict:
    return {
        "resourceType": "Parameters",
        "parameter": [
            {
                "name": "operation",
                "part": [
                    {"name": "type", "valueCode": "replace"},
                    {"name": "path", "valueString": path},
                    {"name": "value", **value},
                ],
            }
        ],
    }


async def post_bundle(client, headers, kind: str, entries: list[dict]):
    bundle = {"resourceType": "Bundle", "type": kind, "entry": entries}
    return await client.post("/", json=bundle, headers={**headers, **FHIR_JSON})


async def test_transaction_patch_entries(client, auth):
    ops = await auth.operator()
    a = await create(client, ops, patient())
    b = await create(client, ops, patient())
    r = await post_bundle(
        client,
        ops,
        "transaction",
        [
            {
                "resource": binary_patch([{"op": "replace", "path": "/gender", "value": "male"}]),
                "request": {"method": "PATCH", "url": f"Patient/{a['id']}", "ifMatch": 'W/"1"'},
            },
            {
                "resource": fhirpath_replace("Patient.birthDate", {"valueDate": "1990-01-01"}),
                "request": {"method": "PATCH", "url": f"Patient/{b['id']}"},
            },
        ],
    )
    assert r.status_code == 200, r.text
    statuses = [e["response"]["status"] for e in r.json()["entry"]]
    assert statuses == ["200 OK", "200 OK"]
    assert (await client.get(f"/Patient/{a['id']}", headers=ops)).json()["gender"] == "male"
    assert (await client.get(f"/Patient/{b['id']}", headers=ops)).json()[
        "birthDate"
    ] == "1990-01-01"


async def test_transaction_with_bad_patch_writes_nothing(client, auth):
    ops = await auth.operator()
    a = await create(client, ops, patient())
    r = await post_bundle(
        client,
        ops,
        "transaction",
        [
            {
                "resource": binary_patch([{"op": "replace", "path": "/gender", "value": "male"}]),
                "request": {"method": "PATCH", "url": f"Patient/{a['id']}"},
            },
            {
                "resource": binary_patch([{"op": "remove", "path": "/nothing/here"}]),
                "request": {"method": "PATCH", "url": f"Patient/{a['id']}"},
            },
        ],
    )
    assert r.status_code == 422
    assert (await client.get(f"/Patient/{a['id']}", headers=ops)).json()["meta"]["versionId"] == "1"


async def test_batch_patch_entry_errors_are_per_entry(client, auth):
    ops = await auth.operator()
    a = await create(client, ops, patient())
    r = await post_bundle(
        client,
        ops,
        "batch",
        [
            {
                "resource": {"resourceType": "Binary", "contentType": "text/plain", "data": "eA=="},
                "request": {"method": "PATCH", "url": f"Patient/{a['id']}"},
            },
            {
                "resource": binary_patch([{"op": "replace", "path": "/gender", "value": "other"}]),
                "request": {"method": "PATCH", "url": f"Patient/{a['id']}"},
            },
        ],
    )
    assert r.status_code == 200
    statuses = [e["response"]["status"] for e in r.json()["entry"]]
    assert statuses == ["415", "200 OK"]


async def test_transaction_conditional_update_and_delete(client, auth):
    ops = await auth.operator()
    body = patient()
    query = f"identifier={INS_TEST}|{body['identifier'][0]['value']}"
    doomed = patient()
    doomed_p = await create(client, ops, doomed)
    doomed_query = f"identifier={INS_TEST}|{doomed['identifier'][0]['value']}"
    r = await post_bundle(
        client,
        ops,
        "transaction",
        [
            {"resource": body, "request": {"method": "PUT", "url": f"Patient?{query}"}},
            {"request": {"method": "DELETE", "url": f"Patient?{doomed_query}"}},
        ],
    )
    assert r.status_code == 200, r.text
    statuses = [e["response"]["status"] for e in r.json()["entry"]]
    assert statuses == ["201 Created", "204 No Content"]
    assert (await client.get(f"/Patient/{doomed_p['id']}", headers=ops)).status_code == 410
    found = (await client.get(f"/Patient?{query}", headers=ops)).json()
    assert found["total"] == 1
