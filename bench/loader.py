"""Fast loader for the search benchmark: N patients and M DocumentReferences, COPYed
straight into the tables with index rows produced by the server's own indexer.

    python -m bench.loader --patients 100000 --documents 1000000

Loads into the bench server (bench.db: DATABASE_URL, else an embedded Postgres under
.data/bench-pg), database `espace_bench_<M>` (created and migrated if
absent; reused when already loaded). Prints the database URL on the last line.
"""

import argparse
import asyncio
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
from sqlalchemy.engine import make_url

from bench import db
from espace_api.access.actors import practitioner_key
from espace_api.access.vocabulary import CARE_RELATIONSHIP
from espace_api.fhir.indexing import IndexRows, compartment_patient, extract
from espace_api.fhir.registry import REGISTRY

INS = "urn:oid:1.2.250.1.213.1.4.10"
LOINC = "http://loinc.org"
TYPES = ["11488-4", "11502-2", "18748-4", "57833-6", "34112-3", "11490-0", "15507-7"]
BATCH = 20_000
CREATED_BY = "system:bench-loader"
INDEX_COLUMNS = {
    "search_token": (
        "resource_type",
        "resource_id",
        "patient_id",
        "param",
        "system",
        "code",
        "text",
    ),
    "search_string": ("resource_type", "resource_id", "patient_id", "param", "value", "exact"),
    "search_date": ("resource_type", "resource_id", "patient_id", "param", "low", "high"),
    "search_reference": (
        "resource_type",
        "resource_id",
        "patient_id",
        "param",
        "target_type",
        "target_id",
    ),
}


def patient_id(n: int) -> str:
    return f"bench-p{n:07d}"


def patient_ins(n: int) -> str:
    return f"{900000000000000 + n}"


def patient_json(n: int) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": patient_id(n),
        "identifier": [{"system": INS, "value": patient_ins(n)}],
        "name": [
            {
                "family": random.choice(["Martin", "Bernard", "Petit", "Durand", "Moreau"]),
                "given": [random.choice(["Alex", "Camille", "Sacha", "Noa"])],
            }
        ],
        "gender": random.choice(["female", "male"]),
        "birthDate": f"{random.randint(1930, 2020)}-0{random.randint(1, 9)}-{random.randint(10, 28)}",  # noqa: E501
    }


def document_json(doc_id: str, pid: str, when: datetime) -> dict[str, Any]:
    code = random.choice(TYPES)
    return {
        "resourceType": "DocumentReference",
        "id": doc_id,
        "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{doc_id}"},
        "status": "current",
        "type": {"coding": [{"system": LOINC, "code": code}]},
        "category": [{"coding": [{"system": LOINC, "code": code}]}],
        "subject": {"reference": f"Patient/{pid}"},
        "date": when.isoformat().replace("+00:00", "Z"),
        "author": [{"reference": f"Practitioner/rpps-{random.randint(1, 5000)}"}],
        "custodian": {"reference": f"Organization/finess-{random.randint(1, 500)}"},
        "securityLabel": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
                        "code": "N",
                    }
                ]
            }
        ],
        "content": [
            {
                "attachment": {
                    "contentType": "application/pdf",
                    "url": f"Binary/{doc_id}",
                    "size": 51200,
                    "title": "Compte rendu",
                }
            }
        ],
        "context": {"period": {"start": when.date().isoformat()}},
    }


class Batch:
    """Rows accumulated for one COPY round."""

    def __init__(self) -> None:
        self.resources: list[tuple[Any, ...]] = []
        self.versions: list[tuple[Any, ...]] = []
        self.index: dict[str, list[tuple[Any, ...]]] = {name: [] for name in INDEX_COLUMNS}

    def add(self, content: dict[str, Any], now: datetime) -> None:
        rtype = REGISTRY[content["resourceType"]]
        content["meta"] = {"versionId": "1", "lastUpdated": now.isoformat().replace("+00:00", "Z")}
        pid = compartment_patient(rtype, content)
        text = orjson.dumps(content).decode()
        key = (rtype.name, content["id"])
        self.resources.append((*key, pid, 1, now, False, CREATED_BY, text))
        self.versions.append((*key, 1, pid, now, False, "POST", text))
        rows: IndexRows = extract(rtype, content)
        self.index["search_token"] += [(*key, pid, *r) for r in rows.tokens]
        self.index["search_string"] += [(*key, pid, *r) for r in rows.strings]
        self.index["search_date"] += [(*key, pid, *r) for r in rows.dates]
        self.index["search_reference"] += [(*key, pid, *r) for r in rows.references]

    async def copy(self, conn: asyncpg.Connection) -> None:
        await conn.copy_records_to_table(
            "resources",
            records=self.resources,
            columns=(
                "resource_type",
                "id",
                "patient_id",
                "version_id",
                "last_updated",
                "deleted",
                "created_by",
                "content",
            ),
        )
        await conn.copy_records_to_table(
            "resource_versions",
            records=self.versions,
            columns=(
                "resource_type",
                "id",
                "version_id",
                "patient_id",
                "last_updated",
                "deleted",
                "method",
                "content",
            ),
        )
        for name, rows in self.index.items():
            if rows:
                await conn.copy_records_to_table(name, records=rows, columns=INDEX_COLUMNS[name])


async def load(url: str, patients: int, documents: int) -> None:
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn)
    loaded = await conn.fetchval(
        "SELECT count(*) FROM resources WHERE resource_type = 'DocumentReference'"
    )
    if loaded >= documents:
        print(f"already loaded: {loaded} DocumentReferences")
        await grant_professional(conn)
        await conn.close()
        return
    random.seed(42)
    now = datetime.now(UTC)
    start = time.perf_counter()
    batch = Batch()
    for n in range(patients):
        batch.add(patient_json(n), now)
        if len(batch.resources) >= BATCH:
            await batch.copy(conn)
            batch = Batch()
    base = datetime(2022, 1, 1, tzinfo=UTC)
    for i in range(documents):
        when = base + timedelta(minutes=random.randint(0, 60 * 24 * 1000))
        doc_id = str(uuid.UUID(int=random.getrandbits(128)))
        batch.add(document_json(doc_id, patient_id(random.randrange(patients)), when), now)
        if len(batch.resources) >= BATCH:
            await batch.copy(conn)
            batch = Batch()
            if (i + 1) % 100_000 < BATCH:
                rate = (i + 1) / (time.perf_counter() - start)
                print(f"  {i + 1} documents ({rate:.0f}/s)", flush=True)
    await batch.copy(conn)
    await grant_professional(conn)
    await conn.execute("ANALYZE")
    await conn.close()
    print(
        f"loaded {patients} patients and {documents} documents in "
        f"{time.perf_counter() - start:.0f} s"
    )


PROFESSIONAL = "rpps-10001"  # bench.tokens.professional()


async def grant_professional(conn: asyncpg.Connection) -> None:
    """The bench professional (tokens.professional) has a care relationship with every
    patient, as the access policy requires since issue 8; every INS is registered
    (idempotent)."""
    await conn.execute(
        "INSERT INTO access_rules (patient_id, consent_id, kind, actor)"
        " SELECT id, 'bench-care', $1, $2 FROM resources WHERE resource_type = 'Patient'"
        " ON CONFLICT DO NOTHING",
        CARE_RELATIONSHIP,
        practitioner_key(PROFESSIONAL),
    )
    await conn.execute(  # the INS register (issue 21), as enrolment fills it
        "INSERT INTO patient_ins (system, value, patient_id)"
        " SELECT system, code, resource_id FROM search_token"
        " WHERE resource_type = 'Patient' AND param = 'identifier' ON CONFLICT DO NOTHING"
    )


def database_for(documents: int) -> str:
    """URL of the bench database for `documents` (created and migrated when missing)."""
    return db.database(f"espace_bench_{documents}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--documents", type=int, default=1_000_000)
    args = parser.parse_args()
    url = database_for(args.documents)
    asyncio.run(load(url, args.patients, args.documents))
    print(url)


if __name__ == "__main__":
    main()
