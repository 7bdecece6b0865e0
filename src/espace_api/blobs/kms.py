"""The key-encryption service (KMS) interface, and the KEK-from-configuration implementation.

Patients' data keys are stored wrapped (encrypted) by a key-encryption key (KEK) that never
enters the database. `KeyService` is all the service needs from whatever holds the KEK:

- `current_kek_id`: the id of the KEK new data keys are wrapped with (stored beside each
  wrapped key, so that unwrapping picks the right KEK and rotation finds what to re-wrap);
- `wrap(data_key, context)` -> wrapped bytes under the current KEK;
- `unwrap(kek_id, wrapped, context)` -> the data key, `KeyUnavailable` if that KEK is unknown.

`context` (the patient id and key generation) is bound to the wrapped key (AES-GCM associated
data here; "context"/"additional authenticated data" in Vault transit, AWS/GCP KMS), so a
wrapped key copied to another patient's row does not unwrap. A Vault transit, cloud KMS or
PKCS#11 implementation is a class with these three members; see docs/encryption.md.

`LocalKeyService` holds KEKs from configuration: `ENCRYPTION_KEK` (a secret in the
environment) or `ENCRYPTION_KEK_FILE`, base64 of 32 random bytes each, the current KEK first
and previous ones after it (comma- or line-separated) until `espace-api rotate-kek` has
re-wrapped every data key. With neither set, a KEK is generated once under `DATA_DIR`
(development; a warning says so).
"""

import base64
import binascii
import hashlib
import logging
import os
from abc import ABC, abstractmethod
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from espace_api.config import Settings

log = logging.getLogger(__name__)

KEY_BYTES = 32
DEV_KEK_FILE = "encryption-kek"


class KeyUnavailable(Exception):
    """A wrapped key cannot be unwrapped: unknown KEK or a wrapped key that fails its tag."""


class KeyService(ABC):
    """What holds the key-encryption keys (KMS, HSM or configuration)."""

    @property
    @abstractmethod
    def current_kek_id(self) -> str:
        """The KEK that `wrap` uses."""

    @abstractmethod
    async def wrap(self, data_key: bytes, context: bytes) -> bytes:
        """`data_key` encrypted under the current KEK, bound to `context`."""

    @abstractmethod
    async def unwrap(self, kek_id: str, wrapped: bytes, context: bytes) -> bytes:
        """The data key that `wrap` turned into `wrapped` under KEK `kek_id`."""


def kek_id_of(kek: bytes) -> str:
    """A KEK's public id: a fingerprint (never the key)."""
    return "local:" + hashlib.sha256(b"espace-kek-id\0" + kek).hexdigest()[:16]


class LocalKeyService(KeyService):
    """KEKs held in memory (from configuration); AES-256-GCM key wrapping."""

    def __init__(self, keks: list[bytes]) -> None:
        if not keks:
            raise ValueError("at least one KEK is needed")
        for kek in keks:
            if len(kek) != KEY_BYTES:
                raise ValueError(f"a KEK is {KEY_BYTES} bytes (base64 of 32 random bytes)")
        self._keks = {kek_id_of(k): AESGCM(k) for k in keks}
        self._current = kek_id_of(keks[0])

    @property
    def current_kek_id(self) -> str:
        return self._current

    async def wrap(self, data_key: bytes, context: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._keks[self._current].encrypt(nonce, data_key, context)

    async def unwrap(self, kek_id: str, wrapped: bytes, context: bytes) -> bytes:
        kek = self._keks.get(kek_id)
        if kek is None:
            raise KeyUnavailable(f"KEK {kek_id} is not configured")
        try:
            return kek.decrypt(wrapped[:12], wrapped[12:], context)
        except InvalidTag:
            raise KeyUnavailable(f"a data key wrapped by {kek_id} failed its tag") from None


def parse_keks(text: str) -> list[bytes]:
    """KEKs from `base64[,base64...]` (commas or newlines; blank lines and # comments skipped)."""
    keys = []
    for line in text.replace(",", "\n").splitlines():
        item = line.strip()
        if not item or item.startswith("#"):
            continue
        try:
            keys.append(base64.b64decode(item, validate=True))
        except (binascii.Error, ValueError):
            raise ValueError("a KEK must be base64 of 32 random bytes") from None
    return keys


def new_kek() -> str:
    """A fresh KEK, base64 (what `espace-api new-kek` prints)."""
    return base64.b64encode(os.urandom(KEY_BYTES)).decode("ascii")


def _dev_kek(data_dir: str) -> str:
    """The development KEK under `data_dir`, created (mode 0600) on first use."""
    path = Path(data_dir) / DEV_KEK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        created = False
    else:
        with os.fdopen(fd, "w") as f:
            f.write(new_kek() + "\n")
        created = True
    log.warning(
        "no ENCRYPTION_KEK or ENCRYPTION_KEK_FILE: %s the development KEK %s; losing it makes "
        "every stored document unreadable (configure a real KEK in production)",
        "generated" if created else "using",
        path,
    )
    return path.read_text()


def key_service_from_settings(settings: Settings) -> KeyService:
    """The configured KEKs: env secret, else file, else the development KEK under data_dir."""
    if settings.encryption_kek:
        text = settings.encryption_kek.get_secret_value()
    elif settings.encryption_kek_file:
        text = Path(settings.encryption_kek_file).read_text()
    else:
        text = _dev_kek(settings.data_dir)
    return LocalKeyService(parse_keks(text))
