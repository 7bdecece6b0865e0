"""Group commit of reads' audit rows (storage/audit_writer.py) against the real database."""

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from espace_api.db.schema import audit_events
from espace_api.storage.audit_repository import _INSERT_ALL
from espace_api.storage.audit_writer import GroupCommit


def row(marker: str, **extra) -> dict:
    return {
        "id": str(uuid.uuid4()),
        "recorded": datetime.now(UTC),
        "action": "R",
        "subtype": "read",
        "outcome": "0",
        "detail": marker,
        **extra,
    }


async def count(app, marker: str) -> int:
    async with app.state.engine.connect() as conn:
        stmt = select(func.count()).select_from(audit_events).where(audit_events.c.detail == marker)
        return (await conn.execute(stmt)).scalar_one()


async def writer_call(app, group: GroupCommit, rows: list[dict]) -> None:
    await group.write(app.state.engine, rows)


async def test_concurrent_writers_share_batches_and_all_rows_land(app):
    group = GroupCommit(_INSERT_ALL)
    marker = f"gc-{uuid.uuid4()}"
    await asyncio.gather(*(writer_call(app, group, [row(marker)]) for _ in range(12)))
    assert await count(app, marker) == 12
    assert group.writing is False and group.queue == []


async def test_a_failed_batch_fails_every_waiter_and_the_next_one_writes(app):
    group = GroupCommit(_INSERT_ALL)
    marker = f"gc-{uuid.uuid4()}"
    bad = row(marker, action=None)  # NOT NULL: the whole batch fails
    results = await asyncio.gather(
        writer_call(app, group, [bad]),
        *(writer_call(app, group, [row(marker)]) for _ in range(5)),
        return_exceptions=True,
    )
    failed = [r for r in results if isinstance(r, BaseException)]
    written = await count(app, marker)
    # The bad row's batch wrote nothing; whoever shared it was told so; nobody was told
    # "durable" for a row that is not there.
    assert written == len(results) - len(failed)
    assert failed and group.writing is False
    await writer_call(app, group, [row(marker)])
    assert await count(app, marker) == written + 1


def test_a_leader_whose_write_raises_leaves_the_writer_free():
    group = GroupCommit(_INSERT_ALL)
    with pytest.raises(AttributeError):  # no connection at all
        asyncio.run(group.write(None, [row("x")]))  # type: ignore[arg-type]
    assert group.writing is False and group.queue == []


async def test_a_request_cancelled_when_told_to_lead_does_not_stall_the_writer(app):
    """Told to lead the next batch, then cancelled (deadline, client gone) before it ran:
    the writer must not stay 'writing' with nobody writing (every later read would wait)."""
    group = GroupCommit(_INSERT_ALL)
    marker = f"gc-{uuid.uuid4()}"
    group.writing = True  # a batch is being written by someone else
    waiter = asyncio.create_task(writer_call(app, group, [row(marker)]))
    for _ in range(500):  # until the request has queued its row
        if group.queue:
            break
        await asyncio.sleep(0.01)
    group.queue[0][1].set_result("lead")  # the leader hands over...
    waiter.cancel()  # ...and the request is cancelled before it resumes
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert group.writing is False
    await asyncio.wait_for(writer_call(app, group, [row(marker)]), timeout=5)
    assert await count(app, marker) == 2  # the cancelled request's row went with the batch
