"""The README's curl walkthrough (vendor key, registration, token, deposit; patient read)
runs as written against the live server, so the documentation cannot drift from the API."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.live_server import LiveServer

ROOT = Path(__file__).resolve().parents[2]


def walkthrough() -> str:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```sh\n(BASE=.*?)```", readme, flags=re.S)
    assert len(blocks) == 1, "the README has one walkthrough block starting with BASE="
    return blocks[0]


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_readme_walkthrough_runs(live: LiveServer, database_url: str, tmp_path: Path) -> None:
    script = walkthrough().replace("BASE=http://127.0.0.1:8000", f"BASE={live.url}", 1)
    bin_dir = str(Path(sys.executable).parent)  # .venv/bin: espace-api and python3
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "DATABASE_URL": database_url,
        "BASE_URL": live.url,
    }
    script = script.replace(".venv/bin/espace-api", "espace-api")
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    # The last command is the patient's search: it finds the vendor's document.
    assert '"total":1' in proc.stdout.replace(" ", "")
    assert "Compte rendu de consultation" in proc.stdout
