"""Latency statistics and report formatting."""

import os
import statistics
from dataclasses import dataclass


@dataclass
class Report:
    """One scenario's outcome."""

    name: str
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]

    def line(self) -> str:
        lat = sorted(self.latencies_ms) or [0.0]

        def pct(p: float) -> float:
            return lat[min(len(lat) - 1, round(p / 100 * (len(lat) - 1)))]

        rps = self.requests / self.seconds if self.seconds else 0.0
        return (
            f"{self.name:<28} {self.requests:>7} req  {rps:>8.1f} req/s  "
            f"p50 {pct(50):6.1f} ms  p95 {pct(95):6.1f} ms  p99 {pct(99):6.1f} ms  "
            f"mean {statistics.fmean(lat):6.1f} ms  errors {self.errors}"
        )


def header() -> str:
    return f"machine: {os.cpu_count()} cores; server and load generator share them"
