"""`$daily-summary` reads the values alone when the caller's view depends on the patient only
(the policy's predicate decided once), and joins each value to its Observation otherwise:
the same answers as a search would give, whoever asks. Through HTTP."""

from datetime import UTC, datetime

from espace_api.access import policy
from espace_api.auth.identity import Identity
from espace_api.db.schema import resources
from espace_api.fhir.registry import REGISTRY
from espace_api.storage.observation_repository import patient_wide
from tests.support.fhir import PRO_SCOPES, create, grant_care, search
from tests.support.profile import MASKED, measure
from tests.test_profile_ingest import push, readings
from tests.test_profile_measurements import connected, space

GLUCOSE = "2345-7"
NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)


async def summary(client, headers, pid) -> dict[str, int]:
    params = {"patient": pid, "code": GLUCOSE, "date": ["ge2026-11-01", "lt2026-12-01"]}
    r = await client.get("/Observation/$daily-summary", params=params, headers=headers)
    assert r.status_code == 200, r.text
    out = {}
    for p in r.json().get("parameter", []):
        parts = {x["name"]: x for x in p["part"]}
        out[parts["day"]["valueDate"]] = parts["count"]["valueInteger"]
    return out


async def test_each_caller_summarises_what_they_may_see(client, auth):
    pid, me = await space(client, auth, "Resume")
    service = await connected(client, auth, pid, me, "cgm-summary-2")
    await push(client, service, readings(pid, 5, day="2026-11-10"))
    # The patient's own readings, one of them hidden from professionals.
    await create(client, me, measure(pid, GLUCOSE, 99, "mg/dL", at="2026-11-10T09:00:00Z"))
    await create(
        client,
        me,
        measure(pid, GLUCOSE, 98, "mg/dL", at="2026-11-10T10:00:00Z", meta={"security": [MASKED]}),
    )
    doctor = await auth.user("rpps-12277", scopes=PRO_SCOPES)
    await grant_care(client, doctor, pid, "12277")
    stranger = await auth.patient("not-this-space")
    operator = await auth.operator()
    expected = {
        "patient": (me, 7),
        "operator": (operator, 7),
        "doctor (masked one left out)": (doctor, 6),
        "service (its own only)": (service, 5),
        "another patient": (stranger, 0),
    }
    for who, (headers, count) in expected.items():
        got = await summary(client, headers, pid)
        assert got == ({"2026-11-10": count} if count else {}), who
        found = await search(
            client, headers, "/Observation", patient=pid, code=GLUCOSE, _summary="count"
        )
        assert found["total"] == count, who  # the same as a search


def test_the_predicate_is_decided_once_only_when_it_is_about_the_patient():
    rtype = REGISTRY["Observation"]
    callers = {
        "patient": Identity(kind="patient", subject="p-1", patient_id="p-1"),
        "operator": Identity(kind="operator", subject="ops"),
        "software": Identity(kind="system", subject="cgm", client_id="cgm"),
        "doctor": Identity(kind="user", subject="rpps-1", practitioner="rpps-1"),
    }
    wide = {
        who: patient_wide(policy.visible(identity, rtype, resources, NOW), "p-1") is not None
        for who, identity in callers.items()
    }
    assert wide == {"patient": True, "operator": True, "software": False, "doctor": False}
    # Decided once: nothing of the row is left in it.
    decided = patient_wide(policy.visible(callers["patient"], rtype, resources, NOW), "p-1")
    assert decided is not None
    assert "resources.id" not in str(decided.compile())
