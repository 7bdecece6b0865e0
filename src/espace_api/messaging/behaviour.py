"""The messaging package's type behaviours (registered in `messaging.setup.register`).

- `MessageRules` (Communication): a message is created, never changed (403
  `MESSAGE_IMMUTABLE`); before it is written: its subject, sender (the caller) and recipients
  (`participants`), the space open to the sender (not blocked, not closed), the thread it
  answers (`partOf` / `inResponseTo`, a message the caller sees), its attachments (a Binary of
  the same space, checked as documents' are), `sent` set by the server; after: the message,
  its participants and a notification for the patient when they are a recipient, in the same
  transaction. On reads: the caller's read receipt, and every receipt shown.
- `SubscriptionRules` (Subscription): the patient's own (`subscriptions.check`), mirrored in
  the notifier's table.
- `NewDocumentNotice` (DocumentReference): a document deposited for the patient queues a
  notification (not one the patient added, nor one not yet shown to them).
"""

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson

from espace_api.access import actors, policy
from espace_api.access import vocabulary as v
from espace_api.db.schema import resources
from espace_api.documents import binary
from espace_api.documents.rules import complete_attachment
from espace_api.fhir.errors import FhirError
from espace_api.fhir.registry import REGISTRY, SUBSCRIPTION_PATIENT_URL, ResourceType
from espace_api.fhir.values import date_range, format_instant, split_reference
from espace_api.lifecycle.state import check_accepts_deposits
from espace_api.messaging import participants, receipts, subscriptions
from espace_api.resources.behaviour import HookContext, Seen, TypeBehaviour, WriteEvent
from espace_api.storage import message_repository as repo
from espace_api.storage import repository
from espace_api.storage.message_repository import Participant

COMMUNICATION = "Communication"
PARTICIPANTS, THREAD, SENT = "participants", "thread", "sent"


def _missing(where: str) -> FhirError:
    return FhirError.unprocessable(f"{where} is required", "MISSING_METADATA", [where])


class MessageRules(TypeBehaviour):
    """Communication: participants, threads, attachments, receipts, notifications."""

    reads = True

    async def before_write(self, ctx: HookContext, event: WriteEvent) -> dict[str, Any] | None:
        content = event.content
        if content is None or event.system_write:
            return content
        if not event.is_create:
            raise FhirError.forbidden(
                "A message is not changed once sent: send a new one in the same thread (partOf)",
                "MESSAGE_IMMUTABLE",
            )
        patient_id = event.patient_id
        if patient_id is None:
            raise _missing("Communication.subject")
        receipts.strip(content)
        found = await participants.participants_of(ctx, content, patient_id)
        participants.check_sender(ctx.identity, found, patient_id)
        await _check_open(ctx, event, found)
        event.carry[THREAD] = await _thread(ctx, content, patient_id, event.id)
        await _check_attachments(ctx, content, patient_id)
        if ctx.identity.kind != "operator" or "sent" not in content:
            content["sent"] = format_instant(event.now)
        event.carry[PARTICIPANTS] = found
        event.carry[SENT] = date_range(content["sent"])[0]
        return content

    async def after_write(self, ctx: HookContext, event: WriteEvent) -> None:
        found: list[Participant] | None = event.carry.get(PARTICIPANTS)
        if found is None or event.patient_id is None:
            return
        pid = event.patient_id
        sent: datetime = event.carry[SENT]
        await repo.record_message(ctx.conn, pid, event.id, event.carry[THREAD], sent, found)
        me = f"patient:{pid}"
        if any(p.actor == me and p.role == "recipient" for p in found) and not any(
            p.actor == me and p.role == "sender" for p in found
        ):
            await repo.enqueue(ctx.conn, pid, COMMUNICATION, event.now)

    async def after_read(
        self, ctx: HookContext, rtype: ResourceType, seen: Sequence[Seen]
    ) -> dict[str, str]:
        """Mark what the caller received, then show every receipt of these messages."""
        items = [(p, i) for i, p, _ in seen if p is not None]
        found = await repo.read_receipts(
            ctx.conn, items, participants.viewer(ctx.identity), ctx.now
        )
        by_message: dict[str, list[tuple[str, datetime]]] = defaultdict(list)
        for message_id, ref, at in found:
            by_message[message_id].append((ref, at))
        return {
            i: receipts.with_receipts(json, by_message[i]) for i, _, json in seen if i in by_message
        }


async def _check_open(ctx: HookContext, event: WriteEvent, found: list[Participant]) -> None:
    """The space accepts messages (not closed or opposed) and blocks neither the sender nor
    the caller (a machine posting for a blocked organisation is refused as its
    professionals are: 422, as if the space did not exist)."""
    pid = event.patient_id
    assert pid is not None
    patient = orjson.loads(event.patient.json) if event.patient and event.patient.json else None
    check_accepts_deposits(ctx.identity, patient, event.now)
    if ctx.identity.kind in ("operator", "patient"):
        return
    keys = tuple(
        {p.actor for p in found if p.role == "sender"} | set(actors.identity_keys(ctx.identity))
    )
    open_ = policy.blocking_none_of(keys, resources, ctx.now)
    if not await repository.visible_ids(ctx.conn, "Patient", [pid], open_):
        raise FhirError.unprocessable(f"Patient/{pid} does not exist", "REFERENCE_NOT_FOUND")


async def _thread(ctx: HookContext, content: dict[str, Any], patient_id: str, id_: str) -> str:
    """The thread a message joins: that of the message it is `partOf` or answers
    (`inResponseTo`), which the caller must see in the same space; else its own."""
    rtype = REGISTRY[COMMUNICATION]
    named = [("partOf", r) for r in content.get("partOf") or []]
    named += [("inResponseTo", r) for r in content.get("inResponseTo") or []]
    for element, ref in named:
        split = split_reference(ref.get("reference", "")) if isinstance(ref, dict) else None
        if not split or split[0] != COMMUNICATION:
            continue
        where = f"Communication.{element}"
        row = await repository.get_current(ctx.conn, COMMUNICATION, split[1], ctx.policy(rtype))
        if row is None or row.deleted or row.patient_id != patient_id:
            raise FhirError.unprocessable(
                f"{where}: Communication/{split[1]} not found in this space",
                "REFERENCE_NOT_FOUND",
                [where],
            )
        return await repo.thread_of(ctx.conn, patient_id, split[1]) or split[1]
    return id_


async def _check_attachments(ctx: HookContext, content: dict[str, Any], patient_id: str) -> None:
    """Each attachment names a Binary of the space (POST /Binary first) and is checked as a
    document's content is: allow-list, magic numbers, size and hash filled in or verified."""
    store = await binary.store_for(ctx.conn.engine, ctx.settings, ctx.clock)
    for i, item in enumerate(content.get("payload") or []):
        att = item.get("contentAttachment")
        if not isinstance(att, dict):
            continue
        where = f"Communication.payload[{i}].contentAttachment"
        if "data" in att:
            raise FhirError.unprocessable(
                f"{where}.data: post the content to /Binary (X-Security-Context: "
                "Patient/{id}) and reference it in contentAttachment.url",
                "ATTACHMENT_DATA_NOT_SUPPORTED",
                [f"{where}.data"],
            )
        await complete_attachment(ctx, store, att, patient_id, where)


class SubscriptionRules(TypeBehaviour):
    """Subscription: the patient's own rest-hook notification settings."""

    async def before_write(self, ctx: HookContext, event: WriteEvent) -> dict[str, Any] | None:
        content = event.content
        if content is None or event.system_write:
            return content
        if ctx.identity.kind not in ("patient", "operator"):
            raise FhirError.forbidden(
                "Subscriptions are the patient's own settings", "SUBSCRIPTION_PATIENT_ONLY"
            )
        if event.patient_id is None:
            raise _missing(f"Subscription.extension('{SUBSCRIPTION_PATIENT_URL}')")
        channel = subscriptions.check(content, event.patient_id, ctx.settings)
        event.carry["channel"] = channel
        return content

    async def after_write(self, ctx: HookContext, event: WriteEvent) -> None:
        pid = event.patient_id or (event.previous.patient_id if event.previous else None)
        if pid is None:
            return
        channel: subscriptions.Channel | None = event.carry.get("channel")
        if event.content is None:
            await repo.replace_subscription(ctx.conn, pid, event.id, None)
        elif channel is not None:
            await repo.replace_subscription(
                ctx.conn,
                pid,
                event.id,
                channel.topic,
                channel.endpoint,
                channel.headers,
                channel.active,
            )
        elif event.content.get("status") != "active":  # a system write: the worker's error
            await repo.deactivate_subscription(ctx.conn, pid, event.id)


class NewDocumentNotice(TypeBehaviour):
    """DocumentReference: "something new" for the patient's Subscriptions on documents."""

    async def after_write(self, ctx: HookContext, event: WriteEvent) -> None:
        content = event.content
        if (
            content is None
            or not event.is_create
            or event.system_write
            or event.patient_id is None
            or ctx.identity.kind == "patient"
            or _labelled(content, v.INVISIBLE_PATIENT)
        ):
            return
        await repo.enqueue(ctx.conn, event.patient_id, "DocumentReference", event.now)


def _labelled(content: dict[str, Any], code: str) -> bool:
    return any(
        c.get("system") == v.VISIBILITY_SYSTEM and c.get("code") == code
        for label in content.get("securityLabel") or []
        for c in label.get("coding") or []
    )
