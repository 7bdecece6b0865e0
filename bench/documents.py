"""Issue 4 scenarios: ITI-65 deposits by concurrent vendors; ITI-67 searches on a database
pre-loaded with bench.loader (1 million DocumentReferences for 100,000 patients)."""

import base64
import hashlib
import json
import os
import pathlib
import random
import uuid
from typing import Any
from urllib.parse import urlencode

import httpx

from bench import limit, tokens
from bench.loader import INS, LOINC, TYPES, patient_ins
from bench.loader import patient_id as loaded_patient_id
from bench.stats import Report

PDF_SIZE = 50 * 1024


def pdf_bytes() -> bytes:
    """A distinct ~50 KB document with a PDF header (content is random: no dedupe)."""
    head = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"
    return head + os.urandom(PDF_SIZE - len(head) - 6) + b"\n%%EOF"


def _bundle(
    pid: str, master: str, code: str, data_b64: str, doc_url: str, binary_url: str, **facts: Any
) -> dict[str, Any]:
    """An ITI-65 transaction: Binary + DocumentReference (French PDSm metadata); `facts`
    adds attachment elements (size, hash)."""
    document = {
        "resourceType": "DocumentReference",
        "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": master},
        "status": "current",
        "type": {"coding": [{"system": LOINC, "code": code}]},
        "category": [{"coding": [{"system": LOINC, "code": code}]}],
        "subject": {"reference": f"Patient/{pid}"},
        "date": "2024-06-01T09:30:00Z",
        "author": [{"reference": "Practitioner/rpps-10001"}],
        "custodian": {"reference": "Organization/finess-123456789"},
        "content": [
            {
                "attachment": {
                    "contentType": "application/pdf",
                    "url": binary_url,
                    **facts,
                    "title": "Compte rendu",
                }
            }
        ],
        "context": {"period": {"start": "2024-06-01"}},
    }
    binary = {
        "resourceType": "Binary",
        "contentType": "application/pdf",
        "securityContext": {"reference": f"Patient/{pid}"},
        "data": data_b64,
    }
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": doc_url,
                "resource": document,
                "request": {"method": "POST", "url": "DocumentReference"},
            },
            {
                "fullUrl": binary_url,
                "resource": binary,
                "request": {"method": "POST", "url": "Binary"},
            },
        ],
    }


def deposit_bundle(pid: str) -> dict[str, Any]:
    """A deposit of a fresh ~50 KB PDF with its size and hash."""
    return deposit_of(pid, f"urn:uuid:{uuid.uuid4()}", pdf_bytes(), random.choice(TYPES))


def deposit_of(pid: str, master: str, data: bytes, code: str = TYPES[0]) -> dict[str, Any]:
    """The ITI-65 deposit of `data` under masterIdentifier `master`, with its size and
    SHA-1 (a vendor's retry sends the same)."""
    return _bundle(
        pid,
        master,
        code,
        base64.b64encode(data).decode(),
        f"urn:uuid:{uuid.uuid4()}",
        f"urn:uuid:{uuid.uuid4()}",
        size=len(data),
        hash=base64.b64encode(hashlib.sha1(data).digest()).decode(),
    )


def deposit_call(patients: list[str], vendor_tokens: list[str]):  # type: ignore[no-untyped-def]
    async def call(client: httpx.AsyncClient, i: int) -> httpx.Response:
        token = vendor_tokens[i % len(vendor_tokens)]
        return await client.post(
            "/",
            json=deposit_bundle(random.choice(patients)),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"},
        )

    return call


def search_query(patients: int, i: int) -> dict[str, str]:
    """The i-th ITI-67 query: by patient id (odd), or by INS + type (even), newest first."""
    n = random.randrange(patients)
    if i % 2:
        return {"patient": loaded_patient_id(n), "_sort": "-date"}
    return {
        "patient.identifier": f"{INS}|{patient_ins(n)}",
        "type": f"{LOINC}|{random.choice(TYPES)}",
        "status": "current",
        "_sort": "-date",
    }


def search_call(patients: int, token: str):  # type: ignore[no-untyped-def]
    """ITI-67 as a professional's software sends it: by INS, type, newest first."""

    async def call(client: httpx.AsyncClient, i: int) -> httpx.Response:
        return await client.get(
            "/DocumentReference",
            params=search_query(patients, i),
            headers={"Authorization": f"Bearer {token}"},
        )

    return call


def errors_of(report: Report) -> str:
    return "" if not report.errors else f" ({report.errors} errors)"


def deposit_template() -> str:
    """An ITI-65 Bundle (one line of JSON) for bench/wrk/requests.lua: a ~50 KB PDF whose
    bytes 15..27 are the request counter ({{N64}}: no two deposits share content), a
    masterIdentifier from the counter, and the patient picked per request ({{PID}})."""
    head = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"  # 15 bytes: the slot starts on a base64 boundary
    rest = os.urandom(PDF_SIZE - len(head) - 12 - 6) + b"\n%%EOF"
    data = base64.b64encode(head).decode() + "{{N64}}" + base64.b64encode(rest).decode()
    bundle = _bundle(
        "{{PID}}",
        "urn:oid:1.2.250.1.999.{{N}}",
        TYPES[0],
        data,
        "urn:uuid:00000000-0000-4000-8000-000000000001",
        "urn:uuid:00000000-0000-4000-8000-000000000002",
    )
    return json.dumps(bundle, separators=(",", ":"))


def search_targets(patients: int, n: int = 2000) -> list[str]:
    """ITI-67 request targets as search_call sends them (by id, or by INS + type)."""
    return ["/DocumentReference?" + urlencode(search_query(patients, i)) for i in range(n)]


def vendor_deposits(url: str, base: str, patients: list[str], path: pathlib.Path) -> pathlib.Path:
    """The wrk request file of 16 vendors, each with its own machine token, depositing
    ITI-65 Bundles (deposit_template) for `patients`."""
    vendors = tokens.mint_all(url, base, [tokens.vendor(i) for i in range(16)])
    return limit.requests_file(
        path, [("POST", "/", "", deposit_template())], tokens=vendors, patients=patients
    )
