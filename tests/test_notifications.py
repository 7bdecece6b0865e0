"""Notifications (issue 11): a patient's rest-hook Subscriptions are told "something new" -
an empty POST, no health data - about new messages and documents, by the worker, against a
real HTTP receiver; a failing receiver is retried with backoff, then the Subscription is in
error. The worker runs on demand with its own clock: no test sleeps."""

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from espace_api.access import vocabulary as v
from espace_api.clock import Clock, utc_now
from espace_api.config import Settings
from espace_api.fhir.errors import FhirError
from espace_api.fhir.registry import SUBSCRIPTION_PATIENT_URL
from espace_api.messaging import subscriptions
from espace_api.messaging.worker import NotificationWorker
from tests.support.auth import code_of
from tests.support.fhir import FHIR_JSON, PRO_SCOPES, create, document, grant_care, patient
from tests.support.messaging import Receiver, hospital, message
from tests.test_core_logging import sample


def subscription(pid: str, endpoint: str, topic: str = "Communication", **channel: Any) -> dict:
    return {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "Nouveaux messages",
        "criteria": f"{topic}?patient={pid}",
        "channel": {
            "type": "rest-hook",
            "endpoint": endpoint,
            "header": ["Authorization: Bearer app-token-123"],
            **channel,
        },
        "extension": [
            {"url": SUBSCRIPTION_PATIENT_URL, "valueReference": {"reference": f"Patient/{pid}"}}
        ],
    }


class Shifted:
    """The worker's clock: real time plus a shift the test moves forward."""

    def __init__(self) -> None:
        self.shift = timedelta(0)

    def now(self) -> Any:
        return utc_now() + self.shift


@pytest.fixture
async def worker(app) -> AsyncIterator[tuple[NotificationWorker, Shifted]]:
    shifted = Shifted()
    settings = app.state.settings.model_copy(
        update={"notification_max_attempts": 3, "notification_backoff_seconds": 60}
    )
    client = httpx.AsyncClient(timeout=5)
    w = NotificationWorker(
        app.state.engine, settings, Clock(now=shifted.now), app.state.behaviours, client
    )
    yield w, shifted
    await client.aclose()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rx = await Receiver().start()
    yield rx
    await rx.stop()


async def space(client: Any, auth: Any) -> tuple[str, dict[str, str]]:
    pid = (await create(client, await auth.operator(), patient()))["id"]
    return pid, await auth.patient(pid)


async def test_subscription_refusals(client, auth):
    pid, me = await space(client, auth)
    good = subscription(pid, "http://127.0.0.1:9/hook")
    cases = [
        ({**good, "criteria": f"Observation?patient={pid}"}, 422, "UNSUPPORTED_CRITERIA"),
        ({**good, "criteria": "Communication?patient=someone-else"}, 422, "UNSUPPORTED_CRITERIA"),
        ({**good, "criteria": "Communication"}, 422, "UNSUPPORTED_CRITERIA"),
        (
            subscription(pid, "http://127.0.0.1:9/hook", type="websocket"),
            422,
            "UNSUPPORTED_CHANNEL",
        ),
        (subscription(pid, "ftp://127.0.0.1/hook"), 422, "INVALID_ENDPOINT"),
        (
            subscription(pid, "http://127.0.0.1:9/hook", payload="application/fhir+json"),
            422,
            "PAYLOAD_NOT_ALLOWED",
        ),
        ({**good, "status": "error"}, 422, "INVALID_STATUS"),
    ]
    for body, status, code in cases:
        r = await client.post("/Subscription", json=body, headers={**me, **FHIR_JSON})
        assert (r.status_code, code_of(r)) == (status, code), (code, r.text)
    # another patient's space; a professional (even with a care relationship)
    other, _ = await space(client, auth)
    r = await client.post(
        "/Subscription",
        json=subscription(other, "http://127.0.0.1:9/hook"),
        headers={**me, **FHIR_JSON},
    )
    assert r.status_code == 403 and code_of(r) == "OTHER_PATIENT"
    doctor = await auth.user("rpps-77001", scopes=PRO_SCOPES + " user/Subscription.c")
    await grant_care(client, doctor, pid, "77001")
    r = await client.post("/Subscription", json=good, headers={**doctor, **FHIR_JSON})
    assert r.status_code == 403 and code_of(r) == "SUBSCRIPTION_PATIENT_ONLY"
    mine = await create(client, me, good)
    assert mine["status"] == "active"
    r = await client.get(f"/Subscription/{mine['id']}", headers=doctor)
    assert r.status_code == 404, "a patient's notification settings are theirs only"
    # http endpoints only where the settings allow them (tests do)
    with pytest.raises(FhirError) as refused:
        subscriptions.check(dict(good), pid, Settings())
    assert refused.value.code == "INVALID_ENDPOINT"


async def test_new_messages_and_documents_are_notified_without_content(
    client, auth, worker, receiver
):
    w, _ = worker
    pid, me = await space(client, auth)
    documents_rx = await Receiver().start()
    try:
        await create(client, me, subscription(pid, receiver.url))
        await create(client, me, subscription(pid, documents_rx.url, "DocumentReference"))
        h = await hospital(auth)
        await create(client, h.software, message(pid, h.ref, [f"Patient/{pid}"], "Admission"))
        await w.run_once()
        assert len(receiver.requests) == 1 and documents_rx.requests == []
        (got,) = receiver.requests
        assert got["method"] == "POST" and got["path"] == "/hook"
        assert got["body"] == b"", "nothing but 'something new': no health data"
        assert got["headers"]["authorization"] == "Bearer app-token-123"
        assert pid not in str(got["headers"])

        # two messages before the worker runs: one notification
        for text in ("Rappel", "Rappel 2"):
            await create(client, h.software, message(pid, h.ref, [f"Patient/{pid}"], text))
        await w.run_once()
        assert len(receiver.requests) == 2
        # the patient's own message tells the patient nothing
        await create(client, me, message(pid, f"Patient/{pid}", [h.ref], "Merci"))
        await w.run_once()
        assert len(receiver.requests) == 2

        # a deposited document; not one still hidden from the patient
        vendor = await auth.system("lgc-notify")
        await create(client, vendor, document(pid))
        hidden = document(
            pid,
            securityLabel=[
                {"coding": [{"system": v.VISIBILITY_SYSTEM, "code": v.INVISIBLE_PATIENT}]}
            ],
        )
        await create(client, vendor, hidden)
        await w.run_once()
        assert len(documents_rx.requests) == 1 and documents_rx.requests[0]["body"] == b""
        assert len(receiver.requests) == 2
    finally:
        await documents_rx.stop()


async def test_an_event_during_a_delivery_is_notified_after_it(client, auth, worker, receiver):
    w, _ = worker
    pid, me = await space(client, auth)
    await create(client, me, subscription(pid, receiver.url))
    h = await hospital(auth)
    await create(client, h.software, message(pid, h.ref, [f"Patient/{pid}"]))

    async def new_message() -> None:
        receiver.during = None
        await create(client, h.software, message(pid, h.ref, [f"Patient/{pid}"], "Encore"))

    receiver.during = new_message  # arrives while the first notification is on its way
    await w.run_once()
    assert len(receiver.requests) == 1
    await w.run_once()
    assert len(receiver.requests) == 2, "the message sent meanwhile is not lost"
    await w.run_once()
    assert len(receiver.requests) == 2


async def test_a_failing_receiver_is_retried_then_the_subscription_is_in_error(
    client, auth, worker, receiver
):
    w, clock = worker
    receiver.status = 500
    before = (await client.get("/metrics")).text
    pid, me = await space(client, auth)
    sub = await create(client, me, subscription(pid, receiver.url))
    h = await hospital(auth)
    await create(client, h.software, message(pid, h.ref, [f"Patient/{pid}"]))

    await w.run_once()
    assert len(receiver.requests) == 1
    await w.run_once()
    assert len(receiver.requests) == 1, "not again before the backoff"
    clock.shift += timedelta(seconds=59)
    await w.run_once()
    assert len(receiver.requests) == 1
    clock.shift += timedelta(seconds=1)  # 60 s after the first attempt
    await w.run_once()
    assert len(receiver.requests) == 2
    clock.shift += timedelta(seconds=119)
    await w.run_once()
    assert len(receiver.requests) == 2, "the wait doubles: 120 s"
    clock.shift += timedelta(seconds=1)
    await w.run_once()
    assert len(receiver.requests) == 3, "third and last attempt"

    r = await client.get(f"/Subscription/{sub['id']}", headers=me)
    assert r.json()["status"] == "error"
    assert "3 attempts" in r.json()["error"] and "HTTP 500" in r.json()["error"]
    after = (await client.get("/metrics")).text
    for outcome, more in (("retry", 2), ("failed", 1)):
        name, labels = "espace_notifications_total", {"outcome": outcome}
        assert sample(after, name, **labels) - sample(before, name, **labels) >= more
    # in error: nothing more is queued or sent
    await create(client, h.software, message(pid, h.ref, [f"Patient/{pid}"]))
    clock.shift += timedelta(hours=1)
    await w.run_once()
    assert len(receiver.requests) == 3

    # the patient's app asks again (status requested): notified again
    receiver.status = 200
    again = {**r.json(), "status": "requested"}
    r = await client.put(f"/Subscription/{sub['id']}", json=again, headers={**me, **FHIR_JSON})
    assert r.status_code == 200 and r.json()["status"] == "active" and "error" not in r.json()
    await create(client, h.software, message(pid, h.ref, [f"Patient/{pid}"]))
    await w.run_once()
    assert len(receiver.requests) == 4


async def test_an_unreachable_endpoint_is_an_error_too(client, auth, worker):
    w, clock = worker
    pid, me = await space(client, auth)
    rx = await Receiver().start()
    url = rx.url
    await rx.stop()  # nobody listens there any more
    sub = await create(client, me, subscription(pid, url))
    h = await hospital(auth)
    await create(client, h.software, message(pid, h.ref, [f"Patient/{pid}"]))
    for _ in range(3):
        await w.run_once()
        clock.shift += timedelta(minutes=10)
    r = await client.get(f"/Subscription/{sub['id']}", headers=me)
    assert r.json()["status"] == "error" and "ConnectError" in r.json()["error"]
