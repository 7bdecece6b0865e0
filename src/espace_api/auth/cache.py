"""Bounded LRU of verified identities keyed by the token's hash (principle 5)."""

import hashlib
from collections import OrderedDict
from datetime import datetime
from typing import Generic, TypeVar

T = TypeVar("T")


def token_hash(token: str) -> bytes:
    """The cache key of a token: its SHA-256 (the token itself is never kept as a key)."""
    return hashlib.sha256(token.encode()).digest()


class ExpiringLRU(Generic[T]):
    """At most `size` entries, each valid until its own expiry instant."""

    def __init__(self, size: int) -> None:
        self.size = max(0, size)
        self._items: OrderedDict[bytes, tuple[float, T]] = OrderedDict()

    def get(self, key: bytes, now: datetime) -> T | None:
        """The cached value if present and not expired at `now`."""
        item = self._items.get(key)
        if item is None:
            return None
        expires, value = item
        if expires <= now.timestamp():
            del self._items[key]
            return None
        self._items.move_to_end(key)
        return value

    def put(self, key: bytes, value: T, expires: float) -> None:
        """Cache `value` until the POSIX time `expires`, evicting the least recently used."""
        if self.size == 0:
            return
        self._items[key] = (expires, value)
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def clear(self) -> None:
        """Forget everything (e.g. after a client is disabled)."""
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)
