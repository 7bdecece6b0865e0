"""FHIR validation of a device's readings, once per shape.

A connected device sends the same Observation again and again: the same patient, device,
code, category and unit, only the time and the value change. The full validation
(`fhir.validation.validate`, fhir.resources) costs about 0.3 ms per reading, most of the
bulk path's CPU. Here a reading is split into its *shape* (the Observation with
`effectiveDateTime` and every `valueQuantity.value` set to fixed stand-ins) and those leaves.
The shape is validated in full once (cached per process); a reading of a known valid shape
is valid when its own leaves are, and its canonical JSON is the shape's with its leaves put
back. The leaves are accepted here only in forms whose canonical form is themselves (a
dateTime to the second with Z or a non-zero offset, a number without exponent), so the
stored JSON is what the full validation stores. Anything else (another form of time, a
value that is not a number, a shape the model refuses) goes through the full validation,
which gives the usual answer and error.
"""

import re
from datetime import datetime
from typing import Any

import orjson

from espace_api.fhir.registry import ResourceType
from espace_api.fhir.validation import validate

# FHIR dateTime to the second with a zone (its regex's limits: months, days, hours 00-23,
# offsets up to 14:00); fractional seconds and a zero offset have a canonical form of their
# own (full check).
_DATETIME = re.compile(
    r"[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
    r"(Z|[+-]((0[0-9]|1[0-3]):[0-5][0-9]|14:00))"
)
TIME_STAND_IN = "2000-01-01T00:00:00Z"
VALUE_STAND_IN = 0
_SHAPES: dict[bytes, bytes | None] = {}  # shape -> its canonical JSON (None: refused)
_SHAPES_MAX = 4096

Path = tuple[str | int, ...]


def _time(value: Any) -> bool:
    if not isinstance(value, str) or not _DATETIME.fullmatch(value):
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))  # 30 February
    except ValueError:
        return False
    # Year 0 is no year; a zero offset is written Z in the canonical form.
    return value[:4] != "0000" and not value.endswith(("+00:00", "-00:00"))


def _number(value: Any) -> bool:
    """A JSON number kept as it is (a float written with an exponent, e.g. 1e+16, becomes
    a plain decimal in the canonical form: full check)."""
    if isinstance(value, float):
        return "e" not in repr(value)
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**63


def _quantity_value(node: Any, path: Path, leaves: list[tuple[Path, Any]]) -> Any:
    """`node` with its valueQuantity.value replaced by the stand-in (the leaf kept)."""
    if not isinstance(node, dict):
        return node
    quantity = node.get("valueQuantity")
    if not isinstance(quantity, dict) or "value" not in quantity:
        return node
    if not _number(quantity["value"]):
        raise _Unusual
    leaves.append(((*path, "valueQuantity", "value"), quantity["value"]))
    return {**node, "valueQuantity": {**quantity, "value": VALUE_STAND_IN}}


class _Unusual(Exception):
    """A leaf in a form this module does not take: full validation."""


def _shape(body: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[Path, Any]]]:
    """(the reading with its leaves replaced, the leaves); _Unusual for other forms."""
    leaves: list[tuple[Path, Any]] = []
    shape = dict(body)
    if "effectiveDateTime" in shape:
        if not _time(shape["effectiveDateTime"]):
            raise _Unusual
        leaves.append((("effectiveDateTime",), shape["effectiveDateTime"]))
        shape["effectiveDateTime"] = TIME_STAND_IN
    shape = _quantity_value(shape, (), leaves)
    components = shape.get("component")
    if isinstance(components, list):
        shape["component"] = [
            _quantity_value(c, ("component", i), leaves) for i, c in enumerate(components)
        ]
    return shape, leaves


def _put(canonical: dict[str, Any], path: Path, value: Any) -> bool:
    """Put a leaf back where the canonical shape holds its stand-in (False: not there)."""
    node: Any = canonical
    try:
        for step in path[:-1]:
            node = node[step]
        there = node[path[-1]]
    except (KeyError, IndexError, TypeError):
        return False
    stand_in = TIME_STAND_IN if path == ("effectiveDateTime",) else VALUE_STAND_IN
    if there != stand_in or type(there) is not type(stand_in):
        return False
    node[path[-1]] = value
    return True


def validate_reading(rtype: ResourceType, body: Any) -> dict[str, Any]:
    """`validate(rtype, body)`: the same canonical JSON, or the same error."""
    if not isinstance(body, dict):
        return validate(rtype, body)
    try:
        shape, leaves = _shape(body)
    except _Unusual:
        return validate(rtype, body)
    key = orjson.dumps(shape, option=orjson.OPT_SORT_KEYS)
    if key not in _SHAPES:
        try:
            known: bytes | None = orjson.dumps(validate(rtype, shape))
        except Exception:  # the reading's own validation says why
            known = None
        if len(_SHAPES) >= _SHAPES_MAX:
            _SHAPES.pop(next(iter(_SHAPES)))
        _SHAPES[key] = known
    canonical_shape = _SHAPES[key]
    if canonical_shape is None:
        return validate(rtype, body)
    canonical: dict[str, Any] = orjson.loads(canonical_shape)
    if not all(_put(canonical, path, value) for path, value in leaves):
        return validate(rtype, body)
    return canonical
