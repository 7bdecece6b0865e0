"""Content encryption through HTTP (issue 18): what the blob backend holds is ciphertext,
ranges still work, tampering is answered with an OperationOutcome, and a purge leaves
nothing that can be decrypted (crypto-shredding)."""

import logging
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from espace_api.blobs import encryption
from espace_api.blobs.encryption import ContentErased
from espace_api.lifecycle.service import run_due
from espace_api.storage import blob_repository as blob_repo
from espace_api.storage import data_key_repository as key_repo
from tests.support.clock import shifted
from tests.support.documents import SYSTEM_SCOPES
from tests.support.fhir import create, patient
from tests.test_lifecycle import act, enrol_one

MARKER = b"Compte rendu: carcinome canalaire - patiente Dupont"


def document(size: int) -> bytes:
    return (b"%PDF-1.7\n" + MARKER * (size // len(MARKER) + 1))[:size]


async def deposit(client, auth, pid: str, data: bytes) -> tuple[str, dict[str, str]]:
    """POST /Binary with raw bytes; (Binary id, the depositor's headers)."""
    lgc = await auth.system("lgc-crypto", SYSTEM_SCOPES)
    r = await client.post(
        "/Binary",
        content=data,
        headers={**lgc, "Content-Type": "application/pdf", "X-Security-Context": f"Patient/{pid}"},
    )
    assert r.status_code == 201, r.text
    return r.json()["id"], lgc


async def raw_chunks(app, pid: str) -> bytes:
    """The Postgres backend's stored bytes of the patient (the default backend of the suite)."""
    c = blob_repo.blob_chunks.c
    async with app.state.engine.connect() as conn:
        stmt = select(c.data).where(c.patient_id == pid).order_by(c.sha256, c.seq)
        return b"".join(bytes(d) for d in (await conn.execute(stmt)).scalars())


async def test_stored_content_is_ciphertext_and_ranges_work(client, auth, app):
    pid = (await create(client, await auth.operator(), patient()))["id"]
    data = document(300 * 1024)
    bid, lgc = await deposit(client, auth, pid, data)
    raw = await raw_chunks(app, pid)
    assert len(raw) == encryption.stored_size(len(data))
    assert MARKER not in raw and b"%PDF" not in raw
    async with app.state.engine.connect() as conn:
        gens = (
            (
                await conn.execute(
                    select(blob_repo.blobs.c.key_generation).where(
                        blob_repo.blobs.c.patient_id == pid
                    )
                )
            )
            .scalars()
            .all()
        )
    assert gens == [1]

    whole = await client.get(f"/Binary/{bid}", headers=lgc)
    assert whole.status_code == 200 and whole.content == data
    start = 2 * encryption.CHUNK_BYTES - 10
    part = await client.get(
        f"/Binary/{bid}", headers={**lgc, "Range": f"bytes={start}-{start + 1023}"}
    )
    assert part.status_code == 206
    assert part.content == data[start : start + 1024]
    assert part.headers["content-range"] == f"bytes {start}-{start + 1023}/{len(data)}"


async def test_tampered_content_is_refused_with_an_outcome_and_an_alert(client, auth, app, caplog):
    pid = (await create(client, await auth.operator(), patient()))["id"]
    data = document(100 * 1024)
    bid, lgc = await deposit(client, auth, pid, data)
    c = blob_repo.blob_chunks.c
    async with app.state.engine.begin() as conn:
        raw = bytearray(
            (await conn.execute(select(c.data).where(c.patient_id == pid))).scalar_one()
        )
        raw[40] ^= 0x20
        await conn.execute(
            update(blob_repo.blob_chunks).where(c.patient_id == pid).values(data=bytes(raw))
        )

    caplog.set_level(logging.ERROR, logger="espace_api.alert")
    for accept in ({}, {"Accept": "application/fhir+json"}):
        r = await client.get(f"/Binary/{bid}", headers={**lgc, **accept})
        assert r.status_code == 409, r.text
        outcome = r.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert outcome["issue"][0]["details"]["coding"][0]["code"] == "CONTENT_INTEGRITY_FAILED"
        assert MARKER.decode() not in r.text
    alerts = [rec for rec in caplog.records if rec.name == "espace_api.alert"]
    assert len(alerts) >= 2
    assert all(MARKER.decode()[:20] not in rec.getMessage() for rec in alerts)
    # The bytes of the second chunk were not touched: a range there is still served.
    r = await client.get(
        f"/Binary/{bid}", headers={**lgc, "Range": f"bytes={encryption.CHUNK_BYTES}-"}
    )
    assert r.status_code == 206 and r.content == data[encryption.CHUNK_BYTES :]


async def test_purge_shreds_the_content_of_the_space(client, auth, app):
    pid, me = await enrol_one(client, auth)
    await act(client, me, pid, "activate")
    data = document(80 * 1024)
    bid, lgc = await deposit(client, auth, pid, data)
    async with app.state.engine.connect() as conn:
        sha = (
            await conn.execute(
                select(blob_repo.blobs.c.sha256).where(blob_repo.blobs.c.patient_id == pid)
            )
        ).scalar_one()
    assert (await client.get(f"/Binary/{bid}", headers=me)).content == data
    backup = await raw_chunks(app, pid)  # what a backup taken today holds
    r = await act(client, me, pid, "close", deleteData=True)
    assert r.status_code == 200, r.text

    settings = app.state.settings
    with shifted(app, timedelta(days=settings.space_early_deletion_days + 1)):
        assert (await run_due(app.state.engine, settings, app.state.clock))["purged"] >= 1
    async with app.state.engine.connect() as conn:
        assert await key_repo.current_key(conn, pid) is None
        rows = (
            (
                await conn.execute(
                    select(key_repo.data_keys).where(key_repo.data_keys.c.patient_id == pid)
                )
            )
            .mappings()
            .all()
        )
    assert [(r["wrapped_key"], r["destroyed_at"] is not None) for r in rows] == [(None, True)]
    # The bytes are still in the backend (the sweeper removes them later) and in the backup:
    # neither holds the plaintext, and nothing left can decrypt them.
    assert await raw_chunks(app, pid) == backup
    assert MARKER not in backup
    with pytest.raises(ContentErased) as err:
        await app.state.blobs.open(pid, sha)
    assert (err.value.status, err.value.code) == (404, "CONTENT_ERASED")
    assert (await client.get(f"/Binary/{bid}", headers=lgc)).status_code == 404
