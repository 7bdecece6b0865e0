"""Issue 9 scenario: bulk enrolment of `--persons` people (100,000 by default) as one NDJSON
upload to `POST /Patient/$enrol`, streamed; prints the time, persons/s and the report's counts."""

import random
import time
from collections.abc import Iterator

import httpx
import orjson

from espace_api.fhir.ins import INS_TEST_NIR, with_key

FAMILIES = ["Martin", "Bernard", "Petit", "Durand", "Moreau", "Laurent", "Garnier"]
GIVEN = ["Alex", "Camille", "Sacha", "Noa", "Lou", "Eden"]


def person(n: int) -> bytes:
    """One synthetic person (test INS system, valid key)."""
    nir = f"1{random.randint(30, 99):02d}{random.randint(1, 12):02d}{n:08d}"  # unique by n
    body = {
        "resourceType": "Patient",
        "identifier": [{"system": INS_TEST_NIR, "value": with_key(nir)}],
        "name": [{"family": random.choice(FAMILIES), "given": [random.choice(GIVEN)]}],
        "birthDate": f"{random.randint(1930, 2020)}-0{random.randint(1, 9)}-{random.randint(10, 28)}",  # noqa: E501
        "gender": random.choice(["female", "male"]),
        "address": [{"city": "Paris", "postalCode": "75011", "country": "FR"}],
    }
    return orjson.dumps(body) + b"\n"


def chunks(persons: int, per_chunk: int = 1000) -> Iterator[bytes]:
    for start in range(0, persons, per_chunk):
        yield b"".join(person(n) for n in range(start, min(persons, start + per_chunk)))


def run(base: str, token: str, persons: int) -> str:
    """Upload, time, and summarise (the report's status counts)."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+ndjson"}
    body = b"".join(chunks(persons))
    t0 = time.perf_counter()
    r = httpx.post(f"{base}/Patient/$enrol", content=body, headers=headers, timeout=600)
    seconds = time.perf_counter() - t0
    r.raise_for_status()
    counts: dict[str, int] = {}
    for line in r.content.splitlines():
        status = orjson.loads(line)["status"]
        counts[status] = counts.get(status, 0) + 1
    t0 = time.perf_counter()
    again = httpx.post(f"{base}/Patient/$enrol", content=body, headers=headers, timeout=600)
    rerun = time.perf_counter() - t0
    unchanged = again.content.count(b'"unchanged"')
    return (
        f"enrol {persons} persons (NDJSON, {len(body) / 1e6:.1f} MB): {seconds:.1f} s, "
        f"{persons / seconds:,.0f} persons/s, {counts}; "
        f"re-run {rerun:.1f} s, {unchanged} unchanged"
    )
