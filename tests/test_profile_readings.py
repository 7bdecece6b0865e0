"""A reading validated once per shape (profile/readings.py) is stored and refused exactly as
the full validation (fhir.resources) stores and refuses it: same canonical JSON, same error."""

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from espace_api.fhir.errors import FhirError
from espace_api.fhir.registry import REGISTRY
from espace_api.fhir.validation import validate
from espace_api.profile import readings
from tests.support.profile import blood_pressure, measure

OBSERVATION = REGISTRY["Observation"]

times = st.one_of(
    st.datetimes().map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%S") + "Z"),
    st.builds(
        lambda d, sign, h, m: d.strftime("%Y-%m-%dT%H:%M:%S") + f"{sign}{h:02d}:{m:02d}",
        st.datetimes(),
        st.sampled_from("+-"),
        st.integers(0, 16),
        st.integers(0, 61),
    ),
    st.datetimes().map(lambda d: d.isoformat() + "Z"),  # fractional seconds, or none
    st.sampled_from(
        [
            "2026-02-30T08:00:00Z",
            "2026-11-01T24:00:00Z",
            "2026-11-01T08:00:60Z",
            "0000-01-01T00:00:00Z",
            "2026-11-01T08:00Z",
            "2026-11-01",
            "2026-11",
            "2026-11-01T08:00:00",
            "2026-11-01T08:00:00.5+01:00",
            "",
            " 2026-11-01T08:00:00Z",
        ]
    ),
    st.integers(),
    st.none(),
)
values = st.one_of(
    st.integers(-(2**63) + 1, 2**63 - 1),  # what a JSON body parses to
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.text(max_size=4),
    st.none(),
    st.just([1]),
)


def outcome(body: Any, check) -> Any:
    try:
        return ("ok", orjson.dumps(check(OBSERVATION, body), option=orjson.OPT_SORT_KEYS))
    except FhirError as exc:
        return ("error", exc.status, exc.code, exc.message, exc.expression, exc.outcome())


def same(body: dict[str, Any]) -> None:
    assert outcome(body, readings.validate_reading) == outcome(body, validate)


@settings(max_examples=150, deadline=None)
@given(at=times, value=values, unit=st.sampled_from(["mg/dL", "", "kg"]))
def test_a_glucose_reading(at, value, unit):
    body = measure("p-1", "2345-7", 100, "mg/dL")
    body["effectiveDateTime"] = at
    body["valueQuantity"] = {**body["valueQuantity"], "value": value, "unit": unit}
    same(body)


@settings(max_examples=60, deadline=None)
@given(at=times, systolic=values, diastolic=values, extra=st.sampled_from([None, {}, {"x": 1}]))
def test_a_blood_pressure(at, systolic, diastolic, extra):
    body = blood_pressure("p-1", 120, 80)
    body["effectiveDateTime"] = at
    body["component"][0]["valueQuantity"]["value"] = systolic
    body["component"][1]["valueQuantity"]["value"] = diastolic
    if extra is not None:
        body["component"].insert(0, extra)
    same(body)


def test_other_shapes_go_through_the_full_validation():
    base = measure("p-1", "2345-7", 100, "mg/dL")
    period = {k: v for k, v in base.items() if k != "effectiveDateTime"}
    period["effectivePeriod"] = {"start": "2026-11-01T08:00:00Z"}
    for body in (
        period,
        {**base, "bogus": 1},
        {**base, "valueQuantity": 5},
        {**base, "status": ""},
        {**base, "resourceType": "Patient"},
        [base],
    ):
        same(body)
    # A known shape answers from the cache: the same readings again, other values.
    for i in range(3):
        same({**base, "valueQuantity": {**base["valueQuantity"], "value": i + 0.5}})
