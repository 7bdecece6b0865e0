"""Response formats (JSON, XML, _pretty), gzip, Prefer return, and /metadata."""

import gzip

from fhir.resources.R4B.patient import Patient
from lxml import etree

from espace_api.fhir.formats import json_to_xml
from tests.support.fhir import FHIR_JSON, create, document, patient

NS = {"f": "http://hl7.org/fhir"}


async def test_read_as_xml_by_accept_and_format(client, auth):
    ops = await auth.operator()
    p = await create(client, ops, patient(family="Xmlier"))
    for kwargs in (
        {"headers": {**ops, "Accept": "application/fhir+xml"}},
        {"headers": ops, "params": {"_format": "xml"}},
        {"headers": ops, "params": {"_format": "application/fhir+xml"}},
    ):
        r = await client.get(f"/Patient/{p['id']}", **kwargs)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("application/fhir+xml")
        assert r.headers["etag"] == 'W/"1"'
        root = etree.fromstring(r.content)
        assert root.tag == "{http://hl7.org/fhir}Patient"
        assert root.find("f:id", NS).get("value") == p["id"]
        assert root.find("f:name/f:family", NS).get("value") == "Xmlier"


async def test_search_as_xml(client, auth):
    ops = await auth.operator()
    p = await create(client, ops, patient())
    r = await client.get(f"/Patient?_id={p['id']}&_format=xml", headers=ops)
    assert r.status_code == 200
    root = etree.fromstring(r.content)
    assert root.tag == "{http://hl7.org/fhir}Bundle"
    assert root.find("f:total", NS).get("value") == "1"
    assert root.find("f:entry/f:resource/f:Patient/f:id", NS).get("value") == p["id"]


async def test_json_wins_when_preferred_and_unknown_formats_are_406(client, auth):
    ops = await auth.operator()
    p = await create(client, ops, patient())
    url = f"/Patient/{p['id']}"
    r = await client.get(
        url, headers={**ops, "Accept": "application/fhir+json, application/fhir+xml;q=0.5"}
    )
    assert r.headers["content-type"].startswith("application/fhir+json")
    r = await client.get(url, headers={**ops, "Accept": "*/*"})
    assert r.headers["content-type"].startswith("application/fhir+json")
    assert (await client.get(url, headers={**ops, "Accept": "image/png"})).status_code == 406
    assert (await client.get(url, params={"_format": "turtle"}, headers=ops)).status_code == 406


async def test_pretty(client, auth):
    ops = await auth.operator()
    p = await create(client, ops, patient())
    compact = await client.get(f"/Patient/{p['id']}", headers=ops)
    pretty = await client.get(f"/Patient/{p['id']}", params={"_pretty": "true"}, headers=ops)
    assert b"\n  " in pretty.content and b"\n" not in compact.content
    assert pretty.json() == compact.json()
    xml = await client.get(
        f"/Patient/{p['id']}", params={"_pretty": "true", "_format": "xml"}, headers=ops
    )
    assert b"\n  <id" in xml.content


async def test_gzip_when_accepted(client, auth):
    ops = await auth.operator()
    for _ in range(3):
        await create(client, ops, patient(family="Gzipped"))
    url = "/Patient?family=Gzipped&_count=50"
    r = await client.get(url, headers={**ops, "Accept-Encoding": "gzip"})
    assert r.status_code == 200
    assert r.headers["content-encoding"] == "gzip"
    assert r.json()["resourceType"] == "Bundle"  # httpx decodes transparently
    raw = await client.get(url, headers={**ops, "Accept-Encoding": "identity"})
    assert "content-encoding" not in raw.headers
    assert gzip.compress(raw.content)  # sanity: same body, uncompressed


async def test_prefer_return_on_create_and_update(client, auth):
    ops = await auth.operator()
    minimal = await client.post(
        "/Patient", json=patient(), headers={**ops, **FHIR_JSON, "Prefer": "return=minimal"}
    )
    assert minimal.status_code == 201 and minimal.content == b""
    location = minimal.headers["location"]
    pid = location.split("/Patient/")[1].split("/")[0]
    representation = await client.post(
        "/Patient",
        json=patient(),
        headers={**ops, **FHIR_JSON, "Prefer": "return=representation"},
    )
    assert representation.json()["resourceType"] == "Patient"
    body = (await client.get(f"/Patient/{pid}", headers=ops)).json()
    outcome = await client.put(
        f"/Patient/{pid}",
        json=body,
        headers={**ops, **FHIR_JSON, "Prefer": "return=OperationOutcome"},
    )
    assert outcome.status_code == 200
    assert outcome.json()["resourceType"] == "OperationOutcome"
    assert outcome.json()["issue"][0]["severity"] == "information"
    assert outcome.headers["etag"] == 'W/"2"'
    # Prefer return never empties a read
    read = await client.get(f"/Patient/{pid}", headers={**ops, "Prefer": "return=minimal"})
    assert read.json()["id"] == pid


async def test_metadata_declares_what_is_implemented(client):
    cs = (await client.get("/metadata")).json()
    assert "application/fhir+xml" in cs["format"]
    assert "application/json-patch+json" in cs["patchFormat"]
    rest = cs["rest"][0]
    assert {"code": "history-system"} in rest["interaction"]
    by_type = {r["type"]: r for r in rest["resource"]}
    for name in ("Practitioner", "PractitionerRole", "Organization", "RelatedPerson", "List"):
        assert name in by_type
    patient_rt = by_type["Patient"]
    codes = {i["code"] for i in patient_rt["interaction"]}
    assert {"patch", "history-type", "update", "delete", "search-type"} <= codes
    assert patient_rt["conditionalUpdate"] is True
    assert patient_rt["conditionalDelete"] == "single"
    assert patient_rt["conditionalRead"] == "full-support"
    assert by_type["Practitioner"]["updateCreate"] is True
    assert by_type["Organization"]["updateCreate"] is True
    assert by_type["Patient"]["updateCreate"] is False
    assert {p["name"] for p in by_type["List"]["searchParam"]} >= {
        "subject",
        "patient",
        "code",
        "status",
        "identifier",
        "date",
    }
    xml = await client.get("/metadata", params={"_format": "xml"})
    assert etree.fromstring(xml.content).tag == "{http://hl7.org/fhir}CapabilityStatement"


def test_json_to_xml_round_trips_through_fhir_resources():
    resource = {
        "resourceType": "Patient",
        "id": "p1",
        "meta": {"versionId": "1", "lastUpdated": "2024-01-01T00:00:00Z"},
        "text": {
            "status": "generated",
            "div": '<div xmlns="http://www.w3.org/1999/xhtml">Camille <b>Testeur</b></div>',
        },
        "extension": [{"url": "http://example.org/ext", "valueString": "v"}],
        "active": True,  # alphabetically first in the stored JSON, after identifier in XML
        "identifier": [{"system": "urn:x", "value": "1"}],
        "name": [
            {
                "family": "A",
                "given": ["B", "C"],
                "_given": [None, {"extension": [{"url": "http://e/y", "valueBoolean": False}]}],
            }
        ],
        "multipleBirthInteger": 2,
    }
    xml = json_to_xml(resource)
    canonical = Patient.model_validate(resource).model_dump(mode="json")
    assert Patient.model_validate_xml(xml).model_dump(mode="json") == canonical
    root = etree.fromstring(xml)
    order = [etree.QName(child).localname for child in root]
    assert order.index("identifier") < order.index("active") < order.index("name")


def test_json_to_xml_element_ids_and_incomplete_content():
    # a subsetted DocumentReference (no status, no content) still renders
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [
            {
                "fullUrl": "http://test/DocumentReference/d1",
                "resource": {
                    "resourceType": "DocumentReference",
                    "id": "d1",
                    "subject": {"id": "s1", "reference": "Patient/p1"},
                },
                "search": {"mode": "match"},
            }
        ],
    }
    root = etree.fromstring(json_to_xml(bundle))
    doc = root.find("f:entry/f:resource/f:DocumentReference", NS)
    assert doc.find("f:id", NS).get("value") == "d1"  # a resource id is an element
    assert doc.find("f:subject", NS).get("id") == "s1"  # an element id is an attribute
    entry = [etree.QName(c).localname for c in root.find("f:entry", NS)]
    assert entry == ["fullUrl", "resource", "search"]


async def test_subsetted_search_as_xml(client, auth):
    ops = await auth.operator()
    p = await create(client, ops, patient())
    doc = await create(client, ops, document(p["id"]))
    r = await client.get(
        "/DocumentReference",
        params={"_id": doc["id"], "_elements": "subject", "_format": "xml"},
        headers=ops,
    )
    assert r.status_code == 200, r.text
    root = etree.fromstring(r.content)
    found = root.find("f:entry/f:resource/f:DocumentReference", NS)
    assert found.find("f:id", NS).get("value") == doc["id"]
    assert found.find("f:subject/f:reference", NS).get("value") == f"Patient/{p['id']}"
