"""Search-index extraction at write time: JSON resource -> typed index rows."""

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from espace_api.fhir.registry import ResourceType, SearchParam
from espace_api.fhir.values import date_range, normalize_string, split_reference

OPEN_LOW = datetime(1, 1, 1, tzinfo=UTC)
OPEN_HIGH = datetime(9999, 12, 31, tzinfo=UTC)


@dataclass
class IndexRows:
    """Index values of one resource, per table."""

    tokens: list[tuple[str, str, str, str | None]] = field(default_factory=list)
    strings: list[tuple[str, str, str]] = field(default_factory=list)
    dates: list[tuple[str, datetime, datetime]] = field(default_factory=list)
    references: list[tuple[str, str | None, str]] = field(default_factory=list)


def walk(node: Any, path: str) -> Iterator[Any]:
    """Yield every value at a dotted path, descending through lists."""
    if isinstance(node, list):
        for item in node:
            yield from walk(item, path)
        return
    if not path:
        if node is not None:
            yield node
        return
    if not isinstance(node, dict):
        return
    head, _, rest = path.partition(".")
    yield from walk(node.get(head), rest)


def _tokens(value: Any) -> Iterator[tuple[str, str, str | None]]:
    if isinstance(value, bool):
        yield "", "true" if value else "false", None
    elif isinstance(value, str | int):
        yield "", str(value), None
    elif isinstance(value, dict):
        if "coding" in value or ("text" in value and "value" not in value):  # CodeableConcept
            text = value.get("text")
            for coding in value.get("coding", []):
                if coding.get("code"):
                    yield coding.get("system", ""), coding["code"], text or coding.get("display")
            if text and not value.get("coding"):
                yield "", "", text
        elif "value" in value:  # Identifier, ContactPoint
            yield value.get("system", ""), str(value["value"]), None
        elif "code" in value:  # Coding
            yield value.get("system", ""), value["code"], value.get("display")


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):  # HumanName, Address
        for key in ("text", "family", "given", "prefix", "suffix", "line", "city", "postalCode"):
            part = value.get(key)
            if isinstance(part, list):
                yield from (p for p in part if isinstance(p, str))
            elif isinstance(part, str):
                yield part


def _dates(value: Any) -> Iterator[tuple[datetime, datetime]]:
    if isinstance(value, str):
        yield date_range(value)
    elif isinstance(value, dict) and ("start" in value or "end" in value):  # Period
        low = date_range(value["start"])[0] if value.get("start") else OPEN_LOW
        high = date_range(value["end"])[1] if value.get("end") else OPEN_HIGH
        yield low, high


def _references(value: Any) -> Iterator[tuple[str | None, str]]:
    if isinstance(value, dict) and isinstance(value.get("reference"), str):
        value = value["reference"]
    if isinstance(value, str):  # a Reference, or a url naming a resource (Attachment.url)
        split = split_reference(value)
        if split:
            yield split


def _reference_identifier(param: SearchParam, value: Any) -> Iterator[tuple[str, str, None]]:
    """Reference.identifier (logical reference), searched with `<param>:identifier`."""
    if not isinstance(value, dict) or not isinstance(value.get("identifier"), dict):
        return
    if param.targets and value.get("type") not in (None, *param.targets):
        return
    for system, code, _ in _tokens(value["identifier"]):
        yield system, code, None


def _extension_values(content: dict[str, Any], urls: tuple[str, ...]) -> Iterator[Any]:
    """The value[x] of nested extensions found by following `urls` from the root."""
    nodes: list[Any] = [content]
    for url in urls:
        nodes = [e for n in nodes for e in n.get("extension") or [] if e.get("url") == url]
    for node in nodes:
        for key, value in node.items():
            if key.startswith("value"):
                yield value


def _param_values(param: SearchParam, content: dict[str, Any]) -> Iterator[Any]:
    if param.extension:
        yield from _extension_values(content, param.extension)
    for path in param.paths:
        yield from walk(content, path)


def extract_param(param: SearchParam, content: dict[str, Any], into: IndexRows) -> None:
    """Append the index values of one search parameter."""
    for value in _param_values(param, content):
        if param.type == "token":
            into.tokens.extend(
                (param.name, s, c, normalize_string(t) if t else t)  # for :text
                for s, c, t in _tokens(value)
            )
        elif param.type in ("string", "uri"):
            into.strings.extend((param.name, normalize_string(s), s) for s in _strings(value) if s)
        elif param.type == "date":
            into.dates.extend((param.name, lo, hi) for lo, hi in _dates(value))
        elif param.type == "reference":
            refs = _references(value)
            if param.targets:
                refs = ((t, i) for t, i in refs if t in param.targets)
            into.references.extend((param.name, t, i) for t, i in refs)
            into.tokens.extend(
                (f"{param.name}:identifier", s, c, None)
                for s, c, _ in _reference_identifier(param, value)
            )


def extract(rtype: ResourceType, content: dict[str, Any]) -> IndexRows:
    """All index rows for a resource."""
    rows = IndexRows()
    for param in rtype.params:
        extract_param(param, content, rows)
    return rows


def compartment_patient(rtype: ResourceType, content: dict[str, Any]) -> str | None:
    """The Patient id whose compartment this resource belongs to, if any."""
    if rtype.name == "Patient":
        return content.get("id")
    for path in rtype.compartment:
        for value in walk(content, path):
            for target_type, target_id in _references(value):
                if target_type == "Patient":
                    return target_id
    return None


def references_in(node: Any) -> Iterator[dict[str, Any]]:
    """Every Reference-shaped dict anywhere in a resource (for rewriting and checks)."""
    if isinstance(node, dict):
        if isinstance(node.get("reference"), str):
            yield node
        for value in node.values():
            yield from references_in(value)
    elif isinstance(node, list):
        for item in node:
            yield from references_in(item)
