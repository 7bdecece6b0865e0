"""`make soak`: a mixed workload against the real server for minutes, and its RSS.

70 % patients' reads and searches (each patient with their own token), 20 % ITI-65 deposits
(~50 KB PDFs with unique bytes, 16 vendors), 10 % messages (a patient's reply in the
thread their doctor opened), from `--connections` (50) wrk connections for `--seconds` (300),
2 uvicorn workers, on a fresh database. Prints throughput, p50/p95/p99, the error count
(must be 0) and each worker's RSS after a 30 s warm-up and at the end.
"""

import argparse
import asyncio
import json
import pathlib
import shutil
import tempfile

import httpx

from bench import db, documents, limit, tokens
from bench.procs import rss_kb, workers_of
from bench.run import create_patients, fresh_database, start_server
from bench.stats import header

DOCTOR = "Practitioner/rpps-10001"


def message(pid: str, sender: str, recipient: str, text: str, thread: str | None = None) -> dict:
    """A Communication about `pid` (the server sets `sent`), in `thread` if given."""
    body = {
        "resourceType": "Communication",
        "status": "completed",
        "subject": {"reference": f"Patient/{pid}"},
        "sender": {"reference": sender},
        "recipient": [{"reference": recipient}],
        "payload": [{"contentString": text}],
    }
    if thread:
        body["partOf"] = [{"reference": f"Communication/{thread}"}]
    return body


async def open_threads(base: str, token: str, pids: list[str]) -> list[str]:
    """The doctor's first message to each patient: the soak's messages answer it."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as c:
        ids = []
        for pid in pids:
            r = await c.post("/Communication", json=message(pid, DOCTOR, f"Patient/{pid}", "Hi"))
            r.raise_for_status()
            ids.append(r.json()["id"])
        return ids


def reply(pid: str, thread: str) -> str:
    body = message(pid, f"Patient/{pid}", DOCTOR, "Question about my results ({{N}})", thread)
    return json.dumps(body, separators=(",", ":"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=300)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--patients", type=int, default=200)
    parser.add_argument("--port", type=int, default=8775)
    args = parser.parse_args()
    url = fresh_database()
    base = f"http://127.0.0.1:{args.port}"
    server = start_server(url, args.port, 2)
    work = pathlib.Path(tempfile.mkdtemp(prefix="espace-soak-"))
    try:
        (operator,) = tokens.mint_all(url, base, [tokens.operator()])
        patients = asyncio.run(create_patients(base, operator, args.patients))
        readers = patients[:20]
        specs = [{**tokens.patient(p), "scope": "patient/*.cruds"} for p in readers]
        people = tokens.mint_all(url, base, specs)
        vendors = tokens.mint_all(url, base, [tokens.vendor(i) for i in range(16)])
        requests: list[tuple[str, str, str, str]] = []
        for pid, token in zip(readers, people, strict=True):  # 70 % reads and searches
            requests += [("GET", f"/Patient/{pid}", token, "")] * 2
            requests += [("GET", f"/DocumentReference?patient={pid}&_sort=-date", token, "")] * 5
        deposit = documents.deposit_template()
        requests += [("POST", "/", "", deposit)] * 40  # 20 %
        threads = asyncio.run(open_threads(base, operator, readers))
        for pid, token, thread in zip(readers, people, threads, strict=True):  # 10 %
            requests.append(("POST", "/Communication", token, reply(pid, thread)))
        mixed = limit.requests_file(work / "soak.tsv", requests, tokens=vendors, patients=patients)
        # Warm-up (caches, pools, statement caches fill), then RSS is taken.
        limit.wrk(
            "warm-up", base, requests=mixed, connections=args.connections, seconds=30, warmup=0
        )
        before = {w: rss_kb(w) for w in workers_of(server.pid)}
        result = limit.wrk(
            f"soak: {len(requests)} templates, 70/20/10",
            base,
            requests=mixed,
            connections=args.connections,
            seconds=args.seconds,
            warmup=0,
        )
        after = {w: rss_kb(w) for w in workers_of(server.pid)}
        print(header() + f"; 2 uvicorn workers, wrk -t1 -c{args.connections} -d{args.seconds}s")
        print(result.line())
        for w in sorted(before):
            start, end = before[w], after.get(w, 0)
            growth = (end - start) / start * 100 if start else 0.0
            print(f"worker {w}: RSS {start / 1024:.0f} MB -> {end / 1024:.0f} MB ({growth:+.1f} %)")
        print("errors: 0" if result.errors == 0 else f"errors: {result.errors} (must be 0)")
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
        db.drop(url)


if __name__ == "__main__":
    main()
