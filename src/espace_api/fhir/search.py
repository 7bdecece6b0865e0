"""Search request parsing: query parameters -> a typed SearchRequest (no SQL here)."""

import re
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import orjson

from espace_api.fhir.errors import FhirError
from espace_api.fhir.ins import INS_SYSTEMS
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
    # _has:Type:ref:param -> chain = param on has_type, whose `has_ref` points at us
    has_type: ResourceType | None = None
    has_ref: str | None = None


@dataclass(frozen=True)
class Include:
    """One _include or _revinclude directive: `source:param[:target]`.

    _include follows `param` of `source` resources to what they reference;
    _revinclude adds the `source` resources whose `param` references a result.
    """

    source: ResourceType
    param: SearchParam | None  # None = every reference parameter (`*`)
    target: str | None = None
    iterate: bool = False


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
    include: list[Include] = field(default_factory=list)
    revinclude: list[Include] = field(default_factory=list)
    used: list[tuple[str, str]] = field(default_factory=list)  # kept for the self link
    ignored: list[str] = field(default_factory=list)


def exact_ins(c: "Criterion") -> tuple[tuple[str, str], ...] | None:
    """The (system, value) pairs when `c` is `identifier=INS-system|value[,...]` with no
    modifier, chain, reverse chain or type, else None (the exact INS lookup)."""
    if c.param.name != "identifier" or c.modifier or c.chain or c.has_type or c.target_type:
        return None
    pairs = []
    for value in c.values:
        system, sep, code = value.partition("|")
        if not sep or system not in INS_SYSTEMS or not code:
            return None
        pairs.append((system, code))
    return tuple(pairs)


def split_values(raw: str) -> tuple[str, ...]:
    """Split a comma-separated OR list, honouring backslash escapes."""
    return tuple(v.replace("\\,", ",") for v in _SPLIT.split(raw) if v != "")


def _param_for(rtype: ResourceType, name: str) -> SearchParam | None:
    return SPECIAL.get(name) or rtype.by_name.get(name)


def _criterion(rtype: ResourceType, key: str, raw: str) -> Criterion | None:
    """Build a criterion from `name[:modifier][.chain]=value`; None when unknown."""
    if key.startswith("_has:"):
        return _has_criterion(rtype, key, raw)
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
    if modifier == "missing" and values not in (("true",), ("false",)):
        raise FhirError.bad_request(f"'{key}' takes true or false", "INVALID_SEARCH")
    if param.type == "date" and modifier != "missing":
        for value in values:
            _check_date(key, value)
    return Criterion(param, values, modifier or None, target_type)


def _has_criterion(rtype: ResourceType, key: str, raw: str) -> Criterion:
    """`_has:DocumentReference:subject:type=x`: some DocumentReference whose `subject`
    references this resource has type x (one level; no nested _has)."""
    parts = key.split(":", 3)
    if len(parts) != 4 or parts[1] not in REGISTRY:
        raise FhirError.bad_request(
            f"'{key}' must be _has:Type:reference:parameter", "INVALID_SEARCH"
        )
    has_type = REGISTRY[parts[1]]
    ref = has_type.by_name.get(parts[2])
    if ref is None or ref.type != "reference":
        raise FhirError.bad_request(
            f"'{parts[2]}' is not a reference parameter of {has_type.name}", "INVALID_SEARCH"
        )
    if ref.targets and rtype.name not in ref.targets:
        raise FhirError.bad_request(
            f"{has_type.name}.{parts[2]} cannot reference {rtype.name}", "INVALID_SEARCH"
        )
    inner = None if parts[3].startswith("_has:") else _criterion(has_type, parts[3], raw)
    if inner is None:
        raise FhirError.bad_request(f"Unknown parameter in '{key}'", "INVALID_SEARCH")
    values = split_values(raw)
    return Criterion(
        SearchParam("_has", "reference", ()),
        values,
        has_type=has_type,
        has_ref=ref.name,
        chain=inner,
        chain_type=has_type,
    )


def _include(req: SearchRequest, key: str, raw: str) -> None:
    """Parse `_include[:iterate]=Type:param[:target]` (and _revinclude)."""
    base, _, modifier = key.partition(":")
    if modifier not in ("", "iterate", "recurse"):
        raise FhirError.bad_request(f"Unknown modifier on '{key}'", "INVALID_SEARCH")
    parts = raw.split(":")
    source = REGISTRY.get(parts[0])
    if len(parts) not in (2, 3) or source is None:
        raise FhirError.bad_request(
            f"{base} '{raw}' must be Type:parameter[:targetType]", "INVALID_SEARCH"
        )
    param = None if parts[1] == "*" else source.by_name.get(parts[1])
    if parts[1] != "*" and (param is None or param.type != "reference"):
        raise FhirError.bad_request(
            f"'{parts[1]}' is not a reference parameter of {source.name}", "INVALID_SEARCH"
        )
    target = parts[2] if len(parts) == 3 else None
    if target is not None and target not in REGISTRY:
        raise FhirError.bad_request(f"Unknown target type in '{raw}'", "INVALID_SEARCH")
    directive = Include(source, param, target, iterate=bool(modifier))
    (req.include if base == "_include" else req.revinclude).append(directive)


def _check_date(key: str, value: str) -> None:
    body = value[2:] if value[:2] in DATE_PREFIXES else value
    try:
        date_range(body)
    except ValueError:
        raise FhirError.bad_request(
            f"Invalid date '{value}' for '{key}'", "INVALID_SEARCH"
        ) from None


def parse_int(name: str, raw: str, low: int) -> int:
    """An integer control parameter (>= low), or 400."""
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
        if key.partition(":")[0] in ("_include", "_revinclude"):
            _include(req, key, raw)
            req.used.append((key, raw))
            continue
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
        req.count = min(parse_int("_count", raw, 0), max_count)
    elif key == "_offset":
        req.offset = parse_int("_offset", raw, 0)
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
        req.elements.extend(e.removeprefix(f"{req.rtype.name}.") for e in split_values(raw))


def special_param(name: str) -> SearchParam | None:
    """The SearchParam of a common parameter (_id, _lastUpdated)."""
    return SPECIAL.get(name)


# ---------------------------------------------------------------- _summary and _elements

SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
    "display": "subsetted",
}
_ALWAYS = frozenset({"resourceType", "id", "meta"})


@cache
def _element_sets(rtype: ResourceType) -> tuple[frozenset[str], frozenset[str]]:
    """(summary elements, mandatory elements) of a type, from the model's field metadata."""
    summary, mandatory = set(), set()
    for name, info in rtype.model.model_fields.items():
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        alias = info.alias or name
        if extra.get("summary_element_property"):
            summary.add(alias)
        if extra.get("element_required") or info.is_required():
            mandatory.add(alias)
    return frozenset(summary), frozenset(mandatory)


def subsetting(req: SearchRequest) -> bool:
    """Whether matches must be filtered (only then is their JSON parsed)."""
    return bool(req.elements) or req.summary in ("true", "text", "data")


def subset(req: SearchRequest, json: str) -> str:
    """Filter a stored resource's top-level elements per _summary / _elements."""
    content: dict[str, Any] = orjson.loads(json)
    summary, mandatory = _element_sets(req.rtype)
    keep: frozenset[str] | set[str]
    if req.summary == "data":
        keep = set(content) - {"text"}
    elif req.summary == "text":
        keep = _ALWAYS | mandatory | {"text"}
    elif req.summary == "true":
        keep = _ALWAYS | summary | mandatory
    else:
        keep = _ALWAYS | mandatory | set(req.elements)
    out = {k: v for k, v in content.items() if k in keep or (k[:1] == "_" and k[1:] in keep)}
    return orjson.dumps(mark_subsetted(out)).decode()


def mark_subsetted(content: dict[str, Any]) -> dict[str, Any]:
    """`content` with the SUBSETTED tag in its meta (once: a projection may be subset again)."""
    meta = dict(content.get("meta") or {})
    tags = meta.get("tag", [])
    if not any(t.get("code") == SUBSETTED["code"] for t in tags if isinstance(t, dict)):
        meta["tag"] = [*tags, SUBSETTED]
    content["meta"] = meta
    return content
