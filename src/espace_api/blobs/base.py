"""The blob-store contract: document bytes, content-addressed by SHA-256 within a patient.

A blob is identified by `(patient_id, sha256)`: the same bytes deposited twice for one
patient are stored once (ARCHITECTURE.md principle 4). Every backend keeps a catalogue row
per blob in Postgres (table `blobs`, see `storage/blob_repository.py`): it records size,
SHA-1 and a `touched_at` time, is the parent of `blob_refs` (the committed metadata that
points at the blob) and is what the sweeper scans. The bytes themselves live in Postgres
(`blob_chunks`), a directory or an S3 bucket.

Write path: the upload is streamed into a spool (memory up to 1 MiB, then a temp file) and
hashed on the way; past `max_bytes` it is dropped and `BlobTooLarge` is raised. With a
`DataKeys` (encryption on, the default configuration), the spooled plaintext is then
encrypted under the patient's data key into a second spool (`encryption.py`: AES-256-GCM in
64 KiB chunks): backends only ever see ciphertext. Then the catalogue row is upserted (its
`touched_at` set to now, so that the sweeper leaves it alone for a grace period; its
`key_generation` names the data key), then the bytes are put in place. Only after `put`
returns does the caller commit the metadata and its `blob_refs` rows, in one transaction.

Size, SHA-1 and SHA-256 (the key, hence deduplication within a patient) always describe the
plaintext. Read path: a plaintext range is mapped to the stored chunks covering it; only
those are read and decrypted (`open` decrypts the first before returning, so a blob that
fails its tag is refused before a response starts).
"""

import asyncio
import base64
import hashlib
import re
import tempfile
from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from datetime import datetime
from typing import IO

from sqlalchemy.ext.asyncio import AsyncEngine

from espace_api.blobs import encryption
from espace_api.blobs.keys import DataKey, DataKeys
from espace_api.blobs.kms import KeyUnavailable
from espace_api.clock import Clock
from espace_api.db.engine import autocommit_connection
from espace_api.fhir.errors import FhirError
from espace_api.storage import blob_repository as repo
from espace_api.storage.blob_repository import BlobInfo as BlobInfo
from espace_api.storage.blob_repository import BlobKey as BlobKey
from espace_api.storage.data_key_repository import WrappedKey

SPOOL_MEMORY_BYTES = 1024 * 1024
READ_BLOCK_BYTES = 256 * 1024
INLINE_CRYPTO_BYTES = 1024 * 1024
"""Content up to this size is encrypted on the event loop; larger, in a worker thread."""

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# FHIR ids: [A-Za-z0-9\-\.]{1,64}; "." and ".." are refused so that ids are safe as path parts.
_PATIENT_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")

BlobData = bytes | bytearray | memoryview | AsyncIterable[bytes] | Iterable[bytes]


class BlobTooLarge(FhirError):
    """The content is larger than allowed; nothing was kept."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(
            413,
            "CONTENT_TOO_LARGE",
            f"Document content exceeds {max_bytes} bytes",
            issue_type="too-costly",
        )
        self.max_bytes = max_bytes


class BlobNotFound(FhirError):
    """No such blob for this patient."""

    def __init__(self, message: str = "Document content not found") -> None:
        super().__init__(404, "CONTENT_NOT_FOUND", message, issue_type="not-found")


class BlobReferenced(FhirError):
    """The blob is still referenced by committed metadata and cannot be deleted."""

    def __init__(self) -> None:
        super().__init__(
            409, "CONTENT_REFERENCED", "Document content is still referenced", issue_type="conflict"
        )


class RangeNotSatisfiable(FhirError):
    """The requested byte range does not overlap the blob."""

    def __init__(self, size: int) -> None:
        super().__init__(
            416,
            "RANGE_NOT_SATISFIABLE",
            "Requested range not satisfiable",
            issue_type="invalid",
            headers={"Content-Range": f"bytes */{size}"},
        )
        self.size = size


class InvalidBlobKey(FhirError):
    """A patient id or SHA-256 that cannot name a blob."""

    def __init__(self, message: str) -> None:
        super().__init__(400, "INVALID_CONTENT_KEY", message, issue_type="invalid")


def check_key(patient_id: str, sha256: str | None = None) -> None:
    """Refuse keys that are not a FHIR id / lowercase hex SHA-256 (they name files and objects)."""
    if not _PATIENT_ID.match(patient_id) or patient_id in {".", ".."}:
        raise InvalidBlobKey(f"Invalid patient id for content: {patient_id!r}")
    if sha256 is not None and not _SHA256.match(sha256):
        raise InvalidBlobKey("Content key must be a lowercase hex SHA-256")


def resolve_range(size: int, start: int | None, end: int | None) -> tuple[int, int]:
    """Turn an optional `[start, end)` byte range into concrete bounds within `size`.

    `end` is exclusive (Python slice style; HTTP's inclusive last-byte-pos + 1) and is
    clamped to the size. A start at or past the end of a non-empty blob is refused.
    """
    lo = 0 if start is None else start
    hi = size if end is None else min(end, size)
    if lo < 0 or hi < 0 or (end is not None and end < lo):
        raise RangeNotSatisfiable(size)
    if start is not None and lo >= size and size > 0:
        raise RangeNotSatisfiable(size)
    return lo, max(lo, hi)


class Spool:
    """The incoming bytes, hashed (SHA-256 and SHA-1) and counted as they are written."""

    def __init__(self, file: IO[bytes], max_bytes: int) -> None:
        self.file = file
        self.max_bytes = max_bytes
        self.size = 0
        self.hashed = True
        self._sha256 = hashlib.sha256()
        self._sha1 = hashlib.sha1(usedforsecurity=False)  # FHIR Attachment.hash

    def write(self, chunk: bytes | bytearray | memoryview) -> None:
        """Append a chunk; raise `BlobTooLarge` (keeping nothing) once past `max_bytes`."""
        if not chunk:
            return
        self.size += len(chunk)
        if self.size > self.max_bytes:
            raise BlobTooLarge(self.max_bytes)
        if self.hashed:
            self._sha256.update(chunk)
            self._sha1.update(chunk)
        self.file.write(chunk)

    def info(self, created: bool = False) -> BlobInfo:
        """The hashes and size of everything written."""
        return BlobInfo(
            sha256=self._sha256.hexdigest(),
            sha1=base64.b64encode(self._sha1.digest()).decode("ascii"),
            size=self.size,
            created=created,
        )

    def rewind(self) -> None:
        """Flush and go back to the first byte, ready to be read."""
        self.file.flush()
        self.file.seek(0)

    def read(self, n: int) -> bytes:
        """Read up to `n` bytes from the current position."""
        return self.file.read(n)

    def close(self) -> None:
        """Drop the spooled bytes."""
        self.file.close()


def memory_spool(max_bytes: int) -> Spool:
    """A spool in memory up to 1 MiB, then in an anonymous temp file."""
    return Spool(tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES), max_bytes)


async def fill_spool(spool: Spool, data: BlobData) -> None:
    """Stream `data` (bytes, sync or async iterable of bytes) into `spool`."""
    if isinstance(data, bytes | bytearray | memoryview):
        if len(data) > spool.max_bytes:
            raise BlobTooLarge(spool.max_bytes)
        spool.write(data)
    elif isinstance(data, AsyncIterable):
        async for chunk in data:
            spool.write(chunk)
    else:
        for chunk in data:
            spool.write(chunk)


class BlobStore(ABC):
    """Document bytes per patient, keyed by SHA-256, with a catalogue row in Postgres.

    Subclasses store the bytes (`_write`, `_read`, `_remove`, `_present`); this class keeps
    the catalogue, ranges, the key rules and encryption (with `keys`; None stores new bytes
    in clear and cannot read encrypted ones). Ranges are `[start, end)` byte offsets of the
    plaintext; backends see offsets of the stored bytes.
    """

    backend: str = ""

    def __init__(
        self, engine: AsyncEngine, clock: Clock | None = None, keys: DataKeys | None = None
    ) -> None:
        self.engine = engine
        self.clock = clock or Clock()
        self.keys = keys
        self.encrypt = keys is not None
        """Whether new content is encrypted (False: stored in clear; `keys` still read what
        was encrypted before)."""

    # -- public contract -------------------------------------------------------------------

    async def put(self, patient_id: str, data: BlobData, *, max_bytes: int) -> BlobInfo:
        """Store `data` for the patient (streamed, hashed on the way); return its key and hashes.

        Raises `BlobTooLarge` past `max_bytes`, leaving nothing behind. Storing bytes that the
        patient already has stores nothing new (`created` is False) but renews the blob's
        grace period, so that the sweeper cannot remove it before the caller's metadata commits.
        """
        check_key(patient_id)
        if self.keys is None or not self.encrypt:
            spool = self._new_spool(max_bytes)
            try:
                await fill_spool(spool, data)
                info = spool.info()
                created = await self._store(BlobKey(patient_id, info.sha256), info, spool, None)
                return BlobInfo(info.sha256, info.sha1, info.size, created)
            finally:
                await self._discard_spool(spool)
        plain = memory_spool(max_bytes)  # plaintext never reaches the backend's disk
        try:
            await fill_spool(plain, data)
            info = plain.info()
            data_key = await self.keys.current(patient_id)
            sealed = self._new_spool(encryption.stored_size(info.size))
            try:
                sealed.hashed = False
                plain.rewind()
                await _encrypt(data_key, info, plain, sealed)
                plain.close()
                key = BlobKey(patient_id, info.sha256)
                created = await self._store(key, info, sealed, data_key.generation)
            finally:
                await self._discard_spool(sealed)
            return BlobInfo(info.sha256, info.sha1, info.size, created)
        finally:
            plain.close()

    async def open(
        self, patient_id: str, sha256: str, start: int | None = None, end: int | None = None
    ) -> AsyncIterator[bytes]:
        """The blob's bytes in `[start, end)` as an async iterator of chunks.

        Checks happen here, before the first chunk: `BlobNotFound`, `RangeNotSatisfiable`,
        `ContentErased` (data key destroyed), `ContentTampered` (first chunk fails its tag;
        a later chunk that fails raises it from the iterator: the response is cut short).
        """
        check_key(patient_id, sha256)
        key = BlobKey(patient_id, sha256)
        async with autocommit_connection(self.engine) as conn:  # one read: no BEGIN/ROLLBACK
            row = await repo.get_blob(conn, key)
        if row is None:
            raise BlobNotFound()
        lo, hi = resolve_range(row.size, start, end)
        wrapped = row.data_key
        if wrapped is None:
            return self._read(row, lo, hi)
        if lo >= hi:
            return _empty()
        data_key = await self._data_key(wrapped)
        _, s_lo, s_hi = encryption.stored_range(lo, hi, row.size)
        plain = encryption.decrypt_range(
            data_key.aead, patient_id, sha256, row.size, lo, hi, self._read(row, s_lo, s_hi)
        )
        first = await anext(plain)  # fail before the caller starts a response
        return _prepend(first, plain)

    async def _data_key(self, wrapped: WrappedKey) -> DataKey:
        """The usable data key of an encrypted blob; 503 when no KEK can unwrap it (KMS down,
        KEK missing from the configuration: an operator's problem, logged, nothing served)."""
        try:
            if self.keys is None:
                raise KeyUnavailable("no KEK is configured (ENCRYPTION_KEK)")
            return await self.keys.unwrap(wrapped)
        except KeyUnavailable as exc:
            encryption.alerts.error(
                "content key unavailable: patient %s key %d: %s",
                wrapped.patient_id,
                wrapped.generation,
                exc,
                extra={"event": "content_key_unavailable"},
            )
            raise FhirError(
                503,
                "CONTENT_KEY_UNAVAILABLE",
                "Document content cannot be decrypted now (key service unavailable)",
                issue_type="transient",
            ) from None

    async def read_all(self, patient_id: str, sha256: str) -> bytes:
        """The whole blob in memory (small blobs, tests)."""
        return b"".join([c async for c in await self.open(patient_id, sha256)])

    async def stat(self, patient_id: str, sha256: str) -> BlobInfo | None:
        """Size and hashes of a catalogued blob, or None."""
        check_key(patient_id, sha256)
        async with autocommit_connection(self.engine) as conn:
            row = await repo.get_blob(conn, BlobKey(patient_id, sha256))
        if row is None:
            return None
        return BlobInfo(row.sha256, row.sha1, row.size)

    async def exists(self, patient_id: str, sha256: str) -> bool:
        """Whether the blob is catalogued and its bytes are in place."""
        if await self.stat(patient_id, sha256) is None:
            return False
        return await self._present(BlobKey(patient_id, sha256))

    async def delete(self, patient_id: str, sha256: str) -> bool:
        """Remove a blob now, whatever its age; refuse (`BlobReferenced`) while referenced.

        Returns False when there was no such blob.
        """
        check_key(patient_id, sha256)
        key = BlobKey(patient_id, sha256)
        async with self.engine.begin() as conn:
            if not await repo.lock_blob(conn, key):
                return False
            if await repo.is_referenced(conn, key):
                raise BlobReferenced()
            # Row first: its foreign key refuses the delete if a reference slipped in;
            # bytes second; if removing them fails the row stays and the delete can be retried.
            await repo.delete_blob(conn, key)
            await self._remove(key)
        return True

    async def list_unreferenced(self, older_than: datetime, limit: int = 1000) -> list[BlobKey]:
        """Blobs untouched since `older_than` that no committed metadata references."""
        async with self.engine.connect() as conn:
            return await repo.list_unreferenced(conn, older_than, limit)

    async def remove_content(self, key: BlobKey) -> None:
        """Remove only the bytes (the caller deletes the catalogue row under its lock)."""
        await self._remove(key)

    async def sweep_incomplete(self, older_than: datetime) -> int:
        """Remove leftovers of uploads that died before `older_than` (temp files, multipart
        uploads); returns how many. Nothing to do for backends whose uploads are atomic."""
        return 0

    async def aclose(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Release clients and connections held by the backend (not the engine)."""

    # -- backend hooks ---------------------------------------------------------------------

    def _new_spool(self, max_bytes: int) -> Spool:
        return memory_spool(max_bytes)

    async def _discard_spool(self, spool: Spool) -> None:
        spool.close()

    async def _store(
        self, key: BlobKey, info: BlobInfo, spool: Spool, generation: int | None
    ) -> bool:
        """Catalogue the blob (renewing its grace period), then put its bytes in place.

        `spool` holds the bytes to store (ciphertext under data key `generation`, or the
        plaintext when None). Returns True when the patient did not have these bytes yet.
        Backends whose bytes live outside Postgres use this; the Postgres backend writes both
        in one transaction.
        """
        async with self.engine.begin() as conn:
            claim = await repo.claim_blob(
                conn, key, info, self.backend, self.clock.now(), key_generation=generation
            )
        # A row that existed may have lost its bytes (a put that died after claiming), or
        # hold them under a destroyed key (or in clear): write them again. New rows never
        # have bytes yet.
        rekeyed = not claim.inserted and claim.key_generation != generation
        if claim.inserted or rekeyed or not await self._present(key):
            spool.rewind()
            await self._write(key, spool)
            if rekeyed:
                async with self.engine.begin() as conn:
                    await repo.set_key_generation(conn, key, generation)
        return claim.inserted

    @abstractmethod
    async def _write(self, key: BlobKey, spool: Spool) -> None:
        """Put the spooled bytes (rewound; `spool.size` of them) under `key`, atomically."""

    @abstractmethod
    def _read(self, row: repo.BlobRow, start: int, end: int) -> AsyncIterator[bytes]:
        """Yield stored bytes `[start, end)` of the catalogued blob (bounds already checked)."""

    @abstractmethod
    async def _remove(self, key: BlobKey) -> None:
        """Delete the bytes under `key`; no error if they are already gone."""

    @abstractmethod
    async def _present(self, key: BlobKey) -> bool:
        """Whether bytes are stored under `key`."""


async def _encrypt(data_key: DataKey, info: BlobInfo, plain: Spool, sealed: Spool) -> None:
    """Seal the plaintext spool into `sealed` (in a thread when large)."""

    def run() -> None:
        encryption.encrypt(
            data_key.aead, data_key.patient_id, info.sha256, info.size, plain, sealed
        )

    if info.size > INLINE_CRYPTO_BYTES:
        await asyncio.to_thread(run)
    else:
        run()


async def _empty() -> AsyncIterator[bytes]:
    return
    yield


async def _prepend(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    yield first
    async for piece in rest:
        yield piece
