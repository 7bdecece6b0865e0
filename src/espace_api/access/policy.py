"""The one access policy (ARCHITECTURE.md principle 2).

`decide()` builds, for one identity, type and table (resources or resource_versions), a tree
of named rules whose leaves are SQL conditions. `visible()` compiles the tree into the one
predicate every query of resources ANDs in, so totals, paging, includes and history are right
by construction; `$explain` evaluates the same leaves one by one to say why. Scope checks and
write rules live here too.

Who sees what (docs/privacy.md):
- operator: everything.
- patient: their own compartment, except documents labelled INVISIBLE_PATIENT not yet
  released (and the content of those documents); directory types (no compartment) are public.
- software acting for no professional (`system` token without `practitioner`): what it
  created itself (it can deposit, never browse); a Patient only through an exact INS lookup
  (`identifier=system|value`, at most `MAX_LOOKUP` values), and then only its projection.
- a professional (`user` token, or `system` acting for a named professional): nothing of a
  space that blocks them or their organisation; otherwise what they deposited, plus, while a
  care relationship or a break-the-glass access is active (or they work at an emergency call
  centre and the patient has not opposed it), the space's resources, except
  documents masked from professionals (MASQUE_PS, or all documents masked), documents whose
  type the profession matrix keeps from their profession (access/matrix.py), the content of
  those documents, health-profile entries and measurements the patient labelled MASQUE_PS
  (meta.security), and the patient's own privacy choices (Consents other than their own). A
  Patient it has no access to only through an exact INS lookup, projected as for software.
- messages (Communication) are seen by their participants only (docs/messaging.md): the
  patient when the space's Patient is the sender or a recipient; a professional (not
  blocked) when they or their organisation are; whatever the care relationship or
  break-the-glass. A message's attachment (Binary) is seen by the message's participants.
  Subscriptions are the patient's own.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Table,
    and_,
    exists,
    false,
    literal,
    not_,
    or_,
    select,
    true,
    tuple_,
)

from espace_api.access import actors, matrix
from espace_api.access import vocabulary as v
from espace_api.access.matrix import ProfessionMatrix
from espace_api.auth.identity import Identity, Interaction
from espace_api.config import Settings as AppSettings
from espace_api.db.schema import (
    access_rules,
    message_participants,
    patient_ins,
    resource_versions,
    resources,
    search_date,
    search_reference,
)
from espace_api.db.schema import search_token as _search_token
from espace_api.fhir.errors import FhirError
from espace_api.fhir.indexing import references_in
from espace_api.fhir.registry import REGISTRY, ResourceType
from espace_api.fhir.search import SearchRequest, exact_ins
from espace_api.fhir.values import split_reference

INTERACTION_NAMES = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}
DOCREF, BINARY, COMMUNICATION = "DocumentReference", "Binary", "Communication"

# Fixed aliases for the policy's own subqueries (building aliases per request is costly);
# never the outer query's tables, so correlation always targets the row being decided.
_RULE = access_rules.alias("pol_rule")
_LABEL = _search_token.alias("pol_label")
_FIRST = resource_versions.alias("pol_first")
_OWNER = resources.alias("pol_owner")
_DOC = resources.alias("pol_doc")
_DOC_REF = search_reference.alias("pol_doc_ref")
_INS = patient_ins.alias("pol_ins")
_REP = resources.alias("pol_rep")
_REP_ROLE = _search_token.alias("pol_rep_role")
_REP_ID = _search_token.alias("pol_rep_id")
_REP_INS = patient_ins.alias("pol_rep_ins")
_BIRTH = search_date.alias("pol_birth")
_PART = message_participants.alias("pol_part")
_ATT = search_reference.alias("pol_att")
_CATEGORY = _search_token.alias("pol_category")

#: An exact INS lookup: the (system, value) pairs a Patient search names.
Lookup = tuple[tuple[str, str], ...]
MAX_LOOKUP = 10  # INS values in one lookup (a comma list), so that no query walks the table
#: What a lookup may carry besides `identifier` (none of them widens what matches).
LOOKUP_CONTROLS = frozenset({"_count", "_offset", "_summary", "_elements", "_total", "_format"})


@dataclass(frozen=True)
class Rule:
    """One named step of an access decision: a SQL condition, or all / any of sub-rules."""

    code: str
    text: str
    sql: ColumnElement[bool] | None = None
    all_of: tuple["Rule", ...] = ()
    any_of: tuple["Rule", ...] = ()

    def compile(self) -> ColumnElement[bool]:
        """The SQL predicate of this rule."""
        if self.sql is not None:
            return self.sql
        if self.all_of:
            return and_(*(r.compile() for r in self.all_of))
        return or_(*(r.compile() for r in self.any_of))

    def walk(self, depth: int = 0) -> Iterator[tuple[int, "Rule"]]:
        """Every rule of the tree with its depth, parents first."""
        yield depth, self
        for child in (*self.all_of, *self.any_of):
            yield from child.walk(depth + 1)


@dataclass(frozen=True)
class Settings:
    """Policy settings taken from the application's Settings (durations, the matrix)."""

    invisible_patient_release: timedelta | None = None  # None: only a professional releases
    matrix: ProfessionMatrix | None = None  # None: no profession restricts document types
    call_centres: frozenset[str] = frozenset()  # organisation keys (finess:<n>) of SAMU-C15


def settings_from(app_settings: AppSettings) -> Settings:
    """The policy's settings from the application's (the matrix file is read once; the
    result is kept per application settings object)."""
    hit = _SETTINGS.get(id(app_settings))
    if hit is not None and hit[0] is app_settings:
        return hit[1]
    made = _settings_from(app_settings)
    if len(_SETTINGS) >= 64:
        _SETTINGS.clear()
    _SETTINGS[id(app_settings)] = (app_settings, made)
    return made


_SETTINGS: dict[int, tuple[AppSettings, Settings]] = {}


def _settings_from(app_settings: AppSettings) -> Settings:
    days = app_settings.invisible_patient_release_days
    path = app_settings.profession_matrix_file
    centres = (n.strip() for n in app_settings.emergency_call_centres.split(","))
    return Settings(
        invisible_patient_release=timedelta(days=days) if days > 0 else None,
        matrix=matrix.load(Path(path) if path else matrix.DEFAULT_PATH),
        call_centres=frozenset(f"finess:{n.removeprefix('finess:')}" for n in centres if n),
    )


# Parts of the predicates that name no caller (a row's labels, a patient's rules for anyone,
# a profession's document types): built once per table object and moment, shared by this
# second's callers' predicates, cleared with them. They were about half of building a
# doctor's predicate (2.5 ms), paid once per caller and second.
_PARTS: dict[tuple[Any, ...], tuple[Any, ColumnElement[bool]]] = {}
_PARTS_MAX = 4096


def _part(
    on: Any, key: tuple[Any, ...], build: Callable[[], ColumnElement[bool]]
) -> ColumnElement[bool]:
    """`build()` for the table or column object `on`, once per `key` (kept with `on` and
    compared by identity, as the predicates are)."""
    full = (id(on), *key)
    hit = _PARTS.get(full)
    if hit is not None and hit[0] is on:
        return hit[1]
    found = build()
    if len(_PARTS) < _PARTS_MAX:
        _PARTS[full] = (on, found)
    return found


def _rule_exists(
    patient: Any, kinds: tuple[str, ...], keys: tuple[str, ...] | None, now: datetime
) -> ColumnElement[bool]:
    """An access rule of one of `kinds` (for one of the actor `keys`) in force at `now`."""
    if keys is None:  # for anyone: shared
        return _part(
            patient, ("rule", kinds, now), lambda: _rule_in_force(patient, kinds, None, now)
        )
    return _rule_in_force(patient, kinds, keys, now)


def _rule_in_force(
    patient: Any, kinds: tuple[str, ...], keys: tuple[str, ...] | None, now: datetime
) -> ColumnElement[bool]:
    r = _RULE
    clauses = [r.c.patient_id == patient, r.c.kind.in_(kinds)]
    if keys is not None:
        if not keys:
            return false()
        clauses.append(r.c.actor.in_(keys))
    clauses += [
        or_(r.c.period_start.is_(None), r.c.period_start <= now),
        or_(r.c.period_end.is_(None), r.c.period_end > now),
    ]
    return exists().where(*clauses)


def _labelled(row: Any, code: str) -> ColumnElement[bool]:
    """The current version of the resource `row` (a resources or versions table or alias)
    carries visibility label `code`. Subqueries name the row's patient_id too, so that on
    Citus they stay on the row's shard (docs/citus.md)."""
    t = _LABEL
    return _part(
        row,
        ("labelled", code),
        lambda: exists().where(
            t.c.patient_id == row.c.patient_id,
            t.c.resource_type == row.c.resource_type,
            t.c.resource_id == row.c.id,
            t.c.param == "security-label",
            t.c.system == v.VISIBILITY_SYSTEM,
            t.c.code == code,
        ),
    )


def _unannounced(row: Any, now: datetime, s: Settings) -> ColumnElement[bool]:
    """Labelled INVISIBLE_PATIENT and not yet released by the delay (if one is set)."""
    labelled = _labelled(row, v.INVISIBLE_PATIENT)
    if s.invisible_patient_release is None:
        return labelled
    f = _FIRST
    recent = exists().where(
        f.c.patient_id == row.c.patient_id,
        f.c.resource_type == row.c.resource_type,
        f.c.id == row.c.id,
        f.c.version_id == 1,
        f.c.last_updated > now - s.invisible_patient_release,
    )
    return and_(labelled, recent)


def _created_by(table: Table, actor: str) -> ColumnElement[bool]:
    """The resource was created by `actor` (from the current row for a versions table)."""
    c = table.c
    if "created_by" in c:
        return c.created_by == actor
    o = _OWNER
    return exists().where(
        o.c.patient_id == c.patient_id,
        o.c.resource_type == c.resource_type,
        o.c.id == c.id,
        o.c.created_by == actor,
    )


def _documents_of(table: Table, condition: Any) -> ColumnElement[bool]:
    """A live DocumentReference of the same patient whose content is this Binary and for
    which `condition(doc_alias)` holds."""
    c, d, ref = table.c, _DOC, _DOC_REF
    return exists().where(
        ref.c.patient_id == c.patient_id,
        ref.c.resource_type == DOCREF,
        ref.c.param == "binary",
        ref.c.target_type == BINARY,
        ref.c.target_id == c.id,
        d.c.resource_type == DOCREF,
        d.c.id == ref.c.resource_id,
        d.c.patient_id == c.patient_id,
        d.c.deleted.is_(False),
        condition(d),
    )


def _takes_part(table: Table, actor: Any) -> ColumnElement[bool]:
    """The message (this row) names `actor` (a SQL condition on the participant's actor
    key) as its sender or a recipient."""
    c, p = table.c, _PART
    return exists().where(p.c.patient_id == c.patient_id, p.c.message_id == c.id, actor(p))


def _attached_to_message(table: Table, keys: tuple[str, ...]) -> ColumnElement[bool]:
    """This Binary is the attachment of a live message of the same patient that names one
    of `keys` as a participant."""
    if not keys:
        return false()
    c, ref, p = table.c, _ATT, _PART
    return exists().where(
        ref.c.param == "attachment",
        ref.c.target_id == c.id,
        ref.c.target_type == BINARY,
        ref.c.resource_type == COMMUNICATION,
        ref.c.patient_id == c.patient_id,
        p.c.patient_id == c.patient_id,
        p.c.message_id == ref.c.resource_id,
        p.c.actor.in_(keys),
    )


ALLOW = Rule("operator", "operators see everything", true())
DIRECTORY = Rule("directory", "directory resources (no patient compartment) are public", true())


def decide(
    identity: Identity,
    rtype: ResourceType,
    table: Table,
    now: datetime,
    settings: Settings = Settings(),
    lookup: Lookup | None = None,
) -> Rule:
    """The access decision for rows of `rtype` in `table` (resources or resource_versions);
    `lookup`: the INS pairs of an exact Patient lookup being answered (see `patient_lookup`).
    Granular scopes (`...rs?category=system|code`) limit it to the categories they name."""
    decision = _decide(identity, rtype, table, now, settings, lookup)
    categories = identity.scopes.categories(identity.scope_context, rtype.name)
    if categories is None or identity.kind == "operator":
        return decision
    granted = Rule(
        "scope-category",
        "the resource has a category that the token's granular scopes name",
        _in_categories(table, categories),
    )
    return Rule("granular-scope", decision.text, all_of=(decision, granted))


def _in_categories(table: Table, categories: tuple[tuple[str, str], ...]) -> ColumnElement[bool]:
    """The current version of the resource has one of `categories` (system "" = any)."""
    t, c = _CATEGORY, table.c
    return exists().where(
        t.c.patient_id == c.patient_id,  # stays on the row's shard on Citus
        t.c.resource_type == c.resource_type,
        t.c.resource_id == c.id,
        t.c.param == "category",
        or_(
            *(
                and_(t.c.code == code, t.c.system == system if system else true())
                for system, code in categories
            )
        ),
    )


def _decide(
    identity: Identity,
    rtype: ResourceType,
    table: Table,
    now: datetime,
    settings: Settings,
    lookup: Lookup | None,
) -> Rule:
    if identity.kind == "operator":
        return ALLOW
    if identity.kind == "patient":
        return _patient(identity, rtype, table, now, settings)
    if is_software(identity):
        return _software(identity, rtype, table, lookup)
    return _professional(identity, rtype, table, now, settings, lookup)


def is_software(identity: Identity) -> bool:
    """A machine acting for no named professional: it deposits, never browses."""
    return identity.kind == "system" and not identity.practitioner


def _minus_years(now: datetime, years: int) -> datetime:
    try:
        return now.replace(year=now.year - years)
    except ValueError:  # 29 February
        return now.replace(year=now.year - years, day=28)


def _represents(identity: Identity, patient: Any, now: datetime) -> ColumnElement[bool]:
    """The space's person is a minor whose legal representative is the caller: a
    RelatedPerson of that space with a legal-representative relationship names one of the
    caller's INS, and the person was born less than 18 years before `now`. An uncorrelated
    `IN` (the caller's represented minors, found once), so that a patient's queries keep
    using the patient_id indexes."""
    if not identity.patient_id:
        return false()
    rp, role, rid, ins, birth = _REP, _REP_ROLE, _REP_ID, _REP_INS, _BIRTH
    minors = select(rp.c.patient_id).where(
        rp.c.resource_type == "RelatedPerson",
        rp.c.deleted.is_(False),
        role.c.patient_id == rp.c.patient_id,
        role.c.resource_type == "RelatedPerson",
        role.c.resource_id == rp.c.id,
        role.c.param == "relationship",
        role.c.system == v.ROLE_CODE_SYSTEM,
        role.c.code.in_(v.LEGAL_REPRESENTATIVE_CODES),
        rid.c.patient_id == rp.c.patient_id,
        rid.c.resource_type == "RelatedPerson",
        rid.c.resource_id == rp.c.id,
        rid.c.param == "identifier",
        ins.c.patient_id == identity.patient_id,
        ins.c.system == rid.c.system,
        ins.c.value == rid.c.code,
        birth.c.patient_id == rp.c.patient_id,
        birth.c.resource_type == "Patient",
        birth.c.resource_id == rp.c.patient_id,
        birth.c.param == "birthdate",
        birth.c.low > _minus_years(now, v.AGE_OF_MAJORITY),
    )
    found: ColumnElement[bool] = patient.in_(minors)
    return found


def _patient(
    identity: Identity, rtype: ResourceType, table: Table, now: datetime, s: Settings
) -> Rule:
    if not rtype.in_patient_compartment:
        return DIRECTORY
    c = table.c
    mine = c.patient_id == identity.patient_id if identity.patient_id else false()
    own = Rule(
        "own-space",
        "the resource belongs to the caller's own space, or to the space of a minor they "
        "legally represent (until the minor turns 18)",
        any_of=(
            Rule("self", "the caller's own space", mine),
            Rule(
                "legal-representative",
                "the caller is the legal representative (a RelatedPerson of the space naming "
                "their INS) of the space's person, who is under 18",
                _represents(identity, c.patient_id, now),
            ),
        ),
    )

    def hidden_from_representative(d: Any) -> ColumnElement[bool]:
        return and_(
            d.c.patient_id != identity.patient_id if identity.patient_id else true(),
            _labelled(d, v.INVISIBLE_REPRESENTANTS_LEGAUX),
        )

    if rtype.name == DOCREF:
        announced = Rule(
            "announced",
            "the document is not labelled INVISIBLE_PATIENT (or has been released)",
            not_(_unannounced(table, now, s)),
        )
        not_hidden = Rule(
            "not-hidden-from-representatives",
            "the caller's own document, or one not labelled INVISIBLE_REPRESENTANTS_LEGAUX",
            not_(hidden_from_representative(table)),
        )
        return Rule(
            "patient", "a patient sees their own space", all_of=(own, announced, not_hidden)
        )
    if rtype.name == COMMUNICATION:
        part = Rule(
            "message-participant",
            "the space's person is the message's sender or one of its recipients",
            _takes_part(table, lambda p: p.c.actor == literal("patient:") + c.patient_id),
        )
        return Rule("patient", "a patient sees the messages they take part in", all_of=(own, part))
    if rtype.name == BINARY:
        announced = Rule(
            "content-announced",
            "the content belongs to no document still hidden from the patient (or, for a "
            "legal representative, labelled INVISIBLE_REPRESENTANTS_LEGAUX)",
            not_(
                _documents_of(
                    table,
                    lambda d: or_(
                        _unannounced(d, now, s),
                        hidden_from_representative(d),
                    ),
                )
            ),
        )
        return Rule("patient", "a patient sees their own space", all_of=(own, announced))
    return own


def _software(identity: Identity, rtype: ResourceType, table: Table, lookup: Lookup | None) -> Rule:
    if rtype.name == "Patient":
        return _patient_lookup(table, lookup) or Rule(
            "no-browse", "software finds a Patient by exact INS lookup only", false()
        )
    return Rule(
        "author",
        "software sees what it deposited, and nothing else",
        _created_by(table, identity.actor),
    )


def _professional(
    identity: Identity,
    rtype: ResourceType,
    table: Table,
    now: datetime,
    s: Settings,
    lookup: Lookup | None,
) -> Rule:
    if not rtype.in_patient_compartment:
        return DIRECTORY
    c = table.c
    keys = actors.identity_keys(identity)
    person = tuple(k for k in keys if k.startswith("practitioner:"))
    not_blocked = _not_blocked(identity, table, now)
    if rtype.name == COMMUNICATION:
        part = Rule(
            "message-participant",
            "the professional or their organisation is the message's sender or a recipient "
            "(care relationships and break-the-glass do not open messages)",
            _takes_part(table, lambda p: p.c.actor.in_(keys)) if keys else false(),
        )
        return Rule(
            "professional",
            "a professional sees the messages they take part in",
            all_of=(not_blocked, part),
        )
    author = Rule("author", "the caller deposited it", _created_by(table, identity.actor))
    care = Rule(
        "care-relationship",
        "an access authorisation (care relationship) is in force for this professional",
        _rule_exists(c.patient_id, (v.CARE_RELATIONSHIP,), keys, now),
    )
    btg = Rule(
        "break-the-glass",
        "an emergency (break-the-glass) access is in force for this professional, and the "
        "patient has not opposed emergency access",
        and_(
            _rule_exists(c.patient_id, (v.BREAK_THE_GLASS,), person, now),
            not_(_rule_exists(c.patient_id, (v.OPPOSE_BTG,), None, now)),
        ),
    )
    samu = Rule(
        "emergency-call-centre",
        "the professional works at an emergency call centre (SAMU-Centre 15), and the patient "
        "has not opposed its access",
        and_(
            true() if identity.organization in s.call_centres else false(),
            not_(_rule_exists(c.patient_id, (v.OPPOSE_SAMU,), None, now)),
        ),
    )
    access = Rule("access", "the professional has access to this space", any_of=(care, btg, samu))
    shared = _shared(identity, rtype, table, now, s.matrix)
    through = Rule("shared", "shared with this professional", all_of=(access, shared))
    attachment = None
    if rtype.name == BINARY:
        attachment = Rule(
            "message-attachment",
            "the content is attached to a message the professional or their organisation "
            "takes part in",
            _attached_to_message(table, keys),
        )
    ways = (author, through, *filter(None, [attachment, _patient_lookup(table, lookup)]))
    return Rule(
        "professional",
        "a professional sees what they deposited, or what the space shares with them",
        all_of=(not_blocked, Rule("sees", "deposited or shared", any_of=ways)),
    )


def _not_masked(row: Any, now: datetime) -> ColumnElement[bool]:
    return and_(
        not_(_labelled(row, v.MASQUE_PS)),
        not_(_rule_exists(row.c.patient_id, (v.MASK_ALL,), None, now)),
    )


def _readable_type(identity: Identity, row: Any, m: ProfessionMatrix | None) -> ColumnElement[bool]:
    """The document's type is not one the matrix keeps from the caller's profession."""
    forbidden = m.forbidden(identity.profession) if m is not None else ()
    if not forbidden:
        return true()
    t = _LABEL
    return _part(
        row,
        ("readable-type", m, identity.profession),
        lambda: not_(
            exists().where(
                t.c.patient_id == row.c.patient_id,
                t.c.resource_type == row.c.resource_type,
                t.c.resource_id == row.c.id,
                t.c.param == "type",
                tuple_(t.c.system, t.c.code).in_(forbidden),
            )
        ),
    )


def _shared(
    identity: Identity,
    rtype: ResourceType,
    table: Table,
    now: datetime,
    m: ProfessionMatrix | None,
) -> Rule:
    """What a space with access shares of one type."""
    if rtype.name == DOCREF:
        not_masked = Rule(
            "not-masked",
            "the document is not hidden from professionals (MASQUE_PS, or all documents)",
            _not_masked(table, now),
        )
        if m is None:
            return not_masked
        profession = Rule(
            "profession-matrix",
            f"the profession matrix {m.version} lets {m.describe(identity.profession)} read "
            "this document type",
            _readable_type(identity, table, m),
        )
        return Rule("shareable", "shared with professionals", all_of=(not_masked, profession))
    if rtype.name == BINARY:
        return Rule(
            "content-of-shared-document",
            "the content belongs to a document not hidden from professionals (nor kept from "
            "the caller's profession by the profession matrix)",
            _documents_of(
                table,
                lambda d: and_(
                    _not_masked(d, now),
                    _readable_type(identity, d, m),
                ),
            ),
        )
    if rtype.name == "Consent":
        return Rule("private", "a patient's privacy choices are theirs only", false())
    if rtype.name == "Subscription":
        return Rule("private", "a patient's notification settings are theirs only", false())
    if "security-label" in rtype.by_name:  # health profile entries, measurements
        return Rule(
            "entry-not-masked",
            "the entry is not hidden from professionals (MASQUE_PS in meta.security)",
            not_(_labelled(table, v.MASQUE_PS)),
        )
    return Rule("space", "the space's other resources", true())


def _patient_lookup(table: Table, lookup: Lookup | None) -> Rule | None:
    """A Patient named by the exact INS lookup being answered (its projection only)."""
    if not lookup:
        return None
    i = _INS
    return Rule(
        "patient-lookup",
        "the Patient carries an INS the caller named exactly (identifier=system|value)",
        exists().where(i.c.patient_id == table.c.id, tuple_(i.c.system, i.c.value).in_(lookup)),
    )


def patient_lookup(identity: Identity, req: SearchRequest) -> Lookup | None:
    """The INS pairs when `req` is an exact Patient lookup (None otherwise). A machine token
    (`system`, whether or not it names a professional) may search Patient in no other way:
    403 `PATIENT_LOOKUP_ONLY`."""
    if req.rtype.name != "Patient" or identity.kind in ("operator", "patient"):
        return None
    pairs, problem = _exact_lookup(req)
    if problem and identity.kind == "system":
        raise FhirError.forbidden(
            f"Software may search Patient only by exact INS: {problem}", "PATIENT_LOOKUP_ONLY"
        )
    return pairs


def _exact_lookup(req: SearchRequest) -> tuple[Lookup | None, str | None]:
    """(pairs, None) for `identifier=system|value[,...]` and nothing that widens what it
    matches; else (None, why not). `_include`/`_revinclude` are allowed: what they add goes
    through the policy like any read."""
    wanted = "one identifier=system|value parameter (an INS system), no modifier, chain or _has"
    if len(req.criteria) != 1 or req.sort:
        return None, wanted + ", no _sort"
    pairs = exact_ins(req.criteria[0])
    if pairs is None:
        return None, wanted
    if len(pairs) > MAX_LOOKUP:
        return None, f"at most {MAX_LOOKUP} INS values in one lookup"
    extra = {k.partition(":")[0] for k, _ in req.used if k != "identifier"}
    extra -= LOOKUP_CONTROLS | {"_include", "_revinclude"}
    if extra:
        return None, f"parameters not allowed in a lookup: {', '.join(sorted(extra))}"
    return pairs, None


def chain_lookup(req: SearchRequest) -> Lookup | None:
    """INS pairs named by chains to Patient (`patient.identifier=system|value`): the chained
    Patients are looked up, so software finds its own documents by INS (IHE MHD ITI-67)."""
    pairs: list[tuple[str, str]] = []
    for c in req.criteria:
        if c.chain is None or c.chain_type is None or c.chain_type.name != "Patient":
            continue
        found = exact_ins(c.chain)
        if found and len(found) <= MAX_LOOKUP:
            pairs += found
    return tuple(pairs) or None


def space_open_to(identity: Identity, table: Table, now: datetime) -> ColumnElement[bool]:
    """Patients (rows of `table`) whose space this caller may write into: every space but
    one that blocks this professional or their organisation (the write rules of each type
    decide the rest)."""
    if identity.kind in ("operator", "patient") or is_software(identity):
        return true()
    return _not_blocked(identity, table, now).compile()


def _not_blocked(identity: Identity, table: Table, now: datetime) -> Rule:
    keys = actors.identity_keys(identity)
    return Rule(
        "not-blocked",
        "the patient has not blocked this professional or their organisation",
        not_(_rule_exists(table.c.patient_id, (v.BLOCK,), keys, now)),
    )


def blocking_none_of(keys: tuple[str, ...], table: Table, now: datetime) -> ColumnElement[bool]:
    """Patients (rows of `table`) who block none of the actor `keys` (a message's sender:
    software posting for an organisation is refused by a space that blocks it)."""
    return not_(_rule_exists(table.c.patient_id, (v.BLOCK,), keys, now)) if keys else true()


def visible(
    identity: Identity,
    rtype: ResourceType,
    table: Table,
    now: datetime,
    settings: Settings = Settings(),
    lookup: Lookup | None = None,
) -> ColumnElement[bool]:
    """SQL predicate: rows of `rtype` in `table` (resources or resource_versions) this
    identity may see at `now` (answering the exact Patient `lookup`, if any).

    Built once per identity, type, table and second: `now` is rounded up to the next whole
    second, so a client's requests within one second share the predicate (a rule that
    starts within that second is in force, one that ends within it is over; a right just
    granted is seen at once). Nothing of the data is cached, only the condition."""
    second = now.replace(microsecond=0)
    if second != now:
        second += timedelta(seconds=1)
    # Keyed by the objects themselves (kept in the entry and compared): the authenticator
    # hands out one Identity per token, and the predicate is bound to this very table or
    # alias (a predicate built for another alias of the same name would not correlate).
    # Only the current second's predicates are kept: older ones are never asked again, and
    # a long soak showed old entries piling up (memory, and collector time on big trees).
    # A clock set back by more than a minute starts the cache again.
    global _SECOND
    if _SECOND is None or second > _SECOND or second < _SECOND - timedelta(minutes=1):
        _PREDICATES.clear()
        _PARTS.clear()
        _SECOND = second
    key = (id(identity), rtype.name, id(table), second, settings, lookup)
    hit = _PREDICATES.get(key)
    if hit is not None and hit[0] is identity and hit[1] is table:
        return hit[2]
    found = decide(identity, rtype, table, second, settings, lookup).compile()
    if second == _SECOND and len(_PREDICATES) < _PREDICATES_MAX:
        _PREDICATES[key] = (identity, table, found)
    return found


_PREDICATES: dict[tuple[Any, ...], tuple[Identity, Table, ColumnElement[bool]]] = {}
_PREDICATES_MAX = 4096
_SECOND: datetime | None = None


def represented(identity: Identity, now: datetime) -> ColumnElement[bool] | None:
    """For a patient, the condition on `resources` rows of Patients whose space they act for
    as a legal representative (None for other callers)."""
    if identity.kind != "patient" or not identity.patient_id:
        return None
    return _represents(identity, resources.c.id, now)


def require_scope(identity: Identity, rtype: ResourceType, interaction: Interaction) -> None:
    """403 unless a granted scope covers this interaction on this type."""
    if not identity.allows(rtype.name, interaction):
        raise FhirError.forbidden(
            f"Token scopes do not allow {INTERACTION_NAMES[interaction]} on {rtype.name}",
            "INSUFFICIENT_SCOPE",
            headers={"WWW-Authenticate": 'Bearer error="insufficient_scope"'},
        )


def visible_any(
    identity: Identity,
    table: Table,
    now: datetime,
    settings: Settings = Settings(),
    interaction: Interaction = "r",
) -> ColumnElement[bool]:
    """Cross-type predicate (system-level history): OR over the registered types whose scope
    covers `interaction`, each with its own `visible()`. 403 when no type is covered."""
    allowed = [rt for rt in REGISTRY.values() if identity.allows(rt.name, interaction)]
    if not allowed:
        raise FhirError.forbidden(
            f"Token scopes do not allow {INTERACTION_NAMES[interaction]} on any type",
            "INSUFFICIENT_SCOPE",
        )
    return or_(
        *(
            and_(table.c.resource_type == rt.name, visible(identity, rt, table, now, settings))
            for rt in allowed
        )
    )


def check_write(
    identity: Identity,
    rtype: ResourceType,
    patient_id: str | None,
    content: dict[str, Any],
    acting_for: str | None = None,
) -> None:
    """Write rules that depend on the content: a patient writes only into their own space,
    or into the space of the minor they legally represent (`acting_for`, found by the
    caller with `represented`)."""
    if identity.kind != "patient":
        return
    spaces = {identity.patient_id, acting_for} - {None}
    if rtype.in_patient_compartment and patient_id not in spaces:
        raise FhirError.forbidden(
            "A patient may only write resources of their own space", "OTHER_PATIENT"
        )
    if not rtype.in_patient_compartment:
        raise FhirError.forbidden(f"Patients may not write {rtype.name}", "FORBIDDEN_TYPE")
    for ref in references_in(content):
        split = split_reference(ref["reference"])
        if split and split[0] == "Patient" and split[1] not in spaces:
            raise FhirError.forbidden(
                "A patient may not reference another patient", "OTHER_PATIENT"
            )
