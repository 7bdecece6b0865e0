"""SQL for document content: the blob catalogue, Postgres-held bytes, and blob references.

Tables (migration 0003), all keyed by patient first (principle 1; co-locatable on Citus):

- `blobs(patient_id, sha256)`: one row per stored blob whatever the backend: size, SHA-1
  (base64), backend, chunk size (Postgres backend), `created_at`, `touched_at` (renewed by
  every `put` of the same bytes; the sweeper's grace period counts from it).
- `blob_chunks(patient_id, sha256, seq)`: the bytes for the Postgres backend, in 1 MiB
  rows (column stored EXTERNAL: uncompressed, so `substring` reads only the slice asked).
  `key_generation` (migration 18_1): the patient's data key (`data_keys`) the stored bytes
  are encrypted with; NULL for bytes stored in clear (encryption off, or before 18_1).
  Deleted with their `blobs` row (ON DELETE CASCADE).
- `blob_refs(patient_id, resource_type, resource_id, version_id, sha256)`: which committed
  resource version points at which blob. Written by the resource service in the same
  transaction as the resource version; its foreign key to `blobs` (ON DELETE RESTRICT)
  makes it impossible to commit metadata whose blob is gone, and makes the sweeper skip
  (row lock) a blob whose reference is being committed.

Functions take an open connection inside a transaction; nothing here commits.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    and_,
    bindparam,
    delete,
    exists,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from espace_api.storage import raw, routing
from espace_api.storage.data_key_repository import WrappedKey, data_keys


class BlobKey(NamedTuple):
    """Where a blob lives: its patient and the SHA-256 (lowercase hex) of its bytes."""

    patient_id: str
    sha256: str


@dataclass(frozen=True)
class BlobInfo:
    """What a stored blob is: the values a FHIR Attachment carries (size, SHA-1 hash)."""

    sha256: str
    """Lowercase hex SHA-256: the blob's key within its patient."""
    sha1: str
    """Base64 of the SHA-1 digest, as FHIR `Attachment.hash` wants it."""
    size: int
    created: bool = False
    """True when `put` stored new bytes; False when the patient already had them."""


blob_metadata = MetaData()

blobs = Table(
    "blobs",
    blob_metadata,
    Column("patient_id", Text, primary_key=True),
    Column("sha256", Text, primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("sha1", Text, nullable=False),
    Column("backend", Text, nullable=False),
    Column("chunk_size", Integer, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("touched_at", DateTime(timezone=True), nullable=False),
    Column("key_generation", Integer, nullable=True),
    Index("ix_blobs_touched", "touched_at"),
)

blob_chunks = Table(
    "blob_chunks",
    blob_metadata,
    Column("patient_id", Text, primary_key=True),
    Column("sha256", Text, primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("data", LargeBinary, nullable=False),
    ForeignKeyConstraint(
        ["patient_id", "sha256"], ["blobs.patient_id", "blobs.sha256"], ondelete="CASCADE"
    ),
)

blob_refs = Table(
    "blob_refs",
    blob_metadata,
    Column("patient_id", Text, primary_key=True),
    Column("resource_type", Text, primary_key=True),
    Column("resource_id", Text, primary_key=True),
    Column("version_id", Integer, primary_key=True),
    Column("sha256", Text, primary_key=True),
    ForeignKeyConstraint(
        ["patient_id", "sha256"], ["blobs.patient_id", "blobs.sha256"], ondelete="RESTRICT"
    ),
    Index("ix_blob_refs_blob", "patient_id", "sha256"),
)


@dataclass(frozen=True)
class BlobRow:
    """A catalogue row."""

    patient_id: str
    sha256: str
    size: int
    sha1: str
    backend: str
    chunk_size: int | None
    created_at: datetime
    touched_at: datetime
    key_generation: int | None = None
    """The data key the stored bytes are encrypted with (None: stored in clear)."""
    kek_id: str | None = None
    wrapped_key: bytes | None = None
    """That data key, wrapped (None in clear or once destroyed by a purge)."""

    @property
    def data_key(self) -> WrappedKey | None:
        """The wrapped data key of an encrypted blob (None for bytes stored in clear)."""
        if self.key_generation is None:
            return None
        return WrappedKey(self.patient_id, self.key_generation, self.kek_id or "", self.wrapped_key)


class Claim(NamedTuple):
    """What `claim_blob` found."""

    inserted: bool
    key_generation: int | None
    """The data key of the bytes already stored (when not inserted)."""


def _key_filter(table: Table, key: BlobKey):  # type: ignore[no-untyped-def]
    return and_(table.c.patient_id == key.patient_id, table.c.sha256 == key.sha256)


async def claim_blob(
    conn: AsyncConnection,
    key: BlobKey,
    info: BlobInfo,
    backend: str,
    now: datetime,
    chunk_size: int | None = None,
    key_generation: int | None = None,
) -> Claim:
    """Insert the catalogue row, or renew `touched_at` if it exists.

    Renewing takes the row lock, so a sweeper that already locked the row for deletion
    finishes first; the row is then inserted afresh.
    """
    values = insert(blobs).values(
        patient_id=key.patient_id,
        sha256=key.sha256,
        size=info.size,
        sha1=info.sha1,
        backend=backend,
        chunk_size=chunk_size,
        created_at=now,
        touched_at=now,
        key_generation=key_generation,
    )
    stmt = values.on_conflict_do_update(
        index_elements=[blobs.c.patient_id, blobs.c.sha256],
        set_={"touched_at": func.greatest(blobs.c.touched_at, values.excluded.touched_at)},
    ).returning(text("(xmax = 0) AS inserted"), blobs.c.key_generation)
    row = (await conn.execute(stmt)).one()
    return Claim(bool(row[0]), row[1])


# A new one-chunk blob in one autocommit statement (issue 14: a deposit's 50 KB document):
# the catalogue row and its chunk, or nothing when the row exists (the caller then takes the
# general path: renew, re-key, missing chunks).
_INSERT_NEW = text(
    "WITH claim AS (INSERT INTO blobs (patient_id, sha256, size, sha1, backend, chunk_size,"
    " created_at, touched_at, key_generation) VALUES (:patient_id, :sha256, :size, :sha1,"
    " :backend, :chunk_size, :now, :now, :key_generation)"
    " ON CONFLICT (patient_id, sha256) DO NOTHING RETURNING patient_id, sha256),"
    " chunk AS (INSERT INTO blob_chunks (patient_id, sha256, seq, data)"
    " SELECT patient_id, sha256, 0, :data FROM claim)"
    " SELECT count(*) FROM claim"
).bindparams(
    bindparam("size", type_=BigInteger),
    bindparam("chunk_size", type_=Integer),
    bindparam("key_generation", type_=Integer),
    bindparam("now", type_=DateTime(timezone=True)),
    bindparam("data", type_=LargeBinary),
)


async def insert_new_blob(
    conn: AsyncConnection,
    key: BlobKey,
    info: BlobInfo,
    backend: str,
    now: datetime,
    data: bytes,
    chunk_size: int,
    key_generation: int | None,
) -> bool:
    """Insert a blob held in one chunk with its catalogue row; False (nothing written) when
    the catalogue row exists."""
    params = {
        "patient_id": key.patient_id,
        "sha256": key.sha256,
        "size": info.size,
        "sha1": info.sha1,
        "backend": backend,
        "chunk_size": chunk_size,
        "now": now,
        "key_generation": key_generation,
        "data": data,
    }
    return bool((await raw.fetchrow(conn, _INSERT_NEW, params))[0])


async def set_key_generation(conn: AsyncConnection, key: BlobKey, generation: int | None) -> None:
    """Record that the blob's bytes were stored again, under data key `generation`."""
    await conn.execute(
        update(blobs).where(_key_filter(blobs, key)).values(key_generation=generation)
    )


async def get_blob(conn: AsyncConnection, key: BlobKey) -> BlobRow | None:
    """The catalogue row of a blob with its wrapped data key (one query), or None."""
    dk = data_keys
    joined = blobs.outerjoin(
        dk,
        and_(dk.c.patient_id == blobs.c.patient_id, dk.c.generation == blobs.c.key_generation),
    )
    stmt = (
        select(blobs, dk.c.kek_id, dk.c.wrapped_key)
        .select_from(joined)
        .where(_key_filter(blobs, key))
    )
    row = (await conn.execute(stmt)).first()
    if row is None:
        return None
    m = dict(row._mapping)
    if m["wrapped_key"] is not None:
        m["wrapped_key"] = bytes(m["wrapped_key"])
    return BlobRow(**m)


async def lock_blob(conn: AsyncConnection, key: BlobKey) -> bool:
    """Lock a blob's row for deletion (waits for concurrent claims). False if absent."""
    stmt = select(blobs.c.sha256).where(_key_filter(blobs, key)).with_for_update()
    return (await conn.execute(stmt)).first() is not None


async def delete_blob(conn: AsyncConnection, key: BlobKey) -> None:
    """Delete a catalogue row (and, by cascade, Postgres-held chunks)."""
    await conn.execute(delete(blobs).where(_key_filter(blobs, key)))


async def insert_chunk(conn: AsyncConnection, key: BlobKey, seq: int, data: bytes) -> None:
    """Store one chunk of a Postgres-held blob."""
    await conn.execute(
        blob_chunks.insert().values(
            patient_id=key.patient_id, sha256=key.sha256, seq=seq, data=data
        )
    )


async def delete_chunks(conn: AsyncConnection, key: BlobKey) -> None:
    """Drop a Postgres-held blob's chunks (before storing its bytes again)."""
    await conn.execute(delete(blob_chunks).where(_key_filter(blob_chunks, key)))


async def read_chunk_slice(
    conn: AsyncConnection, key: BlobKey, seq: int, offset: int, length: int
) -> bytes | None:
    """`length` bytes from `offset` within chunk `seq` (None if the chunk is missing)."""
    stmt = select(func.substring(blob_chunks.c.data, offset + 1, length)).where(
        _key_filter(blob_chunks, key), blob_chunks.c.seq == seq
    )
    row = (await conn.execute(stmt)).first()
    return None if row is None else bytes(row[0])


async def chunks_present(conn: AsyncConnection, key: BlobKey) -> bool:
    """Whether a Postgres-held blob has its first chunk (empty blobs have none)."""
    stmt = select(exists().where(_key_filter(blob_chunks, key)))
    return bool((await conn.execute(stmt)).scalar_one())


def _unreferenced(older_than: datetime):  # type: ignore[no-untyped-def]
    ref = (
        select(blob_refs.c.sha256)
        .where(
            blob_refs.c.patient_id == blobs.c.patient_id,
            blob_refs.c.sha256 == blobs.c.sha256,
        )
        .exists()
    )
    return and_(blobs.c.touched_at < older_than, ~ref)


async def list_unreferenced(
    conn: AsyncConnection, older_than: datetime, limit: int
) -> list[BlobKey]:
    """Blobs untouched since `older_than` with no reference (read only, no lock)."""

    stmt = (
        select(blobs.c.patient_id, blobs.c.sha256)
        .where(_unreferenced(older_than))
        .order_by(blobs.c.touched_at)
        .limit(limit)
    )
    return [BlobKey(r.patient_id, r.sha256) for r in await conn.execute(stmt)]


async def lock_unreferenced(
    conn: AsyncConnection, older_than: datetime, limit: int
) -> list[BlobKey]:
    """Like `list_unreferenced`, locking the rows; rows locked by others are skipped.

    A transaction committing a `blob_refs` row holds a key-share lock on its blob's row,
    so such a blob is skipped here, and a claim in progress makes the blob young again.
    """

    if await routing.distributed(conn):  # no row lock across shards: one blob at a time
        locked: list[BlobKey] = []  # from more candidates, as SKIP LOCKED passes over some
        for key in await list_unreferenced(conn, older_than, limit * routing.CANDIDATES):
            if len(locked) == limit:
                break
            one = (
                select(blobs.c.sha256)
                .where(_key_filter(blobs, key), _unreferenced(older_than))
                .with_for_update(skip_locked=True)
            )
            if (await conn.execute(one)).first() is not None:
                locked.append(key)
        return locked
    stmt = (
        select(blobs.c.patient_id, blobs.c.sha256)
        .where(_unreferenced(older_than))
        .order_by(blobs.c.touched_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return [BlobKey(r.patient_id, r.sha256) for r in await conn.execute(stmt)]


async def is_referenced(conn: AsyncConnection, key: BlobKey) -> bool:
    """Whether any committed resource version points at the blob."""
    stmt = select(exists().where(_key_filter(blob_refs, key)))
    return bool((await conn.execute(stmt)).scalar_one())


# One reference row (named parameters), compiled once for the raw path (storage/raw.py).
_INSERT_REF = (
    insert(blob_refs)
    .values({c.name: bindparam(c.name) for c in blob_refs.c})
    .on_conflict_do_nothing()
)


async def add_blob_refs(
    conn: AsyncConnection,
    patient_id: str,
    resource_type: str,
    resource_id: str,
    version_id: int,
    sha256s: Iterable[str],
) -> None:
    """Record that a resource version points at blobs; call in the metadata's transaction.

    Fails with a foreign-key IntegrityError if a blob is not catalogued (never stored, or
    swept): the metadata must then not be committed.
    """
    rows = [
        {
            "patient_id": patient_id,
            "resource_type": resource_type,
            "resource_id": resource_id,
            "version_id": version_id,
            "sha256": sha,
        }
        for sha in dict.fromkeys(sha256s)
    ]
    if rows:
        await raw.execute_rows(conn, _INSERT_REF, rows)


async def refs_of_version(
    conn: AsyncConnection, patient_id: str, resource_type: str, resource_id: str, version_id: int
) -> list[str]:
    """The SHA-256 keys a resource version points at (e.g. a Binary's content)."""
    stmt = (
        select(blob_refs.c.sha256)
        .where(
            blob_refs.c.patient_id == patient_id,
            blob_refs.c.resource_type == resource_type,
            blob_refs.c.resource_id == resource_id,
            blob_refs.c.version_id == version_id,
        )
        .order_by(blob_refs.c.sha256)
    )
    return list((await conn.execute(stmt)).scalars())


async def remove_blob_refs(
    conn: AsyncConnection,
    patient_id: str,
    resource_type: str,
    resource_id: str,
    version_id: int | None = None,
) -> int:
    """Forget the references of a purged resource (or one purged version); returns rows.

    The blobs themselves go when the sweeper next runs past their grace period.
    """
    stmt = delete(blob_refs).where(
        blob_refs.c.patient_id == patient_id,
        blob_refs.c.resource_type == resource_type,
        blob_refs.c.resource_id == resource_id,
    )
    if version_id is not None:
        stmt = stmt.where(blob_refs.c.version_id == version_id)
    return (await conn.execute(stmt)).rowcount
