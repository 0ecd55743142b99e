"""How fast the dashboard's pages stay with 100,000 jobs and 1,000,000 ledger rows.

Makes a throwaway PostgreSQL database, fills it in bulk (``generate_series``: 10,000 products,
100,000 jobs, 300,000 job events, 1,000,000 ledger rows over 90 days, 500 alerts), then times
each page's data functions cold (cache cleared) and warm (cached), and one AppTest render of
each page. Prints a table and, last, one JSON line. The database is dropped at the end.

    python bench/dashboard.py [--jobs 100000] [--ledger 1000000] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


import psycopg

PG_ADMIN = os.environ.get("CATWALK_BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")

FILL = [
    # 10,000 products, one photo each (the demo photo: the pages show it).
    """
    INSERT INTO products (id, name, images, created_at, updated_at, video_key)
    SELECT 'p' || g, 'Product ' || g || CASE g % 4 WHEN 0 THEN ' tee' WHEN 1 THEN ' dress'
                                        WHEN 2 THEN ' jacket' ELSE ' hoodie' END,
           json_build_array(%(photo)s::text), now() - interval '120 days', now(),
           CASE WHEN g % 3 = 0 THEN NULL ELSE 'p' || g || '/video.mp4' END
    FROM generate_series(1, %(products)s) g
    """,
    # Jobs: mostly delivered, 8 % failed, 2 % cancelled, spread over 90 days. The newest
    # ``active`` jobs (one per product) are still in flight.
    """
    INSERT INTO video_jobs (id, product_id, status, progress, current_step, options, identity_seed,
        image_keys, image_request_ids, video_request_urls, nano_banana_cost, pika_labs_cost,
        total_cost, estimated_cost, retry_count, cancel_requested, created_at, updated_at,
        started_at, completed_at, error_message, wait_reason)
    SELECT md5('job' || g), 'p' || (1 + g % %(products)s),
           CASE WHEN g > %(jobs)s - %(active)s THEN
                    (ARRAY['PENDING','GENERATING_IMAGES','GENERATING_VIDEO','UPLOADING'])[1 + g % 4]
                WHEN g % 50 = 0 THEN 'CANCELLED' WHEN g % 12 = 0 THEN 'FAILED' ELSE 'COMPLETED' END,
           CASE WHEN g > %(jobs)s - %(active)s THEN 10 + g % 80 ELSE 100 END,
           'step', '{"modelType": "female", "videoStyle": "smooth"}', g % 100000,
           '{}', '{}', '{}', 0.078, 0.2, 0.278, 0, 0, false,
           now() - (interval '90 days') * (1 - g::float / %(jobs)s),
           now() - (interval '90 days') * (1 - g::float / %(jobs)s),
           now() - (interval '90 days') * (1 - g::float / %(jobs)s),
           CASE WHEN g > %(jobs)s - %(active)s THEN NULL
                ELSE now() - (interval '90 days') * (1 - g::float / %(jobs)s) + interval '2 minutes' END,
           CASE WHEN g % 12 = 0 AND g % 50 <> 0 THEN 'video: provider refused the request' END,
           CASE WHEN g > %(jobs)s - %(active)s AND g % 4 = 2 THEN 'queued at provider (position 3)' END
    FROM generate_series(1, %(jobs)s) g
    """,
    """
    INSERT INTO job_events (job_id, at, step, attempt, kind, message)
    SELECT md5('job' || (1 + g / 3)), now() - (interval '90 days') * (1 - g::float / (3 * %(jobs)s)),
           (ARRAY['submit','images','video'])[1 + g % 3], 1, 'succeeded', ''
    FROM generate_series(0, 3 * %(jobs)s - 1) g
    """,
    # The ledger: one row per provider call, ten per job on average (attempts, retries).
    """
    INSERT INTO cost_ledger (job_id, service, provider, operation, model, resolution, units, unit,
        unit_price, amount, currency, succeeded, attempt, created_at)
    SELECT md5('job' || (1 + g % %(jobs)s)),
           CASE WHEN g % 3 = 0 THEN 'pika' ELSE 'nano_banana' END,
           CASE WHEN g % 3 = 0 THEN 'fal' ELSE 'gemini' END,
           CASE WHEN g % 3 = 0 THEN 'animate' ELSE 'generate_image' END,
           CASE WHEN g % 3 = 0 THEN 'fal-ai/pika/v2.2/pikaframes' ELSE 'gemini-2.5-flash-image' END,
           CASE WHEN g % 3 = 0 THEN '720p' END,
           CASE WHEN g % 3 = 0 THEN 5 ELSE 1290 END,
           CASE WHEN g % 3 = 0 THEN 'second' ELSE 'output_token' END,
           CASE WHEN g % 3 = 0 THEN 0.04 ELSE 0.00003 END,
           CASE WHEN g % 3 = 0 THEN 0.2 ELSE 0.0387 END,
           'USD', g % 20 <> 0, 1 + (g % 20 = 0)::int,
           -- Written in time order, as a real ledger is (rows are appended "now").
           now() - (interval '90 days') * (1 - g::float / %(ledger)s)
    FROM generate_series(1, %(ledger)s) g
    """,
    """
    INSERT INTO alerts (id, kind, dedupe_key, message, created_at, acknowledged_at)
    SELECT md5('alert' || g), 'daily_cost', 'daily:' || g, 'Spend passed $1000 on day ' || g,
           now() - interval '1 day' * g, CASE WHEN g > 3 THEN now() END
    FROM generate_series(1, 500) g
    """,
]


def _timed(fn: Callable[[], Any], *, repeat: int = 3) -> float:
    """Median milliseconds of ``repeat`` calls."""
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--products", type=int, default=10_000)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--ledger", type=int, default=1_000_000)
    parser.add_argument("--active", type=int, default=60, help="jobs still in flight")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()

    name = f"catwalk_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    home = Path(tempfile.mkdtemp(prefix="catwalk-bench-"))
    os.environ.update(
        DATABASE_URL=url, CATWALK_HOME=str(home), CATWALK_ADMIN_PASSWORD="bench-password-1"
    )
    results: dict[str, Any] = {
        "jobs": args.jobs,
        "ledger_rows": args.ledger,
        "products": args.products,
    }
    try:
        from catwalk.db import get_engine

        from catwalk.catalog import DEMO_PRODUCTS, write_demo_photos
        from catwalk.config import get_settings

        get_settings.cache_clear()
        get_engine(get_settings())  # migrate
        photo = str(write_demo_photos(home / "catalog")[DEMO_PRODUCTS[0].id])
        started = time.perf_counter()
        with psycopg.connect(url, autocommit=True) as conn:
            for statement in FILL:
                conn.execute(
                    # SQL's modulo is "%": double it where it is not a placeholder.
                    re.sub(r"%(?!\()", "%%", statement),  # type: ignore[arg-type]
                    {
                        "photo": photo,
                        "products": args.products,
                        "jobs": args.jobs,
                        "ledger": args.ledger,
                        "active": args.active,
                    },
                )
        # Bulk rows skip record_usage, which keeps the hourly rollup: build it once, as after
        # an import.
        from catwalk.db import session_scope, stats

        with session_scope(get_settings()) as session:
            rollup_rows = stats.rebuild_hourly_rollup(session=session)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")  # what autovacuum would have done by now
        results["fill_seconds"] = round(time.perf_counter() - started, 1)
        print(
            f"filled {args.products:,} products, {args.jobs:,} jobs, {3 * args.jobs:,} events, "
            f"{args.ledger:,} ledger rows ({rollup_rows:,} hourly rollup rows) in {results['fill_seconds']} s"
        )

        results["data_ms"] = _bench_data(args)
        results["render_ms"] = _bench_pages()
    finally:
        from catwalk.db import dispose_engines

        dispose_engines()
        if not args.keep:
            with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    results["slowest_cold_render_ms"] = max(v["cold"] for v in results["render_ms"].values())
    results["slowest_warm_render_ms"] = max(v["warm"] for v in results["render_ms"].values())
    print(json.dumps(results))


def _bench_data(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    import logging

    logging.getLogger("streamlit").setLevel(logging.ERROR)
    import streamlit as st
    from catwalk.dashboards import data

    some_job = data.jobs(limit=1)[0].id
    calls: dict[str, Callable[[], Any]] = {
        "products (all, page 1)": lambda: data.products("", "All"),
        "products (page 400)": lambda: data.products("", "All", offset=400 * 12),
        "products (search 'dress')": lambda: data.products("dress", "All"),
        "products (failed)": lambda: data.products("", "Failed"),
        "products (in progress)": lambda: data.products("", "In progress"),
        "products (no video)": lambda: data.products("", "No video"),
        "jobs (recent 100)": lambda: data.jobs(),
        "jobs (failed, 100)": lambda: data.jobs(("FAILED",)),
        "jobs (in flight)": lambda: data.active_jobs(),
        "job status counts": lambda: data.status_counts(),
        "job detail": lambda: data.job_detail(some_job),
        "spend today + 30 d": lambda: data.spend(30),
        "cost by day (30 d)": lambda: data.cost_by_day(30),
        "cost by day (90 d)": lambda: data.cost_by_day(90),
        "cost by model (30 d)": lambda: data.cost_breakdown(30),
        "cost by model (90 d)": lambda: data.cost_breakdown(90),
        "alerts": lambda: data.alerts(),
    }
    figures: dict[str, dict[str, float]] = {}
    print(f"\n{'data function':<28}{'cold ms':>10}{'warm ms':>10}")
    for label, call in calls.items():

        def cold(call: Callable[[], Any] = call) -> None:
            st.cache_data.clear()
            call()

        figures[label] = {"cold": round(_timed(cold), 1), "warm": round(_timed(call), 2)}
        print(f"{label:<28}{figures[label]['cold']:>10.1f}{figures[label]['warm']:>10.2f}")
    return figures


def _bench_pages() -> dict[str, float]:
    import streamlit as st
    from catwalk.dashboards import data
    from streamlit.testing.v1 import AppTest

    app = AppTest.from_file(
        str(ROOT / "dashboards" / "streamlit_app.py"), default_timeout=120
    ).run()
    app.text_input(key="signin_password").input("bench-password-1")
    app.button[0].click().run()
    assert not app.exception, app.exception
    some_job = data.jobs(limit=1)[0].id
    pages = {
        "products": ("app_pages/products.py", {}, "Products"),
        "jobs": ("app_pages/jobs.py", {}, "Jobs"),
        "job detail": (
            "app_pages/job_detail.py",
            {"job": some_job},
            data.job_detail(some_job).job.product_name,
        ),  # type: ignore[union-attr]
        "costs": ("app_pages/costs.py", {}, "Costs"),
    }
    figures: dict[str, dict[str, float]] = {}
    print(f"\n{'AppTest render':<28}{'cold ms':>10}{'warm ms':>10}")
    for label, (path, query, title) in pages.items():

        def render(
            path: str = path, query: dict[str, str] = query, title: str = title, cold: bool = True
        ) -> None:
            if cold:
                st.cache_data.clear()
            app.query_params.clear()
            app.query_params.update(query)
            app.switch_page(path).run()
            assert not app.exception, app.exception
            assert title in [t.value for t in app.title], [t.value for t in app.title]

        figures[label] = {
            "cold": round(_timed(render), 1),
            "warm": round(_timed(lambda render=render: render(cold=False)), 1),
        }
        print(f"{label:<28}{figures[label]['cold']:>10.1f}{figures[label]['warm']:>10.1f}")
    return figures


if __name__ == "__main__":
    main()
