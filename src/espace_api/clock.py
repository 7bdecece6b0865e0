"""Injected time and identifiers, so that tests never sleep or guess."""

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def new_id() -> str:
    """A fresh server-assigned resource id."""
    return str(uuid.uuid4())


@dataclass
class Clock:
    """Time and id source used by services; tests replace `now` and `ids`."""

    now: Callable[[], datetime] = field(default=utc_now)
    ids: Callable[[], str] = field(default=new_id)
