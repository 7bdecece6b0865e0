"""Compile a parsed SearchRequest into SQL over the index tables (never JSON paths)."""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    Table,
    Text,
    and_,
    bindparam,
    exists,
    false,
    func,
    literal,
    not_,
    or_,
    select,
    true,
    tuple_,
)
from sqlalchemy.sql.elements import BindParameter

from espace_api.db.schema import (
    patient_ins,
    resources,
    search_date,
    search_reference,
    search_string,
    search_token,
)
from espace_api.fhir.registry import REGISTRY, ResourceType
from espace_api.fhir.search import DATE_PREFIXES, Criterion, Include, SearchRequest, exact_ins
from espace_api.fhir.values import date_range, normalize_string, split_reference
from espace_api.storage import routing

PolicyFn = Callable[[Table], ColumnElement[bool]]
# The access policy of any type (chains, _has, includes): same predicate as the main query.
TypePolicy = Callable[[ResourceType, Table], ColumnElement[bool]]
MAX_INCLUDED = 1000

INDEX_TABLES: dict[str, Table] = {
    "token": search_token,
    "string": search_string,
    "uri": search_string,
    "date": search_date,
    "reference": search_reference,
}


# Building aliases (and their column collections) costs more than running the query, so
# statements reuse pooled aliases: the n-th alias of a table within one statement is always
# the same object, named `<table>_a<n>`. Distinct within a statement, shared across them.
_R: Any = resources.alias("r")
_INC: Any = resources.alias("inc")
_POOL: dict[tuple[str, int], Any] = {}
_COUNTS: ContextVar[dict[str, int] | None] = ContextVar("alias_counts", default=None)


@contextmanager
def _alias_scope() -> Iterator[None]:
    token = _COUNTS.set({})
    try:
        yield
    finally:
        _COUNTS.reset(token)


def _alias(table: Table) -> Any:
    """A fresh alias of `table` for the statement being built."""
    counts = _COUNTS.get()
    if counts is None:  # outside search_statements: a one-off alias
        return table.alias()
    n = counts.get(table.name, 0)
    counts[table.name] = n + 1
    key = (table.name, n)
    if key not in _POOL:
        _POOL[key] = table.alias(f"{table.name}_a{n}")
    return _POOL[key]


# The request's values as named bind parameters (issue 14): within `bound_values`, the value
# k of a criterion's j-th value is `<criterion's path>_<j>_<k>`, so that a statement's SQL
# depends only on the request's shape and storage/search_plan.py compiles it once per shape
# (`shape` names the same parameters, with their values, without building the statement).
_PATHS: ContextVar[dict[int, str] | None] = ContextVar("criterion_paths", default=None)


def _bound(crit: Criterion | None, j: int, k: int, value: Any, column: Any) -> BindParameter[Any]:
    """`value` as a parameter compared with `column`: named after the criterion's path within
    `bound_values`, else an anonymous one."""
    paths = _PATHS.get()
    path = paths.get(id(crit)) if paths is not None and crit is not None else None
    if path is None:
        return literal(value, column.type)
    return bindparam(f"{path}_{j}_{k}", value, type_=column.type)


def _paths(criteria: list[Criterion]) -> dict[int, str]:
    """Each criterion's path (`c0`, `c0h`...: its place in the request, chains within)."""
    out: dict[int, str] = {}

    def walk(crit: Criterion, path: str) -> None:
        out[id(crit)] = path
        if crit.chain is not None:
            walk(crit.chain, path + "h")

    for i, crit in enumerate(criteria):
        walk(crit, f"c{i}")
    return out


def _like_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _split_prefix(value: str) -> tuple[str, str]:
    if value[:2] in DATE_PREFIXES and not value[:2].isdigit():
        return value[:2], value[2:]
    return "eq", value


def _range_match(prefix: str, low: Any, high: Any, sl: Any, sh: Any) -> ColumnElement[bool]:
    """FHIR date prefix semantics on a target [low, high) against search [sl, sh)."""
    cases: dict[str, ColumnElement[bool]] = {
        "eq": and_(low >= sl, high <= sh),
        "ne": not_(and_(low >= sl, high <= sh)),
        "gt": high > sh,
        "lt": low < sl,
        "ge": high > sl,
        "le": low < sh,
        "sa": low >= sh,
        "eb": high <= sl,
        "ap": and_(low < sh, high > sl),
    }
    return cases[prefix]


def _token_parts(value: str, modifier: str | None) -> tuple[str, tuple[Any, ...]]:
    """A token value's form and the parameters it compares with."""
    if modifier == "text":
        # Indexed text is normalised (case and accents); lower() still matches older rows.
        return "text", (_like_escape(normalize_string(value)) + "%",)
    if "|" in value:
        system, _, code = value.partition("|")
        return ("system", (system,)) if not code else ("system|code", (system, code))
    return "code", (value,)


def _token_value(
    t: Table, value: str, modifier: str | None, crit: Criterion | None = None, j: int = 0
) -> ColumnElement[bool]:
    form, params = _token_parts(value, modifier)
    if form == "text":
        return func.lower(t.c.text).like(_bound(crit, j, 0, params[0], t.c.text), escape="\\")
    system = _bound(crit, j, 0, params[0], t.c.system)
    if form == "system":
        return t.c.system == system
    if form == "system|code":
        return and_(t.c.system == system, t.c.code == _bound(crit, j, 1, params[1], t.c.code))
    return t.c.code == _bound(crit, j, 0, params[0], t.c.code)


def _string_parts(value: str, modifier: str | None) -> tuple[str, tuple[Any, ...]]:
    if modifier == "exact":
        return "exact", (value,)
    norm = _like_escape(normalize_string(value))
    return "like", (f"%{norm}%" if modifier == "contains" else f"{norm}%",)


def _string_value(t: Table, crit: Criterion, j: int, value: str) -> ColumnElement[bool]:
    form, (param,) = _string_parts(value, crit.modifier)
    if form == "exact":
        return t.c.exact == _bound(crit, j, 0, param, t.c.exact)
    return t.c.value.like(_bound(crit, j, 0, param, t.c.value), escape="\\")


def _date_parts(value: str) -> tuple[str, tuple[Any, ...]]:
    prefix, body = _split_prefix(value)
    return prefix, date_range(body)


def _date_on(
    low: Any,
    high: Any,
    value: str,
    instant: bool = False,
    crit: Criterion | None = None,
    j: int = 0,
) -> ColumnElement[bool]:
    prefix, (start, end) = _date_parts(value)
    sl, sh = _bound(crit, j, 0, start, low), _bound(crit, j, 1, end, low)
    if instant:  # a point t: [t, t] compared with half-open search range [sl, sh)
        points: dict[str, ColumnElement[bool]] = {
            "eq": and_(low >= sl, low < sh),
            "ne": or_(low < sl, low >= sh),
            "gt": low >= sh,
            "lt": low < sl,
            "ge": low >= sl,
            "le": low < sh,
            "sa": low >= sh,
            "eb": low < sl,
            "ap": and_(low >= sl, low < sh),
        }
        return points[prefix]
    return _range_match(prefix, low, high, sl, sh)


def instant_clause(column: Any, value: str) -> ColumnElement[bool]:
    """A date search value (with its prefix) against an instant column."""
    return _date_on(column, column, value, instant=True)


def _reference_parts(value: str, target_type: str | None) -> tuple[str, tuple[Any, ...]]:
    split = split_reference(value)
    if split is None:
        return "none", ()
    ref_type, ref_id = split
    if ref_type or target_type:
        return "typed", (ref_id, ref_type or target_type)
    return "id", (ref_id,)


def _reference_value(t: Table, crit: Criterion, j: int, value: str) -> ColumnElement[bool]:
    form, params = _reference_parts(value, crit.target_type)
    if form == "none":
        return false()
    clauses = [t.c.target_id == _bound(crit, j, 0, params[0], t.c.target_id)]
    if form == "typed":
        clauses.append(t.c.target_type == _bound(crit, j, 1, params[1], t.c.target_type))
    return and_(*clauses)


def _index_rows(r: Table, t: Table, name: str) -> list[ColumnElement[bool]]:
    """Join conditions from resources alias `r` to index alias `t` for one parameter (the
    patient_id too: on Citus the join stays on the resource's shard, docs/citus.md)."""
    return [
        t.c.patient_id == r.c.patient_id,
        t.c.resource_type == r.c.resource_type,
        t.c.resource_id == r.c.id,
        t.c.param == name,
    ]


def _value_parts(crit: Criterion, value: str) -> tuple[str, tuple[Any, ...]]:
    """A criterion value's form and parameters, by the parameter's type."""
    kind = crit.param.type
    if kind == "token":
        return _token_parts(value, crit.modifier)
    if kind in ("string", "uri"):
        return _string_parts(value, crit.modifier)
    if kind == "date":
        return _date_parts(value)
    return _reference_parts(value, crit.target_type)


def _value_clause(t: Table, crit: Criterion, j: int, value: str) -> ColumnElement[bool]:
    kind = crit.param.type
    if kind == "token":
        return _token_value(t, value, crit.modifier, crit, j)
    if kind in ("string", "uri"):
        return _string_value(t, crit, j, value)
    if kind == "date":
        return _date_on(t.c.low, t.c.high, value, crit=crit, j=j)
    return _reference_value(t, crit, j, value)


def criterion_clause(
    r: Table, crit: Criterion, type_policy: TypePolicy | None = None
) -> ColumnElement[bool]:
    """The WHERE clause of one criterion against resources alias `r`.

    `type_policy` filters the other resources a chain or _has looks at (None: unfiltered).
    """
    name = crit.param.name
    if crit.has_type is not None:
        return _has_clause(r, crit, type_policy)
    if name in ("_id", "_lastUpdated") and crit.modifier == "missing":
        return false() if crit.values[0] == "true" else true()  # every resource has both
    if name == "_id":
        ids = [_bound(crit, j, 0, v, r.c.id) for j, v in enumerate(crit.values)]
        return r.c.id.in_(ids) if crit.modifier != "not" else r.c.id.notin_(ids)
    if name == "_lastUpdated":
        # An instant is the range [t, t]: the same prefix rules as indexed dates.
        lu = r.c.last_updated
        return or_(*(_date_on(lu, lu, v, True, crit, j) for j, v in enumerate(crit.values)))
    if crit.modifier == "identifier":  # Reference.identifier, indexed as tokens
        t = _alias(search_token)
        join = _index_rows(r, t, f"{name}:identifier")
        ors = or_(*(_token_value(t, v, None, crit, j) for j, v in enumerate(crit.values)))
        return exists().where(*join, ors)
    t = _alias(INDEX_TABLES[crit.param.type])
    join = _index_rows(r, t, name)
    if crit.modifier == "missing":
        present = exists().where(*join)
        return not_(present) if crit.values[0] == "true" else present
    if crit.chain is not None:
        return _chain_clause(r, crit, type_policy)
    ors = or_(*(_value_clause(t, crit, j, v) for j, v in enumerate(crit.values)))
    if crit.modifier == "not":
        return not_(exists().where(*join, ors))
    return exists().where(*join, ors)


def _live(t: Table, rtype: ResourceType, type_policy: TypePolicy | None) -> list[Any]:
    """Current, visible resources of one type in alias `t`."""
    clauses = [t.c.resource_type == rtype.name, t.c.deleted.is_(False)]
    if type_policy is not None:
        clauses.append(type_policy(rtype, t))
    return clauses


def _chain_clause(r: Table, crit: Criterion, type_policy: TypePolicy | None) -> ColumnElement[bool]:
    """`subject:Patient.identifier=x`: the reference points at a target matching x."""
    assert crit.chain_type is not None  # by construction
    ref = _alias(search_reference)
    return exists().where(
        ref.c.patient_id == r.c.patient_id,
        ref.c.resource_type == r.c.resource_type,
        ref.c.resource_id == r.c.id,
        ref.c.param == crit.param.name,
        ref.c.target_type == crit.chain_type.name,
        ref.c.target_id.in_(_chained_ids(_alias(resources), crit, type_policy)),
    )


def _chained_ids(target: Any, crit: Criterion, type_policy: TypePolicy | None) -> Select[Any]:
    """Ids of the live, visible resources (alias `target`) a chain's inner criterion
    matches."""
    assert crit.chain is not None and crit.chain_type is not None  # by construction
    return select(target.c.id).where(
        *_live(target, crit.chain_type, type_policy),
        criterion_clause(target, crit.chain, type_policy),
    )


def _has_clause(r: Table, crit: Criterion, type_policy: TypePolicy | None) -> ColumnElement[bool]:
    """`_has:DocumentReference:subject:type=x`: a visible DocumentReference matching
    type=x has a `subject` referencing this resource."""
    assert crit.has_type is not None and crit.chain is not None  # by construction
    other = _alias(resources)
    ref = _alias(search_reference)
    # Uncorrelated: the referencing resources may live on other shards (Citus).
    pointing = select(ref.c.target_type, ref.c.target_id).where(
        ref.c.param == crit.has_ref,
        ref.c.patient_id == other.c.patient_id,
        ref.c.resource_type == other.c.resource_type,
        ref.c.resource_id == other.c.id,
        *_live(other, crit.has_type, type_policy),
        criterion_clause(other, crit.chain, type_policy),
    )
    found: ColumnElement[bool] = tuple_(r.c.resource_type, r.c.id).in_(pointing)
    return found


def _sort_column(r: Table, req: SearchRequest, name: str, desc: bool) -> Any:
    if name == "_lastUpdated":
        return r.c.last_updated
    if name == "_id":
        return r.c.id
    param = req.rtype.by_name[name]
    t = _alias(INDEX_TABLES[param.type])
    key = {
        "date": "high" if desc else "low",
        "string": "value",
        "uri": "value",
        "token": "code",
        "reference": "target_id",
    }[param.type]
    column = t.c[key]  # looked up by name: each index table has only its own columns
    agg = func.max(column) if desc else func.min(column)
    return (
        select(agg)
        .where(
            t.c.patient_id == r.c.patient_id,
            t.c.resource_type == r.c.resource_type,
            t.c.resource_id == r.c.id,
            t.c.param == name,
        )
        .scalar_subquery()
    )


def where_clause(
    r: Table,
    req: SearchRequest,
    policy: ColumnElement[bool],
    type_policy: TypePolicy | None = None,
) -> ColumnElement[bool]:
    """Everything a search filters on: type, liveness, policy, criteria."""
    return and_(
        r.c.resource_type == req.rtype.name,
        r.c.deleted.is_(False),
        policy,
        *(_criterion_or_compartment(r, req.rtype, c, type_policy) for c in req.criteria),
    )


def _criterion_or_compartment(
    r: Table, rtype: ResourceType, crit: Criterion, type_policy: TypePolicy | None
) -> ColumnElement[bool]:
    clause = _compartment_clause(r, rtype, crit, type_policy)
    return clause if clause is not None else criterion_clause(r, crit, type_policy)


_CHAIN_PATIENT: Any = resources.alias("chain_patient")


def _compartment_kind(rtype: ResourceType, crit: Criterion) -> str | None:
    """How a criterion on the reference that puts the resource in a patient's compartment
    is answered: "ins" (an exact INS lookup through a Patient chain), "chain" (another
    Patient chain), "ids" (Patient ids), or None (any other criterion)."""
    if (
        crit.param.type != "reference"
        or crit.has_type is not None
        or crit.modifier not in (None, "Patient")
        or crit.param.paths != rtype.compartment
    ):
        return None
    if crit.chain is not None:
        if crit.chain_type is None or crit.chain_type.name != "Patient":
            return None
        return "ins" if exact_ins(crit.chain) else "chain"
    return "ids" if _compartment_ids(crit) else None


def _compartment_clause(
    r: Table, rtype: ResourceType, crit: Criterion, type_policy: TypePolicy | None
) -> ColumnElement[bool] | None:
    """A criterion on the reference that puts the resource in a patient's compartment
    (DocumentReference `patient`/`subject` ...) as the same condition on `patient_id` (the
    compartment is that reference), or None for any other criterion. It uses the
    resources' patient index, and keeps the plan good when Postgres plans without the values
    (a prepared statement's generic plan otherwise starts from the most common document
    type). A chained Patient criterion uses one fixed alias, so that the Patient policy
    predicate built for it is reused (access/policy.visible)."""
    kind = _compartment_kind(rtype, crit)
    if kind == "ins":  # an exact INS lookup, which the policy grants every caller
        # One equality per INS to a scalar subquery (an INS names at most one Patient):
        # planned without the values, `patient_id IN (SELECT ... FROM patient_ins)` was
        # started from the most common document type's index rows (0.6 s instead of
        # 0.2 ms once a connection's prepared statement went generic).
        assert crit.chain is not None  # by _compartment_kind
        i = patient_ins
        return or_(
            *(
                r.c.patient_id
                == select(i.c.patient_id)
                .where(
                    i.c.system == _bound(crit, j, 0, system, i.c.system),
                    i.c.value == _bound(crit, j, 1, value, i.c.value),
                )
                .scalar_subquery()
                for j, (system, value) in enumerate(exact_ins(crit.chain) or ())
            )
        )
    if kind == "chain":
        return r.c.patient_id.in_(_chained_ids(_CHAIN_PATIENT, crit, type_policy))
    if kind == "ids":
        ids = _compartment_ids(crit) or []
        bound = [_bound(crit, j, 0, v, r.c.patient_id) for j, v in enumerate(ids)]
        return r.c.patient_id.in_(bound)
    return None


def _compartment_ids(crit: Criterion) -> list[str] | None:
    """The Patient ids a compartment criterion names (None: some value names no Patient)."""
    ids = []
    for value in crit.values:
        split = split_reference(value)
        if split is None or (split[0] or crit.target_type or "Patient") != "Patient":
            return None
        ids.append(split[1])
    return ids


def _one_patient(req: SearchRequest) -> str | None:
    """The one patient a search's compartment criterion names, if it names exactly one."""
    for crit in req.criteria:
        if _compartment_kind(req.rtype, crit) == "ids":
            ids = _compartment_ids(crit)
            if ids and len(set(ids)) == 1:
                return ids[0]
    return None


def search_statements(
    req: SearchRequest,
    policy_for: PolicyFn,
    type_policy: TypePolicy | None = None,
    *,
    pin_patient: bool = False,
    named: bool = False,
) -> tuple[Select[Any], Select[Any]]:
    """(page query returning id + JSON text + patient, count query). With `pin_patient`
    (Citus), a search of one patient's compartment names that patient in every subquery
    too, so that it runs on the patient's shard (storage/routing.py). With `named`, the
    request's values are the parameters `shape` names (the SQL depends only on the shape)."""
    r = _R
    paths = _PATHS.set(_paths(req.criteria) if named else None)
    try:
        with _alias_scope():
            where = where_clause(r, req, policy_for(r), type_policy)
            patient = _one_patient(req) if pin_patient else None
            if patient is not None:
                where = routing.pinned(where, r.c.patient_id, literal(patient, Text))
            order = []
            for name, desc in req.sort:
                column = _sort_column(r, req, name, desc)
                if patient is not None:
                    column = routing.replaced(column, r.c.patient_id, literal(patient, Text))
                order.append(column.desc().nulls_last() if desc else column.asc().nulls_last())
    finally:
        _PATHS.reset(paths)
    if not req.sort:
        order.append(r.c.last_updated.asc())
    order.append(r.c.id.asc())
    limit: int | BindParameter[int] = req.count
    offset: int | BindParameter[int] = req.offset
    if named:
        limit, offset = bindparam("page_count", req.count), bindparam("page_offset", req.offset)
    page = (
        select(r.c.id, r.c.content.cast(Text), r.c.patient_id)
        .where(where)
        .order_by(*order)
        .limit(limit)
        .offset(offset)
    )
    count = select(func.count()).select_from(r).where(where)
    return page, count


Shape = tuple[Any, ...]


def shape(req: SearchRequest) -> tuple[Shape, dict[str, Any]]:
    """What the SQL of `search_statements(req, ..., named=True)` depends on (policies
    aside), and the values of the parameters it names, without building it. Each branch
    here follows the builder's (`_criterion_or_compartment`, `criterion_clause`); a
    difference shows in the test suite, which checks every planned search against a fresh
    build (storage/raw.VERIFY)."""
    values: dict[str, Any] = {"page_count": req.count, "page_offset": req.offset}
    criteria = tuple(_shape_of(c, f"c{i}", values, req.rtype) for i, c in enumerate(req.criteria))
    return (req.rtype.name, tuple(req.sort), criteria), values


def _shape_of(
    crit: Criterion, path: str, values: dict[str, Any], rtype: ResourceType | None = None
) -> Shape:
    """One criterion's shape (`rtype`: at the top of the request, where a compartment
    criterion is answered on patient_id); its parameters' values go to `values`."""

    def put(j: int, params: tuple[Any, ...]) -> None:
        for k, value in enumerate(params):
            values[f"{path}_{j}_{k}"] = value

    def forms(parts: Callable[[str], tuple[str, tuple[Any, ...]]]) -> Shape:
        out = []
        for j, value in enumerate(crit.values):
            form, params = parts(value)
            put(j, params)
            out.append(form)
        return tuple(out)

    own = (
        crit.param.name,
        crit.param.type,
        crit.modifier,
        crit.target_type,
        crit.chain_type.name if crit.chain_type else None,
        crit.has_type.name if crit.has_type else None,
        crit.has_ref,
        len(crit.values),
    )
    kind = _compartment_kind(rtype, crit) if rtype is not None else None
    if kind == "ins":
        assert crit.chain is not None  # by _compartment_kind
        pairs = exact_ins(crit.chain) or ()
        for j, pair in enumerate(pairs):
            put(j, pair)
        return (*own, kind, len(pairs))
    if kind == "ids":
        ids = _compartment_ids(crit) or []
        for j, id_ in enumerate(ids):
            put(j, (id_,))
        return (*own, kind)
    name = crit.param.name
    inner = crit.chain
    if inner is not None and (kind == "chain" or crit.has_type is not None):
        return (*own, kind, _shape_of(inner, path + "h", values))
    if crit.modifier == "missing":  # also _id and _lastUpdated's, answered without SQL
        return (*own, crit.values[0] == "true")
    if name == "_id":
        return (*own, forms(lambda v: ("", (v,))))
    if name == "_lastUpdated":
        return (*own, forms(_date_parts))
    if crit.modifier == "identifier":
        return (*own, forms(lambda v: _token_parts(v, None)))
    if inner is not None:
        return (*own, "chain", _shape_of(inner, path + "h", values))
    return (*own, forms(lambda v: _value_parts(crit, v)))


def _by_type(keys: list[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for type_name, id_ in keys:
        out.setdefault(type_name, []).append(id_)
    return out


def include_statement(
    includes: list[Include],
    revincludes: list[Include],
    sources: list[tuple[str, str]],
    type_policy: TypePolicy,
) -> Select[Any] | None:
    """Resources that `sources` (type, id) reference (_include) or that reference them
    (_revinclude), each under its own type's policy: rows (type, id, JSON, patient)."""
    with _alias_scope():
        return _include_statement(includes, revincludes, sources, type_policy)


def _include_statement(
    includes: list[Include],
    revincludes: list[Include],
    sources: list[tuple[str, str]],
    type_policy: TypePolicy,
) -> Select[Any] | None:
    found = _by_type(sources)
    inc = _INC
    branches = []
    for d in includes:
        ids = found.get(d.source.name)
        if not ids:
            continue
        ref = _alias(search_reference)
        conds = [ref.c.resource_type == d.source.name, ref.c.resource_id.in_(ids)]
        if d.param is not None:
            conds.append(ref.c.param == d.param.name)
        targets = (d.target,) if d.target else (d.param.targets if d.param else ()) or REGISTRY
        conds.append(ref.c.target_type.in_(list(targets)))
        # Uncorrelated: the targets may live on other shards (a Practitioner has none).
        linked: ColumnElement[bool] = tuple_(inc.c.resource_type, inc.c.id).in_(
            select(ref.c.target_type, ref.c.target_id).where(*conds)
        )
        visible = or_(*(and_(*_live(inc, REGISTRY[t], type_policy)) for t in targets))
        branches.append(and_(linked, visible))
    for d in revincludes:
        ref = _alias(search_reference)
        pointing = [
            and_(ref.c.target_type == type_name, ref.c.target_id.in_(ids))
            for type_name, ids in found.items()
            if d.target in (None, type_name)
        ]
        if not pointing:
            continue
        conds = [
            ref.c.patient_id == inc.c.patient_id,
            ref.c.resource_type == inc.c.resource_type,
            ref.c.resource_id == inc.c.id,
        ]
        if d.param is not None:
            conds.append(ref.c.param == d.param.name)
        linked = exists().where(*conds, or_(*pointing))
        branches.append(and_(linked, *_live(inc, d.source, type_policy)))
    if not branches:
        return None
    return (
        select(inc.c.resource_type, inc.c.id, inc.c.content.cast(Text), inc.c.patient_id)
        .where(or_(*branches))
        .order_by(inc.c.resource_type, inc.c.id)
        .limit(MAX_INCLUDED)
    )
