"""The caller's identity and SMART on FHIR scopes, as every route receives them."""

import re
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import unquote

IdentityKind = Literal["patient", "system", "user", "operator"]
Interaction = Literal["c", "r", "u", "d", "s"]

_SCOPE = re.compile(
    r"^(?P<context>patient|user|system)/(?P<type>\*|[A-Z][A-Za-z]+)\.(?P<perms>[cruds]+|read|write|\*)"
    r"(?:\?category=(?P<category>[^\s&=?]+))?$"
)
_V1 = {"read": "rs", "write": "cud", "*": "cruds"}
# Granular scopes (SMART v2 `?category=system|code`) narrow reads and searches only.
_GRANULAR_PERMISSIONS = frozenset("rs")
READS = frozenset("rs")

#: A category a granular scope names: (system, code); system "" matches any system.
Category = tuple[str, str]


@dataclass(frozen=True)
class Scope:
    """One SMART scope, e.g. patient/DocumentReference.rs (v1 .read/.write accepted)."""

    context: str
    resource_type: str
    permissions: frozenset[str]
    category: Category | None = None

    @classmethod
    def parse(cls, text: str) -> "Scope | None":
        """Parse a scope string; None for non-resource scopes (openid, launch, ...) and for
        granular scopes with other rights than read and search (not supported)."""
        match = _SCOPE.match(text)
        if not match:
            return None
        perms = match["perms"]
        letters = frozenset(_V1.get(perms, perms))
        category = None
        if match["category"]:
            system, bar, code = unquote(match["category"]).rpartition("|")
            if not code or not letters <= _GRANULAR_PERMISSIONS or (bar and not system):
                return None
            category = (system, code)
        return cls(match["context"], match["type"], letters, category)


@dataclass(frozen=True)
class ScopeSet:
    """The resource scopes granted to a token."""

    scopes: tuple[Scope, ...] = ()
    raw: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> "ScopeSet":
        """Parse a space-separated scope string."""
        raw = tuple(s for s in text.split() if s)
        parsed = tuple(p for p in (Scope.parse(s) for s in raw) if p is not None)
        return cls(parsed, raw)

    def allows(self, context: str, resource_type: str, interaction: Interaction) -> bool:
        """Whether a scope in `context` grants `interaction` on `resource_type`."""
        return any(
            s.context == context
            and s.resource_type in ("*", resource_type)
            and interaction in s.permissions
            for s in self.scopes
        )

    def has(self, name: str) -> bool:
        """Whether a non-resource scope (e.g. 'operator') was granted."""
        return name in self.raw

    def categories(self, context: str, resource_type: str) -> tuple[Category, ...] | None:
        """The categories reads and searches of `resource_type` are limited to, or None when
        they are not limited (no granular scope, or a plain scope granting both).

        A plain scope granting only one of read/search does not lift a granular scope's
        limit: the limit then applies to both (narrower than granted, never wider)."""
        covering = [
            s
            for s in self.scopes
            if s.context == context
            and s.resource_type in ("*", resource_type)
            and s.permissions & READS
        ]
        granular = tuple(s.category for s in covering if s.category is not None)
        if not granular or any(s.category is None and READS <= s.permissions for s in covering):
            return None
        return granular


@dataclass(frozen=True)
class Identity:
    """A verified caller.

    kind: patient (own space), system (LGC software, machine to machine), user (a professional
    at a screen), operator (administration). `patient_id` is the Patient.id a patient token
    is confined to. `client_id` is the registered client (system) or OIDC client.
    """

    kind: IdentityKind
    subject: str
    scopes: ScopeSet = field(default_factory=ScopeSet)
    client_id: str | None = None
    patient_id: str | None = None
    organization: str | None = None
    practitioner: str | None = None
    token_id: str | None = None
    purpose: str | None = None
    # The professional's national profession code (TRE_G15, e.g. 10 doctor), read by the
    # profession matrix (access/matrix.py); None when the token does not say.
    profession: str | None = None
    # The SMART app grant a patient-kind token was issued under (smart/): `client_id` is then
    # the app, checked on every request so that a revocation stops the next one.
    grant_id: str | None = None

    @property
    def scope_context(self) -> str:
        """The SMART scope context this identity's rights are expressed in."""
        return {"patient": "patient", "system": "system", "user": "user", "operator": "system"}[
            self.kind
        ]

    @property
    def actor(self) -> str:
        """Who acted, as stored in `created_by`: a machine client is one depositor whatever
        professional it names; people are themselves."""
        if self.kind == "system":
            return f"system:{self.client_id or self.subject}"
        return f"{self.kind}:{self.subject}"

    def allows(self, resource_type: str, interaction: Interaction) -> bool:
        """Scope check for one interaction on one resource type."""
        return self.scopes.allows(self.scope_context, resource_type, interaction)
