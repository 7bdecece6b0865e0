"""Binary over HTTP with its own bytes: `POST /Binary` streamed in, `GET /Binary/{id}` out.

- `POST /Binary` with the document's Content-Type (e.g. application/pdf) and
  `X-Security-Context: Patient/{id}`: the body is streamed to the blob store, hashed and
  checked on the way (allow-list 415, magic numbers 422, size 413), then the Binary is
  created and linked to its blob in one transaction. With `application/fhir+json`, a Binary
  resource whose `data` is moved to the blob store.
- `GET /DocumentReference/$deposit-status?masterIdentifier=system|value,...`: deposit
  receipts (documents/receipts.py).
- `GET /Binary/{id}` (and `/_history/{vid}`): the raw bytes with the Binary's Content-Type,
  `Accept-Ranges: bytes`, single `Range` requests (206, 416), `If-Range`; with
  `Accept: application/fhir+json`, the Binary resource with `data` inlined.
Access control, audit and versioning are the resource service's (`service.create/read/vread`).
"""

import base64
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse

from espace_api.access import policy
from espace_api.api.fhir_routes import SECURED
from espace_api.api.http import (
    FHIR_JSON,
    JSON_TYPES,
    check_accept,
    context,
    read_resource,
    run,
    settings_of,
    to_response,
)
from espace_api.auth.dependency import current_identity
from espace_api.auth.identity import Identity
from espace_api.blobs import BlobStore, RangeNotSatisfiable, resolve_range
from espace_api.documents import binary, receipts
from espace_api.documents.content import check_allowed, checked_stream, media_type
from espace_api.fhir.errors import FhirError
from espace_api.fhir.indexing import compartment_patient
from espace_api.fhir.registry import REGISTRY
from espace_api.fhir.values import split_reference
from espace_api.lifecycle.state import check_accepts_deposits
from espace_api.resources import service
from espace_api.resources.results import Result

router = APIRouter()
Caller = Annotated[Identity, Depends(current_identity)]
BINARY_TYPE = REGISTRY[binary.BINARY]
CONTENT_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "sandbox",
    "Cache-Control": "no-store",
}


async def store_of(request: Request) -> BlobStore:
    """The application's blob store."""
    app = request.app
    return await binary.store_for(app.state.engine, app.state.settings, app.state.clock)


def security_context_patient(request: Request) -> str:
    """The patient named by `X-Security-Context` (400 when absent or not a Patient)."""
    header = request.headers.get("x-security-context", "").strip()
    split = split_reference(header) if header else None
    if not split or split[0] != "Patient" or not split[1]:
        raise FhirError.bad_request(
            "X-Security-Context: Patient/{id} is required to post raw content",
            "SECURITY_CONTEXT_REQUIRED",
        )
    return split[1]


@router.post(
    "/Binary",
    tags=["Binary"],
    summary="create Binary (raw bytes or FHIR JSON)",
    dependencies=SECURED,
    operation_id="Binary_create_content",
)
async def create_binary(request: Request, identity: Caller) -> Response:
    """Create a Binary from the request's own bytes, streamed to the blob store."""
    check_accept(request)
    ctype = request.headers.get("content-type", "")
    if media_type(ctype) in JSON_TYPES:
        return await _create_from_json(request, identity)
    settings = settings_of(request)
    policy.require_scope(identity, BINARY_TYPE, "c")
    mt = check_allowed(ctype, settings, status=415)
    patient_id = security_context_patient(request)
    resource: dict[str, Any] = {
        "resourceType": "Binary",
        "contentType": ctype.strip() or mt,
        "securityContext": {"reference": f"Patient/{patient_id}"},
    }
    # Refuse before storing anything: write rules, unknown patient, closed space, size.
    policy.check_write(identity, BINARY_TYPE, patient_id, resource)
    async with context(request, identity) as ctx:
        row = await service.existing_patient(ctx, patient_id)
        check_accepts_deposits(identity, orjson.loads(row.json or "{}"), ctx.now)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > settings.max_body_bytes:
        raise FhirError(
            413,
            "CONTENT_TOO_LARGE",
            f"Document content exceeds {settings.max_body_bytes} bytes",
            issue_type="too-costly",
        )
    store = await store_of(request)
    info = await store.put(
        patient_id, checked_stream(mt, request.stream()), max_bytes=settings.max_body_bytes
    )
    async with context(request, identity) as ctx:
        result = await service.create(ctx, BINARY_TYPE, resource)
        assert result.id is not None and result.version_id is not None
        await binary.link(ctx.conn, patient_id, result.id, result.version_id, info)
    return to_response(result, request)


async def _create_from_json(request: Request, identity: Caller) -> Response:
    body = await read_resource(request)
    policy.require_scope(identity, BINARY_TYPE, "c")
    if not isinstance(body, dict) or body.get("resourceType") != "Binary":
        raise FhirError.bad_request("resourceType must be 'Binary'", "WRONG_RESOURCE_TYPE")
    patient_id = compartment_patient(BINARY_TYPE, body)
    policy.check_write(identity, BINARY_TYPE, patient_id, body)
    store = await store_of(request)
    stripped, info = await binary.ingest_inline(store, settings_of(request), body, patient_id)
    async with context(request, identity) as ctx:
        result = await service.create(ctx, BINARY_TYPE, stripped)  # checks the space too
        if info is not None and patient_id is not None:
            assert result.id is not None and result.version_id is not None
            await binary.link(ctx.conn, patient_id, result.id, result.version_id, info)
    return to_response(result, request)


def _wants_resource(request: Request) -> bool:
    """Whether the client asked for the Binary resource rather than its bytes."""
    fmt = request.query_params.get("_format")
    if fmt:
        return fmt in ("json", *JSON_TYPES)
    accept = request.headers.get("accept", "")
    types = [part.split(";")[0].strip().lower() for part in accept.split(",")]
    return any(t in JSON_TYPES for t in types)


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """A single `bytes=` range -> [start, end); None to serve everything.

    Multiple ranges and malformed headers are ignored (RFC 9110 allows it); a range that
    does not overlap the content raises 416.
    """
    if not header or not header.strip().lower().startswith("bytes="):
        return None
    spec = header.strip()[6:].strip()
    if "," in spec or "-" not in spec:
        return None
    first, _, last = spec.partition("-")
    first, last = first.strip(), last.strip()
    if not first:
        if not last.isdigit():
            return None
        n = int(last)
        if n == 0:
            raise RangeNotSatisfiable(size)
        return max(0, size - n), size
    if not first.isdigit() or (last and not last.isdigit()):
        return None
    start = int(first)
    end = int(last) + 1 if last else size
    if last and end <= start:
        return None
    if start >= size:
        raise RangeNotSatisfiable(size)
    return resolve_range(size, start, end)


async def _serve(request: Request, identity: Identity, id_: str, version: str | None) -> Response:
    check_accept(request)
    store = await store_of(request)
    async with context(request, identity) as ctx:
        if version is None:
            result: Result = await service.read(ctx, BINARY_TYPE, id_)
        else:
            result = await service.vread(ctx, BINARY_TYPE, id_, version)
        assert result.json is not None and result.version_id is not None
        content = orjson.loads(result.json)
        patient_id = compartment_patient(BINARY_TYPE, content)
        info = None
        if patient_id is not None:
            info = await binary.content_of(ctx.conn, store, patient_id, id_, result.version_id)
    headers = dict(result.headers)
    if _wants_resource(request):
        if info is not None and patient_id is not None:
            data = await store.read_all(patient_id, info.sha256)
            content["data"] = base64.b64encode(data).decode("ascii")
        return Response(orjson.dumps(content), 200, headers=headers, media_type=FHIR_JSON)

    ctype = content.get("contentType") or "application/octet-stream"
    headers.update(CONTENT_HEADERS)
    headers["Accept-Ranges"] = "bytes"
    if info is None:  # stored inline (no blob): serve the data element
        raw = base64.b64decode(content.get("data", "")) if content.get("data") else b""
        size = len(raw)
    else:
        size = info.size
    if_range = request.headers.get("if-range")
    use_range = if_range is None or if_range.strip() == headers.get("ETag")
    rng = parse_range(request.headers.get("range"), size) if use_range else None
    start, end = rng if rng else (0, size)
    status = 206 if rng else 200
    if rng:
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    headers["Content-Length"] = str(end - start)
    if info is None:
        return Response(raw[start:end], status, headers=headers, media_type=ctype)
    assert patient_id is not None
    chunks = await store.open(patient_id, info.sha256, start, end)
    return StreamingResponse(chunks, status, headers=headers, media_type=ctype)


@router.get(
    "/Binary/{id}",
    tags=["Binary"],
    summary="read Binary (raw bytes, Range)",
    dependencies=SECURED,
    operation_id="Binary_read_content",
)
async def read_binary(id: str, request: Request, identity: Caller) -> Response:
    """The Binary's bytes (or the resource, with Accept: application/fhir+json)."""
    return await _serve(request, identity, id, None)


@router.get(
    "/Binary/{id}/_history/{vid}",
    tags=["Binary"],
    summary="vread Binary (raw bytes, Range)",
    dependencies=SECURED,
    operation_id="Binary_vread_content",
)
async def vread_binary(id: str, vid: str, request: Request, identity: Caller) -> Response:
    """One version's bytes (or the resource, with Accept: application/fhir+json)."""
    return await _serve(request, identity, id, vid)


@router.get(
    "/DocumentReference/$deposit-status",
    tags=["DocumentReference"],
    summary="deposit receipts: which masterIdentifiers are stored (id, version, hash, when)",
    dependencies=SECURED,
    response_class=Response,
    operation_id="DocumentReference_deposit_status",
    openapi_extra={
        "parameters": [
            {
                "name": "masterIdentifier",
                "in": "query",
                "required": True,
                "description": "`system|value` of a deposited document, repeated or "
                "comma-separated (at most 100)",
                "schema": {"type": "string", "pattern": "^[^|]*\\|.+$"},
            }
        ]
    },
)
async def deposit_status(request: Request, identity: Caller) -> Response:
    """`masterIdentifier=system|value`, repeated or comma-separated (at most 100)."""
    values = request.query_params.getlist("masterIdentifier")
    return await run(request, identity, lambda ctx: receipts.deposit_status(ctx, values))
