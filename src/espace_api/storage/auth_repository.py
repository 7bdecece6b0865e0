"""SQL for authentication: registered clients, server signing keys, used assertion ids.

Tables are created by migration 0002. They hold no patient data, so they are small
reference tables outside the patient-sharded schema (principle 1).
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    MetaData,
    Table,
    Text,
    delete,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.ext.asyncio import AsyncEngine

auth_metadata = MetaData()

auth_clients = Table(
    "auth_clients",
    auth_metadata,
    Column("client_id", Text, primary_key=True),
    Column("kind", Text, nullable=False),
    Column("name", Text),
    Column("jwks", JSONB, nullable=False),
    Column("scopes", Text, nullable=False),
    Column("organization", Text),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("updated", DateTime(timezone=True), nullable=False),
    Column("disabled", Boolean, nullable=False, server_default="false"),
    # SMART apps (kind "app", migration 17_1): exact redirect URIs and catalogue metadata.
    Column("redirect_uris", JSONB(none_as_null=True)),
    Column("catalogue", JSONB(none_as_null=True)),
)

auth_signing_keys = Table(
    "auth_signing_keys",
    auth_metadata,
    Column("kid", Text, primary_key=True),
    Column("alg", Text, nullable=False),
    Column("private_pem", Text, nullable=False),
    Column("public_jwk", JSONB, nullable=False),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("retired", DateTime(timezone=True)),
)

auth_used_jti = Table(
    "auth_used_jti",
    auth_metadata,
    Column("client_id", Text, primary_key=True),
    Column("jti", Text, primary_key=True),
    Column("expires", DateTime(timezone=True), nullable=False),
)

# Serialises key rotation across processes (pg_advisory_xact_lock key, arbitrary constant).
_ROTATION_LOCK = 0x65737061636501

_INS_SYSTEMS = (
    "urn:oid:1.2.250.1.213.1.4.8",
    "urn:oid:1.2.250.1.213.1.4.9",
    "urn:oid:1.2.250.1.213.1.4.10",
    "urn:oid:1.2.250.1.213.1.4.11",
)


@dataclass(frozen=True)
class ClientRow:
    """A registered client as stored."""

    client_id: str
    kind: str
    name: str | None
    jwks: dict[str, Any]
    scopes: str
    organization: str | None
    created: datetime
    updated: datetime
    disabled: bool
    redirect_uris: list[str] | None = None
    catalogue: dict[str, Any] | None = None


@dataclass(frozen=True)
class SigningKeyRow:
    """A server signing key as stored (private key PEM, possibly encrypted)."""

    kid: str
    alg: str
    private_pem: str
    public_jwk: dict[str, Any]
    created: datetime
    retired: datetime | None


class AuthRepository:
    """All SQL the auth package runs."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    # Clients -------------------------------------------------------------------------------
    async def get_client(self, client_id: str) -> ClientRow | None:
        """The registered client, or None."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(auth_clients).where(auth_clients.c.client_id == client_id)
                )
            ).first()
        return ClientRow(**row._mapping) if row else None

    async def list_clients(self) -> list[ClientRow]:
        """All registered clients, by id."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(auth_clients).order_by(auth_clients.c.client_id))
        return [ClientRow(**r._mapping) for r in rows]

    async def upsert_client(
        self,
        *,
        client_id: str,
        kind: str,
        name: str | None,
        jwks: dict[str, Any],
        scopes: str,
        organization: str | None,
        now: datetime,
        redirect_uris: list[str] | None = None,
        catalogue: dict[str, Any] | None = None,
    ) -> bool:
        """Create or replace a client (re-enabling it). True if it was created."""
        values = {
            "kind": kind,
            "name": name,
            "jwks": jwks,
            "scopes": scopes,
            "organization": organization,
            "updated": now,
            "disabled": False,
            "redirect_uris": redirect_uris,
            "catalogue": catalogue,
        }
        stmt = (
            insert(auth_clients)
            .values(client_id=client_id, created=now, **values)
            .on_conflict_do_update(index_elements=["client_id"], set_=values)
            .returning(text("(xmax = 0) AS inserted"))
        )
        async with self.engine.begin() as conn:
            return bool((await conn.execute(stmt)).scalar_one())

    async def disable_client(self, client_id: str, now: datetime) -> bool:
        """Disable a client; False if unknown."""
        stmt = (
            update(auth_clients)
            .where(auth_clients.c.client_id == client_id)
            .values(disabled=True, updated=now)
        )
        async with self.engine.begin() as conn:
            return (await conn.execute(stmt)).rowcount > 0

    # Assertion replay protection -------------------------------------------------------------
    async def use_jti(self, client_id: str, jti: str, expires: datetime) -> bool:
        """Record a client-assertion id; False if it was already used (a replay)."""
        stmt = (
            insert(auth_used_jti)
            .values(client_id=client_id, jti=jti, expires=expires)
            .on_conflict_do_nothing()
        )
        async with self.engine.begin() as conn:
            return (await conn.execute(stmt)).rowcount == 1

    async def purge_jti(self, before: datetime) -> int:
        """Forget assertion ids whose assertion expired before `before`."""
        async with self.engine.begin() as conn:
            result = await conn.execute(
                delete(auth_used_jti).where(auth_used_jti.c.expires < before)
            )
        return result.rowcount

    # Server signing keys ---------------------------------------------------------------------
    async def published_keys(self, retired_after: datetime) -> list[SigningKeyRow]:
        """Keys still signing, or retired after `retired_after` (their tokens may live)."""
        stmt = (
            select(auth_signing_keys)
            .where(
                or_(
                    auth_signing_keys.c.retired.is_(None),
                    auth_signing_keys.c.retired > retired_after,
                )
            )
            .order_by(auth_signing_keys.c.created.desc())
        )
        async with self.engine.connect() as conn:
            rows = await conn.execute(stmt)
        return [SigningKeyRow(**r._mapping) for r in rows]

    async def get_key(self, kid: str) -> SigningKeyRow | None:
        """One signing key by id."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(select(auth_signing_keys).where(auth_signing_keys.c.kid == kid))
            ).first()
        return SigningKeyRow(**row._mapping) if row else None

    async def current_or_rotate(
        self,
        *,
        created_after: datetime,
        now: datetime,
        new_key: Callable[[datetime], SigningKeyRow],
    ) -> SigningKeyRow:
        """The newest unretired key created after `created_after`, else a new one.

        Runs under a transaction-scoped advisory lock so that concurrent processes create at
        most one new key; older unretired keys are retired (still published until expiry).
        """
        async with self.engine.begin() as conn:
            await conn.execute(select(func.pg_advisory_xact_lock(_ROTATION_LOCK)))
            row = (
                await conn.execute(
                    select(auth_signing_keys)
                    .where(
                        auth_signing_keys.c.retired.is_(None),
                        auth_signing_keys.c.created > created_after,
                    )
                    .order_by(auth_signing_keys.c.created.desc())
                    .limit(1)
                )
            ).first()
            if row:
                return SigningKeyRow(**row._mapping)
            fresh = new_key(now)
            await conn.execute(
                update(auth_signing_keys)
                .where(auth_signing_keys.c.retired.is_(None))
                .values(retired=now)
            )
            await conn.execute(
                insert(auth_signing_keys).values(
                    kid=fresh.kid,
                    alg=fresh.alg,
                    private_pem=fresh.private_pem,
                    public_jwk=fresh.public_jwk,
                    created=fresh.created,
                    retired=None,
                )
            )
            return fresh

    async def delete_keys_retired_before(self, before: datetime) -> int:
        """Drop keys retired long enough ago that no token they signed is still valid."""
        async with self.engine.begin() as conn:
            result = await conn.execute(
                delete(auth_signing_keys).where(auth_signing_keys.c.retired < before)
            )
        return result.rowcount

    # Patient lookup by INS -------------------------------------------------------------------
    async def patients_by_identifier(self, system: str | None, value: str) -> list[str]:
        """Patient ids whose identifier matches (any INS system if `system` is None)."""
        systems = (system,) if system else _INS_SYSTEMS
        stmt = text(
            "SELECT DISTINCT resource_id FROM search_token "
            "WHERE resource_type = 'Patient' AND param = 'identifier' "
            "AND code = :v AND system = ANY(:s) LIMIT 2"
        )
        async with self.engine.connect() as conn:
            rows = await conn.execute(stmt, {"v": value, "s": list(systems)})
        return [r[0] for r in rows]
