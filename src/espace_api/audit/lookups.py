"""Patient lookups by software and professionals: counted per client, misses logged.

Every lookup is also an AuditEvent (`search`, detail `patient-lookup`, with the patients
found); a client whose lookups keep matching nothing is guessing INS: the misses counter
and the warning below (client id only, never the INS) are the brute-force signal."""

import logging

from espace_api.auth.identity import Identity
from espace_api.metrics.counters import PATIENT_LOOKUPS

log = logging.getLogger("espace_api.lookups")


def observe(identity: Identity, matched: int) -> None:
    """Count one lookup that matched `matched` Patients."""
    client = identity.client_id or identity.subject or "unknown"
    outcome = "found" if matched else "miss"
    PATIENT_LOOKUPS.labels(client_id=client, outcome=outcome).inc()
    if not matched:
        log.warning("patient lookup matched nothing", extra={"client_id": client})
