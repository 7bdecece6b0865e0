"""Build response Bundles from stored JSON text without re-parsing it (orjson.Fragment)."""

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import orjson


@dataclass(frozen=True)
class Entry:
    """One response entry; `json` is the stored resource text (or None)."""

    full_url: str | None
    json: str | None = None
    search_mode: str | None = None
    request: dict[str, str] | None = None
    response: dict[str, Any] | None = None
    resource: dict[str, Any] | None = None  # an already-built dict (e.g. OperationOutcome)
    extension: list[dict[str, Any]] | None = None  # e.g. a conversation's counts ($threads)

    def render(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.extension:
            out["extension"] = self.extension
        if self.full_url:
            out["fullUrl"] = self.full_url
        if self.json is not None:
            out["resource"] = orjson.Fragment(self.json)
        elif self.resource is not None:
            out["resource"] = self.resource
        if self.search_mode:
            out["search"] = {"mode": self.search_mode}
        if self.request:
            out["request"] = self.request
        if self.response:
            out["response"] = self.response
        return out


def bundle(
    bundle_type: str,
    entries: list[Entry],
    *,
    total: int | None = None,
    links: list[tuple[str, str]] = (),  # type: ignore[assignment]
    bundle_id: str | None = None,
    timestamp: str | None = None,
) -> bytes:
    """Serialise a Bundle to JSON bytes."""
    out: dict[str, Any] = {"resourceType": "Bundle"}
    if bundle_id:
        out["id"] = bundle_id
    if timestamp:
        out["meta"] = {"lastUpdated": timestamp}
    out["type"] = bundle_type
    if total is not None:
        out["total"] = total
    if links:
        out["link"] = [{"relation": rel, "url": url} for rel, url in links]
    if entries:
        out["entry"] = [e.render() for e in entries]
    return orjson.dumps(out)


def page_links(
    base: str, params: list[tuple[str, str]], offset: int, count: int, total: int | None, got: int
) -> list[tuple[str, str]]:
    """self / first / previous / next links for offset paging."""

    query = params if any(k == "_count" for k, _ in params) else [*params, ("_count", str(count))]
    encoded = urlencode(query)  # once: the links differ only by their offset

    def url(off: int) -> str:
        if not off:
            return f"{base}?{encoded}" if encoded else base
        return f"{base}?{encoded}&_offset={off}" if encoded else f"{base}?_offset={off}"

    links = [("self", url(offset)), ("first", url(0))]
    if offset > 0:
        links.append(("previous", url(max(0, offset - count))))
    more = (offset + count < total) if total is not None else got >= count and count > 0
    if more:
        links.append(("next", url(offset + count)))
    return links
