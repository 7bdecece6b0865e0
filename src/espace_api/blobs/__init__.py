"""Document content storage (issue 4): blob stores and the sweeper.

`open_blob_store(settings, engine, clock)` returns the backend chosen by
`Settings.blob_backend` (postgres | filesystem | s3), encrypting content under per-patient
data keys (`keys.py`, `kms.py`, `encryption.py`) unless `ENCRYPTION_ENABLED=false`. See
`base.py` for the contract and docs/encryption.md.
"""

from sqlalchemy.ext.asyncio import AsyncEngine

from espace_api.blobs.base import (
    BlobInfo,
    BlobKey,
    BlobNotFound,
    BlobReferenced,
    BlobStore,
    BlobTooLarge,
    InvalidBlobKey,
    RangeNotSatisfiable,
    resolve_range,
)
from espace_api.blobs.keys import DataKeys
from espace_api.blobs.kms import key_service_from_settings
from espace_api.clock import Clock
from espace_api.config import Settings

__all__ = [
    "BlobInfo",
    "BlobKey",
    "BlobNotFound",
    "BlobReferenced",
    "BlobStore",
    "BlobTooLarge",
    "InvalidBlobKey",
    "RangeNotSatisfiable",
    "open_blob_store",
    "resolve_range",
]

BACKENDS = ("postgres", "filesystem", "s3")


def data_keys_from_settings(
    settings: Settings, engine: AsyncEngine, clock: Clock | None = None
) -> DataKeys | None:
    """The patients' data keys under the configured KEK. With encryption off, only when a KEK
    is configured (to read what was encrypted before); else None."""
    configured = settings.encryption_kek or settings.encryption_kek_file
    if not settings.encryption_enabled and not configured:
        return None
    return DataKeys(engine, key_service_from_settings(settings), clock)


async def open_blob_store(
    settings: Settings, engine: AsyncEngine, clock: Clock | None = None
) -> BlobStore:
    """The configured blob store; call `aclose()` on shutdown."""
    store = await _open_backend(settings, engine, clock)
    store.encrypt = settings.encryption_enabled and store.keys is not None
    return store


async def _open_backend(settings: Settings, engine: AsyncEngine, clock: Clock | None) -> BlobStore:
    backend = settings.blob_backend.strip().lower()
    keys = data_keys_from_settings(settings, engine, clock)
    if backend == "postgres":
        from espace_api.blobs.postgres import PostgresBlobStore

        return PostgresBlobStore(engine, clock, keys)
    if backend == "filesystem":
        from espace_api.blobs.filesystem import FilesystemBlobStore

        return FilesystemBlobStore(engine, settings.blob_dir, clock, keys)
    if backend == "s3":
        from espace_api.blobs.s3 import S3BlobStore

        return await S3BlobStore.connect(
            engine,
            bucket=settings.s3_bucket,
            endpoint_url=settings.s3_endpoint_url,
            access_key=settings.s3_access_key,
            secret_key=settings.s3_secret_key,
            region=settings.s3_region,
            clock=clock,
            create_bucket=settings.s3_create_bucket,
            keys=keys,
        )
    raise ValueError(f"BLOB_BACKEND must be one of {', '.join(BACKENDS)}, not {backend!r}")
