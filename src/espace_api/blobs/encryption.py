"""The stored form of encrypted content: AES-256-GCM in 64 KiB chunks (docs/encryption.md).

A blob's plaintext is cut into chunks of `CHUNK_BYTES` (the last one shorter); each is stored
as `nonce (12 bytes) | ciphertext | tag (16 bytes)`, so the stored size is the plaintext size
plus 28 bytes per chunk and a plaintext range maps to a stored range of whole chunks: serving
1 KB of a 20 MB document reads and decrypts one or two chunks, never the whole blob.

Every chunk is authenticated together with what it must be (the associated data): the
patient, the blob's SHA-256, the chunk's index and whether it is the last one. A chunk moved
to another place, another blob or another patient, a truncated blob or any flipped bit fails
its GCM tag: `ContentTampered`, never garbage bytes. Nonces are random (96 bits) per chunk.
"""

import logging
import os
import struct
from collections.abc import AsyncIterator
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from espace_api.fhir.errors import FhirError

CHUNK_BYTES = 64 * 1024
NONCE_BYTES = 12
TAG_BYTES = 16
OVERHEAD = NONCE_BYTES + TAG_BYTES
SEALED_CHUNK_BYTES = CHUNK_BYTES + OVERHEAD
FORMAT = b"espace-blob/v1"

alerts = logging.getLogger("espace_api.alert")


class ContentTampered(FhirError):
    """Stored content failed its authentication: it was altered outside the service."""

    def __init__(self) -> None:
        super().__init__(
            409,
            "CONTENT_INTEGRITY_FAILED",
            "Document content failed its integrity check and cannot be served; operators "
            "have been alerted",
            issue_type="conflict",
        )


class ContentErased(FhirError):
    """The content's data key was destroyed (purge): the bytes can no longer be read."""

    def __init__(self) -> None:
        super().__init__(404, "CONTENT_ERASED", "Document content was erased", issue_type="deleted")


class Readable(Protocol):
    """What the encryptor reads plaintext from (a spool)."""

    def read(self, n: int) -> bytes: ...


class Writable(Protocol):
    """What the encryptor writes stored chunks to (a spool)."""

    def write(self, chunk: bytes | bytearray | memoryview) -> None: ...


def stored_size(size: int) -> int:
    """Stored bytes for `size` plaintext bytes (an empty blob stores nothing)."""
    return size + OVERHEAD * -(-size // CHUNK_BYTES)


def stored_range(start: int, end: int, size: int) -> tuple[int, int, int]:
    """(first chunk index, stored start, stored end) of the chunks covering `[start, end)`."""
    first = start // CHUNK_BYTES
    last = (end - 1) // CHUNK_BYTES
    stored_end = min((last + 1) * SEALED_CHUNK_BYTES, stored_size(size))
    return first, first * SEALED_CHUNK_BYTES, stored_end


def _aad(patient_id: str, sha256: str, index: int, final: bool) -> bytes:
    return b"\0".join(
        (FORMAT, patient_id.encode(), sha256.encode(), struct.pack(">Q?", index, final))
    )


def encrypt(
    aead: AESGCM, patient_id: str, sha256: str, size: int, src: Readable, dst: Writable
) -> None:
    """Read `size` plaintext bytes from `src`, write their sealed chunks to `dst`."""
    count = -(-size // CHUNK_BYTES)
    for index in range(count):
        plain = src.read(CHUNK_BYTES)
        nonce = os.urandom(NONCE_BYTES)
        aad = _aad(patient_id, sha256, index, index == count - 1)
        dst.write(nonce)
        dst.write(aead.encrypt(nonce, plain, aad))


def decrypt_chunk(
    aead: AESGCM, patient_id: str, sha256: str, index: int, final: bool, sealed: bytes
) -> bytes:
    """One chunk's plaintext; `ContentTampered` (and an alert line) when it fails its tag."""
    try:
        return aead.decrypt(
            sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], _aad(patient_id, sha256, index, final)
        )
    except InvalidTag:
        # No health data here: ids of the patient and of the blob, and where it failed.
        alerts.error(
            "content integrity check failed: patient %s blob %s chunk %d",
            patient_id,
            sha256,
            index,
            extra={"event": "content_tampered"},
        )
        raise ContentTampered() from None


async def decrypt_range(
    aead: AESGCM,
    patient_id: str,
    sha256: str,
    size: int,
    start: int,
    end: int,
    stored: AsyncIterator[bytes],
) -> AsyncIterator[bytes]:
    """Plaintext `[start, end)` from `stored`, the stored bytes of the chunks covering it
    (as `stored_range` says), in pieces of arbitrary sizes."""
    index, _, _ = stored_range(start, end, size)
    last = -(-size // CHUNK_BYTES) - 1
    pos = index * CHUNK_BYTES  # plaintext offset of the chunk being assembled
    buffer = bytearray()
    pieces = aiter(stored)
    while pos < end:
        want = min(CHUNK_BYTES, size - pos) + OVERHEAD
        while len(buffer) < want:
            piece = await anext(pieces, None)
            if piece is None:
                raise _incomplete(patient_id, sha256, index)
            buffer += piece
        plain = decrypt_chunk(aead, patient_id, sha256, index, index == last, bytes(buffer[:want]))
        del buffer[:want]
        lo, hi = max(start - pos, 0), min(end - pos, len(plain))
        yield plain[lo:hi] if (lo, hi) != (0, len(plain)) else plain
        pos += CHUNK_BYTES
        index += 1


def _incomplete(patient_id: str, sha256: str, index: int) -> FhirError:
    alerts.error(
        "content truncated: patient %s blob %s chunk %d",
        patient_id,
        sha256,
        index,
        extra={"event": "content_tampered"},
    )
    return ContentTampered()
