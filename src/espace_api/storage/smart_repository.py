"""SQL for SMART App Launch: pending authorization requests, grants, codes, refresh tokens.

Tables are created by migration 17_1. Every secret handle is stored as its SHA-256 only
(`auth.cache.token_hash`); a leaked table gives no usable code or token. Grants, codes and
refresh tokens carry their patient (principle 1).
"""

from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    LargeBinary,
    MetaData,
    Table,
    Text,
    and_,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from espace_api.storage.auth_repository import auth_clients

R = TypeVar("R")

smart_metadata = MetaData()

smart_requests = Table(
    "smart_requests",
    smart_metadata,
    Column("handle_hash", LargeBinary, primary_key=True),
    Column("client_id", Text, nullable=False),
    Column("redirect_uri", Text, nullable=False),
    Column("scope", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("code_challenge", Text, nullable=False),
    Column("nonce", Text),
    Column("provider_nonce", Text, nullable=False),
    Column("expires", DateTime(timezone=True), nullable=False),
    Column("consent_hash", LargeBinary),
    Column("patient_id", Text),
    Column("subject", Text),
    Column("done", Boolean, nullable=False, server_default="false"),
)

smart_grants = Table(
    "smart_grants",
    smart_metadata,
    Column("id", Text, primary_key=True),
    Column("patient_id", Text, nullable=False),
    Column("client_id", Text, nullable=False),
    Column("subject", Text, nullable=False),
    Column("scope", Text, nullable=False),
    Column("consent_id", Text, nullable=False),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("expires", DateTime(timezone=True), nullable=False),
    Column("revoked", DateTime(timezone=True)),
)

smart_codes = Table(
    "smart_codes",
    smart_metadata,
    Column("code_hash", LargeBinary, primary_key=True),
    Column("grant_id", Text, nullable=False),
    Column("patient_id", Text, nullable=False),
    Column("client_id", Text, nullable=False),
    Column("redirect_uri", Text, nullable=False),
    Column("code_challenge", Text, nullable=False),
    Column("nonce", Text),
    Column("expires", DateTime(timezone=True), nullable=False),
    Column("used", DateTime(timezone=True)),
)

smart_refresh_tokens = Table(
    "smart_refresh_tokens",
    smart_metadata,
    Column("token_hash", LargeBinary, primary_key=True),
    Column("grant_id", Text, nullable=False),
    Column("patient_id", Text, nullable=False),
    Column("expires", DateTime(timezone=True), nullable=False),
    Column("used", DateTime(timezone=True)),
)


@dataclass(frozen=True)
class RequestRow:
    """A pending authorization request (from /auth/authorize to the consent form)."""

    handle_hash: bytes
    client_id: str
    redirect_uri: str
    scope: str
    state: str
    code_challenge: str
    nonce: str | None
    provider_nonce: str
    expires: datetime
    consent_hash: bytes | None
    patient_id: str | None
    subject: str | None
    done: bool


@dataclass(frozen=True)
class GrantRow:
    """What a patient granted an app."""

    id: str
    patient_id: str
    client_id: str
    subject: str
    scope: str
    consent_id: str
    created: datetime
    expires: datetime
    revoked: datetime | None


@dataclass(frozen=True)
class CodeRow:
    """An authorization code (single use)."""

    code_hash: bytes
    grant_id: str
    patient_id: str
    client_id: str
    redirect_uri: str
    code_challenge: str
    nonce: str | None
    expires: datetime
    used: datetime | None


@dataclass(frozen=True)
class RefreshRow:
    """A refresh token (single use: each use rotates it)."""

    token_hash: bytes
    grant_id: str
    patient_id: str
    expires: datetime
    used: datetime | None


class SmartRepository:
    """All SQL the smart package runs."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    # Authorization requests ------------------------------------------------------------------
    async def create_request(self, row: RequestRow) -> None:
        """Store a new pending request."""
        async with self.engine.begin() as conn:
            await conn.execute(insert(smart_requests).values(**row.__dict__))

    async def signed_in(
        self,
        handle_hash: bytes,
        now: datetime,
        *,
        consent_hash: bytes,
        patient_id: str,
        subject: str,
    ) -> RequestRow | None:
        """Bind the signed-in patient to a pending request (once); None if unknown/expired."""
        t = smart_requests
        stmt = (
            update(t)
            .where(
                t.c.handle_hash == handle_hash,
                t.c.expires > now,
                t.c.consent_hash.is_(None),
                t.c.done.is_(False),
            )
            .values(consent_hash=consent_hash, patient_id=patient_id, subject=subject)
            .returning(*t.c)
        )
        async with self.engine.begin() as conn:
            row = (await conn.execute(stmt)).first()
        return RequestRow(**row._mapping) if row else None

    async def pending(self, handle_hash: bytes, now: datetime) -> RequestRow | None:
        """A request waiting for the patient to sign in."""
        t = smart_requests
        stmt = select(t).where(
            t.c.handle_hash == handle_hash, t.c.expires > now, t.c.consent_hash.is_(None)
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(stmt)).first()
        return RequestRow(**row._mapping) if row else None

    async def purge(self, now: datetime) -> None:
        """Forget expired requests, codes and refresh tokens (a spent refresh token is kept
        until it expires, so that its reuse is still recognised)."""
        async with self.engine.begin() as conn:
            await conn.execute(delete(smart_requests).where(smart_requests.c.expires < now))
            await conn.execute(delete(smart_codes).where(smart_codes.c.expires < now))
            r = smart_refresh_tokens
            await conn.execute(delete(r).where(r.c.expires < now))

    # Grants ----------------------------------------------------------------------------------
    async def grant(self, grant_id: str) -> GrantRow | None:
        """One grant by id."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(select(smart_grants).where(smart_grants.c.id == grant_id))
            ).first()
        return GrantRow(**row._mapping) if row else None

    async def grant_active(self, grant_id: str, now: datetime) -> bool:
        """Whether a grant is in force: not revoked, not expired, its app not disabled.

        One primary-key lookup (and the client's), run on every request of an app token."""
        g, c = smart_grants, auth_clients
        stmt = (
            select(g.c.id)
            .select_from(g.join(c, c.c.client_id == g.c.client_id))
            .where(g.c.id == grant_id, g.c.revoked.is_(None), g.c.expires > now)
            .where(c.c.disabled.is_(False))
        )
        async with self.engine.connect() as conn:
            return (await conn.execute(stmt)).first() is not None

    # Codes and refresh tokens ------------------------------------------------------------------
    async def use_code(self, code_hash: bytes, now: datetime) -> tuple[CodeRow, bool] | None:
        """The code and whether this is its first use (marked used atomically); None if
        unknown."""
        return await self._use(smart_codes, smart_codes.c.code_hash, code_hash, now, CodeRow)

    async def use_refresh(self, token_hash: bytes, now: datetime) -> tuple[RefreshRow, bool] | None:
        """The refresh token and whether this is its first use; None if unknown."""
        t = smart_refresh_tokens
        return await self._use(t, t.c.token_hash, token_hash, now, RefreshRow)

    async def _use(
        self, table: Table, key: Column[bytes], value: bytes, now: datetime, kind: type[R]
    ) -> tuple[R, bool] | None:
        async with self.engine.begin() as conn:
            row = (
                await conn.execute(
                    update(table)
                    .where(and_(key == value, table.c.used.is_(None)))
                    .values(used=now)
                    .returning(*table.c)
                )
            ).first()
            if row is not None:
                return kind(**row._mapping), True
            row = (await conn.execute(select(table).where(key == value))).first()
        return (kind(**row._mapping), False) if row else None


# In the caller's transaction -------------------------------------------------------------
async def take_consent(
    conn: AsyncConnection, consent_hash: bytes, now: datetime
) -> RequestRow | None:
    """The signed-in request a consent form answers, marked done (once)."""
    t = smart_requests
    stmt = (
        update(t)
        .where(t.c.consent_hash == consent_hash, t.c.done.is_(False), t.c.expires > now)
        .values(done=True)
        .returning(*t.c)
    )
    row = (await conn.execute(stmt)).first()
    return RequestRow(**row._mapping) if row else None


async def insert_grant(conn: AsyncConnection, row: GrantRow) -> None:
    """Store a grant (in the transaction that writes its Consent)."""
    await conn.execute(insert(smart_grants).values(**row.__dict__))


async def revoke_grant(conn: AsyncConnection, grant_id: str, now: datetime) -> bool:
    """Revoke a grant and its refresh tokens; False if it was already revoked."""
    g = smart_grants
    stmt = update(g).where(g.c.id == grant_id, g.c.revoked.is_(None)).values(revoked=now)
    revoked = (await conn.execute(stmt)).rowcount > 0
    r = smart_refresh_tokens
    await conn.execute(
        update(r).where(r.c.grant_id == grant_id, r.c.used.is_(None)).values(used=now)
    )
    return revoked


async def insert_code(conn: AsyncConnection, row: CodeRow) -> None:
    """Store an authorization code."""
    await conn.execute(insert(smart_codes).values(**row.__dict__))


async def insert_refresh(conn: AsyncConnection, row: RefreshRow) -> None:
    """Store a refresh token."""
    await conn.execute(insert(smart_refresh_tokens).values(**row.__dict__))
