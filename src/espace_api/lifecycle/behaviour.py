"""Patient: the space-status extension is the lifecycle's (registered by lifecycle.setup).

- create: enrolment is an operator's act (403 `ENROLMENT_OPERATOR_ONLY` otherwise); the space
  starts `notified` at the notice date (the `notice-date` extension, default now) with an
  opposition window of `SPACE_OPPOSITION_DAYS`; the row is saved after the write.
- update: the extension shows the stored space whatever the client sent.
- system writes (the lifecycle service's transitions) carry the extension they mean to store.
"""

from datetime import timedelta
from typing import Any

from espace_api.fhir.errors import FhirError
from espace_api.lifecycle import state
from espace_api.lifecycle.state import Space
from espace_api.resources.behaviour import HookContext, TypeBehaviour, WriteEvent
from espace_api.storage import space_repository as spaces

SPACE = "space"  # WriteEvent.carry key: a new space to save after the Patient's write


def enrolled_space(patient: dict[str, Any], now: Any, window_days: int) -> Space:
    """The `notified` space of a newly enrolled person."""
    notified = state.notice_date(patient) or now
    return Space(
        state.NOTIFIED,
        notified_at=notified,
        opposition_deadline=notified + timedelta(days=window_days),
    )


class SpaceLifecycle(TypeBehaviour):
    """The Patient's space-status extension is server-owned."""

    async def before_write(self, ctx: HookContext, event: WriteEvent) -> dict[str, Any] | None:
        content = event.content
        if content is None or event.system_write:
            return content
        if event.is_create:
            if ctx.identity.kind != "operator":
                raise FhirError.forbidden(
                    "Enrolling a person (creating a Patient) is an operator's act",
                    "ENROLMENT_OPERATOR_ONLY",
                )
            space = enrolled_space(content, event.now, ctx.settings.space_opposition_days)
            event.carry[SPACE] = space
            return state.with_extension(content, space)
        stored = await spaces.get_space(ctx.conn, event.id)
        if stored is None:  # a Patient from before the lifecycle: it shows no space
            content["extension"] = [
                e
                for e in content.get("extension") or []
                if e.get("url") not in (state.SPACE_STATUS_URL, state.NOTICE_DATE_URL)
            ] or None
            if content["extension"] is None:
                del content["extension"]
            return content
        return state.with_extension(content, stored)

    async def after_write(self, ctx: HookContext, event: WriteEvent) -> None:
        space: Space | None = event.carry.get(SPACE)
        if space is None:
            return
        # The enrolment is recorded by the Patient's create event (same transaction).
        await spaces.save_space(ctx.conn, event.id, space, event.now)
