"""Bulk ingest: a batch Bundle of Observations from a connected service, set-based.

A service pushes up to 1,000 readings per batch Bundle. One by one, each entry costs a
savepoint and about a dozen statements (duplicate lookup, the Patient, the connection rule,
resource, version, index tables, audit, values). Here every entry is checked in Python with
the same rules and in the same order as a create (`Measurements`, `ProfileWriters`, the
resource service), against facts read once per Bundle, then the new ones are written with
one statement per table:

1. replay: the entry's measurement (patient, device, code, time) read from the body as
   sent; a stored Observation the caller sees holding it answers 200 (one join on the
   unique index for the Bundle's patient);
2. an earlier entry of the same Bundle that will store it: 200 with that one;
3. otherwise the create's checks, in order: FHIR validation (400), conditional references,
   the patient's existence and open space (422 `REFERENCE_NOT_FOUND`), the writer and
   label rules (403), an opposed or closed space (422), `MISSING_METADATA`, the LOINC/UCUM
   table (422), the patient's connected-service Consent (403 `SERVICE_NOT_CONNECTED`);
4. the values of the accepted entries: one `INSERT ... ON CONFLICT DO NOTHING` per patient;
   an entry a concurrent Bundle stored first (its values not all inserted) is answered as
   a replay when the caller sees that Observation, else 409 `DUPLICATE_MEASUREMENT`, and
   writes nothing;
5. the rest by COPY: current rows, first versions, search index rows, one audit event per
   Observation (`create`), as the service writes them.

Everything runs in the request's transaction: a failure leaves nothing of the Bundle. Only
machine clients (`system` tokens with `Observation.c`) take this path; other callers'
batches run entry by entry.
"""

import copy
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Table

from espace_api.access import actors, policy
from espace_api.access import vocabulary as v
from espace_api.audit import recorder
from espace_api.db.schema import NO_PATIENT, resources
from espace_api.fhir import indexing
from espace_api.fhir.errors import FhirError
from espace_api.fhir.registry import ResourceType
from espace_api.lifecycle.state import check_accepts_deposits
from espace_api.profile import measurements, writers
from espace_api.profile.readings import validate_reading
from espace_api.resources.behaviour import HookContext
from espace_api.resources.results import Result, meta_for, replayed, version_headers
from espace_api.storage import access_repository
from espace_api.storage import observation_repository as repo
from espace_api.storage.repository import index_batches

#: (patient, device, code, effective): one measured value.
Key = tuple[str, str, str, datetime]
Answer = Result | FhirError


@dataclass
class _Entry:
    """One entry of the Bundle on its way through the checks."""

    index: int
    body: Any
    keys: tuple[Key, ...] = ()  # what a replay looks for (the body as sent)
    answer: Answer | None = None
    same_as: "_Entry | None" = None  # an earlier entry of the Bundle storing the same
    id: str = ""
    patient_id: str = ""
    content: dict[str, Any] = field(default_factory=dict)
    values: tuple[repo.ValueRow, ...] = ()


def _replay_keys(rtype: ResourceType, body: Any, actor: str) -> tuple[Key, ...]:
    """The values a replay looks for, as `Measurements.replay` reads them from the body."""
    if not isinstance(body, dict):
        return ()
    patient_id = indexing.compartment_patient(rtype, body)
    try:
        found = measurements.measurement(body)
    except (FhirError, ValueError, AttributeError, TypeError):
        return ()  # the checks refuse it with the right error
    if patient_id is None or not found.values:
        return ()
    device = found.device or actor
    return tuple((patient_id, device, value.code, found.effective) for value in found.values)


async def _held(
    ctx: HookContext, rtype: ResourceType, keys: list[Key]
) -> tuple[dict[Key, str], dict[str, repo.Held]]:
    """(key -> Observation holding it, id -> that Observation if the caller sees it)."""
    by_patient: dict[str, list[repo.Key]] = defaultdict(list)
    for patient_id, device, code, effective in dict.fromkeys(keys):
        by_patient[patient_id].append((device, code, effective))
    holder: dict[Key, str] = {}
    seen: dict[str, repo.Held] = {}
    for patient_id, wanted in by_patient.items():
        found = await repo.holders(ctx.conn, patient_id, wanted)
        holder |= {(patient_id, *k): id_ for k, id_ in found.items()}
        seen |= await repo.visible_observations(
            ctx.conn, patient_id, list(found.values()), ctx.policy(rtype)
        )
    return holder, seen


def _first_held(
    keys: tuple[Key, ...], holder: dict[Key, str], seen: dict[str, repo.Held]
) -> repo.Held | None:
    """The stored Observation answering a replay (the first value held decides, as
    `holder_of` finds one), None when none or the caller does not see it."""
    for key in keys:
        if key in holder:
            return seen.get(holder[key])
    return None


def _replayed(held: repo.Held, ctx: HookContext) -> Result:
    return replayed("Observation", held.id, held.json, held.version_id, held.last_updated, ctx.base)


class _Facts:
    """What the checks need from the database, read once per Bundle."""

    def __init__(self) -> None:
        self.patients: dict[str, str | None] = {}  # open, undeleted Patients: id -> JSON
        self.connected: set[str] = set()  # patients who connected this service
        self.asked: set[str] = set()

    async def load(self, ctx: HookContext, patient_ids: set[str]) -> None:
        wanted = sorted(patient_ids - self.asked)
        if not wanted:
            return
        self.asked |= set(wanted)
        open_to = policy.space_open_to(ctx.identity, resources, ctx.now)
        self.patients |= await repo.patients(ctx.conn, wanted, open_to)
        key = actors.client_key(ctx.identity.client_id or ctx.identity.subject)
        self.connected |= await access_repository.patients_with_rule(
            ctx.conn, wanted, v.CONNECTED_SERVICE, key, ctx.now
        )


async def _check(
    ctx: HookContext, rtype: ResourceType, entry: _Entry, facts: _Facts, now: datetime
) -> None:
    """The create's checks, in its order (raises the entry's FhirError); on success the
    entry holds its id, content and value rows."""
    identity = ctx.identity
    content = validate_reading(rtype, entry.body)
    await ctx.resolve_references(content)
    entry.id = ctx.clock.ids()
    content["id"] = entry.id
    content["meta"] = {**content.get("meta", {}), **meta_for(1, now)}
    patient_id = indexing.compartment_patient(rtype, content)
    policy.check_write(identity, rtype, patient_id, content)  # (patients only)
    patient_json = None
    if patient_id is not None:  # service.existing_patient
        await facts.load(ctx, {patient_id})
        if patient_id not in facts.patients:
            raise FhirError.unprocessable(
                f"Patient/{patient_id} does not exist", "REFERENCE_NOT_FOUND"
            )
        patient_json = facts.patients[patient_id]
    # ProfileWriters.before_write
    writers.check_writer(identity, rtype.name, None, True)
    writers.check_label(identity, content, None)
    if patient_json is not None:
        check_accepts_deposits(identity, orjson.loads(patient_json), now)
    if patient_id is None:
        where = f"{rtype.name}.{rtype.compartment[0]}"
        raise FhirError.unprocessable(
            f"{where} must reference the patient whose space this is", "MISSING_METADATA", [where]
        )
    # Measurements.before_write
    found = measurements.measurement(content)
    if patient_id not in facts.connected:  # connections.check_connected
        raise FhirError.forbidden(
            "The patient has not connected this service (a connected-service Consent naming "
            "its client id)",
            "SERVICE_NOT_CONNECTED",
        )
    device = found.device or identity.actor
    entry.patient_id, entry.content = patient_id, content
    entry.values = tuple(
        repo.ValueRow(x.code, found.effective, x.value, x.unit, device) for x in found.values
    )


async def create_many(ctx: HookContext, rtype: ResourceType, bodies: list[Any]) -> list[Answer]:
    """The answers to a batch of Observation creates (see the module's docstring)."""
    identity, now = ctx.identity, ctx.clock.now()
    entries = [
        _Entry(i, body, _replay_keys(rtype, body, identity.actor)) for i, body in enumerate(bodies)
    ]
    holder, seen = await _held(ctx, rtype, [k for e in entries for k in e.keys])
    facts = _Facts()
    await facts.load(ctx, {k[0] for e in entries for k in e.keys})
    storing: dict[Key, _Entry] = {}  # values that accepted entries of this Bundle store
    accepted: list[_Entry] = []
    for entry in entries:
        held = _first_held(entry.keys, holder, seen)
        if held is not None:
            entry.answer = _replayed(held, ctx)
            continue
        if any(key in holder for key in entry.keys):
            pass  # held by an Observation the caller does not see: the insert answers 409
        else:
            earlier = next((storing[k] for k in entry.keys if k in storing), None)
            if earlier is not None:
                entry.same_as = earlier
                continue
        try:
            await _check(ctx, rtype, entry, facts, now)
        except FhirError as exc:
            entry.answer = exc
            continue
        accepted.append(entry)
        for value in entry.values:
            storing.setdefault((entry.patient_id, value.device, value.code, value.effective), entry)
    written = await _store_values(ctx, rtype, accepted)
    await _write(ctx, rtype, written, now)
    answers: list[Answer] = []
    for entry in entries:
        if entry.same_as is not None:
            first = entry.same_as
            answer = first.answer
            if isinstance(answer, Result) and answer.json is not None and answer.id:
                assert answer.version_id is not None and answer.last_updated is not None
                answer = replayed(
                    "Observation",
                    answer.id,
                    answer.json if isinstance(answer.json, str) else answer.json.decode(),
                    answer.version_id,
                    answer.last_updated,
                    ctx.base,
                )
            entry.answer = copy.copy(answer)  # each entry's error gets its own position
        assert entry.answer is not None
        answers.append(entry.answer)
    return answers


async def _store_values(
    ctx: HookContext, rtype: ResourceType, accepted: list[_Entry]
) -> list[_Entry]:
    """Insert the accepted entries' values (the unique key keeps out what another Bundle
    stored meanwhile); the entries to write, the others answered (replay or 409)."""
    by_patient: dict[str, list[_Entry]] = defaultdict(list)
    for entry in accepted:
        by_patient[entry.patient_id].append(entry)
    written: list[_Entry] = []
    for patient_id, group in by_patient.items():
        rows = [(e.id, value) for e in group for value in e.values]
        inserted = await repo.insert_once(ctx.conn, patient_id, rows)
        lost = [e for e in group if any((e.id, x.code) not in inserted for x in e.values)]
        written += [e for e in group if e not in lost]
        if not lost:
            continue
        await repo.remove_values(ctx.conn, patient_id, [e.id for e in lost])
        keys = [(patient_id, x.device, x.code, x.effective) for e in lost for x in e.values]
        holder, seen = await _held(ctx, rtype, keys)
        for entry in lost:
            mine = tuple((patient_id, x.device, x.code, x.effective) for x in entry.values)
            held = _first_held(mine, holder, seen)
            entry.answer = (
                _replayed(held, ctx)
                if held is not None
                else FhirError(
                    409,
                    "DUPLICATE_MEASUREMENT",
                    "Another Observation already holds this measurement (same patient, "
                    "device, code and effective time)",
                    issue_type="duplicate",
                )
            )
    return written


async def _write(
    ctx: HookContext, rtype: ResourceType, written: list[_Entry], now: datetime
) -> None:
    """The new Observations, their first versions, index rows and audit events (COPY)."""
    if not written:
        return
    current: list[dict[str, Any]] = []
    index: dict[Table, list[dict[str, Any]]] = defaultdict(list)
    audits: list[dict[str, Any]] = []
    actor = ctx.identity.actor
    for entry in sorted(written, key=lambda e: e.index):
        json = orjson.dumps(entry.content)  # once: current row, version and answer
        current.append(
            {
                "resource_type": rtype.name,
                "id": entry.id,
                "version_id": 1,
                "patient_id": entry.patient_id or NO_PATIENT,
                "last_updated": now,
                "deleted": False,
                "created_by": actor,
                "content": orjson.Fragment(json),
            }
        )
        rows = indexing.extract(rtype, entry.content)
        for table, found in index_batches(rtype.name, entry.id, entry.patient_id, rows):
            index[table] += found
        audits += recorder.events(
            ctx.clock,
            ctx.identity,
            "create",
            resource_type=rtype.name,
            resource_id=entry.id,
            patient_ids=[entry.patient_id],
            now=now,
        )
        result = Result(
            201,
            json.decode(),
            resource_type=rtype.name,
            id=entry.id,
            version_id=1,
            last_updated=now,
        )
        entry.answer = version_headers(result, ctx.base, location=True)
    await repo.write_observations(ctx.conn, current, index, audits)
