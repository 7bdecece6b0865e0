"""The agenda (issue 12): Appointments written by connected booking services or the patient,
searched by patient and date, cancelled ones kept with their status. Refusals first."""

from tests.support.auth import code_of
from tests.support.fhir import FHIR_JSON, create, ids, patient, search
from tests.support.profile import BOOKING_SCOPES, appointment, connected_service


async def space(client, auth, family: str = "Agenda") -> tuple[str, dict[str, str]]:
    pid = (await create(client, await auth.operator(), patient(family=family)))["id"]
    return pid, await auth.patient(pid)


async def post(client, headers, body):
    return await client.post("/Appointment", json=body, headers={**headers, **FHIR_JSON})


async def test_agenda_refusals(client, auth):
    pid, me = await space(client, auth)
    _, other = await space(client, auth, "Autre")
    booking = await auth.system("rdv-not-connected", BOOKING_SCOPES)
    r = await post(client, booking, appointment(pid))
    assert r.status_code == 403 and code_of(r) == "SERVICE_NOT_CONNECTED"
    r = await post(client, other, appointment(pid))
    assert r.status_code == 403 and code_of(r) == "OTHER_PATIENT"
    mine = await create(client, me, appointment(pid))
    assert (await client.get(f"/Appointment/{mine['id']}", headers=other)).status_code == 404
    assert (await search(client, other, "/Appointment", patient=pid))["total"] == 0
    # A booked appointment says when; every appointment names its patient.
    r = await post(client, me, appointment(pid, start=None))
    assert r.status_code == 422 and code_of(r) == "MISSING_METADATA"
    assert r.json()["issue"][0]["expression"] == ["Appointment.start"]
    nobody = appointment(pid)
    nobody["participant"] = nobody["participant"][1:]
    r = await post(client, await auth.operator(), nobody)
    assert r.status_code == 422 and code_of(r) == "MISSING_METADATA"
    # Cancelled, never deleted.
    r = await client.delete(f"/Appointment/{mine['id']}", headers=me)
    assert r.status_code == 405 and code_of(r) == "METHOD_NOT_ALLOWED"


async def test_a_booking_service_books_and_the_patient_cancels(client, auth):
    pid, me = await space(client, auth)
    await create(client, me, connected_service(pid, "rdv-connected"))
    booking = await auth.system("rdv-connected", BOOKING_SCOPES)
    booked = await create(client, booking, appointment(pid))
    own = await create(
        client, me, appointment(pid, start="2027-01-05T14:00:00Z", end="2027-01-05T14:30:00Z")
    )
    # The service sees its own bookings only.
    assert ids(await search(client, booking, "/Appointment", patient=pid)) == [booked["id"]]
    assert (await client.get(f"/Appointment/{own['id']}", headers=booking)).status_code == 404
    # The patient searches their agenda by date.
    found = await search(client, me, "/Appointment", patient=pid, date="ge2027-01-01")
    assert ids(found) == [own["id"]]
    found = await search(client, me, "/Appointment", patient=pid, _sort="date")
    assert ids(found) == [booked["id"], own["id"]]
    # The patient cancels the service's booking: it stays, with its status.
    cancelled = {**booked, "status": "cancelled", "cancelationReason": {"text": "empêchement"}}
    r = await client.put(
        f"/Appointment/{booked['id']}", json=cancelled, headers={**me, **FHIR_JSON}
    )
    assert r.status_code == 200, r.text
    r = await client.get(f"/Appointment/{booked['id']}", headers=booking)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    found = await search(client, me, "/Appointment", patient=pid, status="cancelled")
    assert ids(found) == [booked["id"]]
    assert (await search(client, me, "/Appointment", patient=pid))["total"] == 2
