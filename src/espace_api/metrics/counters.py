"""The application's metrics. Labels never carry a patient identifier: client ids only.

Each uvicorn worker keeps its own registry; a scraper sums the workers (or set
PROMETHEUS_MULTIPROC_DIR for prometheus-client's multiprocess mode)."""

from prometheus_client import Counter, Gauge
from sqlalchemy.ext.asyncio import AsyncEngine

PATIENT_LOOKUPS = Counter(
    "espace_patient_lookups_total",
    "Exact INS Patient lookups by machines and professionals, by client and outcome",
    ["client_id", "outcome"],  # outcome: found | miss
)

DEPOSITS = Counter(
    "espace_deposits_total",
    "DocumentReference deposits: accepted, or refused with the OperationOutcome code",
    ["outcome", "reason"],  # outcome: accepted | refused; reason: "" or the error code
)
AUDIT_WRITE_FAILURES = Counter(
    "espace_audit_write_failures_total",
    "Audit rows that could not be written (the request they belong to failed with them)",
)
NOTIFICATIONS = Counter(
    "espace_notifications_total",
    "Rest-hook notification attempts by outcome (messaging/worker.py)",
    ["outcome"],  # delivered | retry | failed | cancelled
)
DB_POOL_CHECKED_OUT = Gauge(
    "espace_db_pool_checked_out",
    "Database connections of this worker's pool in use",
)


def watch_pool(engine: AsyncEngine) -> None:
    """Report `engine`'s pool usage (the last engine started in this process)."""
    pool = engine.sync_engine.pool
    DB_POOL_CHECKED_OUT.set_function(lambda: float(getattr(pool, "checkedout", lambda: 0)()))
