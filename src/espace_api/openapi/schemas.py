"""FHIR R4 JSON schemas for the OpenAPI document, built from the fhir.resources models that
validate every write (so the document describes exactly what the server accepts).

One `components.schemas` entry per resource, per datatype and per backbone element, all
linked by `$ref`; FHIR primitives are shared entries too (`dateTime`, `code`, ...). Each
property follows the model field's alias (`_birthDate` for a primitive's extensions),
`resourceType` is a required constant, required elements are required, code bindings the
models enforce become enums, and unknown properties are refused as the models refuse them.
Generic resources (`Bundle.entry.resource`, `contained`) are `Resource`: any object that
names its `resourceType`.

Why not `model_json_schema()`: fhir.resources' own JSON schema renders every complex element
as `{}` (no datatypes), omits `resourceType` and adds `fhir_comments`. Why not HL7's
published fhir.schema.json: 4 MB for 150 resources we do not serve, and it would describe
R4 where the server validates with these models.
"""

import types
import typing
import uuid
from decimal import Decimal
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import BaseModel

Schema = dict[str, Any]

REF = "#/components/schemas/"

# FHIR R4 primitive datatypes (regular expressions of the specification, anchored).
_DATE = (
    r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)"
    r"(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1]))?)?"
)
_TIME = r"([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?"
_ZONE = r"(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))"
_FULL_DATE = (
    r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)"
    r"-(0[1-9]|1[0-2])-(0[1-9]|[1-2][0-9]|3[0-1])"
)
_URI = {"type": "string", "pattern": r"^\S*$"}
_TEXT = {"type": "string", "pattern": r"^[ \r\n\t\S]+$"}
_INT32 = {"type": "integer", "minimum": -2147483648, "maximum": 2147483647}
PRIMITIVES: dict[str, Schema] = {
    "boolean": {"type": "boolean"},
    "string": _TEXT,
    "markdown": _TEXT,
    "code": {"type": "string", "pattern": r"^[^\s]+( [^\s]+)*$"},
    "id": {"type": "string", "pattern": r"^[A-Za-z0-9\-\.]{1,64}$"},
    "uri": _URI,
    "url": _URI,
    "canonical": _URI,
    "oid": {"type": "string", "pattern": r"^urn:oid:[0-2](\.(0|[1-9][0-9]*))+$"},
    "uuid": {
        "type": "string",
        "pattern": r"^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
    },
    "base64Binary": {"type": "string", "pattern": r"^(\s*([0-9a-zA-Z\+/=]){4}\s*)+$"},
    "decimal": {"type": "number"},
    "integer": _INT32,
    "integer64": _INT32,
    "unsignedInt": {"type": "integer", "minimum": 0, "maximum": 2147483647},
    "positiveInt": {"type": "integer", "minimum": 1, "maximum": 2147483647},
    "date": {"type": "string", "pattern": f"^{_DATE}$"},
    "dateTime": {
        "type": "string",
        "pattern": f"^({_DATE}|{_FULL_DATE}T{_TIME}{_ZONE})$",
    },
    "instant": {"type": "string", "pattern": f"^{_FULL_DATE}T{_TIME}{_ZONE}$"},
    "time": {"type": "string", "pattern": f"^{_TIME}$"},
    "xhtml": {"type": "string", "minLength": 1},
}
_PYTHON_PRIMITIVES = {bool: "boolean", str: "string", int: "integer"}

# Any resource, where FHIR allows any (Bundle entries, contained, Parameters.resource).
RESOURCE: Schema = {
    "type": "object",
    "description": "Any FHIR resource: its `resourceType` says which",
    "required": ["resourceType"],
    "properties": {"resourceType": {"type": "string", "pattern": "^[A-Z][A-Za-z]+$"}},
}


# Extension with its value[x] not enumerated: the full choice (~50 datatypes, each with its
# own extensions, inside every element) makes schema-driven generators (schemathesis) take
# minutes per body. The server validates `value[x]` with the models.
EXTENSION: Schema = {
    "type": "object",
    "description": "An extension: `url` and at most one `value[x]` of any FHIR datatype",
    "required": ["url"],
    "properties": {
        "id": {"$ref": "#/components/schemas/string"},
        "url": {"$ref": "#/components/schemas/uri"},
        "extension": {
            "type": "array",
            "minItems": 1,
            "items": {"$ref": "#/components/schemas/Extension"},
        },
    },
    "patternProperties": {"^_?value[A-Z][A-Za-z0-9]*$": {}},
    "additionalProperties": False,
}


# The `_field` of a primitive (its id and extensions) is FHIR's Element.
RENAMED = {"FHIRPrimitiveExtension": "Element"}


def ref(name: str) -> Schema:
    return {"$ref": REF + name}


def _strip_optional(annotation: Any) -> Any:
    """`X | None` -> X."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


class SchemaBuilder:
    """Collects component schemas, each datatype once, walking the models from the roots."""

    def __init__(self) -> None:
        self.schemas: dict[str, Schema] = {"Resource": RESOURCE, "Extension": EXTENSION}

    def resource(self, name: str) -> Schema:
        """A `$ref` to the resource's schema, building it (and what it uses) once."""
        model: type[BaseModel] = get_fhir_model_class(name)
        return self._model(model, resource=True)

    def _model(self, model: type[BaseModel], *, resource: bool = False) -> Schema:
        name = RENAMED.get(model.__name__, model.__name__)
        if name not in self.schemas:
            self.schemas[name] = {}  # placeholder: recursive datatypes (Extension, Identifier)
            self.schemas[name] = self._object(model, resource)
        return ref(name)

    def _object(self, model: type[BaseModel], resource: bool) -> Schema:
        properties: dict[str, Schema] = {}
        required: list[str] = []
        if resource:
            properties["resourceType"] = {"type": "string", "const": model.__name__}
            required.append("resourceType")
        for field_name, field in model.model_fields.items():
            if field_name == "fhir_comments":
                continue
            alias = field.alias or field_name
            extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
            properties[alias] = self._field(field.annotation, extra)
            if field.is_required() or extra.get("element_required"):
                required.append(alias)
        schema: Schema = {
            "type": "object",
            "properties": properties,
            "additionalProperties": False,
        }
        if required:
            schema["required"] = required
        return schema

    def _field(self, annotation: Any, extra: dict[str, Any]) -> Schema:
        annotation = _strip_optional(annotation)
        if typing.get_origin(annotation) in (list, typing.List):  # noqa: UP006
            (item,) = typing.get_args(annotation)
            items = self._field(item, extra)
            if _strip_optional(item) is not item:  # `_given`: null where a value has none
                items = {"anyOf": [items, {"type": "null"}]}
            # FHIR JSON: arrays are never empty
            return {"type": "array", "minItems": 1, "items": items}
        enum = extra.get("enum_values")
        schema = self._type(annotation)
        if enum and schema == ref("code"):
            return {"type": "string", "enum": list(enum)}
        return schema

    def _type(self, annotation: Any) -> Schema:
        annotation = _strip_optional(annotation)
        if typing.get_origin(annotation) is typing.Annotated:
            for marker in annotation.__metadata__:
                visit = getattr(marker, "__visit_name__", None) or getattr(
                    type(marker), "__visit_name__", None
                )
                if visit in PRIMITIVES:
                    return self._primitive(visit)
            return self._type(typing.get_args(annotation)[0])
        if annotation is uuid.UUID:
            return {"type": "string", "format": "uuid"}
        if annotation is Decimal:
            return self._primitive("decimal")
        if annotation in _PYTHON_PRIMITIVES:
            return self._primitive(_PYTHON_PRIMITIVES[annotation])
        get_model = getattr(annotation, "get_model_klass", None)
        if get_model is None:
            raise TypeError(f"no JSON schema for {annotation!r}")
        model = get_model()
        if model.__name__ in ("Resource", "DomainResource"):
            return ref("Resource")
        if model.__name__ == "Extension":
            self._primitive("string")
            self._primitive("uri")
            return ref("Extension")
        return self._model(model)

    def _primitive(self, name: str) -> Schema:
        self.schemas.setdefault(name, PRIMITIVES[name])
        return ref(name)
