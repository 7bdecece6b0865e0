"""The committed OpenAPI spec matches what the server serves (`make openapi` regenerates)."""

import json
from pathlib import Path

SPEC = Path(__file__).resolve().parents[1] / "openapi" / "openapi.json"


async def test_committed_openapi_matches_served(client):
    served = (await client.get("/openapi.json")).json()
    committed = json.loads(SPEC.read_text())
    assert served == committed, "openapi/openapi.json is stale: run `make openapi`"
