"""Measurement operations: `Observation/$lastn` and `Observation/$daily-summary`.

Both read the `observation_values` table (storage/observation_repository.py) under the
caller's visibility predicate for Observation, so they show exactly the measurements a search
would, and both are audited as a search of the patient's space.

- `$lastn` (FHIR's Observation-lastn operation): the latest `max` (default 1) Observations per
  code of one patient, newest first within each code; `code` narrows (a blood-pressure panel
  stands for its components).
- `$daily-summary` (espace-api): count, min, max and mean per code and local day (`tz`,
  default Europe/Paris) between two dates (`date=ge...&date=lt...`, at most 366 days), in
  each code's canonical UCUM unit; a Parameters resource with one `summary` per code and day.
"""

from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson

from espace_api.access import policy
from espace_api.audit import recorder
from espace_api.fhir import bundles
from espace_api.fhir.errors import FhirError
from espace_api.fhir.registry import REGISTRY
from espace_api.fhir.search import parse_int, split_values
from espace_api.fhir.values import date_range, format_instant, split_reference
from espace_api.profile import measurements
from espace_api.resources.results import Result
from espace_api.resources.service import Context
from espace_api.storage import observation_repository as values_repo

OBSERVATION = REGISTRY["Observation"]
DEFAULT_TZ = "Europe/Paris"
MAX_DAYS = 366
MAX_PER_CODE = 100


def _invalid(message: str, where: str) -> FhirError:
    return FhirError.bad_request(message, "INVALID_SEARCH", expression=[where])


def _patient(query: dict[str, list[str]]) -> str:
    values = query.get("patient") or query.get("subject") or []
    split = split_reference(values[0]) if len(values) == 1 else None
    if split is None or split[0] not in (None, "Patient"):
        raise _invalid("One patient (patient=<id>) is required", "patient")
    return split[1]


def _codes(query: dict[str, list[str]]) -> list[str]:
    """The value codes asked for (all the table's, without `code`)."""
    signs = measurements.table()
    asked = [c for raw in query.get("code", []) for c in split_values(raw)]
    if not asked:
        return [code for code, spec in signs.codes.items() if spec.units]
    out: list[str] = []
    for token in asked:
        system, bar, code = token.rpartition("|")
        if bar and system not in ("", measurements.LOINC):
            continue  # another code system: nothing of ours matches
        out += [c for c in signs.value_codes(code) if c not in out]
    return out


def _query(params: list[tuple[str, str]]) -> dict[str, list[str]]:
    query: dict[str, list[str]] = {}
    for key, value in params:
        query.setdefault(key, []).append(value)
    return query


async def _audit(
    ctx: Context, operation: str, patient_id: str, params: list[tuple[str, str]]
) -> None:
    await recorder.record(
        ctx.conn,
        ctx.clock,
        ctx.identity,
        "search",
        resource_type="Observation",
        patient_ids=[patient_id],
        query=f"{operation}?{urlencode(params)}",
    )


async def lastn(ctx: Context, params: list[tuple[str, str]]) -> Result:
    """`GET /Observation/$lastn?patient=&code=&max=`: a searchset Bundle."""
    policy.require_scope(ctx.identity, OBSERVATION, "s")
    query = _query(params)
    patient_id = _patient(query)
    most = parse_int("max", (query.get("max") or ["1"])[0], 1)
    if most > MAX_PER_CODE:
        raise _invalid(f"max is at most {MAX_PER_CODE}", "max")
    rows = await values_repo.lastn(
        ctx.conn, patient_id, _codes(query), most, ctx.policy(OBSERVATION)
    )
    await _audit(ctx, "$lastn", patient_id, params)
    entries = [
        bundles.Entry(f"{ctx.base}/Observation/{id_}", ctx.render(OBSERVATION, json), "match")
        for id_, json in rows
    ]
    body = bundles.bundle(
        "searchset",
        entries,
        total=len(entries),
        links=[("self", f"{ctx.base}/Observation/$lastn?{urlencode(params)}")],
        bundle_id=ctx.clock.ids(),
        timestamp=format_instant(ctx.clock.now()),
    )
    return Result(200, body)


def _period(query: dict[str, list[str]]) -> tuple[datetime, datetime]:
    """[low, high) from `date` parameters with ge/gt/le/lt prefixes (both bounds needed)."""
    low = high = None
    for raw in query.get("date", []):
        prefix, value = (raw[:2], raw[2:]) if raw[:2] in ("ge", "gt", "le", "lt") else ("", raw)
        try:
            start, end = date_range(value)
        except ValueError:
            raise _invalid(f"Invalid date '{raw}'", "date") from None
        if prefix in ("", "ge"):
            low = start
        if prefix == "gt":
            low = end
        if prefix in ("", "lt"):
            high = start if prefix == "lt" else end
        if prefix == "le":
            high = end
    if low is None or high is None or high <= low:
        raise _invalid("A period is required: date=ge<start>&date=lt<end>", "date")
    if high - low > timedelta(days=MAX_DAYS):
        raise _invalid(f"At most {MAX_DAYS} days in one summary", "date")
    return low, high


def _zone(query: dict[str, list[str]]) -> str:
    name = (query.get("tz") or [DEFAULT_TZ])[0]
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise _invalid(f"Unknown time zone '{name}'", "tz") from None
    return name


def _quantity(value: float, unit: str) -> dict[str, Any]:
    return {"value": round(value, 4), "unit": unit, "system": measurements.UCUM, "code": unit}


def _summary(row: values_repo.DayRow) -> dict[str, Any]:
    return {
        "name": "summary",
        "part": [
            {"name": "code", "valueCoding": {"system": measurements.LOINC, "code": row.code}},
            {"name": "day", "valueDate": row.day},
            {"name": "count", "valueInteger": row.count},
            {"name": "min", "valueQuantity": _quantity(row.min, row.unit)},
            {"name": "max", "valueQuantity": _quantity(row.max, row.unit)},
            {"name": "mean", "valueQuantity": _quantity(row.mean, row.unit)},
        ],
    }


async def daily_summary(ctx: Context, params: list[tuple[str, str]]) -> Result:
    """`GET /Observation/$daily-summary?patient=&code=&date=ge..&date=lt..&tz=`: Parameters."""
    policy.require_scope(ctx.identity, OBSERVATION, "s")
    query = _query(params)
    patient_id = _patient(query)
    low, high = _period(query)
    rows = await values_repo.daily_summary(
        ctx.conn, patient_id, _codes(query), low, high, _zone(query), ctx.policy(OBSERVATION)
    )
    await _audit(ctx, "$daily-summary", patient_id, params)
    body = {"resourceType": "Parameters", "parameter": [_summary(r) for r in rows]}
    return Result(200, orjson.dumps(body))
