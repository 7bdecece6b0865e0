"""The profile package's type behaviours (registered by `profile.setup.register`).

- `ProfileWriters` (health profile types, Observation, Appointment): who may write what
  (profile/writers.py), checked before every client write.
"""

from typing import Any

import orjson

from espace_api.profile import writers
from espace_api.resources.behaviour import HookContext, TypeBehaviour, WriteEvent


def previous_content(event: WriteEvent) -> dict[str, Any] | None:
    """The JSON of the version being replaced (None for a create)."""
    prev = event.previous
    return orjson.loads(prev.json) if prev is not None and prev.json is not None else None


class ProfileWriters(TypeBehaviour):
    """Who writes the health profile, measurements and agenda."""

    async def before_write(self, ctx: HookContext, event: WriteEvent) -> dict[str, Any] | None:
        if event.system_write:
            return event.content
        author = event.previous.created_by if event.previous is not None else None
        writers.check_writer(ctx.identity, event.rtype.name, author, event.is_create)
        writers.check_label(ctx.identity, event.content, previous_content(event))
        return event.content
