"""Issue 12 scenario: `espace-api reminders run` over `--reminder-patients` active spaces
(default 1,000,000), bulk-loaded by SQL (a Patient with a birth date and sex, an active space;
a third of them with a recorded dTP vaccination). Times the first run (evaluates everyone and
writes the reminders due) and a second run (evaluates everyone, issues nothing: idempotent).
"""

import asyncio
import time

import asyncpg
from sqlalchemy.engine import make_url

from bench import db
from espace_api.clock import Clock
from espace_api.config import Settings
from espace_api.db.engine import make_engine
from espace_api.profile import reminders

_PATIENTS = """
INSERT INTO resources (resource_type, id, patient_id, version_id, last_updated, deleted,
                       created_by, content)
SELECT 'Patient', id, id, 1, now(), false, 'system:bench-loader',
       jsonb_build_object('resourceType', 'Patient', 'id', id,
                          'gender', CASE WHEN p % 2 = 0 THEN 'female' ELSE 'male' END,
                          'birthDate', to_char(date '1930-01-01' + (p::bigint * 7919 % 28000)::int,
                                               'YYYY-MM-DD'))
FROM (SELECT p, 'bench-r' || lpad(p::text, 7, '0') AS id
      FROM generate_series($1::int, $2::int) p) s
"""
_SPACES = """
INSERT INTO patient_spaces (patient_id, state, activated_at, updated_at)
SELECT 'bench-r' || lpad(p::text, 7, '0'), 'active', now(), now()
FROM generate_series($1::int, $2::int) p
"""
# A third of the people have a dTP (CVX 115) vaccination recorded in 2025 (index rows only:
# the job reads the indexes and the current row's status).
_VACCINES = """
WITH v AS (
  SELECT 'bench-r' || lpad(p::text, 7, '0') AS pid, 'bench-i' || p AS iid
  FROM generate_series($1::int, $2::int) p WHERE p % 3 = 0
), r AS (
  INSERT INTO resources (resource_type, id, patient_id, version_id, last_updated, deleted,
                         created_by, content)
  SELECT 'Immunization', iid, pid, 1, now(), false, 'system:bench-loader',
         jsonb_build_object('resourceType', 'Immunization', 'id', iid, 'status', 'completed')
  FROM v
), t AS (
  INSERT INTO search_token (resource_type, resource_id, patient_id, param, system, code)
  SELECT 'Immunization', iid, pid, 'vaccine-code', 'http://hl7.org/fhir/sid/cvx', '115' FROM v
)
INSERT INTO search_date (resource_type, resource_id, patient_id, param, low, high)
SELECT 'Immunization', iid, pid, 'date', timestamptz '2025-06-01', timestamptz '2025-06-02'
FROM v
"""
CHUNK = 100_000


async def load(url: str, patients: int) -> None:
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn)
    try:
        have = await conn.fetchval("SELECT count(*) FROM patient_spaces WHERE state = 'active'")
        if have >= patients:
            return
        start = time.perf_counter()
        for lo in range(0, patients, CHUNK):
            hi = min(lo + CHUNK, patients) - 1
            for sql in (_PATIENTS, _SPACES, _VACCINES):
                await conn.execute(sql, lo, hi)
        await conn.execute("ANALYZE")
        print(f"loaded {patients} people in {time.perf_counter() - start:.0f} s", flush=True)
    finally:
        await conn.close()


def run(patients: int) -> list[str]:
    url = db.database(f"espace_bench_reminders_{patients}")
    asyncio.run(load(url, patients))

    async def timed() -> list[str]:
        engine = make_engine(Settings(database_url=url))
        lines = []
        try:
            for name in ("first run", "second run (idempotent)"):
                t0 = time.perf_counter()
                done = await reminders.run(engine, Clock())
                seconds = time.perf_counter() - t0
                lines.append(
                    f"reminders {name}: {done['patients']} patients, {done['issued']} issued "
                    f"in {seconds:.0f} s ({done['patients'] / seconds:.0f} patients/s)"
                )
        finally:
            await engine.dispose()
        return lines

    lines = asyncio.run(timed())
    db.drop(url)  # the first run wrote its reminders: start afresh next time
    return lines
