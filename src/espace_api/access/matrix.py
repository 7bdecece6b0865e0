"""The profession matrix: which professions may read which document types.

A versioned data file (`profession_matrix.json` in this package, or `PROFESSION_MATRIX_FILE`)
maps document types (LOINC) to the professions (national profession codes, TRE_G15) that may
read them. It is loaded and checked once at start-up (`load`, cached per path); the access
policy turns it into one SQL condition per caller (`forbidden` types). Types the matrix does
not list are readable by every profession; a professional whose profession is unknown reads
none of the listed ones. The author of a document always sees it (policy, not matrix).
"""

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_PATH = Path(__file__).with_name("profession_matrix.json")


class MatrixError(ValueError):
    """The matrix file is missing or malformed (the application refuses to start)."""


@dataclass(frozen=True, eq=False)  # loaded once per file: compared and hashed by identity
class ProfessionMatrix:
    """The matrix as the policy reads it."""

    version: str
    type_system: str
    professions: dict[str, str]  # profession code -> display
    readers: dict[str, frozenset[str]]  # document type code -> profession codes

    def forbidden(self, profession: str | None) -> tuple[tuple[str, str], ...]:
        """(system, code) of the listed document types this profession may not read."""
        return tuple(
            (self.type_system, code)
            for code, readers in sorted(self.readers.items())
            if profession not in readers
        )

    def describe(self, profession: str | None) -> str:
        """The caller's profession as a rule's text names it."""
        if profession is None:
            return "an unknown profession"
        return f"profession {profession} ({self.professions.get(profession, 'not in the matrix')})"


def _fail(path: Path, why: str) -> MatrixError:
    return MatrixError(f"profession matrix {path}: {why}")


def _parse(path: Path, raw: Any) -> ProfessionMatrix:
    if not isinstance(raw, dict):
        raise _fail(path, "not a JSON object")
    version, system = raw.get("version"), raw.get("documentTypeSystem")
    professions, types = raw.get("professions"), raw.get("documentTypes")
    if not isinstance(version, str) or not version:
        raise _fail(path, "'version' is required")
    if not isinstance(system, str) or not system:
        raise _fail(path, "'documentTypeSystem' is required")
    if not isinstance(professions, dict) or not all(
        isinstance(k, str) and k and isinstance(d, str) for k, d in professions.items()
    ):
        raise _fail(path, "'professions' must map profession codes to displays")
    if not isinstance(types, dict):
        raise _fail(path, "'documentTypes' must map document type codes to their readers")
    readers: dict[str, frozenset[str]] = {}
    for code, entry in types.items():
        listed = entry.get("readers") if isinstance(entry, dict) else None
        if not code or not isinstance(listed, list):
            raise _fail(path, f"document type '{code}' needs a 'readers' list")
        unknown = sorted(set(map(str, listed)) - set(professions))
        if unknown:
            raise _fail(path, f"document type '{code}' names unknown professions {unknown}")
        readers[code] = frozenset(map(str, listed))
    return ProfessionMatrix(version, system, dict(professions), readers)


@functools.cache
def load(path: Path = DEFAULT_PATH) -> ProfessionMatrix:
    """The matrix in `path`, checked; `MatrixError` when it cannot be used."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise _fail(path, f"cannot be read as JSON ({exc.__class__.__name__})") from None
    return _parse(path, raw)
