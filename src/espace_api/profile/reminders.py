"""`espace-api reminders run`: the prevention reminders of every active space.

Walks the active spaces in patient-id batches (keyset: constant memory however many there
are), evaluates the rules (profile/prevention.py) for each person from their birth date, sex
and completed Immunizations, and writes each reminder due and not yet issued as a
Communication to the patient (category `reminder`: it shows among their messages), with its
search indexes, its message and recipient rows (messaging: the patient reads it as a
message), an audit event and a `reminders_issued` row, one transaction and one COPY per
table per batch. Running it again (or twice at once: an advisory lock makes the second run
wait for the first) issues nothing twice: a reminder is issued once per rule and due period.

The batches go through a pipeline: while up to `WRITERS` batches are written (each its own
transaction, the database at work), the next is read on another connection and evaluated in
a worker thread (Python at work), so that the database and the evaluation use both cores.
Batches are disjoint ranges of patients: what one reads is not what another writes.
"""

import asyncio
import logging
from collections import defaultdict
from datetime import date, datetime
from typing import Any

import orjson
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncEngine

from espace_api.audit import recorder
from espace_api.auth.identity import Identity
from espace_api.clock import Clock
from espace_api.db.engine import autocommit_connection
from espace_api.db.schema import (
    audit_events,
    message_participants,
    messages,
    reminders_issued,
    resource_versions,
    resources,
)
from espace_api.fhir import indexing
from espace_api.fhir.registry import REGISTRY
from espace_api.fhir.values import date_range, format_instant
from espace_api.profile import prevention
from espace_api.resources.results import meta_for
from espace_api.storage import reminder_repository as repo
from espace_api.storage.repository import index_batches

log = logging.getLogger(__name__)
JOB = Identity(kind="system", subject="reminders", client_id="reminders")
COMMUNICATION = REGISTRY["Communication"]
CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/communication-category"
RULE_SYSTEM = "https://espace-api.org/fhir/CodeSystem/prevention-rule"
REMINDER_ID_SYSTEM = "https://espace-api.org/fhir/NamingSystem/prevention-reminder"


def communication(id_: str, patient_id: str, due: prevention.Due, now: datetime) -> dict[str, Any]:
    """The reminder as a Communication to the patient."""
    rule = due.rule
    return {
        "resourceType": "Communication",
        "id": id_,
        "meta": meta_for(1, now),
        "identifier": [{"system": REMINDER_ID_SYSTEM, "value": f"{rule.id}/{due.period}"}],
        "status": "completed",
        "category": [
            {"coding": [{"system": CATEGORY_SYSTEM, "code": "reminder", "display": "Reminder"}]}
        ],
        "subject": {"reference": f"Patient/{patient_id}"},
        "recipient": [{"reference": f"Patient/{patient_id}"}],
        "sent": format_instant(now),
        "reasonCode": [
            {
                "coding": [{"system": RULE_SYSTEM, "code": rule.id, "display": rule.title}],
                "text": rule.category,
            }
        ],
        "payload": [{"contentString": f"{rule.title} : {rule.text}"}],
    }


def _person(
    patient_id: str,
    birth: str | None,
    sex: str | None,
    vaccinations: list[tuple[str, date]],
) -> prevention.Person | None:
    if not birth:
        return None  # no age, no rule
    try:
        born = date_range(birth)[0].date()
    except ValueError:
        return None
    return prevention.Person(patient_id, born, sex, tuple(vaccinations))


# A reminder's JSON and index rows depend on its rule, period and time, and on the patient
# and its own id only where those are written: they are made once per rule and period with
# these placeholders, then filled in per reminder (JSON text: ids need no escaping).
_PLACEHOLDER = "\ue000patient"
_ID = "\ue000id"


class _Template:
    """What every reminder of one rule and period shares, made once per batch."""

    def __init__(self, due: prevention.Due, now: datetime) -> None:
        self.json = orjson.dumps(communication(_ID, _PLACEHOLDER, due, now)).decode()
        self.index = indexing.extract(COMMUNICATION, communication("", _PLACEHOLDER, due, now))

    def content(self, id_: str, patient_id: str) -> orjson.Fragment:
        """The reminder's Communication (JSON text, as `communication` gives it)."""
        return orjson.Fragment(self.json.replace(_ID, id_).replace(_PLACEHOLDER, patient_id))

    def index_rows(self, patient_id: str) -> indexing.IndexRows:
        """Its index rows (the same as `indexing.extract` of its Communication)."""
        t = self.index
        references = [(p, k, patient_id if i == _PLACEHOLDER else i) for p, k, i in t.references]
        return indexing.IndexRows(t.tokens, t.strings, t.dates, references)


class _Batch:
    """The rows one batch writes."""

    def __init__(self, clock: Clock, now: datetime) -> None:
        self.clock, self.now = clock, now
        self.templates: dict[tuple[str, str], _Template] = {}
        self.current: list[dict[str, Any]] = []
        self.versions: list[dict[str, Any]] = []
        self.index: dict[Table, list[dict[str, Any]]] = defaultdict(list)
        self.audits: list[dict[str, Any]] = []
        self.issued: list[dict[str, Any]] = []
        # Each reminder is a message of its own thread with the patient as its recipient
        # (messaging/: the participants are who may read it).
        self.messages: list[dict[str, Any]] = []
        self.participants: list[dict[str, Any]] = []
        # The job's audit event, the same for every reminder but its id, resource and patient.
        self.audit = recorder.events(
            clock, JOB, "create", resource_type="Communication", patient_ids=[None], now=now
        )[0]

    def tables(self) -> list[tuple[Table, list[dict[str, Any]]]]:
        """Every table's rows, in the order they are written."""
        return [
            (resources, self.current),
            (resource_versions, self.versions),
            *self.index.items(),
            (messages, self.messages),
            (message_participants, self.participants),
            (audit_events, self.audits),
            (reminders_issued, self.issued),
        ]

    def add(self, patient_id: str, due: prevention.Due) -> None:
        now = self.now
        key = (due.rule.id, due.period)
        template = self.templates.get(key)
        if template is None:
            template = self.templates[key] = _Template(due, now)
        id_ = self.clock.ids()
        content = template.content(id_, patient_id)
        row = {"resource_type": "Communication", "id": id_, "version_id": 1}
        row |= {"patient_id": patient_id, "last_updated": now, "deleted": False}
        self.current.append({**row, "created_by": JOB.actor, "content": content})
        self.versions.append({**row, "method": "POST", "content": content})
        for table, rows in index_batches(
            "Communication", id_, patient_id, template.index_rows(patient_id)
        ):
            if rows:
                self.index[table] += rows
        self.audits.append(
            {**self.audit, "id": self.clock.ids(), "resource_id": id_, "patient_id": patient_id}
        )
        self.messages.append({"patient_id": patient_id, "id": id_, "thread_id": id_, "sent": now})
        self.participants.append(
            {
                "patient_id": patient_id,
                "message_id": id_,
                "role": "recipient",
                "actor": f"patient:{patient_id}",
                # as written in the Communication's recipient
                "reference": orjson.dumps({"reference": f"Patient/{patient_id}"}).decode(),
                "received": None,
            }
        )
        self.issued.append(
            {
                "patient_id": patient_id,
                "rule_id": due.rule.id,
                "due_period": due.period,
                "communication_id": id_,
                "issued_at": now,
            }
        )


Person = tuple[str, str | None, str | None]  # patient id, birthDate, gender


async def _read(
    engine: AsyncEngine, after: str, size: int
) -> tuple[list[str], list[Person], dict[str, list[tuple[str, date]]], set[tuple[str, str, str]]]:
    """The next batch: its spaces, their people, vaccinations and reminders issued."""
    async with engine.connect() as conn:
        spaces = await repo.active_spaces(conn, after, size)
        if not spaces:
            return [], [], {}, set()
        people = await repo.people(conn, spaces)
        ids = [p[0] for p in people]
        vaccinated: dict[str, list[tuple[str, date]]] = defaultdict(list)
        for patient_id, code, when in await repo.vaccinations(conn, ids):
            vaccinated[patient_id].append((code, when))
        already = await repo.issued(conn, ids)
    return spaces, people, vaccinated, already


def _evaluate(
    rules: prevention.PreventionRules,
    clock: Clock,
    people: list[Person],
    vaccinated: dict[str, list[tuple[str, date]]],
    already: set[tuple[str, str, str]],
    now: datetime,
) -> _Batch:
    """The rows of every reminder due in the batch and not issued yet (pure Python)."""
    rows = _Batch(clock, now)
    for patient_id, birth, sex in people:
        person = _person(patient_id, birth, sex, vaccinated.get(patient_id, []))
        if person is None:
            continue
        for due in prevention.due(rules, person, now.date()):
            if (patient_id, due.rule.id, due.period) not in already:
                rows.add(patient_id, due)
    return rows


async def _write(engine: AsyncEngine, rows: _Batch) -> None:
    async with engine.begin() as conn:
        await repo.write_batch(conn, rows.tables())


#: Batches being written at once: the database's work on both cores while the next batch is
#: read and evaluated (each its own transaction; batches are disjoint ranges of patients).
WRITERS = 2


async def run(
    engine: AsyncEngine,
    clock: Clock,
    *,
    rules: prevention.PreventionRules | None = None,
    batch: int = 1000,
) -> dict[str, int]:
    """Evaluate every active space; counts of patients evaluated and reminders issued."""
    rules = rules or prevention.load()
    done = {"patients": 0, "issued": 0}
    async with autocommit_connection(engine) as guard:
        await repo.lock_run(guard)
        writing: list[asyncio.Task[None]] = []
        try:
            after = ""
            while True:
                spaces, people, vaccinated, already = await _read(engine, after, batch)
                if not spaces:
                    break
                now = clock.now()
                rows = await asyncio.to_thread(
                    _evaluate, rules, clock, people, vaccinated, already, now
                )
                if len(writing) >= WRITERS:
                    await writing.pop(0)  # the oldest batch committed (or its error raised)
                writing.append(asyncio.create_task(_write(engine, rows)))
                done["patients"] += len(people)
                done["issued"] += len(rows.issued)
                after = spaces[-1]
                if len(spaces) < batch:
                    break
            while writing:
                await writing.pop(0)
        finally:
            for task in writing:  # a failure while batches were being written
                task.cancel()
            await asyncio.gather(*writing, return_exceptions=True)
            await repo.unlock_run(guard)
    log.info("reminders run: %(patients)d patients, %(issued)d reminders issued", done)
    return done
