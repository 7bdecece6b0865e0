"""The privacy matrix (issue 8), through HTTP against real Postgres.

{patient, author software, other software, professional, blocked professional,
break-the-glass professional} x {visible, masked, not-yet-announced document} x {read, vread,
search, search total, history, Binary, _include, batch GET entry, $everything}: every cell
asserts what the actor gets and the one audit row the request leaves (outcome 0 when the
document was served, 4 when the request was refused).
"""

import base64
import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import select

from espace_api.db.schema import audit_events
from tests.support.documents import pdf
from tests.support.fhir import (
    FHIR_JSON,
    PRO_SCOPES,
    create,
    document,
    grant_care,
    patient,
    practitioner_ref,
    privacy_consent,
)

SOFTWARE_SCOPES = "system/DocumentReference.crs system/Binary.crs system/Patient.rs system/List.c"
VISIBILITY = (
    "https://mos.esante.gouv.fr/NOS/TRE_A07-StatusVisibiliteDocument/FHIR/"
    "TRE-A07-StatusVisibiliteDocument"
)
DOCS = ("visible", "masked", "unannounced")
SEES = {
    "patient": {"visible", "masked"},
    "author": {"visible", "masked", "unannounced"},  # the depositor keeps access
    "other_software": set(),
    "professional": {"visible", "unannounced"},
    "blocked": set(),
    "btg": {"visible", "unannounced"},
}
OPS = ("read", "vread", "search", "total", "history", "binary", "include", "batch", "everything")


@dataclass
class World:
    pid: str = ""
    docs: dict[str, str] = field(default_factory=dict)
    binaries: dict[str, str] = field(default_factory=dict)
    actors: dict[str, dict[str, str]] = field(default_factory=dict)


def jti(headers: dict[str, str]) -> str:
    payload = headers["Authorization"].split()[1].split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["jti"]


async def audit_rows(app: Any, token_id: str) -> list[dict[str, Any]]:
    async with app.state.engine.connect() as conn:
        rows = await conn.execute(
            select(audit_events)
            .where(audit_events.c.token_jti == token_id)
            .order_by(audit_events.c.recorded)
        )
        return [dict(r._mapping) for r in rows]


async def deposit(client: Any, lgc: dict[str, str], pid: str, labels: list[str]) -> tuple[str, str]:
    """A PDF and its DocumentReference deposited by software; (document id, Binary id)."""
    binary = await client.post(
        "/Binary",
        content=pdf(),
        headers={**lgc, "Content-Type": "application/pdf", "X-Security-Context": f"Patient/{pid}"},
    )
    assert binary.status_code == 201, binary.text
    body = document(pid)
    body["content"][0]["attachment"] = {
        "contentType": "application/pdf",
        "url": f"Binary/{binary.json()['id']}",
        "title": "Compte rendu",
    }
    if labels:
        body["securityLabel"] = [
            {"coding": [{"system": VISIBILITY, "code": code}]} for code in labels
        ]
    doc = await create(client, lgc, body)
    return doc["id"], binary.json()["id"]


@pytest.fixture(scope="module")
async def world(client: Any, auth: Any) -> World:
    w = World()
    ops = await auth.operator()
    w.pid = (await create(client, ops, patient(family="Privacy")))["id"]
    author = await auth.system("lgc-priv-author", SOFTWARE_SCOPES, "finess:111111111")
    for name, labels in (("visible", []), ("masked", []), ("unannounced", ["INVISIBLE_PATIENT"])):
        w.docs[name], w.binaries[name] = await deposit(client, author, w.pid, labels)
    me = await auth.patient(w.pid)
    # The patient hides one document from professionals, with a mask Consent.
    mask = privacy_consent(w.pid, "mask", data=[f"DocumentReference/{w.docs['masked']}"])
    await create(client, me, mask)
    professional = await auth.user("rpps-1001", PRO_SCOPES)
    await grant_care(client, professional, w.pid, "1001")
    blocked = await auth.user("rpps-1002", PRO_SCOPES)
    await grant_care(client, blocked, w.pid, "1002")
    block = privacy_consent(w.pid, "block", actors=[practitioner_ref("1002")])
    await create(client, me, block)
    btg = await auth.user("rpps-1003", PRO_SCOPES)
    r = await client.post(
        f"/Patient/{w.pid}/$break-the-glass",
        headers={**btg, "X-BTG-Reason": "unconscious at the emergency department"},
    )
    assert r.status_code == 201, r.text
    other = await auth.system("lgc-priv-other", SOFTWARE_SCOPES, "finess:222222222")
    w.actors = {
        "patient": me,
        "author": author,
        "other_software": other,
        "professional": professional,
        "blocked": blocked,
        "btg": btg,
    }
    return w


async def observe(client: Any, w: World, actor: str, doc: str, op: str) -> bool:
    """Perform one access; whether the document (or its content) was served."""
    h, d, b, pid = w.actors[actor], w.docs[doc], w.binaries[doc], w.pid
    if op in ("read", "vread", "history", "binary"):
        url = {
            "read": f"/DocumentReference/{d}",
            "vread": f"/DocumentReference/{d}/_history/1",
            "history": f"/DocumentReference/{d}/_history",
            "binary": f"/Binary/{b}",
        }[op]
        r = await client.get(url, headers=h)
        assert r.status_code in (200, 404), r.text
        if r.status_code == 200 and op == "binary":
            assert r.content.startswith(b"%PDF")
        return r.status_code == 200
    if op == "search":
        r = await client.get(f"/DocumentReference?patient={pid}&_count=100", headers=h)
        assert r.status_code == 200, r.text
        return d in {e["resource"]["id"] for e in r.json().get("entry", [])}
    if op == "total":
        r = await client.get(f"/DocumentReference?_id={d}&_summary=count", headers=h)
        assert r.status_code == 200, r.text
        return r.json()["total"] == 1
    if op == "include":
        r = await client.get(
            f"/DocumentReference?_id={d}&_include=DocumentReference:binary", headers=h
        )
        assert r.status_code == 200, r.text
        entries = r.json().get("entry", [])
        served = {e["resource"]["id"] for e in entries}
        assert (d in served) == (b in served), "content is included exactly with its document"
        return b in served
    if op == "batch":
        bundle = {
            "resourceType": "Bundle",
            "type": "batch",
            "entry": [{"request": {"method": "GET", "url": f"DocumentReference/{d}"}}],
        }
        r = await client.post("/", json=bundle, headers={**h, **FHIR_JSON})
        assert r.status_code == 200, r.text
        status = r.json()["entry"][0]["response"]["status"]
        assert status.split()[0] in ("200", "404"), status
        return status.startswith("200")
    r = await client.get(f"/Patient/{pid}/$everything", headers=h)
    assert r.status_code in (200, 404), r.text
    return r.status_code == 200 and d in {e["resource"]["id"] for e in r.json().get("entry", [])}


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("doc", DOCS)
@pytest.mark.parametrize("actor", list(SEES))
async def test_privacy_matrix(client: Any, app: Any, world: World, actor: str, doc: str, op: str):
    token_id = jti(world.actors[actor])
    before = await audit_rows(app, token_id)
    served = await observe(client, world, actor, doc, op)
    # $everything is the Patient's: software, which never sees a Patient but through an
    # exact INS lookup, gets 404 there (it still reads its own deposits every other way)
    expected = doc in SEES[actor] and not (actor == "author" and op == "everything")
    assert served == expected, f"{actor} / {doc} / {op}"
    new = (await audit_rows(app, token_id))[len(before) :]
    assert len(new) == 1, [(e["subtype"], e["outcome"]) for e in new]
    event = new[0]
    assert event["agent_kind"] == {"author": "system", "other_software": "system"}.get(
        actor, "patient" if actor == "patient" else "user"
    )
    if served:
        assert event["outcome"] == "0" and event["patient_id"] == world.pid
    elif op in ("read", "vread", "history", "binary", "batch"):
        assert event["outcome"] == "4", "a refused read is recorded as a refused attempt"
