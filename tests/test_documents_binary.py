"""Binary content over HTTP: raw bytes in (streamed to the blob store), raw bytes out (Range)."""

import base64
import os
import uuid

import orjson
from sqlalchemy import func, select

from espace_api.storage import blob_repository as blob_repo
from tests.support.documents import (
    PDF,
    SYSTEM_SCOPES,
    binary_resource,
    chunks,
    pdf,
)
from tests.support.fhir import FHIR_JSON, create, patient


async def new_patient(client, auth, **extra) -> str:
    return (await create(client, await auth.operator(), patient(**extra)))["id"]


async def lgc(auth, name: str = "lgc-docs") -> dict[str, str]:
    return await auth.system(name, SYSTEM_SCOPES)


async def post_raw(client, headers, patient_id, data, content_type="application/pdf", **extra):
    return await client.post(
        "/Binary",
        content=data,
        headers={
            **headers,
            "Content-Type": content_type,
            "X-Security-Context": f"Patient/{patient_id}",
            **extra,
        },
    )


async def blob_count(app) -> int:
    async with app.state.engine.connect() as conn:
        return (await conn.execute(select(func.count()).select_from(blob_repo.blobs))).scalar()


async def test_raw_post_then_read_with_ranges(client, auth, app):
    pid = await new_patient(client, auth)
    headers = await lgc(auth)
    data = pdf(3 * 1024 * 1024)
    r = await post_raw(client, headers, pid, chunks(data))
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["contentType"] == "application/pdf"
    assert "data" not in created
    assert r.headers["Location"].endswith(f"/Binary/{created['id']}/_history/1")

    got = await client.get(
        f"/Binary/{created['id']}", headers={**headers, "Accept-Encoding": "identity"}
    )
    assert got.status_code == 200
    assert got.content == data
    assert got.headers["content-type"] == "application/pdf"
    assert got.headers["accept-ranges"] == "bytes"
    assert got.headers["content-length"] == str(len(data))
    assert got.headers["x-content-type-options"] == "nosniff"
    etag = got.headers["etag"]

    part = await client.get(f"/Binary/{created['id']}", headers={**headers, "Range": "bytes=0-99"})
    assert part.status_code == 206
    assert part.content == data[:100]
    assert part.headers["content-range"] == f"bytes 0-99/{len(data)}"
    mid = await client.get(
        f"/Binary/{created['id']}", headers={**headers, "Range": "bytes=1048570-1048585"}
    )
    assert mid.status_code == 206 and mid.content == data[1048570:1048586]
    tail = await client.get(f"/Binary/{created['id']}", headers={**headers, "Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == data[-10:]
    bad = await client.get(
        f"/Binary/{created['id']}", headers={**headers, "Range": f"bytes={len(data)}-"}
    )
    assert bad.status_code == 416
    assert bad.headers["content-range"] == f"bytes */{len(data)}"
    stale = await client.get(
        f"/Binary/{created['id']}",
        headers={**headers, "Range": "bytes=0-9", "If-Range": 'W/"99"'},
    )
    assert stale.status_code == 200 and stale.content == data
    fresh = await client.get(
        f"/Binary/{created['id']}", headers={**headers, "Range": "bytes=0-9", "If-Range": etag}
    )
    assert fresh.status_code == 206 and fresh.content == data[:10]
    vread = await client.get(f"/Binary/{created['id']}/_history/1", headers=headers)
    assert vread.status_code == 200 and vread.content == data


async def test_read_as_fhir_resource_inlines_data(client, auth):
    pid = await new_patient(client, auth)
    headers = await lgc(auth)
    r = await post_raw(client, headers, pid, PDF)
    bid = r.json()["id"]
    got = await client.get(f"/Binary/{bid}", headers={**headers, "Accept": "application/fhir+json"})
    assert got.status_code == 200
    body = got.json()
    assert body["resourceType"] == "Binary"
    assert base64.b64decode(body["data"]) == PDF


async def test_patient_reads_own_content_not_others(client, auth):
    pid, other = await new_patient(client, auth), await new_patient(client, auth)
    r = await post_raw(client, await lgc(auth), pid, PDF)
    bid = r.json()["id"]
    mine = await client.get(f"/Binary/{bid}", headers=await auth.patient(pid))
    assert mine.status_code == 200 and mine.content == PDF
    theirs = await client.get(f"/Binary/{bid}", headers=await auth.patient(other))
    assert theirs.status_code == 404
    assert theirs.headers["content-type"].startswith("application/fhir+json")


async def test_refusals_store_nothing(client, auth, app):
    pid = await new_patient(client, auth)
    headers = await lgc(auth)
    before = await blob_count(app)

    r = await post_raw(
        client, headers, pid, b"MZ\x90\x00binary", content_type="application/x-msdownload"
    )
    assert r.status_code == 415
    assert r.json()["issue"][0]["details"]["coding"][0]["code"] == "CONTENT_TYPE_NOT_ALLOWED"

    r = await post_raw(client, headers, pid, b"MZ\x90\x00 not a pdf" * 100)
    assert r.status_code == 422
    assert r.json()["issue"][0]["details"]["coding"][0]["code"] == "CONTENT_TYPE_MISMATCH"

    r = await client.post(
        "/Binary", content=PDF, headers={**headers, "Content-Type": "application/pdf"}
    )
    assert r.status_code == 400
    assert r.json()["issue"][0]["details"]["coding"][0]["code"] == "SECURITY_CONTEXT_REQUIRED"

    r = await post_raw(client, headers, f"nobody-{uuid.uuid4().hex[:8]}", PDF)
    assert r.status_code == 422

    too_big = b"%PDF-" + os.urandom(app.state.settings.max_body_bytes)
    r = await post_raw(client, headers, pid, chunks(too_big))  # chunked: no Content-Length
    assert r.status_code == 413
    assert r.json()["issue"][0]["details"]["coding"][0]["code"] == "CONTENT_TOO_LARGE"

    r = await post_raw(client, await auth.system("lgc-read-only", "system/Binary.r"), pid, PDF)
    assert r.status_code == 403

    assert await blob_count(app) == before


async def test_json_binary_data_goes_to_blob_store(client, auth, app):
    pid = await new_patient(client, auth)
    headers = await lgc(auth)
    r = await client.post(
        "/Binary", json=binary_resource(pid, PDF), headers={**headers, **FHIR_JSON}
    )
    assert r.status_code == 201, r.text
    bid = r.json()["id"]
    async with app.state.engine.connect() as conn:
        from espace_api.db.schema import resources

        stored = (
            await conn.execute(
                select(resources.c.content).where(
                    resources.c.resource_type == "Binary", resources.c.id == bid
                )
            )
        ).scalar_one()
        shas = await blob_repo.refs_of_version(conn, pid, "Binary", bid, 1)
    assert "data" not in stored and len(shas) == 1
    raw = await client.get(f"/Binary/{bid}", headers=headers)
    assert raw.content == PDF


async def test_closed_space_refuses_content(client, auth):
    pid = await new_patient(client, auth)
    me = await auth.patient(pid)
    for action in ("activate", "close"):
        assert (await client.post(f"/Patient/{pid}/${action}", headers=me)).status_code == 200
    r = await post_raw(client, await lgc(auth), pid, PDF)
    assert r.status_code == 422
    assert orjson.loads(r.content)["issue"][0]["details"]["coding"][0]["code"] == (
        "PATIENT_SPACE_CLOSED"
    )
