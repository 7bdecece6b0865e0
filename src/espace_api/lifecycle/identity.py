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
        if ctx.identity.kind != "operator" and not event.is_create:
            previous = event.previous
            before = orjson.loads(previous.json) if previous and previous.json else {}
            if ins_pairs(before) != ins_pairs(content):
                raise FhirError.forbidden(
                    "Only enrolment (an operator) changes a Patient's INS", "INS_READ_ONLY"
                )
        return content

    async def after_write(self, ctx: HookContext, event: WriteEvent) -> None:
        """Register the INS; one another Patient holds refuses the write (the error rolls
        the version back with the rest of the transaction)."""
        pairs = ins_pairs(event.content) if event.content is not None else set()
        fresh = event.version_id == 1  # a new Patient has no INS row to remove
        taken = await ins_repository.replace(ctx.conn, event.id, pairs, fresh=fresh)
        if taken:
            raise _conflict(taken)
