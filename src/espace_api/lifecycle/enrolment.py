"""Bulk enrolment of a population from NDJSON: one Patient per line, streamed in batches.

Each line is a Patient in the enrolment profile (validated by `EnrolmentPatient`, a strict
pydantic model of the elements enrolment takes: identifier with exactly one INS whose control
key is right, name, birthDate, optional gender, telecom, address and `notice-date`
extension). It is much faster than the full fhir.resources model on the bulk path (see
docs/lifecycle.md) and stores the same canonical JSON; anything else on a line is a reject.

Idempotent on INS: a line whose INS is already enrolled is `unchanged` (re-running a file
changes nothing). A line naming an INS seen earlier in the same file is rejected. Each batch
is one transaction; the report says, per line, `created` (with the id), `unchanged` (with
the existing id) or `rejected` (with a code and reason).
"""

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncEngine

from espace_api.audit import recorder
from espace_api.auth.identity import Identity
from espace_api.clock import Clock
from espace_api.config import Settings
from espace_api.fhir import indexing
from espace_api.fhir.ins import INS_SYSTEMS, ins_problem
from espace_api.fhir.registry import REGISTRY
from espace_api.fhir.values import format_instant
from espace_api.lifecycle import state
from espace_api.lifecycle.behaviour import enrolled_space
from espace_api.privacy.behaviour import default_settings_extension
from espace_api.resources.results import meta_for
from espace_api.storage import enrolment_repository as repo
from espace_api.storage import ins_repository, repository
from espace_api.storage import space_repository as spaces

PATIENT = REGISTRY["Patient"]
BATCH = 1000
MAX_LINE = 64 * 1024
TOO_LONG = b"\x00"  # stands for a line longer than MAX_LINE (its bytes are dropped)
DATE = r"^\d{4}(-\d{2}(-\d{2})?)?$"
DATETIME = r"^\d{4}(-\d{2}(-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2}))?)?)?$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Identifier(_Strict):
    use: Literal["usual", "official", "temp", "secondary", "old"] | None = None
    system: str = Field(min_length=1)
    value: str = Field(min_length=1)


class HumanName(_Strict):
    use: Literal["usual", "official", "temp", "nickname", "anonymous", "old", "maiden"] | None = (
        None
    )
    text: str | None = None
    family: str | None = Field(default=None, min_length=1)
    given: list[str] | None = None
    prefix: list[str] | None = None


class ContactPoint(_Strict):
    system: Literal["phone", "fax", "email", "pager", "url", "sms", "other"]
    value: str = Field(min_length=1)
    use: Literal["home", "work", "temp", "old", "mobile"] | None = None


class Address(_Strict):
    use: Literal["home", "work", "temp", "old", "billing"] | None = None
    line: list[str] | None = None
    city: str | None = None
    postalCode: str | None = None
    country: str | None = None


class NoticeDate(_Strict):
    url: Literal["https://espace-api.org/fhir/StructureDefinition/notice-date"]
    valueDate: str | None = Field(default=None, pattern=DATE)
    valueDateTime: str | None = Field(default=None, pattern=DATETIME)


class EnrolmentPatient(_Strict):
    """A Patient as enrolment takes it (everything else on the line is refused)."""

    resourceType: Literal["Patient"]
    identifier: list[Identifier] = Field(min_length=1)
    name: list[HumanName] = Field(min_length=1)
    birthDate: str = Field(pattern=DATE)
    gender: Literal["male", "female", "other", "unknown"] | None = None
    telecom: list[ContactPoint] | None = None
    address: list[Address] | None = None
    extension: list[NoticeDate] | None = None


@dataclass
class Report:
    """One line of the enrolment report."""

    line: int
    status: str  # created | unchanged | rejected
    id: str | None = None
    code: str | None = None
    reason: str | None = None

    def json(self) -> bytes:
        body = {k: v for k, v in self.__dict__.items() if v is not None}
        return orjson.dumps(body) + b"\n"


@dataclass
class _Line:
    number: int
    content: dict[str, Any]
    ins: tuple[str, str]


def parse_line(number: int, raw: bytes) -> _Line | Report:
    """A valid enrolment line, or its reject."""
    if raw == TOO_LONG:
        return Report(
            number, "rejected", code="LINE_TOO_LONG", reason=f"a line exceeds {MAX_LINE} bytes"
        )
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return Report(number, "rejected", code="INVALID_JSON", reason="not a JSON object")
    try:
        model = EnrolmentPatient.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        return Report(
            number, "rejected", code="INVALID_RESOURCE", reason=f"Patient.{where}: {err['msg']}"
        )
    ins = [i for i in model.identifier if i.system in INS_SYSTEMS]
    if len(ins) != 1:
        return Report(
            number, "rejected", code="INS_REQUIRED", reason="exactly one INS identifier is needed"
        )
    problem = ins_problem(ins[0].value)
    if problem:
        return Report(number, "rejected", code="INVALID_INS", reason=problem)
    content = model.model_dump(exclude_none=True)
    return _Line(number, content, (ins[0].system, ins[0].value))


async def enrol(
    engine: AsyncEngine,
    settings: Settings,
    clock: Clock,
    identity: Identity,
    lines: AsyncIterator[bytes],
    *,
    notice: datetime | None = None,
) -> AsyncIterator[bytes]:
    """Enrol the Patients of an NDJSON stream; yield the report, one JSON line per line."""
    batch: list[tuple[int, bytes]] = []
    number = 0
    async for raw in lines:
        number += 1
        if not raw.strip():
            continue
        batch.append((number, raw))
        if len(batch) >= BATCH:
            for report in await _batch(engine, settings, clock, identity, batch, notice):
                yield report.json()
            batch = []
    if batch:
        for report in await _batch(engine, settings, clock, identity, batch, notice):
            yield report.json()


async def _batch(
    engine: AsyncEngine,
    settings: Settings,
    clock: Clock,
    identity: Identity,
    raw: list[tuple[int, bytes]],
    notice: datetime | None,
) -> list[Report]:
    reports: dict[int, Report] = {}
    valid: list[_Line] = []
    for number, raw_line in raw:
        parsed = parse_line(number, raw_line)
        if isinstance(parsed, Report):
            reports[number] = parsed
        else:
            valid.append(parsed)
    async with engine.begin() as conn:
        await repo.lock(conn)
        existing = await ins_repository.owners(conn, [line.ins for line in valid])
        seen: set[tuple[str, str]] = set()
        now = clock.now()
        current, versions, audits, space_rows, ins_rows = [], [], [], [], []
        index: dict[Table, list[dict[str, Any]]] = {}
        for line in valid:
            if line.ins in existing:
                reports[line.number] = Report(line.number, "unchanged", id=existing[line.ins])
                continue
            if line.ins in seen:
                reports[line.number] = Report(
                    line.number,
                    "rejected",
                    code="DUPLICATE_INS",
                    reason="this INS is on an earlier line of the file",
                )
                continue
            seen.add(line.ins)
            id_ = clock.ids()
            content = line.content
            if notice is not None and state.notice_date(content) is None:
                content.setdefault("extension", []).append(
                    {"url": state.NOTICE_DATE_URL, "valueDateTime": format_instant(notice)}
                )
            space = enrolled_space(content, now, settings.space_opposition_days)
            state.with_extension(content, space)
            content["extension"].append(default_settings_extension())
            content = {"resourceType": "Patient", "id": id_, **content}
            content["meta"] = meta_for(1, now)
            row = {
                "resource_type": "Patient",
                "id": id_,
                "patient_id": id_,
                "version_id": 1,
                "last_updated": now,
                "deleted": False,
                "content": content,
            }
            current.append({**row, "created_by": identity.actor})
            versions.append({**row, "method": "POST"})
            _index_rows(index, id_, content)
            space_rows.append({"patient_id": id_, **spaces.values(space, now)})
            ins_rows.append({"system": line.ins[0], "value": line.ins[1], "patient_id": id_})
            audits += _audit_rows(clock, identity, id_, now)
            reports[line.number] = Report(line.number, "created", id=id_)
        if current:
            await repo.insert_batch(conn, current, versions, index, space_rows, ins_rows, audits)
    return [reports[n] for n, _ in raw]


def _index_rows(into: dict[Table, list[dict[str, Any]]], id_: str, content: dict[str, Any]) -> None:
    batches = repository.index_batches("Patient", id_, id_, indexing.extract(PATIENT, content))
    for table, rows in batches:
        into.setdefault(table, []).extend(rows)


def _audit_rows(clock: Clock, identity: Identity, id_: str, now: datetime) -> list[dict[str, Any]]:
    """The enrolment's two events: the Patient created, the space notified."""
    return [
        row
        for subtype in ("create", "space-notified")
        for row in recorder.events(
            clock,
            identity,
            subtype,
            resource_type="Patient",
            resource_id=id_,
            patient_ids=[id_],
            detail="enrolment",
            now=now,
        )
    ]
