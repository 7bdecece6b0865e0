"""The application's metrics. Labels never carry a patient identifier: client ids only.

Each uvicorn worker keeps its own registry; a scraper sums the workers (or set
PROMETHEUS_MULTIPROC_DIR for prometheus-client's multiprocess mode)."""

from prometheus_client import Counter

PATIENT_LOOKUPS = Counter(
    "espace_patient_lookups_total",
    "Exact INS Patient lookups by machines and professionals, by client and outcome",
    ["client_id", "outcome"],  # outcome: found | miss
)
