"""SQL of bulk enrolment: its lock and the batched inserts (INS owners: ins_repository).

The inserts use COPY (asyncpg's binary `copy_records_to_table`) on the transaction's own
connection: for 1,000 Patients a batch writes about 14,000 rows, and building that many
executemany parameter sets through SQLAlchemy cost more than the database's work."""

from operator import itemgetter
from typing import Any

import orjson
from sqlalchemy import Table, func, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection

from espace_api.db.schema import (
    audit_events,
    patient_ins,
    patient_spaces,
    resource_versions,
    resources,
)


async def lock(conn: AsyncConnection) -> None:
    """Serialise enrolment batches (two files naming the same person never race)."""
    await conn.execute(select(func.pg_advisory_xact_lock(func.hashtextextended("enrolment", 0))))


async def copy_rows(conn: AsyncConnection, table: Table, rows: list[dict[str, Any]]) -> None:
    """COPY `rows` (dicts with the same keys) into `table` inside the open transaction. A
    JSONB value is serialised here (an `orjson.Fragment` is JSON text already, written as
    it is: the same document in several tables is serialised once)."""
    if not rows:
        return
    columns = list(rows[0])
    json = [i for i, c in enumerate(columns) if isinstance(table.c[c].type, JSONB)]
    pick = itemgetter(*columns)
    if len(columns) == 1:
        records: list[tuple[Any, ...]] = [(pick(row),) for row in rows]
    elif not json:
        records = [pick(row) for row in rows]
    else:
        records = []
        dumps = orjson.dumps
        for row in rows:
            record = list(pick(row))
            for i in json:
                if record[i] is not None:
                    record[i] = dumps(record[i]).decode()
            records.append(tuple(record))
    raw = await conn.get_raw_connection()
    driver: Any = raw.driver_connection
    await driver.copy_records_to_table(table.name, records=records, columns=columns)


async def insert_batch(
    conn: AsyncConnection,
    current: list[dict[str, Any]],
    versions: list[dict[str, Any]],
    index: dict[Table, list[dict[str, Any]]],
    spaces: list[dict[str, Any]],
    ins: list[dict[str, Any]],
    audits: list[dict[str, Any]],
) -> None:
    """Every row of one batch, one COPY per table."""
    await copy_rows(conn, resources, current)
    await copy_rows(conn, resource_versions, versions)
    for table, rows in index.items():
        await copy_rows(conn, table, rows)
    await copy_rows(conn, patient_spaces, spaces)
    await copy_rows(conn, patient_ins, ins)
    await copy_rows(conn, audit_events, audits)
