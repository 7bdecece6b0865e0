"""Resource persistence: current rows, version history, search indexes, in SQL only.

Callers pass an open connection inside a transaction; nothing here commits.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    ColumnElement,
    DateTime,
    Select,
    Table,
    Text,
    bindparam,
    delete,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection

from espace_api.db.schema import (
    NO_PATIENT,
    audit_events,
    resource_versions,
    resources,
    search_date,
    search_reference,
    search_string,
    search_token,
)
from espace_api.fhir.errors import FhirError
from espace_api.fhir.indexing import IndexRows
from espace_api.storage import audit_repository, raw, routing


@dataclass(frozen=True)
class StoredRow:
    """One stored version: JSON text stays text (read path never re-parses it)."""

    resource_type: str
    id: str
    version_id: int
    last_updated: datetime
    deleted: bool
    patient_id: str | None
    json: str | None
    created_by: str | None = None
    method: str | None = None


@dataclass(frozen=True)
class NewVersion:
    """A version about to be written."""

    resource_type: str
    id: str
    version_id: int
    last_updated: datetime
    patient_id: str | None
    content: dict[str, Any] | None  # None for a deletion
    method: str
    created_by: str | None = None


def _row(m: Any, resource_type: str, id_: str) -> StoredRow:
    return StoredRow(
        resource_type,
        id_,
        m.version_id,
        m.last_updated,
        m.deleted,
        m.patient_id or None,
        m.json,
        getattr(m, "created_by", None),
    )


async def get_current(
    conn: AsyncConnection,
    resource_type: str,
    id_: str,
    policy: ColumnElement[bool],
    *,
    for_update: bool = False,
) -> StoredRow | None:
    """The current row (maybe a tombstone) if it exists and the policy lets it be seen. On
    Citus the row's patient is found first, so that the read runs on one shard
    (storage/routing.py)."""
    params: dict[str, Any] = {"read_id": id_}
    routed = await routing.distributed(conn)
    if routed:
        params["read_patient"] = await routing.patient_of(conn, resource_type, id_)
        if params["read_patient"] is None:
            return None
        if for_update:  # Citus locks rows only in a statement on one shard: lock, then read
            await routing.lock(conn, resource_type, id_, params["read_patient"])
            for_update = False
    if for_update:  # inside the write's transaction, through SQLAlchemy
        stmt = read_statement(resource_type, policy, for_update, routed)
        m = (await conn.execute(stmt, params)).first()
    elif routed:  # the pinned predicate is a copy: compiled per caller (raw.compiled)
        m = await raw.fetchrow(conn, read_statement(resource_type, policy, False, True), params)
    else:
        m = await _read(conn, resource_type, policy, params)
    if m is not None and not for_update:
        m = _Fields(m)
    return _row(m, resource_type, id_) if m else None


# The read by id compiled once per type and policy structure, for every caller (raw.Bound).
_READ_PLANS: dict[tuple[str, Any], raw.Bound] = {}


async def _read(
    conn: AsyncConnection, resource_type: str, policy: ColumnElement[bool], params: dict[str, Any]
) -> Any:
    plan = raw.reused(
        _READ_PLANS,
        (resource_type, raw.structure(policy)),
        lambda: raw.bound(conn, read_statement(resource_type, policy, False, False), [policy]),
        lambda kept, fresh: kept.check(fresh, params, [policy]),
    )
    found = await raw.fetch_bound(conn, plan, params, [policy])
    return found[0] if found else None


class _Fields:
    """Attribute access to an asyncpg Record's columns (as SQLAlchemy rows give)."""

    __slots__ = ("_record",)

    def __init__(self, record: Any) -> None:
        self._record = record

    def __getattr__(self, name: str) -> Any:
        return self._record[name]


# Read statements per (type, policy predicate, FOR UPDATE), the id a bound parameter: the
# policy module hands out one predicate object per caller and second, so a statement object
# (and its SQLAlchemy cache key, computed once per object) serves all of that caller's reads.
_READS: dict[tuple[str, int, bool, bool], tuple[ColumnElement[bool], Select[Any]]] = {}


def read_statement(
    resource_type: str, policy: ColumnElement[bool], for_update: bool, routed: bool
) -> Select[Any]:
    """The read by id (parameter `read_id`; with `routed`, also `read_patient`: Citus)."""
    key = (resource_type, id(policy), for_update, routed)
    hit = _READS.get(key)
    if hit is not None and hit[0] is policy:
        return hit[1]
    r = resources
    stmt = select(
        r.c.version_id,
        r.c.last_updated,
        r.c.deleted,
        r.c.patient_id,
        r.c.created_by,
        r.c.content.cast(Text).label("json"),
    ).where(r.c.resource_type == resource_type, r.c.id == bindparam("read_id", None, type_=Text))
    if routed:
        patient = bindparam("read_patient", None, type_=Text)
        stmt = stmt.where(routing.pinned(policy, r.c.patient_id, patient))
    else:
        stmt = stmt.where(policy)
    if for_update:
        stmt = stmt.with_for_update()
    raw.remember(_READS, key, (policy, stmt))
    return stmt


async def exists_any(conn: AsyncConnection, resource_type: str, id_: str) -> bool:
    """Whether the id is taken, whoever may see it (to refuse create-over-hidden)."""
    r = resources
    stmt = select(r.c.version_id).where(r.c.resource_type == resource_type, r.c.id == id_)
    return (await conn.execute(stmt)).first() is not None


async def get_version(
    conn: AsyncConnection, resource_type: str, id_: str, version_id: int, policy: Any
) -> StoredRow | None:
    """One historical version, if visible under `policy` (a predicate on the versions table)."""
    v = resource_versions
    stmt = select(
        v.c.version_id,
        v.c.last_updated,
        v.c.deleted,
        v.c.patient_id,
        v.c.content.cast(Text).label("json"),
    ).where(
        v.c.resource_type == resource_type,
        v.c.id == id_,
        v.c.version_id == version_id,
        policy,
    )
    m = (await conn.execute(stmt)).first()
    return _row(m, resource_type, id_) if m else None


# Statement objects made once: SQLAlchemy computes their cache key once (the write path's
# profile showed statement building and cache keys as its largest cost).
_INSERT_RESOURCE = insert(resources)
_INSERT_VERSION = insert(resource_versions)

# Each index table, the IndexRows field that fills it and the columns of one of its tuples.
INDEX_ROWS: tuple[tuple[Table, str, tuple[str, ...]], ...] = (
    (search_token, "tokens", ("param", "system", "code", "text")),
    (search_string, "strings", ("param", "value", "exact")),
    (search_date, "dates", ("param", "low", "high")),
    (search_reference, "references", ("param", "target_type", "target_id")),
)
SEARCH_INDEX_TABLES: tuple[Table, ...] = tuple(table for table, _, _ in INDEX_ROWS)


def _is_time(table: Table, column: str) -> bool:
    return isinstance(table.c[column].type, DateTime)


def _arrays(table: Table, columns: tuple[str, ...]) -> str:
    """One array parameter per column (`{table}_{column}`), cast to the column's type."""
    return ", ".join(
        f"CAST(:{table.name}_{c} AS {'timestamptz' if _is_time(table, c) else 'text'}[])"
        for c in columns
    )


def _unnest(table: Table, columns: tuple[str, ...]) -> str:
    """An index table's rows inserted from one array parameter per column."""
    return (
        f"new_{table.name} AS (INSERT INTO {table.name} (resource_type, resource_id, patient_id, "
        f"{', '.join(columns)}) SELECT :resource_type, :id, :patient_id, * FROM unnest("
        f"{_arrays(table, columns)}))"
    )


AUDIT_COLUMNS = tuple(c.name for c in audit_events.c)
# Every table an array parameter fills, with its columns: the index tables and the audit rows.
_ARRAY_COLUMNS = (
    *((table, columns) for table, _, columns in INDEX_ROWS),
    (audit_events, AUDIT_COLUMNS),
)

# A new resource in one statement (issue 14): the current row, its first version, every
# index row and the audit rows of the write, instead of up to seven round trips.
_CREATE = text(
    "WITH r AS (INSERT INTO resources (resource_type, id, patient_id, version_id, last_updated,"
    " deleted, created_by, content) VALUES (:resource_type, :id, :patient_id, :version_id,"
    " :last_updated, false, :created_by, :content) RETURNING content),"
    " v AS (INSERT INTO resource_versions (resource_type, id, version_id, patient_id,"
    " last_updated, deleted, method, content) SELECT :resource_type, :id, :version_id,"
    " :patient_id, :last_updated, false, :method, r.content FROM r), "
    + ", ".join(_unnest(table, columns) for table, _, columns in INDEX_ROWS)
    + f", new_audit_events AS (INSERT INTO audit_events ({', '.join(AUDIT_COLUMNS)})"
    + f" SELECT * FROM unnest({_arrays(audit_events, AUDIT_COLUMNS)}))"
    + " SELECT 1"
).bindparams(
    bindparam("content", type_=JSONB),
    bindparam("last_updated", type_=DateTime(timezone=True)),
    *(
        bindparam(
            f"{table.name}_{c}",
            type_=ARRAY(DateTime(timezone=True) if _is_time(table, c) else Text),
        )
        for table, columns in _ARRAY_COLUMNS
        for c in columns
    ),
)


async def _create(
    conn: AsyncConnection, new: NewVersion, index: IndexRows, audit: list[dict[str, Any]]
) -> None:
    """Insert a new resource, its first version, its index rows and its audit rows in one
    statement."""
    params: dict[str, Any] = {
        "resource_type": new.resource_type,
        "id": new.id,
        "patient_id": new.patient_id or NO_PATIENT,
        "version_id": new.version_id,
        "last_updated": new.last_updated,
        "created_by": new.created_by,
        "method": new.method,
        "content": new.content,
    }
    for table, field, columns in INDEX_ROWS:
        rows: list[tuple[Any, ...]] = getattr(index, field)
        for position, column in enumerate(columns):
            params[f"{table.name}_{column}"] = [row[position] for row in rows]
    events = audit_repository.stored(audit)
    for column in AUDIT_COLUMNS:
        params[f"audit_events_{column}"] = [event.get(column) for event in events]
    await raw.execute(conn, _CREATE, params)


async def write_version(
    conn: AsyncConnection,
    new: NewVersion,
    index: IndexRows | None,
    audit: list[dict[str, Any]],
) -> None:
    """Insert or replace the current row, append history, rewrite the indexes, and insert
    the write's audit rows (`recorder.events`) in the same transaction."""
    values: dict[str, Any] = {
        "version_id": new.version_id,
        "last_updated": new.last_updated,
        "patient_id": new.patient_id or NO_PATIENT,
        "deleted": new.content is None,
        "content": new.content,
    }
    if new.version_id == 1 and new.content is not None and index is not None:
        if not await routing.distributed(conn):  # Citus: one statement per table (below)
            await _create(conn, new, index, audit)
            return
    if new.version_id == 1:
        await conn.execute(
            _INSERT_RESOURCE,
            {"resource_type": new.resource_type, "id": new.id, "created_by": new.created_by}
            | values,
        )
    else:
        # On Citus, the statements name the patient (one shard) and leave it unchanged: a
        # distribution column cannot be updated, so a resource keeps its patient there.
        patient = values["patient_id"] if await routing.distributed(conn) else None
        r = resources
        where = [r.c.resource_type == new.resource_type, r.c.id == new.id]
        changes = values
        if patient is not None:
            where.append(r.c.patient_id == patient)
            changes = {k: v for k, v in values.items() if k != "patient_id"}
        done = await conn.execute(update(r).where(*where).values(**changes))
        if done.rowcount != 1:
            raise FhirError.unprocessable(
                "A resource cannot move to another patient's space", "PATIENT_CHANGE"
            )
        await delete_indexes(conn, new.resource_type, new.id, patient)
    await conn.execute(
        _INSERT_VERSION,
        {"resource_type": new.resource_type, "id": new.id, "method": new.method} | values,
    )
    if index is not None:
        await insert_indexes(conn, new.resource_type, new.id, new.patient_id, index)
    await audit_repository.insert_events(conn, audit)


_INSERT_INDEX = {table.name: insert(table) for table in SEARCH_INDEX_TABLES}


async def delete_indexes(
    conn: AsyncConnection, resource_type: str, id_: str, patient_id: str | None = None
) -> None:
    """Remove every index row of a resource (of `patient_id` when given: one shard)."""
    for table in SEARCH_INDEX_TABLES:
        where = [table.c.resource_type == resource_type, table.c.resource_id == id_]
        if patient_id is not None:
            where.append(table.c.patient_id == patient_id)
        await conn.execute(delete(table).where(*where))


def index_batches(
    resource_type: str, id_: str, patient_id: str | None, index: IndexRows
) -> list[tuple[Table, list[dict[str, Any]]]]:
    """A resource's index rows as (table, rows) pairs ready for executemany."""
    key = {
        "resource_type": resource_type,
        "resource_id": id_,
        "patient_id": patient_id or NO_PATIENT,
    }
    return [
        (table, [{**key, **dict(zip(columns, row, strict=True))} for row in getattr(index, field)])
        for table, field, columns in INDEX_ROWS
    ]


async def insert_indexes(
    conn: AsyncConnection,
    resource_type: str,
    id_: str,
    patient_id: str | None,
    index: IndexRows,
) -> None:
    """Insert a resource's index rows (one executemany batch per table)."""
    for table, rows in index_batches(resource_type, id_, patient_id, index):
        if rows:  # executemany form: compiled once, sent as one batch
            await conn.execute(_INSERT_INDEX[table.name], rows)


async def history(
    conn: AsyncConnection,
    *,
    resource_type: str | None,
    id_: str | None,
    since: datetime | None,
    count: int,
    offset: int,
    policy: ColumnElement[bool],
) -> tuple[list[StoredRow], int]:
    """Versions newest first (instance, type or system level), and their total."""
    v = resource_versions
    where = [policy]
    if resource_type:
        where.append(v.c.resource_type == resource_type)
    if id_:
        where.append(v.c.id == id_)
    if since:
        where.append(v.c.last_updated >= since)
    stmt = (
        select(
            v.c.resource_type,
            v.c.id,
            v.c.version_id,
            v.c.last_updated,
            v.c.deleted,
            v.c.patient_id,
            v.c.method,
            v.c.content.cast(Text).label("json"),
        )
        .where(*where)
        .order_by(v.c.last_updated.desc(), v.c.version_id.desc())
        .limit(count)
        .offset(offset)
    )
    rows = [
        StoredRow(
            m.resource_type,
            m.id,
            m.version_id,
            m.last_updated,
            m.deleted,
            m.patient_id or None,
            m.json,
            method=m.method,
        )
        for m in await conn.execute(stmt)
    ]
    total = (await conn.execute(select(func.count()).select_from(v).where(*where))).scalar_one()
    return rows, total


async def run_search(
    conn: AsyncConnection, page: Select[Any], count: Select[Any] | None
) -> tuple[list[tuple[str, str, str | None]], int | None]:
    """Execute compiled search statements: [(id, json, patient_id)], total. The total comes
    with the page (a window count over the matches, one query and one plan), and from the
    count query only when the page is empty."""
    if count is None:
        return [(m[0], m[1], m[2] or None) for m in await conn.execute(page)], None
    found = list(await conn.execute(page.add_columns(func.count().over())))
    if found:
        return [(m[0], m[1], m[2] or None) for m in found], found[0][3]
    return [], (await conn.execute(count)).scalar_one()


async def patients_of(conn: AsyncConnection, page: Select[Any], limit: int) -> list[str | None]:
    """Distinct patients of the rows a compiled search matches (for auditing a count)."""
    matches = page.limit(None).offset(None).order_by(None).subquery()
    stmt = select(matches.c.patient_id).distinct().limit(limit)
    return [m[0] or None for m in await conn.execute(stmt)]


async def find_ids(conn: AsyncConnection, page: Select[Any]) -> list[str]:
    """Ids matched by a compiled search (conditional interactions)."""
    return [m[0] for m in await conn.execute(page)]


async def visible_ids(
    conn: AsyncConnection, resource_type: str, ids: list[str], policy: ColumnElement[bool]
) -> list[str]:
    """Those of `ids` whose current row the policy lets the caller see."""
    r = resources
    stmt = select(r.c.id).where(r.c.resource_type == resource_type, r.c.id.in_(ids), policy)
    return [m[0] for m in await conn.execute(stmt)]
