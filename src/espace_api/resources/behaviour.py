"""Type behaviour: the one extension point through which a package adds rules to a type.

The resource service knows no type by name. A package (documents, privacy, lifecycle,
messaging ...) subclasses `TypeBehaviour`, overrides the hooks it needs and registers an
instance for its types at application set-up (`Behaviours.register`). The service calls, in
order of registration, every behaviour registered for the type being handled:

    transaction -> in_transaction()  complete an entry from the other entries of its Bundle
                                     (after urn:uuid fullUrls are resolved)
    batch       -> create_many()     a batch Bundle of creates of the type, set-based (one
                                     statement per table for all entries) instead of one
                                     create per entry; None: the entries run one by one
    create      -> replay()          a repeated request answered with what exists (idempotency)
    create/update/patch/delete
                -> before_write()    validate and complete the content; may refuse (FhirError)
                   (version, indexes and audit written by the service)
                -> after_write()     side effects in the same transaction (links, derived rows,
                                     writes to other resources through `ctx.write_update`)
    read/vread/search/history/include
                -> render()          what a caller sees of a stored resource (redaction)
    read/vread/search/include
                -> after_read()      effects of the caller's reading (read receipts) and the
                                     JSON to answer instead (types that set `reads`)

Hooks receive a `HookContext`: the connection inside the caller's transaction, the identity,
settings and clock, the access policy, and the few service operations a hook may need. The
service's `Context` provides it; this module sits below the service and imports nothing of it,
so the write path only goes down.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import ColumnElement, Table
from sqlalchemy.ext.asyncio import AsyncConnection

from espace_api.auth.identity import Identity
from espace_api.clock import Clock
from espace_api.config import Settings
from espace_api.fhir.errors import FhirError
from espace_api.fhir.registry import ResourceType
from espace_api.resources.results import Result
from espace_api.storage.repository import StoredRow

#: A resource the caller is about to receive: (id, patient id, JSON).
Seen = tuple[str, str | None, str]


class HookContext(Protocol):
    """What a hook may use: the transaction, the caller, and narrow service operations."""

    conn: AsyncConnection
    identity: Identity
    settings: Settings
    clock: Clock
    blobs: dict[tuple[str, int], Any]  # Binary versions written by this request -> content

    @property
    def base(self) -> str:
        """The public base URL."""
        ...

    @property
    def now(self) -> datetime:
        """The request's moment (every access decision of the request uses it)."""
        ...

    def policy(self, rtype: ResourceType, table: Table = ...) -> ColumnElement[bool]:
        """The caller's visibility predicate for `rtype` on `table`."""
        ...

    async def resolve_references(self, content: dict[str, Any]) -> None:
        """Rewrite conditional references (`Type?search`) in `content` to `Type/id`."""
        ...

    async def write_update(
        self, rtype: ResourceType, current: StoredRow, content: dict[str, Any]
    ) -> Result:
        """Write `content` as the next version of `current` (locked by the caller), as a
        system write: hooks see `event.system_write` and skip client-input rules."""
        ...


@dataclass
class WriteEvent:
    """One version about to be written (before_write) or just written (after_write)."""

    rtype: ResourceType
    id: str
    version_id: int
    method: str  # POST, PUT, PATCH or DELETE
    now: datetime  # the version's lastUpdated
    content: dict[str, Any] | None = None  # None for a deletion
    patient_id: str | None = None  # the compartment's Patient id
    patient: StoredRow | None = None  # that Patient's current row (when the service read it)
    previous: StoredRow | None = None  # the version being replaced (update, patch, delete)
    # A write the service makes for another hook (e.g. superseding a replaced document):
    # its content rules were checked when it was first written.
    system_write: bool = False
    # Scratch space for one behaviour to pass facts from before_write to after_write.
    carry: dict[str, Any] = field(default_factory=dict)

    @property
    def is_create(self) -> bool:
        return self.version_id == 1


class TypeBehaviour:
    """Rules of one or more resource types. Every hook is optional (default: no effect)."""

    def in_transaction(
        self, ref: str | None, resource: dict[str, Any], bundle: Sequence[dict[str, Any]]
    ) -> None:
        """Complete `resource` (entry `ref`, e.g. `Binary/x`) from the other resources of
        its transaction Bundle, e.g. a Binary's patient from the document pointing at it."""

    async def replay(self, ctx: HookContext, rtype: ResourceType, body: Any) -> Result | None:
        """An existing resource answering a repeated create, or None to go on creating."""
        return None

    async def create_many(
        self, ctx: HookContext, rtype: ResourceType, bodies: Sequence[Any]
    ) -> list[Result | FhirError] | None:
        """Create every body of a batch Bundle's POST entries at once: one answer per body
        (a Result, or the FhirError that entry gets), each exactly what `create` would have
        answered entry by entry, in order. None: not for this caller or these bodies (the
        entries then run one by one). The bulk path replaces every hook of the type for
        these creates: a behaviour offering it applies the rules of the other behaviours of
        its type (`bulk_applies`), or it is not used."""
        return None

    async def before_write(self, ctx: HookContext, event: WriteEvent) -> dict[str, Any] | None:
        """Check and complete `event.content`; return the content to store."""
        return event.content

    async def after_write(self, ctx: HookContext, event: WriteEvent) -> None:
        """Side effects of a written version, in the same transaction."""

    def render(self, ctx: HookContext, rtype: ResourceType, json: str) -> str:
        """What the caller sees of a stored resource's JSON (default: all of it)."""
        return json

    async def after_read(
        self, ctx: HookContext, rtype: ResourceType, seen: Sequence[Seen]
    ) -> dict[str, str]:
        """The caller is about to receive `seen` (id, patient id, JSON): the read's effects
        (e.g. read receipts) and, by id, the JSON to answer instead. Called only for types
        whose behaviour sets `reads`, once per read or search page."""
        return {}

    #: Set by subclasses that override `render`, so that types without redaction keep the
    #: read path free of any per-row call.
    renders: bool = False
    #: Set by subclasses that override `after_read` (other types' reads never call it).
    reads: bool = False
    #: Search parameters a type search gets when it names none of the same parameter, e.g.
    #: archived documents left out unless the search asks about them.
    default_search: tuple[tuple[str, str], ...] = ()
    #: Where the type's entries run within one phase of a transaction Bundle (lower first),
    #: e.g. content (Binary) before the documents whose attachments point at it.
    bundle_order: int = 0
    #: Set by a subclass that overrides `create_many`: the other behaviours of its type
    #: whose rules its bulk path applies too (with any other one registered, it is unused).
    bulk_applies: tuple[type["TypeBehaviour"], ...] = ()


class Behaviours:
    """The behaviours registered per type name (one registry per application)."""

    def __init__(self) -> None:
        self._by_type: dict[str, tuple[TypeBehaviour, ...]] = {}
        self._renderers: dict[str, tuple[TypeBehaviour, ...]] = {}
        self._readers: dict[str, tuple[TypeBehaviour, ...]] = {}

    def register(self, type_names: Iterable[str], behaviour: TypeBehaviour) -> None:
        """Add `behaviour` to each named type, after those already registered."""
        for name in type_names:
            self._by_type[name] = (*self._by_type.get(name, ()), behaviour)
            if behaviour.renders:
                self._renderers[name] = (*self._renderers.get(name, ()), behaviour)
            if behaviour.reads:
                self._readers[name] = (*self._readers.get(name, ()), behaviour)

    def of(self, type_name: str) -> tuple[TypeBehaviour, ...]:
        """The behaviours of a type, in registration order."""
        return self._by_type.get(type_name, ())

    def bundle_order(self, type_name: str) -> int:
        """The type's rank within a transaction phase (lowest of its behaviours)."""
        return min((b.bundle_order for b in self.of(type_name)), default=0)

    def default_search(
        self, type_name: str, params: list[tuple[str, str]]
    ) -> list[tuple[str, str]]:
        """The type's default search parameters that `params` does not name."""
        named = {k.partition(":")[0] for k, _ in params}
        return [
            (k, v)
            for b in self.of(type_name)
            for k, v in b.default_search
            if k.partition(":")[0] not in named
        ]

    def renders(self, type_name: str) -> bool:
        """Whether reads of this type go through a `render` hook."""
        return type_name in self._renderers

    def in_transaction(
        self,
        type_name: str,
        ref: str | None,
        resource: dict[str, Any],
        bundle: Sequence[dict[str, Any]],
    ) -> None:
        for behaviour in self.of(type_name):
            behaviour.in_transaction(ref, resource, bundle)

    async def replay(self, ctx: HookContext, rtype: ResourceType, body: Any) -> Result | None:
        for behaviour in self.of(rtype.name):
            found = await behaviour.replay(ctx, rtype, body)
            if found is not None:
                return found
        return None

    async def create_many(
        self, ctx: HookContext, rtype: ResourceType, bodies: Sequence[Any]
    ) -> list[Result | FhirError] | None:
        """The answers of the type's bulk create (`TypeBehaviour.create_many`), or None
        when the type has none, or another behaviour's rules would be left out."""
        mine = self.of(rtype.name)
        for behaviour in mine:
            if type(behaviour).create_many is TypeBehaviour.create_many:
                continue
            others = [b for b in mine if b is not behaviour]
            if all(isinstance(b, behaviour.bulk_applies) for b in others):
                return await behaviour.create_many(ctx, rtype, bodies)
            return None
        return None

    async def before_write(self, ctx: HookContext, event: WriteEvent) -> dict[str, Any] | None:
        for behaviour in self.of(event.rtype.name):
            event.content = await behaviour.before_write(ctx, event)
        return event.content

    async def after_write(self, ctx: HookContext, event: WriteEvent) -> None:
        for behaviour in self.of(event.rtype.name):
            await behaviour.after_write(ctx, event)

    def render(self, ctx: HookContext, rtype: ResourceType, json: str) -> str:
        for behaviour in self._renderers.get(rtype.name, ()):
            json = behaviour.render(ctx, rtype, json)
        return json

    def reads(self, type_name: str) -> bool:
        """Whether reads of this type go through an `after_read` hook."""
        return type_name in self._readers

    async def after_read(
        self, ctx: HookContext, rtype: ResourceType, seen: Sequence[Seen]
    ) -> dict[str, str]:
        """The JSON to answer instead, by id, after every `after_read` hook of the type."""
        replaced: dict[str, str] = {}
        for behaviour in self._readers.get(rtype.name, ()):
            current = [(i, p, replaced.get(i, j)) for i, p, j in seen]
            replaced.update(await behaviour.after_read(ctx, rtype, current))
        return replaced
