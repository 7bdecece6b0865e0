"""Privacy operations: break-the-glass, `$everything` (right of access), `$explain`.

All three go through the one access policy (access/policy.py): break-the-glass records a
Consent whose access rule the policy reads; `$everything` selects a patient's compartment
under each type's predicate; `$explain` evaluates the policy's own rule tree, rule by rule.
"""

from datetime import timedelta
from typing import Any

import orjson
from sqlalchemy import Text, and_, func, or_, select, true

from espace_api.access import actors, policy
from espace_api.access import vocabulary as v
from espace_api.audit import recorder
from espace_api.auth.identity import Identity
from espace_api.db.schema import resources
from espace_api.fhir import bundles
from espace_api.fhir.errors import FhirError
from espace_api.fhir.registry import REGISTRY
from espace_api.fhir.search import parse_int, split_values
from espace_api.fhir.values import date_range, format_instant
from espace_api.resources import service
from espace_api.resources.results import Result
from espace_api.resources.service import Context
from espace_api.storage import access_repository as rules_repo
from espace_api.storage import repository

BTG_REASON_URL = "https://espace-api.org/fhir/StructureDefinition/break-the-glass-reason"
PURPOSE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
MAX_REASON = 1000
PATIENT = REGISTRY["Patient"]


async def _patient_row(ctx: Context, patient_id: str) -> None:
    """404 unless the Patient exists (whoever may read it)."""
    row = await repository.get_current(ctx.conn, "Patient", patient_id, true())
    if row is None or row.deleted:
        raise FhirError.not_found(f"Patient/{patient_id} not found")


# ---------------------------------------------------------------- break-the-glass


async def break_the_glass(ctx: Context, patient_id: str, reason: str | None) -> Result:
    """A professional's emergency access to a patient's space, justified and traced.

    Refused (403) for callers who are not professionals, for a professional or organisation
    the patient blocked, and when the patient opposed emergency access. Grants, for
    `break_the_glass_minutes`, what a care relationship grants (masked documents stay
    hidden); recorded as a Consent the patient sees and an AuditEvent with purpose BTG.
    """
    identity = ctx.identity
    if identity.kind not in ("user", "system") or not identity.practitioner:
        raise FhirError.forbidden(
            "Only a professional (user, or software acting for a named professional) may "
            "break the glass",
            "BTG_NOT_ALLOWED",
        )
    reason = (reason or "").strip()
    if not reason or len(reason) > MAX_REASON:
        raise FhirError.bad_request(
            f"A break-the-glass access needs a reason (1 to {MAX_REASON} characters)",
            "BTG_REASON_REQUIRED",
        )
    await _patient_row(ctx, patient_id)
    now = ctx.now
    keys = actors.identity_keys(identity)
    blocked = await rules_repo.rules_in_force(ctx.conn, patient_id, (v.BLOCK,), now)
    if any(rule.actor in keys for rule in blocked):
        raise FhirError.forbidden("The patient has blocked this professional", "BLOCKED")
    if await rules_repo.rules_in_force(ctx.conn, patient_id, (v.OPPOSE_BTG,), now):
        raise FhirError.forbidden(
            "The patient has opposed emergency (break-the-glass) access", "BTG_OPPOSED"
        )
    end = now + timedelta(minutes=ctx.settings.break_the_glass_minutes)
    assert identity.practitioner is not None
    consent = {
        "resourceType": "Consent",
        "status": "active",
        "extension": [{"url": BTG_REASON_URL, "valueString": reason}],
        "scope": v.PRIVACY_SCOPE,
        "category": [{"coding": [{"system": v.CONSENT_KIND_SYSTEM, "code": v.BREAK_THE_GLASS}]}],
        "patient": {"reference": f"Patient/{patient_id}"},
        "dateTime": format_instant(now),
        "provision": {
            "type": "permit",
            "period": {"start": format_instant(now), "end": format_instant(end)},
            "actor": [
                {
                    "role": v.RECIPIENT_ROLE,
                    "reference": {
                        "reference": "Practitioner/rpps-"
                        + actors.practitioner_key(identity.practitioner).partition(":")[2]
                    },
                }
            ],
            "purpose": [{"system": PURPOSE_SYSTEM, "code": "BTG", "display": "break the glass"}],
        },
    }
    result = await service.create(ctx, REGISTRY["Consent"], consent, system_write=True)
    await recorder.record(
        ctx.conn,
        ctx.clock,
        identity,
        v.BREAK_THE_GLASS,
        resource_type="Consent",
        resource_id=result.id,
        patient_ids=[patient_id],
        purpose="BTG",
        detail=reason,
    )
    return result


# ---------------------------------------------------------------- $everything


async def everything(ctx: Context, patient_id: str, params: list[tuple[str, str]]) -> Result:
    """`Patient/{id}/$everything`: the compartment's current resources this caller may see,
    paged (`_count`, `_offset`), optionally narrowed by `_type` and `_since`."""
    policy.require_scope(ctx.identity, PATIENT, "r")
    if await repository.get_current(ctx.conn, "Patient", patient_id, ctx.policy(PATIENT)) is None:
        raise FhirError.not_found(f"Patient/{patient_id} not found")
    query = dict(params)
    count = min(
        parse_int("_count", query.get("_count", str(ctx.settings.max_page_size)), 0),
        ctx.settings.max_page_size,
    )
    offset = parse_int("_offset", query.get("_offset", "0"), 0)
    wanted = set(split_values(query["_type"])) if query.get("_type") else None
    types = [
        rt
        for rt in REGISTRY.values()
        if rt.in_patient_compartment
        and ctx.identity.allows(rt.name, "r")
        and (wanted is None or rt.name in wanted)
    ]
    r = resources
    where = [r.c.patient_id == patient_id, r.c.deleted.is_(False)]
    where.append(or_(*(and_(r.c.resource_type == rt.name, ctx.policy(rt)) for rt in types)))
    if query.get("_since"):
        try:
            where.append(r.c.last_updated >= date_range(query["_since"])[0])
        except ValueError:
            raise FhirError.bad_request("Invalid _since", "INVALID_SEARCH") from None
    stmt = (
        select(r.c.resource_type, r.c.id, r.c.content.cast(Text))
        .where(*where)
        .order_by(r.c.resource_type, r.c.last_updated, r.c.id)
        .limit(count)
        .offset(offset)
    )
    rows = (await ctx.conn.execute(stmt)).all()
    total = (await ctx.conn.execute(select(func.count()).select_from(r).where(*where))).scalar_one()
    await recorder.record(
        ctx.conn,
        ctx.clock,
        ctx.identity,
        "everything",
        resource_type="Patient",
        resource_id=patient_id,
        patient_ids=[patient_id],
    )
    entries = [
        bundles.Entry(f"{ctx.base}/{t}/{i}", ctx.render(REGISTRY[t], json), "match")
        for t, i, json in rows
    ]
    kept = [(k, v_) for k, v_ in params if k in ("_type", "_since")]
    body = bundles.bundle(
        "searchset",
        entries,
        total=total,
        links=bundles.page_links(
            f"{ctx.base}/Patient/{patient_id}/$everything", kept, offset, count, total, len(rows)
        ),
        bundle_id=ctx.clock.ids(),
        timestamp=format_instant(ctx.clock.now()),
    )
    return Result(200, body)


# ---------------------------------------------------------------- $explain


def explained_identity(params: dict[str, str]) -> Identity:
    """The actor whose access is explained: `client` (software; with `practitioner` when it
    acts for a professional) or `practitioner` (a professional user), optional
    `organization` (FINESS) and `profession` (national profession code, profession matrix)."""
    client, practitioner = params.get("client"), params.get("practitioner")
    profession = params.get("profession") if practitioner else None
    organization = params.get("organization")
    if organization and not organization.startswith("finess:"):
        organization = f"finess:{organization}"
    if client:
        return Identity(
            kind="system",
            subject=client,
            client_id=client,
            practitioner=practitioner,
            organization=organization,
            profession=profession,
        )
    if practitioner:
        return Identity(
            kind="user",
            subject=practitioner,
            practitioner=practitioner,
            organization=organization,
            profession=profession,
        )
    raise FhirError.bad_request(
        "$explain needs the actor: practitioner=<RPPS> and/or client=<client id>",
        "INVALID_SEARCH",
    )


async def explain(ctx: Context, type_name: str, id_: str, params: dict[str, str]) -> Result:
    """Why the given actor can, or cannot, see `type_name/id_` now: the policy's rule tree
    with each rule's value. Asked by the patient (their own resource) or an operator."""
    rtype = REGISTRY[type_name]
    if ctx.identity.kind not in ("patient", "operator"):
        raise FhirError.forbidden("$explain is for the patient or an operator", "FORBIDDEN")
    own = await repository.get_current(ctx.conn, type_name, id_, ctx.policy(rtype))
    if own is None:
        raise FhirError.not_found(f"{type_name}/{id_} not found")
    actor = explained_identity(params)
    tree = policy.decide(actor, rtype, resources, ctx.now, ctx.policy_settings)
    nodes = list(tree.walk())
    r = resources
    stmt = select(*(node.compile().label(f"r{i}") for i, (_, node) in enumerate(nodes))).where(
        r.c.resource_type == type_name, r.c.id == id_
    )
    values = (await ctx.conn.execute(stmt)).one()
    parts: list[dict[str, Any]] = [
        {"name": "visible", "valueBoolean": bool(values[0])},
        {"name": "actor", "valueString": _describe(actor)},
    ]
    for (depth, node), value in zip(nodes, values, strict=True):
        parts.append(
            {
                "name": "rule",
                "part": [
                    {"name": "code", "valueCode": node.code},
                    {"name": "holds", "valueBoolean": bool(value)},
                    {"name": "depth", "valueInteger": depth},
                    {"name": "description", "valueString": node.text},
                ],
            }
        )
    body = orjson.dumps({"resourceType": "Parameters", "parameter": parts})
    return Result(200, body)


def _describe(identity: Identity) -> str:
    keys = ", ".join(actors.identity_keys(identity)) or "no professional"
    if identity.profession:
        keys += f", profession {identity.profession}"
    if identity.kind == "system":
        return f"software {identity.client_id} ({keys})"
    return f"professional ({keys})"
