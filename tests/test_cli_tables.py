"""Every table the CLI prints, read through the real command at 80 columns and at 200: no id
or path broken inside, no markup swallowed, a few lines per record, not eighteen."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from catwalk.db import alerts, queries, session_scope
from catwalk.db.models import Product, VideoJob
from rich.console import Console

from catwalk import config
from catwalk.catalog import write_demo_photos
from catwalk.cli import tables
from catwalk.cli.tables import Column
from catwalk.domain import JobOptions, JobStatus

LONG_ID = "linen-shirt-with-a-rather-long-product-identifier-for-tests"
DONE = "0123456789abcdef0123456789abcdef"
FAILED = "fedcba9876543210fedcba9876543210"
ERROR = (
    "the video model refused the keyframes: [model_moderated] content policy violation: the "
    "image contains something the provider does not allow, see "
    "https://fal.ai/docs/errors#content_policy_violation"
)


def _catwalk(*args: str, columns: int) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "catwalk.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "COLUMNS": str(columns)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture
def seeded(settings: config.Settings, tmp_path: Path) -> dict[str, str]:
    photos = write_demo_photos(tmp_path / "photos")
    key = f"products/{LONG_ID}/{DONE}/video.mp4"
    path = settings.media_dir / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"mp4")
    with session_scope(settings) as session:
        for pid, name in (("demo-tee", "Tee [b]old[/b] " * 6), (LONG_ID, "Linen shirt")):
            queries.upsert_product(
                session=session, product_id=pid, name=name, images=[str(photos["demo-tee"])]
            )
        product = session.get(Product, LONG_ID)
        assert product is not None
        product.video_key = key
        options = JobOptions.from_mapping({}).to_dict()
        session.add(
            VideoJob(
                id=DONE,
                product_id=LONG_ID,
                options=options,
                status=JobStatus.COMPLETED,
                video_key=key,
                poster_key=key.replace("video.mp4", "poster.jpg"),
                progress=100,
                current_step="completed",
            )
        )
        session.add(
            VideoJob(
                id=FAILED,
                product_id="demo-tee",
                options=options,
                status=JobStatus.FAILED,
                error_message=f"rendering video: {ERROR}",
                current_step="failed",
            )
        )
        session.flush()
        alerts.record_alert(
            session=session,
            kind="job_failed",
            dedupe_key="job_failed:t",
            message=f"video job {FAILED} for product demo-tee failed: rendering video: {ERROR}",
            job_id=FAILED,
        )
    return {"video_path": str(path)}


def _whole_on_one_line(output: str, *values: str) -> None:
    for value in values:
        assert any(value in line for line in output.splitlines()), (value, output)


def _fits(output: str, width: int, *unbreakable: str) -> None:
    """Every line fits, except one that holds a value longer than the terminal (the
    terminal folds it; Rich did not cut it)."""
    for line in output.splitlines():
        if len(line.rstrip()) > width:
            assert any(v in line and len(v) > width - 30 for v in unbreakable), line


def _record_lines(output: str, start: str) -> int:
    """Lines of the block (or table row) that starts with ``start``."""
    lines = output.splitlines()
    first = next(i for i, line in enumerate(lines) if line.strip().startswith(start))
    n = 1
    for line in lines[first + 1 :]:
        if not line.startswith(" ") or line.strip().startswith(("0", "f", "9", "a", "b")):
            break
        n += 1
    return n


@pytest.mark.parametrize("width", [80, 200])
def test_jobs_products_alerts_status_and_stats_read_well(
    seeded: dict[str, str], width: int
) -> None:
    path = seeded["video_path"]

    jobs = _catwalk("jobs", columns=width)
    _whole_on_one_line(jobs, DONE[:12], FAILED[:12], LONG_ID, "[model_moderated]")
    _whole_on_one_line(jobs, "https://fal.ai/docs/errors#content_policy_violation")
    _fits(jobs, width)
    assert _record_lines(jobs, FAILED[:12]) <= 7

    products = _catwalk("products", columns=width)
    _whole_on_one_line(products, LONG_ID, path, "demo-tee", "[b]old[/b]")
    _fits(products, width, path)
    assert len(products.splitlines()) <= 10

    listed = _catwalk("alerts", columns=width)
    _whole_on_one_line(listed, FAILED, "[model_moderated]", "job_failed")
    _fits(listed, width)
    assert len(listed.splitlines()) <= 6  # was 18 lines for one alert at 80 columns

    for job_id in (DONE, FAILED):
        status = _catwalk("status", job_id[:8], columns=width)
        _whole_on_one_line(status, job_id, LONG_ID if job_id == DONE else "[model_moderated]")
        _fits(status, width, path, path.replace("video.mp4", "poster.jpg"))
    _whole_on_one_line(_catwalk("status", DONE, columns=width), path)

    stats = _catwalk("stats", columns=width)
    _whole_on_one_line(stats, "2 (1 completed, 1 failed)")
    _fits(stats, width)


def test_a_wide_terminal_gets_a_table_and_a_narrow_one_blocks() -> None:
    columns = [Column("job", "key", headline=True), Column("status"), Column("error", "text")]
    rows = [("abcdef123456", "FAILED", "images: " + "word " * 30), ("0123456789ab", "DONE", "")]
    wide, narrow = Console(width=200, record=True), Console(width=40, record=True)
    tables.show(wide, columns, rows)
    tables.show(narrow, columns, rows)
    wide_text, narrow_text = wide.export_text(), narrow.export_text()
    assert wide_text.splitlines()[0].split() == ["job", "status", "error"]
    assert len(wide_text.splitlines()) == 4  # header, rule, one line per row
    assert narrow_text.splitlines()[0] == "abcdef123456  FAILED"
    assert all(len(line) <= 40 for line in narrow_text.splitlines())
    assert narrow_text.splitlines()[-1] == "0123456789ab  DONE"
