"""Keyframe-check benchmark: does the check catch drifted keyframes, and what does it save?

    python bench/quality.py                        # demo catalog x 2 model types = 8 jobs
    python bench/quality.py --rounds 2             # 16 jobs
    python bench/quality.py --fault keyframe-mismatch:1   # injected frames recover once remade

Every demo product runs once per model type (and per round) through the real flow on the
offline providers, with KEYFRAME_CHECK=enforce and the offline judge. Half the jobs get
``keyframe-mismatch`` injected (their end keyframe drawn in another garment colour; by default
every time, so the pair never passes). Printed: detected / injected, false alarms / clean jobs,
and the spend at list prices (keyframes priced as gemini-2.5-flash-image, the video as Pika 720p
5 s) against a run without the check that buys every video; a JSON line last.

Everything lives in a throwaway CATWALK_HOME (SQLite, local files).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

# List prices for the offline providers' calls (prices.toml, 2026-03-01): a keyframe is
# 1290 output tokens at $30/1M, the video 5 s at $0.04/s; the offline judge bills nothing.
PRICES = """
[[price]]
provider = "offline"
model = "offline-composer"
unit = "output_token"
unit_price = "0.00003"
price_date = "2026-01-01"

[[price]]
provider = "offline"
model = "offline-xfade"
unit = "second"
unit_price = "0.04"
minimum_units = "5"
price_date = "2026-01-01"
"""
IMAGE = Decimal("0.0387")
VIDEO = Decimal("0.20")


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rounds", type=int, default=1, help="passes over catalog x model types")
    p.add_argument("--width", type=int, default=320, help="offline frame width")
    p.add_argument(
        "--fault",
        default="keyframe-mismatch",
        help="what injected jobs get (keyframe-mismatch, or keyframe-mismatch:N)",
    )
    p.add_argument("--retries", type=int, default=2, help="KEYFRAME_CHECK_RETRIES")
    return p.parse_args()


def main() -> None:
    args = _args()
    home = Path(tempfile.mkdtemp(prefix="catwalk-bench-quality-"))
    (home / "prices.toml").write_text(PRICES)
    os.environ.update(
        CATWALK_HOME=str(home),
        CATWALK_PRICES_FILE=str(home / "prices.toml"),
        KEYFRAME_CHECK="enforce",
        KEYFRAME_JUDGE="offline",
        KEYFRAME_CHECK_RETRIES=str(args.retries),
        OFFLINE_FRAME_WIDTH=str(args.width),
        VIDEO_DURATION_SECONDS="5",
        RETRY_DELAY_SECONDS="0",
        # Failed jobs are expected here; their tracebacks would bury the figures.
        PREFECT_LOGGING_LEVEL="CRITICAL",
        PREFECT_HOME=str(home / "prefect"),
        # A loaded machine can take a while to start Prefect's ephemeral server.
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )
    os.environ.pop("DATABASE_URL", None)
    os.environ.pop("OFFLINE_FAIL_STEPS", None)

    from catwalk.db import queries, session_scope
    from catwalk.flows.generate_product_video import generate_product_video

    from catwalk.cli.demo import seed_demo_catalog
    from catwalk.clients import factory
    from catwalk.clients.offline import FaultPlan, OfflineImageGenerator
    from catwalk.config import get_settings
    from catwalk.submission import submit_job

    class _NoLaunch:
        def launch(self, **_: Any) -> None:
            return None

    settings = get_settings()
    products = seed_demo_catalog()
    plan = [
        (product, model_type)
        for _ in range(args.rounds)
        for model_type in ("female", "male")
        for product in products
    ]
    rows: list[dict[str, Any]] = []
    began = time.monotonic()
    for i, (product, model_type) in enumerate(plan):
        injected = i % 2 == 1
        images = OfflineImageGenerator(
            width=settings.offline_frame_width,
            faults=FaultPlan(args.fault if injected else ""),
        )
        t0 = time.monotonic()
        with factory.override(image=images):
            job_id = submit_job(product, {"modelType": model_type}, launcher=_NoLaunch()).job_id
            generate_product_video(product, None, job_id, return_state=True)
        with session_scope() as session:
            job = queries.get_job(session=session, job_id=job_id)
            assert job is not None
            ledger = list(queries.ledger_for_job(session=session, job_id=job_id))
            verdicts = [v["verdict"] for v in job.quality.get("verdicts", [])]
            row = {
                "product": product,
                "modelType": model_type,
                "injected": injected,
                "status": job.status.value,
                "verdicts": verdicts,
                "flagged": "fail" in verdicts,
                "regenerations": int(job.quality.get("regenerations", 0)),
                "videos": sum(1 for r in ledger if r.service == "pika"),
                "spend": job.total_cost,
                "seconds": round(time.monotonic() - t0, 2),
            }
        rows.append(row)
        print(
            f"{product:12} {model_type:6} {'injected' if injected else 'clean':8} "
            f"{row['status']:9} verdicts={'/'.join(verdicts) or '-':16} "
            f"regen={row['regenerations']} videos={row['videos']} ${row['spend']:.4f} "
            f"({row['seconds']} s)"
        )
    elapsed = time.monotonic() - began

    injected = [r for r in rows if r["injected"]]
    clean = [r for r in rows if not r["injected"]]
    detected = sum(1 for r in injected if r["flagged"])
    false_alarms = sum(1 for r in clean if r["flagged"])
    spend = sum((r["spend"] for r in rows), Decimal(0))
    # Without the check every job buys its two keyframes and its video, drifted or not.
    without = len(rows) * (2 * IMAGE + VIDEO)
    videos = sum(r["videos"] for r in rows)
    # A video bought from keyframes whose last verdict was a fail (none, in enforce mode).
    bad_videos_bought = sum(
        r["videos"] for r in injected if r["verdicts"] and r["verdicts"][-1] != "pass"
    )
    # A good video: one whose keyframes passed (without the check, the injected ones are bad).
    good = sum(r["videos"] for r in rows if r["verdicts"][-1:] == ["pass"])
    good_without = len(clean)
    per_good = spend / good if good else None
    per_good_without = without / good_without if good_without else None
    print()
    print(f"detected      {detected} / {len(injected)} injected")
    print(f"false alarms  {false_alarms} / {len(clean)} clean jobs")
    print(f"videos bought {videos} with the check, {len(rows)} without")
    print(f"spend         ${spend:.4f} with the check, ${without:.4f} buying every video")
    print(f"saved         ${without - spend:.4f} ({len(rows)} jobs, {elapsed:.0f} s)")
    print(
        f"good videos   {good} with the check, {good_without} without "
        f"({len(injected)} bad videos bought without it)"
    )
    if per_good is not None and per_good_without is not None:
        print(f"per good one  ${per_good:.4f} with the check, ${per_good_without:.4f} without")
    print(
        json.dumps(
            {
                "jobs": len(rows),
                "injected": len(injected),
                "detected": detected,
                "clean": len(clean),
                "falseAlarms": false_alarms,
                "videosBought": videos,
                "videosWithoutCheck": len(rows),
                "badVideosBought": bad_videos_bought,
                "regenerations": sum(r["regenerations"] for r in rows),
                "spendWithCheck": float(spend),
                "spendBuyingEveryVideo": float(without),
                "spendSaved": float(without - spend),
                "goodVideos": good,
                "goodVideosWithoutCheck": good_without,
                "badVideosWithoutCheck": len(injected),
                "costPerGoodVideo": float(per_good) if per_good is not None else None,
                "costPerGoodVideoWithoutCheck": (
                    float(per_good_without) if per_good_without is not None else None
                ),
                "fault": args.fault,
                "seconds": round(elapsed, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
