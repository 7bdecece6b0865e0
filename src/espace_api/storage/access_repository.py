"""SQL of the access rules derived from a patient's Consents (see privacy/consents.py)."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    DateTime,
    Select,
    Text,
    and_,
    any_,
    bindparam,
    delete,
    insert,
    or_,
    select,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from espace_api.db.schema import access_rules, resources, search_reference, search_token
from espace_api.storage import raw


@dataclass(frozen=True)
class AccessRule:
    """One rule in force (or to come) for a patient, from one Consent."""

    kind: str
    actor: str = ""
    period_start: datetime | None = None
    period_end: datetime | None = None


async def replace_rules(
    conn: AsyncConnection, patient_id: str, consent_id: str, rules: list[AccessRule]
) -> None:
    """Make `rules` the rules of one Consent (none: the Consent no longer applies)."""
    r = access_rules
    await conn.execute(delete(r).where(r.c.patient_id == patient_id, r.c.consent_id == consent_id))
    if rules:
        rows = [
            {
                "patient_id": patient_id,
                "consent_id": consent_id,
                "kind": rule.kind,
                "actor": rule.actor,
                "period_start": rule.period_start,
                "period_end": rule.period_end,
            }
            for rule in dict.fromkeys(rules)
        ]
        await conn.execute(insert(r), rows)


def _in_force() -> Select[Any]:
    r = access_rules
    now = bindparam("now", type_=DateTime(timezone=True))
    return select(r.c.kind, r.c.actor, r.c.period_start, r.c.period_end).where(
        r.c.patient_id == bindparam("patient_id", type_=Text),
        r.c.kind == any_(bindparam("kinds", type_=ARRAY(Text))),
        or_(r.c.period_start.is_(None), r.c.period_start <= now),
        or_(r.c.period_end.is_(None), r.c.period_end > now),
    )


# Built once, run on the driver connection (storage/raw.py): every deposit reads it.
_IN_FORCE = _in_force()


async def rules_in_force(
    conn: AsyncConnection, patient_id: str, kinds: tuple[str, ...], now: datetime
) -> list[AccessRule]:
    """The patient's rules of `kinds` in force at `now`."""
    params = {"patient_id": patient_id, "kinds": list(kinds), "now": now}
    return [AccessRule(*m) for m in await raw.fetch(conn, _IN_FORCE, params)]


async def patients_with_rule(
    conn: AsyncConnection, patient_ids: list[str], kind: str, actor: str, now: datetime
) -> set[str]:
    """Which of these patients have a rule of `kind` naming `actor` in force at `now` (one
    query for a batch's patients, e.g. the services they connected)."""
    if not patient_ids:
        return set()
    r = access_rules
    stmt = select(r.c.patient_id).where(
        r.c.patient_id.in_(sorted(set(patient_ids))),
        r.c.kind == kind,
        r.c.actor == actor,
        or_(r.c.period_start.is_(None), r.c.period_start <= now),
        or_(r.c.period_end.is_(None), r.c.period_end > now),
    )
    return {m[0] for m in await conn.execute(stmt)}


async def consents_listing(
    conn: AsyncConnection, patient_id: str, document_id: str, exclude: str | None = None
) -> list[str]:
    """Ids of the patient's active Consents whose provision.data lists the document."""
    ref, tok, c = search_reference, search_token, resources
    stmt = (
        select(ref.c.resource_id)
        .join(c, and_(c.c.resource_type == "Consent", c.c.id == ref.c.resource_id))
        .join(
            tok,
            and_(
                tok.c.resource_type == "Consent",
                tok.c.resource_id == ref.c.resource_id,
                tok.c.param == "status",
                tok.c.code == "active",
            ),
        )
        .where(
            ref.c.resource_type == "Consent",
            ref.c.param == "data",
            ref.c.target_type == "DocumentReference",
            ref.c.target_id == document_id,
            ref.c.patient_id == patient_id,
            c.c.deleted.is_(False),
        )
    )
    if exclude is not None:
        stmt = stmt.where(ref.c.resource_id != exclude)
    return [m[0] for m in await conn.execute(stmt)]
