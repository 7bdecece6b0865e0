"""Issue 5 search features through HTTP: includes, subsetting, totals, modifiers, chains, _has."""

import uuid

from espace_api.fhir.registry import REGISTRY
from tests.support.auth import code_of
from tests.support.fhir import (
    FHIR_JSON,
    INS_TEST,
    LOINC,
    communication,
    create,
    document,
    grant_care,
    ids,
    patient,
    search,
)

SUBSETTED = "SUBSETTED"
RPPS = "urn:oid:1.2.250.1.71.4.2.1"


def entries(bundle: dict, mode: str) -> list[dict]:
    return [e for e in bundle.get("entry", []) if e["search"]["mode"] == mode]


def keys(bundle: dict, mode: str = "include") -> set[tuple[str, str]]:
    return {(e["resource"]["resourceType"], e["resource"]["id"]) for e in entries(bundle, mode)}


def tags(resource: dict) -> list[str]:
    return [t["code"] for t in resource.get("meta", {}).get("tag", [])]


async def practitioner(client, ops) -> str:
    pid = f"rpps-{uuid.uuid4().hex[:10]}"
    body = {"resourceType": "Practitioner", "id": pid, "name": [{"family": "Docteur"}]}
    r = await client.put(f"/Practitioner/{pid}", json=body, headers={**ops, **FHIR_JSON})
    assert r.status_code == 201, r.text
    return pid


# ---------------------------------------------------------------- _include / _revinclude


async def test_include_referenced_patient_once(client, auth):
    ops = await auth.operator()
    p = await create(client, ops, patient())
    d1 = await create(client, ops, document(p["id"]))
    d2 = await create(client, ops, document(p["id"]))
    for directive in ("DocumentReference:subject", "DocumentReference:patient:Patient"):
        got = await search(client, ops, "/DocumentReference", patient=p["id"], _include=directive)
        assert got["total"] == 2
        assert ids(got) == [d1["id"], d2["id"]]
        assert keys(got) == {("Patient", p["id"])}
        inc = entries(got, "include")[0]
        assert inc["fullUrl"].endswith(f"/Patient/{p['id']}")
        assert inc["resource"]["identifier"] == p["identifier"]
    # wrong target type, or not asked: nothing included
    got = await search(
        client,
        ops,
        "/DocumentReference",
        patient=p["id"],
        _include="DocumentReference:subject:Practitioner",
    )
    assert keys(got) == set()
    got = await search(client, ops, "/DocumentReference", patient=p["id"])
    assert entries(got, "include") == []


async def test_include_wildcard_and_practitioner(client, auth):
    ops = await auth.operator()
    p = await create(client, ops, patient())
    doc_author = await practitioner(client, ops)
    d = await create(
        client, ops, document(p["id"], author=[{"reference": f"Practitioner/{doc_author}"}])
    )
    got = await search(
        client, ops, "/DocumentReference", _id=d["id"], _include="DocumentReference:*"
    )
    assert keys(got) == {("Patient", p["id"]), ("Practitioner", doc_author)}
    got = await search(
        client, ops, "/DocumentReference", _id=d["id"], _include="DocumentReference:author"
    )
    assert keys(got) == {("Practitioner", doc_author)}


async def test_revinclude_and_iterate(client, auth):
    ops = await auth.operator()
    p = await create(client, ops, patient())
    doc_author = await practitioner(client, ops)
    d1 = await create(
        client, ops, document(p["id"], author=[{"reference": f"Practitioner/{doc_author}"}])
    )
    d2 = await create(client, ops, document(p["id"]))
    m = await create(client, ops, communication(p["id"]))
    got = await search(
        client, ops, "/Patient", _id=p["id"], _revinclude="DocumentReference:subject"
    )
    assert ids(got) == [p["id"]] and got["total"] == 1
    assert keys(got) == {("DocumentReference", d1["id"]), ("DocumentReference", d2["id"])}
    # two revincludes
    r = await client.get(
        f"/Patient?_id={p['id']}&_revinclude=DocumentReference:patient"
        "&_revinclude=Communication:subject",
        headers=ops,
    )
    assert keys(r.json()) == {
        ("DocumentReference", d1["id"]),
        ("DocumentReference", d2["id"]),
        ("Communication", m["id"]),
    }
    # without :iterate, the author of a revincluded document is not followed
    r = await client.get(
        f"/Patient?_id={p['id']}&_revinclude=DocumentReference:subject"
        "&_include=DocumentReference:author",
        headers=ops,
    )
    assert ("Practitioner", doc_author) not in keys(r.json())
    r = await client.get(
        f"/Patient?_id={p['id']}&_revinclude=DocumentReference:subject"
        "&_include:iterate=DocumentReference:author",
        headers=ops,
    )
    assert ("Practitioner", doc_author) in keys(r.json())
    assert len(entries(r.json(), "include")) == 3
    # the self link keeps the directives
    assert "_include%3Aiterate=DocumentReference%3Aauthor" in next(
        x["url"] for x in r.json()["link"] if x["relation"] == "self"
    )


async def test_includes_go_through_the_access_policy(client, auth):
    ops = await auth.operator()
    ins = uuid.uuid4().hex[:15]
    p = await create(client, ops, patient(ins=ins))
    theirs = await create(client, ops, document(p["id"]))
    lgc = await auth.system(
        client_id="lgc-include", scopes="system/DocumentReference.crs system/Patient.rs"
    )
    mine = await create(
        client,
        lgc,
        document(
            p["id"],
            relatesTo=[
                {"code": "appends", "target": {"reference": f"DocumentReference/{theirs['id']}"}}
            ],
        ),
    )
    # the operator sees the related document; the machine client does not
    got = await search(
        client, ops, "/DocumentReference", _id=mine["id"], _include="DocumentReference:relatesto"
    )
    assert keys(got) == {("DocumentReference", theirs["id"])}
    got = await search(
        client, lgc, "/DocumentReference", _id=mine["id"], _include="DocumentReference:relatesto"
    )
    assert keys(got) == set()
    got = await search(
        client,
        lgc,
        "/Patient",
        identifier=f"{INS_TEST}|{ins}",
        _revinclude="DocumentReference:subject",
    )
    assert ids(got) == [p["id"]]
    assert keys(got) == {("DocumentReference", mine["id"])}
    # a patient sees their own documents, never another patient's through an include
    other = await create(client, ops, patient())
    cross = await create(
        client,
        ops,
        document(
            other["id"],
            relatesTo=[
                {"code": "appends", "target": {"reference": f"DocumentReference/{theirs['id']}"}}
            ],
        ),
    )
    me = await auth.patient(p["id"])
    got = await search(
        client,
        me,
        "/DocumentReference",
        _id=theirs["id"],
        _revinclude="DocumentReference:relatesto",
    )
    assert keys(got) == {("DocumentReference", mine["id"])}  # not `cross`
    assert cross["id"] not in str(got)


async def test_includes_need_a_read_scope_on_their_type(client, auth):
    ops = await auth.operator()
    p = await create(client, ops, patient())
    await create(client, ops, document(p["id"]))
    narrow = await auth.patient(p["id"], scopes="patient/DocumentReference.rs")
    got = await search(
        client, narrow, "/DocumentReference", patient=p["id"], _include="DocumentReference:subject"
    )
    assert len(ids(got)) == 1 and keys(got) == set()
    wide = await auth.patient(p["id"], scopes="patient/DocumentReference.rs patient/Patient.r")
    got = await search(
        client, wide, "/DocumentReference", patient=p["id"], _include="DocumentReference:subject"
    )
    assert keys(got) == {("Patient", p["id"])}


async def test_bad_include_is_400(client, auth):
    ops = await auth.operator()
    for value in (
        "DocumentReference",
        "Nope:subject",
        "DocumentReference:status",
        "DocumentReference:subject:Nope",
    ):
        r = await client.get("/DocumentReference", params={"_include": value}, headers=ops)
        assert r.status_code == 400, value
        assert r.json()["issue"][0]["details"]["coding"][0]["code"] == "INVALID_SEARCH"
    r = await client.get("/Patient", params={"_include:deep": "Patient:x"}, headers=ops)
    assert r.status_code == 400


# ---------------------------------------------------------------- _elements / _summary / _total


async def test_elements(client, auth):
    ops = await auth.operator()
    p = await create(client, ops, patient(telecom=[{"system": "phone", "value": "0600000000"}]))
    got = await search(client, ops, "/Patient", _id=p["id"], _elements="identifier,birthDate")
    res = got["entry"][0]["resource"]
    assert set(res) == {"resourceType", "id", "meta", "identifier", "birthDate"}
    assert SUBSETTED in tags(res)
    assert res["meta"]["versionId"] == "1"
    # mandatory elements are kept (DocumentReference.status and content)
    d = await create(client, ops, document(p["id"]))
    got = await search(client, ops, "/DocumentReference", _id=d["id"], _elements="type")
    res = got["entry"][0]["resource"]
    assert set(res) == {"resourceType", "id", "meta", "type", "status", "content"}
    # included resources are not subsetted
    got = await search(
        client,
        ops,
        "/DocumentReference",
        _id=d["id"],
        _elements="type",
        _include="DocumentReference:subject",
    )
    included = entries(got, "include")[0]["resource"]
    assert included["telecom"] and SUBSETTED not in tags(included)
    # without _elements, no tag
    full = (await search(client, ops, "/Patient", _id=p["id"]))["entry"][0]["resource"]
    assert SUBSETTED not in tags(full) and full["telecom"]


async def test_summary_modes(client, auth):
    ops = await auth.operator()
    narrative = {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">P</div>'}
    p = await create(
        client,
        ops,
        patient(
            text=narrative,
            contact=[{"name": {"family": "Proche"}}],
            maritalStatus={"text": "married"},
        ),
    )

    async def summary(mode: str) -> dict:
        got = await search(client, ops, "/Patient", _id=p["id"], _summary=mode)
        return got["entry"][0]["resource"]

    res = await summary("true")
    assert {"identifier", "name", "gender", "birthDate"} <= set(res)
    assert not {"text", "contact", "maritalStatus"} & set(res)
    assert SUBSETTED in tags(res)
    res = await summary("text")
    assert set(res) == {"resourceType", "id", "meta", "text"}
    assert SUBSETTED in tags(res)
    res = await summary("data")
    assert "text" not in res and res["contact"] and res["maritalStatus"]
    assert SUBSETTED in tags(res)
    res = await summary("false")
    assert res["text"] and SUBSETTED not in tags(res)
    r = await client.get("/Patient", params={"_summary": "maybe"}, headers=ops)
    assert r.status_code == 400


async def test_total_modes(client, auth):
    ops = await auth.operator()
    fam = "Tot" + uuid.uuid4().hex[:10]
    for _ in range(3):
        await create(client, ops, patient(family=fam))
    none = await search(client, ops, "/Patient", family=fam, _total="none", _count=2)
    assert "total" not in none
    assert len(none["entry"]) == 2
    assert any(x["relation"] == "next" for x in none["link"])
    for mode in ("estimate", "accurate"):
        got = await search(client, ops, "/Patient", family=fam, _total=mode, _count=2)
        assert got["total"] == 3
    r = await client.get("/Patient", params={"_total": "some"}, headers=ops)
    assert r.status_code == 400


# ---------------------------------------------------------------- modifiers


async def test_string_modifiers(client, auth):
    ops = await auth.operator()
    fam = uuid.uuid4().hex[:8]
    a = await create(client, ops, patient(family=f"Dupont{fam}"))
    b = await create(client, ops, patient(family=f"dupont{fam}"))
    c = await create(client, ops, patient(family=f"Lapont{fam}", birthDate=None))
    scope = {"_id": ",".join(x["id"] for x in (a, b, c))}

    async def find(**params: str) -> set[str]:
        return set(ids(await search(client, ops, "/Patient", **scope, **params)))

    assert await find(**{"family:exact": f"Dupont{fam}"}) == {a["id"]}
    assert await find(**{"family:exact": f"dupont{fam}"}) == {b["id"]}
    assert await find(**{"family:exact": "Dupont"}) == set()
    assert await find(**{"family:contains": f"PONT{fam}"}) == {a["id"], b["id"], c["id"]}
    assert await find(**{"family:contains": "apo"}) == {c["id"]}
    assert await find(family="pont") == set()
    assert await find(**{"birthdate:missing": "true"}) == {c["id"]}
    assert await find(**{"birthdate:missing": "false"}) == {a["id"], b["id"]}
    assert await find(**{"gender:missing": "true"}) == set()


async def test_token_modifiers(client, auth):
    ops = await auth.operator()
    p = await create(client, ops, patient())
    cr = await create(
        client,
        ops,
        document(
            p["id"],
            type={
                "coding": [{"system": LOINC, "code": "11488-4"}],
                "text": "Compte rendu de consultation",
            },
        ),
    )
    lab = await create(
        client,
        ops,
        document(p["id"], code="11502-2", status="superseded"),
    )
    echo = await create(
        client,
        ops,
        document(p["id"], code="18748-4", type={"text": "Échographie abdominale"}),
    )
    pid = p["id"]

    async def find(**params: str) -> set[str]:
        return set(ids(await search(client, ops, "/DocumentReference", patient=pid, **params)))

    assert await find(**{"type:not": f"{LOINC}|11488-4"}) == {lab["id"], echo["id"]}
    assert await find(**{"type:not": "11502-2"}) == {cr["id"], echo["id"]}
    assert await find(**{"status:not": "current"}) == {lab["id"]}
    assert await find(**{"type:text": "compte rendu"}) == {cr["id"]}
    assert await find(**{"type:text": "COMPTE"}) == {cr["id"]}
    assert await find(**{"type:text": "rendu"}) == set()
    assert await find(**{"type:text": "Échographie"}) == {echo["id"]}  # accent-insensitive
    assert await find(**{"type:text": "echo"}) == {echo["id"]}
    assert await find(type=f"{LOINC}|") == {cr["id"], lab["id"]}
    assert await find(type="11502-2") == {lab["id"]}
    assert await find(type="|11502-2") == set()  # the code has a system
    r = await client.get("/DocumentReference", params={"type:contains": "x"}, headers=ops)
    assert r.status_code == 400


async def test_reference_identifier_modifier(client, auth):
    ops = await auth.operator()
    ins = uuid.uuid4().hex[:15]
    rpps = uuid.uuid4().hex[:11]
    p = await create(client, ops, patient(ins=ins))
    d = await create(
        client,
        ops,
        document(
            p["id"],
            subject={
                "reference": f"Patient/{p['id']}",
                "identifier": {"system": INS_TEST, "value": ins},
            },
            author=[{"identifier": {"system": RPPS, "value": rpps}, "display": "Dr X"}],
        ),
    )
    await create(client, ops, document(p["id"]))

    async def find(**params: str) -> list[str]:
        return ids(await search(client, ops, "/DocumentReference", **params))

    assert await find(**{"author:identifier": f"{RPPS}|{rpps}"}) == [d["id"]]
    assert await find(**{"author:identifier": rpps}) == [d["id"]]
    assert await find(**{"author:identifier": f"urn:other|{rpps}"}) == []
    assert await find(**{"subject:identifier": f"{INS_TEST}|{ins}"}) == [d["id"]]
    assert await find(**{"patient:identifier": f"{INS_TEST}|{ins}"}) == [d["id"]]


# ---------------------------------------------------------------- chains and _has


async def test_chained_parameters(client, auth):
    ops = await auth.operator()
    fam = "Chn" + uuid.uuid4().hex[:10]
    p = await create(client, ops, patient(family=fam))
    other = await create(client, ops, patient())
    d = await create(client, ops, document(p["id"]))
    await create(client, ops, document(other["id"]))
    assert ids(await search(client, ops, "/DocumentReference", **{"patient.family": fam})) == [
        d["id"]
    ]
    assert ids(
        await search(client, ops, "/DocumentReference", **{"subject:Patient.family": fam.lower()})
    ) == [d["id"]]
    m = await create(client, ops, communication(p["id"]))
    assert ids(await search(client, ops, "/Communication", **{"subject:Patient.family": fam})) == [
        m["id"]
    ]
    # ambiguous target type, unknown chained parameter, double chain
    for key in ("subject.family", "patient.nope", "patient.organization.name"):
        r = await client.get("/DocumentReference", params={key: "x"}, headers=ops)
        assert r.status_code == 400, key


async def test_has_reverse_chain(client, auth):
    ops = await auth.operator()
    code = f"99{uuid.uuid4().int % 10**6}-1"
    ins = uuid.uuid4().hex[:15]
    with_doc = await create(client, ops, patient(ins=ins))
    without = await create(client, ops, patient())
    await create(client, ops, document(with_doc["id"], code=code))
    await create(client, ops, document(without["id"]))
    got = await search(client, ops, "/Patient", **{"_has:DocumentReference:subject:type": code})
    assert ids(got) == [with_doc["id"]]
    got = await search(
        client, ops, "/Patient", **{"_has:DocumentReference:patient:type": f"{LOINC}|{code}"}
    )
    assert ids(got) == [with_doc["id"]]
    # combined with another criterion, and with a modifier inside
    got = await search(
        client,
        ops,
        "/Patient",
        **{
            "_id": f"{with_doc['id']},{without['id']}",
            "_has:DocumentReference:subject:status:not": "superseded",
        },
    )
    assert set(ids(got)) == {with_doc["id"], without["id"]}
    # _has only counts documents the caller may see
    lgc = await auth.system(
        client_id="lgc-has", scopes="system/DocumentReference.crs system/Patient.s"
    )
    query = {"_has:DocumentReference:patient:type": code}
    assert ids(await search(client, ops, "/Patient", **query)) == [with_doc["id"]]
    doctor = await auth.user("rpps-has", "user/*.rs user/Consent.cud")
    assert ids(await search(client, doctor, "/Patient", **query)) == []  # no access: nothing
    await grant_care(client, doctor, with_doc["id"], "has")
    assert ids(await search(client, doctor, "/Patient", **query)) == [with_doc["id"]]
    # software never uses _has on Patient, even beside an exact INS
    r = await client.get(
        "/Patient", params={"identifier": f"{INS_TEST}|{ins}", **query}, headers=lgc
    )
    assert r.status_code == 403 and code_of(r) == "PATIENT_LOOKUP_ONLY"
    for key in (
        "_has:Nope:subject:type",
        "_has:DocumentReference:status:type",
        "_has:DocumentReference:subject",
        "_has:Consent:patient:nope",
    ):
        r = await client.get("/Patient", params={key: "x"}, headers=ops)
        assert r.status_code == 400, key


async def test_capability_statement_lists_includes(client):
    cs = (await client.get("/metadata")).json()
    by_type = {r["type"]: r for r in cs["rest"][0]["resource"]}
    for name, rtype in REGISTRY.items():
        expected = {f"{name}:{p.name}" for p in rtype.params if p.type == "reference"}
        assert set(by_type[name].get("searchInclude", [])) == expected
    assert "DocumentReference:subject" in by_type["Patient"]["searchRevInclude"]
    assert "DocumentReference:patient" in by_type["Patient"]["searchRevInclude"]
    assert "DocumentReference:patient" not in by_type["Practitioner"]["searchRevInclude"]
