"""Response formats: JSON (always, the hot path) and XML; `_format`, Accept and `_pretty`.

JSON bodies leave as stored (no re-parse) unless `_pretty=true`. XML is produced by parsing
the JSON into its fhir.resources model and serialising that (`model_dump_xml`, lxml):
acceptable because XML is not the hot path. Request bodies are JSON only.
"""

from typing import Literal

import orjson
from fhir.resources.R4B import get_fhir_model_class

from espace_api.fhir.errors import FhirError

Format = Literal["json", "xml"]

JSON_TYPES = ("application/fhir+json", "application/json", "application/json+fhir")
XML_TYPES = ("application/fhir+xml", "application/xml", "application/xml+fhir", "text/xml")
MEDIA_TYPES: dict[Format, str] = {
    "json": "application/fhir+json; charset=utf-8",
    "xml": "application/fhir+xml; charset=utf-8",
}
_FORMAT_PARAM: dict[str, Format] = {
    "json": "json",
    "xml": "xml",
    **{t: "json" for t in JSON_TYPES},
    **{t: "xml" for t in XML_TYPES},
}


def _not_acceptable(what: str) -> FhirError:
    return FhirError(
        406,
        "NOT_ACCEPTABLE",
        f"Cannot produce {what}; use application/fhir+json or application/fhir+xml",
        issue_type="not-supported",
    )


def negotiate(format_param: str | None, accept: str | None) -> Format:
    """The response format: `_format` wins over Accept; JSON by default; 406 otherwise."""
    if format_param:
        fmt = _FORMAT_PARAM.get(format_param.split(";")[0].strip().lower())
        if fmt is None:
            raise _not_acceptable(f"_format '{format_param}'")
        return fmt
    if not accept or not accept.strip():
        return "json"
    ranked = []
    for position, part in enumerate(accept.split(",")):
        media, *options = (p.strip() for p in part.split(";"))
        q = 1.0
        for opt in options:
            key, _, value = opt.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        ranked.append((-q, position, media.lower()))
    for neg_q, _, media in sorted(ranked):
        if neg_q >= 0:  # q=0: explicitly not acceptable
            continue
        if media in JSON_TYPES or media in ("*/*", "application/*"):
            return "json"
        if media in XML_TYPES or media == "text/*":
            return "xml"
    raise _not_acceptable(accept)


def is_pretty(value: str | None) -> bool:
    return (value or "").strip().lower() == "true"


def to_xml(body: bytes | str, pretty: bool = False) -> bytes:
    """Serialise a FHIR JSON resource (or Bundle) as FHIR XML."""
    data = orjson.loads(body)
    model = get_fhir_model_class(data["resourceType"]).model_validate(data)
    return model.model_dump_xml(pretty_print=pretty)  # type: ignore[no-any-return]


def render(body: bytes | str, fmt: Format, pretty: bool = False) -> bytes:
    """Body bytes in the negotiated format."""
    if fmt == "xml":
        return to_xml(body, pretty)
    if pretty:
        return orjson.dumps(orjson.loads(body), option=orjson.OPT_INDENT_2)
    return body.encode() if isinstance(body, str) else body
