"""The dashboard end to end in a real browser: Debian Chromium driven by Playwright.

``catwalk dashboard`` runs on a free port with a home of its own and the real local launcher,
so the job really runs (offline providers, small frames, a 2 s video) in a background process.
Screenshots of every page go to ``test-artifacts/``.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
# Keep Chromium off the network it cannot reach anyway (INFRA.md).
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(), reason="needs Debian chromium (apt-get install -y chromium)"
    ),
]


@dataclass
class Dashboard:
    url: str
    password: str
    home: Path
    env: dict[str, str] = field(default_factory=dict)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def dashboard(tmp_path: Path) -> Iterator[Dashboard]:
    home = tmp_path / "home"
    # The offline providers at Gemini's and Pika's list prices, so the costs shown are real sums.
    prices = tmp_path / "prices.toml"
    prices.write_text(
        '[[price]]\nprovider = "offline"\nmodel = "*"\nunit = "output_token"\nunit_price = "0.00003"\n'
        'price_date = "2026-01-01"\n'
        '[[price]]\nprovider = "offline"\nmodel = "*"\nresolution = "720p"\nunit = "second"\n'
        'unit_price = "0.04"\nprice_date = "2026-01-01"\n'
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PREFECT_API", "DATABASE_URL", "CATWALK_"))
    }
    env.update(
        CATWALK_HOME=str(home),
        PREFECT_HOME=str(home / "prefect"),
        OFFLINE_FRAME_WIDTH="160",
        VIDEO_DURATION_SECONDS="2",
        RETRY_DELAY_SECONDS="0",
        # Slow enough to watch the job move on the jobs page.
        OFFLINE_VIDEO_LATENCY_SECONDS="6",
        CATWALK_PRICES_FILE=str(prices),
    )
    subprocess.run(
        [
            sys.executable,
            "-c",
            "from catwalk.cli.demo import seed_demo_catalog; seed_demo_catalog()",
        ],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=120,
    )
    log = tmp_path / "dashboard.log"
    port = _free_port()
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "catwalk.cli", "dashboard", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, log.read_text()
            found = re.search(r"admin password \(.*\): (\S+)", log.read_text())
            try:
                ready = (
                    found
                    and httpx.get(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).status_code
                    == 200
                )
            except httpx.HTTPError:
                ready = False
            if ready and found:
                break
            assert time.monotonic() < deadline, f"dashboard did not start:\n{log.read_text()}"
            time.sleep(0.5)
        yield Dashboard(url=f"http://127.0.0.1:{port}", password=found.group(1), home=home, env=env)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _snap(page: Any, name: str) -> None:
    """Screenshot the whole page: Streamlit scrolls inside its own container, so grow the
    window to the content's height first."""
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=stImage] img')].every(i => i.complete && i.naturalWidth > 0)"
    )
    height = page.evaluate(
        "() => Math.max(document.body.scrollHeight, ...[...document.querySelectorAll('[data-testid=stMain]')]"
        ".map(e => e.scrollHeight))"
    )
    page.set_viewport_size({"width": 1440, "height": min(max(1000, height + 40), 4000)})
    page.wait_for_timeout(500)
    page.screenshot(path=ARTIFACTS / name)
    page.set_viewport_size({"width": 1440, "height": 1000})


def play(video: Any) -> dict[str, Any]:
    """Play a <video> muted for 0.8 s in the page; what the browser says of it."""
    return video.evaluate(  # type: ignore[no-any-return]
        """async (v) => {
            v.muted = true;
            await v.play();
            await new Promise((ok) => setTimeout(ok, 800));
            return {ready: v.readyState, duration: v.duration, time: v.currentTime, error: v.error && v.error.code};
        }"""
    )


def test_sign_in_generate_watch_and_play(dashboard: Dashboard) -> None:
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        page.set_default_timeout(60_000)
        expect.set_options(timeout=60_000)  # a loaded 2-core machine renders slowly
        try:
            page.goto(dashboard.url)
            password = page.locator("input[type=password]")
            expect(password).to_be_visible()
            _snap(page, "dashboard-0-sign-in.png")

            password.fill("not the password")
            page.get_by_role("button", name="Sign in", exact=True).click()
            expect(page.get_by_text("Wrong password.")).to_be_visible()
            page.wait_for_timeout(1200)  # the session's back-off after one wrong password is 1 s
            password.fill(dashboard.password)
            page.get_by_role("button", name="Sign in", exact=True).click()
            expect(page.get_by_role("heading", name="Products", exact=True)).to_be_visible()
            expect(page.locator(".st-key-card_demo-tee img").first).to_be_visible()
            _snap(page, "dashboard-1-products.png")

            card = page.locator(".st-key-card_demo-tee")
            card.get_by_role("button", name="Generate video").click()
            page.locator(".st-key-gen_demo-tee button").click()
            expect(page.get_by_text(re.compile(r"Started job \w+ for demo-tee"))).to_be_visible()

            page.get_by_role("link", name="Jobs").click()
            expect(page.get_by_role("heading", name="Jobs", exact=True)).to_be_visible()
            done = (
                page.locator("[data-testid=stMetric]")
                .filter(has_text="Done today")
                .locator("[data-testid=stMetricValue]")
            )
            # The fragment refreshes every 2 s without reloading the page: first the job shows
            # up in flight, then it completes.
            expect(page.get_by_text(re.compile(r"In progress \(1\)"))).to_be_visible()
            bar = page.locator("[data-testid=stProgress]").first
            expect(bar).to_contain_text(re.compile(r"\d+% · rendering video"), timeout=120_000)
            _snap(page, "dashboard-2-jobs-running.png")
            expect(done).to_have_text("1", timeout=240_000)
            expect(page.get_by_text("In progress (0)")).to_be_visible()
            _snap(page, "dashboard-3-jobs-done.png")

            # Selecting a row of the recent jobs opens the job; coming back stays on the list.
            grid = page.locator("[data-testid=stDataFrame]").first
            box = grid.bounding_box()
            assert box is not None
            page.mouse.click(box["x"] + 18, box["y"] + 35 + 17)
            expect(page.get_by_role("heading", name="Coral crew-neck tee")).to_be_visible()
            page.get_by_role("link", name="All jobs").click()
            expect(page.get_by_role("heading", name="Jobs", exact=True)).to_be_visible()
            page.wait_for_timeout(4500)  # two refreshes of the live fragment
            expect(page.get_by_role("heading", name="Jobs", exact=True)).to_be_visible()

            page.get_by_role("link", name="Products").click()
            video = page.locator(".st-key-card_demo-tee video")
            expect(video).to_be_visible()
            video.scroll_into_view_if_needed()
            facts = play(video)
            assert facts["error"] is None
            assert facts["ready"] >= 2  # HAVE_CURRENT_DATA or better: the frames decode
            assert facts["duration"] == pytest.approx(2.0, abs=0.15)
            assert facts["time"] > 0  # it actually played
            _snap(page, "dashboard-4-products-with-video.png")

            card.get_by_role("link", name="Latest job").click()
            expect(page.get_by_role("heading", name="Coral crew-neck tee")).to_be_visible()
            expect(page.locator("[data-testid=stImage] img")).to_have_count(2)
            expect(page.locator("video")).to_have_count(1)
            # Two keyframes (1290 tokens at $0.00003) and 2 s of video at $0.04.
            cost = (
                page.locator("[data-testid=stMetric]")
                .filter(has_text="Cost")
                .locator("[data-testid=stMetricValue]")
            )
            expect(cost).to_have_text("$0.1574")
            _snap(page, "dashboard-5-job-detail.png")

            page.get_by_role("link", name="Costs").click()
            expect(page.get_by_role("heading", name="Costs", exact=True)).to_be_visible()
            expect(page.locator("[data-testid=stVegaLiteChart]").first).to_be_visible()
            today = (
                page.locator("[data-testid=stMetric]")
                .filter(has_text="Spent today")
                .locator("[data-testid=stMetricValue]")
            )
            expect(today).to_have_text("$0.16")
            _snap(page, "dashboard-6-costs.png")
        except BaseException:
            page.screenshot(path=ARTIFACTS / "dashboard-failure.png")
            raise
        finally:
            browser.close()


def _completed_job(board: Dashboard) -> str:
    """A finished job of the demo tee, made in the dashboard's own database."""
    script = (
        "from catwalk.db import queries, session_scope\n"
        "from catwalk.db.base import utcnow\n"
        "from catwalk.domain import JobOptions, JobStatus\n"
        "with session_scope() as s:\n"
        "    job, _ = queries.create_job(session=s, product_id='demo-tee', options=JobOptions())\n"
        "    job.status, job.progress = JobStatus.COMPLETED, 100\n"
        "    job.started_at = job.completed_at = utcnow()\n"
        "    print(job.id)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=board.env,
        check=True,
        timeout=120,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip().splitlines()[-1]


def _session_cookie(context: Any) -> dict[str, Any]:
    """The session cookie, once the page has traded its token for it (a fetch after sign-in)."""
    from catwalk.dashboards import sessions

    deadline = time.monotonic() + 30
    while True:
        found = [c for c in context.cookies() if c["name"] == sessions.COOKIE]
        if found:
            return found[0]  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, "no session cookie after signing in"
        time.sleep(0.25)


def test_sign_in_lasts_through_reloads_and_links(dashboard: Dashboard) -> None:
    from catwalk.dashboards import sessions
    from playwright.sync_api import expect, sync_playwright

    from catwalk.config import Settings

    ARTIFACTS.mkdir(exist_ok=True)
    job_id = _completed_job(dashboard)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        context = browser.new_context(viewport={"width": 1440, "height": 1000})
        page = context.new_page()
        page.set_default_timeout(60_000)
        expect.set_options(timeout=60_000)
        password = page.locator("input[type=password]")
        job_title = page.get_by_role("heading", name="Coral crew-neck tee")
        costs_title = page.get_by_role("heading", name="Costs", exact=True)

        def visit_with_cookie(value: str, path: str = "/costs") -> None:
            context.add_cookies(
                [
                    {
                        "name": sessions.COOKIE,
                        "value": value,
                        "url": dashboard.url,
                        "httpOnly": True,
                        "sameSite": "Lax",
                    }
                ]
            )
            page.goto(dashboard.url + path)

        try:
            # A link to a job (an alert, a bookmark) opened signed out: sign in, land on it.
            job_url = f"{dashboard.url}/job?job={job_id}"
            page.goto(job_url)
            expect(password).to_be_visible()
            password.fill(dashboard.password)
            page.get_by_role("button", name="Sign in", exact=True).click()
            expect(job_title).to_be_visible()
            expect(page.get_by_text(f"Job {job_id[:8]} ·")).to_be_visible()
            assert page.url == job_url

            cookie = _session_cookie(context)
            assert cookie["httpOnly"] is True
            assert cookie["sameSite"] == "Lax"
            assert 11.9 * 3600 < cookie["expires"] - time.time() <= 12 * 3600

            page.reload()
            expect(job_title).to_be_visible()
            expect(page.get_by_text(f"Job {job_id[:8]} ·")).to_be_visible()
            expect(password).to_have_count(0)
            assert page.url == job_url
            _snap(page, "dashboard-7-job-after-reload.png")

            # Every page by its address, and F5 on Costs keeps Costs (no "Page not found").
            page.goto(f"{dashboard.url}/costs")
            expect(costs_title).to_be_visible()
            page.reload()
            expect(costs_title).to_be_visible()
            expect(page.get_by_text("Page not found")).to_have_count(0)
            _snap(page, "dashboard-8-costs-after-reload.png")
            # The short id the pages show is a link too.
            page.goto(f"{dashboard.url}/job?job={job_id[:8]}")
            expect(job_title).to_be_visible()
            page.goto(f"{dashboard.url}/products?q=hood")
            expect(page.locator(".st-key-card_demo-hoodie")).to_be_visible()
            expect(page.locator(".st-key-card_demo-tee")).to_have_count(0)

            # A correctly signed cookie past its expiry does not sign in; the same forgery
            # with a live expiry does, so what was refused is the expiry.
            value = cookie["value"]
            session_id = value.split(".")[1]
            signer = Settings(CATWALK_HOME=str(dashboard.home))
            visit_with_cookie(sessions.cookie_value(signer, session_id, int(time.time()) - 5))
            expect(password).to_be_visible()
            visit_with_cookie(sessions.cookie_value(signer, session_id, int(time.time()) + 600))
            expect(costs_title).to_be_visible()
            visit_with_cookie(value[:-1] + ("0" if value[-1] != "0" else "1"))
            expect(password).to_be_visible()
            visit_with_cookie(value)
            expect(costs_title).to_be_visible()

            # Sign out: a reload shows the sign-in form, and the old cookie, put back by
            # hand, is refused (revoked on the server, not just deleted in this browser).
            page.get_by_role("button", name="Sign out").click()
            expect(password).to_be_visible()
            page.reload()
            expect(password).to_be_visible()
            _snap(page, "dashboard-9-signed-out-after-reload.png")
            visit_with_cookie(value)
            expect(password).to_be_visible()
            expect(costs_title).to_have_count(0)
        except BaseException:
            page.screenshot(path=ARTIFACTS / "dashboard-sessions-failure.png")
            raise
        finally:
            browser.close()
