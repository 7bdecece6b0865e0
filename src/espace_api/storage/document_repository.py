"""SQL for document deposits: finding documents by masterIdentifier.

`documents_with_identifier` reads the core's tables without the access policy: the deposit
rules need to know whether an identifier is taken in the patient's space even when the caller
cannot see the document (they then get a 409, never the document). `deposits_by_identifier`
(deposit receipts) applies the caller's policy.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, Text, and_, bindparam, exists, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from espace_api.db.schema import resource_versions, resources, search_token
from espace_api.storage import raw


@dataclass(frozen=True)
class DocumentRow:
    """A current DocumentReference of a patient."""

    id: str
    version_id: int
    json: str
    created_by: str | None


def _with_identifier() -> Select[Any]:
    r, t = resources, search_token
    patient = bindparam("patient_id", type_=Text)
    return (
        select(r.c.id, r.c.version_id, r.c.content.cast(Text).label("json"), r.c.created_by)
        .select_from(
            t.join(
                r,
                and_(r.c.resource_type == t.c.resource_type, r.c.id == t.c.resource_id),
            )
        )
        .where(
            t.c.patient_id == patient,
            t.c.resource_type == "DocumentReference",
            t.c.param == "identifier",
            t.c.code == bindparam("value", type_=Text),
            t.c.system == bindparam("system", type_=Text),
            r.c.patient_id == patient,
            r.c.deleted.is_(False),
        )
        .distinct()
        .order_by(r.c.id)
    )


# Built once, run on the driver connection (storage/raw.py): it is on every deposit's path.
_WITH_IDENTIFIER = _with_identifier()


async def documents_with_identifier(
    conn: AsyncConnection, patient_id: str, system: str, value: str
) -> list[DocumentRow]:
    """Current (not deleted) DocumentReferences of the patient indexed under `system|value`.

    The `identifier` index covers masterIdentifier and identifier: callers check which.
    """
    params = {"patient_id": patient_id, "system": system, "value": value}
    return [
        DocumentRow(row["id"], row["version_id"], row["json"], row["created_by"])
        for row in await raw.fetch(conn, _WITH_IDENTIFIER, params)
    ]


@dataclass(frozen=True)
class Deposit:
    """A current DocumentReference the caller can see, with when it was first stored."""

    id: str
    version_id: int
    last_updated: datetime
    deposited: datetime
    patient_id: str | None
    json: str


async def deposits_by_identifier(
    conn: AsyncConnection, pairs: list[tuple[str, str]], visible: ColumnElement[bool]
) -> list[Deposit]:
    """Current DocumentReferences indexed under any `system|value` of `pairs` that the
    `visible` predicate (the caller's policy on `resources`) lets through."""
    r, t, first = resources, search_token, resource_versions
    stmt = (
        select(
            r.c.id,
            r.c.version_id,
            r.c.last_updated,
            first.c.last_updated.label("deposited"),
            r.c.patient_id,
            r.c.content.cast(Text).label("json"),
        )
        .join(
            first,
            and_(
                first.c.patient_id == r.c.patient_id,
                first.c.resource_type == r.c.resource_type,
                first.c.id == r.c.id,
            ),
        )
        .where(
            r.c.resource_type == "DocumentReference",
            r.c.deleted.is_(False),
            first.c.version_id == 1,
            exists().where(
                t.c.patient_id == r.c.patient_id,
                t.c.resource_type == r.c.resource_type,
                t.c.resource_id == r.c.id,
                t.c.param == "identifier",
                tuple_(t.c.system, t.c.code).in_(pairs),
            ),
            visible,
        )
        .order_by(r.c.id)
    )
    return [Deposit(*row) for row in await conn.execute(stmt)]
