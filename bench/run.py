"""`make bench`: start the server (uvicorn workers, own processes) and load it over loopback
with concurrent httpx clients; print req/s and p50/p95/p99 per scenario.

Scenarios (`--scenarios limit,core,deposit,enrol,search,encryption`):
- limit: espace-api's authenticated read by id against a bare FastAPI + asyncpg read of the
  same row, both loaded by wrk (bench/limit.py); prints the ratio;
- core: create Patients and DocumentReferences, read and search them;
- deposit: IHE MHD ITI-65 transaction Bundles (DocumentReference + 50 KB PDF Binary) from
  16 concurrent vendors, each with its own machine token;
- enrol: bulk enrolment of `--persons` people (100,000) from one NDJSON upload, then again
  (idempotent re-run);
- search: ITI-67 searches by a professional on a database pre-loaded by bench.loader with
  `--documents` DocumentReferences for `--patients` patients (loaded once, then reused);
- encryption: POST /Binary and GET /Binary of 50 KB PDFs with content encryption on and off,
  alternating, in one run; prints the ratio (bench/encryption.py).
- measurements: connected-device Observations (bench/measurements.py): `--values` glucose
  values bulk-loaded by SQL, then batch-Bundle ingest through the API, `$lastn` and a 30-day
  `$daily-summary` by patients;
- reminders: `espace-api reminders run` over `--reminder-patients` active spaces, twice
  (bench/reminders.py);
- rss: ITI-65 deposits by 16 vendors until `--deposits` (100,000) are answered, each
  worker's RSS after the first 30 s round and at the end (bench/rss.py; not in the
  default set: about 15 minutes here).
Uses DATABASE_URL's server or an embedded Postgres.
"""

import argparse
import asyncio
import json
import os
import pathlib
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable

import httpx

from bench import (
    db,
    documents,
    encryption,
    enrolment,
    limit,
    loader,
    measurements,
    reminders,
    rss,
    tokens,
)
from bench.loader import INS, LOINC, TYPES
from bench.stats import Report, header


def fresh_database() -> str:
    """A new, migrated database for the core and deposit scenarios."""
    return db.database(f"espace_bench_{uuid.uuid4().hex[:8]}")


def start_server(
    url: str,
    port: int,
    workers: int,
    app: str = "espace_api.main:create_app",
    env_extra: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """uvicorn serving `app` (a factory) on `port`, once /healthz answers."""
    env = {**os.environ, "DATABASE_URL": url, "BASE_URL": f"http://127.0.0.1:{port}"}
    env.update(env_extra or {})
    env["DRAIN_SECONDS"] = "0"  # the bench stops its servers at once
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            app,
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
            "--workers",
            str(workers),
        ],
        env=env,
    )
    for _ in range(100):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("server did not start")


async def load(
    name: str,
    concurrency: int,
    seconds: float,
    call: Callable[[httpx.AsyncClient, int], Awaitable[httpx.Response]],
    client: httpx.AsyncClient,
    max_requests: int | None = None,
) -> Report:
    """Run `call` from `concurrency` workers for `seconds` (or max_requests)."""
    latencies: list[float] = []
    errors = 0
    counter = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal errors, counter
        while time.perf_counter() < deadline and (max_requests is None or counter < max_requests):
            i = counter
            counter += 1
            t0 = time.perf_counter()
            r = await call(client, i)
            latencies.append((time.perf_counter() - t0) * 1000)
            if r.status_code >= 400:
                errors += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Report(name, len(latencies), errors, time.perf_counter() - start, latencies)


def patient_body() -> dict:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": INS, "value": str(uuid.uuid4().int)[:15]}],
        "name": [
            {"family": random.choice(["Martin", "Bernard", "Petit", "Durand"]), "given": ["Alex"]}
        ],
        "birthDate": f"19{random.randint(30, 99)}-0{random.randint(1, 9)}-1{random.randint(0, 9)}",
    }


def document_body(pid: str) -> dict:
    return {
        "resourceType": "DocumentReference",
        "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{uuid.uuid4()}"},
        "status": "current",
        "type": {"coding": [{"system": LOINC, "code": random.choice(TYPES)}]},
        "subject": {"reference": f"Patient/{pid}"},
        "date": f"2024-0{random.randint(1, 9)}-1{random.randint(0, 9)}T10:00:00Z",
        "content": [{"attachment": {"contentType": "text/plain", "data": "Qm9uam91cg=="}}],
    }


async def core_scenarios(
    base: str, token: str, args: argparse.Namespace, patients: list[str]
) -> list[Report]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}
    limits = httpx.Limits(max_connections=args.concurrency * 2)
    reports = []
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=30) as c:
        docs: list[str] = []

        async def create_patient(client: httpx.AsyncClient, i: int) -> httpx.Response:
            r = await client.post("/Patient", json=patient_body())
            if r.status_code == 201:
                patients.append(r.json()["id"])
            return r

        reports.append(
            await load(
                "create Patient",
                args.concurrency,
                600,
                create_patient,
                c,
                max_requests=args.resources // 4,
            )
        )

        async def create_doc(client: httpx.AsyncClient, i: int) -> httpx.Response:
            r = await client.post(
                "/DocumentReference", json=document_body(patients[i % len(patients)])
            )
            if r.status_code == 201:
                docs.append(r.json()["id"])
            return r

        reports.append(
            await load(
                "create DocumentReference",
                args.concurrency,
                600,
                create_doc,
                c,
                max_requests=args.resources,
            )
        )

        async def read(client: httpx.AsyncClient, i: int) -> httpx.Response:
            return await client.get(f"/DocumentReference/{random.choice(docs)}")

        reports.append(
            await load("read DocumentReference", args.concurrency, args.seconds, read, c)
        )

        async def search(client: httpx.AsyncClient, i: int) -> httpx.Response:
            pid = random.choice(patients)
            return await client.get(
                "/DocumentReference",
                params={
                    "patient": pid,
                    "type": f"{LOINC}|{random.choice(TYPES)}",
                    "_sort": "-date",
                },
            )

        reports.append(
            await load("search DocRef patient+type", args.concurrency, args.seconds, search, c)
        )
    return reports


async def deposit_scenario(
    base: str, args: argparse.Namespace, patients: list[str], vendor_tokens: list[str]
) -> list[Report]:
    limits = httpx.Limits(max_connections=args.concurrency * 2)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as c:
        call = documents.deposit_call(patients, vendor_tokens)
        name = f"deposit ITI-65 50KB PDF x{args.concurrency} vendors"
        return [await load(name, args.concurrency, args.seconds, call, c)]


async def search_scenario(base: str, args: argparse.Namespace, token: str) -> list[Report]:
    limits = httpx.Limits(max_connections=args.concurrency * 2)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as c:
        call = documents.search_call(args.patients, token)
        name = f"search ITI-67 on {args.documents // 1000}k docs"
        return [await load(name, args.concurrency, args.seconds, call, c)]


def run_core_and_deposit(args: argparse.Namespace) -> list[Report]:
    url = fresh_database()
    base = f"http://127.0.0.1:{args.port}"
    server = start_server(url, args.port, args.workers)
    try:
        vendors = [tokens.vendor(i) for i in range(args.concurrency)]
        minted = tokens.mint_all(url, base, [tokens.operator(), *vendors])
        operator, vendor_tokens = minted[0], minted[1:]
        patients = asyncio.run(create_patients(base, operator, 200))
        reports: list[Report] = []
        if "core" in args.scenarios:
            reports += asyncio.run(core_scenarios(base, operator, args, patients))
        if "deposit" in args.scenarios:
            reports += asyncio.run(deposit_scenario(base, args, patients, vendor_tokens))
        return reports
    finally:
        server.terminate()
        server.wait(timeout=10)
        db.drop(url)


def run_enrolment(args: argparse.Namespace) -> str:
    url = fresh_database()
    base = f"http://127.0.0.1:{args.port + 2}"
    server = start_server(url, args.port + 2, args.workers)
    try:
        (operator,) = tokens.mint_all(url, base, [tokens.operator()])
        return enrolment.run(base, operator, args.persons)
    finally:
        server.terminate()
        server.wait(timeout=10)
        db.drop(url)


def run_search(args: argparse.Namespace) -> tuple[list[Report], list[str]]:
    """ITI-67 on the loaded database: httpx clients (as before), then wrk beside the bare
    read of a loaded Patient, for the ratio."""
    url = loader.database_for(args.documents)
    asyncio.run(loader.load(url, args.patients, args.documents))
    base = f"http://127.0.0.1:{args.port + 1}"
    bare_port = args.port + 5
    server = start_server(url, args.port + 1, args.workers)
    bare = start_server(url, bare_port, args.workers, app="bench.bare_app:create_app")
    try:
        (token,) = tokens.mint_all(url, base, [tokens.professional()])
        reports = asyncio.run(search_scenario(base, args, token))
        work = pathlib.Path(tempfile.mkdtemp(prefix="espace-bench-"))
        searches = limit.requests_file(
            work / "searches.tsv",
            [("GET", target, token, "") for target in documents.search_targets(args.patients)],
        )
        options = {"connections": args.connections, "seconds": int(args.seconds)}
        floor = limit.wrk(
            "read Patient: bare limit",
            f"http://127.0.0.1:{bare_port}/Patient/{loader.patient_id(0)}",
            **options,
        )
        found = limit.wrk(
            f"search ITI-67 {args.documents // 1000}k docs", base, requests=searches, **options
        )
        shutil.rmtree(work, ignore_errors=True)
        return reports, [
            floor.line(),
            found.line(),
            limit.ratio_line("ITI-67 search by patient (+type)", found, floor, 0.35)
            + f"; p95 {found.p95_ms:.1f} ms (target 25 ms)",
        ]
    finally:
        for proc in (server, bare):
            proc.terminate()
            proc.wait(timeout=10)


def run_rss(args: argparse.Namespace) -> list[str]:
    """A worker's RSS over `--deposits` ITI-65 deposits (bench/rss.py)."""
    url = fresh_database()
    port = args.port + 6
    base = f"http://127.0.0.1:{port}"
    server = start_server(url, port, args.workers)
    try:
        (operator,) = tokens.mint_all(url, base, [tokens.operator()])
        patients = asyncio.run(create_patients(base, operator, 200))
        return rss.run(url, base, server.pid, patients, args.deposits)
    finally:
        server.terminate()
        server.wait(timeout=10)
        db.drop(url)


def run_measurements(args: argparse.Namespace) -> tuple[list[Report], list[str]]:
    """Issue 12: ingest through the API, then $lastn and $daily-summary on `--values` values."""
    url = measurements.database_for(args.values)
    started = time.perf_counter()
    asyncio.run(measurements.load(url, args.obs_patients, args.values))
    lines = [f"loaded/checked {args.values} values in {time.perf_counter() - started:.0f} s"]
    port = args.port + 6
    base = f"http://127.0.0.1:{port}"
    os.environ["REQUEST_TIMEOUT_SECONDS"] = "300"  # a 1,000-entry Bundle on a loaded box
    server = start_server(url, port, args.workers)
    try:
        pids = [measurements.patient_id(n) for n in range(0, args.obs_patients, 20)]
        minted = tokens.mint_all(
            url, base, [measurements.service_token(), *(tokens.patient(p) for p in pids)]
        )
        service, patient_tokens = minted[0], dict(zip(pids, minted[1:], strict=True))
        bundles = measurements.ingest_bundles(
            args.obs_patients, args.ingest_bundles, args.ingest_size
        )
        lines.append("ingest (new): " + asyncio.run(measurements.ingest(base, service, bundles, 2)))
        lines.append(
            "ingest (again, duplicates): "
            + asyncio.run(measurements.ingest(base, service, bundles, 2))
        )

        async def operations() -> list[Report]:
            async with httpx.AsyncClient(base_url=base, timeout=60) as c:
                n = args.values // 1_000_000
                return [
                    await load(
                        f"$lastn on {n}M values",
                        4,
                        args.seconds,
                        measurements.lastn_call(patient_tokens),
                        c,
                    ),
                    await load(
                        f"$daily-summary 30 d on {n}M",
                        4,
                        args.seconds,
                        measurements.summary_call(patient_tokens, 30),
                        c,
                    ),
                ]

        return asyncio.run(operations()), lines
    finally:
        server.terminate()
        server.wait(timeout=10)


def run_limit(args: argparse.Namespace) -> list[str]:
    """espace-api's authenticated read against the bare FastAPI + asyncpg read (wrk)."""
    url = fresh_database()
    port, bare_port = args.port + 3, args.port + 4
    base = f"http://127.0.0.1:{port}"
    server = start_server(url, port, args.workers)
    bare = start_server(url, bare_port, args.workers, app="bench.bare_app:create_app")
    try:
        (operator,) = tokens.mint_all(url, base, [tokens.operator()])
        pid = asyncio.run(create_patients(base, operator, 1))[0]
        (token,) = tokens.mint_all(url, base, [tokens.patient(pid)])
        options = {"connections": args.connections, "seconds": int(args.seconds)}
        floor = limit.wrk(
            "read Patient: bare limit", f"http://127.0.0.1:{bare_port}/Patient/{pid}", **options
        )
        ours = limit.wrk(
            "read Patient: patient token",
            f"{base}/Patient/{pid}",
            headers={"Authorization": f"Bearer {token}"},
            **options,
        )
        lines = [
            floor.line(),
            ours.line(),
            limit.ratio_line("authenticated read by id", ours, floor, 0.50),
        ]
        work = pathlib.Path(tempfile.mkdtemp(prefix="espace-bench-"))
        # The same read by 200 patients, each with their own token: a caller's policy
        # predicate is built once per second (access/policy.visible), so one token all run
        # long measures a read whose predicate is always built already.
        readers = asyncio.run(create_patients(base, operator, 200))
        own = tokens.mint_all(url, base, [tokens.patient(p) for p in readers])
        reads = limit.requests_file(
            work / "reads.tsv",
            [("GET", f"/Patient/{p}", t, "") for p, t in zip(readers, own, strict=True)],
        )
        many = limit.wrk("read Patient: 200 patients", base, requests=reads, **options)
        lines += [many.line(), limit.ratio_line("read by id, 200 callers", many, floor, 0.50)]
        run_id = f"{random.randrange(10, 99)}"
        body = json.dumps(
            {
                "resourceType": "Patient",
                "identifier": [{"system": INS, "value": f"9{run_id}{{{{N}}}}"}],
                "name": [{"family": "Bench", "given": ["Alex"]}],
                "birthDate": "1980-05-17",
            },
            separators=(",", ":"),
        )
        creates = limit.requests_file(work / "creates.tsv", [("POST", "/Patient", operator, body)])
        made = limit.wrk("create Patient: operator", base, requests=creates, **options)
        lines += [made.line(), limit.floor_line("creates", made, 600)]
        patients = asyncio.run(create_patients(base, operator, 200))
        deposits = documents.vendor_deposits(url, base, patients, work / "deposits.tsv")
        sent = limit.wrk(
            "deposit ITI-65 50 KB x16 vendors",
            base,
            requests=deposits,
            connections=16,
            seconds=int(args.seconds),
        )
        lines += [sent.line(), limit.floor_line("ITI-65 deposits", sent, 400)]
        shutil.rmtree(work, ignore_errors=True)
        return lines
    finally:
        for proc in (server, bare):
            proc.terminate()
            proc.wait(timeout=10)
        db.drop(url)


def run_encryption(args: argparse.Namespace) -> list[str]:
    """Deposit and download with encryption on and off: two servers, one database, one KEK."""
    from espace_api.blobs.kms import new_kek

    url = fresh_database()
    kek = new_kek()
    ports = {"encrypted": args.port + 6, "clear": args.port + 7}
    servers = [
        start_server(
            url,
            port,
            args.workers,
            env_extra={
                "ENCRYPTION_KEK": kek,
                "ENCRYPTION_ENABLED": str(mode == "encrypted").lower(),
                "BLOB_BACKEND": "postgres",
                # Four pools on a shared Postgres: no more connections than clients.
                "DB_POOL_SIZE": str(args.concurrency),
                "DB_MAX_OVERFLOW": "0",
            },
        )
        for mode, port in ports.items()
    ]
    try:
        sides = {
            mode: encryption.prepare(url, f"http://127.0.0.1:{port}", create_patients)
            for mode, port in ports.items()
        }
        lines = asyncio.run(encryption.compare(sides, args, load))
        print("\n".join(lines), flush=True)
        return lines + asyncio.run(encryption.store_level(url, args.seconds, args.concurrency))
    finally:
        for proc in servers:
            proc.terminate()
            proc.wait(timeout=10)
        db.drop(url)


async def create_patients(base: str, token: str, n: int) -> list[str]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as c:
        ids = []
        for _ in range(n):
            r = await c.post("/Patient", json=patient_body())
            r.raise_for_status()
            ids.append(r.json()["id"])
        return ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--scenarios", default="limit,core,deposit,enrol,search,measurements,reminders"
    )
    parser.add_argument("--resources", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument("--patients", type=int, default=100_000, help="search: loaded patients")
    parser.add_argument("--documents", type=int, default=1_000_000, help="search: loaded docs")
    parser.add_argument("--persons", type=int, default=100_000, help="enrol: persons")
    parser.add_argument("--values", type=int, default=10_000_000, help="measurements: loaded")
    parser.add_argument("--obs-patients", type=int, default=1000, help="measurements: patients")
    parser.add_argument("--ingest-bundles", type=int, default=10, help="measurements: Bundles")
    parser.add_argument("--ingest-size", type=int, default=1000, help="measurements: per Bundle")
    parser.add_argument("--reminder-patients", type=int, default=1_000_000, help="reminders")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--connections", type=int, default=32, help="limit: wrk connections")
    parser.add_argument("--deposits", type=int, default=100_000, help="rss: deposits in all")
    args = parser.parse_args()
    args.scenarios = set(args.scenarios.split(","))
    reports: list[Report] = []
    if args.scenarios & {"core", "deposit"}:
        reports += run_core_and_deposit(args)
    enrolled = run_enrolment(args) if "enrol" in args.scenarios else None
    limits = run_limit(args) if "limit" in args.scenarios else []
    encrypted = run_encryption(args) if "encryption" in args.scenarios else []
    if "search" in args.scenarios:
        found, searched = run_search(args)
        reports += found
        limits += searched
    measured: list[str] = []
    if "measurements" in args.scenarios:
        ops, measured = run_measurements(args)
        reports += ops
    if "reminders" in args.scenarios:
        measured += reminders.run(args.reminder_patients)
    if "rss" in args.scenarios:
        measured += run_rss(args)
    print(header() + f"; {args.workers} uvicorn workers, {args.concurrency} concurrent clients")
    for report in reports:
        print(report.line())
    if limits:
        print(f"wrk -t1 -c{args.connections} -d{int(args.seconds)}s:")
        print("\n".join(limits))
    if enrolled:
        print(enrolled)
    if encrypted:
        print("\n".join(encrypted))
    if measured:
        print("\n".join(measured))


if __name__ == "__main__":
    main()
