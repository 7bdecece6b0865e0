"""`make soak` (after the mixed load): faults during ITI-65 deposits, and what they left.

Each scenario starts its own Postgres cluster (bench/cluster.py: own port, temp dir; the
shared Postgres is never touched), migrates it, starts the real server (2 uvicorn
workers) and has `--vendors` vendors deposit ~50 KB PDFs (ITI-65 transaction Bundles, each
vendor with its own machine token) without pause, then:

- db-restart: `pg_ctl stop -m fast`, `--outage` seconds down, `pg_ctl start`, in the middle
  of the load. Every answer must be 201 or 503 `DATABASE_UNAVAILABLE` (an OperationOutcome
  with Retry-After); requests overlapping the outage answer within `--max-latency` s; a
  201 comes within `--max-recovery` s of the database being back, and no 503 after that.
- kill: `kill -9` of the server (supervisor and workers) in the middle of the load, a
  restart after `--outage` s. Answers are 201, or no answer while it was down. Then every
  deposit without a 201 is sent again (same masterIdentifier, same bytes: a vendor's retry).

Afterwards, for both (bench/integrity.py): every deposit answered 201 (or 200 on a retry)
is there once and intact (its Binary's bytes fetched over HTTP, SHA-1 compared); none that
got an error is half there (a DocumentReference without its Binary or content, a Binary
without its DocumentReference); after the retries, exactly one DocumentReference per
masterIdentifier (SQL). Exit status 1 when a check fails.
"""

import argparse
import asyncio
import contextlib
import hashlib
import os
import random
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx

from bench import documents, integrity, tokens
from bench.cluster import Cluster, free_port
from bench.db import database_on
from bench.run import create_patients, start_server
from bench.soak import workers_of
from bench.stats import header

OK = (200, 201)


@dataclass
class Attempt:
    """One request of a deposit: status (0: no answer), times from the load's start."""

    status: int
    started: float
    ended: float
    answer: str = ""  # error code of an OperationOutcome, or the client-side error

    @property
    def latency(self) -> float:
        return self.ended - self.started


@dataclass
class Deposit:
    """One document a vendor deposits (and may retry)."""

    n: int
    pid: str
    vendor: int
    master: str
    sha1: str
    attempts: list[Attempt] = field(default_factory=list)
    doc_id: str | None = None
    verified: bool = False  # read back intact over HTTP
    extra_binary: str | None = None  # the Binary a replayed retry wrote beside the document

    @property
    def accepted(self) -> bool:
        return bool(self.attempts) and self.attempts[-1].status in OK


def pdf(seed: str) -> bytes:
    """The ~50 KB PDF of deposit `seed` (the same bytes on every retry)."""
    head = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"
    body = random.Random(seed).randbytes(documents.PDF_SIZE - len(head) - 6)
    return head + body + b"\n%%EOF"


class Load:
    """Vendors depositing without pause until stopped; every attempt recorded."""

    def __init__(self, base: str, patients: list[str], vendors: list[str]) -> None:
        self.base, self.patients, self.vendors = base, patients, vendors
        self.run = f"{random.randrange(10**6)}"
        self.deposits: list[Deposit] = []
        self.t0 = time.perf_counter()
        self.stopped = asyncio.Event()

    def now(self) -> float:
        return time.perf_counter() - self.t0

    def new(self, vendor: int) -> Deposit:
        n = len(self.deposits)
        master = f"urn:oid:1.2.250.1.999.{self.run}.{n}"
        data = pdf(master)
        d = Deposit(n, random.choice(self.patients), vendor, master, hashlib.sha1(data).hexdigest())
        self.deposits.append(d)
        return d

    async def send(self, client: httpx.AsyncClient, d: Deposit) -> Attempt:
        bundle = documents.deposit_of(d.pid, d.master, pdf(d.master))
        headers = {
            "Authorization": f"Bearer {self.vendors[d.vendor]}",
            "Content-Type": "application/fhir+json",
        }
        started = self.now()
        try:
            r = await client.post("/", json=bundle, headers=headers)
        except httpx.HTTPError as exc:
            attempt = Attempt(0, started, self.now(), type(exc).__name__)
        else:
            attempt = Attempt(r.status_code, started, self.now(), _answer(r))
            if r.status_code == 200:  # the transaction-response: the document's own status
                d.doc_id, attempt.status, binary = _entries(r.json())
                if attempt.status == 200:
                    d.extra_binary = binary
        d.attempts.append(attempt)
        return attempt

    async def vendor(self, client: httpx.AsyncClient, vendor: int) -> None:
        while not self.stopped.is_set():
            attempt = await self.send(client, self.new(vendor))
            if attempt.status == 0:
                await asyncio.sleep(0.5)  # server down: a vendor waits before the next

    async def during(self, fault: Callable[[], Awaitable[None]], before: float) -> None:
        """Deposit for `before` s, run `fault` (it returns once the service should be
        back), deposit as long again, stop."""
        limits = httpx.Limits(max_connections=len(self.vendors) * 2)
        async with httpx.AsyncClient(base_url=self.base, timeout=60, limits=limits) as client:
            vendors = [
                asyncio.create_task(self.vendor(client, v)) for v in range(len(self.vendors))
            ]
            await asyncio.sleep(before)
            await fault()
            await asyncio.sleep(before)
            self.stopped.set()
            await asyncio.gather(*vendors)

    async def retry_failed(self) -> list[Attempt]:
        """A vendor's retries: every deposit without a 201/200 sent again, as it was."""
        failed = [d for d in self.deposits if not d.accepted]
        async with httpx.AsyncClient(base_url=self.base, timeout=60) as client:
            sem = asyncio.Semaphore(len(self.vendors))

            async def one(d: Deposit) -> Attempt:
                async with sem:
                    return await self.send(client, d)

            return list(await asyncio.gather(*(one(d) for d in failed)))


def _answer(r: httpx.Response) -> str:
    """The stable error code of an OperationOutcome answer ('' for a success); a 503 must
    carry Retry-After ('NO_RETRY_AFTER' otherwise)."""
    if r.status_code < 400:
        return ""
    try:
        body = r.json()
        code = body["issue"][0]["details"]["coding"][0]["code"]
        assert body["resourceType"] == "OperationOutcome"
    except (ValueError, KeyError, IndexError, TypeError, AssertionError):
        return "NOT_AN_OPERATION_OUTCOME"
    if r.status_code == 503 and not r.headers.get("Retry-After"):
        return "NO_RETRY_AFTER"
    return str(code)


def _entries(bundle: dict) -> tuple[str | None, int, str | None]:
    """From a transaction-response: the DocumentReference's id and status (201 created, 200
    an earlier deposit of the same masterIdentifier and content) and the Binary's id."""
    found: dict[str, tuple[str, int]] = {}
    for entry in bundle.get("entry") or []:
        response = entry.get("response") or {}
        for rtype in ("DocumentReference", "Binary"):
            _, hit, rest = (response.get("location") or "").partition(f"{rtype}/")
            if hit:
                found[rtype] = rest.split("/")[0], int(response["status"].split()[0])
    doc_id, status = found.get("DocumentReference", (None, 0))
    return doc_id, status, found.get("Binary", (None, 0))[0]


@dataclass
class Window:
    """When the fault began and when the service's dependency was back (load seconds)."""

    down: float = 0.0
    back: float = 0.0
    notes: list[str] = field(default_factory=list)


class Scenario:
    """A cluster, a migrated database, the server and the vendors' tokens."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.port = args.port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.cluster = Cluster()
        self.server: subprocess.Popen[bytes] | None = None

    def open(self) -> None:
        self.cluster.start()
        self.url = database_on(self.cluster.url, "espace_faults")
        self.restart_server()
        (operator,) = tokens.mint_all(self.url, self.base, [tokens.operator()])
        self.patients = asyncio.run(create_patients(self.base, operator, self.args.patients))
        specs = [tokens.vendor(i) for i in range(self.args.vendors)]
        self.vendors = tokens.mint_all(self.url, self.base, specs)
        specs = [tokens.patient(p) for p in self.patients]
        readers = tokens.mint_all(self.url, self.base, specs)
        self.readers = dict(zip(self.patients, readers, strict=True))

    def kill_server(self) -> int:
        """kill -9 the supervisor and its workers; how many processes."""
        assert self.server is not None
        victims = [*workers_of(self.server.pid), self.server.pid]
        for pid in reversed(victims):  # the supervisor first: it would restart workers
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.server.wait(timeout=30)
        return len(victims)

    def close(self) -> None:
        if self.server is not None:
            self.kill_server()
        self.cluster.destroy()

    def restart_server(self) -> None:
        self.server = start_server(self.url, self.port, self.args.workers)


def db_restart(s: Scenario) -> list[str]:
    """Restart Postgres under the deposits; the checks of the module docstring."""
    args, load, window = s.args, Load(s.base, s.patients, s.vendors), Window()

    async def fault() -> None:
        window.down = load.now()
        stopped = await asyncio.to_thread(s.cluster.stop, "fast")
        await asyncio.sleep(args.outage)
        started = await asyncio.to_thread(s.cluster.start)
        window.back = load.now()
        window.notes.append(f"stop {stopped:.1f} s, down {args.outage:g} s, start {started:.1f} s")

    asyncio.run(load.during(fault, args.seconds))
    attempts = [a for d in load.deposits for a in d.attempts]
    during = [a for a in attempts if a.started < window.back and a.ended > window.down]
    after = [a for a in attempts if a.started >= window.back]
    first = min((a.ended for a in after if a.status == 201), default=None)
    recovery = first - window.back if first is not None else float("inf")
    late = [a for a in after if a.status != 201 and a.started > window.back + args.max_recovery]
    worst = max((a.latency for a in during), default=0.0)
    unavailable = [a for a in attempts if a.status == 503]
    slowest = max((a.latency for a in unavailable), default=0.0)
    others = [a for a in attempts if a.status != 201 and a.answer != "DATABASE_UNAVAILABLE"]
    failures = [f"answer {a.status} {a.answer} at t={a.started:.1f} s" for a in others[:5]]
    if others:
        failures.insert(0, f"{len(others)} answers neither 201 nor 503 DATABASE_UNAVAILABLE")
    if worst > args.max_latency:
        failures.append(f"a request during the outage took {worst:.1f} s")
    if recovery > args.max_recovery:
        failures.append(f"no 201 within {args.max_recovery:g} s of the database being back")
    if late:
        failures.append(f"{len(late)} failures more than {args.max_recovery:g} s after recovery")
    check = asyncio.run(integrity.check(s.url, s.base, load.deposits, s.readers))
    failures += check.failures
    lines = [
        f"database restart (pg_ctl stop -m fast, {args.outage:g} s down, pg_ctl start) "
        f"during ITI-65 deposits, {args.vendors} vendors",
        *_counts(load.deposits),
        f"  503 DATABASE_UNAVAILABLE {len(unavailable)} (OperationOutcome + Retry-After), "
        f"slowest {slowest * 1000:.0f} ms",
        f"  outage (load time)     {window.down:.1f} s .. {window.back:.1f} s ({window.notes[0]})",
        f"  during the outage      {len(during)} requests, max latency {worst * 1000:.0f} ms "
        f"(bound {args.max_latency:g} s)",
        f"  recovery               first 201 {recovery:.2f} s after Postgres accepted "
        f"connections (bound {args.max_recovery:g} s); failures after it: {len(late)}",
        *check.lines,
    ]
    return _verdict(lines, failures)


def kill(s: Scenario) -> list[str]:
    """kill -9 the server under the deposits, restart it, check, retry, check again."""
    args, load, window = s.args, Load(s.base, s.patients, s.vendors), Window()

    async def fault() -> None:
        window.down = load.now()
        victims = s.kill_server()
        await asyncio.sleep(args.outage)
        t0 = time.perf_counter()
        await asyncio.to_thread(s.restart_server)
        window.back = load.now()
        window.notes.append(
            f"{victims} processes killed, restarted after {args.outage:g} s, "
            f"up in {time.perf_counter() - t0:.1f} s"
        )

    asyncio.run(load.during(fault, args.seconds))
    attempts = [a for d in load.deposits for a in d.attempts]
    down = [a for a in attempts if a.status != 201 and window.down <= a.ended <= window.back + 1]
    others = [a for a in attempts if a.status != 201 and a not in down]
    after = [a for a in attempts if a.started >= window.back]
    first = min((a.ended for a in after if a.status == 201), default=None)
    recovery = first - window.back if first is not None else float("inf")
    failures = [f"answer {a.status} {a.answer} at t={a.started:.1f} s" for a in others[:5]]
    if others:
        failures.insert(0, f"{len(others)} failures outside the kill window")
    before = asyncio.run(integrity.check(s.url, s.base, load.deposits, s.readers))
    retried = asyncio.run(load.retry_failed())
    statuses = sorted({a.status for a in retried})
    if any(a.status not in OK for a in retried):
        failures.append(f"retries answered {statuses}")
    final = asyncio.run(integrity.check(s.url, s.base, load.deposits, s.readers, final=True))
    failures += before.failures + final.failures
    lines = [
        f"process kill (kill -9 of the uvicorn supervisor and its {args.workers} workers) "
        f"during ITI-65 deposits, {args.vendors} vendors",
        *_counts(load.deposits),
        f"  no answer while down   {len(down)} (connection refused or cut)",
        f"  kill (load time)       {window.down:.1f} s .. {window.back:.1f} s ({window.notes[0]})",
        f"  recovery               first 201 {recovery:.2f} s after the server was up",
        "  before the retries:",
        *before.lines,
        f"  vendor retries         {len(retried)} re-sent: "
        f"{sum(a.status == 201 for a in retried)} created, "
        f"{sum(a.status == 200 for a in retried)} replayed (200, stored before the kill), "
        f"{sum(a.status not in OK for a in retried)} failed",
        "  after the retries:",
        *final.lines,
    ]
    return _verdict(lines, failures)


def _counts(deposits: list[Deposit]) -> list[str]:
    """Counts of the first attempts (the load, before any retry)."""
    firsts = [d.attempts[0] for d in deposits]
    created = sum(a.status == 201 for a in firsts)
    no_answer = sum(a.status == 0 for a in firsts)
    other = len(firsts) - created - no_answer - sum(a.status == 503 for a in firsts)
    return [
        f"  deposits sent          {len(deposits)}",
        f"  201 Created            {created}",
        f"  other errors           {other} (no answer: {no_answer})",
    ]


def _verdict(lines: list[str], failures: list[str]) -> list[str]:
    if failures:
        return [*lines, "  result                 FAIL", *(f"    - {f}" for f in failures)]
    return [*lines, "  result                 PASS"]


SCENARIOS = {"db-restart": db_restart, "kill": kill}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scenarios", default="db-restart,kill")
    parser.add_argument("--seconds", type=float, default=8, help="load before and after")
    parser.add_argument("--outage", type=float, default=3, help="seconds down")
    parser.add_argument("--vendors", type=int, default=8)
    parser.add_argument("--patients", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--port", type=int, default=0, help="the server's (0: a free one)")
    parser.add_argument("--max-latency", type=float, default=5.0)
    parser.add_argument("--max-recovery", type=float, default=5.0)
    args = parser.parse_args()
    out, failed = [header() + f"; {args.workers} uvicorn workers; own Postgres cluster"], False
    for name in args.scenarios.split(","):
        scenario = Scenario(args)
        try:
            scenario.open()
            lines = SCENARIOS[name](scenario)
        finally:
            scenario.close()
        failed = failed or any(line.endswith("FAIL") for line in lines)
        out += lines
    print("\n".join(out))
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
