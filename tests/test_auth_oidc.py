"""External OpenID Connect providers, with their JWKS served by a real HTTP server on
127.0.0.1 (started here): patient tokens mapped by INS, professional tokens, key rotation on
unknown kid, refresh rate limit, provider outage."""

import json
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from espace_api.clock import Clock, utc_now
from espace_api.main import create_app
from tests.support.auth import AuthFactory, VendorKey, bearer, code_of
from tests.support.fhir import FHIR_JSON, INS_TEST, create, document, patient

FC = "https://fc.test.invalid"
PSC = "https://psc.test.invalid"
DOWN = "https://down.test.invalid"
AUDIENCE = "espace-api"


class JwksServer:
    """Serves /<name>/jwks from a dict that tests change; counts requests."""

    def __init__(self) -> None:
        self.jwks: dict[str, dict[str, Any]] = {}
        self.hits: dict[str, int] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                name = self.path.strip("/").split("/")[0]
                server.hits[name] = server.hits.get(name, 0) + 1
                body = json.dumps(server.jwks.get(name, {"keys": []})).encode()
                self.send_response(200 if name in server.jwks else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "JwksServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class ShiftedClock:
    """Real time plus an offset the tests move forward."""

    def __init__(self) -> None:
        self.offset = timedelta(0)
        self.clock = Clock(now=lambda: utc_now() + self.offset)


@pytest.fixture(scope="module")
def jwks_server() -> Iterator[JwksServer]:
    with JwksServer() as server:
        yield server


@pytest.fixture(scope="module")
def fc_key(jwks_server) -> VendorKey:
    key = VendorKey("RS256", kid="fc-1")
    jwks_server.jwks["fc"] = key.jwks
    return key


@pytest.fixture(scope="module")
def psc_key(jwks_server) -> VendorKey:
    key = VendorKey("ES256", kid="psc-1")
    jwks_server.jwks["psc"] = key.jwks
    return key


@pytest.fixture(scope="module")
def shifted() -> ShiftedClock:
    return ShiftedClock()


@pytest.fixture(scope="module")
async def oidc_app(settings, jwks_server, fc_key, psc_key, shifted) -> AsyncIterator[Any]:
    providers = [
        {
            "issuer": FC,
            "audience": AUDIENCE,
            "jwks_url": f"{jwks_server.url}/fc/jwks",
            "kind": "patient",
            "scopes": "patient/*.rs",
        },
        {
            "issuer": PSC,
            "audience": [AUDIENCE, "other"],
            "jwks_url": f"{jwks_server.url}/psc/jwks",
            "kind": "user",
            "practitioner_claim": "rpps",
        },
        {
            "issuer": DOWN,
            "audience": AUDIENCE,
            "jwks_url": "http://127.0.0.1:9/jwks",
            "kind": "patient",
            "timeout_seconds": 1,
        },
    ]
    conf = settings.model_copy(update={"auth_oidc_providers": json.dumps(providers)})
    application = create_app(conf, clock=shifted.clock)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(scope="module")
async def oclient(oidc_app) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=oidc_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


@pytest.fixture(scope="module")
async def people(oidc_app, oclient) -> dict[str, Any]:
    ops = await AuthFactory(oidc_app).operator()
    ins_a, ins_b = str(uuid.uuid4().int)[:15], str(uuid.uuid4().int)[:15]
    a = await create(oclient, ops, patient(ins=ins_a))
    b = await create(oclient, ops, patient(ins=ins_b))
    lgc = await AuthFactory(oidc_app).system()
    doc_b = await create(oclient, lgc, document(b["id"]))
    return {"a": a["id"], "ins_a": ins_a, "b": b["id"], "doc_b": doc_b["id"]}


def id_token(key: VendorKey, clock: Clock, issuer: str, **claims: Any) -> str:
    ts = int(clock.now().timestamp())
    base = {"iss": issuer, "aud": AUDIENCE, "iat": ts, "exp": ts + 300, "sub": "fc-sub-1"}
    base.update(claims)
    return key.sign({k: v for k, v in base.items() if v is not None})


@pytest.mark.parametrize("form", ["system|value", "value", "object"])
async def test_patient_token_maps_ins_to_the_patient(oclient, fc_key, shifted, people, form):
    ins = {
        "system|value": f"{INS_TEST}|{people['ins_a']}",
        "value": people["ins_a"],
        "object": {"system": INS_TEST, "value": people["ins_a"]},
    }[form]
    token = id_token(fc_key, shifted.clock, FC, ins=ins)
    r = await oclient.get(f"/Patient/{people['a']}", headers=bearer(token))
    assert r.status_code == 200, r.text
    other = await oclient.get(f"/Patient/{people['b']}", headers=bearer(token))
    assert other.status_code == 404
    docs = await oclient.get(
        "/DocumentReference", params={"patient": people["b"]}, headers=bearer(token)
    )
    assert docs.status_code == 200 and docs.json()["total"] == 0


async def test_patient_identity_fields(oidc_app, fc_key, shifted, people):
    token = id_token(fc_key, shifted.clock, FC, ins=people["ins_a"], azp="fc-app", jti="j1")
    identity = await oidc_app.state.authenticator.identity_for(token)
    assert identity.kind == "patient" and identity.patient_id == people["a"]
    assert identity.subject == "fc-sub-1" and identity.client_id == "fc-app"
    assert identity.token_id == "j1"
    assert identity.scopes.raw == ("patient/*.rs",)


async def test_provider_scopes_are_capped(oclient, fc_key, shifted, people):
    token = id_token(fc_key, shifted.clock, FC, ins=people["ins_a"], scope="openid patient/*.cruds")
    r = await oclient.post(
        "/DocumentReference", json=document(people["a"]), headers={**bearer(token), **FHIR_JSON}
    )
    assert r.status_code == 403 and code_of(r) == "INSUFFICIENT_SCOPE"


async def test_unknown_ins_is_403(oclient, fc_key, shifted, people):
    token = id_token(fc_key, shifted.clock, FC, ins="999999999999999")
    r = await oclient.get(f"/Patient/{people['a']}", headers=bearer(token))
    assert r.status_code == 403 and code_of(r) == "PATIENT_NOT_FOUND"


async def test_missing_ins_is_401(oclient, fc_key, shifted, people):
    r = await oclient.get(
        f"/Patient/{people['a']}", headers=bearer(id_token(fc_key, shifted.clock, FC))
    )
    assert r.status_code == 401 and code_of(r) == "TOKEN_CLAIMS"


async def test_professional_token(oidc_app, oclient, psc_key, shifted, people):
    token = id_token(psc_key, shifted.clock, PSC, sub="psc-sub", rpps="10101010101")
    identity = await oidc_app.state.authenticator.identity_for(token)
    assert identity.kind == "user" and identity.practitioner == "10101010101"
    assert identity.scopes.raw == ("user/*.rs",)
    # accepted (not 401); without a care relationship the Patient is not theirs to see
    r = await oclient.get(f"/Patient/{people['a']}", headers=bearer(token))
    assert r.status_code == 404 and r.json()["resourceType"] == "OperationOutcome", r.text
    r = await oclient.get("/Organization", headers=bearer(token))
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    "case, code",
    [
        ("wrong audience", "TOKEN_AUDIENCE"),
        ("unknown issuer", "TOKEN_ISSUER"),
        ("expired", "TOKEN_EXPIRED"),
        ("signed by another key", "TOKEN_SIGNATURE"),
        ("not allowed algorithm", "TOKEN_ALGORITHM"),
        ("key of another provider", "TOKEN_KID"),
    ],
)
async def test_bad_provider_tokens(oclient, fc_key, psc_key, shifted, people, case, code):
    clock, ins = shifted.clock, people["ins_a"]
    ts = int(clock.now().timestamp())
    token = {
        "wrong audience": lambda: id_token(fc_key, clock, FC, ins=ins, aud="someone-else"),
        "unknown issuer": lambda: id_token(fc_key, clock, "https://evil.invalid", ins=ins),
        "expired": lambda: id_token(fc_key, clock, FC, ins=ins, iat=ts - 900, exp=ts - 600),
        "signed by another key": lambda: VendorKey("RS256", kid="fc-1").sign(
            {"iss": FC, "aud": AUDIENCE, "exp": ts + 60, "sub": "x", "ins": ins}
        ),
        "not allowed algorithm": lambda: VendorKey("RS512", kid="fc-1").sign(
            {"iss": FC, "aud": AUDIENCE, "exp": ts + 60, "sub": "x", "ins": ins}
        ),
        "key of another provider": lambda: id_token(psc_key, clock, FC, ins=ins),
    }[case]()
    r = await oclient.get(f"/Patient/{people['a']}", headers=bearer(token))
    assert r.status_code == 401, r.text
    assert 'error="invalid_token"' in r.headers["www-authenticate"]
    assert code_of(r) == code


async def test_key_rotation_on_unknown_kid_with_rate_limit(
    oclient, jwks_server, fc_key, shifted, people
):
    clock = shifted.clock
    ok = id_token(fc_key, clock, FC, ins=people["ins_a"])
    assert (await oclient.get(f"/Patient/{people['a']}", headers=bearer(ok))).status_code == 200
    fetched = jwks_server.hits["fc"]
    # The provider rotates: its JWKS now holds the new key (and still the old one).
    new_key = VendorKey("RS256", kid="fc-2")
    jwks_server.jwks["fc"] = {"keys": [fc_key.public, new_key.public]}
    shifted.offset += timedelta(seconds=31)  # past the minimum refresh interval
    fresh = id_token(new_key, clock, FC, ins=people["ins_a"])
    r = await oclient.get(f"/Patient/{people['a']}", headers=bearer(fresh))
    assert r.status_code == 200, r.text
    assert jwks_server.hits["fc"] == fetched + 1
    # Unknown kids right after do not make the server hammer the provider.
    for i in range(5):
        bogus = id_token(VendorKey("RS256", kid=f"fc-x{i}"), clock, FC, ins=people["ins_a"])
        r = await oclient.get(f"/Patient/{people['a']}", headers=bearer(bogus))
        assert r.status_code == 401 and code_of(r) == "TOKEN_KID"
    assert jwks_server.hits["fc"] == fetched + 1
    # A key that appears later is picked up once the interval has passed.
    newer = VendorKey("RS256", kid="fc-3")
    jwks_server.jwks["fc"] = {"keys": [newer.public]}
    token3 = id_token(newer, clock, FC, ins=people["ins_a"])
    r = await oclient.get(f"/Patient/{people['a']}", headers=bearer(token3))
    assert r.status_code == 401  # too soon after the last fetch
    shifted.offset += timedelta(seconds=31)
    r = await oclient.get(f"/Patient/{people['a']}", headers=bearer(token3))
    assert r.status_code == 200
    # The retired key is gone from the provider's JWKS: its tokens stop working once the
    # verified-token cache no longer holds them (new token, same key).
    old = id_token(fc_key, clock, FC, ins=people["ins_a"], jti="after-retirement")
    assert (await oclient.get(f"/Patient/{people['a']}", headers=bearer(old))).status_code == 401


async def test_provider_down_is_401_not_500(oclient, fc_key, shifted, people):
    token = id_token(fc_key, shifted.clock, DOWN, ins=people["ins_a"])
    r = await oclient.get(f"/Patient/{people['a']}", headers=bearer(token))
    assert r.status_code == 401 and code_of(r) == "TOKEN_KID"


async def test_smart_configuration_lists_external_issuers(oclient):
    conf = (await oclient.get("/.well-known/smart-configuration")).json()
    assert {(i["issuer"], i["kind"]) for i in conf["external_issuers"]} >= {
        (FC, "patient"),
        (PSC, "user"),
    }


async def test_jwks_fetcher_with_mock_transport():
    """The fetcher also accepts an injected transport (no network)."""
    from espace_api.auth.oidc import JwksFetcher

    key = VendorKey("ES384", kid="m-1")
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url)
        return httpx.Response(200, json=key.jwks)

    fetcher = JwksFetcher(
        "https://idp.invalid/jwks",
        Clock(),
        min_refresh_seconds=30,
        max_age_seconds=3600,
        transport=httpx.MockTransport(handler),
    )
    assert await fetcher.key("m-1", "ES384") is not None
    assert await fetcher.key("m-1", "ES384") is not None
    assert len(calls) == 1
