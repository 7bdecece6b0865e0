"""Apply PATCH bodies to a resource dict: JSON Patch (RFC 6902), JSON Merge Patch
(RFC 7396) and FHIRPath Patch.

Pure functions, no database: `resources/patch.py` runs them inside the update path.

JSON Patch is applied by the `jsonpatch` library. A malformed patch document is a 400; an
operation that cannot apply (missing path, failed `test`) is a 422.

FHIRPath Patch (a `Parameters` body, http://hl7.org/fhir/R4/fhirpatch.html) supports the
operations add, insert, delete, replace and move on this honest subset of FHIRPath:

- `Type.element.child` : element names from the resource type down;
- `element[n]`          : the n-th item (0-based) of a collection;
- `element.where(a = 'x')` and `where(a.b = 'x' and c = true)`: keep items whose
  relative path equals a literal (string, boolean or number) - equality and `and` only;
- `first()`, `last()`.

Anything else (functions, `or`, operators, `ofType`, `resolve`, ...) is refused with 422
UNSUPPORTED_PATH. Values come from `value[x]` or, for anonymous complex values, from nested
`part`s named after the child elements.
"""

import copy
import re
import typing
from dataclasses import dataclass
from typing import Any

import jsonpatch
import jsonpointer
from fhir.resources.R4B import get_fhir_model_class
from fhir_core.utils import is_list_type

from espace_api.fhir.errors import FhirError

JSON_PATCH = "application/json-patch+json"
JSON_MERGE_PATCH = "application/merge-patch+json"
OPERATIONS = ("add", "insert", "delete", "replace", "move")


def _invalid(message: str, code: str = "INVALID_PATCH") -> FhirError:
    return FhirError.unprocessable(message, code)


# ---------------------------------------------------------------- JSON Merge Patch


def apply_merge_patch(content: dict[str, Any], patch: Any) -> dict[str, Any]:
    """Apply an RFC 7396 JSON Merge Patch: a partial resource whose objects merge
    recursively, whose `null` members remove, and whose other values (arrays included)
    replace. This is what fhirpy's `patch()` sends."""
    if not isinstance(patch, dict):
        raise FhirError.bad_request(
            "A JSON Merge Patch body must be a JSON object", "INVALID_PATCH"
        )
    merged: dict[str, Any] = _merge(copy.deepcopy(content), patch)
    return merged


def _merge(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = target if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge(result.get(key), value)
    return result


# ---------------------------------------------------------------- JSON Patch


def apply_json_patch(content: dict[str, Any], ops: Any) -> dict[str, Any]:
    """Apply an RFC 6902 patch document (a JSON array of operations)."""
    if not isinstance(ops, list) or not all(isinstance(op, dict) for op in ops):
        raise FhirError.bad_request(
            "A JSON Patch body must be an array of operations", "INVALID_PATCH"
        )
    try:
        patch = jsonpatch.JsonPatch(ops)
        operations = list(patch._ops)  # type: ignore[attr-defined]
    except jsonpatch.InvalidJsonPatch as exc:
        raise FhirError.bad_request(f"Invalid JSON Patch: {exc}", "INVALID_PATCH") from None
    result: Any = copy.deepcopy(content)
    # One operation at a time, so the error names the operation, never the document's content.
    for i, (raw, operation) in enumerate(zip(ops, operations, strict=True)):
        where = f"operation {i + 1} ({raw.get('op')} {raw.get('path')})"
        try:
            result = operation.apply(result)
        except jsonpatch.JsonPatchTestFailed:
            raise _invalid(f"JSON Patch {where}: test failed", "PATCH_TEST_FAILED") from None
        except jsonpatch.InvalidJsonPatch as exc:
            raise FhirError.bad_request(
                f"Invalid JSON Patch {where}: {exc}", "INVALID_PATCH"
            ) from None
        except (
            jsonpatch.JsonPatchException,
            jsonpointer.JsonPointerException,
            TypeError,
            ValueError,
            KeyError,
            IndexError,
        ):
            raise _invalid(
                f"JSON Patch {where}: path does not exist or cannot be changed",
                "INVALID_PATCH_PATH",
            ) from None
    if not isinstance(result, dict):
        raise _invalid("JSON Patch must leave a resource object")
    return result


# ---------------------------------------------------------------- FHIRPath subset

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_INDEXED = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)\[(?P<index>\d+)\]$")
_FUNCTION = re.compile(r"^(?P<fn>where|first|last)\((?P<arg>.*)\)$", re.S)
_CONDITION = re.compile(
    r"^\s*(?P<path>[A-Za-z_][A-Za-z0-9_.]*)\s*=\s*"
    r"(?P<value>'(?:[^'\\]|\\.)*'|true|false|-?\d+(?:\.\d+)?)\s*$"
)


@dataclass(frozen=True)
class Step:
    """One step of a path: a child name (optionally indexed) or a function."""

    name: str | None = None
    index: int | None = None
    function: str | None = None
    conditions: tuple[tuple[str, Any], ...] = ()


def _split_top(text: str, sep: str) -> list[str]:
    """Split on `sep` outside quotes and parentheses."""
    parts, depth, quote, start, i = [], 0, False, 0, 0
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == "'":
                quote = False
        elif ch == "'":
            quote = True
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif depth == 0 and text.startswith(sep, i):
            parts.append(text[start:i])
            start = i + len(sep)
            i = start
            continue
        i += 1
    if quote or depth:
        raise _invalid(f"Unbalanced quotes or parentheses in path '{text}'", "UNSUPPORTED_PATH")
    parts.append(text[start:])
    return parts


def _literal(raw: str) -> Any:
    if raw.startswith("'"):
        return re.sub(r"\\(.)", r"\1", raw[1:-1])
    if raw in ("true", "false"):
        return raw == "true"
    return float(raw) if "." in raw else int(raw)


def parse_path(path: str) -> tuple[str, list[Step]]:
    """`Patient.name[0].given` -> ('Patient', steps); 422 outside the supported subset."""
    if not isinstance(path, str) or not path.strip():
        raise _invalid("Patch operation needs a path", "UNSUPPORTED_PATH")
    segments = [s.strip() for s in _split_top(path.strip(), ".")]
    root, steps = segments[0], []
    if not _NAME.match(root):
        raise _invalid(f"Path '{path}' must start with the resource type", "UNSUPPORTED_PATH")
    for seg in segments[1:]:
        if _NAME.match(seg):
            steps.append(Step(name=seg))
        elif m := _INDEXED.match(seg):
            steps.append(Step(name=m["name"], index=int(m["index"])))
        elif m := _FUNCTION.match(seg):
            fn, arg = m["fn"], m["arg"].strip()
            if fn == "where":
                conditions = []
                for cond in _split_top(arg, " and "):
                    c = _CONDITION.match(cond)
                    if not c:
                        raise _invalid(
                            f"Unsupported where() condition '{cond.strip()}' in '{path}'",
                            "UNSUPPORTED_PATH",
                        )
                    conditions.append((c["path"], _literal(c["value"])))
                steps.append(Step(function="where", conditions=tuple(conditions)))
            elif arg:
                raise _invalid(f"{fn}() takes no argument", "UNSUPPORTED_PATH")
            else:
                steps.append(Step(function=fn))
        else:
            raise _invalid(f"Unsupported path segment '{seg}' in '{path}'", "UNSUPPORTED_PATH")
    return root, steps


@dataclass
class Node:
    """A located value: `container[key]`, plus where the container itself lives."""

    container: Any  # dict or list
    key: Any  # str for a dict, int for a list
    parent: dict[str, Any] | None = None  # for list items: the dict holding the list
    field: str | None = None  # ... and its key

    @property
    def value(self) -> Any:
        return self.container[self.key]


def _values_at(node: Any, dotted: str) -> list[Any]:
    out = [node]
    for name in dotted.split("."):
        nxt: list[Any] = []
        for item in out:
            if isinstance(item, dict) and name in item:
                value = item[name]
                nxt.extend(value if isinstance(value, list) else [value])
        out = nxt
    return out


def evaluate(content: dict[str, Any], path: str) -> list[Node]:
    """Nodes selected by a path (root = the resource)."""
    root, steps = parse_path(path)
    if root != content.get("resourceType"):
        raise _invalid(f"Path '{path}' does not start with {content.get('resourceType')}")
    nodes = [Node({"": content}, "")]
    for step in steps:
        if step.function == "where":
            nodes = [
                n for n in nodes if all(lit in _values_at(n.value, p) for p, lit in step.conditions)
            ]
            continue
        if step.function in ("first", "last"):
            nodes = nodes[:1] if step.function == "first" else nodes[-1:]
            continue
        nxt: list[Node] = []
        for n in nodes:
            holder = n.value
            if not isinstance(holder, dict) or step.name not in holder:
                continue
            value = holder[step.name]
            if isinstance(value, list):
                nxt.extend(Node(value, i, holder, step.name) for i in range(len(value)))
            else:
                nxt.append(Node(holder, step.name))
        if step.index is not None:
            nxt = nxt[step.index : step.index + 1]
        nodes = nxt
    return nodes


def _model_type(resource_type: str, names: list[str]) -> tuple[type | None, bool]:
    """The model class at an element path and whether the last element repeats."""
    try:
        cls: Any = get_fhir_model_class(resource_type)
    except (KeyError, ValueError, LookupError):
        return None, False
    repeating = False
    for name in names:
        fields = getattr(cls, "model_fields", {})
        if name not in fields:
            return None, False
        field = fields[name]
        repeating = is_list_type(field)
        t: Any = field.annotation
        while typing.get_args(t):
            t = next(a for a in typing.get_args(t) if a is not type(None))
        type_name = getattr(t, "__name__", "")
        cls = None
        if type_name.endswith("Type") and type_name[:1].isupper():
            try:
                cls = get_fhir_model_class(type_name[: -len("Type")])
            except (KeyError, ValueError, LookupError):
                cls = None
        if cls is None:
            return None, repeating
    return cls, repeating


def _element_names(path: str) -> list[str]:
    _, steps = parse_path(path)
    return [s.name for s in steps if s.name]


# ---------------------------------------------------------------- FHIRPath Patch


def _part_value(part: dict[str, Any]) -> Any:
    """value[x] of a parameter part, or an object built from nested parts."""
    keys = [k for k in part if k.startswith("value") and len(k) > 5]
    if len(keys) == 1:
        return copy.deepcopy(part[keys[0]])
    if keys:
        raise _invalid(f"Parameter '{part.get('name')}' has several value[x]")
    if isinstance(part.get("part"), list):
        out: dict[str, Any] = {}
        for child in part["part"]:
            if not isinstance(child, dict) or not child.get("name"):
                raise _invalid("Each value part needs a name")
            value = _part_value(child)
            name = child["name"]
            if name in out:
                out[name] = (out[name] if isinstance(out[name], list) else [out[name]]) + [value]
            else:
                out[name] = value
        return out
    raise _invalid(f"Parameter '{part.get('name')}' has no value")


def _operation(param: dict[str, Any], i: int) -> dict[str, Any]:
    if param.get("name") != "operation" or not isinstance(param.get("part"), list):
        raise _invalid(f"Parameters.parameter[{i}] must be an 'operation' with parts")
    op: dict[str, Any] = {}
    for part in param["part"]:
        if not isinstance(part, dict) or not isinstance(part.get("name"), str):
            raise _invalid(f"Parameters.parameter[{i}].part needs names")
        name = part["name"]
        if name in ("type", "path", "name"):
            raw = next((v for k, v in part.items() if k.startswith("value")), None)
            if not isinstance(raw, str):
                raise _invalid(f"Operation part '{name}' must be a string")
            op[name] = raw
        elif name in ("index", "source", "destination"):
            raw = next((v for k, v in part.items() if k.startswith("value")), None)
            if not isinstance(raw, int) or isinstance(raw, bool) or raw < 0:
                raise _invalid(f"Operation part '{name}' must be a non-negative integer")
            op[name] = raw
        elif name == "value":
            op["value"] = _part_value(part)
        else:
            raise _invalid(f"Unknown operation part '{name}'")
    if op.get("type") not in OPERATIONS:
        raise _invalid(f"Unsupported FHIRPath Patch operation type '{op.get('type')}'")
    if "path" not in op:
        raise _invalid("Operation needs a path")
    return op


def _one(nodes: list[Node], path: str, what: str) -> Node:
    if len(nodes) != 1:
        raise _invalid(
            f"Path '{path}' must select exactly one element to {what} (found {len(nodes)})",
            "INVALID_PATCH_PATH",
        )
    return nodes[0]


def _collection(content: dict[str, Any], path: str) -> list[Any]:
    """The list a path names (insert/move); it must exist."""
    nodes = evaluate(content, path)
    if not nodes:
        raise _invalid(f"Path '{path}' selects nothing", "INVALID_PATCH_PATH")
    first = nodes[0]
    if not isinstance(first.container, list) or any(
        n.container is not first.container for n in nodes
    ):
        raise _invalid(f"Path '{path}' is not a repeating element", "INVALID_PATCH_PATH")
    container: list[Any] = first.container
    return container


def _apply_one(content: dict[str, Any], op: dict[str, Any]) -> None:
    kind, path = op["type"], op["path"]
    if kind == "delete":
        nodes = evaluate(content, path)
        if not nodes:
            return  # FHIRPath Patch: deleting nothing is not an error
        node = _one(nodes, path, "delete")
        if node.container is content and node.key in ("id", "resourceType"):
            raise _invalid(f"Cannot delete {node.key}", "INVALID_PATCH_PATH")
        del node.container[node.key]
        if isinstance(node.container, list) and not node.container and node.parent is not None:
            del node.parent[node.field]  # type: ignore[arg-type]
        return
    if kind in ("add", "insert", "replace") and "value" not in op:
        raise _invalid(f"'{kind}' needs a value")
    if kind == "replace":
        node = _one(evaluate(content, path), path, "replace")
        node.container[node.key] = op["value"]
        return
    if kind == "add":
        if "name" not in op or not _NAME.match(op["name"]):
            raise _invalid("'add' needs a name")
        holder = _one(evaluate(content, path), path, "add to").value
        if not isinstance(holder, dict):
            raise _invalid(f"Path '{path}' is not an element with children", "INVALID_PATCH_PATH")
        name = op["name"]
        existing = holder.get(name)
        if isinstance(existing, list):
            existing.append(op["value"])
            return
        if existing is not None:
            raise _invalid(
                f"'{path}.{name}' already has a value (use replace)", "INVALID_PATCH_PATH"
            )
        _, repeating = _model_type(content["resourceType"], [*_element_names(path), name])
        holder[name] = [op["value"]] if repeating else op["value"]
        return
    if kind == "insert":
        if "index" not in op:
            raise _invalid("'insert' needs an index")
        items = _insert_target(content, path)
        if op["index"] > len(items):
            raise _invalid(
                f"Index {op['index']} is out of range for '{path}'", "INVALID_PATCH_PATH"
            )
        items.insert(op["index"], op["value"])
        return
    # move
    if "source" not in op or "destination" not in op:
        raise _invalid("'move' needs source and destination")
    items = _collection(content, path)
    if op["source"] >= len(items) or op["destination"] >= len(items):
        raise _invalid(f"move index out of range for '{path}'", "INVALID_PATCH_PATH")
    items.insert(op["destination"], items.pop(op["source"]))


def _insert_target(content: dict[str, Any], path: str) -> list[Any]:
    """The list for insert; created empty when the element is absent but repeating."""
    nodes = evaluate(content, path)
    if nodes:
        return _collection(content, path)
    parent_path, _, name = path.rpartition(".")
    if not parent_path or not _NAME.match(name):
        raise _invalid(f"Path '{path}' selects nothing", "INVALID_PATCH_PATH")
    holder = _one(evaluate(content, parent_path), parent_path, "insert into").value
    _, repeating = _model_type(content["resourceType"], _element_names(path))
    if not isinstance(holder, dict) or not repeating:
        raise _invalid(f"Path '{path}' is not a repeating element", "INVALID_PATCH_PATH")
    holder[name] = []
    return holder[name]  # type: ignore[no-any-return]


def _prune(node: Any) -> Any:
    """Drop empty objects and arrays (FHIR JSON has none) left behind by deletions."""
    if isinstance(node, dict):
        for key in list(node):
            node[key] = _prune(node[key])
            if node[key] in ({}, []):
                del node[key]
    elif isinstance(node, list):
        node[:] = [v for v in (_prune(v) for v in node) if v not in ({}, [])]
    return node


def apply_fhirpath_patch(content: dict[str, Any], parameters: Any) -> dict[str, Any]:
    """Apply a FHIRPath Patch `Parameters` resource; operations apply in order."""
    if not isinstance(parameters, dict) or parameters.get("resourceType") != "Parameters":
        raise FhirError.bad_request(
            "A FHIRPath Patch body must be a Parameters resource", "INVALID_PATCH"
        )
    params = parameters.get("parameter") or []
    if not isinstance(params, list) or not params:
        raise FhirError.bad_request("FHIRPath Patch has no operation", "INVALID_PATCH")
    result = copy.deepcopy(content)
    for i, param in enumerate(params):
        if not isinstance(param, dict):
            raise _invalid(f"Parameters.parameter[{i}] must be an object")
        op = _operation(param, i)
        try:
            _apply_one(result, op)
        except FhirError as exc:
            exc.message = f"operation {i + 1} ({op['type']} {op['path']}): {exc.message}"
            exc.expression = exc.expression or [f"Parameters.parameter[{i}]"]
            raise
    return _prune(result)  # type: ignore[no-any-return]
