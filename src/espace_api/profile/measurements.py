"""Measurements (Observation): LOINC codes and UCUM units checked against the package's table.

`vital_signs.json` lists the codes a space accepts (glucose, HbA1c, body weight, heart rate,
steps, the blood-pressure panel and its components) and, for each, the UCUM units allowed
with their factor to the code's canonical unit (the first listed). A glucose in kg, a code the
table does not list, or a panel without its components is refused with 422 naming the
element. What a valid Observation measured becomes `Value` rows (canonical unit) of the
`observation_values` table, which `$lastn` and `$daily-summary` read.
"""

from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, model_validator

from espace_api.fhir.errors import FhirError
from espace_api.fhir.values import date_range

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
TABLE_PATH = Path(__file__).with_name("vital_signs.json")
# Observations that no longer say anything measured: their values leave the table.
VOID_STATUSES = frozenset({"entered-in-error", "cancelled"})


class CodeSpec(BaseModel):
    """One LOINC code: its allowed units (factor to the first), or its component codes."""

    display: str
    units: dict[str, float] = Field(default_factory=dict)
    components: list[str] = Field(default_factory=list)

    @property
    def canonical(self) -> str:
        return next(iter(self.units))


class VitalSigns(BaseModel):
    """The versioned table of accepted measurements."""

    version: str
    comment: str = ""
    codes: dict[str, CodeSpec]

    @model_validator(mode="after")
    def _consistent(self) -> "VitalSigns":
        for code, spec in self.codes.items():
            if bool(spec.units) == bool(spec.components):
                raise ValueError(f"{code}: give units or components, not both or neither")
            for part in spec.components:
                if not self.codes.get(part) or not self.codes[part].units:
                    raise ValueError(f"{code}: component {part} needs its own units")
        return self

    def value_codes(self, code: str) -> tuple[str, ...]:
        """The codes whose values an Observation of `code` stores (components of a panel)."""
        spec = self.codes.get(code)
        if spec is None:
            return ()
        return tuple(spec.components) or (code,)


@cache
def table(path: Path = TABLE_PATH) -> VitalSigns:
    """The table (read and checked once; a bad file stops the start-up)."""
    return VitalSigns.model_validate_json(path.read_bytes())


@dataclass(frozen=True)
class Value:
    """One measured value in its code's canonical unit."""

    code: str
    value: float
    unit: str


@dataclass(frozen=True)
class Measurement:
    """What an Observation measured: when, with which device, which values."""

    code: str
    effective: datetime
    device: str | None
    values: tuple[Value, ...]


def _unprocessable(message: str, code: str, where: str) -> FhirError:
    return FhirError.unprocessable(message, code, [where])


def _loinc_code(concept: Any, where: str, allowed: dict[str, CodeSpec] | list[str]) -> str:
    codings = concept.get("coding") if isinstance(concept, dict) else None
    for coding in codings or []:
        if isinstance(coding, dict) and coding.get("system") == LOINC:
            if coding.get("code") in allowed:
                return str(coding["code"])
    raise _unprocessable(
        f"{where} needs a LOINC code of: {', '.join(allowed)}", "UNSUPPORTED_CODE", where
    )


def _quantity(node: dict[str, Any], where: str, code: str, spec: CodeSpec) -> Value | None:
    quantity = node.get("valueQuantity")
    if quantity is None:
        if node.get("dataAbsentReason") is not None:
            return None
        raise _unprocessable(f"{where}.valueQuantity is required", "MISSING_VALUE", where)
    unit = quantity.get("code")
    if quantity.get("system") != UCUM or unit not in spec.units:
        raise _unprocessable(
            f"{spec.display} ({code}) is measured in UCUM {', '.join(spec.units)}, not "
            f"{unit or quantity.get('unit')!r}",
            "INVALID_UNIT",
            f"{where}.valueQuantity.code",
        )
    if not isinstance(quantity.get("value"), int | float):
        raise _unprocessable(
            f"{where}.valueQuantity.value is required", "MISSING_VALUE", f"{where}.valueQuantity"
        )
    return Value(code, float(quantity["value"]) * spec.units[unit], spec.canonical)


def _effective(content: dict[str, Any]) -> datetime:
    raw = content.get("effectiveDateTime") or content.get("effectiveInstant")
    period = content.get("effectivePeriod")
    if raw is None and isinstance(period, dict):
        raw = period.get("start")
    if not isinstance(raw, str):
        raise _unprocessable(
            "Observation.effective[x] (when it was measured) is required",
            "MISSING_METADATA",
            "Observation.effective[x]",
        )
    return date_range(raw)[0]  # validated by the FHIR model already


def _device(content: dict[str, Any]) -> str | None:
    device = content.get("device")
    if not isinstance(device, dict):
        return None
    if isinstance(device.get("reference"), str):
        return str(device["reference"])
    ident = device.get("identifier")
    if isinstance(ident, dict) and ident.get("value"):
        return f"{ident.get('system', '')}|{ident['value']}"
    display = device.get("display")
    return display if isinstance(display, str) else None


def measurement(content: dict[str, Any], signs: VitalSigns | None = None) -> Measurement:
    """Check an Observation against the table (422 naming the element) and say what it
    measured (no values for a void status or an absent value)."""
    signs = signs or table()
    code = _loinc_code(content.get("code"), "Observation.code", signs.codes)
    spec = signs.codes[code]
    effective = _effective(content)
    values: list[Value | None] = []
    if spec.units:
        values.append(_quantity(content, "Observation", code, spec))
    else:
        if content.get("valueQuantity") is not None:
            raise _unprocessable(
                f"{spec.display} ({code}) carries its values in components",
                "INVALID_UNIT",
                "Observation.valueQuantity",
            )
        components = content.get("component") or []
        if not components:
            raise _unprocessable(
                f"{spec.display} ({code}) needs components ({', '.join(spec.components)})",
                "MISSING_VALUE",
                "Observation.component",
            )
        for i, comp in enumerate(components):
            where = f"Observation.component[{i}]"
            part = _loinc_code(comp.get("code"), f"{where}.code", spec.components)
            values.append(_quantity(comp, where, part, signs.codes[part]))
    if content.get("status") in VOID_STATUSES:
        values = []
    kept = tuple(v for v in values if v is not None)
    return Measurement(code, effective, _device(content), kept)
