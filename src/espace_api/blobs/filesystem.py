"""Blob bytes as files: `<blob_dir>/<patient_id>/<sha256>`, written atomically.

An upload streams into `<blob_dir>/.tmp/upload-*` (same filesystem), is fsynced, then
renamed into place and the patient's directory fsynced: a reader sees the whole file or
none. Temp files left by a crashed process are removed by the sweeper after the grace period.
"""

import asyncio
import os
import tempfile
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from espace_api.blobs.base import (
    READ_BLOCK_BYTES,
    BlobKey,
    BlobNotFound,
    BlobStore,
    Spool,
)
from espace_api.blobs.keys import DataKeys
from espace_api.clock import Clock
from espace_api.storage import blob_repository as repo


class _FileSpool(Spool):
    """A spool that is a named temp file next to the blobs, ready to be renamed."""

    def __init__(self, tmp_dir: Path, max_bytes: int) -> None:
        super().__init__(
            tempfile.NamedTemporaryFile(dir=tmp_dir, prefix="upload-", delete=False), max_bytes
        )
        self.path = Path(self.file.name)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _commit_file(spool: _FileSpool, final: Path) -> None:
    spool.file.flush()
    os.fsync(spool.file.fileno())
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(spool.path, final)
    _fsync_dir(final.parent)


def _discard(spool: _FileSpool) -> None:
    spool.file.close()
    spool.path.unlink(missing_ok=True)


def _unlink(path: Path) -> None:
    path.unlink(missing_ok=True)
    try:
        path.parent.rmdir()  # a patient with no blob left keeps no directory
    except OSError:
        pass


def _remove_stale(tmp_dir: Path, cutoff: float) -> int:
    removed = 0
    for entry in os.scandir(tmp_dir):
        try:
            if entry.is_file() and entry.stat().st_mtime < cutoff:
                os.unlink(entry.path)
                removed += 1
        except FileNotFoundError:
            continue
    return removed


class FilesystemBlobStore(BlobStore):
    """Blobs under a local (or mounted) directory."""

    backend = "filesystem"

    def __init__(
        self,
        engine: AsyncEngine,
        root: str | os.PathLike[str],
        clock: Clock | None = None,
        keys: DataKeys | None = None,
    ):
        super().__init__(engine, clock, keys)
        self.root = Path(root).resolve()
        self.tmp_dir = self.root / ".tmp"
        self.tmp_dir.mkdir(parents=True, exist_ok=True)

    def path(self, key: BlobKey) -> Path:
        """Where a blob's file lives."""
        return self.root / key.patient_id / key.sha256

    def _new_spool(self, max_bytes: int) -> Spool:
        return _FileSpool(self.tmp_dir, max_bytes)

    async def _discard_spool(self, spool: Spool) -> None:
        assert isinstance(spool, _FileSpool)
        await asyncio.to_thread(_discard, spool)

    async def _write(self, key: BlobKey, spool: Spool) -> None:
        assert isinstance(spool, _FileSpool)
        await asyncio.to_thread(_commit_file, spool, self.path(key))

    async def _read(self, row: repo.BlobRow, start: int, end: int) -> AsyncIterator[bytes]:
        path = self.path(BlobKey(row.patient_id, row.sha256))
        try:
            f = await asyncio.to_thread(open, path, "rb")
        except FileNotFoundError as exc:
            raise BlobNotFound("Document content is missing") from exc
        try:
            await asyncio.to_thread(f.seek, start)
            pos = start
            while pos < end:
                data = await asyncio.to_thread(f.read, min(READ_BLOCK_BYTES, end - pos))
                if not data:
                    raise BlobNotFound("Document content is incomplete")
                pos += len(data)
                yield data
        finally:
            f.close()

    async def _remove(self, key: BlobKey) -> None:
        await asyncio.to_thread(_unlink, self.path(key))

    async def _present(self, key: BlobKey) -> bool:
        return await asyncio.to_thread(self.path(key).is_file)

    async def sweep_incomplete(self, older_than: datetime) -> int:
        """Remove upload temp files last written before `older_than` (crashed uploads)."""
        return await asyncio.to_thread(_remove_stale, self.tmp_dir, older_than.timestamp())
