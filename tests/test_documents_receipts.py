"""Deposit receipts: `GET /DocumentReference/$deposit-status?masterIdentifier=...`."""

from sqlalchemy import select

from espace_api.db.schema import audit_events
from tests.support.documents import pdf, sha1_b64
from tests.support.fhir import created
from tests.test_documents_deposit import iti65, lgc, new_patient, send

STATUS = "/DocumentReference/$deposit-status"


def key(doc: dict) -> str:
    return f"{doc['masterIdentifier']['system']}|{doc['masterIdentifier']['value']}"


def receipts(body: dict) -> dict[str, dict]:
    """masterIdentifier value -> {part name: value} of each `deposit` parameter."""
    out = {}
    assert body["resourceType"] == "Parameters"
    for param in body["parameter"]:
        assert param["name"] == "deposit"
        parts = {}
        for part in param["part"]:
            value = next((v for k, v in part.items() if k.startswith("value")), part.get("part"))
            parts.setdefault(part["name"], []).append(value)
        out[parts["masterIdentifier"][0]["value"]] = parts
    return out


async def test_a_vendor_reconciles_what_it_sent(client, auth, app):
    vendor = await lgc(auth)
    pid = await new_patient(client, auth)
    data = pdf()
    bundle, doc = iti65(pid, data)
    r = await send(client, vendor, bundle)
    assert r.status_code == 200, r.text
    doc_id = created(r)["id"]
    second, doc2 = iti65(pid, pdf())
    assert (await send(client, vendor, second)).status_code == 200
    unknown = "urn:ietf:rfc:3986|urn:oid:1.2.250.999.1"
    r = await client.get(
        STATUS,
        params=[("masterIdentifier", f"{key(doc)},{unknown}"), ("masterIdentifier", key(doc2))],
        headers=vendor,
    )
    assert r.status_code == 200, r.text
    got = receipts(r.json())
    assert list(got) == [
        doc["masterIdentifier"]["value"],
        "urn:oid:1.2.250.999.1",
        doc2["masterIdentifier"]["value"],
    ]
    first = got[doc["masterIdentifier"]["value"]]
    assert first["stored"] == [True]
    assert first["document"] == [{"reference": f"DocumentReference/{doc_id}"}]
    assert first["versionId"] == ["1"] and first["status"] == ["current"]
    attachment = {
        p["name"]: next(v for k, v in p.items() if k.startswith("value"))
        for p in first["attachment"][0]
    }
    assert attachment == {"size": len(data), "hash": sha1_b64(data)}
    assert first["deposited"] == first["lastUpdated"]
    assert got["urn:oid:1.2.250.999.1"] == {
        "masterIdentifier": [{"system": "urn:ietf:rfc:3986", "value": "urn:oid:1.2.250.999.1"}],
        "stored": [False],
    }
    # The receipt is a read of the patient's data: audited like a search.
    async with app.state.engine.connect() as conn:
        rows = (
            await conn.execute(
                select(audit_events.c.client_id, audit_events.c.query).where(
                    audit_events.c.patient_id == pid, audit_events.c.subtype == "search"
                )
            )
        ).all()
    assert any(c == "lgc-iti65" and q.startswith("$deposit-status") for c, q in rows)


async def test_receipts_never_reveal_anothers_deposits(client, auth):
    vendor = await lgc(auth)
    pid = await new_patient(client, auth)
    bundle, doc = iti65(pid, pdf())
    assert (await send(client, vendor, bundle)).status_code == 200
    other = await auth.system("lgc-other", "system/DocumentReference.crs")
    stranger = await auth.patient(await new_patient(client, auth))
    for headers in (other, stranger):
        r = await client.get(STATUS, params={"masterIdentifier": key(doc)}, headers=headers)
        assert r.status_code == 200, r.text
        assert receipts(r.json())[doc["masterIdentifier"]["value"]]["stored"] == [False]
    own = await auth.patient(pid)
    r = await client.get(STATUS, params={"masterIdentifier": key(doc)}, headers=own)
    assert receipts(r.json())[doc["masterIdentifier"]["value"]]["stored"] == [True]


async def test_receipt_requests_that_are_wrong(client, auth):
    vendor = await lgc(auth)
    for params in (
        {},
        {"masterIdentifier": "no-bar"},
        {"masterIdentifier": "sys|"},
        {"masterIdentifier": ",".join(f"s|{i}" for i in range(101))},
    ):
        r = await client.get(STATUS, params=params, headers=vendor)
        assert r.status_code == 400, (params, r.text)
        assert r.json()["resourceType"] == "OperationOutcome"
    r = await client.get(STATUS, params={"masterIdentifier": "s|1"})
    assert r.status_code == 401
    deposit_only = await auth.system("lgc-deposit-only", "system/DocumentReference.c")
    r = await client.get(STATUS, params={"masterIdentifier": "s|1"}, headers=deposit_only)
    assert r.status_code == 403
