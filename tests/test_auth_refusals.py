"""The refusal list of the auth issue, through HTTP against the real FHIR routes.

401 + `WWW-Authenticate: Bearer error=...` for bad tokens; 403 OperationOutcome for missing
rights; 404 (never 403) where a 403 would reveal that another patient's resource exists.
"""

import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass
from datetime import timedelta

import pytest

from tests.support.auth import (
    VendorKey,
    b64url,
    bearer,
    code_of,
    raw_token,
    server_claims,
    server_signed,
)
from tests.support.fhir import FHIR_JSON, create, document, patient

DOCS_RS = "system/DocumentReference.crs system/Binary.c system/Patient.s system/List.c"


@dataclass
class World:
    a: str  # Patient ids
    b: str
    doc_a: str  # deposited by lgc-a for A
    doc_b: str  # deposited by lgc-b for B
    doc_a_by_b: str  # deposited by lgc-b for A


@pytest.fixture(scope="module")
async def world(client, auth) -> World:
    ops = await auth.operator()
    a = (await create(client, ops, patient(family="Alpha")))["id"]
    b = (await create(client, ops, patient(family="Beta")))["id"]
    lgc_a = await auth.system("lgc-a", DOCS_RS)
    lgc_b = await auth.system("lgc-b", DOCS_RS, organization="finess:020000002")
    doc_a = (await create(client, lgc_a, document(a)))["id"]
    doc_b = (await create(client, lgc_b, document(b)))["id"]
    doc_a_by_b = (await create(client, lgc_b, document(a)))["id"]
    return World(a, b, doc_a, doc_b, doc_a_by_b)


# 401: bad tokens ------------------------------------------------------------------------


async def _server_public_pem(app) -> bytes:
    keys = app.state.auth.keys
    kid, key = await keys.current()
    public = key.public_key().to_pem()
    return kid, public


async def _none_alg(app, world):
    kid, _ = await _server_public_pem(app)
    claims = await server_claims(app, patient=world.a)
    return raw_token({"alg": "none", "typ": "JWT", "kid": kid}, claims)


async def _hs256_public_key(app, world):
    kid, pem = await _server_public_pem(app)
    claims = await server_claims(app, patient=world.a)
    unsigned = raw_token({"alg": "HS256", "typ": "JWT", "kid": kid}, claims).rstrip(".")
    signature = hmac.new(pem, unsigned.encode(), hashlib.sha256).digest()
    return f"{unsigned}.{b64url(signature)}"


async def _rs256_key_confusion(app, world):
    """Signed by an attacker's RSA key but naming the server's kid."""
    kid, _ = await _server_public_pem(app)
    return VendorKey("RS256").sign(await server_claims(app, patient=world.a), kid=kid)


async def _expired(app, world):
    ts = int(app.state.clock.now().timestamp())
    return await server_signed(app, patient=world.a, iat=ts - 1000, exp=ts - 600)


async def _not_yet_valid(app, world):
    ts = int(app.state.clock.now().timestamp())
    return await server_signed(app, patient=world.a, nbf=ts + 600, exp=ts + 900)


async def _issued_in_future(app, world):
    ts = int(app.state.clock.now().timestamp())
    return await server_signed(app, patient=world.a, iat=ts + 600)


async def _wrong_issuer(app, world):
    return await server_signed(app, patient=world.a, iss="https://evil.example")


async def _wrong_audience(app, world):
    return await server_signed(app, patient=world.a, aud="https://other-fhir.example")


async def _no_exp(app, world):
    return await server_signed(app, patient=world.a, exp=None)


async def _unknown_kid(app, world):
    attacker = VendorKey("ES384", kid="not-a-server-key")
    return attacker.sign(await server_claims(app, patient=world.a))


async def _bad_signature(app, world):
    """A genuine token whose payload was changed to name another patient."""
    genuine = await server_signed(app, patient=world.b)
    head, _, sig = genuine.split(".")
    forged = b64url(json.dumps(await server_claims(app, patient=world.a)).encode())
    return f"{head}.{forged}.{sig}"


async def _attacker_key_same_kid(app, world):
    kid, _ = await _server_public_pem(app)
    return VendorKey("ES384").sign(await server_claims(app, patient=world.a), kid=kid)


async def _no_kind(app, world):
    return await server_signed(app, patient=world.a, kind=None)


async def _garbage(app, world):
    return "eyJhbGciOiJFUzM4NCJ9.not-json.sig"


TOKEN_CASES = {
    "none-algorithm": (_none_alg, "TOKEN_ALGORITHM"),
    "HS256 with the public key as secret": (_hs256_public_key, "TOKEN_ALGORITHM"),
    "RS256 key confusion on the server kid": (_rs256_key_confusion, "TOKEN_ALGORITHM"),
    "expired": (_expired, "TOKEN_EXPIRED"),
    "not-yet-valid": (_not_yet_valid, "TOKEN_NOT_YET_VALID"),
    "issued in the future": (_issued_in_future, "TOKEN_NOT_YET_VALID"),
    "no exp": (_no_exp, "TOKEN_CLAIMS"),
    "wrong issuer": (_wrong_issuer, "TOKEN_ISSUER"),
    "wrong audience": (_wrong_audience, "TOKEN_AUDIENCE"),
    "unknown kid": (_unknown_kid, "TOKEN_KID"),
    "bad signature (tampered payload)": (_bad_signature, "TOKEN_SIGNATURE"),
    "bad signature (attacker key, server kid)": (_attacker_key_same_kid, "TOKEN_SIGNATURE"),
    "no kind claim": (_no_kind, "TOKEN_CLAIMS"),
    "not a JWT": (_garbage, "TOKEN_MALFORMED"),
}


@pytest.mark.parametrize("case", list(TOKEN_CASES))
async def test_bad_tokens_are_401(app, client, world, case):
    make, expected = TOKEN_CASES[case]
    token = await make(app, world)
    r = await client.get(f"/Patient/{world.a}", headers=bearer(token))
    assert r.status_code == 401, r.text
    challenge = r.headers["www-authenticate"]
    assert challenge.startswith("Bearer ") and 'error="invalid_token"' in challenge
    assert code_of(r) == expected
    assert r.json()["issue"][0]["code"] == "login"


async def test_the_genuine_token_of_those_cases_works(app, client, world):
    """Control: the same claims, properly signed, are accepted."""
    r = await client.get(
        f"/Patient/{world.a}", headers=bearer(await server_signed(app, patient=world.a))
    )
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    "headers, code",
    [
        ({}, "TOKEN_MISSING"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "TOKEN_MALFORMED"),
        ({"Authorization": "Bearer"}, "TOKEN_MALFORMED"),
        ({"Authorization": "Bearer a b"}, "TOKEN_MALFORMED"),
    ],
)
async def test_missing_or_malformed_authorization(client, world, headers, code):
    r = await client.get(f"/Patient/{world.a}", headers=headers)
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert code_of(r) == code


async def test_token_expires_by_the_injected_clock(app, client, auth, world, monkeypatch):
    headers = await auth.patient(world.a)
    assert (await client.get(f"/Patient/{world.a}", headers=headers)).status_code == 200
    later = app.state.clock.now() + timedelta(
        seconds=app.state.settings.auth_token_ttl_seconds + 60
    )
    monkeypatch.setattr(app.state.clock, "now", lambda: later)
    r = await client.get(f"/Patient/{world.a}", headers=headers)
    assert r.status_code == 401 and code_of(r) == "TOKEN_EXPIRED"


# 403: missing rights --------------------------------------------------------------------


async def test_missing_scope_patient_search(client, auth, world):
    headers = await auth.patient(world.a, scopes="patient/Patient.rs")
    r = await client.get("/DocumentReference", params={"patient": world.a}, headers=headers)
    assert r.status_code == 403 and code_of(r) == "INSUFFICIENT_SCOPE"


async def test_missing_scope_read_only_patient_cannot_write(client, auth, world):
    headers = await auth.patient(world.a, scopes="patient/*.rs")
    r = await client.post(
        "/DocumentReference", json=document(world.a), headers={**headers, **FHIR_JSON}
    )
    assert r.status_code == 403 and code_of(r) == "INSUFFICIENT_SCOPE"


async def test_missing_scope_machine_cannot_deposit_without_create(client, auth, world):
    headers = await auth.system("lgc-readonly", "system/Patient.s")
    r = await client.post(
        "/DocumentReference", json=document(world.a), headers={**headers, **FHIR_JSON}
    )
    assert r.status_code == 403 and code_of(r) == "INSUFFICIENT_SCOPE"


async def test_missing_scope_default_machine_cannot_browse(client, auth, world):
    headers = await auth.system()  # .c on documents, no .s
    r = await client.get("/DocumentReference", params={"patient": world.a}, headers=headers)
    assert r.status_code == 403 and code_of(r) == "INSUFFICIENT_SCOPE"


async def test_missing_scope_user_cannot_write(client, auth, world):
    headers = await auth.user()
    r = await client.post(
        "/DocumentReference", json=document(world.a), headers={**headers, **FHIR_JSON}
    )
    assert r.status_code == 403 and code_of(r) == "INSUFFICIENT_SCOPE"


async def test_missing_scope_checked_per_transaction_entry(client, auth, world):
    headers = await auth.system("lgc-docs-only", "system/DocumentReference.c")
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": document(world.a),
                "request": {"method": "POST", "url": "DocumentReference"},
            },
            {
                "resource": {"resourceType": "Binary", "contentType": "text/plain", "data": "SGk="},
                "request": {"method": "POST", "url": "Binary"},
            },
        ],
    }
    r = await client.post("/", json=bundle, headers={**headers, **FHIR_JSON})
    assert r.status_code == 403, r.text
    assert code_of(r) == "INSUFFICIENT_SCOPE"


async def test_machine_may_find_patients_by_ins_only(client, auth, world):
    headers = await auth.system()
    r = await client.get("/Patient", params={"family": "Beta"}, headers=headers)
    assert r.status_code == 403 and code_of(r) == "PATIENT_LOOKUP_ONLY"


async def test_operator_endpoints_refuse_other_kinds(client, auth):
    for headers in (await auth.patient("x"), await auth.system(), await auth.user()):
        r = await client.get("/auth/clients", headers=headers)
        assert r.status_code == 403 and code_of(r) == "OPERATOR_ONLY"


# Patient confinement --------------------------------------------------------------------


async def test_patient_reads_own_space(client, auth, world):
    headers = await auth.patient(world.a)
    assert (await client.get(f"/Patient/{world.a}", headers=headers)).status_code == 200
    r = await client.get("/DocumentReference", params={"patient": world.a}, headers=headers)
    assert r.status_code == 200
    ids = {e["resource"]["id"] for e in r.json().get("entry", [])}
    assert {world.doc_a, world.doc_a_by_b} <= ids and world.doc_b not in ids


@pytest.mark.parametrize("which", ["Patient", "DocumentReference", "history", "vread"])
async def test_other_patient_id_in_path_is_404_like_a_missing_one(client, auth, world, which):
    headers = await auth.patient(world.a)
    path, missing = {
        "Patient": (f"/Patient/{world.b}", "/Patient/no-such-id"),
        "DocumentReference": (f"/DocumentReference/{world.doc_b}", "/DocumentReference/nope"),
        "history": (f"/Patient/{world.b}/_history", "/Patient/no-such-id/_history"),
        "vread": (
            f"/DocumentReference/{world.doc_b}/_history/1",
            "/DocumentReference/n/_history/1",
        ),
    }[which]
    other = await client.get(path, headers=headers)
    absent = await client.get(missing, headers=headers)
    assert other.status_code == 404, other.text
    assert absent.status_code == 404
    assert code_of(other) == code_of(absent)


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
async def test_other_patient_id_in_path_write_is_404_like_a_missing_one(
    client, auth, world, method
):
    headers = {**await auth.patient(world.a), **FHIR_JSON}
    body = {**document(world.a), "id": world.doc_b}  # own patient in the body, B's doc in path
    other = await client.request(
        method, f"/DocumentReference/{world.doc_b}", json=body, headers=headers
    )
    absent = await client.request(
        method,
        "/DocumentReference/no-such-doc",
        json={**body, "id": "no-such-doc"},
        headers=headers,
    )
    assert other.status_code == 404, other.text
    assert absent.status_code == 404
    assert code_of(other) == code_of(absent)
    ops = await auth.operator()
    still = await client.get(f"/DocumentReference/{world.doc_b}", headers=ops)
    assert still.status_code == 200 and still.json()["meta"]["versionId"] == "1"


@pytest.mark.parametrize(
    "params",
    [
        lambda w: {"patient": w.b},
        lambda w: {"subject": f"Patient/{w.b}"},
        lambda w: {"_id": w.doc_b},
        lambda w: {"patient": w.b, "_summary": "count"},
    ],
    ids=["patient", "subject", "_id", "count"],
)
async def test_other_patient_in_search_parameter_reveals_nothing(client, auth, world, params):
    """Searching another patient's compartment answers exactly as for an unknown id: empty."""
    headers = await auth.patient(world.a)
    r = await client.get("/DocumentReference", params=params(world), headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["total"] == 0 and not r.json().get("entry")


async def test_patient_search_without_filter_stays_in_own_compartment(client, auth, world):
    headers = await auth.patient(world.a)
    r = await client.get("/DocumentReference", headers=headers)
    assert r.status_code == 200
    subjects = {e["resource"]["subject"]["reference"] for e in r.json()["entry"]}
    assert subjects == {f"Patient/{world.a}"}
    r = await client.get("/Patient", params={"_id": world.b}, headers=headers)
    assert r.status_code == 200 and r.json()["total"] == 0


async def _count_by_master_identifier(client, auth, value: str) -> int:
    ops = await auth.operator()
    r = await client.get("/DocumentReference", params={"identifier": value}, headers=ops)
    assert r.status_code == 200, r.text
    return r.json()["total"]


async def test_other_patient_in_transaction_entry(client, auth, world):
    headers = {**await auth.patient(world.a), **FHIR_JSON}
    own, other = document(world.a), document(world.b)
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": own, "request": {"method": "POST", "url": "DocumentReference"}},
            {"resource": other, "request": {"method": "POST", "url": "DocumentReference"}},
        ],
    }
    r = await client.post("/", json=bundle, headers=headers)
    assert r.status_code == 403, r.text
    assert code_of(r) == "OTHER_PATIENT"
    for doc in (own, other):  # a refused transaction changes nothing
        assert (
            await _count_by_master_identifier(client, auth, doc["masterIdentifier"]["value"]) == 0
        )


@pytest.mark.parametrize(
    "place",
    ["subject", "context.sourcePatientInfo", "author"],
)
async def test_other_patient_in_reference_inside_posted_resource(client, auth, world, place):
    headers = {**await auth.patient(world.a), **FHIR_JSON}
    doc = document(world.a)
    ref = {"reference": f"Patient/{world.b}"}
    if place == "subject":
        doc["subject"] = ref
    elif place == "context.sourcePatientInfo":
        doc["context"] = {"sourcePatientInfo": ref}
    else:
        doc["author"] = [ref]
    r = await client.post("/DocumentReference", json=doc, headers=headers)
    assert r.status_code == 403, r.text
    assert code_of(r) == "OTHER_PATIENT"
    assert await _count_by_master_identifier(client, auth, doc["masterIdentifier"]["value"]) == 0


async def test_other_patient_reference_in_batch_entry(client, auth, world):
    headers = {**await auth.patient(world.a), **FHIR_JSON}
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {
                "resource": document(world.b),
                "request": {"method": "POST", "url": "DocumentReference"},
            }
        ],
    }
    r = await client.post("/", json=bundle, headers=headers)
    assert r.status_code == 200, r.text
    entry = r.json()["entry"][0]
    assert entry["response"]["status"].startswith("403")


# Machines deposit for anyone but see only their own deposits ------------------------------


async def test_machine_search_returns_only_its_own_deposits(client, auth, world):
    lgc_a = await auth.system("lgc-a", DOCS_RS)
    r = await client.get("/DocumentReference", params={"patient": world.a}, headers=lgc_a)
    assert r.status_code == 200, r.text
    ids = {e["resource"]["id"] for e in r.json().get("entry", [])}
    assert ids == {world.doc_a}  # not doc_a_by_b, deposited by lgc-b for the same patient
    assert r.json()["total"] == 1
    r = await client.get("/DocumentReference", params={"patient": world.b}, headers=lgc_a)
    assert r.status_code == 200 and r.json()["total"] == 0


async def test_machine_cannot_read_what_it_did_not_deposit(client, auth, world):
    lgc_a = await auth.system("lgc-a", DOCS_RS)
    assert (await client.get(f"/DocumentReference/{world.doc_a}", headers=lgc_a)).status_code == 200
    r = await client.get(f"/DocumentReference/{world.doc_b}", headers=lgc_a)
    assert r.status_code == 404


async def test_machine_deposits_for_any_patient(client, auth, world):
    lgc_a = await auth.system("lgc-a", DOCS_RS)
    created = await create(client, lgc_a, document(world.b))
    assert created["subject"]["reference"] == f"Patient/{world.b}"


async def test_machine_identity_does_not_depend_on_the_practitioner(client, auth, world):
    """Two tokens of one client naming different professionals are one depositor."""
    first = await auth.system("lgc-a", DOCS_RS, practitioner="10000000001")
    second = await auth.system("lgc-a", DOCS_RS, practitioner="10000000002")
    doc = await create(client, first, document(world.a))
    assert (await client.get(f"/DocumentReference/{doc['id']}", headers=second)).status_code == 200


async def test_patient_token_from_an_unknown_patient_sees_nothing(client, auth, world):
    headers = await auth.patient(f"ghost-{uuid.uuid4().hex[:6]}")
    r = await client.get("/DocumentReference", headers=headers)
    assert r.status_code == 200 and r.json()["total"] == 0
    assert (await client.get(f"/Patient/{world.a}", headers=headers)).status_code == 404
