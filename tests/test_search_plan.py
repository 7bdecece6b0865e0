"""Statements compiled once for many callers (issue 14): searches once per shape
(storage/search_plan.py), reads by id once per policy structure (storage/raw.Bound). Callers
and requests share the SQL, never each other's values: each read and search here runs
several times on a statement compiled for an earlier caller or request (and the suite's
raw.VERIFY compiles it afresh and compares)."""

from typing import Any

from espace_api.fhir.registry import REGISTRY
from espace_api.fhir.search import parse_search
from espace_api.storage import raw, search_sql
from tests.support.fhir import (
    INS_TEST,
    PRO_SCOPES,
    create,
    document,
    grant_care,
    ids,
    new_ins,
    patient,
    search,
)

DOCS = "/DocumentReference"


async def two_spaces(client: Any, auth: Any) -> tuple[list[tuple[str, str, list[str]]], Any]:
    """Two patients (id, INS, their documents' ids) and the software that deposited them."""
    ops = await auth.operator()
    lgc = await auth.system("lgc-plan", "system/DocumentReference.crus system/Patient.s")
    spaces = []
    for _ in range(2):
        ins = new_ins()
        pid = (await create(client, ops, patient(ins=ins)))["id"]
        docs = [(await create(client, lgc, document(pid)))["id"] for _ in range(2)]
        spaces.append((pid, ins, sorted(docs)))
    return spaces, lgc


async def test_one_shape_binds_each_requests_values(client, auth):
    spaces, lgc = await two_spaces(client, auth)
    for _ in range(3):  # alternately: each search answers its own patient
        for pid, ins, docs in spaces:
            by_id = await search(client, lgc, DOCS, patient=pid, _sort="-date")
            assert sorted(ids(by_id)) == docs and by_id["total"] == 2
            by_ins = await search(
                client,
                lgc,
                DOCS,
                **{"patient.identifier": f"{INS_TEST}|{ins}", "status": "current"},
            )
            assert sorted(ids(by_ins)) == docs
    # paging values are the request's too
    page = await search(client, lgc, DOCS, patient=spaces[0][0], _count=1, _sort="_id")
    assert ids(page) == spaces[0][2][:1] and page["total"] == 2
    page = await search(client, lgc, DOCS, patient=spaces[1][0], _count=1, _sort="_id")
    assert ids(page) == spaces[1][2][:1] and page["total"] == 2
    empty = await search(client, lgc, DOCS, patient="no-such-patient", _sort="-date")
    assert ids(empty) == [] and empty["total"] == 0


async def test_one_shape_binds_each_callers_policy(client, auth):
    """A doctor with a care relationship, then one without, then patients: same shape."""
    spaces, _ = await two_spaces(client, auth)
    (first, _, first_docs), (second, _, second_docs) = spaces
    carer = await auth.user("rpps-3101", PRO_SCOPES)
    stranger = await auth.user("rpps-3102", PRO_SCOPES)
    await grant_care(client, carer, first, "3101")
    for _ in range(3):
        assert sorted(ids(await search(client, carer, DOCS, patient=first))) == first_docs
        assert ids(await search(client, stranger, DOCS, patient=first)) == []
        assert ids(await search(client, carer, DOCS, patient=second)) == []
    me = await auth.patient(first)
    other = await auth.patient(second)
    for _ in range(3):
        assert sorted(ids(await search(client, me, DOCS, patient=first))) == first_docs
        assert ids(await search(client, other, DOCS, patient=first)) == []
        assert sorted(ids(await search(client, other, DOCS, patient=second))) == second_docs


async def test_reads_by_id_bind_each_callers_policy(client, auth):
    spaces, lgc = await two_spaces(client, auth)
    (first, _, first_docs), (second, _, second_docs) = spaces
    me, other = await auth.patient(first), await auth.patient(second)
    for _ in range(3):
        for token, mine, theirs in ((me, first, second), (other, second, first)):
            assert (await client.get(f"/Patient/{mine}", headers=token)).status_code == 200
            assert (await client.get(f"/Patient/{theirs}", headers=token)).status_code == 404
        assert (await client.get(f"{DOCS}/{first_docs[0]}", headers=me)).status_code == 200
        assert (await client.get(f"{DOCS}/{first_docs[0]}", headers=other)).status_code == 404
        assert (await client.get(f"{DOCS}/{second_docs[0]}", headers=lgc)).status_code == 200


def test_a_shape_names_every_value_it_binds():
    docs = REGISTRY["DocumentReference"]
    a = parse_search(docs, [("patient", "p-1"), ("date", "ge2024-01-01"), ("type", "s|c")])
    b = parse_search(docs, [("patient", "p-2"), ("date", "ge2025-06-01"), ("type", "t|d")])
    c = parse_search(docs, [("patient", "p-2"), ("date", "lt2025-06-01"), ("type", "d")])
    (shape_a, values_a), (shape_b, values_b) = search_sql.shape(a), search_sql.shape(b)
    assert shape_a == shape_b and values_a != values_b
    assert set(values_a) == set(values_b)
    assert search_sql.shape(c)[0] != shape_a  # another date prefix, a code without system
    assert raw.VERIFY  # the suite checks every planned search against a fresh build
