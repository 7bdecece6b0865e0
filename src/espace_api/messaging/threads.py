"""`GET /Communication/$threads`: a patient's conversations, one entry per thread.

Each entry is the thread's latest message that the caller may see (the access policy's one
predicate, as for any read), with an extension `message-thread`: `thread` (the first
message), `messages` (visible messages in the thread) and `unread` (those addressed to the
caller, or their organisation, not read yet). Listing does not mark anything read. Audited
as a search of the patient's messages.
"""

from typing import Any

from espace_api.access import policy
from espace_api.audit import recorder
from espace_api.fhir import bundles
from espace_api.fhir.errors import FhirError
from espace_api.fhir.registry import REGISTRY
from espace_api.messaging.participants import viewer
from espace_api.resources.results import Result
from espace_api.resources.service import Context, searchset
from espace_api.storage import message_repository as repo
from espace_api.storage import repository

THREAD_URL = "https://espace-api.org/fhir/StructureDefinition/message-thread"
COMMUNICATION = REGISTRY["Communication"]


def _int(params: dict[str, str], name: str, default: int, maximum: int) -> int:
    text = params.get(name, str(default))
    if not text.isdigit():
        raise FhirError.bad_request(f"{name} must be a non-negative integer", "INVALID_SEARCH")
    return min(int(text), maximum)


async def list_threads(ctx: Context, items: list[tuple[str, str]]) -> Result:
    """The caller's view of a patient's conversations, latest first (`_count`, `_offset`)."""
    policy.require_scope(ctx.identity, COMMUNICATION, "s")
    params = dict(items)
    patient_id = params.get("patient", "").removeprefix("Patient/") or ctx.identity.patient_id
    if not patient_id:
        raise FhirError.bad_request("patient is required", "INVALID_SEARCH")
    s = ctx.settings
    count = _int(params, "_count", s.default_page_size, s.max_page_size)
    offset = _int(params, "_offset", 0, 10**9)
    rows, total = await repo.threads(
        ctx.conn, patient_id, ctx.policy(COMMUNICATION), viewer(ctx.identity), count, offset
    )
    if not total and not await _own_space(ctx, patient_id):
        raise FhirError.not_found(f"No conversation of Patient/{patient_id} found")
    used = [("patient", patient_id)]
    await recorder.record(
        ctx.conn,
        ctx.clock,
        ctx.identity,
        "search",
        resource_type=COMMUNICATION.name,
        patient_ids=[patient_id],
        query=f"$threads&patient={patient_id}",
    )
    entries = [
        bundles.Entry(
            f"{ctx.base}/Communication/{t.latest_id}",
            ctx.render(COMMUNICATION, t.latest_json),
            "match",
            extension=[_thread_extension(t)],
        )
        for t in rows
    ]
    base = f"{ctx.base}/Communication/$threads"
    links = bundles.page_links(base, used, offset, count, total, len(rows))
    return searchset(ctx, entries, total, links)


async def _own_space(ctx: Context, patient_id: str) -> bool:
    """A patient asking about their own space (or a minor's they represent): an empty list
    rather than 404."""
    if ctx.identity.kind not in ("patient", "operator"):
        return False
    patient = REGISTRY["Patient"]
    return bool(
        await repository.visible_ids(ctx.conn, "Patient", [patient_id], ctx.policy(patient))
    )


def _thread_extension(t: repo.Thread) -> dict[str, Any]:
    return {
        "url": THREAD_URL,
        "extension": [
            {"url": "thread", "valueReference": {"reference": f"Communication/{t.thread_id}"}},
            {"url": "messages", "valueUnsignedInt": t.messages},
            {"url": "unread", "valueUnsignedInt": t.unread},
        ],
    }
