"""Prevention reminders (issue 12): rules from age, sex and recorded vaccinations, issued
once per rule and due period as Communications the patient reads, with an injected clock."""

import asyncio
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import select

from espace_api.clock import Clock
from espace_api.db.schema import resources
from espace_api.profile import prevention, reminders
from espace_api.storage import reminder_repository
from tests.support.fhir import create, patient, search
from tests.support.profile import immunization
from tests.test_lifecycle import act

BIRTH = date(1981, 3, 15)  # turns 45 on 2026-03-15


def at(day: str) -> Clock:
    """The job's clock, fixed at noon UTC on `day`."""
    moment = datetime.fromisoformat(f"{day}T12:00:00+00:00").astimezone(UTC)
    return Clock(now=lambda: moment)


async def active_space(client, auth, **extra) -> tuple[str, dict[str, str]]:
    body = patient(family="Prevention", birthDate=BIRTH.isoformat(), **extra)
    pid = (await create(client, await auth.operator(), body))["id"]
    me = await auth.patient(pid)
    assert (await act(client, me, pid, "activate")).status_code == 200
    return pid, me


async def reminders_of(client, me, pid) -> list[str]:
    found = await search(client, me, "/Communication", patient=pid, category="reminder")
    # identifier value: <rule id>/<due period>
    return sorted(
        e["resource"]["identifier"][0]["value"].replace("/", " ") for e in found.get("entry", [])
    )


async def test_a_person_turning_45_gets_the_check_up_reminder_once(client, auth, app):
    pid, me = await active_space(client, auth, gender="male")
    engine = app.state.engine
    # The day before: aged 44, the dTP booster of 25 was never recorded.
    await reminders.run(engine, at("2026-03-14"))
    assert await reminders_of(client, me, pid) == ["dtp-booster age-25"]
    # The birthday: the check-up band 45-50 and the booster of 45 (men: no cervical screening).
    await reminders.run(engine, at("2026-03-15"))
    assert await reminders_of(client, me, pid) == [
        "checkup 45-50",
        "dtp-booster age-25",
        "dtp-booster age-45",
    ]
    # Again that day, and a year later: nothing new (same rule, same due period).
    await reminders.run(engine, at("2026-03-15"))
    await reminders.run(engine, at("2027-06-01"))
    assert len(await reminders_of(client, me, pid)) == 3
    # The reminders are the patient's messages, and nobody else's.
    other = await auth.patient("someone-else")
    assert (await search(client, other, "/Communication", patient=pid))["total"] == 0


async def test_a_recorded_vaccination_satisfies_its_booster(client, auth, app):
    pid, me = await active_space(client, auth, gender="female")
    # dTP (CVX 115, Tdap) at 44 and a half: within the booster's one-year tolerance.
    await create(client, me, immunization(pid, vaccine="115", date="2025-09-20"))
    await reminders.run(app.state.engine, at("2026-03-15"))
    assert await reminders_of(client, me, pid) == ["cervical-hpv age-45", "checkup 45-50"]


async def test_spaces_not_active_get_nothing_and_batches_cover_everyone(client, auth, app):
    ops = await auth.operator()
    notified = (await create(client, ops, patient(birthDate=BIRTH.isoformat())))["id"]
    ids = [(await active_space(client, auth, gender="male"))[0] for _ in range(3)]
    done = await reminders.run(app.state.engine, at("2026-03-15"), batch=2)
    assert done["patients"] >= 3 and done["issued"] >= 6
    for pid in ids:
        assert await reminders_of(client, await auth.patient(pid), pid) == [
            "checkup 45-50",
            "dtp-booster age-45",
        ]
    assert await reminders_of(client, await auth.patient(notified), notified) == []


async def test_two_runs_at_once_issue_each_reminder_once(client, auth, app):
    ids = [(await active_space(client, auth, gender="female"))[0] for _ in range(3)]
    day = at("2026-03-15")
    first, second = await asyncio.gather(
        reminders.run(app.state.engine, day, batch=2), reminders.run(app.state.engine, day, batch=2)
    )
    assert first["issued"] + second["issued"] >= 3 * 3
    assert 0 in (first["issued"], second["issued"])  # one run waited for the other
    for pid in ids:
        assert await reminders_of(client, await auth.patient(pid), pid) == [
            "cervical-hpv age-45",
            "checkup 45-50",
            "dtp-booster age-45",
        ]


async def test_a_failed_run_is_completed_by_the_next(client, auth, app, monkeypatch):
    ids = [(await active_space(client, auth, gender="male"))[0] for _ in range(4)]
    real = reminder_repository.write_batch
    calls = 0

    async def fail_second(*args):
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("disk full")
        await real(*args)

    monkeypatch.setattr(reminder_repository, "write_batch", fail_second)
    with pytest.raises(RuntimeError):
        await reminders.run(app.state.engine, at("2026-03-15"), batch=2)
    monkeypatch.undo()
    await reminders.run(app.state.engine, at("2026-03-15"), batch=2)
    for pid in ids:
        assert await reminders_of(client, await auth.patient(pid), pid) == [
            "checkup 45-50",
            "dtp-booster age-45",
        ]


async def test_a_reminder_is_stored_as_its_communication(client, auth, app):
    """The batch writes each reminder's JSON from a template per rule and period: it is
    the Communication `communication` describes."""
    pid, _ = await active_space(client, auth, gender="male")
    clock = at("2026-03-15")
    await reminders.run(app.state.engine, clock)
    r = resources
    async with app.state.engine.connect() as conn:
        rows = await conn.execute(
            select(r.c.content).where(r.c.patient_id == pid, r.c.resource_type == "Communication")
        )
        stored = [m[0] for m in rows]
    rules = {rule.id: rule for rule in prevention.load().rules}
    assert len(stored) == 2
    for content in stored:
        rule, period = content["identifier"][0]["value"].split("/")
        due = prevention.Due(rules[rule], period)
        assert content == reminders.communication(content["id"], pid, due, clock.now())


def test_the_rules_file_is_checked(tmp_path: Path):
    rules = prevention.load()
    assert rules.version and all(r.source for r in rules.rules)
    person = prevention.Person("p", date(1950, 1, 1), "female")
    assert {(d.rule.id, d.period) for d in prevention.due(rules, person, date(2026, 6, 1))} == {
        ("influenza", "age-76"),
        ("dtp-booster", "age-75"),
    }  # 76: past the check-up band 70-75 and the screenings' 74
    bad = tmp_path / "rules.json"
    bad.write_text(
        '{"version": "x", "rules": [{"id": "a", "category": "screening", "title": "t", '
        '"text": "t", "source": "somewhere public", "bands": [[50, 40]]}]}'
    )
    with pytest.raises(ValidationError):
        prevention.load(bad)
