"""Built-in issuer through HTTP: discovery, JWKS, client registration, client_credentials
with private_key_jwt, replay protection, key rotation, the verified-token cache."""

import uuid
from datetime import timedelta

import pytest

from espace_api.auth.jwt import peek
from tests.support.auth import VendorKey, token_form
from tests.support.fhir import FHIR_JSON, create, patient

SCOPES = "system/DocumentReference.c system/Binary.c system/Patient.s system/List.c"
TOKEN_URL = "http://test/auth/token"


async def register(client, auth, key: VendorKey, **fields) -> str:
    client_id = fields.pop("client_id", f"lgc-{uuid.uuid4().hex[:8]}")
    body = {
        "client_id": client_id,
        "kind": "system",
        "jwks": key.jwks,
        "scopes": SCOPES,
        "organization": "finess:010000001",
        **fields,
    }
    r = await client.post("/auth/clients", json=body, headers=await auth.operator())
    assert r.status_code == 201, r.text
    return client_id


async def request_token(client, form):
    return await client.post("/auth/token", data=form)


async def test_smart_configuration_is_public(client):
    r = await client.get("/.well-known/smart-configuration")
    assert r.status_code == 200
    conf = r.json()
    assert conf["token_endpoint"] == TOKEN_URL
    assert conf["jwks_uri"] == "http://test/.well-known/jwks.json"
    assert conf["grant_types_supported"] == [
        "client_credentials",
        "authorization_code",
        "refresh_token",
    ]
    # none: public apps of SMART App Launch (PKCE), see tests/test_smart_launch.py
    assert conf["token_endpoint_auth_methods_supported"] == ["private_key_jwt", "none"]
    assert set(conf["token_endpoint_auth_signing_alg_values_supported"]) == {"RS384", "ES384"}
    assert "system/DocumentReference.c" in conf["scopes_supported"]
    assert "client-confidential-asymmetric" in conf["capabilities"]
    assert "permission-v2" in conf["capabilities"]
    assert "HS256" not in conf["access_token_signing_alg_values_supported"]


async def test_jwks_is_public_and_holds_only_public_keys(client):
    r = await client.get("/.well-known/jwks.json")
    assert r.status_code == 200
    keys = r.json()["keys"]
    assert keys and all("d" not in k and k["use"] == "sig" and k["kid"] for k in keys)


@pytest.mark.parametrize("alg", ["ES384", "RS384"])
async def test_client_credentials_flow_and_token_use(client, auth, app, now, alg):
    key = VendorKey(alg)
    client_id = await register(client, auth, key)
    assertion = key.assertion(client_id, TOKEN_URL, now, practitioner="10001234567")
    r = await request_token(client, token_form(assertion, "system/Patient.s system/Binary.c"))
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 300
    assert body["scope"] == "system/Patient.s system/Binary.c"
    token = body["access_token"]
    claims = peek(token).claims
    assert claims["client_id"] == client_id and claims["sub"] == client_id
    assert claims["organization"] == "finess:010000001"
    assert claims["practitioner"] == "10001234567"
    assert claims["exp"] - claims["iat"] == 300
    identity = await app.state.authenticator.identity_for(token)
    assert identity.kind == "system" and identity.client_id == client_id
    assert identity.practitioner == "10001234567"
    # The token works on a FHIR route: find a patient by INS.
    ops = await auth.operator()
    p = await create(client, ops, patient())
    ins = p["identifier"][0]
    found = await client.get(
        "/Patient",
        params={"identifier": f"{ins['system']}|{ins['value']}"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert found.status_code == 200, found.text
    assert [e["resource"]["id"] for e in found.json().get("entry", [])] == [p["id"]]


async def test_scopes_are_narrowed_to_the_registration(client, auth, now):
    key = VendorKey()
    client_id = await register(client, auth, key, scopes="system/DocumentReference.c")
    wide = token_form(key.assertion(client_id, TOKEN_URL, now), "system/*.cruds")
    r = await request_token(client, wide)
    assert r.status_code == 400 and r.json()["error"] == "invalid_scope"
    mixed = token_form(
        key.assertion(client_id, TOKEN_URL, now), "system/DocumentReference.c system/Patient.rs"
    )
    r = await request_token(client, mixed)
    assert r.status_code == 200 and r.json()["scope"] == "system/DocumentReference.c"
    default = token_form(key.assertion(client_id, TOKEN_URL, now))
    assert (await request_token(client, default)).json()["scope"] == "system/DocumentReference.c"


async def test_replayed_assertion_is_refused(client, auth, now):
    key = VendorKey()
    client_id = await register(client, auth, key)
    form = token_form(key.assertion(client_id, TOKEN_URL, now))
    assert (await request_token(client, form)).status_code == 200
    again = await request_token(client, form)
    assert again.status_code == 401
    assert again.json()["error"] == "invalid_client"
    assert "already used" in again.json()["error_description"]


def _bad_assertions(key: VendorKey, other: VendorKey, client_id: str, now):
    ts = int(now.timestamp())
    return {
        "exp more than 5 minutes ahead": key.assertion(client_id, TOKEN_URL, now, exp=ts + 900),
        "expired": key.assertion(client_id, TOKEN_URL, now, iat=ts - 900, exp=ts - 600),
        "not yet valid": key.assertion(client_id, TOKEN_URL, now, nbf=ts + 200),
        "wrong audience": key.assertion(client_id, "http://test/other", now),
        "iss is not sub": key.assertion(client_id, TOKEN_URL, now, sub="someone-else"),
        "no jti": key.assertion(client_id, TOKEN_URL, now, jti=None),
        "no exp": key.assertion(client_id, TOKEN_URL, now, exp=None),
        "unknown client": key.assertion("not-registered", TOKEN_URL, now),
        "signed by another key": other.sign(
            peek(key.assertion(client_id, TOKEN_URL, now)).claims, kid=key.kid
        ),
        "unregistered kid": other.sign(peek(key.assertion(client_id, TOKEN_URL, now)).claims),
        "ES256 not allowed": VendorKey("ES256", kid=key.kid).sign(
            peek(key.assertion(client_id, TOKEN_URL, now)).claims
        ),
        "garbage": "not.a.jwt",
    }


@pytest.mark.parametrize(
    "case",
    [
        "exp more than 5 minutes ahead",
        "expired",
        "not yet valid",
        "wrong audience",
        "iss is not sub",
        "no jti",
        "no exp",
        "unknown client",
        "signed by another key",
        "unregistered kid",
        "ES256 not allowed",
        "garbage",
    ],
)
async def test_bad_assertions_are_refused(client, auth, now, case):
    key = VendorKey()
    client_id = await register(client, auth, key)
    assertion = _bad_assertions(key, VendorKey(), client_id, now)[case]
    r = await request_token(client, token_form(assertion))
    assert r.status_code == 401, r.text
    assert r.json()["error"] == "invalid_client"


async def test_disabled_client_gets_no_token(client, auth, now):
    key = VendorKey()
    client_id = await register(client, auth, key)
    ops = await auth.operator()
    assert (await client.delete(f"/auth/clients/{client_id}", headers=ops)).status_code == 204
    r = await request_token(client, token_form(key.assertion(client_id, TOKEN_URL, now)))
    assert r.status_code == 401


@pytest.mark.parametrize(
    "form, error",
    [
        ({"grant_type": "password"}, "unsupported_grant_type"),
        ({"grant_type": "client_credentials"}, "invalid_request"),
        (
            {
                "grant_type": "client_credentials",
                "client_assertion_type": "x",
                "client_assertion": "y",
            },
            "invalid_request",
        ),
    ],
)
async def test_malformed_token_requests(client, form, error):
    r = await request_token(client, form)
    assert r.status_code == 400 and r.json()["error"] == error


async def test_token_request_must_be_a_form(client):
    r = await client.post("/auth/token", json={"grant_type": "client_credentials"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"


async def test_client_registration_requires_operator(client, auth):
    body = {"client_id": "x-1", "jwks": VendorKey().jwks, "scopes": SCOPES, "organization": "f"}
    assert (await client.post("/auth/clients", json=body)).status_code == 401
    lgc = await auth.system()
    r = await client.post("/auth/clients", json=body, headers=lgc)
    assert r.status_code == 403
    assert r.json()["issue"][0]["details"]["coding"][0]["code"] == "OPERATOR_ONLY"
    patient_headers = await auth.patient("p-1")
    assert (await client.get("/auth/clients", headers=patient_headers)).status_code == 403


async def test_client_registration_lifecycle(client, auth):
    ops = await auth.operator()
    key = VendorKey("RS384")
    client_id = await register(client, auth, key, name="Cabinet Test")
    got = await client.get(f"/auth/clients/{client_id}", headers=ops)
    assert got.status_code == 200 and got.json()["organization"] == "finess:010000001"
    listed = await client.get("/auth/clients", headers=ops)
    assert client_id in [c["client_id"] for c in listed.json()]
    body = {**got.json(), "scopes": "system/Binary.c"}
    replaced = await client.post("/auth/clients", json=body, headers=ops)
    assert replaced.status_code == 200 and replaced.json()["scopes"] == "system/Binary.c"
    assert (await client.get("/auth/clients/nope", headers=ops)).status_code == 404


@pytest.mark.parametrize(
    "change, message",
    [
        ({"jwks": {"keys": []}}, "keys"),
        ({"scopes": "system/DocumentReference.c launch/patient"}, "unknown scopes"),
        ({"organization": None}, "organization"),
        ({"client_id": "bad id!"}, "client_id"),
        ({"kind": "operator"}, "operator"),
    ],
)
async def test_client_registration_validation(client, auth, change, message):
    body = {"client_id": "v-1", "jwks": VendorKey().jwks, "scopes": SCOPES, "organization": "f"}
    r = await client.post("/auth/clients", json={**body, **change}, headers=await auth.operator())
    assert r.status_code == 400, r.text
    assert message in r.json()["issue"][0]["diagnostics"]


async def test_private_keys_are_refused_at_registration(client, auth):
    key = VendorKey()
    from espace_api.auth.keys import signer

    private = signer(key.private, "ES384").to_dict()
    body = {
        "client_id": "leaky",
        "jwks": {"keys": [{**private, "kid": "k"}]},
        "scopes": SCOPES,
        "organization": "f",
    }
    r = await client.post("/auth/clients", json=body, headers=await auth.operator())
    assert r.status_code == 400 and "public keys only" in r.json()["issue"][0]["diagnostics"]


async def test_key_rotation_keeps_previous_key_published(client, auth, app, monkeypatch):
    keys = app.state.auth.keys
    settings = app.state.settings
    old_kid, _ = await keys.current()
    old_token = (await auth.user())["Authorization"].removeprefix("Bearer ")
    start = app.state.clock.now()
    later = start + timedelta(seconds=settings.auth_key_rotation_seconds + 1)
    monkeypatch.setattr(app.state.clock, "now", lambda: later)
    new_token = (await auth.user())["Authorization"].removeprefix("Bearer ")
    new_kid = peek(new_token).header["kid"]
    assert new_kid != old_kid == peek(old_token).header["kid"]
    published = [k["kid"] for k in (await client.get("/.well-known/jwks.json")).json()["keys"]]
    assert new_kid in published and old_kid in published
    # A fresh authenticator (another process) verifies both from the shared table.
    from espace_api.auth.services import build

    other = build(settings, app.state.engine, app.state.clock)
    assert (await other.authenticator.identity_for(new_token)).kind == "user"
    # Once every token of the old key has expired, the old key is no longer published.
    gone = later + timedelta(seconds=settings.auth_token_ttl_seconds + 120)
    monkeypatch.setattr(app.state.clock, "now", lambda: gone)
    published = [k["kid"] for k in (await client.get("/.well-known/jwks.json")).json()["keys"]]
    assert old_kid not in published
    assert await other.keys.public_key(old_kid) is None


async def test_verified_tokens_are_cached(app, auth, monkeypatch):
    authenticator = app.state.authenticator
    token = (await auth.user())["Authorization"].removeprefix("Bearer ")
    await authenticator.identity_for(token)
    calls = []
    source = authenticator.sources["http://test"]
    original = source.verify

    async def counting(*args):
        calls.append(1)
        return await original(*args)

    monkeypatch.setattr(source, "verify", counting)
    for _ in range(3):
        assert (await authenticator.identity_for(token)).kind == "user"
    assert calls == []
    # ...but only until the token expires.
    expired = app.state.clock.now() + timedelta(seconds=400)
    monkeypatch.setattr(app.state.clock, "now", lambda: expired)
    with pytest.raises(Exception, match="expired"):
        await authenticator.identity_for(token)
    assert calls == [1]


async def test_public_routes_need_no_token(client):
    for path in ("/metadata", "/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"):
        r = await client.get(path, headers={"Accept": "*/*"})
        assert r.status_code == 200, (path, r.status_code)


def _concrete(path: str) -> str:
    return path.replace("{id}", "x1").replace("{vid}", "1").replace("{client_id}", "c1")


async def test_every_other_route_requires_a_token(app, client):
    """Every operation in the OpenAPI spec, except the public ones, answers 401 without a
    token (and the same with a token that is not a JWT)."""
    public = {"/metadata", "/healthz", "/readyz", "/metrics", "/auth/token"}
    # SMART App Launch: the browser's pages (the patient signs in there), tests/test_smart_launch
    public |= {"/auth/authorize", "/auth/callback", "/auth/consent"}
    checked = 0
    for path, operations in app.openapi()["paths"].items():
        if path in public or path.startswith("/.well-known/"):
            continue
        for method in operations:
            for headers in ({}, {"Authorization": "Bearer not-a-jwt"}):
                r = await client.request(
                    method.upper(), _concrete(path), headers={**FHIR_JSON, **headers}, content=b"{}"
                )
                assert r.status_code == 401, (method, path, r.status_code, r.text)
                assert r.headers["www-authenticate"].startswith("Bearer")
                assert r.json()["resourceType"] == "OperationOutcome"
            checked += 1
    assert checked > 50
