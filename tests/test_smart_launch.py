"""SMART App Launch, standalone patient launch, driven over HTTP end to end.

The patient signs in at a test OIDC provider served over real HTTP (tests/support/
oidc_provider.py); the "browser" follows each redirect by hand: authorize -> provider ->
callback (consent page) -> consent form post -> app redirect URI with the code; then the app
exchanges the code with its PKCE verifier, reads with the token (limited to what the patient
granted), refreshes (rotation, reuse revokes the grant), and the patient revokes.
"""

import re
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from espace_api.auth.identity import Scope, ScopeSet
from espace_api.auth.jwt import key_for, peek, verify_signature
from espace_api.main import create_app
from espace_api.smart.pkce import challenge_of
from espace_api.smart.scopes import narrow_app
from tests.support.auth import AuthFactory, VendorKey, bearer, code_of
from tests.support.fhir import FHIR_JSON, create, document, new_ins, patient
from tests.support.oidc_provider import TestProvider

BASE = "http://test"
REDIRECT = "https://app.example.org/callback"
ASKED = (
    "launch/patient openid fhirUser offline_access "
    "patient/DocumentReference.rs patient/Communication.rs"
)
APP_SCOPES = ASKED + " patient/DocumentReference.c"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@pytest.fixture(scope="module")
def provider() -> Iterator[TestProvider]:
    with TestProvider() as p:
        yield p


@pytest.fixture(scope="module")
async def smart_app(settings, provider) -> AsyncIterator[Any]:
    import json

    conf = settings.model_copy(update={"auth_oidc_providers": json.dumps([provider.config()])})
    application = create_app(conf)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(scope="module")
async def web(smart_app) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=smart_app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:
        yield c


@pytest.fixture(scope="module")
def factory(smart_app) -> AuthFactory:
    return AuthFactory(smart_app)


@pytest.fixture(scope="module")
async def people(web, factory, provider) -> dict[str, Any]:
    ops = await factory.operator()
    ins_a, ins_b = new_ins(), new_ins()
    a = await create(web, ops, patient(ins=ins_a))
    b = await create(web, ops, patient(ins=ins_b))
    lgc = await factory.system()
    doc_a = await create(web, lgc, document(a["id"]))
    doc_b = await create(web, lgc, document(b["id"]))
    provider.next_ins = ins_a
    return {"a": a["id"], "ins_a": ins_a, "b": b["id"], "doc_a": doc_a["id"], "doc_b": doc_b["id"]}


async def register_app(web, factory, **fields: Any) -> str:
    client_id = fields.pop("client_id", f"app-{uuid.uuid4().hex[:8]}")
    body = {
        "client_id": client_id,
        "kind": "app",
        "name": "Glyco Coach",
        "scopes": APP_SCOPES,
        "redirect_uris": [REDIRECT],
        "catalogue": {
            "publisher": "Coach & Co <SAS>",
            "purpose": "Follows your glucose readings with you.",
            "logo_uri": "https://app.example.org/logo.png",
        },
        **fields,
    }
    r = await web.post("/auth/clients", json=body, headers=await factory.operator())
    assert r.status_code == 201, r.text
    return client_id


@pytest.fixture(scope="module")
async def app_id(web, factory) -> str:
    return await register_app(web, factory)


@dataclass
class Launch:
    """One authorization request as the app makes it."""

    client_id: str
    scope: str = ASKED
    verifier: str = field(default_factory=lambda: secrets.token_urlsafe(48))
    state: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    redirect_uri: str = REDIRECT

    def params(self, **overrides: str | None) -> dict[str, str]:
        params = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "scope": self.scope,
            "state": self.state,
            "aud": BASE,
            "code_challenge": challenge_of(self.verifier),
            "code_challenge_method": "S256",
            **overrides,
        }
        return {k: v for k, v in params.items() if v is not None}


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


async def consent_page(web, launch: Launch) -> httpx.Response:
    """authorize -> provider sign-in -> callback: the consent page."""
    r = await web.get("/auth/authorize", params=launch.params())
    assert r.status_code == 302, r.text
    async with httpx.AsyncClient() as browser:  # the provider is a real HTTP server
        signed_in = await browser.get(r.headers["location"])
    assert signed_in.status_code == 302
    callback = signed_in.headers["location"]
    assert callback.startswith(f"{BASE}/auth/callback?")
    return await web.get(callback)


async def post_form(web, pairs: list[tuple[str, str]]) -> httpx.Response:
    """The consent form as a browser posts it (a repeated `scope` field per ticked box)."""
    body = urlencode(pairs)
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    return await web.post("/auth/consent", content=body, headers=headers)


def handle_of(page: httpx.Response) -> str:
    match = re.search(r'name="request" value="([^"]+)"', page.text)
    assert match, page.text
    return match.group(1)


async def authorise(web, launch: Launch, ticked: list[str] | None = None) -> str:
    """The whole browser part; returns the code the app receives."""
    page = await consent_page(web, launch)
    assert page.status_code == 200, page.text
    ticked = ticked if ticked is not None else launch.scope.split()
    form = [("request", handle_of(page)), ("decision", "approve")]
    form += [("scope", s) for s in ticked]
    r = await post_form(web, form)
    assert r.status_code == 303, r.text
    assert r.headers["location"].startswith(REDIRECT + "?")
    answer = query_of(r.headers["location"])
    assert answer["state"] == launch.state  # the app's state comes back unchanged
    return answer["code"]


async def exchange(web, launch: Launch, issued: str, **overrides: str | None) -> httpx.Response:
    form = {
        "grant_type": "authorization_code",
        "code": issued,
        "redirect_uri": launch.redirect_uri,
        "client_id": launch.client_id,
        "code_verifier": launch.verifier,
        **overrides,
    }
    return await web.post("/auth/token", data={k: v for k, v in form.items() if v is not None})


async def refresh(web, client_id: str, token: str) -> httpx.Response:
    form = {"grant_type": "refresh_token", "refresh_token": token, "client_id": client_id}
    return await web.post("/auth/token", data=form)


async def check_id_token(web, id_token: str, app_id: str, patient_id: str) -> None:
    """Signed by a key of the server's JWKS, for the app, naming the Patient (fhirUser)."""
    token = peek(id_token)
    jwks = (await web.get("/.well-known/jwks.json")).json()
    key = next(k for k in jwks["keys"] if k["kid"] == token.kid)
    verify_signature(id_token, key_for(key, token.alg), token.alg)
    assert token.claims["iss"] == BASE and token.claims["aud"] == app_id
    assert token.claims["fhirUser"] == f"{BASE}/Patient/{patient_id}"


# ---------------------------------------------------------------------------- end to end


async def test_standalone_patient_launch_end_to_end(web, smart_app, factory, people, app_id):
    launch = Launch(app_id)
    page = await consent_page(web, launch)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.headers["x-frame-options"] == "DENY" and "<script" not in page.text
    assert "Glyco Coach" in page.text and "Coach &amp; Co &lt;SAS&gt;" in page.text
    assert "Follows your glucose readings" in page.text and "logo.png" in page.text
    assert "patient/Communication.rs" in page.text
    # The patient unticks Communication: the app gets less than it asked.
    granted = [s for s in ASKED.split() if s != "patient/Communication.rs"]
    form = [("request", handle_of(page)), ("decision", "approve")]
    form += [("scope", s) for s in granted]
    r = await post_form(web, form)
    assert r.status_code == 303
    answer = query_of(r.headers["location"])
    assert answer["state"] == launch.state

    r = await exchange(web, launch, answer["code"])
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    tokens = r.json()
    assert tokens["token_type"] == "Bearer" and tokens["patient"] == people["a"]
    assert tokens["scope"].split() == granted
    assert tokens["refresh_token"]
    await check_id_token(web, tokens["id_token"], app_id, people["a"])
    access = bearer(tokens["access_token"])

    # Reads within the grant: the patient's own document; never another patient's.
    r = await web.get(f"/DocumentReference/{people['doc_a']}", headers=access)
    assert r.status_code == 200, r.text
    r = await web.get(f"/DocumentReference/{people['doc_b']}", headers=access)
    assert r.status_code == 404
    # Outside the grant: the unticked type, and writes the app did not ask for.
    r = await web.get("/Communication", params={"patient": people["a"]}, headers=access)
    assert r.status_code == 403 and code_of(r) == "INSUFFICIENT_SCOPE"
    r = await web.post(
        "/DocumentReference", json=document(people["a"]), headers={**access, **FHIR_JSON}
    )
    assert r.status_code == 403 and code_of(r) == "INSUFFICIENT_SCOPE"

    # The patient sees the grant as a Consent naming the app and the scopes granted.
    mine = await factory.patient(people["a"])
    bundle = (await web.get("/Consent", params={"patient": people["a"]}, headers=mine)).json()
    grants = [
        e["resource"]
        for e in bundle.get("entry", [])
        if e["resource"]["category"][0]["coding"][0]["code"] == "app-grant"
    ]
    assert len(grants) == 1
    consent = grants[0]
    assert consent["status"] == "active"
    assert consent["provision"]["actor"][0]["reference"]["identifier"]["value"] == app_id
    assert [c["coding"][0]["code"] for c in consent["provision"]["code"]] == granted
    assert consent["provision"]["period"]["start"] and consent["provision"]["period"]["end"]

    # The app's accesses are audited with the app as the agent.
    events = (
        await web.get("/AuditEvent", params={"patient": people["a"], "_count": 100}, headers=mine)
    ).json()
    reads = [
        e["resource"]
        for e in events["entry"]
        if e["resource"]["agent"][0].get("name") == "app"
        and e["resource"]["subtype"][0]["code"] == "read"
    ]
    assert reads, "the app's read is audited"
    agent = reads[0]["agent"][0]
    assert agent["who"]["identifier"]["value"] == app_id and agent["requestor"] is True

    # Refresh rotates: a new refresh token each time, and the new access token works.
    r = await refresh(web, app_id, tokens["refresh_token"])
    assert r.status_code == 200, r.text
    second = r.json()
    assert second["refresh_token"] != tokens["refresh_token"]
    r = await web.get(
        f"/DocumentReference/{people['doc_a']}", headers=bearer(second["access_token"])
    )
    assert r.status_code == 200
    # The spent refresh token presented again: refused, and the whole grant is revoked.
    r = await refresh(web, app_id, tokens["refresh_token"])
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    for token in (tokens["access_token"], second["access_token"]):
        r = await web.get(f"/DocumentReference/{people['doc_a']}", headers=bearer(token))
        assert r.status_code == 401 and code_of(r) == "TOKEN_REVOKED"
    r = await refresh(web, app_id, second["refresh_token"])
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    r = await web.get(f"/Consent/{consent['id']}", headers=mine)
    assert r.json()["status"] == "inactive"  # the patient sees it ended


async def test_patient_revokes_and_the_next_request_is_refused(web, factory, people, app_id):
    launch = Launch(app_id)
    tokens = (await exchange(web, launch, await authorise(web, launch))).json()
    access = bearer(tokens["access_token"])
    url = f"/DocumentReference/{people['doc_a']}"
    assert (await web.get(url, headers=access)).status_code == 200  # now in the token cache
    mine = await factory.patient(people["a"])
    bundle = (await web.get("/Consent", params={"patient": people["a"]}, headers=mine)).json()
    consent_id = next(
        e["resource"]["id"] for e in bundle["entry"] if e["resource"]["status"] == "active"
    )
    r = await web.post(f"/Consent/{consent_id}/$revoke", headers=mine)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "inactive"
    r = await web.get(url, headers=access)
    assert r.status_code == 401 and code_of(r) == "TOKEN_REVOKED"
    r = await refresh(web, app_id, tokens["refresh_token"])
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


async def test_delete_of_the_grant_consent_revokes_it(web, factory, people, app_id):
    launch = Launch(app_id)
    tokens = (await exchange(web, launch, await authorise(web, launch))).json()
    access = bearer(tokens["access_token"])
    mine = await factory.patient(people["a"])
    bundle = (await web.get("/Consent", params={"patient": people["a"]}, headers=mine)).json()
    consent_id = next(
        e["resource"]["id"] for e in bundle["entry"] if e["resource"]["status"] == "active"
    )
    assert (await web.delete(f"/Consent/{consent_id}", headers=mine)).status_code in (200, 204)
    r = await web.get(f"/DocumentReference/{people['doc_a']}", headers=access)
    assert r.status_code == 401 and code_of(r) == "TOKEN_REVOKED"


async def test_revoke_is_the_patients_own(web, factory, people, app_id):
    launch = Launch(app_id)
    await exchange(web, launch, await authorise(web, launch))
    mine = await factory.patient(people["a"])
    bundle = (await web.get("/Consent", params={"patient": people["a"]}, headers=mine)).json()
    consent_id = next(
        e["resource"]["id"] for e in bundle["entry"] if e["resource"]["status"] == "active"
    )
    other = await factory.patient(people["b"])
    r = await web.post(f"/Consent/{consent_id}/$revoke", headers=other)
    assert r.status_code == 404
    # A patient cannot forge an app grant, nor rewrite one.
    current = (await web.get(f"/Consent/{consent_id}", headers=mine)).json()
    r = await web.put(f"/Consent/{consent_id}", json=current, headers={**mine, **FHIR_JSON})
    assert r.status_code == 403 and code_of(r) == "CONSENT_KIND_NOT_ALLOWED"


# ---------------------------------------------------------------------------- refusals


async def test_unknown_client_and_redirect_uri_are_not_redirected(web, people, app_id):
    launch = Launch(app_id)
    r = await web.get("/auth/authorize", params=launch.params(client_id="nobody"))
    assert r.status_code == 400 and code_of(r) == "UNKNOWN_CLIENT"
    assert "location" not in r.headers
    for uri in ("https://evil.example.org/callback", REDIRECT + "/", REDIRECT + "?x=1", None):
        r = await web.get("/auth/authorize", params=launch.params(redirect_uri=uri))
        assert r.status_code == 400 and code_of(r) == "INVALID_REDIRECT_URI", uri
        assert "location" not in r.headers


@pytest.mark.parametrize(
    "overrides, error",
    [
        ({"code_challenge": None}, "invalid_request"),
        ({"code_challenge_method": None}, "invalid_request"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge": "short"}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"aud": "https://other.example.org/fhir"}, "invalid_request"),
        ({"aud": None}, "invalid_request"),
        ({"scope": "system/*.cruds user/*.rs"}, "invalid_scope"),
    ],
)
async def test_bad_requests_go_back_to_the_app(web, people, app_id, overrides, error):
    launch = Launch(app_id)
    r = await web.get("/auth/authorize", params=launch.params(**overrides))
    assert r.status_code == 302
    location = r.headers["location"]
    assert location.startswith(REDIRECT + "?")
    answer = query_of(location)
    assert answer["error"] == error and answer["state"] == launch.state


async def test_missing_state_is_refused(web, people, app_id):
    r = await web.get("/auth/authorize", params=Launch(app_id).params(state=None))
    assert r.status_code == 302
    assert query_of(r.headers["location"])["error"] == "invalid_request"


async def test_scopes_are_capped_by_the_registration(web, people, app_id):
    launch = Launch(app_id, scope="launch/patient patient/*.cruds patient/DocumentReference.rs")
    page = await consent_page(web, launch)
    assert "patient/DocumentReference.rs" in page.text and "patient/*.cruds" not in page.text


async def test_callback_state_mismatch(web, people, app_id):
    r = await web.get("/auth/callback", params={"code": "x", "state": "forged"})
    assert r.status_code == 400 and code_of(r) == "STATE_MISMATCH"
    # A real callback works once; replayed, its state no longer matches anything.
    launch = Launch(app_id)
    r = await web.get("/auth/authorize", params=launch.params())
    async with httpx.AsyncClient() as browser:
        callback = (await browser.get(r.headers["location"])).headers["location"]
    assert (await web.get(callback)).status_code == 200
    r = await web.get(callback)
    assert r.status_code == 400 and code_of(r) == "STATE_MISMATCH"


async def test_unknown_person_goes_back_with_access_denied(web, provider, people, app_id):
    provider.next_ins = "999999999999999"
    try:
        launch = Launch(app_id)
        r = await web.get("/auth/authorize", params=launch.params())
        async with httpx.AsyncClient() as browser:
            callback = (await browser.get(r.headers["location"])).headers["location"]
        r = await web.get(callback)
        assert r.status_code == 302
        answer = query_of(r.headers["location"])
        assert answer["error"] == "access_denied" and answer["state"] == launch.state
    finally:
        provider.next_ins = people["ins_a"]


async def test_refusal_and_replayed_consent_form(web, people, app_id):
    launch = Launch(app_id)
    page = await consent_page(web, launch)
    handle = handle_of(page)
    r = await web.post("/auth/consent", data={"request": handle, "decision": "deny"})
    assert r.status_code == 303
    answer = query_of(r.headers["location"])
    assert answer["error"] == "access_denied" and answer["state"] == launch.state
    r = await web.post("/auth/consent", data={"request": handle, "decision": "approve"})
    assert r.status_code == 400 and code_of(r) == "CONSENT_EXPIRED"


@pytest.mark.parametrize(
    "overrides, error",
    [
        ({"code_verifier": None}, "invalid_request"),
        ({"code_verifier": secrets.token_urlsafe(48)}, "invalid_grant"),
        ({"redirect_uri": "https://app.example.org/other"}, "invalid_grant"),
        ({"code": "not-a-code"}, "invalid_grant"),
        ({"client_id": "nobody"}, "invalid_client"),
    ],
)
async def test_code_exchange_refusals(web, people, app_id, overrides, error):
    launch = Launch(app_id)
    code = await authorise(web, launch)
    r = await exchange(web, launch, code, **overrides)
    assert r.json()["error"] == error, r.text
    assert r.status_code == (401 if error == "invalid_client" else 400)
    assert r.headers["cache-control"] == "no-store"


async def test_reused_code_is_refused_and_revokes_the_grant(web, people, app_id):
    launch = Launch(app_id)
    code = await authorise(web, launch)
    first = await exchange(web, launch, code)
    assert first.status_code == 200
    again = await exchange(web, launch, code)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    r = await web.get(
        f"/DocumentReference/{people['doc_a']}", headers=bearer(first.json()["access_token"])
    )
    assert r.status_code == 401 and code_of(r) == "TOKEN_REVOKED"


async def test_code_of_another_app(web, factory, people, app_id):
    other = await register_app(web, factory)
    launch = Launch(app_id)
    code = await authorise(web, launch)
    r = await exchange(web, launch, code, client_id=other)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


async def test_no_refresh_token_without_offline_access(web, people, app_id):
    launch = Launch(app_id)
    code = await authorise(web, launch, ticked=["patient/DocumentReference.rs"])
    tokens = (await exchange(web, launch, code)).json()
    assert "refresh_token" not in tokens
    assert tokens["scope"] == "launch/patient openid fhirUser patient/DocumentReference.rs"


# ---------------------------------------------------------------------------- granular


LAB = "11502-2"


async def test_granular_category_scope_limits_reads_and_searches(web, factory, people, app_id):
    lgc = await factory.system()
    lab_category = [{"coding": [{"system": "http://loinc.org", "code": LAB}]}]
    lab = await create(web, lgc, document(people["a"], code=LAB, category=lab_category))
    granular = f"patient/DocumentReference.rs?category=http://loinc.org|{LAB}"
    launch = Launch(app_id, scope=f"launch/patient {granular}")
    page = await consent_page(web, launch)
    assert f"category {LAB} only" in page.text
    code = await authorise(web, launch)
    tokens = (await exchange(web, launch, code)).json()
    assert tokens["scope"] == f"launch/patient {granular}"
    access = bearer(tokens["access_token"])
    found = await web.get("/DocumentReference", params={"patient": people["a"]}, headers=access)
    assert found.status_code == 200
    assert [e["resource"]["id"] for e in found.json()["entry"]] == [lab["id"]]
    assert found.json()["total"] == 1
    assert (await web.get(f"/DocumentReference/{lab['id']}", headers=access)).status_code == 200
    other = await web.get(f"/DocumentReference/{people['doc_a']}", headers=access)
    assert other.status_code == 404


def test_granular_scope_parsing_and_limits():
    parsed = Scope.parse("patient/Observation.rs?category=http://x.org%7Cvital-signs")
    assert parsed is not None and parsed.category == ("http://x.org", "vital-signs")
    assert Scope.parse("patient/Observation.rs?category=vital-signs").category == (
        "",
        "vital-signs",
    )
    for refused in (
        "patient/Observation.c?category=http://x.org|v",  # granular writes: not supported
        "patient/Observation.rs?category=",
        "patient/Observation.rs?category=|v",
        "patient/Observation.rs?code=http://loinc.org|1",
    ):
        assert Scope.parse(refused) is None, refused
    plain, only = "patient/DocumentReference.rs", "patient/DocumentReference.rs?category=a|b"
    assert ScopeSet.parse(only).categories("patient", "DocumentReference") == (("a", "b"),)
    assert ScopeSet.parse(f"{only} {plain}").categories("patient", "DocumentReference") is None
    # a plain read without search does not lift the limit (narrower, never wider)
    narrow = ScopeSet.parse(f"{only} patient/DocumentReference.r")
    assert narrow.categories("patient", "DocumentReference") == (("a", "b"),)
    assert ScopeSet.parse(plain).categories("patient", "DocumentReference") is None
    assert narrow_app(only, plain) == only and narrow_app(plain, only) == ""


# ---------------------------------------------------------------------------- apps


async def test_confidential_app_uses_private_key_jwt(web, smart_app, factory, people):
    key = VendorKey("ES384")
    client_id = await register_app(web, factory, jwks=key.jwks)
    launch = Launch(client_id)
    code = await authorise(web, launch)
    r = await exchange(web, launch, code)  # no client authentication
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    code = await authorise(web, launch)
    now = smart_app.state.clock.now()
    assertion = key.assertion(client_id, f"{BASE}/auth/token", now)
    r = await exchange(
        web, launch, code, client_assertion_type=ASSERTION_TYPE, client_assertion=assertion
    )
    assert r.status_code == 200, r.text
    # An app never gets a machine token.
    assertion = key.assertion(client_id, f"{BASE}/auth/token", now)
    r = await web.post(
        "/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion,
        },
    )
    assert r.status_code == 400 and r.json()["error"] == "unauthorized_client"


@pytest.mark.parametrize(
    "fields",
    [
        {"redirect_uris": []},
        {"redirect_uris": ["http://app.example.org/callback"]},  # http off loopback
        {"redirect_uris": ["https://app.example.org/cb#frag"]},
        {"scopes": "patient/*.rs system/*.cruds"},
        {"scopes": "patient/*.rs operator"},
        {"catalogue": None},
    ],
)
async def test_app_registration_is_checked(web, factory, fields):
    body = {
        "client_id": f"app-{uuid.uuid4().hex[:8]}",
        "kind": "app",
        "name": "x",
        "scopes": "patient/*.rs",
        "redirect_uris": [REDIRECT],
        "catalogue": {"publisher": "p", "purpose": "q"},
        **fields,
    }
    r = await web.post("/auth/clients", json=body, headers=await factory.operator())
    assert r.status_code == 400 and code_of(r) == "INVALID_CLIENT", r.text


async def test_disabled_app_tokens_stop(web, factory, people):
    client_id = await register_app(web, factory)
    launch = Launch(client_id)
    tokens = (await exchange(web, launch, await authorise(web, launch))).json()
    r = await web.delete(f"/auth/clients/{client_id}", headers=await factory.operator())
    assert r.status_code == 204
    r = await web.get(
        f"/DocumentReference/{people['doc_a']}", headers=bearer(tokens["access_token"])
    )
    assert r.status_code == 401 and code_of(r) == "TOKEN_REVOKED"


async def test_discovery_advertises_the_app_launch(web):
    conf = (await web.get("/.well-known/smart-configuration")).json()
    assert conf["authorization_endpoint"] == f"{BASE}/auth/authorize"
    assert conf["token_endpoint"] == f"{BASE}/auth/token"
    assert conf["code_challenge_methods_supported"] == ["S256"]
    assert {"authorization_code", "refresh_token", "client_credentials"} <= set(
        conf["grant_types_supported"]
    )
    assert {"launch-standalone", "client-public", "context-standalone-patient"} <= set(
        conf["capabilities"]
    )
    assert {"launch/patient", "openid", "fhirUser", "offline_access"} <= set(
        conf["scopes_supported"]
    )
