"""Content encryption without a database: the KEK configuration, key wrapping, the format."""

import base64
import io
import logging
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from espace_api.blobs import encryption
from espace_api.blobs.encryption import ContentTampered
from espace_api.blobs.kms import (
    KeyUnavailable,
    LocalKeyService,
    kek_id_of,
    key_service_from_settings,
    new_kek,
    parse_keks,
)
from espace_api.config import Settings


def test_missing_kek_generates_a_development_one_with_a_warning(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.WARNING)
    first = key_service_from_settings(Settings(data_dir=str(tmp_path)))
    path = tmp_path / "encryption-kek"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "generated the development KEK" in caplog.text
    caplog.clear()
    again = key_service_from_settings(Settings(data_dir=str(tmp_path)))
    assert again.current_kek_id == first.current_kek_id  # the same key, read back
    assert "using the development KEK" in caplog.text
    assert path.read_text().strip() not in caplog.text  # the key itself is never logged


def test_kek_from_secret_or_file(tmp_path: Path) -> None:
    new, old = new_kek(), new_kek()
    from_env = key_service_from_settings(Settings(encryption_kek=f"{new},{old}"))
    assert from_env.current_kek_id == kek_id_of(base64.b64decode(new))
    file = tmp_path / "kek"
    file.write_text(f"# rotated 2026-11\n{new}\n\n{old}\n")
    from_file = key_service_from_settings(Settings(encryption_kek_file=str(file)))
    assert from_file.current_kek_id == from_env.current_kek_id
    assert not (tmp_path / "encryption-kek").exists()
    for bad in ("not base64!", base64.b64encode(b"short").decode()):
        with pytest.raises(ValueError):
            key_service_from_settings(Settings(encryption_kek=bad))
    assert parse_keks(" , ") == []


async def test_wrapping_is_bound_to_kek_and_context() -> None:
    old, new = os.urandom(32), os.urandom(32)
    service = LocalKeyService([old])
    key = os.urandom(32)
    wrapped = await service.wrap(key, b"patient-a/1")
    assert key not in wrapped
    assert await service.unwrap(service.current_kek_id, wrapped, b"patient-a/1") == key
    with pytest.raises(KeyUnavailable):  # another patient's row
        await service.unwrap(service.current_kek_id, wrapped, b"patient-b/1")
    with pytest.raises(KeyUnavailable):  # a KEK that is not configured
        await LocalKeyService([new]).unwrap(kek_id_of(old), wrapped, b"patient-a/1")
    rotated = LocalKeyService([new, old])
    assert await rotated.unwrap(kek_id_of(old), wrapped, b"patient-a/1") == key


def test_stored_sizes_and_ranges() -> None:
    c, s = encryption.CHUNK_BYTES, encryption.SEALED_CHUNK_BYTES
    assert encryption.stored_size(0) == 0
    assert encryption.stored_size(1) == 1 + encryption.OVERHEAD
    assert encryption.stored_size(c) == s
    assert encryption.stored_size(c + 1) == s + 1 + encryption.OVERHEAD
    size = 20 * 1024 * 1024
    assert encryption.stored_range(0, 1, size) == (0, 0, s)
    assert encryption.stored_range(c - 1, c + 1, size) == (0, 0, 2 * s)
    assert encryption.stored_range(size - 1, size, size) == (319, 319 * s, 320 * s)
    assert encryption.stored_range(5, 10, 10) == (0, 0, 10 + encryption.OVERHEAD)


async def test_decrypted_ranges_match_the_plaintext() -> None:
    aead = AESGCM(os.urandom(32))
    data = os.urandom(3 * encryption.CHUNK_BYTES + 123)
    sealed = io.BytesIO()
    encryption.encrypt(aead, "p1", "ab" * 32, len(data), io.BytesIO(data), sealed)
    raw = sealed.getvalue()

    async def stored(lo: int, hi: int, piece: int):
        for i in range(lo, hi, piece):
            yield raw[i : min(hi, i + piece)]

    for start, end in [(0, len(data)), (1, 2), (65_530, 65_540), (len(data) - 5, len(data))]:
        _, lo, hi = encryption.stored_range(start, end, len(data))
        for piece in (7, 1000, 1 << 20):  # whatever pieces the backend yields
            plain = encryption.decrypt_range(
                aead, "p1", "ab" * 32, len(data), start, end, stored(lo, hi, piece)
            )
            assert b"".join([p async for p in plain]) == data[start:end]
    # The same bytes under another patient's name do not authenticate.
    with pytest.raises(ContentTampered):
        other = encryption.decrypt_range(
            aead, "p2", "ab" * 32, len(data), 0, 10, stored(0, len(raw), 1 << 20)
        )
        await anext(other)
