"""Limits: machine clients' rate (429 + Retry-After), Bundle size (413), request deadline."""

import asyncio

import pytest

from espace_api.api.limits import Deadline, RateLimiter
from tests.support.fhir import FHIR_JSON, INS_TEST, create, patient


@pytest.fixture
def tight(app):
    """Two requests at once, then one a second, for machine clients (restored after)."""
    saved = app.state.limiter
    app.state.limiter = RateLimiter(1.0, 2)
    yield
    app.state.limiter = saved


async def test_a_machine_past_its_rate_gets_429_with_retry_after(client, auth, tight):
    lgc = await auth.system("lgc-rate", "system/Patient.s")
    other = await auth.system("lgc-rate-other", "system/Patient.s")
    me = await auth.patient("nobody")
    query = {"identifier": f"{INS_TEST}|000000000000001"}
    answers = [
        (await client.get("/Patient", params=query, headers=lgc)).status_code for _ in range(3)
    ]
    assert answers == [200, 200, 429]
    r = await client.get("/Patient", params=query, headers=lgc)
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert r.json()["issue"][0]["details"]["coding"][0]["code"] == "RATE_LIMITED"
    # Another client has its own bucket; people are not limited here.
    assert (await client.get("/Patient", params=query, headers=other)).status_code == 200
    assert {(await client.get("/metadata", headers=me)).status_code for _ in range(5)} == {200}


async def test_a_bundle_past_the_entry_limit_is_413(client, auth, app):
    ops = await auth.operator()
    saved = app.state.settings
    app.state.settings = saved.model_copy(update={"max_bundle_entries": 2})
    try:
        entries = [{"resource": patient(), "request": {"method": "POST", "url": "Patient"}}] * 3
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
        r = await client.post("/", json=bundle, headers={**ops, **FHIR_JSON})
    finally:
        app.state.settings = saved
    assert r.status_code == 413, r.text
    assert r.json()["issue"][0]["details"]["coding"][0]["code"] == "TOO_MANY_ENTRIES"
    assert (await create(client, ops, patient()))["resourceType"] == "Patient"


async def test_a_request_past_its_deadline_is_stopped_with_503():
    async def slow(scope, receive, send):
        await asyncio.sleep(5)

    sent = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b""}

    scope = {"type": "http", "method": "GET", "path": "/x", "headers": []}
    await Deadline(slow, seconds=0.05)(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    assert start["status"] == 503
    assert (b"retry-after", b"1") in start["headers"]
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert b"REQUEST_TIMEOUT" in body


async def test_while_draining_new_requests_get_503_and_liveness_answers(client, auth, app):
    ops = await auth.operator()
    pid = (await create(client, ops, patient()))["id"]
    app.state.draining = True
    try:
        for path in (f"/Patient/{pid}", "/Patient", "/metadata", "/readyz"):
            r = await client.get(path, headers=ops)
            assert r.status_code == 503, path
            assert r.headers["retry-after"] == "1"
            assert r.json()["issue"][0]["details"]["coding"][0]["code"] == "DRAINING"
        assert (await client.get("/healthz")).status_code == 200
    finally:
        app.state.draining = False
    assert (await client.get(f"/Patient/{pid}", headers=ops)).status_code == 200


async def test_sigterm_drains_then_hands_over_to_the_server():
    import signal
    from types import SimpleNamespace

    from espace_api.api.limits import install_drain

    handed: list[int] = []
    saved = signal.signal(signal.SIGTERM, lambda sig, frame: handed.append(sig))
    try:
        state = SimpleNamespace(draining=False)
        install_drain(state, 0.05)
        signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)  # as the kernel would call it
        assert state.draining is True and handed == []
        await asyncio.sleep(0.15)
        assert handed == [signal.SIGTERM]  # the server's own handler, after the drain
    finally:
        signal.signal(signal.SIGTERM, saved)
