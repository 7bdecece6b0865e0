"""Blob bytes in Postgres: 1 MiB `bytea` rows in `blob_chunks`, next to their catalogue row.

A 50 KB document is one row (one INSERT, one SELECT); a 20 MB one is 20 rows, written in the
same short transaction as its catalogue row once the upload has been spooled and hashed
(no connection is held while a slow client uploads), and read one chunk per query (no
connection is held while a slow client downloads). The `data` column is stored EXTERNAL
(no compression: PDFs and images are compressed already), so a range reads only its slice.
"""

from collections.abc import AsyncIterator

from espace_api.blobs.base import BlobInfo, BlobKey, BlobNotFound, BlobStore, Spool
from espace_api.db.engine import autocommit_connection
from espace_api.storage import blob_repository as repo
from espace_api.storage import routing

CHUNK_BYTES = 1024 * 1024


class PostgresBlobStore(BlobStore):
    """The default backend: everything in the service's database."""

    backend = "postgres"
    chunk_bytes = CHUNK_BYTES

    async def _store(
        self, key: BlobKey, info: BlobInfo, spool: Spool, generation: int | None
    ) -> bool:
        if await self._store_new_small(key, info, spool, generation):
            return True
        async with self.engine.begin() as conn:
            claim = await repo.claim_blob(
                conn,
                key,
                info,
                self.backend,
                self.clock.now(),
                chunk_size=self.chunk_bytes,
                key_generation=generation,
            )
            rekeyed = not claim.inserted and claim.key_generation != generation
            if rekeyed:  # stored in clear or under a destroyed key: store them anew
                await repo.delete_chunks(conn, key)
                await repo.set_key_generation(conn, key, generation)
            write = claim.inserted or rekeyed
            if not write and info.size:  # a put that died after claiming left no chunks
                write = not await repo.chunks_present(conn, key)
            if write:
                spool.rewind()
                seq = 0
                while chunk := spool.read(self.chunk_bytes):
                    await repo.insert_chunk(conn, key, seq, chunk)
                    seq += 1
        return claim.inserted

    async def _store_new_small(
        self, key: BlobKey, info: BlobInfo, spool: Spool, generation: int | None
    ) -> bool:
        """A new blob of one chunk in one autocommit statement (catalogue row and chunk;
        on plain Postgres): most deposits. False, with nothing written, for any other."""
        spool.rewind()
        data = spool.read(self.chunk_bytes)
        if not data or spool.read(1):
            return False
        async with autocommit_connection(self.engine) as conn:
            if await routing.distributed(conn):
                return False
            now = self.clock.now()
            return await repo.insert_new_blob(
                conn, key, info, self.backend, now, data, self.chunk_bytes, generation
            )

    async def _write(self, key: BlobKey, spool: Spool) -> None:
        raise NotImplementedError  # _store writes the chunks in the catalogue's transaction

    async def _read(self, row: repo.BlobRow, start: int, end: int) -> AsyncIterator[bytes]:
        key = BlobKey(row.patient_id, row.sha256)
        chunk = row.chunk_size or self.chunk_bytes
        pos = start
        while pos < end:
            seq, offset = divmod(pos, chunk)
            length = min(chunk - offset, end - pos)
            async with self.engine.connect() as conn:
                data = await repo.read_chunk_slice(conn, key, seq, offset, length)
            if data is None or len(data) != length:
                raise BlobNotFound("Document content is incomplete")
            pos += length
            yield data

    async def _remove(self, key: BlobKey) -> None:
        """Nothing to do: chunks go with their catalogue row (ON DELETE CASCADE)."""

    async def _present(self, key: BlobKey) -> bool:
        async with self.engine.connect() as conn:
            row = await repo.get_blob(conn, key)
            return row is not None and (row.size == 0 or await repo.chunks_present(conn, key))
