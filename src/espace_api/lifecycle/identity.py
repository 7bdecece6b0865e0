"""Patient: the INS is the identity key of the vault (issue 21).

- Only an operator sets or changes a Patient's INS identifiers (enrolment); anyone else's
  write that changes them is 403 `INS_READ_ONLY` (the rest of the Patient stays theirs to
  edit where the rules allow).
- One Patient per INS: the `patient_ins` register is unique on (system, value); a create or
  update naming an INS another Patient holds is 409 `INS_CONFLICT` and changes nothing. A
  deleted Patient frees its INS.
"""

from typing import Any

import orjson

from espace_api.fhir.errors import FhirError
from espace_api.fhir.ins import ins_pairs
from espace_api.resources.behaviour import HookContext, TypeBehaviour, WriteEvent
from espace_api.storage import ins_repository


def _conflict(pairs: list[tuple[str, str]]) -> FhirError:
    systems = ", ".join(sorted({s for s, _ in pairs}))
    return FhirError.conflict(
        f"This INS ({systems}) is already another Patient's: one Patient per INS",
        "INS_CONFLICT",
    )


class InsIdentity(TypeBehaviour):
    """Guards the INS of Patients and keeps the register in step."""

    async def before_write(self, ctx: HookContext, event: WriteEvent) -> dict[str, Any] | None:
        content = event.content
        if content is None or event.system_write:
            return content
        pairs = ins_pairs(content)
        if ctx.identity.kind != "operator" and not event.is_create:
            before = (
                orjson.loads(event.previous.json) if event.previous and event.previous.json else {}
            )
            if ins_pairs(before) != pairs:
                raise FhirError.forbidden(
                    "Only enrolment (an operator) changes a Patient's INS", "INS_READ_ONLY"
                )
        owners = await ins_repository.owners(ctx.conn, pairs)
        taken = [p for p, owner in owners.items() if owner != event.id]
        if taken:
            raise _conflict(taken)
        return content

    async def after_write(self, ctx: HookContext, event: WriteEvent) -> None:
        pairs = ins_pairs(event.content) if event.content is not None else set()
        taken = await ins_repository.replace(ctx.conn, event.id, pairs)
        if taken:  # a concurrent write took it between the check and now
            raise _conflict(taken)
