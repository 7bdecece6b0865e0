"""Small pieces of the auth package that need no HTTP: cache bound, scope narrowing, key and
algorithm matching, JWKS validation, INS claims, settings wiring."""

import json
from datetime import UTC, datetime, timedelta

import pytest

from espace_api.auth.cache import ExpiringLRU
from espace_api.auth.clients import validate_jwks
from espace_api.auth.identity import ScopeSet
from espace_api.auth.jwt import TokenError, check_times, key_for, parse_algorithms
from espace_api.auth.keys import generate_private_key, load_private_pem, private_pem, public_jwk
from espace_api.auth.oidc import ins_claim, parse_providers
from espace_api.auth.scopes import narrow
from espace_api.auth.services import build
from espace_api.clock import Clock

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def test_lru_is_bounded_and_expires():
    cache: ExpiringLRU[int] = ExpiringLRU(3)
    for i in range(5):
        cache.put(bytes([i]), i, T0.timestamp() + 10)
    assert len(cache) == 3
    assert cache.get(bytes([0]), T0) is None and cache.get(bytes([4]), T0) == 4
    assert cache.get(bytes([4]), T0 + timedelta(seconds=10)) is None
    assert len(cache) == 2


def test_lru_keeps_recently_used():
    cache: ExpiringLRU[int] = ExpiringLRU(2)
    cache.put(b"a", 1, T0.timestamp() + 10)
    cache.put(b"b", 2, T0.timestamp() + 10)
    cache.get(b"a", T0)
    cache.put(b"c", 3, T0.timestamp() + 10)
    assert cache.get(b"a", T0) == 1 and cache.get(b"b", T0) is None


@pytest.mark.parametrize(
    "requested, ceiling, granted",
    [
        ("system/*.cruds", "system/DocumentReference.c", ""),
        ("system/DocumentReference.c", "system/*.cruds", "system/DocumentReference.c"),
        ("system/DocumentReference.cs", "system/DocumentReference.c", ""),
        ("patient/*.rs openid operator", "patient/*.cruds", "patient/*.rs"),
        ("operator system/Patient.s", "system/*.cruds operator", "operator system/Patient.s"),
        ("user/Patient.read", "user/*.rs", "user/Patient.read"),
        ("patient/Patient.rs", "user/*.rs", ""),
    ],
)
def test_scope_narrowing(requested, ceiling, granted):
    assert narrow(requested, ScopeSet.parse(ceiling)) == granted


def test_algorithm_allow_list_never_contains_symmetric_or_none():
    assert parse_algorithms("HS256, none, RS384,ES384 ,PS256") == {"RS384", "ES384"}


@pytest.mark.parametrize(
    "key_alg, alg",
    [("ES384", "RS384"), ("RS384", "ES384"), ("ES256", "ES384"), ("ES384", "ES256")],
)
def test_key_must_match_algorithm(key_alg, alg):
    public = public_jwk(generate_private_key(key_alg), key_alg)
    public.pop("alg")
    with pytest.raises(TokenError) as exc:
        key_for(public, alg)
    assert exc.value.code == "TOKEN_KEY"


def test_key_registered_for_one_algorithm_is_not_used_with_another():
    public = public_jwk(generate_private_key("RS384"), "RS384")
    with pytest.raises(TokenError):
        key_for(public, "RS256")


def test_time_checks_with_leeway():
    ts = int(T0.timestamp())
    check_times({"exp": ts - 10}, T0, leeway=30)  # within leeway
    with pytest.raises(TokenError, match="expired"):
        check_times({"exp": ts - 31}, T0, leeway=30)
    with pytest.raises(TokenError, match="not valid yet"):
        check_times({"exp": ts + 60, "nbf": ts + 31}, T0, leeway=30)
    with pytest.raises(TokenError, match="300 seconds"):
        check_times({"exp": ts + 400}, T0, leeway=30, max_lifetime=300)
    with pytest.raises(TokenError, match="not a number"):
        check_times({"exp": "soon"}, T0, leeway=0)


def test_jwks_validation():
    key = generate_private_key("ES384")
    good = public_jwk(key, "ES384", kid="a")
    assert validate_jwks({"keys": [good]}) == {"keys": [good]}
    with pytest.raises(ValueError, match="unique"):
        validate_jwks({"keys": [good, good]})
    with pytest.raises(ValueError, match="public keys only"):
        validate_jwks({"keys": [{**good, "d": "secret"}]})
    with pytest.raises(ValueError, match="public keys only"):  # a shared secret is no key
        validate_jwks({"keys": [{"kty": "oct", "kid": "h", "k": "c2VjcmV0"}]})
    with pytest.raises(ValueError, match="unsupported"):
        validate_jwks({"keys": [{"kty": "OKP", "kid": "e", "crv": "Ed25519", "x": "AA"}]})
    with pytest.raises(ValueError, match="curve"):
        validate_jwks({"keys": [{**good, "crv": "P-256"}]})


def test_private_key_encryption_roundtrip():
    key = generate_private_key("ES384")
    pem = private_pem(key, "s3cret")
    assert "ENCRYPTED" in pem
    loaded = load_private_pem(pem, "s3cret")
    assert public_jwk(loaded, "ES384") == public_jwk(key, "ES384")
    with pytest.raises((TypeError, ValueError)):
        load_private_pem(pem, None)


@pytest.mark.parametrize(
    "value, default, expected",
    [
        ("urn:oid:1.2.250.1.213.1.4.10|123", None, ("urn:oid:1.2.250.1.213.1.4.10", "123")),
        ("123", None, (None, "123")),
        ("123", "urn:oid:1.2.250.1.213.1.4.8", ("urn:oid:1.2.250.1.213.1.4.8", "123")),
        (
            {"system": "urn:oid:1.2.250.1.213.1.4.9", "value": "9"},
            None,
            ("urn:oid:1.2.250.1.213.1.4.9", "9"),
        ),
    ],
)
def test_ins_claim_forms(value, default, expected):
    assert ins_claim(value, default) == expected


@pytest.mark.parametrize("value", [None, "", 123, {"system": "x"}, ["a"]])
def test_ins_claim_refused(value):
    with pytest.raises(TokenError):
        ins_claim(value, None)


def test_provider_settings():
    (p,) = parse_providers(
        json.dumps([{"issuer": "https://i", "audience": "a", "jwks_url": "u", "kind": "user"}])
    )
    assert p.audience == ["a"] and p.ceiling().raw == ("user/*.rs",)
    assert parse_providers("  ") == []
    with pytest.raises(ValueError):
        parse_providers(
            json.dumps([{"issuer": "i", "audience": "a", "jwks_url": "u", "kind": "operator"}])
        )


def test_wiring_refuses_inconsistent_settings(settings, app):
    engine = app.state.engine
    with pytest.raises(ValueError, match="SIGNING_ALGORITHM"):
        build(settings.model_copy(update={"auth_signing_algorithm": "HS256"}), engine, Clock())
    clash = json.dumps(
        [{"issuer": "http://test", "audience": "a", "jwks_url": "u", "kind": "patient"}]
    )
    with pytest.raises(ValueError, match="share the issuer"):
        build(settings.model_copy(update={"auth_oidc_providers": clash}), engine, Clock())


def test_builtin_issuer_can_be_switched_off(settings, app):
    services = build(
        settings.model_copy(update={"auth_builtin_enabled": False}), app.state.engine, Clock()
    )
    assert services.issuer is None and services.keys is None
    assert list(services.authenticator.sources) == []
    with pytest.raises(RuntimeError, match="disabled"):
        services.require_issuer()
