"""`--scenarios encryption`: document deposit and download with content encryption on and off,
in one run (issue 18).

Two servers on one database, the same KEK: one encrypting (the default), one with
`ENCRYPTION_ENABLED=false`. Each is loaded in turn, in short alternating rounds so that the
load of a shared machine falls on both alike: `POST /Binary` of distinct ~50 KB PDFs by a
vendor, then `GET /Binary/{id}` of what was deposited by the patient. Prints req/s of each
and the ratio encrypted / clear (target: >= 90 %).
"""

import asyncio
import os
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from bench import tokens
from bench.documents import pdf_bytes
from bench.stats import Report

Load = Callable[..., Awaitable[Report]]
MODES = ("encrypted", "clear")
TARGET = 0.90


def _client(base: str, token: str, concurrency: int) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base,
        headers={"Authorization": f"Bearer {token}"},
        limits=httpx.Limits(max_connections=concurrency * 2),
        timeout=60,
    )


Call = Callable[[httpx.AsyncClient, int], Awaitable[httpx.Response]]


def _deposit(pid: str, ids: list[str]) -> Call:
    """POST /Binary of a distinct 50 KB PDF for `pid`; remembers the Binary ids."""

    async def call(c: httpx.AsyncClient, i: int) -> httpx.Response:
        headers = {"Content-Type": "application/pdf", "X-Security-Context": f"Patient/{pid}"}
        r = await c.post("/Binary", content=pdf_bytes(), headers=headers)
        if r.status_code == 201:
            ids.append(r.json()["id"])
        return r

    return call


def _download(ids: list[str]) -> Call:
    """GET /Binary/{id} of a deposited document (the whole 50 KB)."""

    async def call(c: httpx.AsyncClient, i: int) -> httpx.Response:
        return await c.get(f"/Binary/{random.choice(ids)}")

    return call


def _merge(name: str, parts: list[Report]) -> Report:
    return Report(
        name,
        sum(p.requests for p in parts),
        sum(p.errors for p in parts),
        sum(p.seconds for p in parts),
        [x for p in parts for x in p.latencies_ms],
    )


async def store_level(url: str, seconds: float, concurrency: int) -> list[str]:
    """The blob store alone (Postgres backend, in this process): put then read 50 KB
    documents with and without encryption, alternating rounds; what the HTTP figures hide."""
    from espace_api.blobs.keys import DataKeys
    from espace_api.blobs.kms import LocalKeyService
    from espace_api.blobs.postgres import PostgresBlobStore
    from espace_api.config import Settings
    from espace_api.db.engine import make_engine

    engine = make_engine(Settings(database_url=url, db_pool_size=concurrency, db_max_overflow=0))
    keys = DataKeys(engine, LocalKeyService([os.urandom(32)]))
    stores = {"encrypted": PostgresBlobStore(engine, keys=keys), "clear": PostgresBlobStore(engine)}
    done: dict[tuple[str, str], list[float]] = {}
    try:
        for _ in range(4):
            for mode, store in stores.items():
                pid = f"bench-{mode}-{random.randrange(10**9)}"
                shas: list[str] = []

                async def put(
                    store: PostgresBlobStore = store, pid: str = pid, shas: list[str] = shas
                ) -> None:
                    shas.append((await store.put(pid, pdf_bytes(), max_bytes=1 << 20)).sha256)

                async def get(
                    store: PostgresBlobStore = store, pid: str = pid, shas: list[str] = shas
                ) -> None:
                    await store.read_all(pid, random.choice(shas))

                for op, call in (("put", put), ("read", get)):
                    done.setdefault((op, mode), []).extend(
                        await _repeat(call, concurrency, seconds / 8)
                    )
    finally:
        await engine.dispose()
    lines = [crypto_cost()]
    for op in ("put", "read"):
        rate = {m: done[(op, m)][0] / done[(op, m)][1] for m in MODES}
        lines.append(
            f"blob store {op} 50 KB: encrypted {rate['encrypted']:.0f}/s, clear "
            f"{rate['clear']:.0f}/s: {rate['encrypted'] / rate['clear']:.0%}"
        )
    return lines


def crypto_cost(n: int = 2000) -> str:
    """CPU time of sealing then opening one 50 KB document (AES-256-GCM, 64 KiB chunks), in
    this process: the part of the encrypted path that load on the machine does not blur."""
    import io

    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from espace_api.blobs import encryption as sealed

    aead, data = AESGCM(os.urandom(32)), pdf_bytes()
    sha = "0" * 64
    start = time.process_time()
    for _ in range(n):
        out = io.BytesIO()
        sealed.encrypt(aead, "p", sha, len(data), io.BytesIO(data), out)
        raw = out.getvalue()
        sealed.decrypt_chunk(aead, "p", sha, 0, True, raw)
    cost = (time.process_time() - start) / n * 1e6
    return f"AES-256-GCM seal + open of 50 KB: {cost:.0f} us CPU per document"


async def _repeat(
    call: Callable[[], Awaitable[None]], concurrency: int, seconds: float
) -> list[float]:
    """[calls made, seconds taken] by `concurrency` tasks calling `call` for `seconds`."""
    count = 0
    start = time.perf_counter()
    deadline = start + seconds

    async def worker() -> None:
        nonlocal count
        while time.perf_counter() < deadline:
            await call()
            count += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return [count, time.perf_counter() - start]


@dataclass
class Side:
    """One server of the comparison: its base URL, a patient, a vendor's and their tokens."""

    base: str
    patient: str
    vendor: str
    reader: str


def prepare(
    url: str, base: str, create_patients: Callable[[str, str, int], Awaitable[list[str]]]
) -> Side:
    """A patient on the server at `base`, a vendor token and the patient's token."""
    operator, vendor = tokens.mint_all(url, base, [tokens.operator(), tokens.vendor(0)])
    (pid,) = asyncio.run(create_patients(base, operator, 1))
    (reader,) = tokens.mint_all(url, base, [tokens.patient(pid)])
    return Side(base, pid, vendor, reader)


async def compare(sides: dict[str, Side], args: Any, load: Load) -> list[str]:
    """Alternating rounds on the two servers; report lines and ratios."""
    rounds = 4
    seconds = max(1.0, args.seconds / rounds)
    clients = {
        mode: (
            _client(side.base, side.vendor, args.concurrency),
            _client(side.base, side.reader, args.concurrency),
            side.patient,
        )
        for mode, side in sides.items()
    }
    deposited: dict[str, list[str]] = {mode: [] for mode in MODES}
    runs: dict[tuple[str, str], list[Report]] = {}
    try:
        for _ in range(rounds):
            for mode in MODES:
                send, read, pid = clients[mode]
                ids = deposited[mode]

                deposit, download = _deposit(pid, ids), _download(ids)
                report = await load(mode, args.concurrency, seconds, deposit, send)
                runs.setdefault(("deposit", mode), []).append(report)
                report = await load(mode, args.concurrency, seconds, download, read)
                runs.setdefault(("download", mode), []).append(report)
    finally:
        for send, read, _ in clients.values():
            await send.aclose()
            await read.aclose()
    lines = [f"encryption on/off, 50 KB PDFs, {rounds} alternating rounds, {time.strftime('%F')}:"]
    for op in ("deposit", "download"):
        merged = {m: _merge(f"{op} {m}", runs[(op, m)]) for m in MODES}
        lines += [merged[m].line() for m in MODES]
        rps = {m: merged[m].requests / merged[m].seconds for m in MODES}
        ratio = rps["encrypted"] / rps["clear"] if rps["clear"] else 0.0
        verdict = "ok" if ratio >= TARGET else "BELOW TARGET"
        lines.append(f"{op}: encrypted/clear = {ratio:.0%} (target >= {TARGET:.0%}) {verdict}")
    return lines
