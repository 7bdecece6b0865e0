"""Registered clients of the built-in issuer: machines (LGC) and operator tools.

A client is registered with its public JWKS (it keeps the private key), the scopes it may be
granted, and for a machine the organisation (FINESS) it acts for.
"""

from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, field_validator, model_validator

from espace_api.auth.jwt import ASYMMETRIC, PRIVATE_MEMBERS, TokenError, key_for
from espace_api.auth.scopes import invalid_app_scopes, invalid_scopes
from espace_api.storage.auth_repository import ClientRow

_DEFAULT_ALG = {"RSA": "RS384", "EC": "ES384"}


def validate_jwks(jwks: Any) -> dict[str, Any]:
    """A clean public JWKS; ValueError for private or unusable keys, or duplicate kids."""
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list) or not jwks["keys"]:
        raise ValueError("jwks must be an object with a non-empty 'keys' list")
    keys: list[dict[str, Any]] = []
    kids: set[str] = set()
    for item in jwks["keys"]:
        if not isinstance(item, dict):
            raise ValueError("each JWKS key must be an object")
        if PRIVATE_MEMBERS & item.keys():
            raise ValueError("the JWKS must contain public keys only (never send a private key)")
        kid = item.get("kid")
        if not isinstance(kid, str) or not kid or kid in kids:
            raise ValueError("each key needs a unique 'kid'")
        kids.add(kid)
        alg = item.get("alg") or _DEFAULT_ALG.get(str(item.get("kty")), "")
        if alg not in ASYMMETRIC:
            raise ValueError(f"key {kid!r}: unsupported key type or algorithm")
        try:
            key_for(item, alg)
        except TokenError as exc:
            raise ValueError(f"key {kid!r}: {exc.message}") from None
        keys.append(item)
    return {"keys": keys}


def validate_redirect_uri(uri: str) -> str:
    """An app's redirect URI: absolute https (http only for a loopback host), no fragment."""
    parts = urlsplit(uri)
    loopback = parts.hostname in ("localhost", "127.0.0.1", "::1")
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.fragment:
        raise ValueError(f"redirect URI {uri!r} must be an absolute URL without fragment")
    if parts.scheme == "http" and not loopback:
        raise ValueError(f"redirect URI {uri!r} must use https (http only for loopback)")
    return uri


class Catalogue(BaseModel):
    """What the patient sees of an app in the catalogue and on the consent page."""

    publisher: str = Field(min_length=1, max_length=200)
    purpose: str = Field(min_length=1, max_length=2000)
    logo_uri: str | None = Field(default=None, max_length=2000, pattern=r"^https://")


class ClientRegistration(BaseModel):
    """What an operator posts to register (or replace) a client.

    kind `app`: a patient-authorised SMART app (smart/). It is public (PKCE only) without a
    JWKS, confidential (private_key_jwt) with one; it needs its exact redirect URIs and its
    catalogue entry, and only patient/ and SMART launch scopes."""

    client_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
    kind: Literal["system", "operator", "app"] = "system"
    name: str | None = Field(default=None, max_length=200)
    jwks: dict[str, Any] | None = None
    scopes: str = Field(min_length=1, max_length=2000)
    organization: str | None = Field(default=None, max_length=128)
    redirect_uris: list[str] | None = Field(default=None, max_length=10)
    catalogue: Catalogue | None = None

    @field_validator("jwks")
    @classmethod
    def _jwks(cls, value: Any) -> dict[str, Any] | None:
        return None if value is None else validate_jwks(value)

    @field_validator("redirect_uris")
    @classmethod
    def _redirect_uris(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else [validate_redirect_uri(u) for u in value]

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, value: str) -> str:
        return " ".join(value.split())

    @model_validator(mode="after")
    def _organization(self) -> "ClientRegistration":
        bad = invalid_app_scopes(self.scopes) if self.kind == "app" else invalid_scopes(self.scopes)
        if bad:
            raise ValueError(f"unknown scopes for a {self.kind} client: {' '.join(bad)}")
        if self.kind == "app":
            if not self.redirect_uris or not self.catalogue or not self.name:
                raise ValueError("an app needs a name, redirect_uris and its catalogue entry")
            return self
        if self.jwks is None:
            raise ValueError(f"a {self.kind} client needs its public jwks")
        if self.redirect_uris or self.catalogue:
            raise ValueError("redirect_uris and catalogue are for apps only")
        if self.kind == "system" and not self.organization:
            raise ValueError("a system client must name its organization (FINESS)")
        if self.kind == "operator" and "operator" not in self.scopes.split():
            raise ValueError("an operator client needs the 'operator' scope")
        return self

    def stored(self) -> dict[str, Any]:
        """The repository's upsert arguments (a public app stores an empty JWKS)."""
        values = self.model_dump()
        values["jwks"] = self.jwks or {"keys": []}
        return values


def client_view(row: ClientRow) -> dict[str, Any]:
    """A client as the operator API shows it."""
    return {
        "client_id": row.client_id,
        "kind": row.kind,
        "name": row.name,
        "jwks": row.jwks,
        "scopes": row.scopes,
        "organization": row.organization,
        "created": row.created.isoformat(),
        "updated": row.updated.isoformat(),
        "disabled": row.disabled,
        **({"redirect_uris": row.redirect_uris} if row.redirect_uris is not None else {}),
        **({"catalogue": row.catalogue} if row.catalogue is not None else {}),
    }
