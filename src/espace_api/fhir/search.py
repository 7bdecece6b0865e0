"""Search request parsing: query parameters -> a typed SearchRequest (no SQL here)."""

import re
from dataclasses import dataclass, field

from espace_api.fhir.errors import FhirError
from espace_api.fhir.registry import REGISTRY, ResourceType, SearchParam
from espace_api.fhir.values import date_range

CONTROL = {
    "_count",
    "_offset",
    "_sort",
    "_summary",
    "_total",
    "_elements",
    "_include",
    "_revinclude",
    "_format",
    "_pretty",
}
SPECIAL = {
    "_id": SearchParam("_id", "token", ("id",), "Logical id"),
    "_lastUpdated": SearchParam("_lastUpdated", "date", ("meta.lastUpdated",), "Last change"),
}
DATE_PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
MODIFIERS = {
    "token": {"missing", "not", "text", "exact"},
    "string": {"missing", "exact", "contains"},
    "uri": {"missing", "exact", "contains"},
    "date": {"missing"},
    "reference": {"missing", "identifier"},
}
_SPLIT = re.compile(r"(?<!\\),")


@dataclass(frozen=True)
class Criterion:
    """One search parameter with its OR'd values (AND = several criteria)."""

    param: SearchParam
    values: tuple[str, ...]
    modifier: str | None = None
    target_type: str | None = None  # reference type modifier, e.g. subject:Patient
    chain: "Criterion | None" = None  # chained parameter on the referenced type
    chain_type: ResourceType | None = None


@dataclass
class SearchRequest:
    """A parsed search on one resource type."""

    rtype: ResourceType
    criteria: list[Criterion] = field(default_factory=list)
    count: int = 20
    offset: int = 0
    sort: list[tuple[str, bool]] = field(default_factory=list)  # (param, descending)
    summary: str | None = None
    total: str = "accurate"
    elements: list[str] = field(default_factory=list)
    include: list[str] = field(default_factory=list)
    revinclude: list[str] = field(default_factory=list)
    used: list[tuple[str, str]] = field(default_factory=list)  # kept for the self link
    ignored: list[str] = field(default_factory=list)


def split_values(raw: str) -> tuple[str, ...]:
    """Split a comma-separated OR list, honouring backslash escapes."""
    return tuple(v.replace("\\,", ",") for v in _SPLIT.split(raw) if v != "")


def _param_for(rtype: ResourceType, name: str) -> SearchParam | None:
    return SPECIAL.get(name) or rtype.by_name.get(name)


def _criterion(rtype: ResourceType, key: str, raw: str) -> Criterion | None:
    """Build a criterion from `name[:modifier][.chain]=value`; None when unknown."""
    name, _, chain = key.partition(".")
    name, _, modifier = name.partition(":")
    param = _param_for(rtype, name)
    if param is None:
        return None
    values = split_values(raw)
    if not values:
        raise FhirError.bad_request(f"Search parameter '{key}' has no value", "INVALID_SEARCH")
    target_type = None
    if modifier and param.type == "reference" and modifier in REGISTRY:
        target_type, modifier = modifier, ""
    if modifier and modifier not in MODIFIERS.get(param.type, set()):
        raise FhirError.bad_request(
            f"Modifier ':{modifier}' is not supported on '{name}'", "INVALID_SEARCH"
        )
    if chain:
        if param.type != "reference":
            raise FhirError.bad_request(
                f"'{name}' is not a reference: cannot chain", "INVALID_SEARCH"
            )
        targets = (target_type,) if target_type else param.targets
        if len(targets) != 1:
            raise FhirError.bad_request(
                f"Chain on '{name}' needs a target type (e.g. {name}:Patient.{chain})",
                "INVALID_SEARCH",
            )
        chain_rtype = REGISTRY[targets[0]]
        inner = _criterion(chain_rtype, chain, raw)
        if inner is None or inner.chain is not None:
            raise FhirError.bad_request(f"Unknown chained parameter '{key}'", "INVALID_SEARCH")
        return Criterion(param, values, None, chain_rtype.name, inner, chain_rtype)
    if param.type == "date" and modifier != "missing":
        for value in values:
            _check_date(key, value)
    return Criterion(param, values, modifier or None, target_type)


def _check_date(key: str, value: str) -> None:
    body = value[2:] if value[:2] in DATE_PREFIXES else value
    try:
        date_range(body)
    except ValueError:
        raise FhirError.bad_request(
            f"Invalid date '{value}' for '{key}'", "INVALID_SEARCH"
        ) from None


def _int(name: str, raw: str, low: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise FhirError.bad_request(f"{name} must be an integer", "INVALID_SEARCH") from None
    if value < low:
        raise FhirError.bad_request(f"{name} must be >= {low}", "INVALID_SEARCH")
    return value


def parse_search(
    rtype: ResourceType,
    params: list[tuple[str, str]],
    *,
    strict: bool = False,
    default_count: int = 20,
    max_count: int = 100,
) -> SearchRequest:
    """Parse query parameters. Unknown parameters are ignored, or refused when strict."""
    req = SearchRequest(rtype, count=default_count)
    for key, raw in params:
        if key in CONTROL:
            _control(req, key, raw, max_count)
            if key == "_count":
                req.used.append((key, str(req.count)))  # the page size actually used
            elif key not in ("_format", "_pretty", "_offset"):
                req.used.append((key, raw))
            continue
        criterion = _criterion(rtype, key, raw)
        if criterion is None:
            if strict:
                raise FhirError.bad_request(
                    f"Unknown search parameter '{key}' for {rtype.name}", "UNKNOWN_PARAMETER"
                )
            req.ignored.append(key)
            continue
        req.criteria.append(criterion)
        req.used.append((key, raw))
    return req


def _control(req: SearchRequest, key: str, raw: str, max_count: int) -> None:
    if key == "_count":
        req.count = min(_int("_count", raw, 0), max_count)
    elif key == "_offset":
        req.offset = _int("_offset", raw, 0)
    elif key == "_sort":
        for item in split_values(raw):
            desc = item.startswith("-")
            name = item.lstrip("-")
            if _param_for(req.rtype, name) is None:
                raise FhirError.bad_request(f"Cannot sort by '{name}'", "INVALID_SEARCH")
            req.sort.append((name, desc))
    elif key == "_summary":
        if raw not in ("true", "false", "text", "data", "count"):
            raise FhirError.bad_request(f"Invalid _summary '{raw}'", "INVALID_SEARCH")
        req.summary = None if raw == "false" else raw
    elif key == "_total":
        if raw not in ("none", "estimate", "accurate"):
            raise FhirError.bad_request(f"Invalid _total '{raw}'", "INVALID_SEARCH")
        req.total = raw
    elif key == "_elements":
        req.elements.extend(split_values(raw))
    elif key == "_include":
        req.include.append(raw)
    elif key == "_revinclude":
        req.revinclude.append(raw)


def special_param(name: str) -> SearchParam | None:
    """The SearchParam of a common parameter (_id, _lastUpdated)."""
    return SPECIAL.get(name)
