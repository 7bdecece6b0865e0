"""What a fault left behind (bench/faults.py): accepted deposits there once and intact,
refused ones absent or whole, never half there.

From the database (SQL, as the lead would check it): DocumentReferences by
masterIdentifier, each one's Binary, the Binary's blob and its stored bytes. Over HTTP (as a
patient reads them): each accepted deposit's DocumentReference, then its Binary's raw bytes,
whose SHA-1 must be the deposited one's. Unreferenced blobs are only counted: content is
written before the metadata that points at it, and the sweeper removes what no committed
metadata references after the grace period (ARCHITECTURE.md principle 4).
"""

import asyncio
import hashlib
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import asyncpg
import httpx

from espace_api.blobs import encryption

if TYPE_CHECKING:
    from bench.faults import Deposit

DOCS = """
SELECT id, content->'masterIdentifier'->>'value' AS master,
       content->'content'->0->'attachment'->>'url' AS url
FROM resources WHERE resource_type = 'DocumentReference' AND NOT deleted
"""
BINARIES = """
SELECT r.id, b.size, b.key_generation,
       (SELECT coalesce(sum(octet_length(c.data)), 0) FROM blob_chunks c
        WHERE c.patient_id = b.patient_id AND c.sha256 = b.sha256) AS stored
FROM resources r
LEFT JOIN blob_refs f ON f.patient_id = r.patient_id AND f.resource_type = 'Binary'
     AND f.resource_id = r.id AND f.version_id = r.version_id
LEFT JOIN blobs b ON b.patient_id = f.patient_id AND b.sha256 = f.sha256
WHERE r.resource_type = 'Binary' AND NOT r.deleted
"""
UNREFERENCED = """
SELECT count(*) FROM blobs b WHERE NOT EXISTS
  (SELECT 1 FROM blob_refs f WHERE f.patient_id = b.patient_id AND f.sha256 = b.sha256)
"""


@dataclass
class Check:
    """Report lines and the failed checks."""

    lines: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


@dataclass
class Stored:
    """The database's documents: masterIdentifier -> Binary ids, and whole Binaries."""

    by_master: dict[str, list[str]]
    whole: set[str]  # Binaries whose blob is there with all its bytes
    binaries: set[str]
    unreferenced_blobs: int

    def complete(self, master: str) -> bool:
        found = self.by_master.get(master, [])
        return len(found) == 1 and found[0] in self.whole


def binary_id(url: str | None) -> str:
    """`Binary/{id}` (relative or absolute) -> id."""
    return (url or "").rstrip("/").rpartition("Binary/")[2].split("/")[0]


async def stored(url: str) -> Stored:
    conn = await asyncpg.connect(url)
    try:
        docs = await conn.fetch(DOCS)
        binaries = await conn.fetch(BINARIES)
        unreferenced = await conn.fetchval(UNREFERENCED)
    finally:
        await conn.close()
    by_master: dict[str, list[str]] = defaultdict(list)
    for row in docs:
        by_master[row["master"]].append(binary_id(row["url"]))
    whole = {b["id"] for b in binaries if b["size"] is not None and b["stored"] == _stored(b)}
    return Stored(dict(by_master), whole, {b["id"] for b in binaries}, unreferenced)


def _stored(blob: Any) -> int:
    """The bytes a whole blob holds: its size, or its encrypted form's (blobs/encryption.py)."""
    size = int(blob["size"])
    return size if blob["key_generation"] is None else encryption.stored_size(size)


async def fetched_intact(base: str, deposits: list["Deposit"], readers: dict[str, str]) -> int:
    """How many accepted deposits read back over HTTP with the deposited bytes (each is
    fetched once: `verified` marks those read back intact)."""
    sem = asyncio.Semaphore(8)

    async def one(client: httpx.AsyncClient, d: "Deposit") -> bool:
        d.verified = d.verified or await fetch(client, d)
        return d.verified

    async def fetch(client: httpx.AsyncClient, d: "Deposit") -> bool:
        headers = {"Authorization": f"Bearer {readers[d.pid]}"}
        async with sem:
            doc = await client.get(f"/DocumentReference/{d.doc_id}", headers=headers)
            if doc.status_code != 200 or doc.json()["masterIdentifier"]["value"] != d.master:
                return False
            url = doc.json()["content"][0]["attachment"]["url"]
            content = await client.get(f"/Binary/{binary_id(url)}", headers=headers)
        return content.status_code == 200 and hashlib.sha1(content.content).hexdigest() == d.sha1

    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        return sum(await asyncio.gather(*(one(client, d) for d in deposits)))


async def check(
    url: str,
    base: str,
    deposits: list["Deposit"],
    readers: dict[str, str],
    *,
    final: bool = False,
) -> Check:
    """The checks of the module docstring; `final`: every deposit must now be accepted."""
    db, out = await stored(url), Check()
    accepted = [d for d in deposits if d.accepted]
    refused = [d for d in deposits if not d.accepted]
    broken = [d.master for d in accepted if not db.complete(d.master)]
    absent = [d for d in refused if not db.by_master.get(d.master)]
    whole = [d for d in refused if db.complete(d.master)]
    half = len(refused) - len(absent) - len(whole)
    referenced = {b for ids in db.by_master.values() for b in ids}
    lonely = db.binaries - referenced
    replayed = {d.extra_binary for d in deposits if d.extra_binary} & lonely
    lonely -= replayed
    missing = referenced - db.whole
    duplicated = [m for m, ids in db.by_master.items() if len(ids) > 1]
    intact = await fetched_intact(base, accepted, readers)
    out.lines = [
        f"    accepted (201/200)   {len(accepted)}: {intact} read back intact over HTTP "
        f"(SHA-1 of the Binary's bytes), {len(broken)} missing or incomplete in SQL",
        f"    refused / no answer  {len(refused)}: {len(absent)} absent, {len(whole)} stored "
        f"whole (committed, answer lost), {half} half-present",
        f"    in SQL               {sum(map(len, db.by_master.values()))} DocumentReferences "
        f"for {len(db.by_master)} masterIdentifiers ({len(duplicated)} duplicated), "
        f"{len(db.binaries)} Binaries ({len(missing)} referenced but incomplete, "
        f"{len(lonely)} without a DocumentReference), {db.unreferenced_blobs} unreferenced "
        "blobs (swept after the grace period)",
    ]
    if replayed:
        out.lines.append(
            f"    replayed retries     {len(replayed)} wrote a Binary beside the existing "
            "document (the transaction creates the Binary entry although its "
            "DocumentReference replays): no DocumentReference points at it"
        )
        out.failures.append(f"{len(replayed)} Binary resources duplicated by replayed retries")
    if intact != len(accepted) or broken:
        out.failures.append(f"{len(accepted) - intact} accepted deposits not intact")
    if half or missing or lonely:
        out.failures.append(f"half-present: {half} deposits, {len(missing) + len(lonely)} rows")
    if duplicated:
        out.failures.append(f"{len(duplicated)} masterIdentifiers stored more than once")
    if final and (refused or len(db.by_master) != len(deposits)):
        out.failures.append(
            f"after the retries {len(refused)} deposits still refused; "
            f"{len(db.by_master)} masterIdentifiers stored for {len(deposits)} sent"
        )
    return out
