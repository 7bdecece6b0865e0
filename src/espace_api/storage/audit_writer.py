"""Group commit of audit rows written outside a transaction (the reads' audit, issue 14).

Every read of health data leaves an audit row that must be durable before the response
leaves. Written one by one, each costs an INSERT and a COMMIT (a WAL flush). Here the rows
of concurrent requests share one: a request that finds no batch being written leads, and
writes everything queued (its own rows included) on a pooled connection in one statement
batch, one implicit transaction; requests that arrive meanwhile queue their rows and wait.
When the leader is done it releases those it wrote (or hands them the error) and, if rows
queued up in the meantime, makes the first of their requests the next leader. No timer: a
batch is whatever arrived while the previous one was being written. Waiting requests hold
no connection (a read gives its own back before its audit row is written, api/http.py):
only the leader of the batch being written holds one.
"""

import asyncio
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql import Executable

from espace_api.db.engine import autocommit_connection
from espace_api.storage import raw

DONE, LEAD = "done", "lead"
_Item = tuple[list[dict[str, Any]], asyncio.Future[str]]


class GroupCommit:
    """Batches the rows of one INSERT statement (see the module docstring)."""

    def __init__(self, stmt: Executable) -> None:
        self.stmt = stmt
        self.queue: list[_Item] = []
        self.writing = False

    async def write(self, engine: AsyncEngine, rows: list[dict[str, Any]]) -> None:
        """Return once `rows` are committed (raise what their batch raised); when this
        request leads, it writes the batch on a connection of `engine`'s pool."""
        mine: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.queue.append((rows, mine))
        if self.writing:
            try:
                role = await mine
            except asyncio.CancelledError:
                if mine.done() and not mine.cancelled() and mine.exception() is None:
                    if mine.result() == LEAD:
                        self._hand_over()  # told to lead, then cancelled: no stuck batch
                raise
            if role == DONE:
                return
        self.writing = True
        await self._lead(engine, mine)

    def _hand_over(self) -> None:
        """The next waiting request leads; with none, the next writer will (rows of
        requests that went away stay queued and go with its batch)."""
        waiting = next((done for _, done in self.queue if not done.done()), None)
        if waiting is not None:
            waiting.set_result(LEAD)
        else:
            self.writing = False

    async def _lead(self, engine: AsyncEngine, mine: asyncio.Future[str]) -> None:
        error: BaseException | None = None
        while True:
            batch, self.queue = self.queue, []
            failed: BaseException | None = None
            try:
                async with autocommit_connection(engine) as conn:
                    flat = [r for rows, _ in batch for r in rows]
                    await raw.execute_rows(conn, self.stmt, flat)
            except BaseException as exc:  # no waiter of this batch may be told "durable"
                failed = exc
            for _, done in batch:
                if done is mine or done.done():
                    continue
                if failed is None:
                    done.set_result(DONE)
                elif isinstance(failed, Exception):
                    done.set_exception(failed)
                else:
                    done.set_exception(RuntimeError("the audit batch was interrupted"))
            if any(done is mine for _, done in batch):
                error = failed
            waiting = next((done for _, done in self.queue if not done.done()), None)
            if waiting is not None:
                waiting.set_result(LEAD)  # its request writes the next batch
                break
            if not self.queue or failed is not None:
                self.queue, self.writing = [], False  # nobody left waiting for these
                break
            # only rows of requests that went away remain: write them too
        if error is not None:
            raise error


_WRITERS: dict[tuple[int, int], GroupCommit] = {}


def writer_for(engine: AsyncEngine, stmt: Executable) -> GroupCommit:
    """The group commit of `stmt` on `engine` in the running event loop."""
    key = (id(engine.sync_engine), id(asyncio.get_running_loop()))
    found = _WRITERS.get(key)
    if found is None or found.stmt is not stmt:
        found = _WRITERS[key] = GroupCommit(stmt)
    return found
