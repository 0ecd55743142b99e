"""Benchmark: catwalk's statistics over 1,000,000 ledger rows on PostgreSQL.

Builds a throwaway database (migrated with catwalk's own migrations, so the tables and
indexes are the real ones), fills it with ``generate_series`` (a year of jobs and provider
calls), builds the hourly rollup the way a bulk import would (``rebuild_hourly_rollup``; in
normal running each ledger insert maintains it), checks the rollup against the ledger, then
times ``compute_stats`` (what the dashboard, API and ``catwalk stats`` run): the whole year
and the last 30 days in UTC, and the whole year in a half-hour time zone (Asia/Kolkata),
where the hours holding a local midnight come from the ledger rows. Prints figures as it
goes and a last line of JSON with ``rows`` and ``stats_query_ms``. The database is dropped
at the end.

    python bench/stats.py [--rows 1000000] [--pg postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import time
import uuid
from pathlib import Path

import psycopg
from catwalk.db import session_scope
from catwalk.db.session import dispose_engines, get_engine
from catwalk.db.stats import compute_stats, rebuild_hourly_rollup

from catwalk.config import Settings

CALLS_PER_JOB = 3  # two keyframes and one video
PRODUCTS = 2000

_FILL = """
INSERT INTO products (id, name, images, created_at, updated_at)
SELECT 'p' || i, 'Product ' || i, '[]', now(), now() FROM generate_series(1, %(products)s) i;

INSERT INTO video_jobs (
    id, product_id, status, progress, current_step, options, identity_seed, image_keys,
    image_request_ids, video_request_urls, nano_banana_cost, pika_labs_cost, total_cost,
    estimated_cost, retry_count, cancel_requested, created_at, updated_at)
SELECT md5(j::text), 'p' || (1 + j %% %(products)s),
       CASE WHEN j %% 20 = 0 THEN 'FAILED' ELSE 'COMPLETED' END, 100, 'completed', '{}', 0,
       '{}', '{}', '{}', 0.078, 0.2, 0.278, 0.278, 0, false,
       %(start)s::timestamptz + (j * %(span)s::interval / %(jobs)s), now()
FROM generate_series(0, %(jobs)s - 1) j;

INSERT INTO cost_ledger (
    job_id, service, provider, operation, model, resolution, units, unit, unit_price, amount,
    currency, price_date, provider_request_id, succeeded, attempt, created_at)
SELECT md5((i / 3)::text),
       CASE WHEN i %% 3 = 2 THEN 'pika' ELSE 'nano_banana' END,
       CASE WHEN i %% 3 = 2 THEN 'fal' ELSE 'gemini' END,
       CASE WHEN i %% 3 = 2 THEN 'animate' ELSE 'generate_image' END,
       CASE WHEN i %% 3 = 2 THEN 'fal-ai/pika/v2.2/pikaframes'
            WHEN i %% 7 = 0 THEN 'gemini-3-pro-image-preview'
            ELSE 'gemini-2.5-flash-image' END,
       CASE WHEN i %% 3 = 2 THEN (CASE WHEN i %% 5 = 0 THEN '1080p' ELSE '720p' END) END,
       CASE WHEN i %% 3 = 2 THEN 5 ELSE 1290 END,
       CASE WHEN i %% 3 = 2 THEN 'second' ELSE 'output_token' END,
       CASE WHEN i %% 3 = 2 THEN 0.04 ELSE 0.00003 END,
       CASE WHEN i %% 3 = 2 THEN (CASE WHEN i %% 5 = 0 THEN 0.30 ELSE 0.20 END) ELSE 0.0387 END,
       'USD', DATE '2026-03-01', 'req-' || i, i %% 17 <> 0, 1,
       %(start)s::timestamptz + (i * %(span)s::interval / %(rows)s)
FROM generate_series(0, %(rows)s - 1) i;
"""


def _timed(label: str, fn, runs: int) -> list[float]:  # type: ignore[no-untyped-def]
    times = []
    for n in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
        print(f"  {label} run {n + 1}: {times[-1]:.1f} ms", flush=True)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--keep", action="store_true", help="Keep the database (to explore plans).")
    args = parser.parse_args()

    name = f"catwalk_bench_{uuid.uuid4().hex[:10]}"
    admin_url = args.pg
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = admin_url.rsplit("/", 1)[0] + "/" + name
    settings = Settings(DATABASE_URL=url)
    try:
        t0 = time.perf_counter()
        get_engine(settings)  # Alembic: the real schema and indexes
        print(f"database {name} migrated in {time.perf_counter() - t0:.1f} s", flush=True)

        jobs = args.rows // CALLS_PER_JOB + 1
        start = dt.datetime.now(dt.UTC) - dt.timedelta(days=365)
        t0 = time.perf_counter()
        params = {
            "products": PRODUCTS,
            "jobs": jobs,
            "rows": args.rows,
            "start": start,
            "span": "365 days",
        }
        with psycopg.connect(url) as conn:
            for statement in filter(str.strip, _FILL.split(";")):
                conn.execute(statement, params)
        fill_s = time.perf_counter() - t0
        print(f"filled {args.rows:,} ledger rows and {jobs:,} jobs in {fill_s:.1f} s", flush=True)
        t0 = time.perf_counter()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")  # visibility map for index-only scans; planner stats
        print(f"vacuum analyze in {time.perf_counter() - t0:.1f} s", flush=True)

        t0 = time.perf_counter()
        with session_scope(settings) as session:
            rollup_rows = rebuild_hourly_rollup(session=session)
        rollup_s = time.perf_counter() - t0
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE cost_ledger_hourly")
            ledger = conn.execute("SELECT sum(amount), count(*) FROM cost_ledger").fetchone()
            rollup = conn.execute(
                "SELECT sum(amount), sum(calls) FROM cost_ledger_hourly"
            ).fetchone()
        assert ledger == rollup, (ledger, rollup)
        print(
            f"hourly rollup: {rollup_rows:,} rows built in {rollup_s:.1f} s; "
            f"agrees with the ledger (${ledger[0]:,.2f} over {ledger[1]:,} calls)",
            flush=True,
        )

        def run(
            first: dt.date | None = None, last: dt.date | None = None, on: Settings = settings
        ) -> dict:
            with session_scope(on) as session:
                return compute_stats(session=session, settings=on, date_from=first, date_to=last)

        today = dt.datetime.now(dt.UTC).date()
        print("stats over the whole year:", flush=True)
        year = _timed("whole year", run, args.runs)
        print("stats over the last 30 days:", flush=True)
        month = _timed("30 days", lambda: run(today - dt.timedelta(days=29), today), args.runs)
        kolkata = Settings(DATABASE_URL=url, LIMITS_TIMEZONE="Asia/Kolkata")
        print(
            "stats over the whole year in Asia/Kolkata (midnight hours from the ledger):",
            flush=True,
        )
        exact = _timed("Asia/Kolkata", lambda: run(on=kolkata), args.runs)
        result = run()
        print(
            f"checked: {result['calls']:,} calls, totalCost ${result['totalCost']:,.2f}, "
            f"{len(result['costByDate'])} days, {result['totalJobs']:,} jobs",
            flush=True,
        )
        with psycopg.connect(url) as conn:
            load = (
                conn.execute("SELECT 1").fetchone()
                and Path("/proc/loadavg").read_text().split()[:3]
            )
        print(f"machine load average while measuring: {' '.join(load)}", flush=True)
        print(
            json.dumps(
                {
                    "rows": result["calls"],
                    "jobs": result["totalJobs"],
                    "stats_query_ms": round(statistics.median(year), 1),
                    "stats_query_ms_runs": [round(t, 1) for t in year],
                    "stats_30_days_ms": round(statistics.median(month), 1),
                    "stats_half_hour_zone_ms": round(statistics.median(exact), 1),
                    "rollup_rows": rollup_rows,
                    "rollup_build_seconds": round(rollup_s, 1),
                    "load_average": [float(x) for x in load],
                    "fill_seconds": round(fill_s, 1),
                }
            )
        )
    finally:
        dispose_engines()
        if args.keep:
            print(f"kept database {name}", file=sys.stderr)
        else:
            with psycopg.connect(admin_url, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
