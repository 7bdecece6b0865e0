"""SQL of messaging: messages, participants and read receipts, conversations (threads),
subscriptions and the notification outbox (see messaging/ and docs/messaging.md)."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    DateTime,
    and_,
    bindparam,
    cast,
    delete,
    exists,
    false,
    func,
    insert,
    literal,
    literal_column,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import Insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.types import Text

from espace_api.db.schema import (
    message_participants,
    messages,
    notification_outbox,
    resources,
    subscriptions,
)
from espace_api.storage import raw, routing

COMMUNICATION = "Communication"


@dataclass(frozen=True)
class Participant:
    """A sender or recipient of a message as an actor key, with its Reference as written."""

    role: str  # sender | recipient
    actor: str  # patient:<id>, practitioner:<rpps>, organization:<finess>
    reference: str


@dataclass(frozen=True)
class Viewer:
    """Whose receipts and unread counts a caller's reads touch: its actor keys, and for a
    patient (or a legal representative) the space's own Patient (`patient:<patient_id>`)."""

    keys: tuple[str, ...] = ()
    space_patient: bool = False

    def actor_is(self, p: Any, patient_id: Any) -> ColumnElement[bool]:
        """SQL: participant row `p` is this viewer."""
        clauses: list[ColumnElement[bool]] = []
        if self.keys:
            clauses.append(p.c.actor.in_(self.keys))
        if self.space_patient:
            clauses.append(p.c.actor == literal("patient:") + patient_id)
        return or_(*clauses) if clauses else false()


async def record_message(
    conn: AsyncConnection,
    patient_id: str,
    id_: str,
    thread_id: str,
    sent: datetime,
    participants: Sequence[Participant],
) -> None:
    """A new message, its thread and its participants (same transaction as its version)."""
    await conn.execute(
        insert(messages).values(patient_id=patient_id, id=id_, thread_id=thread_id, sent=sent)
    )
    rows = [
        {
            "patient_id": patient_id,
            "message_id": id_,
            "role": p.role,
            "actor": p.actor,
            "reference": p.reference,
        }
        for p in {(p.role, p.actor): p for p in participants}.values()
    ]
    if rows:
        await conn.execute(insert(message_participants), rows)


async def thread_of(conn: AsyncConnection, patient_id: str, message_id: str) -> str | None:
    """The thread of a message of this patient (None when it is not a recorded message)."""
    m = messages
    stmt = select(m.c.thread_id).where(m.c.patient_id == patient_id, m.c.id == message_id)
    found: str | None = (await conn.execute(stmt)).scalar()
    return found


async def read_receipts(
    conn: AsyncConnection,
    items: Sequence[tuple[str, str]],
    viewer: Viewer,
    now: datetime,
) -> list[tuple[str, str, datetime]]:
    """Mark the messages `items` (patient id, message id) received by `viewer` where it is
    an unread recipient, then return every receipt of these messages as (message id,
    recipient reference, received), in one statement."""
    if not items:
        return []
    p = message_participants
    these = tuple_(p.c.patient_id, p.c.message_id).in_(list(items))
    marked = (
        update(p)
        .where(
            these,
            p.c.role == "recipient",
            p.c.received.is_(None),
            viewer.actor_is(p, p.c.patient_id),
        )
        .values(received=now)
        .returning(p.c.message_id, p.c.reference, p.c.received)
        .cte("marked")
    )
    before = select(p.c.message_id, p.c.reference, p.c.received).where(
        these, p.c.role == "recipient", p.c.received.is_not(None)
    )
    stmt = before.union_all(select(marked.c.message_id, marked.c.reference, marked.c.received))
    return [(m[0], m[1], m[2]) for m in await conn.execute(stmt)]


@dataclass(frozen=True)
class Thread:
    """One conversation as a viewer sees it: its latest message and counts."""

    thread_id: str
    latest_id: str
    latest_json: str
    messages: int
    unread: int


async def threads(
    conn: AsyncConnection,
    patient_id: str,
    policy: ColumnElement[bool],
    viewer: Viewer,
    count: int,
    offset: int,
) -> tuple[list[Thread], int]:
    """A patient's conversations that the policy lets the caller see, latest first: one row
    per thread with its latest visible message, the number of visible messages and how many
    of them the viewer has not read (a recipient without receipt); and the thread total."""
    r, m, p = resources, messages, message_participants
    # Every table named with the patient's id: one shard on Citus (docs/citus.md).
    unread = exists().where(
        p.c.patient_id == patient_id,
        p.c.message_id == m.c.id,
        p.c.role == "recipient",
        p.c.received.is_(None),
        viewer.actor_is(p, patient_id),
    )
    seen = (
        select(
            m.c.thread_id,
            r.c.id,
            m.c.sent,
            func.count().over(partition_by=m.c.thread_id).label("messages"),
            func.count().filter(unread).over(partition_by=m.c.thread_id).label("unread"),
            func.row_number()
            .over(partition_by=m.c.thread_id, order_by=(m.c.sent.desc(), r.c.id.desc()))
            .label("rank"),
        )
        .select_from(r.join(m, and_(m.c.patient_id == patient_id, m.c.id == r.c.id)))
        .where(
            r.c.resource_type == COMMUNICATION,
            r.c.deleted.is_(False),
            routing.pinned(policy, r.c.patient_id, literal(patient_id, Text)),
        )
        .cte("seen")
    )
    latest = select(seen).where(seen.c.rank == 1).subquery("latest")
    total = (await conn.execute(select(func.count()).select_from(latest))).scalar() or 0
    lr = resources.alias("latest_resource")
    page = (
        select(
            latest.c.thread_id,
            latest.c.id,
            lr.c.content.cast(Text),
            latest.c.messages,
            latest.c.unread,
        )
        .select_from(
            latest.join(
                lr,
                and_(
                    lr.c.patient_id == patient_id,  # one shard on Citus (docs/citus.md)
                    lr.c.resource_type == COMMUNICATION,
                    lr.c.id == latest.c.id,
                ),
            )
        )
        .order_by(latest.c.sent.desc(), latest.c.id.desc())
        .limit(count)
        .offset(offset)
    )
    rows = [Thread(*m) for m in await conn.execute(page)] if count else []
    return rows, total


# ---------------------------------------------------------------- subscriptions, outbox


async def replace_subscription(
    conn: AsyncConnection,
    patient_id: str,
    id_: str,
    topic: str | None,
    endpoint: str = "",
    headers: Sequence[str] = (),
    active: bool = False,
) -> None:
    """Make the notifier's row of one Subscription match it (`topic` None: remove it)."""
    s = subscriptions
    await conn.execute(delete(s).where(s.c.patient_id == patient_id, s.c.id == id_))
    if topic is not None:
        await conn.execute(
            insert(s).values(
                patient_id=patient_id,
                id=id_,
                topic=topic,
                endpoint=endpoint,
                headers=list(headers),
                active=active,
            )
        )


def _enqueue() -> Insert:
    s, o = subscriptions, notification_outbox
    now = bindparam("now", type_=DateTime(timezone=True))
    rows = select(
        s.c.patient_id,
        cast(func.gen_random_uuid(), Text),
        s.c.id,
        now,
        now,
    ).where(
        s.c.patient_id == bindparam("patient_id", type_=Text),
        s.c.topic == bindparam("topic", type_=Text),
        s.c.active.is_(True),
    )
    return (
        pg_insert(o)
        .from_select(["patient_id", "id", "subscription_id", "created", "next_attempt"], rows)
        .on_conflict_do_nothing(
            index_elements=[o.c.patient_id, o.c.subscription_id],
            index_where=text("state = 'pending'"),  # a literal: the partial index's predicate
        )
    )


# Built once, run on the driver connection (storage/raw.py): every deposit queues.
_ENQUEUE = _enqueue()


async def enqueue(conn: AsyncConnection, patient_id: str, topic: str, now: datetime) -> None:
    """Queue "something new" for each active Subscription of the patient on `topic` (one
    pending notification per Subscription: a later event joins the one still pending)."""
    await raw.execute(conn, _ENQUEUE, {"patient_id": patient_id, "topic": topic, "now": now})


@dataclass(frozen=True)
class Due:
    """A notification to deliver now: where, and how many attempts were made before."""

    patient_id: str
    id: str
    subscription_id: str
    attempts: int
    endpoint: str | None  # None when the Subscription is gone or no longer active
    headers: list[str]


# The states a worker takes notifications in: `pending`, and `sending` whose lease ended (a
# worker that stopped while delivering). Literals, so that the partial index applies.
_TO_SEND: tuple[ColumnElement[str], ...] = (
    literal_column("'pending'"),
    literal_column("'sending'"),
)


async def claim_due(
    conn: AsyncConnection, now: datetime, lease_until: datetime, limit: int
) -> list[Due]:
    """Take up to `limit` notifications due at `now`: `sending` until `lease_until`, so that
    an event arriving meanwhile queues a new pending notification instead of joining one
    already on its way. Candidates are listed without locks, then claimed by their full keys
    with the due condition checked again (a notification another worker claimed first is
    skipped): Citus refuses row locks across shards, not an UPDATE on several."""
    o, s = notification_outbox, subscriptions
    is_due = and_(o.c.state.in_(_TO_SEND), o.c.next_attempt <= now)
    candidates = (
        await conn.execute(
            select(o.c.patient_id, o.c.id).where(is_due).order_by(o.c.next_attempt).limit(limit)
        )
    ).all()
    if not candidates:
        return []
    claimed = (
        await conn.execute(
            update(o)
            .where(tuple_(o.c.patient_id, o.c.id).in_([tuple(c) for c in candidates]), is_due)
            .values(state="sending", next_attempt=lease_until)
            .returning(o.c.patient_id, o.c.id, o.c.subscription_id, o.c.attempts)
        )
    ).all()
    if not claimed:
        return []
    targets = {
        (m[0], m[1]): (m[2], list(m[3] or []))
        for m in await conn.execute(
            select(s.c.patient_id, s.c.id, s.c.endpoint, s.c.headers).where(
                tuple_(s.c.patient_id, s.c.id).in_([(c[0], c[2]) for c in claimed]),
                s.c.active.is_(True),
            )
        )
    }
    taken = []
    for patient_id, id_, subscription_id, attempts in claimed:
        endpoint, headers = targets.get((patient_id, subscription_id), (None, []))
        taken.append(Due(patient_id, id_, subscription_id, attempts, endpoint, headers))
    return taken


async def settle(
    conn: AsyncConnection,
    due: Due,
    state: str,
    now: datetime,
    *,
    attempts: int,
    error: str | None = None,
    next_attempt: datetime | None = None,
) -> None:
    """Record a delivery attempt: `delivered`, `failed` or `cancelled` (done at `now`), or
    `pending` again with its next attempt (absorbing a notification queued meanwhile for the
    same Subscription: the retry tells the same "something new")."""
    o = notification_outbox
    values: dict[str, Any] = {"state": state, "attempts": attempts, "last_error": error}
    if state == "pending":
        values["next_attempt"] = next_attempt or now
        await conn.execute(
            delete(o).where(
                o.c.patient_id == due.patient_id,
                o.c.subscription_id == due.subscription_id,
                o.c.state == "pending",
            )
        )
    else:
        values["done_at"] = now
    await conn.execute(
        update(o).where(o.c.patient_id == due.patient_id, o.c.id == due.id).values(**values)
    )


async def deactivate_subscription(conn: AsyncConnection, patient_id: str, id_: str) -> None:
    """Stop notifying a Subscription (it is in error)."""
    s = subscriptions
    await conn.execute(
        update(s).where(s.c.patient_id == patient_id, s.c.id == id_).values(active=False)
    )
