"""`make bench-citus`: the `core` and `deposit` scenarios of bench/run.py on a throw-away
Citus cluster (tests/citus/cluster.sh: coordinator + 2 workers on this machine), then the
share of the coordinator's query executions that ran on one shard (Citus 13's
`citus_stat_counters`, enabled by the cluster script). Compare with `make bench
BENCH_ARGS="--scenarios core,deposit"` on plain PostgreSQL, in the same session.

    tests/citus/cluster.sh sh -c 'DATABASE_URL=$CITUS_DATABASE_URL BENCH_EXISTING_DATABASE=1 \\
        python -m bench.citus --scenarios core,deposit --seconds 10'
"""

import asyncio
import os
import sys

import asyncpg
from sqlalchemy.engine import make_url

from bench import run

COUNTERS = (
    "SELECT sum(query_execution_single_shard), sum(query_execution_multi_shard)"
    " FROM citus_stat_counters"
)


async def _sql(query: str) -> tuple[int, int]:
    url = make_url(os.environ["DATABASE_URL"]).set(drivername="postgresql")
    conn = await asyncpg.connect(url.render_as_string(hide_password=False))
    try:
        row = await conn.fetchrow(query)
        return (int(row[0] or 0), int(row[1] or 0)) if row and len(row) == 2 else (0, 0)
    finally:
        await conn.close()


def main() -> None:
    """Run bench/run.py's main with this command line, then print the single-shard share."""
    asyncio.run(_sql("SELECT citus_stat_counters_reset(0), 0"))
    run.main()
    single, multi = asyncio.run(_sql(COUNTERS))
    total = single + multi
    share = f"{100 * single / total:.1f} %" if total else "n/a"
    print(f"citus: {single} single-shard and {multi} multi-shard query executions ({share} single)")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
