"""Search through HTTP: Bundle shape, paging, sorting, prefixes, per-type parameters."""

import uuid
from urllib.parse import parse_qsl, urlsplit

from tests.support.fhir import (
    FHIR_JSON,
    INS_TEST,
    LOINC,
    communication,
    consent,
    create,
    document,
    ids,
    patient,
    search,
)


def tag() -> str:
    """A unique family name, so each test only sees its own patients."""
    return "Tst" + uuid.uuid4().hex[:12]


def relative(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


def link(bundle: dict, relation: str) -> str | None:
    return next((x["url"] for x in bundle.get("link", []) if x["relation"] == relation), None)


# ---------------------------------------------------------------- Bundle and paging


async def test_paging_follows_links_without_duplicates(client, auth):
    ops = await auth.operator()
    fam = tag()
    created = [(await create(client, ops, patient(family=fam)))["id"] for _ in range(45)]
    first = await search(client, ops, "/Patient", family=fam, _count=20)
    assert first["total"] == 45
    assert link(first, "previous") is None
    self_query = dict(parse_qsl(urlsplit(link(first, "self")).query))
    assert self_query == {"family": fam, "_count": "20"}
    seen, pages, bundle = [], 0, first
    while True:
        pages += 1
        assert len(bundle.get("entry", [])) == (20 if pages < 3 else 5)
        assert all(e["search"]["mode"] == "match" for e in bundle["entry"])
        assert all(
            e["fullUrl"].endswith(f"/Patient/{e['resource']['id']}") for e in bundle["entry"]
        )
        seen += ids(bundle)
        nxt = link(bundle, "next")
        if nxt is None:
            break
        r = await client.get(relative(nxt), headers=ops)
        assert r.status_code == 200, r.text
        bundle = r.json()
        assert bundle["total"] == 45
    assert pages == 3
    assert len(seen) == len(set(seen)) == 45
    assert seen == created  # default order: oldest first, stable
    # previous from the last page goes back to the second one
    prev = await client.get(relative(link(bundle, "previous")), headers=ops)
    assert ids(prev.json()) == created[20:40]
    # self link of a page reproduces the page
    again = await client.get(relative(link(bundle, "self")), headers=ops)
    assert ids(again.json()) == created[40:]


async def test_count_default_and_max(client, auth):
    ops = await auth.operator()
    fam = tag()
    for _ in range(105):
        await create(client, ops, patient(family=fam))
    default = await search(client, ops, "/Patient", family=fam)
    assert len(default["entry"]) == 20 and default["total"] == 105
    capped = await search(client, ops, "/Patient", family=fam, _count=500)
    assert len(capped["entry"]) == 100
    assert dict(parse_qsl(urlsplit(link(capped, "self")).query))["_count"] == "100"
    nxt = await client.get(relative(link(capped, "next")), headers=ops)
    assert len(nxt.json()["entry"]) == 5
    counted = await search(client, ops, "/Patient", family=fam, _summary="count")
    assert counted["total"] == 105 and "entry" not in counted
    assert link(counted, "next") is None


async def test_post_search_form_body(client, auth):
    ops = await auth.operator()
    fam = tag()
    made = [(await create(client, ops, patient(family=fam)))["id"] for _ in range(3)]
    r = await client.post("/Patient/_search", data={"family": fam, "_count": "2"}, headers=ops)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["type"] == "searchset" and body["total"] == 3
    assert ids(body) == made[:2]
    nxt = await client.get(relative(link(body, "next")), headers=ops)
    assert ids(nxt.json()) == made[2:]
    # query string and form body combine
    r = await client.post(f"/Patient/_search?_id={made[1]}", data={"family": fam}, headers=ops)
    assert ids(r.json()) == [made[1]]
    # a JSON body is not a form
    r = await client.post("/Patient/_search", json={"family": fam}, headers=ops)
    assert r.status_code == 415


async def test_unknown_parameter_ignored_or_strict(client, auth):
    ops = await auth.operator()
    fam = tag()
    await create(client, ops, patient(family=fam))
    lax = await search(client, ops, "/Patient", family=fam, foo="bar")
    assert lax["total"] == 1
    assert "foo" not in link(lax, "self")
    strict = await client.get(
        "/Patient",
        params={"family": fam, "foo": "bar"},
        headers={**ops, "Prefer": "handling=strict"},
    )
    assert strict.status_code == 400
    assert strict.json()["issue"][0]["details"]["coding"][0]["code"] == "UNKNOWN_PARAMETER"
    lenient = await client.get(
        "/Patient",
        params={"family": fam, "foo": "bar"},
        headers={**ops, "Prefer": "handling=lenient"},
    )
    assert lenient.status_code == 200


async def test_bad_date_is_400(client, auth):
    ops = await auth.operator()
    for params in ({"birthdate": "17/05/1980"}, {"birthdate": "gt"}, {"_lastUpdated": "yesterday"}):
        r = await client.get("/Patient", params=params, headers=ops)
        assert r.status_code == 400, params
        assert r.json()["resourceType"] == "OperationOutcome"
        assert r.json()["issue"][0]["details"]["coding"][0]["code"] == "INVALID_SEARCH"
    r = await client.get("/DocumentReference", params={"date": "2024-13-45"}, headers=ops)
    assert r.status_code == 400


# ---------------------------------------------------------------- sorting


async def test_sort(client, auth):
    ops = await auth.operator()
    fam = tag()
    a = await create(client, ops, patient(family=fam + "b", birthDate="1990-01-01"))
    b = await create(client, ops, patient(family=fam + "c", birthDate="1970-01-01"))
    c = await create(client, ops, patient(family=fam + "a", birthDate="1980-01-01"))
    order = {"a": a["id"], "b": b["id"], "c": c["id"]}

    async def sorted_ids(sort: str) -> list[str]:
        return ids(await search(client, ops, "/Patient", family=fam, _sort=sort))

    assert await sorted_ids("-_lastUpdated") == [order["c"], order["b"], order["a"]]
    assert await sorted_ids("_lastUpdated") == [order["a"], order["b"], order["c"]]
    assert await sorted_ids("birthdate") == [order["b"], order["c"], order["a"]]
    assert await sorted_ids("-birthdate") == [order["a"], order["c"], order["b"]]
    assert await sorted_ids("family") == [order["c"], order["a"], order["b"]]
    assert await sorted_ids("-family") == [order["b"], order["a"], order["c"]]
    bad = await client.get("/Patient", params={"_sort": "nope"}, headers=ops)
    assert bad.status_code == 400


async def test_sort_documents_by_date_and_ties_are_stable(client, auth):
    ops = await auth.operator()
    p = await create(client, ops, patient())
    dates = [
        "2024-01-05T00:00:00Z",
        "2023-06-01T00:00:00Z",
        "2024-01-05T00:00:00Z",
        "2022-01-01T00:00:00Z",
    ]
    docs = [(await create(client, ops, document(p["id"], date=d)))["id"] for d in dates]
    tie = sorted([docs[0], docs[2]])  # equal dates: ordered by id, deterministically
    got = ids(await search(client, ops, "/DocumentReference", patient=p["id"], _sort="-date"))
    assert got == [*tie, docs[1], docs[3]]
    got = ids(await search(client, ops, "/DocumentReference", patient=p["id"], _sort="date"))
    assert got == [docs[3], docs[1], *tie]
    # paging a sorted result with ties neither repeats nor loses a row
    seen = []
    for offset in range(4):
        page = await search(
            client,
            ops,
            "/DocumentReference",
            patient=p["id"],
            _sort="-date",
            _count=1,
            _offset=offset,
        )
        seen += ids(page)
    assert seen == [*tie, docs[1], docs[3]]


# ---------------------------------------------------------------- common parameters


async def test_last_updated_prefixes(client, auth):
    ops = await auth.operator()
    fam = tag()
    made = [await create(client, ops, patient(family=fam)) for _ in range(3)]
    p1, p2, p3 = (m["id"] for m in made)
    t2 = made[1]["meta"]["lastUpdated"]

    async def lu(value: str) -> list[str]:
        return ids(await search(client, ops, "/Patient", family=fam, _lastUpdated=value))

    assert await lu(f"gt{t2}") == [p3]
    assert await lu(f"lt{t2}") == [p1]
    assert await lu(f"ge{t2}") == [p2, p3]
    assert await lu(f"le{t2}") == [p1, p2]
    assert await lu(f"eq{t2}") == [p2]
    assert await lu(t2) == [p2]
    assert await lu("gt2000-01-01") == [p1, p2, p3]
    assert await lu("lt2000-01-01") == []
    # two _lastUpdated parameters are ANDed (a window)
    r = await client.get(
        f"/Patient?family={fam}&_lastUpdated=ge{t2}&_lastUpdated=le{t2}", headers=ops
    )
    assert ids(r.json()) == [p2]


async def test_id_and_identifier_forms(client, auth):
    ops = await auth.operator()
    fam = tag()
    ins = uuid.uuid4().hex[:15]
    a = await create(client, ops, patient(family=fam, ins=ins))
    b = await create(
        client,
        ops,
        patient(family=fam, identifier=[{"value": ins}]),  # same value, no system
    )
    c = await create(client, ops, patient(family=fam))

    async def find(**params: str) -> set[str]:
        return set(ids(await search(client, ops, "/Patient", family=fam, **params)))

    assert await find(_id=a["id"]) == {a["id"]}
    assert await find(_id=f"{a['id']},{c['id']}") == {a["id"], c["id"]}
    assert await find(identifier=f"{INS_TEST}|{ins}") == {a["id"]}
    assert await find(identifier=f"|{ins}") == {b["id"]}
    assert await find(identifier=ins) == {a["id"], b["id"]}
    assert await find(identifier=f"{INS_TEST}|") == {a["id"], c["id"]}
    assert await find(identifier=f"urn:other|{ins}") == set()
    # without the family filter, the INS finds exactly one patient among everything
    assert ids(await search(client, ops, "/Patient", identifier=f"{INS_TEST}|{ins}")) == [a["id"]]


# ---------------------------------------------------------------- Patient


async def test_patient_parameters(client, auth):
    ops = await auth.operator()
    fam = tag()
    eloise = await create(
        client,
        ops,
        patient(family=f"Dûpont{fam}", given="Éloïse", gender="female", birthDate="1980-05-17"),
    )
    marc = await create(
        client,
        ops,
        patient(family=f"Durand{fam}", given="Marc", gender="male", birthDate="1975-12-01"),
    )
    both = {eloise["id"], marc["id"]}

    async def find(**params: str) -> set[str]:
        return set(ids(await search(client, ops, "/Patient", **params)))

    # string search: case- and accent-insensitive prefix
    assert await find(family=f"dupont{fam.lower()}") == {eloise["id"]}
    assert await find(family=f"DÛPONT{fam}") == {eloise["id"]}
    assert await find(family="Du", given="élo", birthdate="1980-05-17") >= {eloise["id"]}
    assert eloise["id"] in await find(given="élo")
    assert eloise["id"] in await find(given="ELOISE")
    assert marc["id"] not in await find(given="élo")
    assert await find(family=f"durand{fam}"[:-1]) == {marc["id"]}  # prefix
    assert await find(family=fam) == set()  # not a substring match
    assert await find(name=f"dupont{fam}") == {eloise["id"]}
    # gender, birthdate with prefixes and partial dates
    in_fam = {"_id": ",".join(both)}
    assert await find(gender="male", **in_fam) == {marc["id"]}
    assert await find(birthdate="1980", **in_fam) == {eloise["id"]}
    assert await find(birthdate="1980-05", **in_fam) == {eloise["id"]}
    assert await find(birthdate="1980-06", **in_fam) == set()
    assert await find(birthdate="1980-05-17", **in_fam) == {eloise["id"]}
    assert await find(birthdate="gt1976", **in_fam) == {eloise["id"]}
    assert await find(birthdate="lt1976", **in_fam) == {marc["id"]}
    assert await find(birthdate="ge1975-12-01", **in_fam) == both
    assert await find(birthdate="le1975-12-01", **in_fam) == {marc["id"]}
    assert await find(birthdate="ne1980", **in_fam) == {marc["id"]}
    assert await find(birthdate="1975,1980", **in_fam) == both  # OR
    assert await find(birthdate=["ge1975", "lt1980"], **in_fam) == {marc["id"]}  # AND


# ---------------------------------------------------------------- DocumentReference


async def test_document_reference_parameters(client, auth):
    ops = await auth.operator()
    p = await create(client, ops, patient())
    other = await create(client, ops, patient())
    d1 = await create(client, ops, document(p["id"], code="11488-4", date="2024-03-01T10:00:00Z"))
    d2 = await create(
        client,
        ops,
        document(
            p["id"],
            code="34133-9",
            date="2023-01-15T08:00:00+01:00",
            category=[{"coding": [{"system": LOINC, "code": "18748-4"}]}],
            author=[{"reference": "Practitioner/rpps-20002"}],
            identifier=[{"system": "urn:test:doc", "value": "doc-42"}],
            relatesTo=[
                {"code": "replaces", "target": {"reference": f"DocumentReference/{d1['id']}"}}
            ],
        ),
    )
    d3 = await create(client, ops, document(other["id"]))
    pid = p["id"]

    async def find(**params: str) -> set[str]:
        return set(ids(await search(client, ops, "/DocumentReference", **params)))

    assert await find(patient=pid) == {d1["id"], d2["id"]}
    assert await find(patient=f"Patient/{pid}") == {d1["id"], d2["id"]}
    assert await find(subject=f"Patient/{pid}") == {d1["id"], d2["id"]}
    assert await find(subject=f"Patient/{other['id']}") == {d3["id"]}
    assert await find(patient=f"{pid},{other['id']}") == {d1["id"], d2["id"], d3["id"]}
    assert await find(patient=pid, type=f"{LOINC}|34133-9") == {d2["id"]}
    assert await find(patient=pid, type="11488-4") == {d1["id"]}
    assert await find(patient=pid, category=f"{LOINC}|18748-4") == {d2["id"]}
    # d2 replaces d1: the deposit marked d1 superseded in the same transaction
    assert await find(patient=pid, status="current") == {d2["id"]}
    assert await find(patient=pid, status="superseded") == {d1["id"]}
    assert await find(patient=pid, author="Practitioner/rpps-20002") == {d2["id"]}
    assert await find(patient=pid, author="rpps-10001") == {d1["id"]}
    assert await find(identifier="urn:test:doc|doc-42") == {d2["id"]}
    master = d1["masterIdentifier"]
    assert await find(identifier=f"{master['system']}|{master['value']}") == {d1["id"]}
    assert await find(relatesto=f"DocumentReference/{d1['id']}") == {d2["id"]}
    # date prefixes (d2 is 2023-01-15T07:00Z)
    assert await find(patient=pid, date="2024") == {d1["id"]}
    assert await find(patient=pid, date="2023-01-15") == {d2["id"]}
    assert await find(patient=pid, date="gt2023-06-01") == {d1["id"]}
    assert await find(patient=pid, date="lt2023-06-01") == {d2["id"]}
    assert await find(patient=pid, date="ge2024-03-01T10:00:00Z") == {d1["id"]}
    assert await find(patient=pid, date="le2023-01-15T07:00:00Z") == {d2["id"]}
    assert await find(patient=pid, date="eq2024-03") == {d1["id"]}


async def test_chained_patient_identifier(client, auth):
    ops = await auth.operator()
    ins = uuid.uuid4().hex[:15]
    p = await create(client, ops, patient(ins=ins))
    other = await create(client, ops, patient())
    d1 = await create(client, ops, document(p["id"]))
    await create(client, ops, document(other["id"]))
    got = await search(
        client, ops, "/DocumentReference", **{"patient.identifier": f"{INS_TEST}|{ins}"}
    )
    assert ids(got) == [d1["id"]] and got["total"] == 1
    got = await search(
        client, ops, "/DocumentReference", **{"subject:Patient.identifier": f"{INS_TEST}|{ins}"}
    )
    assert ids(got) == [d1["id"]]
    got = await search(
        client, ops, "/DocumentReference", **{"patient.identifier": f"{INS_TEST}|nope"}
    )
    assert got["total"] == 0
    # a system client finds its own documents by the INS (IHE MHD Find Document References)
    lgc = await auth.system(
        client_id="lgc-chain", scopes="system/DocumentReference.crs system/Patient.s"
    )
    mine = await create(client, lgc, document(p["id"]))
    got = await search(
        client, lgc, "/DocumentReference", **{"patient.identifier": f"{INS_TEST}|{ins}"}
    )
    assert ids(got) == [mine["id"]]


# ---------------------------------------------------------------- Consent, Communication


async def test_consent_parameters(client, auth):
    ops = await auth.operator()
    p = await create(client, ops, patient())
    c1 = await create(client, ops, consent(p["id"]))
    c2 = await create(client, ops, consent(p["id"], status="inactive", category="64292-6"))

    async def find(**params: str) -> list[str]:
        return ids(await search(client, ops, "/Consent", **params))

    assert await find(patient=p["id"]) == [c1["id"], c2["id"]]
    assert await find(patient=p["id"], status="active") == [c1["id"]]
    assert await find(patient=p["id"], status="inactive") == [c2["id"]]
    assert await find(patient=p["id"], category=f"{LOINC}|64292-6") == [c2["id"]]
    assert await find(patient=p["id"], category="59284-0") == [c1["id"]]


async def test_communication_parameters(client, auth):
    ops = await auth.operator()
    p = await create(client, ops, patient())
    m1 = await create(client, ops, communication(p["id"], sent="2024-02-01T09:00:00Z"))
    m2 = await create(
        client,
        ops,
        communication(
            p["id"],
            sent="2024-02-03T09:00:00Z",
            status="in-progress",
            sender={"reference": f"Patient/{p['id']}"},
            recipient=[{"reference": "Practitioner/rpps-30003"}],
            partOf=[{"reference": f"Communication/{m1['id']}"}],
        ),
    )
    pid = p["id"]

    async def find(**params: str) -> list[str]:
        return ids(await search(client, ops, "/Communication", **params))

    assert await find(subject=f"Patient/{pid}") == [m1["id"], m2["id"]]
    assert await find(patient=pid) == [m1["id"], m2["id"]]
    assert await find(patient=pid, sender="Practitioner/rpps-10001") == [m1["id"]]
    assert await find(patient=pid, sender=f"Patient/{pid}") == [m2["id"]]
    assert await find(patient=pid, recipient="Practitioner/rpps-30003") == [m2["id"]]
    assert await find(patient=pid, recipient=f"Patient/{pid}") == [m1["id"]]
    assert await find(patient=pid, sent="gt2024-02-02") == [m2["id"]]
    assert await find(patient=pid, sent="le2024-02-01") == [m1["id"]]
    assert await find(patient=pid, sent="2024-02") == [m1["id"], m2["id"]]
    assert await find(**{"part-of": f"Communication/{m1['id']}"}) == [m2["id"]]
    assert await find(patient=pid, status="in-progress") == [m2["id"]]
    assert await find(patient=pid, status="completed", _sort="-sent") == [m1["id"]]
    assert await find(patient=pid, _sort="-sent") == [m2["id"], m1["id"]]


# ---------------------------------------------------------------- policy in search


async def test_patient_search_sees_only_own_compartment(client, auth):
    ops = await auth.operator()
    p = await create(client, ops, patient())
    other = await create(client, ops, patient())
    mine = await create(client, ops, document(p["id"]))
    await create(client, ops, document(other["id"]))
    me = await auth.patient(p["id"])
    got = await search(client, me, "/DocumentReference")
    assert ids(got) == [mine["id"]] and got["total"] == 1
    got = await search(client, me, "/DocumentReference", patient=other["id"])
    assert got["total"] == 0
    r = await client.post(
        "/DocumentReference", json=document(other["id"]), headers={**me, **FHIR_JSON}
    )
    assert r.status_code == 403
