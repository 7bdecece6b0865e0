"""Issue 12 scenario: connected-device measurements.

- Bulk load (SQL, inside Postgres, like bench/loader.py does for documents): `--obs-patients`
  patients (default 1,000) whose CGM sends one glucose value every 5 minutes, `--values` in
  all (default 10 million: ~35 days each): an Observation row per value in `resources` (no
  history rows or search indexes: the operations measured read `observation_values` and the
  current resources only) and its row in `observation_values`; each patient's space active
  and connected to the bench service. Loaded once per size, then reused.
- Through the API (uvicorn workers): ingest of batch Bundles of `--ingest-size` (1,000)
  new Observations from the connected service, then the same Bundles again (all duplicates);
  `$lastn` and a 30-day `$daily-summary` by patient tokens on the loaded database.
"""

import asyncio
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from bench import db
from espace_api.access.actors import client_key
from espace_api.access.vocabulary import CONNECTED_SERVICE

SERVICE = "bench-cgm"  # the connected service's client id
GLUCOSE = "2345-7"
LOINC, UCUM = "http://loinc.org", "http://unitsofmeasure.org"
END = datetime(2026, 11, 1, tzinfo=UTC)  # the loaded series end here, one value / 5 min
CHUNK = 20  # patients per INSERT statement (committed one by one)


def patient_id(n: int) -> str:
    return f"bench-m{n:05d}"


def database_for(values: int) -> str:
    return db.database(f"espace_bench_obs_{values}")


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


_PATIENTS = """
INSERT INTO resources (resource_type, id, patient_id, version_id, last_updated, deleted,
                       created_by, content)
SELECT 'Patient', id, id, 1, now(), false, 'system:bench-loader',
       jsonb_build_object('resourceType', 'Patient', 'id', id, 'gender', 'female',
                          'birthDate', '1970-01-01')
FROM (SELECT 'bench-m' || lpad(p::text, 5, '0') AS id FROM generate_series(0, $1 - 1) p) s
ON CONFLICT DO NOTHING
"""
_SPACES = """
INSERT INTO patient_spaces (patient_id, state, activated_at, updated_at)
SELECT id, 'active', now(), now() FROM resources WHERE resource_type = 'Patient'
  AND id LIKE 'bench-m%' ON CONFLICT DO NOTHING
"""
_CONNECTED = """
INSERT INTO access_rules (patient_id, consent_id, kind, actor)
SELECT id, 'bench-connected', $1, $2 FROM resources WHERE resource_type = 'Patient'
  AND id LIKE 'bench-m%' ON CONFLICT DO NOTHING
"""
_SECONDARY = """
SELECT indexname, indexdef FROM pg_indexes
WHERE tablename IN ('resources', 'observation_values') AND indexname NOT LIKE '%pkey'
  AND indexname NOT LIKE 'ux_%'
"""
# One statement per chunk of patients: the values, then their Observations and value rows.
_VALUES = """
WITH v AS (
  SELECT 'bench-m' || lpad(p::text, 5, '0') AS pid,
         'bench-o' || p || '-' || i AS oid,
         $3::timestamptz - i * interval '5 minutes' AS t,
         round((70 + 80 * random())::numeric, 1)::float8 AS v
  FROM generate_series($1::int, $2::int) p, generate_series(0, $4::int - 1) i
), r AS (
  INSERT INTO resources (resource_type, id, patient_id, version_id, last_updated, deleted,
                         created_by, content)
  SELECT 'Observation', oid, pid, 1, now(), false, 'system:bench-cgm',
    jsonb_build_object(
      'resourceType', 'Observation', 'id', oid, 'status', 'final',
      'code', jsonb_build_object('coding', jsonb_build_array(
          jsonb_build_object('system', 'http://loinc.org', 'code', '2345-7'))),
      'subject', jsonb_build_object('reference', 'Patient/' || pid),
      'effectiveDateTime', to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
      'valueQuantity', jsonb_build_object('value', v, 'unit', 'mg/dL',
          'system', 'http://unitsofmeasure.org', 'code', 'mg/dL'),
      'device', jsonb_build_object('reference', 'Device/cgm-' || pid))
  FROM v
)
INSERT INTO observation_values (patient_id, resource_id, code, effective, value, unit, device)
SELECT pid, oid, '2345-7', t, v, 'mg/dL', 'Device/cgm-' || pid FROM v
"""


async def load(url: str, patients: int, values: int) -> None:
    """Load the series once (a database per size, reused when complete)."""
    conn = await asyncpg.connect(_dsn(url))
    try:
        loaded = await conn.fetchval("SELECT count(*) FROM observation_values")
        if loaded >= values:
            print(f"already loaded: {loaded} values", flush=True)
            return
        per = values // patients
        start = time.perf_counter()
        await conn.execute(_PATIENTS, patients)
        await conn.execute(_SPACES)
        await conn.execute(_CONNECTED, CONNECTED_SERVICE, client_key(SERVICE))
        # Secondary indexes are rebuilt once at the end (faster than maintained row by row).
        indexes = await conn.fetch(_SECONDARY)
        for name, _ in indexes:
            await conn.execute(f'DROP INDEX "{name}"')
        await conn.execute("SET synchronous_commit = off")
        for lo in range(0, patients, CHUNK):
            hi = min(lo + CHUNK, patients) - 1
            await conn.execute(_VALUES, lo, hi, END, per)
            done = (hi + 1) * per
            rate = done / (time.perf_counter() - start)
            print(f"  {done} values ({rate:.0f}/s)", flush=True)
        for _, definition in indexes:
            await conn.execute(definition)
        await conn.execute("ANALYZE resources")
        await conn.execute("ANALYZE observation_values")
        print(f"loaded {patients * per} values in {time.perf_counter() - start:.0f} s", flush=True)
    finally:
        await conn.close()


def service_token() -> dict[str, Any]:
    """The connected service (bench.tokens.mint_all spec)."""
    return {
        "kind": "system",
        "subject": SERVICE,
        "client_id": SERVICE,
        "organization": "finess:999000001",
        "scope": "system/Observation.crs system/Patient.s",
    }


def observation(pid: str, at: datetime, value: float) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": GLUCOSE}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": at.isoformat().replace("+00:00", "Z"),
        "valueQuantity": {"value": value, "unit": "mg/dL", "system": UCUM, "code": "mg/dL"},
        "device": {"reference": f"Device/cgm-{pid}"},
    }


def ingest_bundles(patients: int, bundles: int, size: int) -> list[dict[str, Any]]:
    """Batch Bundles of new readings (after the loaded series), one patient per Bundle."""
    run = uuid.uuid4().int % 10_000  # a fresh period per run: new values, not duplicates
    out = []
    for b in range(bundles):
        pid = patient_id(random.randrange(patients))
        first = END + timedelta(days=30 * (run + 1), minutes=b * size * 5)
        entries = [
            {
                "resource": observation(pid, first + timedelta(minutes=5 * i), 100.0 + i % 50),
                "request": {"method": "POST", "url": "Observation"},
            }
            for i in range(size)
        ]
        out.append({"resourceType": "Bundle", "type": "batch", "entry": entries})
    return out


async def ingest(base: str, token: str, bundles: list[dict[str, Any]], concurrency: int) -> str:
    """Send the Bundles (`concurrency` at a time): observations/s and per-entry statuses."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}
    statuses: dict[str, int] = {}
    queue = list(bundles)
    latencies: list[float] = []

    async def worker(client: httpx.AsyncClient) -> None:
        while queue:
            bundle = queue.pop()
            t0 = time.perf_counter()
            r = await client.post("/", json=bundle)
            latencies.append(time.perf_counter() - t0)
            if r.status_code != 200:
                statuses[str(r.status_code)] = statuses.get(str(r.status_code), 0) + 1
                continue
            for e in r.json()["entry"]:
                s = e["response"]["status"].split()[0]
                statuses[s] = statuses.get(s, 0) + 1

    start = time.perf_counter()
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=300) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    seconds = time.perf_counter() - start
    n = sum(len(b["entry"]) for b in bundles)
    return (
        f"{n} observations in {len(bundles)} batch Bundles x{concurrency}: {seconds:.1f} s, "
        f"{n / seconds:.0f} obs/s, {max(latencies):.1f} s slowest Bundle; entries {statuses}"
    )


def lastn_call(tokens: dict[str, str]) -> Any:
    """A patient's `$lastn` (their own token)."""
    pids = list(tokens)

    async def call(client: httpx.AsyncClient, i: int) -> httpx.Response:
        pid = random.choice(pids)
        return await client.get(
            "/Observation/$lastn",
            params={"patient": pid},
            headers={"Authorization": f"Bearer {tokens[pid]}"},
        )

    return call


def summary_call(tokens: dict[str, str], days: int) -> Any:
    """A patient's `$daily-summary` over the last `days` days of the loaded series."""
    pids = list(tokens)
    low = (END - timedelta(days=days)).date().isoformat()
    high = END.date().isoformat()

    async def call(client: httpx.AsyncClient, i: int) -> httpx.Response:
        pid = random.choice(pids)
        return await client.get(
            "/Observation/$daily-summary",
            params=[
                ("patient", pid),
                ("code", GLUCOSE),
                ("date", f"ge{low}"),
                ("date", f"lt{high}"),
            ],
            headers={"Authorization": f"Bearer {tokens[pid]}"},
        )

    return call
