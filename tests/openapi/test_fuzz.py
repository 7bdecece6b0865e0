"""schemathesis against the committed OpenAPI document, with a valid token of each kind
(patient, system/vendor, user/professional, operator), on a live server: no answer is a
500, and every answer fits the status codes, content types and schemas the document
declares.

`make test` runs 2 examples per operation (OPENAPI_FUZZ_EXAMPLES) on the operations without
a FHIR resource body (OPENAPI_FUZZ_WRITES=1 adds those: generating FHIR resources takes
seconds per example); `make fuzz` (HYPOTHESIS_PROFILE=fuzz) runs 50 examples on every
operation, each sent with all four tokens, negative (schema-violating) requests included.
"""

import collections
import itertools
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks
from schemathesis.config import SchemathesisConfig

from tests.support.live_server import LiveServer

SPEC = Path(__file__).resolve().parents[2] / "openapi" / "openapi.json"
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
FUZZ = PROFILE == "fuzz"
KINDS = ("patient", "system", "user", "operator")
# Vendor scopes as the README's walkthrough registers them, plus search on every type.
VENDOR_SCOPES = "system/*.s system/DocumentReference.c system/Binary.c system/List.c"

CONFIG = SchemathesisConfig.from_dict(
    {
        "phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}},
        "generation": {"mode": "all" if FUZZ else "positive"},
    }
)
schema = schemathesis.openapi.from_dict(json.loads(SPEC.read_text()), config=CONFIG)
if not FUZZ and os.environ.get("OPENAPI_FUZZ_WRITES") != "1":
    # Generating FHIR resource bodies (recursive Extension, 60 datatypes) takes tens of
    # seconds per operation: `make test` fuzzes the reads, searches, deletes and
    # operations, `make fuzz` every operation.
    schema = schema.exclude(method=["PUT", "PATCH"]).exclude(
        method="POST", path_regex=r"^/[A-Za-z]*$"
    )


@schemathesis.serializer("application/fhir+ndjson")
def _ndjson(ctx: Any, value: Any) -> bytes:
    """$enrol's NDJSON body: the generated string as it is."""
    return str(value).encode()


CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]
settings.register_profile(
    "openapi-ci",
    max_examples=int(os.environ.get("OPENAPI_FUZZ_EXAMPLES", "2")),
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
settings.register_profile(
    "openapi-fuzz", max_examples=50, deadline=None, suppress_health_check=list(HealthCheck)
)


@pytest.fixture(scope="session")
def tokens(fuzz_server: LiveServer) -> dict[str, str]:
    """One valid token per kind; the patient's own Patient exists (enrolled by an operator)."""
    operator = fuzz_server.token("operator")
    created = httpx.post(
        f"{fuzz_server.url}/Patient",
        headers={"Authorization": f"Bearer {operator}", "Content-Type": "application/fhir+json"},
        json={
            "resourceType": "Patient",
            "identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.10", "value": "248039912345678"}],
            "name": [{"family": "Fuzz", "given": ["Camille"]}],
        },
    )
    assert created.status_code == 201, created.text
    patient_id = created.json()["id"]
    return {
        "operator": operator,
        "patient": fuzz_server.token("patient", patient_id=patient_id),
        "system": fuzz_server.token("system", scopes=VENDOR_SCOPES),
        "user": fuzz_server.token("user"),
    }


# Answers per operation: OPENAPI_FUZZ_REPORT=<file> writes, after the run, how many
# generated requests each operation answered with 2xx (reached the handler's success path)
# and with 4xx, to see which operations still refuse nearly everything generated.
ANSWERS: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)


@pytest.fixture(scope="module", autouse=True)
def report() -> Iterator[None]:
    yield
    target = os.environ.get("OPENAPI_FUZZ_REPORT")
    if target:
        lines = [
            f"{label}\t{sum(n for s, n in c.items() if s < '3')}\t{sum(c.values())}\t{dict(c)}"
            for label, c in sorted(ANSWERS.items())
        ]
        Path(target).write_text("operation\t2xx\ttotal\tstatuses\n" + "\n".join(lines) + "\n")


# `make test`: each generated request goes with the next kind of token in turn (every
# operation meets several kinds); `make fuzz`: each request is sent with all four.
_turn = itertools.cycle(KINDS)


@schema.parametrize()
@settings(settings.get_profile(f"openapi-{'fuzz' if FUZZ else 'ci'}"))
def test_api_conforms(case: Any, fuzz_server: LiveServer, tokens: dict[str, str]) -> None:
    for kind in KINDS if FUZZ else (next(_turn),):
        response = case.call_and_validate(
            base_url=fuzz_server.url,
            headers={"Authorization": f"Bearer {tokens[kind]}"},
            checks=CHECKS,
            timeout=30,
        )
        ANSWERS[case.operation.label][str(response.status_code)] += 1
