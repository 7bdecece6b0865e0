"""`espace-api reminders run`: the prevention reminders of every active space.

Walks the active spaces in patient-id batches (keyset: constant memory however many there
are), evaluates the rules (profile/prevention.py) for each person from their birth date, sex
and completed Immunizations, and writes each reminder due and not yet issued as a
Communication to the patient (category `reminder`: it shows among their messages), with its
search indexes, its message and recipient rows (messaging: the patient reads it as a
message), an audit event and a `reminders_issued` row, one transaction and one COPY per
table per batch. Running it again (or twice at once: an advisory lock serialises batches)
issues nothing twice: a reminder is issued once per rule and due period.
"""

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


# The index rows of a reminder depend on its rule, period and time, and on the patient only
# through its references: they are extracted once per rule and period with this placeholder.
_PLACEHOLDER = "\x00patient"


class _Batch:
    """The rows one batch writes."""

    def __init__(self) -> None:
        self.templates: dict[tuple[str, str], indexing.IndexRows] = {}
        self.current: list[dict[str, Any]] = []
        self.versions: list[dict[str, Any]] = []
        self.index: dict[Table, list[dict[str, Any]]] = defaultdict(list)
        self.audits: list[dict[str, Any]] = []
        self.issued: list[dict[str, Any]] = []
        # Each reminder is a message of its own thread with the patient as its recipient
        # (messaging/: the participants are who may read it).
        self.messages: list[dict[str, Any]] = []
        self.participants: list[dict[str, Any]] = []

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

    def _index(self, due: prevention.Due, now: datetime, patient_id: str) -> indexing.IndexRows:
        """The reminder's index rows (the same as `indexing.extract` of its Communication)."""
        key = (due.rule.id, due.period)
        template = self.templates.get(key)
        if template is None:
            template = indexing.extract(COMMUNICATION, communication("", _PLACEHOLDER, due, now))
            self.templates[key] = template
        return indexing.IndexRows(
            template.tokens,
            template.strings,
            template.dates,
            [(p, t, patient_id if i == _PLACEHOLDER else i) for p, t, i in template.references],
        )

    def add(self, clock: Clock, patient_id: str, due: prevention.Due, now: datetime) -> None:
        id_ = clock.ids()
        content = communication(id_, patient_id, due, now)
        row = {"resource_type": "Communication", "id": id_, "version_id": 1}
        row |= {"patient_id": patient_id, "last_updated": now, "deleted": False}
        self.current.append({**row, "created_by": JOB.actor, "content": content})
        self.versions.append({**row, "method": "POST", "content": content})
        for table, rows in index_batches(
            "Communication", id_, patient_id, self._index(due, now, patient_id)
        ):
            self.index[table] += rows
        self.audits += recorder.events(
            clock,
            JOB,
            "create",
            resource_type="Communication",
            resource_id=id_,
            patient_ids=[patient_id],
            now=now,
        )
        self.messages.append({"patient_id": patient_id, "id": id_, "thread_id": id_, "sent": now})
        self.participants.append(
            {
                "patient_id": patient_id,
                "message_id": id_,
                "role": "recipient",
                "actor": f"patient:{patient_id}",
                "reference": orjson.dumps(content["recipient"][0]).decode(),  # as written
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
    after = ""
    while True:
        async with engine.begin() as conn:
            await repo.lock(conn)
            people = await repo.active_people(conn, after, batch)
            if not people:
                break
            ids = [p[0] for p in people]
            vaccinated: dict[str, list[tuple[str, date]]] = defaultdict(list)
            for patient_id, code, when in await repo.vaccinations(conn, ids):
                vaccinated[patient_id].append((code, when))
            already = await repo.issued(conn, ids)
            now = clock.now()
            rows = _Batch()
            for patient_id, birth, sex in people:
                person = _person(patient_id, birth, sex, vaccinated.get(patient_id, []))
                if person is None:
                    continue
                for due in prevention.due(rules, person, now.date()):
                    if (patient_id, due.rule.id, due.period) not in already:
                        rows.add(clock, patient_id, due, now)
            await repo.write_batch(conn, rows.tables())
        done["patients"] += len(people)
        done["issued"] += len(rows.issued)
        after = people[-1][0]
        if len(people) < batch:
            break
    log.info("reminders run: %(patients)d patients, %(issued)d reminders issued", done)
    return done
