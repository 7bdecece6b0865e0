"""The OpenAPI document: FastAPI's route list, completed from the registry and the models.

FastAPI knows the paths; it does not know that `POST /Patient` takes a Patient and answers
201 with Location and ETag. This module adds, for every operation, by the shape of its path:
request bodies and responses with FHIR schemas (openapi/schemas.py), the status codes with
OperationOutcome bodies and the error codes each may carry (fhir/error_codes.py), the SMART
scopes it needs, the search parameters of its type (fhir/registry.py) and examples. Nothing
here names a resource type: a type added to the registry is described by the next build.
"""

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from espace_api.auth.scopes import SCOPES_SUPPORTED
from espace_api.fhir.error_codes import ERROR_CODES, codes_for
from espace_api.fhir.errors import ERROR_SYSTEM
from espace_api.fhir.registry import REGISTRY
from espace_api.fhir.search import MODIFIERS, SPECIAL
from espace_api.openapi import examples
from espace_api.openapi.schemas import SchemaBuilder, ref

Doc = dict[str, Any]

FHIR_JSON = "application/fhir+json"
FHIR_XML = "application/fhir+xml"
EXTRA_TYPES = ("Bundle", "Parameters", "OperationOutcome", "Binary", "AuditEvent")
TOKEN_URL = "/auth/token"
BACKEND = "smart_backend"
APP = "smart_app"
AUTHORIZE_URL = "/auth/authorize"
BEARER = "bearer"
PERMISSIONS = "cruds"

# interaction -> (SMART permission letter, status codes beyond the common ones)
INTERACTIONS: dict[str, tuple[str, tuple[int, ...]]] = {
    "search": ("s", ()),
    "history": ("r", (404,)),
    "read": ("r", (304, 404, 410)),
    "create": ("c", (409, 412, 413, 415, 422)),
    "update": ("u", (404, 409, 412, 413, 415, 422)),
    "patch": ("u", (404, 409, 412, 413, 415, 422)),
    "delete": ("d", (404, 409, 412)),
    "operation": ("r", (404, 409, 413, 415, 422)),
    "transaction": ("", (404, 409, 412, 413, 415, 422)),
}
COMMON_ERRORS = (400, 401, 403, 406, 429, 503)
STATUS_TEXT = {
    304: "Not modified (If-None-Match / If-Modified-Since)",
    400: "Bad request",
    401: "Missing or invalid access token",
    403: "The token does not allow this",
    404: "Not found, or not visible to this caller",
    406: "Not acceptable",
    409: "Conflict",
    410: "Deleted",
    412: "Precondition failed",
    413: "Too large",
    415: "Unsupported media type",
    416: "Range not satisfiable",
    422: "Unprocessable: a business rule refused the content",
    429: "Rate limited (Retry-After)",
    503: "Unavailable: draining or timed out (Retry-After)",
}
HEADER_DOCS = {
    "Location": "URL of the new version (`{type}/{id}/_history/{vid}`)",
    "ETag": 'Version of the resource, `W/"{vid}"`',
    "Last-Modified": "When this version was written (HTTP date)",
}


DEFAULT_RESPONSE: Doc = {
    "description": "Any other refusal: an OperationOutcome (`/auth/token`: an OAuth2 error "
    "object `{error, error_description}`)",
    "content": {
        FHIR_JSON: {"schema": ref("OperationOutcome")},
        "application/json": {"schema": {"type": "object"}},
    },
}


TOKEN_REQUEST: Doc = {
    "required": True,
    "content": {
        "application/x-www-form-urlencoded": {
            "schema": {
                "type": "object",
                "required": ["grant_type", "client_assertion_type", "client_assertion"],
                "properties": {
                    "grant_type": {"type": "string", "enum": ["client_credentials"]},
                    "client_assertion_type": {
                        "type": "string",
                        "enum": ["urn:ietf:params:oauth:client-assertion-type:jwt-bearer"],
                    },
                    "client_assertion": {
                        "type": "string",
                        "description": "JWT signed with the client's registered key "
                        "(iss = sub = client_id, aud = token URL, exp <= 5 min, fresh jti)",
                    },
                    "scope": {"type": "string", "description": "space-separated SMART scopes"},
                },
            }
        }
    },
}


def build(app: FastAPI) -> Doc:
    """The complete OpenAPI document of the app (cached on the app)."""
    if app.openapi_schema:
        return app.openapi_schema
    doc = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    complete(doc)
    app.openapi_schema = doc
    return doc


def complete(doc: Doc) -> None:
    """Add schemas, bodies, statuses, scopes, parameters and examples to FastAPI's document."""
    builder = SchemaBuilder()
    for name in (*REGISTRY, *EXTRA_TYPES):
        builder.resource(name)
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas.update(builder.schemas)
    schemas["ErrorCode"] = _error_code_schema()
    components["responses"] = {f"Error{s}": _error_response(s) for s in STATUS_TEXT if s != 304}
    components["securitySchemes"] = _security_schemes()
    components["headers"] = {
        n: {"description": d, "schema": {"type": "string"}} for n, d in HEADER_DOCS.items()
    }
    components["parameters"] = {p["name"]: p for p in SHARED_PARAMETERS}
    for path, item in doc.get("paths", {}).items():
        for method, op in item.items():
            _complete_operation(path, method.upper(), op)


# ---------------------------------------------------------------- components


def _error_code_schema() -> Doc:
    rows = "\n".join(
        f"- `{code}` ({', '.join(map(str, e.statuses))}): {e.meaning}"
        for code, e in ERROR_CODES.items()
    )
    return {
        "type": "string",
        "enum": list(ERROR_CODES),
        "description": "Stable error code of `OperationOutcome.issue.details.coding.code` "
        f"(system `{ERROR_SYSTEM}`), with the statuses it comes with:\n\n{rows}",
    }


def _error_response(status: int) -> Doc:
    codes = ", ".join(f"`{c}`" for c in codes_for(status)) or "(none of espace-api's own)"
    return {
        "description": f"{STATUS_TEXT[status]}. OperationOutcome; `issue.details.coding.code` "
        f"is one of {codes} (see `ErrorCode`)",
        "content": {FHIR_JSON: {"schema": ref("OperationOutcome")}},
    }


def _security_schemes() -> Doc:
    system = [f"system/{t}.{PERMISSIONS}" for t in REGISTRY]
    scopes = {s: "SMART on FHIR v2 scope" for s in (*SCOPES_SUPPORTED, *system)}
    scopes["operator"] = "operator rights (client registration, enrolment)"
    return {
        BACKEND: {
            "type": "oauth2",
            "description": "SMART Backend Services: client_credentials grant authenticated by a "
            "private_key_jwt client assertion (RFC 7523); scopes `system/{type}.{cruds}`.",
            "flows": {"clientCredentials": {"tokenUrl": TOKEN_URL, "scopes": scopes}},
        },
        APP: {
            "type": "oauth2",
            "description": "SMART App Launch (standalone patient launch) for apps the operator "
            "registered: authorization code with PKCE (S256 only, required), the patient signs "
            "in and grants all or part of the scopes asked; refresh tokens rotate on each use "
            "(docs/auth.md).",
            "flows": {
                "authorizationCode": {
                    "authorizationUrl": AUTHORIZE_URL,
                    "tokenUrl": TOKEN_URL,
                    "refreshUrl": TOKEN_URL,
                    "scopes": {
                        **{
                            f"patient/{t}.{PERMISSIONS}": "SMART on FHIR v2 scope" for t in REGISTRY
                        },
                        "launch/patient": "the patient in context",
                        "openid": "an ID token",
                        "fhirUser": "the patient's Patient reference in the ID token",
                        "offline_access": "a refresh token",
                    },
                }
            },
        },
        BEARER: {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "A token from a patient's or professional's identity provider "
            "(scopes `patient/{type}.{cruds}`, `user/{type}.{cruds}`), or any token above.",
        },
    }


# ---------------------------------------------------------------- operations


def _classify(path: str, method: str) -> tuple[str | None, str]:
    """(resource type or None, interaction) from the operation's path and method."""
    parts = [p for p in path.split("/") if p]
    if not parts:
        return None, "transaction"
    rtype = parts[0] if parts[0] in REGISTRY or parts[0] in EXTRA_TYPES else None
    if any(p.startswith("$") for p in parts):
        return rtype, "operation"
    if rtype is None:
        return None, "history" if parts == ["_history"] else "other"
    rest = parts[1:]
    if "_history" in rest:
        return rtype, "read" if rest[-1] == "{vid}" else "history"
    if rest == ["_search"]:
        return rtype, "search"
    if not rest:
        return rtype, {"GET": "search", "POST": "create", "PUT": "update", "PATCH": "patch"}.get(
            method, "delete"
        )
    return rtype, {"GET": "read", "PUT": "update", "PATCH": "patch"}.get(method, "delete")


def _complete_operation(path: str, method: str, op: Doc) -> None:
    secured = bool(op.get("security"))
    rtype, interaction = _classify(path, method)
    responses: Doc = op.setdefault("responses", {})
    responses.pop("422", None)  # FastAPI's validation error; the server answers 400 instead
    responses["default"] = DEFAULT_RESPONSE
    if path == "/metadata":
        responses["200"] = {"description": "CapabilityStatement", "content": _fhir(ref("Resource"))}
    if path == "/metrics":
        responses["200"] = {
            "description": "Prometheus text format",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    if path == TOKEN_URL:
        op["requestBody"] = TOKEN_REQUEST
    if not secured:
        return
    letter, extra = INTERACTIONS.get(interaction, ("", ()))
    op["security"] = _requirements(rtype, letter)
    if rtype and letter:
        scopes = [f"{ctx}/{rtype}.{letter}" for ctx in ("patient", "user", "system")]
        op["x-smart-scopes"] = scopes
        op["description"] = (
            op.get("description", "") + f"\n\nScopes: any of `{'`, `'.join(scopes)}`."
        ).strip()
    if rtype == "Binary" and interaction == "read":
        extra = (*extra, 416)  # Range outside the document
    for status in sorted({*COMMON_ERRORS, *extra}):
        if status == 304:
            responses["304"] = {"description": STATUS_TEXT[304]}
        else:
            responses[str(status)] = {"$ref": f"#/components/responses/Error{status}"}
    params = op.setdefault("parameters", [])
    success, body = _success_and_body(path, method, rtype, interaction)
    responses.update(success)
    if body is not None:
        op["requestBody"] = body
    params.extend(_parameters(path, rtype, interaction))
    example = examples.for_operation(path, method)
    if example:
        _attach_examples(op, example)
    if not params:
        op.pop("parameters")


def _requirements(rtype: str | None, letter: str) -> list[Doc]:
    if rtype in REGISTRY and letter:
        return [
            {BACKEND: [f"system/{rtype}.{letter}"]},
            {APP: [f"patient/{rtype}.{letter}"]},
            {BEARER: []},
        ]
    return [{BACKEND: []}, {APP: []}, {BEARER: []}]


def _fhir(schema: Doc, *, xml: bool = True) -> Doc:
    content: Doc = {FHIR_JSON: {"schema": schema}}
    if xml:
        content[FHIR_XML] = {"schema": {"type": "string"}}
    return content


def _headers(*names: str) -> Doc:
    return {n: {"$ref": f"#/components/headers/{n}"} for n in names}


def _success_and_body(
    path: str, method: str, rtype: str | None, interaction: str
) -> tuple[Doc, Doc | None]:
    """The 2xx responses and the request body of one operation."""
    resource = ref(rtype) if rtype else ref("Resource")
    bundle = ref("Bundle")
    body: Doc | None = None
    if interaction in ("search", "history"):
        ok: Doc = {
            "200": {"description": "A searchset or history Bundle", "content": _fhir(bundle)}
        }
        if method == "POST":
            body = _form_body(rtype)
        return ok, body
    if interaction == "transaction":
        body = {"required": True, "content": {FHIR_JSON: {"schema": bundle}}}
        return {
            "200": {
                "description": "batch-response or transaction-response",
                "content": _fhir(bundle),
            }
        }, body
    if interaction == "read":
        ok = {
            "200": {
                "description": f"The {rtype}",
                "headers": _headers("ETag", "Last-Modified"),
                "content": _binary_content(rtype) if rtype == "Binary" else _fhir(resource),
            }
        }
        return ok, None
    if interaction == "create":
        body = _resource_body(rtype, resource)
        written = {
            "headers": _headers("Location", "ETag", "Last-Modified"),
            "content": _fhir(resource),
        }
        return {
            "201": {"description": f"{rtype} created", **written},
            "200": {"description": "If-None-Exist matched an existing resource", **written},
        }, body
    if interaction in ("update", "patch"):
        body = _resource_body(rtype, resource) if interaction == "update" else _patch_body()
        written = {"headers": _headers("ETag", "Last-Modified"), "content": _fhir(resource)}
        return {
            "200": {"description": f"{rtype} updated", **written},
            "201": {"description": f"{rtype} created (update as create)", **written},
        }, body
    if interaction == "delete":
        return {"204": {"description": "Deleted (or nothing matched)"}}, None
    return _operation_responses(path, method)


def _operation_responses(path: str, method: str) -> tuple[Doc, Doc | None]:
    name = path.rsplit("$", 1)[-1]
    body: Doc | None = None
    schema = ref("Resource")
    if name == "everything":
        schema = ref("Bundle")
    elif name in ("explain", "deposit-status"):
        schema = ref("Parameters")
    elif name == "enrol":
        ndjson = {"schema": {"type": "string"}}
        body = {"required": True, "content": {"application/fhir+ndjson": ndjson}}
        report = {"application/x-ndjson": ndjson}
        return {"200": {"description": "per-line NDJSON report", "content": report}}, body
    if method == "POST":
        body = {"required": False, "content": {FHIR_JSON: {"schema": ref("Parameters")}}}
    return {"200": {"description": "Operation result", "content": _fhir(schema)}}, body


def _resource_body(rtype: str | None, resource: Doc) -> Doc:
    content: Doc = {FHIR_JSON: {"schema": resource}}
    if rtype == "Binary":
        content["application/pdf"] = {"schema": {"type": "string", "format": "binary"}}
    return {"required": True, "content": content}


def _binary_content(rtype: str) -> Doc:
    """A Binary read: the document's own bytes and type, or the resource as FHIR JSON."""
    return {
        FHIR_JSON: {"schema": ref(rtype)},
        "*/*": {"schema": {"type": "string", "format": "binary"}},
    }


def _patch_body() -> Doc:
    op = {
        "type": "object",
        "required": ["op", "path"],
        "properties": {
            "op": {"type": "string", "enum": ["add", "remove", "replace", "move", "copy", "test"]},
            "path": {"type": "string"},
            "from": {"type": "string"},
            "value": {},
        },
    }
    return {
        "required": True,
        "content": {
            "application/json-patch+json": {"schema": {"type": "array", "items": op}},
            FHIR_JSON: {"schema": ref("Parameters")},
            "application/merge-patch+json": {"schema": {"type": "object"}},
        },
    }


def _form_body(rtype: str | None) -> Doc:
    props = {p["name"]: {"type": "string"} for p in _search_parameters(rtype)}
    form = {"type": "object", "properties": props}
    return {"required": False, "content": {"application/x-www-form-urlencoded": {"schema": form}}}


# ---------------------------------------------------------------- parameters


def _query(name: str, description: str, schema: Doc | None = None) -> Doc:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": {"type": "string", **(schema or {})} if "type" not in (schema or {}) else schema,
    }


def _header(name: str, description: str, pattern: str | None = None) -> Doc:
    schema: Doc = {"type": "string"}
    if pattern:
        schema["pattern"] = pattern
    return {
        "name": name,
        "in": "header",
        "required": False,
        "description": description,
        "schema": schema,
    }


def _search_parameters(rtype: str | None) -> list[Doc]:
    if rtype not in REGISTRY:
        return []
    out: list[Doc] = []
    for param in (*SPECIAL.values(), *REGISTRY[rtype].params):
        mods = ", ".join(f"`:{m}`" for m in sorted(MODIFIERS.get(param.type, ())))
        text = f"{param.description or param.name} (FHIR {param.type} search parameter"
        text += f"; modifiers {mods})" if mods else ")"
        out.append(_query(param.name, text))
    return out


ETAG = r'^W/"[0-9]+"$'
CONTROL_PARAMETERS = (
    _query("_count", "Page size (default 20, at most 100)", {"type": "integer", "minimum": 0}),
    _query("_offset", "Paging offset (from the Bundle's links)", {"type": "integer", "minimum": 0}),
    _query("_sort", "Comma-separated parameter names, `-` for descending (`-_lastUpdated`)"),
    _query("_include", "`Type:param[:target]`: add what results reference"),
    _query("_revinclude", "`Type:param[:target]`: add what references the results"),
    _query("_summary", "Subset of elements", {"enum": ["true", "false", "text", "data", "count"]}),
    _query("_elements", "Comma-separated elements to return"),
    _query("_total", "Whether to count", {"enum": ["none", "estimate", "accurate"]}),
)
HISTORY_PARAMETERS = (_query("_since", "Versions written at or after this instant"),)
HEADER_PARAMETERS = (
    _header("If-None-Match", "304 when the version is still this ETag", ETAG),
    _header("If-Modified-Since", "304 when unchanged since this HTTP date"),
    _header("If-None-Exist", "Conditional create: a search query (`identifier=system|value`)"),
    _header("X-Security-Context", "`Patient/{id}` the raw content belongs to"),
    _header("If-Match", "The version the change applies to (412 otherwise)", ETAG),
)
SHARED_PARAMETERS = (*CONTROL_PARAMETERS, *HISTORY_PARAMETERS, *HEADER_PARAMETERS)


def _shared(*names: str) -> list[Doc]:
    return [{"$ref": f"#/components/parameters/{n}"} for n in names]


def _parameters(path: str, rtype: str | None, interaction: str) -> list[Doc]:
    if interaction == "search" and not path.endswith("_search"):
        params = _search_parameters(rtype)
        if rtype in REGISTRY:
            params += _shared(*(p["name"] for p in CONTROL_PARAMETERS))
        return params
    if interaction == "history":
        return _shared("_count", "_since")
    if interaction == "read":
        return _shared("If-None-Match", "If-Modified-Since")
    if interaction == "create":
        return _shared("If-None-Exist", *(["X-Security-Context"] if rtype == "Binary" else []))
    if interaction in ("update", "patch", "delete"):
        return _shared("If-Match")
    return []


def _attach_examples(op: Doc, example: examples.Example) -> None:
    if example.request is not None:
        content = op.get("requestBody", {}).get("content", {}).get(FHIR_JSON)
        if content is not None:
            content["examples"] = {
                example.name: {"summary": example.summary, "value": example.request}
            }
    if example.query:
        for param in op.get("parameters", []):
            if param.get("name") in example.query:
                param["example"] = example.query[param["name"]]
    if example.response is not None:
        content = op["responses"]["200"]["content"][FHIR_JSON]
        content["examples"] = {
            example.name: {"summary": example.summary, "value": example.response}
        }
