"""Secure messaging (issue 11): only a conversation's participants see it, a blocked
professional cannot write, receipts and unread counts, attachments as documents' content."""

import base64
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from espace_api.db.schema import audit_events, message_participants, messages
from tests.support.auth import code_of
from tests.support.documents import pdf
from tests.support.fhir import (
    FHIR_JSON,
    PRO_SCOPES,
    create,
    created,
    grant_care,
    patient,
    practitioner_ref,
    privacy_consent,
    search,
)
from tests.support.messaging import (
    Hospital,
    hospital,
    message,
    post_pdf,
    thread_counts,
)

RECEIPT_URL = "https://espace-api.org/fhir/StructureDefinition/read-receipt"


@dataclass
class Conversation:
    """A hospital wrote to a patient; the patient answered with a PDF."""

    pid: str
    me: dict[str, str]
    hospital: Hospital
    first: dict[str, Any]
    reply: dict[str, Any]
    binary: str
    pdf: bytes


async def post(client: Any, headers: dict[str, str], body: dict[str, Any]) -> Any:
    return await client.post("/Communication", json=body, headers={**headers, **FHIR_JSON})


async def conversation(client: Any, auth: Any) -> Conversation:
    ops = await auth.operator()
    pid = (await create(client, ops, patient()))["id"]
    me = await auth.patient(pid)
    h = await hospital(auth)
    first = await create(
        client,
        h.software,
        message(
            pid,
            h.ref,
            [f"Patient/{pid}"],
            "Votre admission du 12 : merci de confirmer",
            sent="2020-01-01T00:00:00Z",
        ),
    )
    binary, data = await post_pdf(client, me, pid)
    reply = message(
        pid,
        f"Patient/{pid}",
        [h.ref],
        "Je confirme, voici mon ordonnance",
        partOf=[{"reference": f"Communication/{first['id']}"}],
    )
    reply["payload"].append(
        {"contentAttachment": {"contentType": "application/pdf", "url": f"Binary/{binary}"}}
    )
    answered = await create(client, me, reply)
    return Conversation(pid, me, h, first, answered, binary, data)


async def threads(client: Any, headers: dict[str, str], pid: str) -> Any:
    return await client.get("/Communication/$threads", params={"patient": pid}, headers=headers)


# ---------------------------------------------------------------- outsiders: 404 everywhere


async def outsiders(client: Any, auth: Any, c: Conversation) -> dict[str, dict[str, str]]:
    """Another patient, a professional with a care relationship but no part in the
    conversation, and a colleague at the hospital whom the patient blocked."""
    ops = await auth.operator()
    other_pid = (await create(client, ops, patient()))["id"]
    other_doctor = await auth.user("rpps-88001", scopes=PRO_SCOPES)
    await grant_care(client, other_doctor, c.pid, "88001")
    colleague = await auth.user(
        "rpps-88002", scopes=PRO_SCOPES, organization=f"finess:{c.hospital.finess}"
    )
    block = privacy_consent(c.pid, "block", actors=[practitioner_ref("88002")])
    await create(client, c.me, block)
    return {
        "other patient": await auth.patient(other_pid),
        "professional with care access": other_doctor,
        "blocked colleague": colleague,
    }


async def test_an_outsider_gets_404_on_every_path(client, auth):
    c = await conversation(client, auth)
    for who, headers in (await outsiders(client, auth, c)).items():
        for path in (
            f"/Communication/{c.first['id']}",
            f"/Communication/{c.reply['id']}",
            f"/Communication/{c.reply['id']}/_history/1",
            f"/Communication/{c.reply['id']}/_history",
            f"/Binary/{c.binary}",
        ):
            r = await client.get(path, headers=headers)
            assert r.status_code == 404, (who, path, r.status_code)
        r = await threads(client, headers, c.pid)
        assert r.status_code == 404, (who, "$threads")
        for params in (
            {"patient": c.pid},
            {"_id": c.reply["id"]},
            {"part-of": f"Communication/{c.first['id']}"},
        ):
            got = await search(client, headers, "/Communication", **params)
            assert got["total"] == 0 and "entry" not in got, (who, params)
        got = await search(
            client, headers, "/Patient", _id=c.pid, _revinclude="Communication:subject"
        )
        assert not [e for e in got.get("entry", []) if e["resource"]["resourceType"] != "Patient"]


async def test_the_hospital_colleague_sees_the_messages_of_their_organisation(client, auth):
    c = await conversation(client, auth)
    colleague = await auth.user(
        "rpps-88003", scopes=PRO_SCOPES, organization=f"finess:{c.hospital.finess}"
    )
    r = await client.get(f"/Communication/{c.reply['id']}", headers=colleague)
    assert r.status_code == 200, "addressed to the organisation: its professionals read it"


async def test_a_blocked_professional_or_organisation_cannot_write(client, auth):
    ops = await auth.operator()
    pid = (await create(client, ops, patient()))["id"]
    me = await auth.patient(pid)
    h = await hospital(auth)
    await create(client, me, privacy_consent(pid, "block", actors=[practitioner_ref(h.rpps)]))
    r = await post(
        client, h.doctor, message(pid, f"Practitioner/rpps-{h.rpps}", [f"Patient/{pid}"])
    )
    assert r.status_code == 422 and code_of(r) == "REFERENCE_NOT_FOUND", r.text
    # the organisation blocked: its software cannot post for it either
    org = {"reference": h.ref}
    await create(client, me, privacy_consent(pid, "block", actors=[org]))
    r = await post(client, h.software, message(pid, h.ref, [f"Patient/{pid}"]))
    assert r.status_code == 422 and code_of(r) == "REFERENCE_NOT_FOUND", r.text
    got = await search(client, me, "/Communication", patient=pid)
    assert got["total"] == 0, "nothing was written"


async def test_write_refusals(client, auth):
    c = await conversation(client, auth)
    pid, h = c.pid, c.hospital
    other = (await create(client, await auth.operator(), patient()))["id"]
    cases = [
        # another patient writes into this space
        (await auth.patient(other), message(pid, f"Patient/{pid}", [h.ref]), 403, "OTHER_PATIENT"),
        # a sender that is not the caller
        (c.me, message(pid, h.ref, [f"Patient/{pid}"]), 403, "SENDER_NOT_CALLER"),
        (
            h.software,
            message(pid, "Organization/finess-999", [f"Patient/{pid}"]),
            403,
            "SENDER_NOT_CALLER",
        ),
        # the patient must take part; participants are people and organisations
        (h.doctor, message(pid, h.ref, ["Practitioner/rpps-1"]), 422, "PATIENT_NOT_PARTICIPANT"),
        (c.me, message(pid, f"Patient/{pid}", ["RelatedPerson/x"]), 422, "INVALID_PARTICIPANT"),
        (c.me, message(pid, f"Patient/{pid}", []), 422, "MISSING_METADATA"),
        (c.me, message(pid, f"Patient/{pid}", [f"Patient/{other}"]), 403, "OTHER_PATIENT"),
        # a machine without the messaging scope
        (
            await auth.system("lgc-nomsg"),
            message(pid, h.ref, [f"Patient/{pid}"]),
            403,
            "INSUFFICIENT_SCOPE",
        ),
    ]
    for headers, body, status, code in cases:
        r = await post(client, headers, body)
        assert (r.status_code, code_of(r)) == (status, code), (code, r.text)
    # a reply into a thread the caller cannot see
    outsider = await auth.user("rpps-88009", scopes="user/*.rs user/Communication.c")
    r = await post(
        client,
        outsider,
        message(
            pid,
            "Practitioner/rpps-88009",
            [f"Patient/{pid}"],
            partOf=[{"reference": f"Communication/{c.first['id']}"}],
        ),
    )
    assert r.status_code == 422 and code_of(r) == "REFERENCE_NOT_FOUND", r.text
    # a sent message is not changed
    changed = {**c.reply, "payload": [{"contentString": "autre chose"}]}
    r = await client.put(
        f"/Communication/{c.reply['id']}", json=changed, headers={**c.me, **FHIR_JSON}
    )
    assert r.status_code == 403 and code_of(r) == "MESSAGE_IMMUTABLE"


async def test_attachment_refusals(client, auth):
    c = await conversation(client, auth)
    pid, h = c.pid, c.hospital
    other = (await create(client, await auth.operator(), patient()))["id"]
    theirs, _ = await post_pdf(client, await auth.patient(other), other)

    def with_attachment(att: dict[str, Any]) -> dict[str, Any]:
        body = message(pid, f"Patient/{pid}", [h.ref])
        body["payload"].append({"contentAttachment": att})
        return body

    cases = [
        (
            {"contentType": "application/pdf", "data": "JVBERi0xLjc="},
            422,
            "ATTACHMENT_DATA_NOT_SUPPORTED",
        ),
        ({"contentType": "application/pdf", "url": f"Binary/{theirs}"}, 422, "REFERENCE_NOT_FOUND"),
        ({"contentType": "image/png", "url": f"Binary/{c.binary}"}, 422, "CONTENT_TYPE_MISMATCH"),
        (
            {"contentType": "application/x-msdownload", "url": f"Binary/{c.binary}"},
            422,
            "CONTENT_TYPE_NOT_ALLOWED",
        ),
        (
            {"contentType": "application/pdf", "url": f"Binary/{c.binary}", "size": 3},
            422,
            "SIZE_MISMATCH",
        ),
        (
            {"contentType": "application/pdf", "url": "https://elsewhere.example/x.pdf"},
            422,
            "ATTACHMENT_URL_NOT_SUPPORTED",
        ),
    ]
    for att, status, code in cases:
        r = await post(client, c.me, with_attachment(att))
        assert (r.status_code, code_of(r)) == (status, code), (code, r.text)


# ---------------------------------------------------------------- the conversation


async def test_hospital_writes_patient_replies_with_a_pdf_professional_reads_it(client, auth, app):
    c = await conversation(client, auth)
    pid, h = c.pid, c.hospital
    assert c.first["sent"] != "2020-01-01T00:00:00Z", "sent is the server's"
    att = c.reply["payload"][1]["contentAttachment"]
    assert att["size"] == len(c.pdf) and att["hash"], "size and hash computed as for documents"

    # the patient's view: one thread, the reply is the latest; nothing addressed to the
    # patient is unread now (the reply was theirs, the first message...)
    r = await threads(client, c.me, pid)
    assert r.status_code == 200, r.text
    assert thread_counts(r.json()) == [(c.first["id"], c.reply["id"], 2, 1)]

    # the doctor at the hospital: the reply is addressed to their organisation, unread
    r = await threads(client, h.doctor, pid)
    assert r.status_code == 200, r.text
    assert thread_counts(r.json()) == [(c.first["id"], c.reply["id"], 2, 1)]
    r = await client.get(f"/Communication/{c.reply['id']}", headers=h.doctor)
    assert r.status_code == 200, r.text
    read = r.json()
    assert read["received"] and [e["url"] for e in read["extension"]] == [RECEIPT_URL]
    receipt = {e["url"]: e for e in read["extension"][0]["extension"]}
    assert receipt["recipient"]["valueReference"] == {"reference": h.ref}
    r = await client.get(f"/Binary/{c.binary}", headers=h.doctor)
    assert r.status_code == 200 and r.content == c.pdf
    assert thread_counts((await threads(client, h.doctor, pid)).json())[0][3] == 0

    # the hospital's software deposits, it does not browse: its own message only
    assert (
        await client.get(f"/Communication/{c.first['id']}", headers=h.software)
    ).status_code == 200
    assert (
        await client.get(f"/Communication/{c.reply['id']}", headers=h.software)
    ).status_code == 404
    assert (await client.get(f"/Binary/{c.binary}", headers=h.software)).status_code == 404

    # the doctor answers in the thread; the patient's unread count moves 1 -> 2 -> 0
    third = await create(
        client,
        h.doctor,
        message(
            pid,
            f"Practitioner/rpps-{h.rpps}",
            [f"Patient/{pid}"],
            "Bien reçu",
            inResponseTo=[{"reference": f"Communication/{c.reply['id']}"}],
        ),
    )
    assert thread_counts((await threads(client, c.me, pid)).json()) == [
        (c.first["id"], third["id"], 3, 2)
    ]
    got = await search(client, c.me, "/Communication", patient=pid, _sort="sent")
    assert [e["resource"]["id"] for e in got["entry"]] == [
        c.first["id"],
        c.reply["id"],
        third["id"],
    ]
    assert thread_counts((await threads(client, c.me, pid)).json())[0][3] == 0
    # the sender sees the patient's receipt
    r = await client.get(f"/Communication/{third['id']}", headers=h.doctor)
    assert r.json()["received"], "read by the patient"
    # the patient's reading of the first message did not count for the hospital's doctor
    assert thread_counts((await threads(client, h.doctor, pid)).json())[0][3] == 0

    # every read is in the patient's access history
    async with app.state.engine.connect() as conn:
        rows = await conn.execute(
            select(
                audit_events.c.subtype, audit_events.c.resource_type, audit_events.c.agent_sub
            ).where(audit_events.c.patient_id == pid)
        )
        seen = {tuple(m) for m in rows}
    doctor_sub = f"rpps-{h.rpps}"
    assert ("read", "Communication", doctor_sub) in seen
    assert ("read", "Binary", doctor_sub) in seen
    assert ("search", "Communication", doctor_sub) in seen, "$threads is audited"


async def test_a_new_thread_and_threads_ordering(client, auth):
    c = await conversation(client, auth)
    pid, h = c.pid, c.hospital
    other = await create(
        client, c.me, message(pid, f"Patient/{pid}", [f"Practitioner/rpps-{h.rpps}"], "Question")
    )
    r = await threads(client, c.me, pid)
    assert [t[0] for t in thread_counts(r.json())] == [other["id"], c.first["id"]]
    assert r.json()["total"] == 2
    r = await client.get(
        "/Communication/$threads", params={"patient": pid, "_count": 1}, headers=c.me
    )
    assert len(r.json()["entry"]) == 1 and r.json()["total"] == 2
    assert any(link["relation"] == "next" for link in r.json()["link"])
    # a patient's own space without messages: an empty list
    empty = (await create(client, await auth.operator(), patient()))["id"]
    r = await threads(client, await auth.patient(empty), empty)
    assert r.status_code == 200 and r.json()["total"] == 0
    r = await client.get("/Communication/$threads", headers=await auth.patient(empty))
    assert r.status_code == 200, "a patient's own space by default"
    r = await client.get("/Communication/$threads", headers=h.doctor)
    assert r.status_code == 400 and code_of(r) == "INVALID_SEARCH"


async def test_an_objection_purges_the_messages_with_the_rest(client, auth, app):
    c = await conversation(client, auth)  # the space is still `notified`
    r = await client.post(f"/Patient/{c.pid}/$oppose", headers=c.me)
    assert r.status_code == 200, r.text
    assert (await threads(client, c.hospital.doctor, c.pid)).status_code == 404
    async with app.state.engine.connect() as conn:
        for table in (messages, message_participants):
            rows = await conn.execute(select(table).where(table.c.patient_id == c.pid))
            assert rows.first() is None, table.name


async def test_the_patient_asks_why_someone_can_read_a_message(client, auth):
    c = await conversation(client, auth)

    async def explain(**params: str) -> dict[str, Any]:
        r = await client.get(
            f"/Communication/{c.reply['id']}/$explain", params=params, headers=c.me
        )
        assert r.status_code == 200, r.text
        out = {p["name"]: p for p in r.json()["parameter"] if p["name"] == "visible"}
        rules = [
            {q["name"]: next(v for k, v in q.items() if k.startswith("value")) for q in p["part"]}
            for p in r.json()["parameter"]
            if p["name"] == "rule"
        ]
        return {"visible": out["visible"]["valueBoolean"], "rules": rules}

    inside = await explain(practitioner="rpps-42", organization=c.hospital.finess)
    assert inside["visible"] is True
    outside = await explain(practitioner="rpps-42", organization="111111111")
    assert outside["visible"] is False
    part = next(r for r in outside["rules"] if r["code"] == "message-participant")
    assert part["holds"] is False


async def test_a_reply_and_its_attachment_in_one_transaction(client, auth):
    c = await conversation(client, auth)
    data = pdf()
    binary_url = "urn:uuid:0d7c6e62-0d4c-4a40-8f65-0c3e3c1b5a01"
    message_url = "urn:uuid:1f0e4a3c-8d7b-4f3e-9a2b-6c5d4e3f2a1b"
    reply = message(
        c.pid,
        f"Patient/{c.pid}",
        [c.hospital.ref],
        "Le compte rendu",
        partOf=[{"reference": f"Communication/{c.first['id']}"}],
    )
    reply["payload"].append(
        {"contentAttachment": {"contentType": "application/pdf", "url": binary_url}}
    )
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": binary_url,
                "resource": {
                    "resourceType": "Binary",
                    "contentType": "application/pdf",
                    "securityContext": {"reference": f"Patient/{c.pid}"},
                    "data": base64.b64encode(data).decode(),
                },
                "request": {"method": "POST", "url": "Binary"},
            },
            {
                "fullUrl": message_url,
                "resource": reply,
                "request": {"method": "POST", "url": "Communication"},
            },
        ],
    }
    r = await client.post("/", json=bundle, headers={**c.me, **FHIR_JSON})
    assert r.status_code == 200, r.text
    sent = created(r, "Communication")
    url = sent["payload"][1]["contentAttachment"]["url"]
    assert url.startswith("Binary/") and sent["payload"][1]["contentAttachment"]["size"] == len(
        data
    )
    got = await client.get(f"/{url}", headers=c.hospital.doctor)
    assert got.status_code == 200 and got.content == data
