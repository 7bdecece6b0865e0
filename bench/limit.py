"""The `limit` scenario: espace-api against the bare limit, in one run, loaded by wrk.

Both servers run with the same number of uvicorn workers on the same database. wrk (one
thread, C, so that the load generator leaves the cores to the servers) reads the same
Patient row: espace-api as the patient (token verified, policy, audit row committed), the
bare app (bench/bare_app.py) by primary key. Prints req/s, p50/p95/p99 and the ratio.
"""

import json
import os
import pathlib
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

HERE = pathlib.Path(__file__).parent
REPORT_LUA = HERE / "wrk" / "report.lua"
REQUESTS_LUA = HERE / "wrk" / "requests.lua"


@dataclass
class WrkResult:
    """One wrk run."""

    name: str
    requests: int
    seconds: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    errors: int
    detail: str = ""  # which errors: non-2xx answers, timeouts, socket errors

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        return (
            f"{self.name:<28} {self.requests:>7} req  {self.rate:>8.1f} req/s  "
            f"p50 {self.p50_ms:6.1f} ms  p95 {self.p95_ms:6.1f} ms  p99 {self.p99_ms:6.1f} ms  "
            f"errors {self.errors}{self.detail}"
        )


def require_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise SystemExit("wrk is missing: `make bench` installs it (apt-get install wrk)")
    return path


def requests_file(
    path: pathlib.Path,
    requests: list[tuple[str, str, str, str]],
    *,
    tokens: Sequence[str] = (),
    patients: Sequence[str] = (),
) -> pathlib.Path:
    """Write the request templates bench/wrk/requests.lua cycles through."""
    with path.open("w") as out:
        if tokens:
            out.write("TOKENS\t" + "\t".join(tokens) + "\n")
        if patients:
            out.write("PATIENTS\t" + "\t".join(patients) + "\n")
        for method, target, token, body in requests:
            out.write(f"{method}\t{target}\t{token}\t{body}\n")
    return path


def wrk(
    name: str,
    url: str,
    *,
    connections: int,
    seconds: int,
    headers: dict[str, str] | None = None,
    requests: pathlib.Path | None = None,
    warmup: int = 3,
) -> WrkResult:
    """Run wrk against `url` (or the request templates of `requests`) for `warmup` seconds,
    then for `seconds`, and parse the JSON line the Lua script prints of the second run."""
    script = REQUESTS_LUA if requests is not None else REPORT_LUA
    cmd = [require_wrk(), "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s"]
    cmd += ["-s", str(script)]
    for key, value in (headers or {}).items():
        cmd += ["-H", f"{key}: {value}"]
    env = {**os.environ, "REQUESTS_FILE": str(requests)} if requests is not None else None
    if warmup:  # the same load first, not counted: pools, caches, prepared statements fill
        warm = [c if not c.startswith("-d") else f"-d{warmup}s" for c in cmd]
        subprocess.run([*warm, url], capture_output=True, check=True, env=env, cwd=HERE.parent)
    out = subprocess.run(
        [*cmd, url], capture_output=True, text=True, check=True, env=env, cwd=HERE.parent
    ).stdout
    data = json.loads(next(line for line in out.splitlines() if line.startswith("{")))
    return WrkResult(
        name,
        data["requests"],
        data["duration_us"] / 1e6,
        data["p50_us"] / 1000,
        data["p95_us"] / 1000,
        data["p99_us"] / 1000,
        data["errors"],
        (
            f" ({data['status_errors']} non-2xx, {data['timeouts']} timeouts,"
            f" {data['socket_errors']} socket)"
            if data["errors"]
            else ""
        ),
    )


def ratio_line(what: str, ours: WrkResult, limit: WrkResult, target: float) -> str:
    ratio = ours.rate / limit.rate if limit.rate else 0.0
    verdict = "met" if ratio >= target else "NOT met"
    return f"{what}: {ratio:.0%} of the bare limit (target {target:.0%}: {verdict})"


def floor_line(what: str, result: WrkResult, per_second: float) -> str:
    verdict = "met" if result.rate >= per_second and not result.errors else "NOT met"
    return f"{what}: {result.rate:.0f}/s (target {per_second:.0f}/s, no errors: {verdict})"
