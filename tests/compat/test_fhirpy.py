"""fhirpy (sync client on requests, async client on aiohttp) against the live server.

Only fhirpy's public API, unmodified: resources and references, searchsets (chains,
`_include`/`_revinclude`, sort, limit, count), conditional create (`get_or_create`, which
sends the criteria as the POST's query string), conditional update, patch and delete,
patch (fhirpy sends a partial resource as `application/json`: JSON Merge Patch), paging by
following `next` links.
"""

import uuid
from typing import Any

import pytest
from fhirpy import AsyncFHIRClient, SyncFHIRClient
from fhirpy.base.exceptions import OperationOutcome, ResourceNotFound
from fhirpy.base.searchset import Raw

from tests.support.fhir import INS_TEST, LOINC, document, patient
from tests.support.live_server import LiveServer

PAGED = 250


@pytest.fixture(scope="module")
def sync(live: LiveServer, operator_token: str) -> SyncFHIRClient:
    return SyncFHIRClient(live.url, authorization=f"Bearer {operator_token}")


@pytest.fixture(scope="module")
def aclient(live: LiveServer, operator_token: str) -> AsyncFHIRClient:
    return AsyncFHIRClient(live.url, authorization=f"Bearer {operator_token}")


def ins_of(resource: Any) -> str:
    return f"{INS_TEST}|{resource['identifier'][0]['value']}"


# ------------------------------------------------------------------ CRUD


def test_sync_crud(sync: SyncFHIRClient) -> None:
    p = sync.resource("Patient", **patient(family="Fhirpy"))
    p.save()
    assert p.id and p["meta"]["versionId"] == "1"

    read = sync.reference("Patient", p.id).to_resource()
    assert read.serialize() == p.serialize()
    assert sync.get("Patient", p.id)["id"] == p.id
    assert sync.resources("Patient").search(_id=p.id).get().id == p.id

    p["active"] = True
    p.save()  # PUT
    assert p["meta"]["versionId"] == "2" and p["active"] is True
    p.refresh()  # GET with If-None-Match: the current version -> 304, nothing changes
    assert p["meta"]["versionId"] == "2"

    p.delete()
    with pytest.raises(ResourceNotFound):  # 410 Gone
        sync.get("Patient", p.id)


async def test_async_crud(aclient: AsyncFHIRClient) -> None:
    p = aclient.resource("Patient", **patient(family="Fhirpyasync"))
    await p.save()
    assert p.id and p["meta"]["versionId"] == "1"

    read = await aclient.reference("Patient", p.id).to_resource()
    assert read.serialize() == p.serialize()
    found = await aclient.resources("Patient").search(identifier=ins_of(p)).get()
    assert found.id == p.id

    p["gender"] = "other"
    await p.update()
    assert p["meta"]["versionId"] == "2"
    await p.refresh()
    assert p["gender"] == "other"

    await p.delete()
    with pytest.raises(ResourceNotFound):
        await aclient.get("Patient", p.id)


def test_operation_outcome_errors(sync: SyncFHIRClient) -> None:
    """Our 4xx OperationOutcomes surface as fhirpy's exceptions."""
    with pytest.raises(ResourceNotFound):
        sync.get("Patient", f"absent-{uuid.uuid4().hex[:8]}")
    bad = sync.resource("Patient", birthDate="not-a-date")
    with pytest.raises(OperationOutcome) as raised:
        bad.save()
    assert raised.value.resource["resourceType"] == "OperationOutcome"


# ------------------------------------------------------------------ conditional interactions


def test_sync_conditional_create_and_update(sync: SyncFHIRClient) -> None:
    body = patient(family="Conditional")
    search = sync.resources("Patient").search(identifier=ins_of(body))
    first, created = search.get_or_create(sync.resource("Patient", **body))
    assert created
    again, created = search.get_or_create(sync.resource("Patient", **body))
    assert not created and again.id == first.id

    updated, created = search.update(sync.resource("Patient", **body, active=False))
    assert not created and updated.id == first.id
    assert updated["meta"]["versionId"] == "2" and updated["active"] is False

    other = patient(family="Conditional")
    fresh, created = (
        sync.resources("Patient")
        .search(identifier=ins_of(other))
        .update(sync.resource("Patient", **other))
    )
    assert created and fresh.id != first.id
    assert len(sync.resources("Patient").search(identifier=ins_of(body)).fetch_all()) == 1

    patched = search.patch(gender="male")  # PATCH /Patient?identifier=...
    assert patched.id == first.id and patched["gender"] == "male"
    _, status = search.delete()  # DELETE /Patient?identifier=...
    assert status == 204
    assert search.fetch() == []


async def test_async_conditional_create(aclient: AsyncFHIRClient) -> None:
    body = patient(family="Conditionalasync")
    p = aclient.resource("Patient", **body)
    await p.create(identifier=ins_of(body))
    q = aclient.resource("Patient", **body)
    await q.create(identifier=ins_of(body))
    assert q.id == p.id
    assert await aclient.resources("Patient").search(identifier=ins_of(body)).count() == 1


# ------------------------------------------------------------------ patch


def test_sync_patch(sync: SyncFHIRClient) -> None:
    p = sync.resource("Patient", **patient(family="Patchme"))
    p.save()
    p.patch(active=False, birthDate="1981-01-02")
    assert p["meta"]["versionId"] == "2"
    assert p["active"] is False and p["birthDate"] == "1981-01-02"
    assert p["name"][0]["family"] == "Patchme"  # untouched elements stay

    patched = sync.patch("Patient", p.id, birthDate=None, gender="male")  # null removes
    assert "birthDate" not in patched and patched["gender"] == "male"
    assert sync.get("Patient", p.id)["meta"]["versionId"] == "3"


async def test_async_patch(aclient: AsyncFHIRClient) -> None:
    p = aclient.resource("Patient", **patient(family="Patchasync"))
    await p.save()
    await p.patch(name=[{"family": "Patched", "given": ["Alix"]}])
    read = await aclient.get("Patient", p.id)
    assert read["name"] == [{"family": "Patched", "given": ["Alix"]}]
    assert read["meta"]["versionId"] == "2"


# ------------------------------------------------------------------ search


@pytest.fixture(scope="module")
def documents(sync: SyncFHIRClient) -> dict[str, Any]:
    """A patient and three documents (two discharge summaries, one lab report)."""
    p = sync.resource("Patient", **patient(family="Chained"))
    p.save()
    docs = []
    for code, date in (
        ("11488-4", "2024-01-01"),
        ("11502-2", "2024-02-01"),
        ("11488-4", "2024-03-01"),
    ):
        d = sync.resource(
            "DocumentReference", **document(p.id, code=code, date=f"{date}T10:00:00Z")
        )
        d.save()
        docs.append(d)
    return {"patient": p, "documents": docs}


def test_sync_search_chain_sort_count(sync: SyncFHIRClient, documents: dict[str, Any]) -> None:
    p = documents["patient"]
    chained = (
        sync.resources("DocumentReference")
        .search(patient__Patient__identifier=ins_of(p))  # patient:Patient.identifier=...
        .sort("-date")
        .fetch_all()
    )
    assert [d.id for d in chained] == [d.id for d in reversed(documents["documents"])]

    plain_chain = sync.resources("DocumentReference").search(
        Raw(**{"patient.identifier": ins_of(p)}), type=f"{LOINC}|11488-4"
    )
    assert len(plain_chain.fetch()) == 2
    assert plain_chain.count() == 2
    assert plain_chain.first() is not None
    dated = sync.resources("DocumentReference").search(patient=p.id, date__ge="2024-02-01")
    assert {d.id for d in dated.fetch()} == {d.id for d in documents["documents"][1:]}
    assert sync.resources("DocumentReference").search(subject=f"Patient/{p.id}").count() == 3
    assert sync.reference("Patient", p.id).reference == f"Patient/{p.id}"


def test_sync_include_revinclude(sync: SyncFHIRClient, documents: dict[str, Any]) -> None:
    p = documents["patient"]
    bundle = (
        sync.resources("DocumentReference")
        .search(patient=p.id)
        .include("DocumentReference", "subject")
        .fetch_raw()
    )
    by_mode = {e.search.mode: e.resource for e in bundle.entry if e.search.mode == "include"}
    assert by_mode["include"].id == p.id
    assert len([e for e in bundle.entry if e.search.mode == "match"]) == 3
    # fetch() keeps the searched type only
    assert {
        d.resourceType
        for d in sync.resources("DocumentReference")
        .search(patient=p.id)
        .include("DocumentReference", "subject")
        .fetch()
    } == {"DocumentReference"}

    rev = (
        sync.resources("Patient")
        .search(_id=p.id)
        .revinclude("DocumentReference", "subject")
        .fetch_raw()
    )
    assert rev.total == 1
    included = [e.resource.id for e in rev.entry if e.search.mode == "include"]
    assert sorted(included) == sorted(d.id for d in documents["documents"])


async def test_async_search_chain_include(
    aclient: AsyncFHIRClient, documents: dict[str, Any]
) -> None:
    p = documents["patient"]
    found = (
        await aclient.resources("DocumentReference")
        .search(patient__Patient__identifier=ins_of(p), type=f"{LOINC}|11502-2")
        .fetch()
    )
    assert [d.id for d in found] == [documents["documents"][1].id]
    raw = (
        await aclient.resources("DocumentReference")
        .search(patient=p.id)
        .include("DocumentReference", "patient", "Patient")
        .fetch_raw()
    )
    assert [e.resource.id for e in raw.entry if e.search.mode == "include"] == [p.id]


# ------------------------------------------------------------------ paging


@pytest.fixture(scope="module")
def many(sync: SyncFHIRClient) -> str:
    """PAGED patients sharing one family name, created in one transaction Bundle."""
    family = f"Paged{uuid.uuid4().hex[:8]}"
    entries = [
        {
            "fullUrl": f"urn:uuid:{uuid.uuid4()}",
            "resource": patient(family=family, given=f"N{i:03d}"),
            "request": {"method": "POST", "url": "Patient"},
        }
        for i in range(PAGED)
    ]
    response = sync.execute(
        "/", method="post", data={"resourceType": "Bundle", "type": "transaction", "entry": entries}
    )
    assert len(response["entry"]) == PAGED
    return family


def test_sync_paging_fetch_all(sync: SyncFHIRClient, many: str) -> None:
    search = sync.resources("Patient").search(family=many).sort("given").limit(40)
    assert search.count() == PAGED
    everything = search.fetch_all()  # follows Bundle.link next (7 pages)
    assert len(everything) == PAGED
    assert len({p.id for p in everything}) == PAGED
    assert [p["name"][0]["given"][0] for p in everything] == [f"N{i:03d}" for i in range(PAGED)]


async def test_async_paging_iteration(aclient: AsyncFHIRClient, many: str) -> None:
    search = aclient.resources("Patient").search(family=many).sort("-given").limit(100)
    given = [p["name"][0]["given"][0] async for p in search]
    assert given == [f"N{i:03d}" for i in reversed(range(PAGED))]
    assert len(await search.fetch_all()) == PAGED


# ------------------------------------------------------------------ a patient's own token


def test_sync_patient_token(live: LiveServer, documents: dict[str, Any]) -> None:
    """A patient token (patient/*.rs) sees its compartment only: another patient's document
    is a 404 as fhirpy reports it, a search naming another patient is empty."""
    p = documents["patient"]
    mine = SyncFHIRClient(
        live.url,
        authorization=f"Bearer {live.token('patient', patient_id=p.id, scopes='patient/*.rs')}",
    )
    docs = mine.resources("DocumentReference").search(patient=p.id).sort("date").fetch_all()
    assert [d.id for d in docs] == [d.id for d in documents["documents"]]
    assert mine.reference("Patient", p.id).to_resource().id == p.id

    other = f"p-{uuid.uuid4().hex[:8]}"
    stranger = SyncFHIRClient(
        live.url, authorization=f"Bearer {live.token('patient', patient_id=other)}"
    )
    with pytest.raises(ResourceNotFound):
        stranger.get("DocumentReference", documents["documents"][0].id)
    assert stranger.resources("DocumentReference").search(patient=p.id).fetch() == []
