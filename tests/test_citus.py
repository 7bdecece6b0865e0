"""Citus (docs/citus.md): every table of patient data is distributed on patient_id and
co-located, the others are reference tables; one patient's reads, searches and deposit
inserts are router queries (one shard, one task). Skipped on plain PostgreSQL: `make
test-citus` runs them on a local cluster."""

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from sqlalchemy import ColumnElement, Table, insert
from sqlalchemy.dialects.postgresql import asyncpg as pg_asyncpg
from sqlalchemy.engine import make_url
from sqlalchemy.sql import Executable

from espace_api.access import policy
from espace_api.auth.identity import Identity
from espace_api.db.schema import audit_events, resource_versions, resources
from espace_api.fhir.indexing import IndexRows
from espace_api.fhir.registry import REGISTRY, ResourceType
from espace_api.fhir.search import parse_search
from espace_api.storage import repository, search_sql
from espace_api.storage.blob_repository import blob_refs, blobs

#: Tables with a patient_id column that are not distributed on it, and why (docs/citus.md).
NOT_DISTRIBUTED = {
    "patient_ins": "reference",  # keyed by INS, unique across patients
    # SMART App Launch: read by hashed handle or grant id, not by patient.
    "smart_requests": "reference",
    "smart_grants": "reference",
    "smart_codes": "reference",
    "smart_refresh_tokens": "reference",
}

DOCREF = REGISTRY["DocumentReference"]
NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
DIALECT = pg_asyncpg.dialect()  # type: ignore[no-untyped-call]


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to the test database; the test is skipped unless it is a Citus one."""
    dsn = make_url(database_url).set(drivername="postgresql").render_as_string(False)
    conn = await asyncpg.connect(dsn)
    try:
        if not await conn.fetchval("SELECT count(*) FROM pg_extension WHERE extname = 'citus'"):
            pytest.skip("not a Citus database (make test-citus)")
        yield conn
    finally:
        await conn.close()


async def test_every_patient_table_is_distributed_on_patient_id_and_colocated(db):
    tables = await db.fetch(
        """
        SELECT t.table_name, bool_or(c.column_name = 'patient_id') AS has_patient
        FROM information_schema.tables t
        JOIN information_schema.columns c USING (table_schema, table_name)
        WHERE t.table_schema = 'public' AND t.table_type = 'BASE TABLE'
          AND t.table_name <> 'alembic_version'
        GROUP BY 1
        """
    )
    citus = {
        r["table_name"]: r
        for r in await db.fetch(
            "SELECT table_name::text, citus_table_type, distribution_column, colocation_id"
            " FROM citus_tables"
        )
    }
    anchor = citus["resources"]["colocation_id"]
    wrong = []
    for t in tables:
        name, found = t["table_name"], citus.get(t["table_name"])
        if t["has_patient"] and name not in NOT_DISTRIBUTED:
            ok = (
                found is not None
                and found["citus_table_type"] == "distributed"
                and found["distribution_column"] == "patient_id"
                and found["colocation_id"] == anchor
            )
        else:
            ok = found is not None and found["citus_table_type"] == "reference"
        if not ok:
            wrong.append((name, dict(found) if found else "local"))
    assert not wrong, f"call espace_api.db.citus.distribute/reference in a migration: {wrong}"
    assert len(tables) >= 16


def _professional() -> Identity:
    return Identity(
        kind="user",
        subject="810000000001",
        practitioner="810000000001",
        organization="finess:010000001",
        profession="10",
    )


def _patient(patient_id: str) -> Identity:
    return Identity(kind="patient", subject=patient_id, patient_id=patient_id)


async def _plan(db: asyncpg.Connection, stmt: Executable, params: dict[str, Any]) -> str:
    """EXPLAIN of `stmt` as the service sends it (bound parameters, asyncpg dialect)."""
    c = stmt.compile(dialect=DIALECT, compile_kwargs={"render_postcompile": True})
    values = {**c.params, **params}
    args = [values[n] for n in c.positiontup or ()]
    rows = await db.fetch("EXPLAIN (COSTS OFF) " + str(c), *args)
    return "\n".join(r[0] for r in rows)


def _router(plan: str) -> bool:
    """One Citus task and no distributed subplan: the statement runs on one shard."""
    counts = [line.strip() for line in plan.splitlines() if "Task Count:" in line]
    return counts == ["Task Count: 1"] and "Distributed Subplan" not in plan


def _outer_tasks(plan: str) -> str:
    """The task count of the statement itself (the least indented), not of its subplans."""
    counts = [line for line in plan.splitlines() if "Task Count:" in line]
    return min(counts, key=lambda line: len(line) - len(line.lstrip())).strip()


def _visible(identity: Identity) -> Any:
    def for_table(rtype: ResourceType, table: Table) -> ColumnElement[bool]:
        return policy.visible(identity, rtype, table, NOW)

    return for_table


async def test_a_professional_reads_a_document_by_id_on_one_shard(db):
    visible = _visible(_professional())(DOCREF, resources)
    stmt = repository.read_statement("DocumentReference", visible, False, True)
    plan = await _plan(db, stmt, {"read_id": str(uuid.uuid4()), "read_patient": "p1"})
    assert _router(plan), plan


async def test_a_patient_reads_a_document_by_id_with_one_task_on_the_data(db):
    """The read itself is one task; the legal-representative rule first looks up, on every
    shard, the minors the caller represents (a distributed subplan: docs/citus.md)."""
    visible = _visible(_patient("p1"))(DOCREF, resources)
    stmt = repository.read_statement("DocumentReference", visible, False, True)
    plan = await _plan(db, stmt, {"read_id": str(uuid.uuid4()), "read_patient": "p1"})
    assert _outer_tasks(plan) == "Task Count: 1", plan


@pytest.mark.parametrize("who", ["professional", "patient"])
async def test_search_by_patient_runs_on_one_shard(db, who):
    """ITI-67 DocumentReference?patient=...&status=current, page and total: a
    professional's is one task; a patient's adds the representative subplan, as the read."""
    identity = _professional() if who == "professional" else _patient("p1")
    visible = _visible(identity)
    req = parse_search(DOCREF, [("patient", "Patient/p1"), ("status", "current")])
    page, count = search_sql.search_statements(
        req, lambda t: visible(DOCREF, t), visible, pin_patient=True
    )
    for stmt in (page, count):
        plan = await _plan(db, stmt, {})
        assert _router(plan) if who == "professional" else _outer_tasks(plan) == "Task Count: 1", (
            plan
        )


async def test_the_deposit_inserts_each_go_to_one_shard(db):
    """The rows a deposit writes (current row, version, indexes, content link, audit)."""
    pid, doc = f"p-{uuid.uuid4()}", str(uuid.uuid4())
    row = {
        "resource_type": "DocumentReference",
        "id": doc,
        "patient_id": pid,
        "version_id": 1,
        "last_updated": NOW,
        "deleted": False,
        "content": "{}",
    }
    index = IndexRows(
        tokens=[("status", "", "current", None)],
        strings=[("description", "lettre", "lettre")],
        dates=[("date", NOW, NOW)],
        references=[("subject", "Patient", pid)],
    )
    inserts: list[tuple[Table, dict[str, Any]]] = [
        (resources, {**row, "created_by": "system:lgc"}),
        (resource_versions, {**row, "method": "POST"}),
        (
            blobs,
            {
                "patient_id": pid,
                "sha256": "a" * 64,
                "size": 1,
                "sha1": "b" * 40,
                "backend": "postgres",
                "created_at": NOW,
                "touched_at": NOW,
            },
        ),
        (
            blob_refs,
            {
                "patient_id": pid,
                "resource_type": "DocumentReference",
                "resource_id": doc,
                "version_id": 1,
                "sha256": "a" * 64,
            },
        ),
        (
            audit_events,
            {
                "id": str(uuid.uuid4()),
                "recorded": NOW,
                "patient_id": pid,
                "action": "C",
                "subtype": "create",
                "outcome": "0",
            },
        ),
    ]
    for table, rows in repository.index_batches("DocumentReference", doc, pid, index):
        inserts += [(table, r) for r in rows]
    for table, values in inserts:
        plan = await _plan(db, insert(table).values(**values), {})
        assert _router(plan), (table.name, plan)
