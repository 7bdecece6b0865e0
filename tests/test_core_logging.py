"""No personal health data in logs: identifiers in URLs never reach a log record."""

import logging

from tests.support.fhir import INS_TEST, create, patient


def server_log(caplog) -> str:
    """What the server logged (the test's own httpx client logs URLs; it is not the server)."""
    return "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("httpx"))


async def test_access_log_names_routes_not_urls(client, auth, caplog):
    ops = await auth.operator()
    body = patient(family="Journalisee")
    ins = body["identifier"][0]["value"]
    created = await create(client, ops, body)
    with caplog.at_level(logging.INFO):
        await client.get(f"/Patient?identifier={INS_TEST}|{ins}", headers=ops)
        await client.get(f"/Patient/{created['id']}", headers=ops)
    text = server_log(caplog)
    assert "GET /Patient 200" in text
    assert "GET /Patient/{id} 200" in text
    assert ins not in text and "Journalisee" not in text and created["id"] not in text


async def test_unhandled_error_logs_no_message(client, auth, caplog, monkeypatch):
    from espace_api.resources import service

    async def boom(*args, **kwargs):
        raise RuntimeError("secret diagnosis: Journalisee")

    monkeypatch.setattr(service, "read", boom)
    ops = await auth.operator()
    # The shared client raises app exceptions: passing also proves none reaches the server,
    # whose error log would print the message.
    with caplog.at_level(logging.INFO):
        r = await client.get("/Patient/anything", headers=ops)
    assert r.status_code == 500
    assert r.json()["resourceType"] == "OperationOutcome"
    assert "secret" not in r.text and "Traceback" not in r.text
    assert "secret diagnosis" not in server_log(caplog)


async def test_every_response_carries_a_request_id(client, auth, caplog):
    ops = await auth.operator()
    created = await create(client, ops, patient(family="Traceable"))
    with caplog.at_level(logging.INFO):
        mine = await client.get(
            f"/Patient/{created['id']}", headers={**ops, "X-Request-ID": "lgc-42.retry:1"}
        )
        bad = await client.get("/metadata", headers={"X-Request-ID": "not a token; " * 20})
        new = await client.get("/metadata")
    assert mine.headers["x-request-id"] == "lgc-42.retry:1"
    assert (
        bad.headers["x-request-id"] != "not a token; " * 20
        and len(bad.headers["x-request-id"]) == 32
    )
    assert (
        len(new.headers["x-request-id"]) == 32
        and new.headers["x-request-id"] != bad.headers["x-request-id"]
    )


def test_json_log_lines_name_the_request():
    from espace_api.api.access_log import REQUEST_ID
    from espace_api.logs import JsonFormatter

    record = logging.LogRecord(
        "espace_api.access", logging.INFO, __file__, 1, "GET %s", ("/x",), None
    )
    token = REQUEST_ID.set("rid-1")
    try:
        line = JsonFormatter().format(record)
    finally:
        REQUEST_ID.reset(token)
    import json

    assert json.loads(line) | {"ts": None} == {
        "ts": None,
        "level": "INFO",
        "logger": "espace_api.access",
        "message": "GET /x",
        "request_id": "rid-1",
    }


async def test_request_metrics_name_routes_never_identifiers(client, auth):
    ops = await auth.operator()
    body = patient(family="Mesuree")
    created = await create(client, ops, body)
    me = await auth.patient(created["id"])
    assert (await client.get(f"/Patient/{created['id']}", headers=me)).status_code == 200
    text = (await client.get("/metrics")).text
    lines = [line for line in text.splitlines() if line.startswith("espace_http_request")]
    assert any('route="/Patient/{id}"' in line and 'status="200"' in line for line in lines)
    assert created["id"] not in text and body["identifier"][0]["value"] not in text


def sample(text: str, name: str, **labels: str) -> float:
    """One sample's value from the Prometheus text (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(f"{name}{{{want}}} ") or (not labels and line.startswith(name + " ")):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_deposit_metrics_and_no_health_data_in_any_log_line(client, auth, caplog):
    from tests.support.documents import pdf
    from tests.test_documents_deposit import iti65, lgc, send

    ops = await auth.operator()
    body = patient(family="Confidentielle", given="Dominique")
    pid = (await create(client, ops, body))["id"]
    vendor = await lgc(auth)
    before = (await client.get("/metrics")).text
    data = pdf()
    with caplog.at_level(logging.DEBUG):
        bundle, doc = iti65(pid, data)
        assert (await send(client, vendor, bundle)).status_code == 200
        refused, _ = iti65(pid, pdf(), type=None)
        assert (await send(client, vendor, refused)).status_code == 422
        me = await auth.patient(pid)
        found = await client.get("/DocumentReference", params={"patient": pid}, headers=me)
        url = found.json()["entry"][0]["resource"]["content"][0]["attachment"]["url"]
        assert (await client.get(f"/{url}", headers=me)).content == data
    after = (await client.get("/metrics")).text
    accepted = ("espace_deposits_total", {"outcome": "accepted", "reason": ""})
    missing = ("espace_deposits_total", {"outcome": "refused", "reason": "MISSING_METADATA"})
    for name, labels in (accepted, missing):
        assert sample(after, name, **labels) == sample(before, name, **labels) + 1
    assert "espace_db_pool_checked_out" in after
    logged = "\n".join(
        f"{r.getMessage()} {r.args!r}" for r in caplog.records if not r.name.startswith("httpx")
    )
    secrets = [body["identifier"][0]["value"], "Confidentielle", "Dominique", body["birthDate"]]
    secrets += [doc["masterIdentifier"]["value"], data[20:60].decode("latin-1"), pid]
    assert not [s for s in secrets if s in logged]
