"""Registered clients of the built-in issuer: machines (LGC) and operator tools.

A client is registered with its public JWKS (it keeps the private key), the scopes it may be
granted, and for a machine the organisation (FINESS) it acts for.
"""

from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from espace_api.auth.jwt import ASYMMETRIC, PRIVATE_MEMBERS, TokenError, key_for
from espace_api.auth.scopes import invalid_scopes
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


class ClientRegistration(BaseModel):
    """What an operator posts to register (or replace) a client."""

    client_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
    kind: Literal["system", "operator"] = "system"
    name: str | None = Field(default=None, max_length=200)
    jwks: dict[str, Any]
    scopes: str = Field(min_length=1, max_length=2000)
    organization: str | None = Field(default=None, max_length=128)

    @field_validator("jwks")
    @classmethod
    def _jwks(cls, value: Any) -> dict[str, Any]:
        return validate_jwks(value)

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, value: str) -> str:
        bad = invalid_scopes(value)
        if bad:
            raise ValueError(f"unknown scopes: {' '.join(bad)}")
        return " ".join(value.split())

    @model_validator(mode="after")
    def _organization(self) -> "ClientRegistration":
        if self.kind == "system" and not self.organization:
            raise ValueError("a system client must name its organization (FINESS)")
        if self.kind == "operator" and "operator" not in self.scopes.split():
            raise ValueError("an operator client needs the 'operator' scope")
        return self


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
    }
