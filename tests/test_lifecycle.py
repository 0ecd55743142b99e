"""One job life cycle (issue 12): every ending path leaves the bookkeeping adding up
(``db.jobs.check_invariants``), a database outage mid-job ends COMPLETED, front doors answer
one line / 503 while the database is down, and fal poll blips never end an attempt, while a
request abandoned after acceptance is cancelled once and billed in the ledger when fal
finished it."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from catwalk.db import jobs, queries, session_scope
from catwalk.db.models import Alert
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import select

from catwalk import lifecycle, submission
from catwalk.config import Settings
from catwalk.domain import JobStatus
from catwalk.fakes import FakeFal, FakeGemini, serve_in_thread
from tests.conftest import reset_settings

FAL_KEY = "fal-life-id:life-secret-91aa"
GEMINI_KEY = "AIzaSy-life-secret-77c1"


class _NoLaunch:
    def launch(self, **_: Any) -> str | None:
        return None


def _product(tmp_path: Path, product_id: str = "tee-1") -> str:
    photo = tmp_path / f"{product_id}.jpg"
    Image.new("RGB", (120, 160), (30, 120, 200)).save(photo, format="JPEG")
    with session_scope() as session:
        queries.upsert_product(
            session=session, product_id=product_id, name="Blue tee", images=[str(photo)]
        )
    return product_id


def _run(product_id: str) -> str:
    from catwalk.flows.generate_product_video import generate_product_video

    job_id = submission.submit_job(product_id, None, launcher=_NoLaunch()).job_id
    generate_product_video(product_id, None, job_id, return_state=True)
    return job_id


def _job(job_id: str) -> Any:
    with session_scope() as session:
        job = queries.get_job(session=session, job_id=job_id)
        session.expunge_all()
    return job


def _problems() -> list[str]:
    with session_scope() as session:
        return jobs.check_invariants(session=session, grace_seconds=0)


def _alerts(job_id: str) -> int:
    with session_scope() as session:
        return len(
            session.scalars(
                select(Alert).where(Alert.kind == "job_failed", Alert.job_id == job_id)
            ).all()
        )


# ---------------------------------------------------------------- ending paths
def test_published_job_keeps_the_invariants(
    prefect_server: None, settings: Settings, tmp_path: Path
) -> None:
    job_id = _run(_product(tmp_path))
    job = _job(job_id)
    assert job.status is JobStatus.COMPLETED and job.cost_reconciled_at is not None
    assert _problems() == []
    # A COMPLETED job never becomes FAILED, whoever tries.
    assert lifecycle.end_job(job_id, JobStatus.FAILED, "late failure") is None
    assert _job(job_id).status is JobStatus.COMPLETED and _alerts(job_id) == 0


@pytest.mark.parametrize(
    ("spec", "step"), [("images", "generating keyframes"), ("video", "rendering video")]
)
def test_failed_in_a_step_names_it_alerts_once_and_reconciles(
    prefect_server: None,
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    spec: str,
    step: str,
) -> None:
    reset_settings(monkeypatch, OFFLINE_FAIL_STEPS=spec)
    from catwalk.clients import factory

    factory._fault_plan.cache_clear()
    job_id = _run(_product(tmp_path))
    job = _job(job_id)
    assert job.status is JobStatus.FAILED
    assert (job.error_message or "").startswith(f"{step}: ") and "\n" not in job.error_message
    assert _alerts(job_id) == 1 and _problems() == []
    # Retry starts only from FAILED; the reservation is re-opened and reconciled again.
    reset_settings(monkeypatch, OFFLINE_FAIL_STEPS="")
    factory._fault_plan.cache_clear()
    with pytest.raises(Exception, match="only failed or cancelled"), session_scope() as session:
        job_row = queries.get_job(session=session, job_id=job_id)
        assert job_row is not None
        job_row.status = JobStatus.COMPLETED
        session.flush()
        jobs.reset_for_retry(session=session, job_id=job_id)
    submission.retry_job(job_id, launcher=_NoLaunch())
    from catwalk.flows.generate_product_video import generate_product_video

    generate_product_video("tee-1", None, job_id, return_state=True)
    assert _job(job_id).status is JobStatus.COMPLETED
    assert _problems() == []


def test_cancelled_before_start_and_failed_by_housekeeping(
    settings: Settings, tmp_path: Path
) -> None:
    first = submission.submit_job(_product(tmp_path, "a"), None, launcher=_NoLaunch()).job_id
    second = submission.submit_job(_product(tmp_path, "b"), None, launcher=_NoLaunch()).job_id
    assert submission.cancel_job(first) is JobStatus.CANCELLED
    from catwalk.tasks.housekeeping import _fail

    _fail(second, "the run of this job crashed 4 times\n(worker or process died)")
    job = _job(second)
    assert job.status is JobStatus.FAILED
    assert job.error_message == "run: the run of this job crashed 4 times (worker or process died)"
    assert _alerts(second) == 1 and _alerts(first) == 0
    assert _problems() == []
    # Both gave their generation back (nothing was bought).
    with session_scope() as session:
        from catwalk.db import limits

        assert limits.today_usage(session=session, settings=settings).generations == 0


def test_cancelled_while_running_keeps_the_invariants(
    prefect_server: None, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reset_settings(monkeypatch, OFFLINE_VIDEO_LATENCY_SECONDS="3")
    product_id = _product(tmp_path)
    job_id = submission.submit_job(product_id, None, launcher=_NoLaunch()).job_id
    from catwalk.flows.generate_product_video import generate_product_video

    runner = threading.Thread(
        target=generate_product_video,
        args=(product_id, None, job_id),
        kwargs={"return_state": True},
    )
    runner.start()
    deadline = time.monotonic() + 60
    while _job(job_id).status is not JobStatus.GENERATING_VIDEO and time.monotonic() < deadline:
        time.sleep(0.1)
    submission.cancel_job(job_id)
    runner.join(60)
    job = _job(job_id)
    assert job.status is JobStatus.CANCELLED and _alerts(job_id) == 0
    assert _problems() == []


# ---------------------------------------------------------------- fal polls
@pytest.fixture
def fal_flow(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[FakeFal, FakeGemini, pytest.MonkeyPatch]]:
    gemini = FakeGemini(api_key=GEMINI_KEY, width=96)
    fal = FakeFal(api_key=FAL_KEY, video_width=96, queue_polls=3, progress_polls=4)
    with serve_in_thread(gemini.app) as g, serve_in_thread(fal.app) as f:
        reset_settings(
            monkeypatch,
            IMAGE_PROVIDER="nano-banana",
            NANO_BANANA_API_URL=g.url,
            NANO_BANANA_API_KEY=GEMINI_KEY,
            VIDEO_PROVIDER="pika",
            PIKA_LABS_API_URL=f.url,
            PIKA_LABS_API_KEY=FAL_KEY,
            PROVIDER_POLL_INTERVAL_SECONDS="0",
        )
        yield fal, gemini, monkeypatch
    fal.close()


def test_thirty_percent_of_status_polls_failing_still_completes(
    prefect_server: None, fal_flow: tuple[FakeFal, FakeGemini, Any], tmp_path: Path
) -> None:
    fal, _, _ = fal_flow
    fal.status_fail_rate = 0.3
    job_id = _run(_product(tmp_path))
    job = _job(job_id)
    assert job.status is JobStatus.COMPLETED, job.error_message
    state = fal.state()
    assert state["submit"] == 1 and state["cancel"] == 0
    assert state["status"] > 7  # some polls were refused and asked again
    assert job.video_request_state == "collected" and _problems() == []


def test_failing_for_good_after_acceptance_cancels_once_and_records_the_bill(
    prefect_server: None, fal_flow: tuple[FakeFal, FakeGemini, Any], tmp_path: Path
) -> None:
    fal, _, monkeypatch = fal_flow
    # fal finishes the video but its result endpoint answers 503 until the job's deadline.
    reset_settings(monkeypatch, JOB_TIMEOUT_SECONDS="10", PROVIDER_POLL_INTERVAL_SECONDS="0.2")
    fal.add_fault("unavailable", on="result", count=10_000)
    job_id = _run(_product(tmp_path))
    job = _job(job_id)
    assert job.status is JobStatus.FAILED
    assert (job.error_message or "").startswith("rendering video: ")
    assert fal.state()["cancel"] == 1 and fal.state()["submit"] == 1
    assert job.video_request_state == "billed"
    with session_scope() as session:
        pika = [
            r for r in queries.ledger_for_job(session=session, job_id=job_id) if r.service == "pika"
        ]
    assert len(pika) == 1 and pika[0].amount == Decimal("0.20")  # 5 s at $0.04
    assert pika[0].provider_request_id == job.video_request_id
    assert _alerts(job_id) == 1 and _problems() == []


# ---------------------------------------------------------------- database outages
class _Proxy:
    """A TCP proxy to PostgreSQL that can go down (refuse, and cut every connection)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self._conns: list[socket.socket] = []
        self.cut = 0
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self.up()

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            self.cut += len(self._conns)
            for conn in self._conns:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                conn.close()
            self._conns.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.close()
                except OSError:
                    pass


def test_a_database_outage_mid_job_ends_completed(
    prefect_server: None,
    db_backend: str,
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if db_backend != "postgresql":
        pytest.skip("the outage is a real PostgreSQL server's connections cut")
    from sqlalchemy.engine import make_url

    waits: list[str] = []
    # Prefect takes over catwalk's loggers (caplog sees nothing): listen on the logger itself.
    handler = logging.Handler(level=logging.WARNING)
    handler.emit = lambda record: waits.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("catwalk.db.session").addHandler(handler)
    url = make_url(settings.effective_database_url)
    proxy = _Proxy((url.host or "127.0.0.1", url.port or 5432))
    proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    reset_settings(monkeypatch, DATABASE_URL=proxied, OFFLINE_VIDEO_LATENCY_SECONDS="4")
    product_id = _product(tmp_path)
    job_id = submission.submit_job(product_id, None, launcher=_NoLaunch()).job_id
    from catwalk.flows.generate_product_video import generate_product_video

    runner = threading.Thread(
        target=generate_product_video,
        args=(product_id, None, job_id),
        kwargs={"return_state": True},
    )
    runner.start()
    deadline = time.monotonic() + 60
    while _job(job_id).status is not JobStatus.GENERATING_VIDEO and time.monotonic() < deadline:
        time.sleep(0.1)
    proxy.down()  # every catwalk connection cut, new ones refused, for 6 s
    time.sleep(6)
    proxy.up()
    runner.join(120)
    job = _job(job_id)
    assert job.status is JobStatus.COMPLETED, job.error_message
    assert _problems() == []
    # The outage was real for the job: connections were cut and a step waited it out.
    assert proxy.cut > 0
    logging.getLogger("catwalk.db.session").removeHandler(handler)
    assert any("database unreachable" in message for message in waits)
    proxy.down()


def test_cli_during_an_outage_prints_one_line_and_exits_non_zero(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    env = {
        **os.environ,
        "CATWALK_HOME": str(tmp_path / "home"),
        "DATABASE_URL": f"postgresql://catwalk:s3cret-pw@127.0.0.1:{port}/catwalk",
    }
    done = subprocess.run(
        [sys.executable, "-m", "catwalk.cli", "generate", "tee-1"],
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"error: the database at 127.0.0.1:{port} is unreachable (")
    assert lines[0].endswith("; nothing was recorded")
    assert "s3cret-pw" not in done.stderr + done.stdout


def test_api_answers_503_with_retry_after_while_the_database_is_down(tmp_path: Path) -> None:
    from catwalk.api.app import create_app

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    down = Settings(
        CATWALK_HOME=str(tmp_path / "home"),
        DATABASE_URL=f"postgresql://catwalk:s3cret-pw@127.0.0.1:{port}/catwalk",
    )
    token = "t" * 40
    client = TestClient(create_app(down, launcher=_NoLaunch(), token=token))  # no lifespan
    auth = {"Authorization": f"Bearer {token}"}
    for response in (
        client.post("/api/admin/video-generation", json={"productId": "tee-1"}, headers=auth),
        client.get("/api/admin/video-generation/some-job", headers=auth),
    ):
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "5"
        assert f"127.0.0.1:{port} is unreachable" in response.json()["detail"]
        assert "s3cret-pw" not in response.text


def test_doctor_prints_what_does_not_add_up(settings: Settings, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from catwalk.cli.app import app

    runner = CliRunner()
    job_id = submission.submit_job(_product(tmp_path), None, launcher=_NoLaunch()).job_id
    with session_scope() as session:
        job = queries.get_job(session=session, job_id=job_id)
        assert job is not None
        job.flow_run_id = "run-1"
    ok = runner.invoke(app, ["doctor"])
    assert ok.exit_code == 0 and "ok: every invariant holds" in ok.output
    # The drift the old code made: a job failed by hand, no alert, no reconciliation, and a
    # provider request left running.
    with session_scope() as session:
        job = queries.get_job(session=session, job_id=job_id)
        assert job is not None
        job.status = JobStatus.FAILED
        job.video_request_id, job.video_request_urls = "req-9", {"request_id": "req-9"}
        job.video_request_state = "open"
    bad = runner.invoke(app, ["doctor"])
    assert bad.exit_code == 1
    assert f"job {job_id} ended FAILED but was not reconciled" in bad.output
    assert f"job {job_id} FAILED without a job_failed alert" in bad.output
    assert "provider request req-9 is still open" in bad.output


def test_dashboard_shows_a_banner_while_the_database_is_down(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import streamlit as st

    from tests import test_dashboard as dash

    reset_settings(monkeypatch, CATWALK_ADMIN_PASSWORD=dash.PASSWORD)
    dash.seed_demo_catalog()
    st.cache_data.clear()
    at = dash.signed_in()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    reset_settings(monkeypatch, DATABASE_URL=f"postgresql://u:s3cret-pw@127.0.0.1:{port}/x")
    st.cache_data.clear()
    at.run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert any(f"127.0.0.1:{port} is unreachable" in e for e in errors), errors
    assert "s3cret-pw" not in " ".join(errors)
    st.cache_data.clear()
