"""Blob bytes in an S3-compatible bucket (AWS S3, SeaweedFS, MinIO, Ceph RGW, Garage...).

Object key: `<prefix><patient_id>/<sha256>`. The upload is spooled and hashed locally
first (its key is its hash), then sent with one PutObject (up to 8 MiB) or a multipart
upload (aborted on failure; the sweeper aborts those a crashed process left behind).
Objects are written once and never modified, so any S3 consistency model is enough.
"""

import asyncio
import base64
import contextlib
import hashlib
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import datetime
from typing import Any

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

PART_BYTES = 8 * 1024 * 1024  # S3 parts are at least 5 MiB except the last


_SESSION: Any = None


def _session() -> Any:
    """One aiobotocore session per process: it caches the (slow to load) service models."""
    global _SESSION
    if _SESSION is None:
        from aiobotocore.session import get_session

        _SESSION = get_session()
    return _SESSION


def _is_missing(exc: Exception) -> bool:
    response = getattr(exc, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code in {"404", "NoSuchKey", "NotFound", "NoSuchUpload"} or status == 404


class S3BlobStore(BlobStore):
    """Blobs in one bucket. Create with `await S3BlobStore.connect(...)`; `aclose()` after."""

    backend = "s3"

    def __init__(
        self,
        engine: AsyncEngine,
        client: Any,
        bucket: str,
        *,
        prefix: str = "",
        clock: Clock | None = None,
        part_bytes: int = PART_BYTES,
        keys: DataKeys | None = None,
    ) -> None:
        super().__init__(engine, clock, keys)
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self.part_bytes = part_bytes
        self._stack: AsyncExitStack | None = None

    @classmethod
    async def connect(
        cls,
        engine: AsyncEngine,
        *,
        bucket: str,
        endpoint_url: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        region: str = "us-east-1",
        prefix: str = "",
        clock: Clock | None = None,
        create_bucket: bool = False,
        keys: DataKeys | None = None,
    ) -> "S3BlobStore":
        """Open an S3 client (aiobotocore) for the bucket; optionally create the bucket."""
        from aiobotocore.config import AioConfig

        config = AioConfig(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            retries={"max_attempts": 3, "mode": "standard"},
            # Many S3-compatible servers reject the CRC trailers newer botocore adds by default.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            max_pool_connections=20,
        )
        stack = AsyncExitStack()
        client = await stack.enter_async_context(
            _session().create_client(
                "s3",
                endpoint_url=endpoint_url,
                region_name=region,
                aws_access_key_id=access_key,
                aws_secret_access_key=secret_key,
                config=config,
            )
        )
        store = cls(engine, client, bucket, prefix=prefix, clock=clock, keys=keys)
        store._stack = stack
        if create_bucket:
            await store.ensure_bucket()
        return store

    async def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist."""
        try:
            await self.client.head_bucket(Bucket=self.bucket)
        except Exception as exc:
            if not _is_missing(exc):
                raise
            await self.client.create_bucket(Bucket=self.bucket)

    async def aclose(self) -> None:
        if self._stack is not None:
            await self._stack.aclose()
            self._stack = None

    def object_key(self, key: BlobKey) -> str:
        """The object name of a blob."""
        return f"{self.prefix}{key.patient_id}/{key.sha256}"

    async def _write(self, key: BlobKey, spool: Spool) -> None:
        name = self.object_key(key)
        if spool.size <= self.part_bytes:
            body = await asyncio.to_thread(spool.read, spool.size)
            await self.client.put_object(
                Bucket=self.bucket,
                Key=name,
                Body=body,
                ContentLength=spool.size,
                ContentMD5=_md5_b64(body),
            )
            return
        upload = await self.client.create_multipart_upload(Bucket=self.bucket, Key=name)
        upload_id = upload["UploadId"]
        try:
            parts = []
            number = 1
            while body := await asyncio.to_thread(spool.read, self.part_bytes):
                part = await self.client.upload_part(
                    Bucket=self.bucket,
                    Key=name,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=body,
                    ContentMD5=_md5_b64(body),
                )
                parts.append({"PartNumber": number, "ETag": part["ETag"]})
                number += 1
            await self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=name, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            with contextlib.suppress(Exception):  # the sweeper aborts it later otherwise
                await asyncio.shield(
                    self.client.abort_multipart_upload(
                        Bucket=self.bucket, Key=name, UploadId=upload_id
                    )
                )
            raise

    async def _read(self, row: repo.BlobRow, start: int, end: int) -> AsyncIterator[bytes]:
        if start >= end:
            return
        try:
            response = await self.client.get_object(
                Bucket=self.bucket,
                Key=self.object_key(BlobKey(row.patient_id, row.sha256)),
                Range=f"bytes={start}-{end - 1}",
            )
        except Exception as exc:
            if _is_missing(exc):
                raise BlobNotFound("Document content is missing") from exc
            raise
        async with response["Body"] as body:
            remaining = end - start
            async for data in body.iter_chunks(READ_BLOCK_BYTES):
                remaining -= len(data)
                yield data
        if remaining != 0:
            raise BlobNotFound("Document content is incomplete")

    async def _remove(self, key: BlobKey) -> None:
        await self.client.delete_object(Bucket=self.bucket, Key=self.object_key(key))

    async def _present(self, key: BlobKey) -> bool:
        try:
            await self.client.head_object(Bucket=self.bucket, Key=self.object_key(key))
        except Exception as exc:
            if _is_missing(exc):
                return False
            raise
        return True

    async def sweep_incomplete(self, older_than: datetime) -> int:
        """Abort multipart uploads started before `older_than` (left by crashed processes)."""
        aborted = 0
        paginator = self.client.get_paginator("list_multipart_uploads")
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
            for upload in page.get("Uploads", []) or []:
                if upload["Initiated"] < older_than:
                    try:
                        await self.client.abort_multipart_upload(
                            Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                        )
                        aborted += 1
                    except Exception as exc:
                        if not _is_missing(exc):
                            raise
        return aborted


def _md5_b64(data: bytes) -> str:
    """Content-MD5 header value: the server checks each request body arrived intact."""
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode("ascii")
