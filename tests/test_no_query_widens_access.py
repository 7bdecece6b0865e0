"""Issue 21: a hostile-query property suite. No query widens access.

Hypothesis generates searches for every identity kind over every registered type: any
search parameter with any supported modifier and prefix, chains, reverse chains (`_has`),
`_include` / `_revinclude` (with `:iterate`), `_elements`, `_summary`, `_sort`, `_count`,
paging links followed to the end, by GET, POST `_search` and inside batch Bundles.

The oracle is the policy's definition computed independently, here, from the seeded rows:
- a patient sees their own space;
- a vendor (software) sees what it created, and a Patient only when the query names that
  Patient's INS exactly, and then only its projection (no address, telecom, contact);
- a professional with a care relationship to one patient sees that space except the
  patient's privacy choices (Consents it did not write), and other Patients as a vendor does;
- directory resources (no patient compartment) are public.
The property: no response, in any entry, total or followed link, exposes a resource outside
that set; and no query makes the server fail (5xx).

`make test` runs a bounded number of examples (HYPOTHESIS_PROFILE=ci, the default);
`make fuzz` runs the long profile.
"""

import asyncio
import os
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from espace_api.db.schema import resources
from espace_api.fhir.registry import REGISTRY
from espace_api.fhir.search import DATE_PREFIXES, MODIFIERS
from tests.support.fhir import (
    FHIR_JSON,
    INS_TEST,
    PRO_SCOPES,
    create,
    document,
    grant_care,
    new_ins,
    patient,
)

settings.register_profile(
    "ci",
    max_examples=120,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.register_profile(
    "fuzz",
    max_examples=5000,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")

# Broad read scopes on purpose: even a vendor allowed to read every type sees only its own.
VENDOR_SCOPES = "system/*.rs system/DocumentReference.c system/Binary.c system/List.c"
PRIVATE = ("address", "telecom", "contact")
MAX_PAGES = 6
STATS: Counter[str] = Counter()  # what the generated queries met (a vacuous run fails)


@dataclass
class Seed:
    """The seeded world and, per identity, what the policy says it may see."""

    patients: list[dict[str, Any]] = field(default_factory=list)
    ins: dict[str, str] = field(default_factory=dict)  # patient id -> INS value
    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    allowed: dict[str, set[tuple[str, str]]] = field(default_factory=dict)
    full_patients: dict[str, set[str]] = field(default_factory=dict)
    values: dict[str, list[str]] = field(default_factory=dict)  # by parameter type
    slots: dict[str, str] = field(default_factory=dict)  # $NAME placeholders of @example


IDENTITIES = ("patient", "vendor1", "vendor2", "professional", "pro_software")


@pytest.fixture(scope="module")
async def seed(client: Any, auth: Any, app: Any) -> Seed:
    s = Seed()
    ops = await auth.operator()
    tag = uuid.uuid4().hex[:6]
    for n in range(3):
        body = patient(family=f"Seed{n}", given="Alix", ins=new_ins())
        body["address"] = [{"city": "Nantes"}]
        body["telecom"] = [{"system": "phone", "value": "0611111111"}]
        p = await create(client, ops, body)
        s.patients.append(p)
        s.ins[p["id"]] = p["identifier"][0]["value"]
    p1, p2, p3 = (p["id"] for p in s.patients)
    v1 = await auth.system(f"hq-v1-{tag}", VENDOR_SCOPES)
    v2 = await auth.system(f"hq-v2-{tag}", VENDOR_SCOPES)
    me = await auth.patient(p1)
    doctor = await auth.user(f"rpps-hq-{tag}", PRO_SCOPES)
    # the doctor's practice software, naming the doctor: a professional's view, a machine's
    # search rules
    pro_software = await auth.system(f"hq-ps-{tag}", "system/*.rs", practitioner=f"rpps-hq-{tag}")
    for pid in (p1, p2):
        await create(client, v1, document(pid, code="11488-4"))
    for pid in (p2, p3):
        await create(client, v2, document(pid, code="18748-4"))
    for pid in (p1, p2, p3):
        await create(client, await auth.patient(pid), document(pid, code="34133-9"))
        related = {
            "resourceType": "RelatedPerson",
            "patient": {"reference": f"Patient/{pid}"},
            "name": [{"family": "Proche"}],
        }
        await create(client, await auth.patient(pid), related)
    await grant_care(client, doctor, p1, f"hq-{tag}")
    s.headers = {
        "patient": me,
        "vendor1": v1,
        "vendor2": v2,
        "professional": doctor,
        "pro_software": pro_software,
    }
    # the oracle, from the rows themselves
    seeded = {p1, p2, p3}
    async with app.state.engine.connect() as conn:
        rows = (
            await conn.execute(
                select(
                    resources.c.resource_type,
                    resources.c.id,
                    resources.c.patient_id,
                    resources.c.created_by,
                ).where(resources.c.patient_id.in_(seeded), resources.c.deleted.is_(False))
            )
        ).all()
    s.allowed["patient"] = {(t, i) for t, i, p, _ in rows if p == p1}
    s.full_patients["patient"] = {p1}
    for name, client_id in (("vendor1", f"hq-v1-{tag}"), ("vendor2", f"hq-v2-{tag}")):
        s.allowed[name] = {(t, i) for t, i, _, c in rows if c == f"system:{client_id}"}
        s.full_patients[name] = set()
    doctor_actor = f"user:rpps-hq-{tag}"
    s.allowed["professional"] = {
        (t, i)
        for t, i, p, c in rows
        if (p == p1 and (t != "Consent" or c == doctor_actor)) or c == doctor_actor
    }
    s.full_patients["professional"] = {p1}
    s.allowed["pro_software"] = {(t, i) for t, i, p, _ in rows if p == p1 and t != "Consent"}
    s.full_patients["pro_software"] = {p1}
    s.slots = {"$P1": p1, "$P2": p2, "$INS1": f"{INS_TEST}|{s.ins[p1]}"}
    s.slots["$INS2"] = f"{INS_TEST}|{s.ins[p2]}"
    ids = [i for _, i, _, _ in rows]
    ins = [f"{INS_TEST}|{v}" for v in s.ins.values()]
    s.values = {
        "id": [*ids, "unknown-id"],
        "reference": [*(f"Patient/{p}" for p in seeded), *ids[:6], "Practitioner/rpps-10001"],
        "token": [
            *ins,
            *ins[:1] * 3,  # the exact lookup, often
            ",".join(ins),
            *s.ins.values(),
            f"{INS_TEST}|",
            "|" + next(iter(s.ins.values())),
            "11488-4",
            "http://loinc.org|18748-4",
            "current",
            "female",
            "active",
        ],
        "string": ["Seed0", "Seed", "Alix", "Proche", "Nantes"],
        "date": ["2024", "2024-03-01", "2030", "1980-05-17"],
        "any": ["x"],
        # by parameter name: values that match the seeded resources
        "status": ["current", "active", "superseded"],
        "type": ["11488-4", "http://loinc.org|18748-4", "34133-9"],
        "identifier": [*ins, ins[0], ",".join(ins)],
        "gender": ["female", "male"],
        "family": ["Seed0", "Seed", "Proche"],
        "name": ["Seed1", "Alix", "Proche"],
        "patient": [*(f"Patient/{p}" for p in seeded), *seeded],
        "subject": [*(f"Patient/{p}" for p in seeded)],
    }
    return s


# ---------------------------------------------------------------- the query strategy


def sometimes(draw: Any, one_in: int = 4) -> bool:
    return draw(st.integers(0, one_in - 1)) == 0


def pool(seed_values: dict[str, list[str]], kind: str) -> list[str]:
    """Values that may match, for a parameter type, plus a few that never do."""
    return [*seed_values.get(kind, []), *seed_values["any"]]


def criteria(type_name: str, values: dict[str, list[str]]) -> st.SearchStrategy[tuple[str, str]]:
    rtype = REGISTRY[type_name]
    params = [*rtype.by_name.values()]
    names = [p.name for p in params] + ["_id", "_lastUpdated"]
    types = {p.name: p.type for p in params} | {"_id": "id", "_lastUpdated": "date"}

    @st.composite
    def one(draw: Any) -> tuple[str, str]:
        name = draw(st.sampled_from(names))
        kind = types[name]
        key = name
        choices = pool(values, kind)
        modifiers = sorted(MODIFIERS.get("token" if kind == "id" else kind, ()))
        if modifiers and sometimes(draw, 3):
            key = f"{name}:{draw(st.sampled_from(modifiers))}"
        elif kind == "reference" and sometimes(draw, 3):
            chained = draw(st.sampled_from(["identifier", "name", "_id", "family", "status"]))
            key = f"{name}.{chained}"
            choices = pool(values, "token") + pool(values, "string")
        raw = draw(st.sampled_from(values.get(name, []) + choices))
        if kind == "date" and not key.endswith(":missing"):
            raw = draw(st.sampled_from(["", *DATE_PREFIXES])) + draw(
                st.sampled_from(values["date"])
            )
        elif sometimes(draw, 4):
            raw = ",".join(draw(st.lists(st.sampled_from(choices), min_size=1, max_size=3)))
        if key.endswith(":missing"):
            raw = draw(st.sampled_from(["true", "false"]))
        return key, raw

    return one()


@st.composite
def queries(draw: Any, values: dict[str, list[str]]) -> tuple[str, list[tuple[str, str]]]:
    compartment = sorted(n for n, t in REGISTRY.items() if t.in_patient_compartment)
    type_name = draw(st.sampled_from([*compartment, *compartment, *sorted(REGISTRY)]))
    rtype = REGISTRY[type_name]
    params: list[tuple[str, str]] = draw(st.lists(criteria(type_name, values), max_size=2))
    refs = [p.name for p in rtype.by_name.values() if p.type == "reference"]
    pointing = [
        (name, p.name)
        for name, t in sorted(REGISTRY.items())
        for p in t.by_name.values()
        if p.type == "reference" and (not p.targets or type_name in p.targets)
    ]
    if pointing and sometimes(draw, 3):  # a reverse chain
        source, ref = draw(st.sampled_from(pointing))
        inner = draw(st.sampled_from(sorted(REGISTRY[source].by_name)))
        raw = draw(st.sampled_from(values.get(inner, []) + values["token"]))
        params.append((f"_has:{source}:{ref}:{inner}", raw))
    if refs and sometimes(draw, 3):
        target = draw(st.sampled_from([*refs, "*"]))
        key = "_include:iterate" if draw(st.booleans()) else "_include"
        params.append((key, f"{type_name}:{target}"))
    if sometimes(draw, 3):
        source = draw(st.sampled_from(["DocumentReference", "Consent", "RelatedPerson", "List"]))
        ref = draw(st.sampled_from(["patient", "subject", "*"]))
        key = "_revinclude:iterate" if draw(st.booleans()) else "_revinclude"
        params.append((key, f"{source}:{ref}"))
    extras = st.sampled_from(
        [
            ("_elements", "name,birthDate,identifier"),
            ("_elements", "address,telecom"),
            ("_summary", "true"),
            ("_summary", "count"),
            ("_summary", "data"),
            ("_sort", "-_lastUpdated"),
            ("_sort", next(iter(rtype.by_name))),
            ("_count", "1"),
            ("_count", "2"),
            ("_total", "accurate"),
        ]
    )
    params += draw(st.lists(extras, max_size=2))
    return type_name, params


# ---------------------------------------------------------------- the check


def exposed(seed: Seed, who: str, resource: dict[str, Any], query: str) -> str | None:
    """Why `resource` should not have reached `who` (None when it may)."""
    rtype = resource.get("resourceType")
    if rtype == "OperationOutcome" or rtype not in REGISTRY:
        return None
    if not REGISTRY[rtype].in_patient_compartment:
        return None  # directory resources are public
    key = (rtype, resource.get("id"))
    if rtype == "Patient":
        if resource["id"] in seed.full_patients[who]:
            return None
        ins = seed.ins.get(resource["id"])  # the seeded INS (the entry may be subsetted)
        if ins is None or f"|{ins}" not in query:
            return f"Patient/{resource['id']} without its INS in the query"
        if any(k in resource for k in PRIVATE):
            return f"Patient/{resource['id']} beyond its projection"
        return None
    if key not in seed.allowed[who]:
        return f"{rtype}/{resource.get('id')}"
    return None


def allowed_total(seed: Seed, who: str, type_name: str, query: str) -> int | None:
    """The most a total may say (None: not bounded, e.g. directory types)."""
    if not REGISTRY[type_name].in_patient_compartment:
        return None
    if type_name == "Patient":
        named = sum(1 for v in seed.ins.values() if f"|{v}" in query)
        return len(seed.full_patients[who]) + named
    return sum(1 for t, _ in seed.allowed[who] if t == type_name)


async def check_bundle(
    client: Any, seed: Seed, who: str, type_name: str, query: str, body: dict[str, Any]
) -> None:
    headers = seed.headers[who]
    pages = 0
    while True:
        assert body.get("resourceType") == "Bundle", body
        STATS["entries" if body.get("entry") else "empty"] += 1
        if os.environ.get("HQ_DEBUG") and not body.get("entry"):
            print(who, "EMPTY", type_name, query)
        STATS["pages followed"] += pages > 0
        for entry in body.get("entry") or []:
            why = exposed(seed, who, entry.get("resource") or {}, query)
            assert why is None, f"{who} {type_name}?{query} exposed {why}"
        bound = allowed_total(seed, who, type_name, query)
        if bound is not None and "total" in body:
            assert body["total"] <= bound, f"{who} {type_name}?{query} total {body['total']}"
        nxt = [link["url"] for link in body.get("link") or [] if link.get("relation") == "next"]
        pages += 1
        if not nxt or pages >= MAX_PAGES:
            return
        url = urlsplit(nxt[0])
        r = await client.get(f"{url.path}?{url.query}", headers=headers)
        assert r.status_code < 500, r.text
        if r.status_code != 200:
            return
        body = r.json()


async def run_query(
    client: Any, seed: Seed, who: str, type_name: str, params: list[tuple[str, str]], how: str
) -> None:
    headers = seed.headers[who]
    for slot, value in seed.slots.items():
        params = [(k, v.replace(slot, value)) for k, v in params]
    query = urlencode(params)
    plain = "&".join(f"{k}={v}" for k, v in params)  # what the oracle reads
    if how == "get":
        r = await client.get(f"/{type_name}", params=params, headers=headers)
    elif how == "post":
        r = await client.post(
            f"/{type_name}/_search",
            content=query,
            headers={**headers, "Content-Type": "application/x-www-form-urlencoded"},
        )
    else:
        bundle = {
            "resourceType": "Bundle",
            "type": "batch",
            "entry": [{"request": {"method": "GET", "url": f"{type_name}?{query}"}}],
        }
        r = await client.post("/", json=bundle, headers={**headers, **FHIR_JSON})
        assert r.status_code < 500, r.text
        if r.status_code != 200:
            return
        entry = r.json()["entry"][0]
        assert not entry["response"]["status"].startswith("5"), entry
        if entry["response"]["status"].startswith("200"):
            await check_bundle(client, seed, who, type_name, plain, entry["resource"])
        return
    assert r.status_code < 500, (type_name, query, r.text)
    if r.status_code == 200:
        await check_bundle(client, seed, who, type_name, plain, r.json())
    else:
        STATS[str(r.status_code)] += 1
        if os.environ.get("HQ_DEBUG"):
            print(who, r.status_code, type_name, query, r.text[150:330])
        assert r.json()["resourceType"] == "OperationOutcome"


@pytest.fixture(scope="module")
async def app_loop() -> asyncio.AbstractEventLoop:
    """The loop the app and its connections live in (the sync property drives it)."""
    return asyncio.get_running_loop()


def test_no_query_widens_access(client: Any, seed: Seed, app_loop: Any) -> None:
    values = seed.values

    @settings(settings.get_profile(PROFILE))
    @example("vendor1", ("Patient", [("identifier", "$INS1")]), "get")
    @example("vendor2", ("Patient", [("identifier", "$INS1,$INS2"), ("_count", "1")]), "post")
    @example(
        "vendor1",
        ("Patient", [("identifier", "$INS2"), ("_revinclude", "DocumentReference:patient")]),
        "batch",
    )
    @example("vendor1", ("Patient", [("family", "Seed0")]), "get")
    @example("vendor2", ("DocumentReference", [("_count", "1")]), "get")
    @example("vendor1", ("DocumentReference", [("patient.identifier", "$INS2")]), "get")
    @example("vendor1", ("DocumentReference", [("_include", "DocumentReference:patient")]), "get")
    @example("patient", ("DocumentReference", [("_count", "1"), ("_include", "*")]), "get")
    @example("patient", ("Patient", [("_revinclude:iterate", "DocumentReference:patient")]), "get")
    @example("professional", ("DocumentReference", [("_count", "2")]), "get")
    @example("professional", ("Patient", [("identifier", "$INS2")]), "get")
    @example(
        "professional", ("Patient", [("_has:DocumentReference:patient:status", "current")]), "get"
    )
    @example("professional", ("Consent", [("patient", "$P1")]), "batch")
    @example("professional", ("DocumentReference", [("patient", "$P2")]), "post")
    @example(
        "pro_software", ("DocumentReference", [("_include", "DocumentReference:patient")]), "get"
    )
    @example("pro_software", ("Patient", [("family", "Seed0")]), "get")
    @example(
        "pro_software", ("Patient", [("identifier", "$INS2"), ("_elements", "address")]), "get"
    )
    @given(
        who=st.sampled_from(IDENTITIES),
        q=queries(values),
        how=st.sampled_from(["get", "post", "batch"]),
    )
    def prop(who: str, q: tuple[str, list[tuple[str, str]]], how: str) -> None:
        type_name, params = q
        app_loop.run_until_complete(run_query(client, seed, who, type_name, params, how))

    prop()
    print(dict(STATS))
    assert STATS["entries"] >= 10 and STATS["403"] >= 1, STATS


def test_the_oracle_is_not_empty(seed: Seed) -> None:
    """A property over empty sets proves nothing: each identity sees something."""
    for who in IDENTITIES:
        assert seed.allowed[who], who
    assert any(t == "DocumentReference" for t, _ in seed.allowed["vendor1"])
