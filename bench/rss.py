"""The `rss` scenario: a worker's memory over `--deposits` ITI-65 deposits (issue 14).

16 vendors deposit ITI-65 Bundles (DocumentReference + ~50 KB PDF, unique bytes) with wrk
in rounds of `ROUND_SECONDS` until the deposits answered reach the target. Each worker's
RSS is taken after the first round (warm: pools, caches and statement caches filled) and
after the last; the target is growth within 10 %.
"""

import pathlib
import shutil
import tempfile
from collections.abc import Callable

from bench import documents, limit
from bench.procs import rss_kb, workers_of

ROUND_SECONDS = 30
LIMIT_PERCENT = 10.0


def run(
    url: str,
    base: str,
    server_pid: int,
    patients: list[str],
    deposits: int,
    log: Callable[[str], None] = print,
) -> list[str]:
    """Deposit until `deposits` are answered; the RSS lines and the verdict."""
    work = pathlib.Path(tempfile.mkdtemp(prefix="espace-rss-"))
    template = documents.vendor_deposits(url, base, patients, work / "deposits.tsv")
    done, errors, rounds = 0, 0, 0
    before: dict[int, int] = {}
    try:
        while done < deposits:
            result = limit.wrk(
                "deposits",
                base,
                requests=template,
                connections=16,
                seconds=ROUND_SECONDS,
                warmup=0,
            )
            done, errors, rounds = done + result.requests, errors + result.errors, rounds + 1
            if not before:
                before = {w: rss_kb(w) for w in workers_of(server_pid)}
            log(f"  {done} deposits ({result.rate:.0f}/s this round, {errors} errors)")
        after = {w: rss_kb(w) for w in workers_of(server_pid)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    lines = [
        f"RSS over {done} ITI-65 deposits ({rounds} rounds of {ROUND_SECONDS} s, errors {errors}):"
    ]
    worst = 0.0
    for w, start in before.items():
        end = after.get(w, 0)
        growth = 100.0 * (end - start) / start if start else 0.0
        worst = max(worst, growth)
        lines.append(
            f"  worker {w}: {start / 1024:.0f} MB after the first round -> {end / 1024:.0f} MB"
            f" ({growth:+.1f} %)"
        )
    verdict = "met" if worst <= LIMIT_PERCENT and errors == 0 else "NOT met"
    lines.append(
        f"worker RSS growth: {worst:+.1f} % (target within {LIMIT_PERCENT:.0f} %: {verdict})"
    )
    return lines
