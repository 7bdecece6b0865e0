"""Pure functions of the blob and document layers: ranges, keys, content signatures."""

import pytest

from espace_api.blobs import InvalidBlobKey, RangeNotSatisfiable, resolve_range
from espace_api.blobs.base import check_key
from espace_api.config import Settings
from espace_api.documents.content import check_allowed, looks_like, media_type
from espace_api.documents.routes import parse_range
from espace_api.documents.rules import binary_id
from espace_api.fhir.errors import FhirError


def test_resolve_range() -> None:
    assert resolve_range(100, None, None) == (0, 100)
    assert resolve_range(100, 10, None) == (10, 100)
    assert resolve_range(100, None, 5) == (0, 5)
    assert resolve_range(100, 90, 1000) == (90, 100)
    assert resolve_range(100, 5, 5) == (5, 5)
    assert resolve_range(0, None, None) == (0, 0)
    for start, end in ((100, None), (-1, None), (10, 5)):
        with pytest.raises(RangeNotSatisfiable):
            resolve_range(100, start, end)


def test_parse_http_range() -> None:
    assert parse_range(None, 100) is None
    assert parse_range("bytes=0-9", 100) == (0, 10)
    assert parse_range("bytes=90-", 100) == (90, 100)
    assert parse_range("bytes=-10", 100) == (90, 100)
    assert parse_range("bytes=-1000", 100) == (0, 100)
    assert parse_range("bytes=95-1000", 100) == (95, 100)
    assert parse_range("bytes=0-1,5-6", 100) is None  # multiple ranges: whole content
    assert parse_range("items=0-1", 100) is None
    assert parse_range("bytes=x-y", 100) is None
    assert parse_range("bytes=9-3", 100) is None
    with pytest.raises(RangeNotSatisfiable):
        parse_range("bytes=100-", 100)
    with pytest.raises(RangeNotSatisfiable):
        parse_range("bytes=-0", 100)


def test_keys() -> None:
    check_key("p-1.a", "a" * 64)
    for patient in ("", ".", "..", "a/b", "a" * 65, "é"):
        with pytest.raises(InvalidBlobKey):
            check_key(patient)
    for sha in ("A" * 64, "a" * 63, "../" + "a" * 61):
        with pytest.raises(InvalidBlobKey):
            check_key("p", sha)


def test_signatures() -> None:
    assert looks_like("application/pdf", b"%PDF-1.7 ...", complete=True)
    assert not looks_like("application/pdf", b"MZ\x90\x00", complete=True)
    assert looks_like("image/png", b"\x89PNG\r\n\x1a\n....", complete=True)
    assert looks_like("image/jpeg", b"\xff\xd8\xff\xe0", complete=True)
    assert looks_like("application/xml", b"\xef\xbb\xbf  <?xml version='1.0'?>", complete=True)
    assert not looks_like("application/xml", b"{}", complete=True)
    assert looks_like("application/fhir+json", b' {"resourceType":', complete=True)
    assert looks_like("text/plain", "é".encode() * 3, complete=True)
    assert looks_like("text/plain", "é".encode()[:1], complete=False)  # cut mid-character
    assert not looks_like("text/plain", "é".encode()[:1], complete=True)
    assert not looks_like("text/plain", b"a\x00b", complete=True)
    assert looks_like("application/x-custom", b"anything", complete=True)


def test_allow_list() -> None:
    settings = Settings(allowed_content_types="application/pdf, Text/Plain")
    assert media_type("Application/PDF; charset=binary") == "application/pdf"
    assert check_allowed("text/plain; charset=utf-8", settings) == "text/plain"
    with pytest.raises(FhirError) as err:
        check_allowed("image/png", settings, status=415)
    assert err.value.status == 415 and err.value.code == "CONTENT_TYPE_NOT_ALLOWED"


def test_binary_urls() -> None:
    base = "https://api.example/fhir"
    assert binary_id("Binary/abc", base) == "abc"
    assert binary_id(f"{base}/Binary/abc", base) == "abc"
    assert binary_id("Binary/abc/_history/2", base) == "abc"
    assert binary_id("https://elsewhere/Binary/abc", base) is None
    assert binary_id("DocumentReference/abc", base) is None
    assert binary_id("urn:uuid:1234", base) is None
