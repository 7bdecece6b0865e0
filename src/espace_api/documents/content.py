"""What document content may be: the content-type allow-list and magic-number checks.

A deposit declares a content type (HTTP Content-Type of `POST /Binary`, `Binary.contentType`,
`DocumentReference.content.attachment.contentType`). It must be on the allow-list
(`Settings.allowed_content_types`) and the bytes must look like it: the first bytes are
checked against the type's signature, so that an executable declared as a PDF is refused.
"""

import codecs
from collections.abc import AsyncIterable, AsyncIterator, Iterable

from espace_api.config import Settings
from espace_api.fhir.errors import FhirError

HEAD_BYTES = 1024
_BOMS = (codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def media_type(content_type: str | None) -> str:
    """`Application/PDF; charset=x` -> `application/pdf` ('' when absent)."""
    return (content_type or "").split(";")[0].strip().lower()


def allowed_types(settings: Settings) -> frozenset[str]:
    """The configured allow-list of media types."""
    return frozenset(media_type(t) for t in settings.allowed_content_types.split(",") if t.strip())


def check_allowed(
    content_type: str | None, settings: Settings, *, status: int = 422, where: str | None = None
) -> str:
    """The media type if it is allowed; otherwise a `CONTENT_TYPE_NOT_ALLOWED` error."""
    mt = media_type(content_type)
    if mt not in allowed_types(settings):
        raise FhirError(
            status,
            "CONTENT_TYPE_NOT_ALLOWED",
            f"Content type '{mt or 'none'}' is not accepted; accepted: "
            + ", ".join(sorted(allowed_types(settings))),
            issue_type="not-supported" if status == 415 else "value",
            expression=[where] if where else None,
        )
    return mt


def _strip_text_start(head: bytes) -> bytes:
    for bom in _BOMS:
        if head.startswith(bom):
            head = head[len(bom) :]
            break
    return head.lstrip(b" \t\r\n")


def _is_text(head: bytes, complete: bool) -> bool:
    if b"\x00" in head:
        return False
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=complete)
    except UnicodeDecodeError:
        return False
    return True


def looks_like(mt: str, head: bytes, *, complete: bool) -> bool:
    """Whether the first bytes of the content match media type `mt`.

    `complete` says `head` is the whole content (so a truncated UTF-8 sequence is an error).
    Types without a known signature are accepted as they are (the allow-list is the guard).
    """
    if mt == "application/pdf":
        return head.startswith(b"%PDF-")
    if mt == "image/png":
        return head.startswith(b"\x89PNG\r\n\x1a\n")
    if mt == "image/jpeg":
        return head.startswith(b"\xff\xd8\xff")
    if mt == "image/gif":
        return head[:6] in (b"GIF87a", b"GIF89a")
    if mt == "image/tiff":
        return head[:4] in (b"II*\x00", b"MM\x00*")
    if mt == "application/dicom":
        return head[128:132] == b"DICM"
    if mt in ("application/xml", "text/xml", "application/hl7-v3+xml", "application/fhir+xml"):
        return _strip_text_start(head).startswith(b"<") and _is_text(head, complete)
    if mt in ("application/fhir+json", "application/json"):
        return _strip_text_start(head)[:1] in (b"{", b"[") and _is_text(head, complete)
    if mt.startswith("text/"):
        return _is_text(head, complete)
    return True


def check_signature(mt: str, head: bytes, *, complete: bool, where: str | None = None) -> None:
    """422 `CONTENT_TYPE_MISMATCH` unless the content looks like its declared type."""
    if not looks_like(mt, head, complete=complete):
        raise FhirError(
            422,
            "CONTENT_TYPE_MISMATCH",
            f"Content does not look like the declared type '{mt}'",
            issue_type="value",
            expression=[where] if where else None,
        )


async def checked_stream(
    mt: str, chunks: AsyncIterable[bytes] | Iterable[bytes]
) -> AsyncIterator[bytes]:
    """Pass `chunks` through, checking the signature once the first 1 KiB (or all) is seen.

    The check fails inside the stream, so a blob store's `put` drops what it had spooled.
    """
    head = b""
    checked = False

    async def source() -> AsyncIterator[bytes]:
        if isinstance(chunks, AsyncIterable):
            async for chunk in chunks:
                yield chunk
        else:
            for chunk in chunks:
                yield chunk

    async for chunk in source():
        if not checked:
            head += chunk[: HEAD_BYTES - len(head)]
            if len(head) >= HEAD_BYTES:
                check_signature(mt, head[:HEAD_BYTES], complete=False)
                checked = True
        yield chunk
    if not checked:
        check_signature(mt, head, complete=True)
