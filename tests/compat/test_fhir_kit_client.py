"""fhir-kit-client (npm, run with node) against the live server: capability statement,
SMART discovery, create, read, update (plain and conditional), JSON Patch, search (GET and
POST), transaction with urn:uuid references, paging with nextPage, history, delete.

The script is compat/js/fhir-kit-client.mjs; `make test` installs its node_modules from
compat/js/package-lock.json (`npm ci`)."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.live_server import LiveServer

JS = Path(__file__).resolve().parents[2] / "compat" / "js"
SCRIPT = JS / "fhir-kit-client.mjs"


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: fhir-kit-client compatibility not checked")
    if not (JS / "node_modules" / "fhir-kit-client").is_dir():
        pytest.skip(
            "compat/js/node_modules is missing: run `make compat/js/node_modules/.installed` "
            "(npm ci --prefix compat/js)"
        )
    return node


def test_fhir_kit_client(live: LiveServer, operator_token: str) -> None:
    node = _node()
    env = {**os.environ, "FHIR_BASE_URL": live.url, "FHIR_TOKEN": operator_token}
    run = subprocess.run(
        [node, str(SCRIPT)], cwd=JS, env=env, capture_output=True, text=True, timeout=60
    )
    results = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    failed = [r for r in results if not r["ok"]]
    assert not failed and run.returncode == 0, json.dumps(failed, indent=2) + run.stderr
    assert [r["check"] for r in results] == [
        "capabilityStatement",
        "smartAuthMetadata",
        "create",
        "read",
        "update",
        "patch",
        "search",
        "transaction",
        "history and delete",
    ]
