"""A deposit whose process dies between storing the content and committing the metadata
leaves no visible document and only an unreferenced blob, which the sweeper removes after
the grace period (ARCHITECTURE.md principle 4)."""

import asyncio
import hashlib
import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from espace_api.blobs.base import BlobKey
from espace_api.blobs.sweeper import BlobSweeper
from espace_api.clock import Clock
from espace_api.db.schema import resources
from espace_api.storage import blob_repository as blob_repo
from tests.support.die_mid_deposit import EXIT_CODE
from tests.support.documents import pdf
from tests.test_documents_deposit import iti65, new_patient

ROOT = Path(__file__).resolve().parents[1]


async def test_process_dies_between_blob_and_metadata(client, auth, app, database_url, tmp_path):
    pid = await new_patient(client, auth)
    data = pdf(40 * 1024)
    bundle, _ = iti65(pid, data)
    bundle_file = tmp_path / "bundle.json"
    bundle_file.write_text(json.dumps(bundle))

    proc = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "tests.support.die_mid_deposit", database_url, str(bundle_file)],
        cwd=ROOT,
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == EXIT_CODE, proc.stderr.decode()[-2000:]

    # Nothing of the deposit is visible: no DocumentReference, no Binary, no reference.
    async with app.state.engine.connect() as conn:
        rows = await conn.execute(
            select(resources.c.resource_type).where(resources.c.patient_id == pid)
        )
        assert [r[0] for r in rows] == ["Patient"]
        key = BlobKey(pid, hashlib.sha256(data).hexdigest())
        assert await blob_repo.get_blob(conn, key) is not None  # the orphan is there
        assert not await blob_repo.is_referenced(conn, key)
    found = await client.get(
        "/DocumentReference", params={"patient": pid}, headers=await auth.patient(pid)
    )
    assert found.json()["total"] == 0

    # The sweeper keeps it during the grace period, then removes it.
    grace = timedelta(hours=1)
    store, now = app.state.blobs, app.state.clock.now()
    early = await BlobSweeper(app.state.engine, store, Clock(now=lambda: now), grace).sweep()
    later = now + grace + timedelta(seconds=1)
    late = await BlobSweeper(app.state.engine, store, Clock(now=lambda: later), grace).sweep()
    async with app.state.engine.connect() as conn:
        assert await blob_repo.get_blob(conn, key) is None
    assert early.deleted == 0 and late.deleted >= 1
