"""SQL for document deposits (issue 4): finding a patient's documents by masterIdentifier.

Reads the core's tables (`resources`, `search_token`) without the access policy: the
deposit rules need to know whether an identifier is taken in the patient's space even when
the caller cannot see the document (they then get a 409, never the document).
"""

from dataclasses import dataclass

from sqlalchemy import Text, and_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from espace_api.db.schema import resources, search_token


@dataclass(frozen=True)
class DocumentRow:
    """A current DocumentReference of a patient."""

    id: str
    version_id: int
    json: str
    created_by: str | None


async def documents_with_identifier(
    conn: AsyncConnection, patient_id: str, system: str, value: str
) -> list[DocumentRow]:
    """Current (not deleted) DocumentReferences of the patient indexed under `system|value`.

    The `identifier` index covers masterIdentifier and identifier: callers check which.
    """
    r, t = resources, search_token
    stmt = (
        select(r.c.id, r.c.version_id, r.c.content.cast(Text).label("json"), r.c.created_by)
        .select_from(
            t.join(
                r,
                and_(r.c.resource_type == t.c.resource_type, r.c.id == t.c.resource_id),
            )
        )
        .where(
            t.c.patient_id == patient_id,
            t.c.resource_type == "DocumentReference",
            t.c.param == "identifier",
            t.c.code == value,
            t.c.system == system,
            r.c.patient_id == patient_id,
            r.c.deleted.is_(False),
        )
        .distinct()
        .order_by(r.c.id)
    )
    return [
        DocumentRow(row.id, row.version_id, row.json, row.created_by)
        for row in await conn.execute(stmt)
    ]
