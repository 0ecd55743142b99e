"""The review queue in a real browser: a job generated with "review the keyframes" waits on
the Review page with its frames and the video's quoted cost; the admin remakes the end
frame, approves, and the published video plays. Embedded mode: the real local launcher
runs every step in background processes (offline providers)."""

from __future__ import annotations

import re

import pytest

from tests.test_dashboard_browser import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_FLAGS,
    Dashboard,
    _snap,
    dashboard,  # noqa: F401 - the fixture, shared
    play,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not __import__("pathlib").Path(CHROMIUM).exists(), reason="needs chromium"),
]


def _sign_in(page: object, board: Dashboard) -> None:
    from playwright.sync_api import expect

    page.goto(board.url)  # type: ignore[attr-defined]
    page.locator("input[type=password]").fill(board.password)  # type: ignore[attr-defined]
    page.get_by_role("button", name="Sign in", exact=True).click()  # type: ignore[attr-defined]
    expect(page.get_by_role("heading", name="Products", exact=True)).to_be_visible()  # type: ignore[attr-defined]


def test_review_queue_remake_a_frame_approve_and_play(dashboard: Dashboard) -> None:  # noqa: F811
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        page.set_default_timeout(60_000)
        expect.set_options(timeout=60_000)
        try:
            _sign_in(page, dashboard)
            card = page.locator(".st-key-card_demo-tee")
            card.get_by_role("button", name="Generate video").click()
            page.get_by_role("combobox", name=re.compile("Review")).click()
            page.get_by_role(
                "option", name="Review the keyframes before the video is bought"
            ).click()
            page.locator(".st-key-gen_demo-tee button").click()
            started = page.get_by_text(re.compile(r"Started job (\w+) for demo-tee"))
            expect(started).to_be_visible()
            # The short id the dashboard shows; element keys carry the full one.
            job_id = re.search(r"Started job (\w+)", started.inner_text()).group(1)  # type: ignore[union-attr]
            review_item = f"[class*='st-key-review_{job_id}']"
            assert len(job_id) == 8

            page.get_by_role("link", name=re.compile(r"^Review")).click()
            expect(page.get_by_role("heading", name="Review", exact=True)).to_be_visible()
            # The queue refreshes by itself; the job arrives once its keyframes are made.
            item = page.locator(review_item)
            expect(item).to_be_visible(timeout=180_000)
            # The navigation counts what waits (shown from the next page run on).
            page.get_by_role("link", name="Jobs").click()
            expect(page.get_by_role("link", name=re.compile(r"^Review \(1\)"))).to_be_visible()
            page.get_by_role("link", name=re.compile(r"^Review \(1\)")).click()
            expect(item).to_be_visible()
            # The product photo, then the start and end keyframes.
            frames = item.locator("[data-testid=stImage] img")
            expect(frames).to_have_count(3)
            # 2 s of 720p video at $0.04 a second: the quote is on the approve button.
            approve = item.get_by_role("button", name=re.compile(r"make the video for \$0\.080"))
            expect(approve).to_be_visible()
            _snap(page, "review-1-keyframes.png")
            end_before = frames.nth(2).get_attribute("src")

            item.get_by_role("textbox").fill("turn towards the camera")
            item.locator(f"[class*='st-key-remake_end_{job_id}'] button").first.click()
            expect(page.get_by_text(re.compile("remaking the end keyframe"))).to_be_visible()
            # It comes back with a new end frame (a new take, under a new link).
            item = page.locator(review_item)
            expect(item.locator("[data-testid=stImage] img")).to_have_count(3, timeout=180_000)
            page.wait_for_function(
                """([sel, before]) => {
                    const imgs = document.querySelectorAll(sel + ' [data-testid=stImage] img');
                    return imgs.length == 3 && imgs[2].src != before && imgs[2].complete;
                }""",
                arg=[review_item, end_before],
                timeout=180_000,
            )
            _snap(page, "review-2-remade.png")

            item.get_by_role("button", name=re.compile(r"make the video for")).click()
            expect(page.get_by_text(re.compile(rf"Job {job_id} approved"))).to_be_visible()
            expect(page.get_by_role("link", name=re.compile(r"^Review$"))).to_be_visible()

            # The jobs page follows it live to its end; the product card then plays it.
            page.get_by_role("link", name="Jobs").click()
            done = (
                page.locator("[data-testid=stMetric]")
                .filter(has_text="Done today")
                .locator("[data-testid=stMetricValue]")
            )
            expect(done).to_have_text("1", timeout=240_000)
            page.get_by_role("link", name="Products").click()
            video = page.locator(".st-key-card_demo-tee video")
            expect(video).to_be_visible()
            video.scroll_into_view_if_needed()
            facts = play(video)
            assert facts["error"] is None and facts["ready"] >= 2 and facts["time"] > 0
            _snap(page, "review-3-published.png")
        except BaseException:
            page.screenshot(path=ARTIFACTS / "review-failure.png")
            raise
        finally:
            browser.close()
