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
