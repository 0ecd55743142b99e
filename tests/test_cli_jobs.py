"""Job ids by prefix, ``catwalk retry`` / ``cancel``, and bulk ``generate`` within the limit.

Commands whose result is in the database run in this process through Typer's runner with a
launcher that starts nothing (the seam ``submission.use_launcher`` offers), so no background
job outlives the test; what a user reads on errors is checked on a real process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from catwalk.db import queries, session_scope
from catwalk.db.models import VideoJob
from typer.testing import CliRunner

from catwalk.catalog import write_demo_photos
from catwalk.cli.app import app
from catwalk.cli.jobs_cmd import resolve_job_id
from catwalk.domain import JobOptions, JobStatus
from catwalk.errors import InputError
from catwalk.submission import use_launcher
from tests.conftest import reset_settings


@dataclass
class Launches:
    """Starts nothing; remembers each launch (retries pass a ``run_key``)."""

    calls: list[dict[str, Any]] = field(default_factory=list)

    def launch(self, **kwargs: Any) -> str | None:
        self.calls.append(kwargs)
        return None


def _run(*args: str) -> Any:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    return result


def _products(tmp_path: Path, *ids: str, names: dict[str, str] | None = None) -> None:
    photos = write_demo_photos(tmp_path / "photos")
    with session_scope() as session:
        for pid in ids:
            name = (names or {}).get(pid, pid)
            queries.upsert_product(
                session=session, product_id=pid, name=name, images=[str(photos["demo-tee"])]
            )


def _job(product_id: str, job_id: str, status: JobStatus = JobStatus.PENDING) -> str:
    with session_scope() as session:
        session.add(
            VideoJob(
                id=job_id,
                product_id=product_id,
                options=JobOptions.from_mapping({}).to_dict(),
                status=status,
                error_message="images: boom" if status is JobStatus.FAILED else None,
            )
        )
    return job_id


def test_a_unique_prefix_of_six_or_more_names_the_job(settings, tmp_path: Path) -> None:
    _products(tmp_path, "p1", "p2")
    a = _job("p1", "abcdef1111" + "0" * 22, JobStatus.FAILED)
    b = _job("p2", "abcdef2222" + "0" * 22, JobStatus.FAILED)
    with session_scope() as session:
        assert resolve_job_id(session, a) == a
        assert resolve_job_id(session, "ABCDEF1") == a  # case does not matter
        assert resolve_job_id(session, "abcdef2") == b
        with pytest.raises(InputError, match="matches several jobs"):
            resolve_job_id(session, "abcdef")
        with pytest.raises(InputError, match="too short: give at least 6"):
            resolve_job_id(session, "abcd")
        with pytest.raises(InputError, match="unknown job 'ffffff'"):
            resolve_job_id(session, "ffffff")
        with pytest.raises(InputError, match="unknown job"):
            resolve_job_id(session, "abcdef_%")  # LIKE wildcards are plain characters
    shown = _run("status", "abcdef22", "--json")
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["jobId"] == b


def test_cancel_by_prefix_ends_a_job_that_never_started(settings, tmp_path: Path) -> None:
    _products(tmp_path, "p1")
    job_id = _job("p1", "c0ffee" + "1" * 26)
    result = _run("cancel", "c0ffee1")
    assert result.exit_code == 0, result.output
    assert f"job {job_id} cancelled" in result.output
    with session_scope() as session:
        assert queries.get_job(session=session, job_id=job_id).status is JobStatus.CANCELLED
    again = _run("cancel", job_id[:8], "--json")
    assert json.loads(again.output) == {"jobId": job_id, "status": "CANCELLED"}


def test_retry_by_prefix_requeues_a_failed_job_and_launches_it(settings, tmp_path: Path) -> None:
    _products(tmp_path, "p1")
    job_id = _job("p1", "feed00" + "2" * 26, JobStatus.FAILED)
    launches = Launches()
    with use_launcher(launches):  # type: ignore[arg-type]
        result = _run("retry", "feed002")
    assert result.exit_code == 0, result.output
    assert f"job {job_id} retrying" in result.output
    assert [c["job_id"] for c in launches.calls] == [job_id]
    assert launches.calls[0]["run_key"] == f"job-{job_id}-retry-1"
    with session_scope() as session:
        job = queries.get_job(session=session, job_id=job_id)
        assert job.status is JobStatus.PENDING and job.error_message is None
    # A job in flight is not retried (it has not failed).
    refused = _run("retry", "feed002")
    assert refused.exit_code != 0
    assert "only failed or cancelled jobs can be retried" in str(refused.exception)


def test_status_explains_a_failure_and_retry_can_buy_new_keyframes(
    settings, tmp_path: Path
) -> None:
    _products(tmp_path, "p1")
    job_id = _job("p1", "cafe00" + "3" * 26, JobStatus.FAILED)
    with session_scope() as session:
        job = queries.get_job(session=session, job_id=job_id)
        job.failure_kind = "keyframes_refused"
        job.image_keys = {"start": "p1/s.png", "end": "p1/e.png"}
    shown = _run("status", "cafe003")
    assert shown.exit_code == 0, shown.output
    assert "failure.reason" in shown.output and "video model refused" in shown.output
    assert "new_keyframes" in shown.output
    launches = Launches()
    with use_launcher(launches):  # type: ignore[arg-type]
        result = _run("retry", "cafe003", "--new-keyframes")
    assert result.exit_code == 0, result.output
    assert "2 keyframe(s) to make" in result.output
    assert [c["job_id"] for c in launches.calls] == [job_id]
    with session_scope() as session:
        job = queries.get_job(session=session, job_id=job_id)
        assert job.status is JobStatus.PENDING and job.image_keys == {}


def test_bulk_generate_stops_at_the_daily_limit(
    settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reset_settings(monkeypatch, DAILY_GENERATION_LIMIT="3")
    _products(tmp_path, "a", "b", "c", "d", "e")
    (tmp_path / "ids.csv").write_text("id,name\nd,D\ne,E\n")
    launches = Launches()
    with use_launcher(launches):  # type: ignore[arg-type]
        first = _run("generate", "--ids", "a,b,a", "--json")
        assert first.exit_code == 0, first.output
        started = json.loads(first.output)["started"]
        assert list(started) == ["a", "b"]  # duplicates submitted once

        rest = _run("generate", "--from-csv", str(tmp_path / "ids.csv"), "--all-missing", "--json")
    assert rest.exit_code == 0, rest.output
    payload = json.loads(rest.output)
    # d first (CSV order), then a, b (in flight) are skipped by --all-missing's own query;
    # the limit (3) stops the batch after one more job.
    assert list(payload["started"]) == ["d"]
    assert payload["stopped"] and "limit" in payload["stopped"].lower()
    assert len(launches.calls) == 3
    with session_scope() as session:
        assert len(queries.list_jobs(session=session, limit=50)) == 3  # nothing recorded past it


def test_bulk_generate_needs_something_to_do(settings) -> None:
    result = _run("generate")
    assert result.exit_code != 0
    assert "name a product, or use --all-missing" in str(result.exception)


def _catwalk(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "catwalk.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "COLUMNS": "80", **env},
    )


def test_bad_prefix_is_one_line_on_a_real_process(settings, tmp_path: Path) -> None:
    _products(tmp_path, "p1")
    _job("p1", "[b0ld]" + "3" * 26, JobStatus.FAILED)  # brackets: Rich markup must stay off
    result = _catwalk("retry", "[b0l", env={})
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        == "error: job id prefix '[b0l' is too short: give at least 6 characters"
    )


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "postgresql://postgres:s3cret@127.0.0.1:5432/catwalk_no_such_db",
            (
                "error: database 'catwalk_no_such_db' does not exist on 127.0.0.1:5432: create it "
                "with `createdb -h 127.0.0.1 -p 5432 -U postgres catwalk_no_such_db`"
            ),
        ),
        (
            "postgresql://postgres@127.0.0.1:1/x",
            (
                # The same line as a database that goes away mid-run (lifecycle): nothing
                # was recorded, and the host:port says where to look.
                "error: the database at 127.0.0.1:1 is unreachable (Connection refused); "
                "nothing was recorded"
            ),
        ),
        (
            "mysql://u:s3cret@127.0.0.1/db",
            (
                "error: DATABASE_URL uses mysql, which catwalk does not support: use "
                "postgresql://user@host:5432/dbname, or leave it unset for the embedded SQLite"
            ),
        ),
        (
            "not a url",
            "error: DATABASE_URL is not a database URL: use postgresql://user@host:5432/dbname",
        ),
    ],
)
def test_each_bad_database_url_is_one_line(url: str, expected: str, tmp_path: Path) -> None:
    result = _catwalk("jobs", env={"DATABASE_URL": url, "CATWALK_HOME": str(tmp_path)})
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip() == expected
    assert "s3cret" not in result.stderr


def test_products_list_as_json(settings, tmp_path: Path) -> None:
    # Ids follow one rule (no brackets); a name may hold anything and survives: JSON, no markup.
    _products(tmp_path, "p1", "p2", names={"p2": "[p2] [/]"})
    listing = _run("products", "--json")
    assert listing.exit_code == 0, listing.output
    rows = json.loads(listing.output)
    assert sorted((r["id"], r["videoUrl"]) for r in rows) == [("p1", None), ("p2", None)]
