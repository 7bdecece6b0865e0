"""Response formats: JSON (always, the hot path) and XML; `_format`, Accept and `_pretty`.

JSON bodies leave as stored (no re-parse) unless `_pretty=true`. XML is produced from the
stored JSON by `json_to_xml`, the direct JSON -> XML mapping of http://hl7.org/fhir/R4/xml.html
(lxml), with elements ordered by the fhir.resources models' element sequences. It does not
re-validate through the models: `model_dump_xml` would refuse deliberately incomplete content
(`_elements`, `_summary`), writes element ids as child elements instead of attributes and
rewrites instants. Request bodies are JSON only.
"""

import typing
from itertools import zip_longest
from typing import Any, Literal

import orjson
from fhir.resources.R4B import get_fhir_model_class
from lxml import etree

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
    return json_to_xml(orjson.loads(body), pretty)


# ---------------------------------------------------------------- direct JSON -> XML

FHIR_NS = "http://hl7.org/fhir"


def _model(name: str) -> Any:
    try:
        return get_fhir_model_class(name)
    except (KeyError, ValueError, LookupError):
        return None


def _child_model(cls: Any, name: str) -> Any:
    field = (getattr(cls, "model_fields", None) or {}).get(name)
    if field is None:
        return None
    t: Any = field.annotation
    while typing.get_args(t):
        t = next(a for a in typing.get_args(t) if a is not type(None))
    type_name = getattr(t, "__name__", "")
    if type_name.endswith("Type") and type_name[:1].isupper():
        return _model(type_name[: -len("Type")])
    return None


def _names(cls: Any, obj: dict[str, Any]) -> list[str]:
    names = list(dict.fromkeys(k.removeprefix("_") for k in obj if k != "resourceType"))
    if cls is None:
        return names
    rank = {n: i for i, n in enumerate(cls.elements_sequence())}
    return sorted(names, key=lambda n: rank.get(n, len(rank)))


def _primitive(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _children(el: Any, obj: dict[str, Any], cls: Any, resource: bool) -> None:
    for name in _names(cls, obj):
        if not resource and (name == "id" or (name == "url" and cls is _model("Extension"))):
            if isinstance(obj.get(name), str):
                el.set(name, obj[name])
                continue
        value, ext = obj.get(name), obj.get(f"_{name}")
        values = value if isinstance(value, list) else [value]
        exts = ext if isinstance(ext, list) else [ext]
        for v, x in zip_longest(values, exts):
            if v is None and x is None:
                continue
            if name == "div" and isinstance(v, str):
                el.append(etree.fromstring(v))
                continue
            child = etree.SubElement(el, f"{{{FHIR_NS}}}{name}")
            if isinstance(v, dict) and "resourceType" in v:
                _resource(child, v)
                continue
            if isinstance(v, dict):
                _children(child, v, _child_model(cls, name), False)
            elif v is not None:
                child.set("value", _primitive(v))
            if isinstance(x, dict):
                _children(child, x, _model("Element"), False)


def _resource(parent: Any, data: dict[str, Any]) -> Any:
    tag = f"{{{FHIR_NS}}}{data['resourceType']}"
    el = (
        etree.SubElement(parent, tag)
        if parent is not None
        else etree.Element(tag, nsmap={None: FHIR_NS})
    )
    _children(el, data, _model(data["resourceType"]), True)
    return el


def json_to_xml(data: dict[str, Any], pretty: bool = False) -> bytes:
    """FHIR JSON -> FHIR XML without validation (http://hl7.org/fhir/R4/xml.html rules)."""
    root = _resource(None, data)
    return etree.tostring(  # type: ignore[no-any-return]
        root, xml_declaration=True, encoding="utf-8", pretty_print=pretty
    )


def render(body: bytes | str, fmt: Format, pretty: bool = False) -> bytes:
    """Body bytes in the negotiated format."""
    if fmt == "xml":
        return to_xml(body, pretty)
    if pretty:
        return orjson.dumps(orjson.loads(body), option=orjson.OPT_INDENT_2)
    return body.encode() if isinstance(body, str) else body
