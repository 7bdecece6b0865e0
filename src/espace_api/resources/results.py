"""What a service call returns to the REST layer (and to transaction bundles)."""

from dataclasses import dataclass, field
from datetime import datetime

from espace_api.fhir.values import format_instant, http_date


@dataclass
class Result:
    """An HTTP-shaped result: status, JSON body (text or bytes), headers."""

    status: int
    json: str | bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    resource_type: str | None = None
    id: str | None = None
    version_id: int | None = None
    last_updated: datetime | None = None

    @property
    def etag(self) -> str | None:
        return f'W/"{self.version_id}"' if self.version_id is not None else None


def version_headers(
    result: Result, base_url: str, *, location: bool = False, content_location: bool = False
) -> Result:
    """Add ETag, Last-Modified and (optionally) Location headers from the result's version."""
    if result.version_id is not None:
        result.headers["ETag"] = f'W/"{result.version_id}"'
    if result.last_updated is not None:
        result.headers["Last-Modified"] = http_date(result.last_updated)
    if location or content_location:
        url = f"{base_url}/{result.resource_type}/{result.id}/_history/{result.version_id}"
        result.headers["Location" if location else "Content-Location"] = url
    return result


def meta_for(version_id: int, last_updated: datetime) -> dict[str, str]:
    """The server-owned part of Resource.meta."""
    return {"versionId": str(version_id), "lastUpdated": format_instant(last_updated)}


def replayed(
    resource_type: str, id_: str, json: str, version_id: int, last_updated: datetime, base: str
) -> Result:
    """A stored resource answering a repeated create (200, with Location and ETag)."""
    result = Result(
        200,
        json,
        resource_type=resource_type,
        id=id_,
        version_id=version_id,
        last_updated=last_updated,
    )
    return version_headers(result, base, location=True)
