"""PATCH: JSON Patch and FHIRPath Patch, If-Match, and their error paths."""

from tests.support.fhir import FHIR_JSON, create, patient

JSON_PATCH = {"Content-Type": "application/json-patch+json"}


def fhirpath_op(type_: str, path: str, **parts: object) -> dict:
    """One FHIRPath Patch operation parameter."""
    out = [{"name": "type", "valueCode": type_}, {"name": "path", "valueString": path}]
    for name, value in parts.items():
        if name == "value":
            out.append({"name": "value", **value})  # type: ignore[dict-item]
        elif name in ("index", "source", "destination"):
            out.append({"name": name, "valueInteger": value})
        else:
            out.append({"name": name, "valueString": value})
    return {"name": "operation", "part": out}


def parameters(*ops: dict) -> dict:
    return {"resourceType": "Parameters", "parameter": list(ops)}


async def test_json_patch_updates_and_versions(client, auth):
    ops = await auth.operator()
    p = await create(client, ops, patient(family="Avant"))
    body = [
        {"op": "replace", "path": "/name/0/family", "value": "Apres"},
        {"op": "add", "path": "/telecom", "value": [{"system": "phone", "value": "0102030405"}]},
        {"op": "test", "path": "/gender", "value": "female"},
    ]
    r = await client.patch(f"/Patient/{p['id']}", json=body, headers={**ops, **JSON_PATCH})
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["name"][0]["family"] == "Apres"
    assert got["telecom"][0]["value"] == "0102030405"
    assert got["meta"]["versionId"] == "2"
    assert r.headers["etag"] == 'W/"2"'
    read = (await client.get(f"/Patient/{p['id']}", headers=ops)).json()
    assert read == got
    history = (await client.get(f"/Patient/{p['id']}/_history", headers=ops)).json()
    assert history["entry"][0]["request"]["method"] == "PATCH"
    # the index follows the patch: search finds the new family name
    found = await client.get(f"/Patient?family=Apres&_id={p['id']}", headers=ops)
    assert found.json()["total"] == 1


async def test_fhirpath_patch_operations(client, auth):
    ops = await auth.operator()
    p = await create(
        client,
        ops,
        patient(
            name=[
                {"use": "usual", "family": "Martin", "given": ["Lea"]},
                {"use": "official", "family": "Durand"},
            ]
        ),
    )
    body = parameters(
        fhirpath_op("replace", "Patient.gender", value={"valueCode": "other"}),
        fhirpath_op("delete", "Patient.name.where(use = 'official')"),
        fhirpath_op("insert", "Patient.name[0].given", index=0, value={"valueString": "Zoe"}),
        fhirpath_op("move", "Patient.name[0].given", source=0, destination=1),
        fhirpath_op(
            "add",
            "Patient",
            name="telecom",
            value={
                "part": [
                    {"name": "system", "valueCode": "email"},
                    {"name": "value", "valueString": "lea@example.org"},
                ]
            },
        ),
        fhirpath_op("add", "Patient", name="active", value={"valueBoolean": True}),
    )
    r = await client.patch(f"/Patient/{p['id']}", json=body, headers={**ops, **FHIR_JSON})
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["gender"] == "other"
    assert [n["use"] for n in got["name"]] == ["usual"]
    assert got["name"][0]["given"] == ["Lea", "Zoe"]
    assert got["telecom"] == [{"system": "email", "value": "lea@example.org"}]
    assert got["active"] is True


async def test_patch_if_match(client, auth):
    ops = await auth.operator()
    p = await create(client, ops, patient())
    body = [{"op": "replace", "path": "/gender", "value": "male"}]
    url = f"/Patient/{p['id']}"
    stale = await client.patch(url, json=body, headers={**ops, **JSON_PATCH, "If-Match": 'W/"5"'})
    assert stale.status_code == 412
    ok = await client.patch(url, json=body, headers={**ops, **JSON_PATCH, "If-Match": 'W/"1"'})
    assert ok.status_code == 200
    again = await client.patch(url, json=body, headers={**ops, **JSON_PATCH, "If-Match": 'W/"1"'})
    assert again.status_code == 412


async def test_patch_bad_path_is_422(client, auth):
    ops = await auth.operator()
    p = await create(client, ops, patient())
    url = f"/Patient/{p['id']}"
    r = await client.patch(
        url,
        json=[{"op": "replace", "path": "/contact/0/name", "value": {"family": "X"}}],
        headers={**ops, **JSON_PATCH},
    )
    assert r.status_code == 422, r.text
    assert r.json()["issue"][0]["details"]["coding"][0]["code"] == "INVALID_PATCH_PATH"
    failed_test = await client.patch(
        url,
        json=[{"op": "test", "path": "/gender", "value": "male"}],
        headers={**ops, **JSON_PATCH},
    )
    assert failed_test.status_code == 422
    fhirpath = await client.patch(
        url,
        json=parameters(
            fhirpath_op("replace", "Patient.contact[3].gender", value={"valueCode": "male"})
        ),
        headers={**ops, **FHIR_JSON},
    )
    assert fhirpath.status_code == 422
    unsupported = await client.patch(
        url,
        json=parameters(fhirpath_op("delete", "Patient.name.exists()")),
        headers={**ops, **FHIR_JSON},
    )
    assert unsupported.status_code == 422
    assert unsupported.json()["issue"][0]["details"]["coding"][0]["code"] == "UNSUPPORTED_PATH"
    # nothing was written
    assert (await client.get(url, headers=ops)).json()["meta"]["versionId"] == "1"


async def test_patch_to_invalid_resource_is_422(client, auth):
    ops = await auth.operator()
    p = await create(client, ops, patient())
    url = f"/Patient/{p['id']}"
    r = await client.patch(
        url,
        json=[{"op": "add", "path": "/unknownElement", "value": 1}],
        headers={**ops, **JSON_PATCH},
    )
    assert r.status_code == 422
    assert r.json()["issue"][0]["details"]["coding"][0]["code"] == "INVALID_RESOURCE"
    wrong_type = await client.patch(
        url,
        json=[{"op": "replace", "path": "/birthDate", "value": "not a date"}],
        headers={**ops, **JSON_PATCH},
    )
    assert wrong_type.status_code == 422
    id_change = await client.patch(
        url,
        json=[{"op": "replace", "path": "/id", "value": "other"}],
        headers={**ops, **JSON_PATCH},
    )
    assert id_change.status_code == 422


async def test_patch_deleted_is_410_and_unknown_404(client, auth):
    ops = await auth.operator()
    p = await create(client, ops, patient())
    assert (await client.delete(f"/Patient/{p['id']}", headers=ops)).status_code == 204
    body = [{"op": "replace", "path": "/gender", "value": "male"}]
    r = await client.patch(f"/Patient/{p['id']}", json=body, headers={**ops, **JSON_PATCH})
    assert r.status_code == 410
    missing = await client.patch("/Patient/no-such-id", json=body, headers={**ops, **JSON_PATCH})
    assert missing.status_code == 404


async def test_patch_content_type_and_body_errors(client, auth):
    ops = await auth.operator()
    p = await create(client, ops, patient())
    url = f"/Patient/{p['id']}"
    xml = await client.patch(
        url, content=b"<Parameters/>", headers={**ops, "Content-Type": "application/xml-patch+xml"}
    )
    assert xml.status_code == 415
    assert xml.json()["issue"][0]["details"]["coding"][0]["code"] == "UNSUPPORTED_MEDIA_TYPE"
    not_array = await client.patch(url, json={"op": "remove"}, headers={**ops, **JSON_PATCH})
    assert not_array.status_code == 400
    not_parameters = await client.patch(url, json=patient(), headers={**ops, **FHIR_JSON})
    assert not_parameters.status_code == 400


async def test_patch_respects_scopes_and_visibility(client, auth):
    ops = await auth.operator()
    p = await create(client, ops, patient())
    other = await create(client, ops, patient())
    body = [{"op": "replace", "path": "/gender", "value": "male"}]
    reader = await auth.patient(p["id"], scopes="patient/*.rs")
    r = await client.patch(f"/Patient/{p['id']}", json=body, headers={**reader, **JSON_PATCH})
    assert r.status_code == 403
    own = await auth.patient(p["id"])
    assert (
        await client.patch(f"/Patient/{p['id']}", json=body, headers={**own, **JSON_PATCH})
    ).status_code == 200
    hidden = await client.patch(f"/Patient/{other['id']}", json=body, headers={**own, **JSON_PATCH})
    assert hidden.status_code == 404


async def test_patch_prefer_return(client, auth):
    ops = await auth.operator()
    p = await create(client, ops, patient())
    body = [{"op": "replace", "path": "/gender", "value": "male"}]
    url = f"/Patient/{p['id']}"
    minimal = await client.patch(
        url, json=body, headers={**ops, **JSON_PATCH, "Prefer": "return=minimal"}
    )
    assert minimal.status_code == 200 and minimal.content == b""
    assert minimal.headers["etag"] == 'W/"2"'
    outcome = await client.patch(
        url, json=body, headers={**ops, **JSON_PATCH, "Prefer": "return=OperationOutcome"}
    )
    assert outcome.json()["resourceType"] == "OperationOutcome"
    assert outcome.json()["issue"][0]["severity"] == "information"
