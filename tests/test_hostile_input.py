"""Hostile input (issue #19): every door outside data comes through, tried with bad data.

No test here sends traffic off the machine: the "shop on the internet" is a local server
that the fetcher is told to treat as public, and every refused address is refused before
a socket is opened (checked by recording every connect).
"""

from __future__ import annotations

import http.server
import io
import ipaddress
import re
import socket
import threading
import time
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings as settings_
from hypothesis import strategies as st
from PIL import Image

from catwalk.clients import media
from catwalk.errors import ProductImageError
from tests.conftest import reset_settings
from tests.test_dashboard_browser import dashboard  # noqa: F401 (the running dashboard fixture)


def _png(width: int = 64, height: int = 64) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(out, format="PNG")
    return out.getvalue()


PNG = _png()


class _Shop(http.server.BaseHTTPRequestHandler):
    """Routes a hostile catalog feed might point at."""

    routes: typing.ClassVar[dict[str, tuple[int, dict[str, str], bytes]]] = {}

    def do_GET(self) -> None:
        if self.path == "/drip":
            # One byte every 0.3 s: each read is quick, the whole never ends.
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            try:
                for _ in range(1000):
                    self.wfile.write(b"\x89")
                    self.wfile.flush()
                    time.sleep(0.3)
            except OSError:
                pass
            return
        if self.path == "/endless":
            # No Content-Length, an image header, then bytes for ever.
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            try:
                self.wfile.write(PNG[:16])
                for _ in range(10_000):
                    self.wfile.write(b"\0" * 65536)
            except OSError:
                pass
            return
        status, headers, body = self.routes.get(self.path, (404, {}, b"missing"))
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def _serve(routes: dict[str, tuple[int, dict[str, str], bytes]]) -> tuple[int, object]:
    handler = type("Shop", (_Shop,), {"routes": routes})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1], server


@pytest.fixture
def servers() -> Iterator[dict[str, int]]:
    """A "shop" (treated as public) and an internal service on loopback (private)."""
    internal_port, internal = _serve({"/secret.png": (200, {"Content-Type": "image/png"}, PNG)})
    shop_routes: dict[str, tuple[int, dict[str, str], bytes]] = {
        "/photo.png": (200, {"Content-Type": "image/png"}, PNG),
        "/to-loopback": (302, {"Location": f"http://127.0.0.1:{internal_port}/secret.png"}, b""),
        "/to-localhost": (302, {"Location": f"http://localhost:{internal_port}/secret.png"}, b""),
        "/to-decimal": (302, {"Location": f"http://2130706433:{internal_port}/secret.png"}, b""),
        "/to-mapped": (
            302,
            {"Location": f"http://[::ffff:127.0.0.1]:{internal_port}/secret.png"},
            b"",
        ),
        "/to-metadata": (302, {"Location": "http://169.254.169.254/latest/meta-data/"}, b""),
        "/to-file": (302, {"Location": "file:///etc/passwd"}, b""),
        "/loop": (302, {"Location": "/loop"}, b""),
        "/page.html": (200, {"Content-Type": "text/html"}, b"<html>hi</html>"),
        "/fake.png": (200, {"Content-Type": "image/png"}, b"<html>not a png</html>"),
        "/huge": (200, {"Content-Type": "image/png"}, PNG + b"\0" * (media.MAX_IMAGE_BYTES)),
    }
    shop_port, shop = _serve(shop_routes)
    shop_routes["/hop1"] = (302, {"Location": f"http://127.0.0.1:{shop_port}/photo.png"}, b"")
    yield {"shop": shop_port, "internal": internal_port}
    shop.shutdown()  # type: ignore[attr-defined]
    internal.shutdown()  # type: ignore[attr-defined]


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every address the fetcher opens a socket to."""
    seen: list[tuple[str, int]] = []
    real = media._connect

    def recording(family, kind, proto, sockaddr, timeout):  # type: ignore[no-untyped-def]
        seen.append((sockaddr[0], sockaddr[1]))
        if ipaddress.ip_address(sockaddr[0]).is_link_local:
            raise AssertionError(f"connected to link-local {sockaddr}")
        return real(family, kind, proto, sockaddr, timeout)

    monkeypatch.setattr(media, "_connect", recording)
    return seen


def _fetch(servers: dict[str, int], path: str, **kw: object) -> bytes:
    shop = servers["shop"]

    # The shop's own address counts as public; every other address by the real rule.
    def only_the_shop(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int) -> bool:
        return (str(ip), port) == ("127.0.0.1", shop) or media.is_public_address(ip)

    return media.fetch_media(
        f"http://127.0.0.1:{shop}{path}",
        allowed=only_the_shop,
        **kw,  # type: ignore[arg-type]
    )


# --- 1. SSRF ---------------------------------------------------------------------------


def test_a_public_photo_and_a_redirect_within_the_shop_are_fetched(servers, connects) -> None:
    assert _fetch(servers, "/photo.png") == PNG
    assert _fetch(servers, "/hop1") == PNG


@pytest.mark.parametrize("route", ["/to-loopback", "/to-localhost", "/to-decimal", "/to-mapped"])
def test_a_redirect_to_loopback_is_refused_before_connecting(servers, connects, route) -> None:
    with pytest.raises(ProductImageError, match="non-public address") as caught:
        _fetch(servers, route)
    assert "ALLOW_PRIVATE_MEDIA_HOSTS" in str(caught.value)
    # Only the shop was ever connected to: the internal service saw nothing.
    assert all(port == servers["shop"] for _, port in connects), connects


def test_a_redirect_to_cloud_metadata_never_opens_a_socket(servers, connects) -> None:
    with pytest.raises(ProductImageError, match=r"non-public address \(169\.254\.169\.254\)"):
        _fetch(servers, "/to-metadata")
    assert not any(host.startswith("169.254.") for host, _ in connects)


def test_a_url_straight_at_loopback_is_refused_by_default(servers, connects) -> None:
    for url in (
        f"http://127.0.0.1:{servers['internal']}/secret.png",
        f"http://localhost:{servers['internal']}/secret.png",
        f"http://0x7f.1:{servers['internal']}/secret.png",
        f"http://[::1]:{servers['internal']}/secret.png",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/x.png",
        "http://0.0.0.0/x.png",
    ):
        with pytest.raises(ProductImageError):
            media.fetch_media(url)
    assert connects == []


def test_dns_rebinding_is_judged_on_the_connected_address(monkeypatch, connects) -> None:
    # The name resolves to loopback at connect time: whatever a URL check saw earlier,
    # the address connected to is the one judged.
    real = socket.getaddrinfo

    def rebinding(host, port, *args, **kwargs):  # type: ignore[no-untyped-def]
        if host == "photos.shop.example":
            return real("127.0.0.1", port, *args, **kwargs)
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(media.socket, "getaddrinfo", rebinding)
    with pytest.raises(ProductImageError, match=r"photos\.shop\.example resolves to a non-public"):
        media.fetch_media("http://photos.shop.example/p.png")
    assert connects == []


def test_allow_private_media_hosts_lets_a_shop_use_its_own_network(servers) -> None:
    url = f"http://127.0.0.1:{servers['internal']}/secret.png"
    assert media.fetch_media(url, allow_private=True) == PNG


@pytest.mark.parametrize(
    ("route", "message"),
    [
        ("/to-file", "only http"),
        ("/loop", "more than 3 redirects"),
        ("/page.html", "content type 'text/html'"),
        ("/fake.png", "first bytes"),
        ("/huge", "larger than 20 MB"),
        ("/endless", "larger than 20 MB"),
    ],
)
def test_what_is_not_a_photo_is_refused(servers, connects, route, message) -> None:
    with pytest.raises(ProductImageError, match=message):
        _fetch(servers, route)


def test_a_dripping_server_is_cut_at_the_total_deadline(servers) -> None:
    started = time.monotonic()
    with pytest.raises(ProductImageError, match="took longer than"):
        _fetch(servers, "/drip", deadline_seconds=1.5)
    assert time.monotonic() - started < 2.5


def test_only_http_urls_and_paths_inside_the_roots_are_read(
    settings, tmp_path, monkeypatch
) -> None:

    inside = tmp_path / "catalog" / "p.png"
    inside.parent.mkdir()
    inside.write_bytes(PNG)
    current = reset_settings(monkeypatch, MEDIA_IMPORT_ROOTS=str(inside.parent))
    assert media.read_image_source(str(inside), settings=current) == PNG
    for outside in ("/etc/passwd", str(inside.parent / ".." / "x.png"), "ftp://example.com/a.png"):
        with pytest.raises(ProductImageError):
            media.read_image_source(outside, settings=current)
    link = inside.parent / "link.png"
    link.symlink_to("/etc/passwd")
    with pytest.raises(ProductImageError, match="outside the folders"):
        media.read_image_source(str(link), settings=current)


def test_the_default_roots_are_the_current_directory_and_catwalk_home(
    settings, monkeypatch
) -> None:

    monkeypatch.delenv("MEDIA_IMPORT_ROOTS")
    current = reset_settings(monkeypatch)
    assert media.import_roots(current) == [Path.cwd().resolve(), current.catwalk_home]


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "2002:7f00:1::",
        "64:ff9b::a9fe:a9fe",
    ],
)
def test_non_public_addresses_in_every_form(address) -> None:
    assert not media.is_public_address(ipaddress.ip_address(address))


def test_public_addresses_pass() -> None:
    for address in ("93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"):
        assert media.is_public_address(ipaddress.ip_address(address))


# --- 2. Secrets scrubbed before anything is cut -------------------------------------------

GEMINI_KEY = "test-gemini-key"  # 15 characters, like the key the issue saw cut to 14
FAL_KEY = "test-fal-id:test-fal-key"
FILLER = "the request was malformed because of the field "  # no fragment of either key


def _fragments(secret: str, size: int = 5) -> set[str]:
    return {secret[i : i + size] for i in range(len(secret) - size + 1)}


def _assert_no_fragment(text: str, secret: str) -> None:
    leaked = [f for f in _fragments(secret) if f in text]
    assert not leaked, f"{leaked} of the key in {text!r}"


def _provider_text(secret: str, offset: int, length: int = 420) -> str:
    text = (FILLER * 20)[:length]
    return text[:offset] + secret + text[offset:]


@pytest.fixture
def error_server(httpserver):  # type: ignore[no-untyped-def]
    """A real HTTP server answering every request with the status and JSON the test sets."""
    import json
    import re

    from werkzeug import Response

    state: dict[str, object] = {"status": 400, "body": {}}

    def handler(_request):  # type: ignore[no-untyped-def]
        return Response(
            json.dumps(state["body"]), status=state["status"], content_type="application/json"
        )

    httpserver.expect_request(re.compile(".*")).respond_with_handler(handler)
    return httpserver, state


def test_a_gemini_key_at_every_offset_of_a_long_error_never_shows(error_server) -> None:
    from pydantic import SecretStr

    from catwalk.clients.gemini import GeminiImageGenerator
    from catwalk.domain import ImageRequest
    from catwalk.errors import ProviderError

    server, state = error_server
    client = GeminiImageGenerator(api_key=SecretStr(GEMINI_KEY), base_url=server.url_for("/"))
    request = ImageRequest(
        product_image=PNG,
        product_image_mime="image/png",
        model_type="female",  # type: ignore[arg-type]
        pose="start",
        identity_seed=1,
        product_name="Tee",  # type: ignore[arg-type]
    )
    # Every offset around the 300-character cut, and a sample of the rest.
    offsets = sorted({*range(0, 420, 7), *range(270, 310)})
    for offset in offsets:
        state["body"] = {
            "error": {
                "code": 400,
                "status": "INVALID_ARGUMENT",
                "message": _provider_text(f"key={GEMINI_KEY}", offset),
            }
        }
        with pytest.raises(ProviderError) as caught:
            client.generate(request)
        _assert_no_fragment(str(caught.value), GEMINI_KEY)
        _assert_no_fragment(repr(caught.value), GEMINI_KEY)


def test_a_fal_key_at_every_offset_of_validation_details_never_shows(error_server) -> None:
    from pydantic import SecretStr

    from catwalk.clients.fal_pika import FalPikaVideoGenerator
    from catwalk.domain import VideoRequest
    from catwalk.errors import ProviderError

    server, state = error_server
    client = FalPikaVideoGenerator(
        api_key=SecretStr(FAL_KEY),
        base_url=server.url_for("/").rstrip("/"),
        poll_interval_seconds=0,
    )
    request = VideoRequest(
        start_image=PNG,
        end_image=PNG,
        mime_type="image/png",
        style="smooth",
        duration_seconds=2,
        resolution="720p",  # type: ignore[arg-type]
    )
    secret_half = FAL_KEY.partition(":")[2]
    for offset in range(200):  # the 160-character cut of each detail, and past it
        for body in (
            {
                "detail": [
                    {
                        "loc": ["body", "prompt"],
                        "msg": _provider_text(f"Key {FAL_KEY}", offset, 200),
                    }
                ]
            },
            {"detail": _provider_text(f"Key {secret_half}", offset * 2, 420)},
        ):
            state["status"], state["body"] = 422, body
            with pytest.raises(ProviderError) as caught:
                client._submit(request)
            _assert_no_fragment(str(caught.value), secret_half)


@given(
    before=st.text(alphabet=" abcdefghijklmnopqrstuvwxyz.,", max_size=400),
    after=st.text(alphabet=" abcdefghijklmnopqrstuvwxyz.,", max_size=400),
    limit=st.integers(min_value=20, max_value=400),
)
@settings_(max_examples=300, deadline=None)
def test_scrub_then_cut_never_leaves_part_of_a_key(before: str, after: str, limit: int) -> None:
    from catwalk.clients._http import short
    from catwalk.scrub import register_secret

    register_secret(GEMINI_KEY)
    _assert_no_fragment(short(before + GEMINI_KEY + after, limit), GEMINI_KEY)


def test_job_rows_events_logs_and_error_text_are_scrubbed(settings, monkeypatch, caplog) -> None:
    import logging

    from catwalk.db import models, queries
    from catwalk.db.session import session_scope

    from catwalk.errors import PermanentProviderError

    reset_settings(monkeypatch, NANO_BANANA_API_KEY="sk-live-0123456789abcdef")
    secret = "sk-live-0123456789abcdef"
    with session_scope() as session:
        queries.upsert_product(session=session, product_id="p1", name="P", images=[])
        job = models.VideoJob(product_id="p1", error_message=f"boom {secret} boom")
        session.add(job)
        session.flush()
        queries.record_event(
            session=session, job_id=job.id, step="images", kind="failed", message=f"x{secret}x"
        )
        job_id = job.id
    with session_scope() as session:
        stored = session.get(models.VideoJob, job_id)
        assert stored is not None and secret not in (stored.error_message or "")
        assert all(secret not in e.message for e in stored.events)
        assert "***" in (stored.error_message or "")
    exc = PermanentProviderError(f"the key {secret} was refused", provider="gemini")
    # Prefect builds a failed state's message from str(exc): that is scrubbed too.
    assert secret not in str(exc) and secret not in repr(exc)
    with caplog.at_level(logging.INFO):
        logging.getLogger("catwalk.test").info("calling with %s", secret)
        try:
            raise RuntimeError(f"inner {secret}")
        except RuntimeError:
            logging.getLogger("prefect.test").exception("failed")
    assert secret not in caplog.text
    assert "***" in caplog.text


# --- 3. Names are data, never markup ------------------------------------------------------


@pytest.mark.browser
@pytest.mark.slow
def test_a_hostile_name_renders_as_text_and_fetches_nothing(dashboard, tmp_path) -> None:  # noqa: F811
    import subprocess
    import sys

    from playwright.sync_api import expect, sync_playwright

    from tests.test_dashboard_browser import CHROMIUM, CHROMIUM_FLAGS, ROOT

    hits: list[str] = []

    class Trap(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            self.wfile.write(PNG)

        def log_message(self, *args: object) -> None:
            pass

    trap = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Trap)
    threading.Thread(target=trap.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{trap.server_address[1]}"
    name = (
        f"Evil ![p]({base}/md.png) <img src='{base}/img.png' "
        f"onerror='fetch(\"{base}/e\")'> [click]({base}/a) :red[red] **bold**"
    )
    broken = dashboard.home / "catalog" / "broken.png"
    broken.write_bytes(b"this is not an image at all")
    script = (
        "import sys\n"
        "from catwalk.db import queries, session_scope\n"
        "with session_scope() as s:\n"
        "    queries.upsert_product(session=s, product_id='aaa-broken', name='Broken photo',"
        " images=[sys.argv[3]])\n"
        "    queries.upsert_product(session=s, product_id='aab-evil', name=sys.argv[1],"
        " images=[sys.argv[2]])\n"
    )
    photos = sorted(
        p for p in (dashboard.home / "catalog").iterdir() if p.suffix in (".png", ".jpg")
    )
    photo = next(p for p in photos if p != broken)
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith(("DATABASE_URL",))}
    env["CATWALK_HOME"] = str(dashboard.home)
    subprocess.run(
        [sys.executable, "-c", script, name, str(photo), str(broken)],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=60,
    )
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        page.set_default_timeout(60_000)
        expect.set_options(timeout=60_000)
        requested: list[str] = []
        page.on("request", lambda r: requested.append(r.url))
        try:
            page.goto(dashboard.url)
            page.locator("input[type=password]").fill(dashboard.password)
            page.get_by_role("button", name="Sign in", exact=True).click()
            expect(page.get_by_role("heading", name="Products", exact=True)).to_be_visible()
            card = page.locator(".st-key-card_aab-evil")
            expect(card).to_be_visible()
            # The name shows as the characters it is made of.
            expect(card).to_contain_text("![p](")
            expect(card).to_contain_text("<img src=")
            expect(card).to_contain_text(":red[red] **bold**")
            assert card.locator(f"img[src^='{base}']").count() == 0
            assert card.locator(f"a[href^='{base}']").count() == 0
            # The broken photo's card says what is wrong, and the cards after it are drawn.
            broken_card = page.locator(".st-key-card_aaa-broken")
            expect(broken_card).to_contain_text("Broken photo")
            expect(broken_card).to_contain_text("Photo unusable: is not a readable image")
            expect(page.locator(".st-key-card_demo-tee img").first).to_be_visible()
            page.wait_for_timeout(1500)
        finally:
            browser.close()
            trap.shutdown()
    assert hits == []
    assert not [u for u in requested if u.startswith(base)]


# --- 6. Dashboard media for signed-in sessions only --------------------------------------

_SEED_FINISHED_JOB = """
import sys
from pathlib import Path
from catwalk.clients import factory
from catwalk.clients.keys import object_key
from catwalk.clients.media import render_transition
from catwalk.db import queries, session_scope
from catwalk.db.base import utcnow
from catwalk.domain import JobOptions, JobStatus
home = Path(sys.argv[1])
start, end = home / "catalog" / "demo-tee.jpg", home / "catalog" / "demo-dress.jpg"
out = home / "seed.mp4"
render_transition(start, end, out, duration_seconds=1, width=160, style="smooth")
store = factory.blob_store()
with session_scope() as s:
    job, _ = queries.create_job(session=s, product_id="demo-tee", options=JobOptions())
    job.status, job.progress, job.started_at, job.completed_at = (
        JobStatus.COMPLETED, 100, utcnow(), utcnow())
    keys = {}
    for pose, photo in (("start", start), ("end", end)):
        keys[pose] = object_key("demo-tee", job.id, f"keyframe-{pose}")
        store.put_bytes(keys[pose], photo.read_bytes(), "image/jpeg")
    job.image_keys = keys
    video = object_key("demo-tee", job.id, "video")
    store.put_bytes(video, out.read_bytes(), "video/mp4")
    job.video_key = video
    print(job.id)
"""


@pytest.mark.browser
@pytest.mark.slow
def test_job_media_loads_through_signed_links_only(dashboard) -> None:  # noqa: F811
    import os
    import subprocess
    import sys
    from urllib.parse import parse_qs, urlencode, urlsplit

    import httpx
    from playwright.sync_api import expect, sync_playwright

    from catwalk.clients import signed_media
    from tests.test_dashboard_browser import CHROMIUM, CHROMIUM_FLAGS, ROOT

    env = {k: v for k, v in os.environ.items() if not k.startswith("DATABASE_URL")}
    env["CATWALK_HOME"] = str(dashboard.home)
    job_id = subprocess.run(
        [sys.executable, "-c", _SEED_FINISHED_JOB, str(dashboard.home)],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=120,
        capture_output=True,
        text=True,
    ).stdout.strip()
    media_prefix = f"{dashboard.url}/catwalk-media/store/"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        page.set_default_timeout(60_000)
        expect.set_options(timeout=60_000)
        answers: dict[str, int] = {}
        page.on("response", lambda r: answers.__setitem__(r.url, r.status))
        try:
            page.goto(dashboard.url)
            page.locator("input[type=password]").fill(dashboard.password)
            page.get_by_role("button", name="Sign in", exact=True).click()
            expect(page.get_by_role("heading", name="Products", exact=True)).to_be_visible()
            # In-app navigation: a reload would be a new session, signed out.
            page.locator(".st-key-card_demo-tee").get_by_role("link", name="Latest job").click()
            expect(page).to_have_url(re.compile(f"job={job_id}"))
            expect(page.get_by_role("heading", name="Coral crew-neck tee")).to_be_visible()
            frames = page.locator("[data-testid=stImage] img")
            expect(frames).to_have_count(2)
            page.wait_for_function(
                "() => [...document.querySelectorAll('[data-testid=stImage] img')]"
                ".every(i => i.complete && i.naturalWidth > 0)"
            )
            video = page.locator("video")
            expect(video).to_have_count(1)
            facts = video.evaluate(
                """async (v) => {
                    v.muted = true;
                    await v.play();
                    await new Promise((ok) => setTimeout(ok, 800));
                    return {ready: v.readyState, time: v.currentTime, error: v.error && v.error.code};
                }"""
            )
            assert facts["error"] is None and facts["ready"] >= 2 and facts["time"] > 0, facts
            sources = [i.get_attribute("src") or "" for i in frames.all()]
            sources.append(video.get_attribute("src") or "")
            assert all(src.startswith(media_prefix) for src in sources), sources
            assert all(answers.get(src) in (200, 206) for src in sources), answers

            with httpx.Client(timeout=30) as http:
                good = sources[-1]
                ranged = http.get(good, headers={"Range": "bytes=0-99"})
                assert ranged.status_code == 206 and len(ranged.content) == 100
                assert ranged.headers["content-type"] == "video/mp4"
                parts = urlsplit(good)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                bare = f"{parts.scheme}://{parts.netloc}{parts.path}"

                def answer(**changes: str) -> httpx.Response:
                    return http.get(f"{bare}?{urlencode({**query, **changes})}")

                assert http.get(bare).status_code == 403
                flipped = ("0" if query["sig"][0] != "0" else "1") + query["sig"][1:]
                assert answer(sig=flipped).text == "bad signature"
                # A good signature does not carry over to another key, expiry or grant.
                other = http.get(sources[0].replace("keyframe-start", "keyframe-end"))
                assert other.status_code == 403
                assert answer(exp=str(int(query["exp"]) + 600)).status_code == 403
                assert answer(g="someone-else").status_code == 403
                # Correctly signed with the install's key, but expired: refused as expired.
                key = signed_media.derive_key(
                    (dashboard.home / "dashboard-media.key").read_bytes(),
                    b"catwalk dashboard media v1",
                )
                ref = parts.path.removeprefix("/catwalk-media/")
                past = str(int(time.time()) - 60)
                sig = signed_media.signature(key, ref, past, query["g"])
                expired = answer(exp=past, sig=sig)
                assert (expired.status_code, expired.text) == (403, "signed URL expired")
                assert http.get(good).status_code == 200  # still good while signed in

                page.get_by_role("button", name="Sign out").click()
                expect(page.locator("input[type=password]")).to_be_visible()
                for src in sources:
                    after = http.get(src)
                    assert (after.status_code, after.text) == (403, "signed out")
        finally:
            browser.close()
    # Nothing of ours went through Streamlit's open /media endpoint.
    assert not [u for u in answers if urlsplit(u).path.startswith("/media/")], sorted(answers)


# --- 4. The API refuses before it reads ---------------------------------------------------

API_TOKEN = "hostile-test-token-9f3c2a7b1e"
API_PATH = "/api/admin/video-generation"


@pytest.fixture
def api_server(settings) -> Iterator[tuple[str, int, int]]:
    """``catwalk api`` in its own process: (host, port, pid)."""
    import os
    import re
    import subprocess
    import sys

    env = {**os.environ, "CATWALK_HOME": str(settings.catwalk_home), "CATWALK_API_TOKEN": API_TOKEN}
    # One process: the memory checks read the RSS of the process that serves the request.
    env["API_WORKERS"] = "1"
    proc = subprocess.Popen(
        [sys.executable, "-m", "catwalk.cli", "api", "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            found = re.search(r"running on http://127\.0\.0\.1:(\d+)", line, re.IGNORECASE)
            if found:
                break
        else:
            pytest.fail("catwalk api exited without serving")
        yield "127.0.0.1", int(found.group(1)), proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _stream_post(host: str, port: int, headers: str, total: int, pid: int) -> tuple[str, int]:
    """POST ``total`` bytes as fast as the server takes them; (status line, peak RSS)."""
    chunk = b"{" + b"a" * (1024 * 1024 - 1)
    if "chunked" in headers:
        chunk = b"%x\r\n%s\r\n" % (len(chunk), chunk)
    peak = _rss_bytes(pid)
    sent = 0
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(f"POST {API_PATH} HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode())
        sock.settimeout(0.0)
        answer = b""
        while sent < total:
            try:
                answer += sock.recv(65536)
            except BlockingIOError:
                pass
            except OSError:
                break
            if answer:
                break
            try:
                sock.settimeout(5)
                sent += sock.send(chunk)
                sock.settimeout(0.0)
            except OSError:
                break  # the server closed: it answered and stopped reading
            if sent % (32 * 1024 * 1024) < len(chunk):
                peak = max(peak, _rss_bytes(pid))
        sock.settimeout(10)
        while b"\r\n" not in answer:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    peak = max(peak, _rss_bytes(pid))
    return answer.split(b"\r\n", 1)[0].decode(), peak


@pytest.mark.slow
@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (f"Content-Type: application/json\r\nContent-Length: {300 * 1024 * 1024}\r\n", "401"),
        ("Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n", "401"),
        (
            f"Authorization: Bearer {API_TOKEN}\r\nContent-Length: {300 * 1024 * 1024}\r\n",
            "413",
        ),
    ],
    ids=["no-token", "no-token-chunked", "token-too-large"],
)
def test_a_300_mb_post_is_refused_without_being_read(api_server, headers, expected) -> None:
    host, port, pid = api_server
    before = _rss_bytes(pid)
    status, peak = _stream_post(host, port, headers, 300 * 1024 * 1024, pid)
    assert status.split()[1] == expected, status
    assert peak - before < 20 * 1024 * 1024, f"RSS grew {(peak - before) / 1e6:.1f} MB"


def test_an_authenticated_chunked_body_is_cut_at_the_cap(api_server) -> None:
    # No Content-Length to refuse up front: the cap counts bytes as they are read.
    host, port, _pid = api_server
    frame = b"1000\r\n" + b" " * 4096 + b"\r\n"
    sent = 0
    answer = b""
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(
            (
                f"POST {API_PATH} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_TOKEN}\r\n"
                "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            ).encode()
        )
        sock.settimeout(0.05)
        while sent < 50 * 1024 * 1024 and b"\r\n" not in answer:
            try:
                answer += sock.recv(65536)
                continue
            except TimeoutError:
                pass
            try:
                sock.sendall(frame)
            except OSError:
                break
            sent += 4096
        sock.settimeout(10)
        while b"\r\n\r\n" not in answer:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"API_MAX_BODY_BYTES" in answer or b"413" in answer
    assert sent < 4 * 1024 * 1024  # answered soon after the cap, not after reading it all


def test_weak_api_tokens_are_refused_at_start_up() -> None:
    from catwalk import config
    from catwalk.api.auth import resolve_token
    from catwalk.errors import ConfigError

    for weak in (" " * 16, "a" * 32, "abababababababab", "abcd" * 8, "token with spaces in it"):
        with pytest.raises(ConfigError, match="too weak"):
            resolve_token(config.Settings(CATWALK_API_TOKEN=weak))
    assert resolve_token(config.Settings(CATWALK_API_TOKEN=API_TOKEN)) == (API_TOKEN, False)


# --- 7. No server path in what the API answers --------------------------------------------


def test_no_api_answer_names_a_server_path(settings, tmp_path) -> None:
    import sys

    from catwalk.db import models, queries
    from catwalk.db.session import session_scope
    from fastapi.testclient import TestClient

    from catwalk.api import create_app
    from catwalk.domain import JobStatus
    from tests.test_api import RecordingLauncher

    photos = tmp_path / "shop" / "photos"
    photos.mkdir(parents=True)
    (photos / "text.png").write_text("not an image")
    (photos / "ok.png").write_bytes(PNG)
    with session_scope() as session:
        for product_id, ref in (
            ("gone", str(photos / "gone.png")),
            ("outside", "/etc/passwd"),
            ("text", str(photos / "text.png")),
            ("uri", (photos / "gone.png").as_uri()),
            ("ok", str(photos / "ok.png")),
        ):
            queries.upsert_product(session=session, product_id=product_id, name="n", images=[ref])
        failed = models.VideoJob(
            product_id="ok",
            status=JobStatus.FAILED,
            error_message=(
                f"publishing video: cannot write {settings.media_dir}/products/ok/v.mp4: "
                f"No space left; see {sys.prefix}/lib/python3.11/site-packages/x.py"
            ),
        )
        session.add(failed)
        session.flush()
        failed_id = failed.id
    forbidden = [str(tmp_path), str(settings.catwalk_home), "/etc/", sys.prefix, "site-packages"]
    app = create_app(settings, launcher=RecordingLauncher(), token=API_TOKEN)
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    answers = []
    with TestClient(app) as client:
        for product_id in ("gone", "outside", "text", "uri"):
            posted = client.post(API_PATH, headers=auth, json={"productId": product_id})
            assert posted.status_code == 422, posted.text
            answers.append(posted)
        assert "gone.png" in answers[0].json()["detail"]  # the file's name still helps
        answers.append(job := client.get(f"{API_PATH}/{failed_id}", headers=auth))
        assert job.json()["error"].startswith("publishing video: cannot write v.mp4: No space")
        answers.append(client.get(API_PATH, headers=auth, params={"productId": "ok"}))
        answers.append(client.post(f"{API_PATH}/{failed_id}/retry", headers=auth))
        answers.append(client.get("/media/../../etc/passwd"))
        answers.append(client.get("/media/products/ok/none.mp4"))
    for answer in answers:
        assert "Traceback" not in answer.text
        for path in forbidden:
            assert path not in answer.text, (answer.request.url, answer.text)


def test_a_cli_bug_prints_one_line_and_keeps_the_traceback_in_the_log(
    settings, monkeypatch, capsys
) -> None:
    # The CLI runs on the server for the operator: the paths they typed stay in its errors
    # (`products add` names the photo it refused), internal ones (a traceback's) do not.
    import sys

    import catwalk.cli
    from catwalk.cli import app as cli_app

    def broken() -> None:
        import json

        json.loads("{not json")  # fails inside the standard library's source

    monkeypatch.setattr(cli_app, "app", broken)
    monkeypatch.setattr(sys, "argv", ["catwalk", "products"])
    with pytest.raises(SystemExit) as stopped:
        catwalk.cli.main()
    assert stopped.value.code == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("error: unexpected JSONDecodeError: Expecting property name")
    assert "Traceback" not in err and sys.prefix not in err and "json/decoder.py" not in err
    log = (settings.logs_dir / "cli-errors.log").read_text()
    assert "Traceback" in log and "json.loads" in log
    assert str(settings.logs_dir / "cli-errors.log") in err
    refused = _one_line(_cli("products", "add", "Pw", "/etc/passwd"))
    assert "/etc/passwd" in refused  # the operator's own words


# --- Images decoded within limits ---------------------------------------------------------


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG claiming ``width`` x ``height`` with one tiny compressed row: a bomb's header."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * (width * 3 + 1), 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.mark.parametrize("side", [12_000, 20_000, 60_000])
def test_giant_images_are_refused_from_the_header(settings, side) -> None:
    data = _png_header_only(side, side)
    assert len(data) < 1024 * 1024  # small on disk: only the header says how big it is
    for check in (media.identify_image, lambda d, source: media.normalize_image(d, source=source)):
        with pytest.raises(ProductImageError, match=r"too large|MAX_IMAGE_PIXELS"):
            check(data, source="photo.png")


def test_a_decompression_bomb_does_not_decode(settings) -> None:
    import resource

    # 9000 x 4500 = 40.5 MP: just over the cap, 150 KB of zeros inflating to 121 MB.
    bomb = _png_header_only(9000, 4500)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ProductImageError, match="MAX_IMAGE_PIXELS"):
        media.normalize_image(bomb, source="bomb.png")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50 * 1024  # KiB


def test_the_pixel_cap_is_a_setting(settings, monkeypatch) -> None:

    reset_settings(monkeypatch, MAX_IMAGE_PIXELS="2000")
    with pytest.raises(ProductImageError, match="over 0.002 MP"):
        media.identify_image(_png(64, 64), source="p.png")
    reset_settings(monkeypatch, MAX_IMAGE_PIXELS="5000")
    assert media.identify_image(_png(64, 64), source="p.png") == ("PNG", 64, 64)


# --- Ids and names at the door; import rules; markup in the CLI ---------------------------


def _cli(*args: str):  # type: ignore[no-untyped-def]
    from tests.test_cli import catwalk

    return catwalk(*args)


def _one_line(result) -> str:  # type: ignore[no-untyped-def]
    from tests.test_cli import _one_line_error

    return _one_line_error(result)


def test_products_add_never_overwrites_silently(settings, tmp_path) -> None:
    from catwalk.db import queries
    from catwalk.db.session import session_scope

    photo = tmp_path / "p.png"
    photo.write_bytes(PNG)
    other = tmp_path / "q.png"
    other.write_bytes(_png(80, 80))
    assert _cli("products", "add", "Dup", str(photo)).returncode == 0
    refused = _one_line(_cli("products", "add", "Dup!", str(other)))
    assert "product 'dup' exists" in refused and "--replace" in refused
    with session_scope() as session:
        assert queries.get_product(session=session, product_id="dup").images == [str(photo)]
    assert _cli("products", "add", "Dup!", str(other), "--replace").returncode == 0
    with session_scope() as session:
        product = queries.get_product(session=session, product_id="dup")
        assert (product.name, product.images) == ("Dup!", [str(other)])
    assert "name cannot be empty" in _one_line(_cli("products", "add", "", str(photo)))
    assert "cannot make an id" in _one_line(_cli("products", "add", "!!!", str(photo)))
    assert "invalid product id" in _one_line(
        _cli("products", "add", "X", str(photo), "--id", "a/b")
    )
    assert "outside the folders" in _one_line(_cli("products", "add", "Pw", "/etc/passwd"))
    assert "--limit" in _cli("jobs", "--limit", "-1").stderr


def test_an_import_is_checked_whole_before_anything_is_written(settings, tmp_path) -> None:
    from catwalk.db import queries
    from catwalk.db.session import session_scope

    (tmp_path / "p.png").write_bytes(PNG)
    dup = tmp_path / "dup.csv"
    dup.write_text("id,name,images\nsku-1,A,p.png\nsku-2,B,p.png\nsku-1,C,p.png\n")
    line = _one_line(_cli("products", "import", str(dup)))
    assert "nothing imported" in line and "line 4: id 'sku-1' already used at line 2" in line
    bad = tmp_path / "bad.json"
    bad.write_text(
        '[{"id": "ok", "name": "Fine", "images": ["p.png"]},'
        ' {"id": "l", "name": ["a", "b"], "images": []},'
        ' {"id": "n\\u0000ul", "name": "x", "images": []}]'
    )
    line = _one_line(_cli("products", "import", str(bad)))
    assert "item 2: a product name must be text" in line and "item 3: invalid product id" in line
    with session_scope() as session:
        assert queries.list_products(session=session) == []
    bom = tmp_path / "bom.csv"
    bom.write_bytes("\ufeffid,name,images\nsku-9,Bom,p.png\n".encode())
    assert _cli("products", "import", str(bom)).returncode == 0
    with session_scope() as session:
        assert [p.id for p in queries.list_products(session=session)] == ["sku-9"]


def test_rich_markup_in_names_and_errors_is_printed_as_text(settings, tmp_path) -> None:
    from catwalk.db import models
    from catwalk.db.session import session_scope

    photo = tmp_path / "p.png"
    photo.write_bytes(PNG)
    assert (
        _cli("products", "add", "[/] [bold]x[/bold] [red", str(photo), "--id", "m1").returncode == 0
    )
    with session_scope() as session:
        job = models.VideoJob(product_id="m1", error_message="bad [/] markup [link=x]y[/link]")
        session.add(job)
        session.flush()
        job_id = job.id
        from catwalk.db.alerts import record_alert

        record_alert(
            session=session,
            kind="job_failed",
            dedupe_key=f"job_failed:{job_id}",
            message="job for [/] [bold]x[/bold] [red failed: [model_moderated]",
            job_id=job_id,
        )
    listing = _cli("products")
    assert listing.returncode == 0, listing.stderr
    assert "[/] [bold]x[/bold] [red" in listing.stdout
    jobs = _cli("jobs")
    assert jobs.returncode == 0 and "bad [/] markup" in jobs.stdout, jobs.stderr
    status = _cli("status", job_id)
    assert status.returncode == 0 and "[/]" in status.stdout, status.stderr
    alerts = _cli("alerts")
    assert alerts.returncode == 0, alerts.stderr
    assert "[red failed: [model_moderated]" in alerts.stdout


@pytest.mark.both_dbs
def test_nul_bytes_surrogates_and_long_values_on_this_database(settings) -> None:
    from catwalk.db import queries
    from catwalk.db.session import session_scope
    from fastapi.testclient import TestClient

    from catwalk.api import create_app
    from catwalk.errors import InputError, ProductNotFound
    from tests.test_api import RecordingLauncher

    with session_scope() as session:
        saved = queries.upsert_product(
            session=session, product_id="nul-ok", name="Tee\x00 with\x1b[31m NUL\u202e", images=[]
        )
        assert saved.name == "Tee with[31m NUL"
    for bad_id in ("a\x00b", "\ud800", "x" * 65, "", "../x", "a b"):
        with session_scope() as session, pytest.raises(InputError, match="invalid product id"):
            queries.upsert_product(session=session, product_id=bad_id, name="n", images=[])
        with session_scope() as session:
            assert queries.get_job(session=session, job_id=bad_id) is None
            with pytest.raises(ProductNotFound):
                queries.get_product(session=session, product_id=bad_id)
    with session_scope() as session, pytest.raises(InputError, match="at most 200"):
        queries.upsert_product(session=session, product_id="long", name="n" * 201, images=[])
    with session_scope() as session, pytest.raises(InputError, match="control characters"):
        queries.upsert_product(session=session, product_id="img", name="n", images=["a\x00.png"])

    app = create_app(settings, launcher=RecordingLauncher(), token=API_TOKEN)
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    with TestClient(app) as client:
        assert client.get(f"{API_PATH}/a%00b", headers=auth).status_code == 404
        posted = client.post(API_PATH, headers=auth, json={"productId": "a\x00b"})
        assert posted.status_code == 422, posted.text
        assert "Traceback" not in posted.text and "SELECT" not in posted.text


def test_a_malformed_password_hash_stops_the_dashboard_with_one_line(settings) -> None:
    import os
    import subprocess
    import sys

    from catwalk.dashboards import auth

    good = auth.hash_password("correct horse battery")
    auth.check_hash_format(good)
    for bad in ("not-a-hash", "scrypt$16384$8$1$c2FsdA", good.replace("$16384$", "$1073741824$")):
        env = {**os.environ, "CATWALK_HOME": str(settings.catwalk_home)}
        env["CATWALK_ADMIN_PASSWORD_HASH"] = bad
        env.pop("DATABASE_URL", None)
        result = subprocess.run(
            [sys.executable, "-m", "catwalk.cli", "dashboard", "--port", "1"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 1
        assert result.stderr.strip() == (
            "error: CATWALK_ADMIN_PASSWORD_HASH is not a catwalk scrypt hash "
            "(make one with `catwalk hash-password`)"
        ), result.stderr


# --- Embedded burst: a bounded queue, no stranded job -------------------------------------


def _catalog_with_photos(count: int) -> list[str]:
    from catwalk.db import queries
    from catwalk.db.session import session_scope

    from catwalk import config

    folder = config.get_settings().catwalk_home / "catalog"
    folder.mkdir(parents=True, exist_ok=True)
    ids = []
    with session_scope() as session:
        for n in range(count):
            photo = folder / f"p{n}.png"
            photo.write_bytes(_png(64 + n, 64))
            queries.upsert_product(
                session=session, product_id=f"burst-{n}", name=f"Burst {n}", images=[str(photo)]
            )
            ids.append(f"burst-{n}")
    return ids


def test_a_job_whose_process_dies_before_starting_is_retried_then_failed(
    settings, monkeypatch, db_backend
) -> None:
    import sys

    from catwalk.db import queries
    from catwalk.db.session import session_scope

    from catwalk import local_queue
    from catwalk.domain import JobStatus
    from catwalk.submission import submit_job
    from tests.test_api import RecordingLauncher

    if db_backend != "sqlite":
        pytest.skip("embedded mode runs on SQLite")
    (product,) = _catalog_with_photos(1)
    job_id = submit_job(product, {}, launcher=RecordingLauncher()).job_id
    started: list[str] = []

    def dies_at_once(job: str) -> list[str]:
        started.append(job)
        return [sys.executable, "-c", "raise SystemExit(3)"]

    monkeypatch.setattr(local_queue, "job_command", dies_at_once)
    local_queue.spool(settings.catwalk_home, job_id)
    began = time.monotonic()
    local_queue.run(settings.catwalk_home, processes=2)
    assert time.monotonic() - began < 60
    assert started == [job_id] * local_queue.START_ATTEMPTS
    with session_scope() as session:
        job = queries.get_job(session=session, job_id=job_id)
        assert job is not None and job.status is JobStatus.FAILED
        assert "exited 3 times before starting" in (job.error_message or "")
    assert list(local_queue.queue_dir(settings.catwalk_home).iterdir()) == []


# A stand-in for ``catwalk run-job``: half the jobs' processes die at start-up the first
# time (as 5 of 13 did in the issue), the others take the job and end it.
_STAND_IN_JOB = """
import sys, time
from pathlib import Path
job_id, marker = sys.argv[2], Path(sys.argv[3])
if int(job_id, 16) % 2 and not marker.exists():
    marker.write_text("died")
    raise SystemExit(1)
from catwalk.db import queries, session_scope
from catwalk.domain import JobStatus
with session_scope() as s:
    job = queries.get_job(session=s, job_id=job_id)
    job.status = JobStatus.GENERATING_IMAGES
time.sleep(0.5)
with session_scope() as s:
    job = queries.get_job(session=s, job_id=job_id)
    job.status = JobStatus.COMPLETED
"""


def test_twenty_embedded_submissions_at_once_all_end(settings, db_backend, monkeypatch) -> None:
    import sys

    from catwalk.db import queries
    from catwalk.db.session import session_scope

    from catwalk import local_queue
    from catwalk.submission import LocalProcessLauncher, submit_job

    if db_backend != "sqlite":
        pytest.skip("embedded mode runs on SQLite")
    products = _catalog_with_photos(20)
    home = settings.catwalk_home
    runners: list[Path] = []
    # The runner runs in this test (to use the stand-in); the launcher must still spool.
    monkeypatch.setattr(local_queue, "ensure_runner", lambda h, env: runners.append(h))
    monkeypatch.setattr(
        local_queue,
        "job_command",
        lambda job_id: [
            sys.executable,
            "-c",
            _STAND_IN_JOB,
            "run-job",
            job_id,
            str(home / f"{job_id}.died"),
        ],
    )
    launcher = LocalProcessLauncher(settings)
    threads = [
        threading.Thread(target=submit_job, args=(p, {}), kwargs={"launcher": launcher})
        for p in products
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = _job_ids()
    assert len(ids) == 20 and len(runners) == 20
    assert len(list(local_queue.queue_dir(home).glob("*.job"))) == 20
    runner = threading.Thread(target=local_queue.run, args=(home,), kwargs={"processes": 4})
    began = time.monotonic()
    runner.start()
    most = 0
    while runner.is_alive() and time.monotonic() - began < 600:
        most = max(most, len(_job_processes(ids)))
        time.sleep(0.05)
    runner.join(timeout=1)
    assert not runner.is_alive()
    with session_scope() as session:
        statuses = [j.status.value for j in queries.list_jobs(session=session, limit=100)]
    assert statuses.count("COMPLETED") == 20, statuses
    assert 1 <= most <= 4, most
    died = len(list(home.glob("*.died")))
    assert died >= 3  # some did die at start-up, and were started again


def _job_processes(ids: set[str]) -> list[int]:
    """Pids of ``run-job`` processes for these jobs (read from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"run-job" in args and any(a.decode(errors="replace") in ids for a in args):
            found.append(int(entry.name))
    return found


def _job_ids() -> set[str]:
    from catwalk.db import queries
    from catwalk.db.session import session_scope

    with session_scope() as session:
        return {j.id for j in queries.list_jobs(session=session, limit=100)}


def test_head_answers_like_get_without_a_body(settings) -> None:
    from fastapi.testclient import TestClient

    from catwalk.api import create_app
    from tests.test_api import RecordingLauncher

    app = create_app(settings, launcher=RecordingLauncher(), token=API_TOKEN)
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    with TestClient(app) as client:
        head = client.head(f"{API_PATH}/stats", headers=auth)
        get = client.get(f"{API_PATH}/stats", headers=auth)
        assert head.status_code == get.status_code == 200
        assert head.content == b""
        assert head.headers["content-type"] == get.headers["content-type"]
        assert client.head(f"{API_PATH}/stats").status_code == 401
        assert client.head(f"{API_PATH}/nope", headers=auth).status_code == 404
