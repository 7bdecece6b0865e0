"""Move the application's injected clock (principle 6): tests never sleep."""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any


@contextmanager
def shifted(app: Any, delta: timedelta) -> Iterator[None]:
    """Within the block the app's clock reads `delta` later (mint tokens inside it)."""
    clock = app.state.clock
    original = clock.now
    clock.now = lambda: original() + delta
    try:
        yield
    finally:
        clock.now = original
