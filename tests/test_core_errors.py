"""Every refusal is an OperationOutcome with the right status and a stable code, and
leaves nothing half-written; /metadata follows the registry."""

import asyncio
import logging
import uuid

import pytest
from sqlalchemy import func, select, true

from espace_api.db.schema import audit_events, resource_versions, resources
from espace_api.fhir.errors import ERROR_SYSTEM
from espace_api.fhir.registry import REGISTRY
from espace_api.fhir.search import SPECIAL
from espace_api.resources import service
from tests.support.fhir import FHIR_JSON, LOCAL_ID, create, patient, with_local_id


async def row_counts(app) -> tuple[int, ...]:
    async with app.state.engine.connect() as conn:
        return tuple(
            [
                (await conn.execute(select(func.count()).select_from(t).where(w))).scalar_one()
                for t, w in (
                    (resources, true()),
                    (resource_versions, true()),
                    # refused requests leave refusal events (outcome 4): count the others
                    (audit_events, audit_events.c.outcome == "0"),
                )
            ]
        )


def assert_outcome(r, status: int, code: str | None = None) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/fhir+json")
    body = r.json()
    assert body["resourceType"] == "OperationOutcome"
    issue = body["issue"][0]
    assert issue["severity"] == "error"
    coding = issue["details"]["coding"][0]
    assert coding["system"] == ERROR_SYSTEM
    if code is not None:
        assert coding["code"] == code
    return issue


@pytest.fixture
async def unchanged(app):
    """Asserts that the test wrote no resource, version or audit row."""
    before = await row_counts(app)
    yield
    assert await row_counts(app) == before


# ---------------------------------------------------------------- 400


async def test_invalid_resource_names_the_element(client, auth, app):
    ops = await auth.operator()
    before = await row_counts(app)
    r = await client.post(
        "/Patient", json=patient(birthDate="17/05/1980"), headers={**ops, **FHIR_JSON}
    )
    issue = assert_outcome(r, 400, "INVALID_RESOURCE")
    assert issue["expression"] == ["Patient.birthDate"]
    r = await client.post("/Patient", json=patient(colour="blue"), headers={**ops, **FHIR_JSON})
    issue = assert_outcome(r, 400, "INVALID_RESOURCE")
    assert issue["expression"] == ["Patient.colour"]
    assert issue["code"] == "structure"
    bad_name = patient(name=[{"family": 42, "given": "not-a-list"}])
    r = await client.post("/Patient", json=bad_name, headers={**ops, **FHIR_JSON})
    issue = assert_outcome(r, 400, "INVALID_RESOURCE")
    assert issue["expression"][0].startswith("Patient.name[0].")
    r = await client.post("/Patient", content=b"{not json", headers={**ops, **FHIR_JSON})
    assert_outcome(r, 400, "INVALID_JSON")
    r = await client.post("/Patient", json=["a list"], headers={**ops, **FHIR_JSON})
    assert_outcome(r, 400)
    assert await row_counts(app) == before


async def test_wrong_resource_type_for_url(client, auth, unchanged):
    ops = await auth.operator()
    body = {"resourceType": "Consent", "status": "active"}
    r = await client.post("/Patient", json=body, headers={**ops, **FHIR_JSON})
    issue = assert_outcome(r, 400, "WRONG_RESOURCE_TYPE")
    assert issue["expression"] == ["resourceType"]


async def test_put_id_mismatch(client, auth, app):
    ops = await auth.operator()
    p = await create(client, ops, patient())
    before = await row_counts(app)
    r = await client.put(
        f"/Patient/{p['id']}", json={**p, "id": "other"}, headers={**ops, **FHIR_JSON}
    )
    issue = assert_outcome(r, 400, "ID_MISMATCH")
    assert issue["expression"] == ["Patient.id"]
    no_id = {k: v for k, v in p.items() if k != "id"}
    r = await client.put(f"/Patient/{p['id']}", json=no_id, headers={**ops, **FHIR_JSON})
    assert_outcome(r, 400, "ID_MISMATCH")
    r = await client.put(
        f"/Patient/{p['id']}", json=p, headers={**ops, **FHIR_JSON, "If-Match": "nonsense"}
    )
    assert_outcome(r, 400, "INVALID_ETAG")
    assert await row_counts(app) == before


# ---------------------------------------------------------------- 404 / 405 / 410


async def test_not_found(client, auth, unchanged):
    ops = await auth.operator()
    issue = assert_outcome(await client.get("/Patient/nope", headers=ops), 404, "NOT_FOUND")
    assert issue["code"] == "not-found"
    assert_outcome(await client.get("/Substance/1", headers=ops), 404, "NOT_FOUND")
    assert_outcome(await client.get("/Substance", headers=ops), 404, "NOT_FOUND")
    assert_outcome(await client.get("/Patient/x/y/z", headers=ops), 404, "NOT_FOUND")
    assert_outcome(await client.delete("/Patient/nope", headers=ops), 404, "NOT_FOUND")
    r = await client.put(
        "/Patient/nope", json={**patient(), "id": "nope"}, headers={**ops, **FHIR_JSON}
    )
    assert_outcome(r, 404, "NOT_FOUND")
    assert_outcome(await client.get("/Patient/nope/_history", headers=ops), 404, "NOT_FOUND")


async def test_method_not_allowed(client, auth, unchanged):
    ops = await auth.operator()
    r = await client.delete("/Patient/x/_history/1", headers=ops)  # versions are immutable
    issue = assert_outcome(r, 405, "METHOD_NOT_ALLOWED")
    assert issue["code"] == "not-supported"
    assert "GET" in r.headers.get("allow", "")
    r = await client.post("/Patient/x", json=patient(), headers={**ops, **FHIR_JSON})
    assert_outcome(r, 405, "METHOD_NOT_ALLOWED")
    assert_outcome(await client.delete("/metadata"), 405, "METHOD_NOT_ALLOWED")


async def test_gone_after_delete(client, auth, app):
    ops = await auth.operator()
    p = await create(client, ops, patient())
    assert (await client.delete(f"/Patient/{p['id']}", headers=ops)).status_code == 204
    before = await row_counts(app)
    r = await client.get(f"/Patient/{p['id']}", headers=ops)
    issue = assert_outcome(r, 410, "GONE")
    assert issue["code"] == "deleted"
    # the deletion version too
    assert_outcome(await client.get(f"/Patient/{p['id']}/_history/2", headers=ops), 410, "GONE")
    # a deleted resource cannot be updated back with a version precondition
    r = await client.put(
        f"/Patient/{p['id']}", json=p, headers={**ops, **FHIR_JSON, "If-Match": 'W/"1"'}
    )
    assert_outcome(r, 412)
    assert await row_counts(app) == before


# ---------------------------------------------------------------- 406 / 413 / 415


async def test_not_acceptable(client, auth, unchanged):
    ops = await auth.operator()
    p_url = "/Patient?_id=nope"
    for accept in ("image/png", "text/html"):
        r = await client.get(p_url, headers={**ops, "Accept": accept})
        assert_outcome(r, 406, "NOT_ACCEPTABLE")
    formats = (await client.get("/metadata")).json()["format"]
    if not any("xml" in f for f in formats):
        r = await client.get(p_url, headers={**ops, "Accept": "application/xml"})
        assert_outcome(r, 406, "NOT_ACCEPTABLE")
        r = await client.get("/metadata", headers={"Accept": "application/fhir+xml"})
        assert_outcome(r, 406, "NOT_ACCEPTABLE")
    assert_outcome(await client.get(f"{p_url}&_format=png", headers=ops), 406, "NOT_ACCEPTABLE")
    # a create refused for its Accept header writes nothing
    r = await client.post(
        "/Patient", json=patient(), headers={**ops, **FHIR_JSON, "Accept": "image/png"}
    )
    assert_outcome(r, 406, "NOT_ACCEPTABLE")


async def test_acceptable_types(client, auth):
    ops = await auth.operator()
    for accept in ("application/fhir+json", "application/json", "*/*", "application/*"):
        r = await client.get("/Patient?_id=nope", headers={**ops, "Accept": accept})
        assert r.status_code == 200, accept


async def test_body_too_large(client, auth, app, unchanged):
    ops = await auth.operator()
    real = app.state.settings
    app.state.settings = real.model_copy(update={"max_body_bytes": 2000})
    try:
        await _refuse_large_bodies(client, ops)
    finally:
        app.state.settings = real


async def _refuse_large_bodies(client, ops):
    big = patient(text={"status": "generated", "div": f"<div>{'x' * 5000}</div>"})
    r = await client.post("/Patient", json=big, headers={**ops, **FHIR_JSON})
    issue = assert_outcome(r, 413, "BODY_TOO_LARGE")
    assert issue["code"] == "too-costly"

    async def chunks():  # no Content-Length: the limit applies while streaming
        for _ in range(10):
            yield b" " * 500

    r = await client.post("/Patient", content=chunks(), headers={**ops, **FHIR_JSON})
    assert_outcome(r, 413, "BODY_TOO_LARGE")
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [{"x": "y" * 3000}]}
    r = await client.post("/", json=bundle, headers={**ops, **FHIR_JSON})
    assert_outcome(r, 413, "BODY_TOO_LARGE")
    r = await client.post("/Patient/_search", data={"family": "x" * 3000}, headers=ops)
    assert_outcome(r, 413, "BODY_TOO_LARGE")
    # within the limit still works (a read of a missing id: nothing audited)
    r = await client.get("/Patient/nope", headers=ops)
    assert r.status_code == 404


async def test_unsupported_media_type(client, auth, unchanged):
    ops = await auth.operator()
    for ctype in ("application/xml", "text/plain", "application/x-www-form-urlencoded"):
        r = await client.post(
            "/Patient",
            content=b'{"resourceType":"Patient"}',
            headers={**ops, "Content-Type": ctype},
        )
        issue = assert_outcome(r, 415, "UNSUPPORTED_MEDIA_TYPE")
        assert issue["code"] == "not-supported"
    r = await client.post("/Patient", content=b"{}", headers=ops)  # no Content-Type
    assert_outcome(r, 415, "UNSUPPORTED_MEDIA_TYPE")
    r = await client.post("/", content=b"{}", headers={**ops, "Content-Type": "text/plain"})
    assert_outcome(r, 415, "UNSUPPORTED_MEDIA_TYPE")


# ---------------------------------------------------------------- 409 / 412


async def test_concurrent_create_with_same_id_is_409(client, auth, app, monkeypatch):
    ops = await auth.operator()
    fixed = f"dup-{uuid.uuid4().hex[:8]}"
    # every id is the same: both creates pick it, whatever the interleaving (the audit
    # event of the winner takes it too, in another table)
    monkeypatch.setattr(app.state.clock, "ids", lambda: fixed)
    before = await row_counts(app)
    statuses = await asyncio.gather(
        *(client.post("/Patient", json=patient(), headers={**ops, **FHIR_JSON}) for _ in range(2))
    )
    monkeypatch.undo()
    assert sorted(r.status_code for r in statuses) == [201, 409]
    loser = next(r for r in statuses if r.status_code == 409)
    issue = assert_outcome(loser, 409, "CONFLICT")
    assert issue["code"] == "conflict"
    # exactly one resource, one version, one audit event (the loser left nothing)
    after = await row_counts(app)
    assert tuple(a - b for a, b in zip(after, before, strict=True)) == (1, 1, 1)


async def test_precondition_failed(client, auth, app):
    ops = await auth.operator()
    local = uuid.uuid4().hex
    p = await create(client, ops, with_local_id(patient(), local))
    await create(client, ops, with_local_id(patient(), local))  # a shared local number
    before = await row_counts(app)
    r = await client.put(
        f"/Patient/{p['id']}", json=p, headers={**ops, **FHIR_JSON, "If-Match": 'W/"5"'}
    )
    issue = assert_outcome(r, 412, "VERSION_CONFLICT")
    assert issue["code"] == "conflict"
    cond = {**ops, **FHIR_JSON, "If-None-Exist": f"identifier={LOCAL_ID}|{local}"}
    r = await client.post("/Patient", json=patient(), headers=cond)
    assert_outcome(r, 412, "AMBIGUOUS_MATCH")
    assert await row_counts(app) == before


# ---------------------------------------------------------------- 500


async def test_internal_error_is_an_outcome_without_details(client, auth, monkeypatch, caplog):
    ops = await auth.operator()
    p = await create(client, ops, patient())

    async def boom(*args, **kwargs):
        raise RuntimeError("secret: Camille Testeur has condition X")

    monkeypatch.setattr(service, "read", boom)
    with caplog.at_level(logging.DEBUG):
        r = await client.get(f"/Patient/{p['id']}", headers=ops)
    issue = assert_outcome(r, 500, "INTERNAL_ERROR")
    assert issue["code"] == "exception"
    assert "secret" not in r.text and "Traceback" not in r.text and "RuntimeError" not in r.text
    assert "secret" not in caplog.text and "Camille" not in caplog.text
    assert "RuntimeError" in caplog.text  # logged by type
    monkeypatch.undo()
    assert (await client.get(f"/Patient/{p['id']}", headers=ops)).status_code == 200


async def test_internal_error_inside_transaction_rolls_back(client, auth, app, monkeypatch):
    ops = await auth.operator()
    before = await row_counts(app)
    real_create = service.create
    calls = 0

    async def fail_second(*args, **kwargs):
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("boom")
        return await real_create(*args, **kwargs)

    monkeypatch.setattr(service, "create", fail_second)
    entries = [
        {"resource": patient(), "request": {"method": "POST", "url": "Patient"}} for _ in range(3)
    ]
    body = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    r = await client.post("/", json=body, headers={**ops, **FHIR_JSON})
    assert_outcome(r, 500, "INTERNAL_ERROR")
    assert calls == 2
    assert await row_counts(app) == before


# ---------------------------------------------------------------- /metadata


async def test_capability_statement_follows_registry(client):
    r = await client.get("/metadata")  # no token
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/fhir+json")
    cs = r.json()
    assert cs["resourceType"] == "CapabilityStatement"
    assert cs["fhirVersion"] == "4.0.1"
    assert cs["kind"] == "instance"
    rest = cs["rest"][0]
    assert {i["code"] for i in rest["interaction"]} >= {"transaction", "batch"}
    by_type = {res["type"]: res for res in rest["resource"]}
    assert set(by_type) == {*REGISTRY, "AuditEvent"}  # the access history: read, search
    assert {i["code"] for i in by_type["AuditEvent"]["interaction"]} == {"read", "search-type"}
    for name, rtype in REGISTRY.items():
        declared = by_type[name]
        assert {i["code"] for i in declared["interaction"]} == set(rtype.interactions), name
        params = {p["name"]: p["type"] for p in declared["searchParam"]}
        expected = {p.name: p.type for p in (*SPECIAL.values(), *rtype.params)}
        assert params == expected, name
        assert declared["updateCreate"] == rtype.update_create


async def test_unauthenticated_requests_are_refused_as_outcomes(client, unchanged):
    r = await client.get("/Patient")
    assert_outcome(r, 401)
    r = await client.post("/Patient", json=patient(), headers=FHIR_JSON)
    assert_outcome(r, 401)


async def test_binary_data_must_be_base64(client, auth):
    ops = await auth.operator()
    pid = (await create(client, ops, patient()))["id"]
    for data in ("not base64 at all!", 12345):
        body = {
            "resourceType": "Binary",
            "contentType": "text/plain",
            "securityContext": {"reference": f"Patient/{pid}"},
            "data": data,
        }
        r = await client.post("/Binary", json=body, headers={**ops, **FHIR_JSON})
        assert r.status_code == 400, r.text
        assert r.json()["issue"][0]["details"]["coding"][0]["code"] == "INVALID_RESOURCE"
