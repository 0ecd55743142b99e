"""Every dashboard page and action, driven headlessly with Streamlit's AppTest.

Each test runs on SQLite and PostgreSQL (the ``settings`` fixture). Jobs are started through
``submission.use_launcher`` with a recording launcher: nothing runs in the background.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import streamlit as st
from catwalk.dashboards import auth, sessions
from catwalk.db import queries, session_scope, stats
from catwalk.db.base import utcnow
from catwalk.db.models import Alert, LedgerEntry, Product
from streamlit.testing.v1 import AppTest

from catwalk import submission
from catwalk.catalog import DEMO_PRODUCTS
from catwalk.cli.demo import seed_demo_catalog
from catwalk.clients import factory
from catwalk.clients.keys import object_key
from catwalk.clients.media import render_transition
from catwalk.config import Settings
from catwalk.domain import JobOptions, JobStatus
from tests.conftest import reset_settings

APP = Path(__file__).resolve().parents[1] / "dashboards" / "streamlit_app.py"
PASSWORD = "correct horse battery"


@dataclass
class RecordingLauncher:
    """Records what would have been started; starts nothing."""

    launches: list[dict[str, Any]] = field(default_factory=list)

    def launch(
        self, *, job_id: str, product_id: str, options: dict[str, Any], run_key: str | None = None
    ) -> str | None:
        self.launches.append(
            {"job_id": job_id, "product_id": product_id, "options": options, "run_key": run_key}
        )
        return None


@pytest.fixture
def admin(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Settings with an admin password and the demo catalog, and empty dashboard caches."""
    current = reset_settings(monkeypatch, CATWALK_ADMIN_PASSWORD=PASSWORD)
    seed_demo_catalog()
    st.cache_data.clear()
    yield current
    st.cache_data.clear()


@pytest.fixture
def launcher() -> Iterator[RecordingLauncher]:
    recording = RecordingLauncher()
    with submission.use_launcher(recording):
        yield recording


def fresh_app() -> AppTest:
    return AppTest.from_file(str(APP), default_timeout=60).run()


def sign_in(at: AppTest, password: str = PASSWORD) -> AppTest:
    at.text_input(key="signin_password").input(password)
    return at.button[0].click().run()


def signed_in(page: str | None = None, **query: str) -> AppTest:
    at = sign_in(fresh_app())
    assert not at.exception
    assert [t.value for t in at.title] == ["Products"]
    if page:
        at.query_params.update(query)
        at.switch_page(page).run()
        assert not at.exception, at.exception
    return at


def texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    parts += [t.value for t in at.text]  # names are plain st.text (issue #19)
    parts += [
        e.value for kind in ("success", "info", "warning", "error") for e in getattr(at, kind)
    ]
    # Data is shown with Markdown escapes (ui.md): compare with the characters shown.
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", "\n".join(str(p) for p in parts))


def make_job(product_id: str, status: JobStatus, **fields: Any) -> str:
    with session_scope() as session:
        job, _ = queries.create_job(session=session, product_id=product_id, options=JobOptions())
        job.status = status
        for name, value in fields.items():
            setattr(job, name, value)
        return job.id


@pytest.fixture(scope="module")
def mp4(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A real, tiny H.264 file (what a product's current video is)."""
    folder = tmp_path_factory.mktemp("mp4")
    from catwalk.catalog import draw_product

    start, end = folder / "a.png", folder / "b.png"
    draw_product(DEMO_PRODUCTS[0]).save(start)
    draw_product(DEMO_PRODUCTS[1]).save(end)
    out = folder / "v.mp4"
    render_transition(start, end, out, duration_seconds=1, width=64, style="smooth")
    return out.read_bytes()


def give_video(product_id: str, data: bytes) -> str:
    """Publish a finished job's video on the product, as the publish step does."""
    store = factory.blob_store()
    job_id = make_job(
        product_id, JobStatus.COMPLETED, progress=100, completed_at=utcnow(), started_at=utcnow()
    )
    key, poster = object_key(product_id, job_id, "video"), object_key(product_id, job_id, "poster")
    store.put_bytes(key, data, "video/mp4")
    store.put_bytes(poster, b"\xff\xd8", "image/jpeg")
    with session_scope() as session:
        job = queries.get_job(session=session, job_id=job_id)
        assert job is not None
        job.video_key, job.poster_key = key, poster
        queries.switch_product_video(
            session=session, job=job, video_key=key, poster_key=poster, video_url=store.url(key)
        )
    return job_id


# Sign-in -----------------------------------------------------------------------------------


def test_nothing_is_reachable_before_sign_in(admin: Settings) -> None:
    at = fresh_app()
    assert [t.value for t in at.title] == [":material/movie: catwalk"]
    assert at.text_input(key="signin_password").value == ""
    # The other pages are not even registered: switching to one is refused.
    with pytest.raises(ValueError, match="not a registered page|Could not find"):
        at.switch_page("app_pages/products.py").run()
    assert [b.key for b in at.button if b.key and b.key.startswith("gen_")] == []


def test_wrong_password_is_refused_then_rate_limited(admin: Settings) -> None:
    at = sign_in(fresh_app(), "guess")
    assert [e.value for e in at.error] == ["Wrong password."]
    assert [t.value for t in at.title] == [":material/movie: catwalk"]
    # Straight after a failure even the right password is not checked.
    at = sign_in(at, PASSWORD)
    assert "Too many failed sign-ins" in at.error[0].value
    assert [t.value for t in at.title] == [":material/movie: catwalk"]


@pytest.mark.both_dbs
def test_failures_across_sessions_lock_everyone_out(admin: Settings) -> None:
    for _ in range(auth.GLOBAL_FREE_FAILURES):
        assert [e.value for e in sign_in(fresh_app(), "guess").error] == ["Wrong password."]
    # A brand-new session (a reload, another browser) with the right password waits too.
    at = sign_in(fresh_app(), PASSWORD)
    assert "Too many failed sign-ins" in at.error[0].value
    assert [t.value for t in at.title] == [":material/movie: catwalk"]


def test_right_password_opens_every_page(admin: Settings) -> None:
    at = signed_in()
    for page, title in (
        ("app_pages/jobs.py", "Jobs"),
        ("app_pages/costs.py", "Costs"),
        ("app_pages/job_detail.py", "Job detail"),
        ("app_pages/products.py", "Products"),
    ):
        at.switch_page(page).run()
        assert not at.exception
        assert at.title[0].value == title
    session_id = at.session_state["dashboard_session"]
    assert sessions.admin_of(admin, session_id) == "admin"
    sign_out = next(b for b in at.sidebar.button if b.label == "Sign out")
    sign_out.click().run()
    assert [t.value for t in at.title] == [":material/movie: catwalk"]
    # Revoked where every process (and the cookie's next visit) looks.
    assert sessions.admin_of(admin, session_id) is None


def test_a_session_revoked_elsewhere_ends_here_too(admin: Settings) -> None:
    at = signed_in()
    sessions.revoke(admin, at.session_state["dashboard_session"])
    at.switch_page("app_pages/jobs.py").run()
    assert [t.value for t in at.title] == [":material/movie: catwalk"]


def test_password_hash_from_the_environment(
    admin: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CATWALK_ADMIN_PASSWORD")
    reset_settings(monkeypatch, CATWALK_ADMIN_PASSWORD_HASH=auth.hash_password("hashed secret"))
    assert [e.value for e in sign_in(fresh_app(), PASSWORD).error] == ["Wrong password."]
    at = sign_in(fresh_app(), "hashed secret")
    assert at.title[0].value == "Products"


def test_embedded_mode_makes_a_password_once_and_keeps_only_its_hash(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    st.cache_data.clear()
    password = auth.embedded_password(settings)
    assert password
    stored = auth.generated_hash_path(settings)
    assert password not in stored.read_text()
    assert stored.read_text().startswith("scrypt$")
    assert stored.stat().st_mode & 0o777 == 0o600
    # A restart keeps it (and has nothing to print).
    assert auth.embedded_password(settings) is None
    assert auth.check_password(settings, password)
    at = fresh_app()
    assert "printed by `catwalk dashboard`" in texts(at)
    assert sign_in(at, password).title[0].value == "Products"
    new = auth.embedded_password(settings, reset=True)
    assert new and new != password
    assert auth.check_password(settings, new)
    assert not auth.check_password(settings, password)
    assert list(stored.parent.glob("*.tmp")) == []


def _start_dashboard(monkeypatch: pytest.MonkeyPatch, *args: str) -> Any:
    """``catwalk dashboard`` up to the point where it becomes Streamlit (exec is the edge)."""
    from typer.testing import CliRunner

    from catwalk.cli import dashboard_cmd
    from catwalk.cli.app import app

    execs: list[list[str]] = []
    monkeypatch.setattr(dashboard_cmd.os, "execve", lambda _exe, cmd, _env: execs.append(cmd))
    result = CliRunner().invoke(app, ["dashboard", *args])
    assert result.exception is not None or execs, result.output
    return result


def _printed_password(output: str) -> str | None:
    found = re.search(r"admin password \(new.*\): (\S+)", output)
    return found.group(1) if found else None


def test_catwalk_dashboard_prints_the_embedded_password_only_when_it_makes_one(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _printed_password(_start_dashboard(monkeypatch).output)
    assert first and auth.check_password(settings, first)
    again = _start_dashboard(monkeypatch).output
    assert _printed_password(again) is None
    assert first not in again
    assert "--reset-password" in again
    assert auth.check_password(settings, first)

    signed_in_before = sessions.start(settings, "admin")
    reset = _printed_password(_start_dashboard(monkeypatch, "--reset-password").output)
    assert reset and reset != first
    assert auth.check_password(settings, reset) and not auth.check_password(settings, first)
    # The old password's sign-ins end with it.
    assert sessions.admin_of(settings, signed_in_before.session_id) is None
    assert _printed_password(_start_dashboard(monkeypatch).output) is None


def test_a_short_session_secret_stops_the_dashboard_before_it_starts(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    reset_settings(
        monkeypatch, CATWALK_ADMIN_PASSWORD=PASSWORD, DASHBOARD_SESSION_SECRET="tiny-k3y"
    )
    result = _start_dashboard(monkeypatch)
    assert "DASHBOARD_SESSION_SECRET needs 32+ characters" in str(result.exception)
    # The secret itself is never shown.
    assert "tiny-k3y" not in result.output + str(result.exception)


def test_reset_password_refuses_a_configured_password(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    reset_settings(monkeypatch, CATWALK_ADMIN_PASSWORD=PASSWORD)
    result = _start_dashboard(monkeypatch, "--reset-password")
    assert "CATWALK_ADMIN_PASSWORD" in str(result.exception)
    assert not auth.generated_hash_path(settings).exists()


def test_without_any_credential_nobody_gets_in(settings: Settings) -> None:
    st.cache_data.clear()
    at = fresh_app()
    assert "Sign-in is not configured" in at.error[0].value
    assert [w.key for w in at.text_input] == []


SSO_SECRETS = {
    "auth": {
        "redirect_uri": "http://localhost:8501/oauth2callback",
        "cookie_secret": "a-long-random-cookie-secret",
        "client_id": "catwalk",
        "client_secret": "sso-client-secret",
        "server_metadata_url": "https://id.example/.well-known/openid-configuration",
    }
}


def sso_app(user: dict[str, Any]) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.secrets.update(SSO_SECRETS)
    at.user = user
    return at.run()


def test_single_sign_on_admits_only_listed_admins(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    reset_settings(monkeypatch, CATWALK_ADMIN_EMAILS="Boss@Shop.com, ops@shop.com")
    st.cache_data.clear()
    signed_out = sso_app({"is_logged_in": False})
    assert [b.label for b in signed_out.button] == ["Sign in with single sign-on"]
    assert [w.key for w in signed_out.text_input] == []  # no password configured: SSO only
    outsider = sso_app({"is_logged_in": True, "email": "someone@gmail.com"})
    assert outsider.error[0].value == "someone@gmail.com is signed in but is not a catwalk admin."
    assert [t.value for t in outsider.title] == [":material/movie: catwalk"]
    boss = sso_app({"is_logged_in": True, "email": "boss@shop.com"})
    assert [t.value for t in boss.title] == ["Products"]
    assert "Signed in as **boss@shop.com**" in [c.value for c in boss.sidebar.caption]


# Products ----------------------------------------------------------------------------------


def test_products_show_photo_and_playable_video(admin: Settings, mp4: bytes) -> None:
    give_video("demo-tee", mp4)
    at = signed_in()
    assert {c.key for c in at.checkbox} == {f"sel_{p.id}" for p in DEMO_PRODUCTS}
    assert len(at.get("image")) == len(DEMO_PRODUCTS)  # each product's photo
    videos = at.get("video")
    assert len(videos) == 1
    # Signed links to the dashboard's own route, never Streamlit's open /media endpoint.
    assert videos[0].proto.url.startswith("http://localhost/catwalk-media/store/")
    assert "&sig=" in videos[0].proto.url
    assert all("/catwalk-media/photo/" in i.proto.imgs[0].url for i in at.get("image"))


def test_generate_one_answers_with_the_job_and_never_starts_a_second(
    admin: Settings, launcher: RecordingLauncher
) -> None:
    at = signed_in()
    at.selectbox(key="opt_demo-dress_model").select("male")
    at.selectbox(key="opt_demo-dress_style").select("dynamic")
    at.button(key="gen_demo-dress").click().run()
    assert len(launcher.launches) == 1
    job_id = launcher.launches[0]["job_id"]
    assert launcher.launches[0]["options"] == {"modelType": "male", "videoStyle": "dynamic"}
    assert f"Started job {job_id[:8]} for demo-dress." in [s.value for s in at.success]
    at.button(key="gen_demo-dress").click().run()
    assert len(launcher.launches) == 1
    assert f"demo-dress: a video is already in progress (job {job_id[:8]})." in [
        i.value for i in at.info
    ]
    # The card now shows the job in flight.
    assert len(at.get("progress")) == 1


def test_generate_for_many_selected_products(admin: Settings, launcher: RecordingLauncher) -> None:
    at = signed_in()
    assert at.button(key="generate_selected").disabled
    for product_id in ("demo-tee", "demo-jacket", "demo-hoodie"):
        at.checkbox(key=f"sel_{product_id}").check()
    at.run()
    assert at.button(key="generate_selected").label == "Generate 3 video(s)"
    at.selectbox(key="batch_style").select("dynamic")
    at.button(key="generate_selected").click().run()
    assert sorted(x["product_id"] for x in launcher.launches) == [
        "demo-hoodie",
        "demo-jacket",
        "demo-tee",
    ]
    assert all(x["options"]["videoStyle"] == "dynamic" for x in launcher.launches)
    assert "Started 3 video job(s)" in at.success[0].value
    # The selection is cleared once the batch is submitted.
    assert not any(c.value for c in at.checkbox)


def test_batch_stops_at_the_daily_limit_and_says_so(
    admin: Settings, monkeypatch: pytest.MonkeyPatch, launcher: RecordingLauncher
) -> None:
    reset_settings(monkeypatch, DAILY_GENERATION_LIMIT="2")
    at = signed_in()
    for product in DEMO_PRODUCTS:
        at.checkbox(key=f"sel_{product.id}").check()
    at.run()
    at.button(key="generate_selected").click().run()
    assert len(launcher.launches) == 2
    warning = at.warning[0].value
    assert warning.startswith("daily limit of 2 videos reached; ")
    assert warning.endswith("(2 product(s) not started)")
    assert "Started 2 video job(s)" in at.success[0].value
    assert {m.label: m.value for m in at.sidebar.metric}["Videos"] == "2/2"


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("All", {"demo-tee", "demo-dress", "demo-jacket", "demo-hoodie"}),
        ("Has video", {"demo-tee"}),
        ("No video", {"demo-dress", "demo-jacket", "demo-hoodie"}),
        ("Failed", {"demo-dress"}),
        ("In progress", {"demo-jacket"}),
    ],
)
def test_product_filters(admin: Settings, mp4: bytes, choice: str, expected: set[str]) -> None:
    give_video("demo-tee", mp4)
    make_job("demo-dress", JobStatus.FAILED, error_message="video: refused", completed_at=utcnow())
    make_job("demo-jacket", JobStatus.GENERATING_VIDEO, progress=50, started_at=utcnow())
    at = signed_in()
    at.segmented_control(key="product_filter").set_value(choice).run()
    assert {c.key.removeprefix("sel_") for c in at.checkbox} == expected
    if choice == "Failed":
        assert "Last try failed: video: refused" in texts(at)


def test_product_search(admin: Settings) -> None:
    at = signed_in()
    at.text_input(key="q").input("HOOD").run()
    assert [c.key for c in at.checkbox] == ["sel_demo-hoodie"]
    at.text_input(key="q").input("no such thing").run()
    assert at.checkbox.len == 0
    assert "No product matches" in at.info[0].value


def test_a_search_link_keeps_its_query_through_sign_in(admin: Settings) -> None:
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.query_params["q"] = "HOOD"
    at = sign_in(at.run())
    assert [t.value for t in at.title] == ["Products"]
    assert at.text_input(key="q").value == "HOOD"
    assert [c.key for c in at.checkbox] == ["sel_demo-hoodie"]


def test_products_are_paged(admin: Settings) -> None:
    photo = seed_photo()
    with session_scope() as session:
        for n in range(26):  # 30 products with the demo ones: pages of 12, 12 and 6
            queries.upsert_product(
                session=session, product_id=f"extra-{n:02d}", name=f"Extra {n:02d}", images=[photo]
            )
    at = signed_in()
    assert at.checkbox.len == 12
    at.number_input(key="product_page").set_value(3).run()
    assert at.checkbox.len == 6
    # A search with fewer matches brings the page back in range instead of showing nothing.
    at.text_input(key="q").input("extra 0").run()
    assert sorted(c.key for c in at.checkbox) == [f"sel_extra-{n:02d}" for n in range(10)]


# Jobs --------------------------------------------------------------------------------------


def test_jobs_page_shows_live_status(admin: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    reset_settings(monkeypatch, CATWALK_PREFECT_UI_URL="http://prefect.example/")
    queued = make_job(
        "demo-dress",
        JobStatus.GENERATING_VIDEO,
        progress=50,
        requested_at=utcnow() - dt.timedelta(seconds=30),
        started_at=utcnow() - dt.timedelta(seconds=30),
        wait_reason="queued at provider (position 3)",
        flow_run_id="run-123",
    )
    make_job("demo-tee", JobStatus.PENDING)
    make_job(
        "demo-jacket", JobStatus.FAILED, error_message="keyframes: refused", completed_at=utcnow()
    )
    at = signed_in("app_pages/jobs.py")
    bars = at.get("progress")
    assert [b.proto.value for b in bars] == [0, 50]  # newest first: the PENDING one
    labels = [b.proto.text for b in bars]
    assert "50% · queued at provider (position 3)" in labels
    assert "0% · starting" in labels  # embedded: its process is starting, no slot is involved
    # 30 s after the click, with no finished job to learn from: the usual 150 s minus 30 s
    # (less the time the test took to sign in), not the 50 % pace's 30 s.
    remaining = re.search(r"hourglass_bottom: ~1m (\d+)s left", texts(at))
    assert remaining is not None and 45 <= int(remaining.group(1)) <= 60, texts(at)
    metrics = {m.label: m.value for m in at.metric}
    assert (
        metrics["Waiting"] == "1" and metrics["Rendering"] == "1" and metrics["Failed today"] == "1"
    )
    links = [b.proto.url for b in at.get("link_button")]
    assert links == ["http://prefect.example/runs/flow-run/run-123"]
    table = at.dataframe[0].value
    assert set(table["job"]) >= {queued[:8]}
    assert "keyframes: refused" in set(table["error"])


def test_jobs_page_filters_by_status(admin: Settings) -> None:
    make_job("demo-tee", JobStatus.PENDING)
    failed = make_job("demo-jacket", JobStatus.FAILED, completed_at=utcnow())
    at = signed_in("app_pages/jobs.py")
    at.multiselect(key="job_status_filter").select("FAILED").run()
    assert list(at.dataframe[0].value["job"]) == [failed[:8]]


def test_cancel_from_the_jobs_page(admin: Settings) -> None:
    job_id = make_job("demo-tee", JobStatus.PENDING)
    at = signed_in("app_pages/jobs.py")
    at.button(key=f"cancel_{job_id}").click().run()
    assert f"Job {job_id[:8]} cancelled." in [i.value for i in at.info]
    with session_scope() as session:
        job = queries.get_job(session=session, job_id=job_id)
        assert job is not None and job.status is JobStatus.CANCELLED
    assert at.subheader[0].value == "In progress (0)"


# Job detail --------------------------------------------------------------------------------


def test_job_detail_shows_keyframes_video_timeline_and_costs(admin: Settings, mp4: bytes) -> None:
    job_id = give_video("demo-tee", mp4)
    store = factory.blob_store()
    with session_scope() as session:
        job = queries.get_job(session=session, job_id=job_id)
        assert job is not None
        keys = {}
        for pose in ("start", "end"):
            keys[pose] = object_key("demo-tee", job_id, f"keyframe-{pose}")
            store.put_bytes(keys[pose], Path(seed_photo()).read_bytes(), "image/jpeg")
        job.image_keys = keys
        job.image_provider, job.video_provider = "offline", "fal"
        for attempt, ok in ((1, False), (2, True)):
            session.add(
                LedgerEntry(
                    job_id=job_id,
                    service="pika",
                    provider="fal",
                    operation="animate",
                    model="pikaframes",
                    units=Decimal(5),
                    unit="second",
                    unit_price=Decimal("0.04"),
                    amount=Decimal("0.2"),
                    attempt=attempt,
                    succeeded=ok,
                    note=None if ok else "provider said 503",
                )
            )
        queries.record_event(
            session=session,
            job_id=job_id,
            step="video",
            kind="failed",
            attempt=1,
            message="provider said 503",
        )
        session.flush()
        queries.refresh_job_costs(session=session, job_id=job_id)
    at = signed_in("app_pages/job_detail.py", job=job_id)
    assert at.title[0].value == "Coral crew-neck tee"
    assert len(at.get("image")) == 2
    assert len(at.get("video")) == 1
    timeline, charges = at.dataframe[0].value, at.dataframe[1].value
    assert "provider said 503" in set(timeline["message"])
    assert list(charges["attempt"]) == [1, 2] and list(charges["ok"]) == [False, True]
    assert {m.label: m.value for m in at.metric}["Cost"] == "$0.4000"
    # Keyframes drawn offline are labelled as a preview; the real video is not.
    preview = (
        "Offline preview: the keyframes were made on this machine without the AI providers "
        "(set IMAGE_PROVIDER=nano-banana and VIDEO_PROVIDER=pika for real ones)."
    )
    assert [i.value for i in at.info if "Offline preview" in i.value] == [preview]


def test_job_detail_takes_the_short_id_it_shows(admin: Settings) -> None:
    job_id = make_job("demo-tee", JobStatus.FAILED, error="video: refused")
    at = signed_in("app_pages/job_detail.py", job=job_id[:8].upper())
    assert at.title[0].value == "Coral crew-neck tee"
    assert f"Job {job_id[:8]} · product demo-tee" in texts(at)
    assert job_id not in texts(at)
    at.query_params["job"] = job_id[:4]
    at.run()
    assert "is too short: give at least 6 characters" in at.error[0].value
    at.query_params["job"] = "f" * 32 if not job_id.startswith("f") else "0" * 32
    at.run()
    assert "unknown job" in at.error[0].value


def seed_photo() -> str:
    with session_scope() as session:
        product = session.get(Product, "demo-tee")
        assert product is not None
        return product.images[0]


@pytest.fixture
def priced(admin: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Settings:
    """Offline providers at made-up prices, so an estimate has something to add up."""
    prices = tmp_path / "prices.toml"
    prices.write_text(
        '[[price]]\nprovider = "offline"\nmodel = "*"\nunit = "image"\nunit_price = "0.05"\nprice_date = "2026-01-01"\n'
        '[[price]]\nprovider = "offline"\nmodel = "*"\nresolution = "720p"\nunit = "second"\n'
        'unit_price = "0.04"\nprice_date = "2026-01-01"\n'
    )
    return reset_settings(monkeypatch, CATWALK_PRICES_FILE=str(prices))


def test_retry_shows_the_extra_cost_first_then_restarts_the_job(
    priced: Settings, launcher: RecordingLauncher
) -> None:
    # Failed after one keyframe: a retry makes one keyframe and the video (2 s at 720p).
    job_id = make_job(
        "demo-hoodie",
        JobStatus.FAILED,
        error_message="keyframe end: refused",
        completed_at=utcnow(),
        image_keys={"start": "demo-hoodie/x/keyframe-start.png"},
        progress=25,
    )
    at = signed_in("app_pages/job_detail.py", job=job_id)
    assert at.button(key="retry_job").label == "Retry for $0.130"
    assert "Makes 1 keyframe(s), the video; reuses 1 stored keyframe(s)." in texts(at)
    assert launcher.launches == []
    at.button(key="retry_job").click().run()
    assert launcher.launches == [
        {
            "job_id": job_id,
            "product_id": "demo-hoodie",
            "options": JobOptions().to_dict(),
            "run_key": f"job-{job_id}-retry-1",
        }
    ]
    with session_scope() as session:
        job = queries.get_job(session=session, job_id=job_id)
        assert job is not None
        assert (job.status, job.progress, job.error_message) == (JobStatus.PENDING, 0, None)
        assert job.image_keys == {"start": "demo-hoodie/x/keyframe-start.png"}
    assert at.button(key="cancel_job")  # a running job offers cancel instead of retry
    assert "retry_job" not in [b.key for b in at.button]


def test_refused_keyframes_explain_themselves_and_offer_new_keyframes_not_a_retry(
    priced: Settings, launcher: RecordingLauncher
) -> None:
    raw = "video: content_policy_violation (image_urls: ... [model_moderated])"
    job_id = make_job(
        "demo-hoodie",
        JobStatus.FAILED,
        error_message=raw,
        failure_kind="keyframes_refused",
        completed_at=utcnow(),
        image_keys={"start": "demo-hoodie/x/keyframe-start.png", "end": "demo-hoodie/x/e.png"},
        progress=60,
    )
    at = signed_in("app_pages/job_detail.py", job=job_id)
    shown = [e.value for e in at.error]
    assert any("The video model refused these keyframes" in v for v in shown), shown
    assert all("[model_moderated]" not in v for v in shown)  # the raw text only under details
    assert raw in [t.value for t in at.text]
    keys = [b.key for b in at.button]
    assert "retry_job" not in keys  # the same frames would be refused again in a second
    # Two keyframes (2 x $0.05) and the video (2 s at $0.04), as the price list says.
    assert at.button(key="new_keyframes").label == "New keyframes for $0.180"
    at.button(key="new_keyframes").click().run()
    assert [c["job_id"] for c in launcher.launches] == [job_id]
    with session_scope() as session:
        job = queries.get_job(session=session, job_id=job_id)
        assert job is not None and job.status is JobStatus.PENDING and job.image_keys == {}


def test_start_over_makes_a_new_job_and_shows_it(
    admin: Settings, launcher: RecordingLauncher
) -> None:
    job_id = make_job(
        "demo-tee",
        JobStatus.FAILED,
        error_message="keyframe start: IMAGE_SAFETY",
        failure_kind="photo_refused",
        completed_at=utcnow(),
    )
    at = signed_in("app_pages/job_detail.py", job=job_id)
    assert [b.key for b in at.button if b.key in ("retry_job", "new_keyframes", "start_over")] == [
        "start_over"
    ]
    at.button(key="start_over").click().run()
    assert len(launcher.launches) == 1
    new_id = launcher.launches[0]["job_id"]
    assert new_id != job_id and launcher.launches[0]["product_id"] == "demo-tee"
    assert at.query_params["job"] == new_id  # the page now shows the new job


def test_elapsed_counts_from_the_click_and_a_retry_counts_its_own(
    admin: Settings, launcher: RecordingLauncher
) -> None:
    from catwalk.dashboards import data

    now = utcnow()
    job_id = make_job(
        "demo-tee",
        JobStatus.GENERATING_IMAGES,
        requested_at=now - dt.timedelta(seconds=100),
        started_at=now - dt.timedelta(seconds=10),  # the process took 90 s to start
    )
    row = next(r for r in data.jobs(limit=10) if r.id == job_id)
    assert 100 <= row.elapsed_seconds < 130  # not 10: the timer never jumps back
    with session_scope() as session:
        job = queries.get_job(session=session, job_id=job_id)
        assert job is not None
        job.status, job.completed_at = JobStatus.FAILED, now - dt.timedelta(seconds=50)
    submission.retry_job(job_id, settings=admin)
    data.clear()
    again = next(r for r in data.jobs(limit=10) if r.id == job_id)
    assert again.elapsed_seconds < 30  # the retry's own time, from its click


def test_cancel_from_job_detail(admin: Settings) -> None:
    job_id = make_job("demo-tee", JobStatus.GENERATING_IMAGES, started_at=utcnow(), progress=5)
    at = signed_in("app_pages/job_detail.py", job=job_id)
    # Behind a confirmation: the page shows only the popover until it is opened.
    assert [p.proto.popover.label for p in at.get("popover")] == ["Cancel job"]
    assert at.button(key="cancel_job").label == "Yes, cancel it"
    at.button(key="cancel_job").click().run()
    assert "asked to stop" in at.info[0].value
    assert at.button(key="cancel_job").disabled
    with session_scope() as session:
        job = queries.get_job(session=session, job_id=job_id)
        assert (
            job is not None and job.cancel_requested and job.status is JobStatus.GENERATING_IMAGES
        )


# Costs -------------------------------------------------------------------------------------


@pytest.mark.both_dbs
def test_costs_page_charts_limits_and_alerts(
    admin: Settings, monkeypatch: pytest.MonkeyPatch, mp4: bytes
) -> None:
    reset_settings(
        monkeypatch, LIMITS_TIMEZONE="Europe/Berlin", DAILY_GENERATION_LIMIT="10", DAILY_BUDGET="5"
    )
    job_id = give_video("demo-tee", mp4)
    now = utcnow()
    with session_scope() as session:
        for when, service, model, amount in (
            (now, "nano_banana", "gemini-2.5-flash-image", "0.039"),
            (now, "pika", "fal-ai/pika/v2.2/pikaframes", "0.2"),
            (now - dt.timedelta(days=3), "pika", "fal-ai/pika/v2.2/pikaframes", "0.2"),
        ):
            session.add(
                LedgerEntry(
                    job_id=job_id,
                    service=service,
                    provider="x",
                    operation="op",
                    model=model,
                    units=Decimal(1),
                    unit="u",
                    unit_price=Decimal(amount),
                    amount=Decimal(amount),
                    created_at=when,
                )
            )
        session.flush()
        stats.rebuild_hourly_rollup(session=session)  # rows added by hand, not by record_usage
        session.add(
            Alert(kind="daily_cost", dedupe_key="daily:today", message="Spend passed $0.10 today")
        )
    # A submission reserves one of today's generations.
    submission.submit_job("demo-dress", {}, launcher=RecordingLauncher())
    at = signed_in("app_pages/costs.py")
    assert "Europe/Berlin" in texts(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Spent today"] == "$0.24"
    assert metrics["Videos started today"] == "1 / 10"
    assert metrics["Per delivered video"] == "$0.439"
    charts = at.get("arrow_vega_lite_chart") or at.get("vega_lite_chart")
    assert len(charts) == 2  # by day, by service
    by_model = at.dataframe[0].value
    assert set(by_model["model"]) == {"gemini-2.5-flash-image", "fal-ai/pika/v2.2/pikaframes"}
    [alert_id] = [
        b.key.removeprefix("ack_") for b in at.button if b.key and b.key.startswith("ack_")
    ]
    at.button(key=f"ack_{alert_id}").click().run()
    assert "Alert acknowledged." in [s.value for s in at.success]
    assert not [b for b in at.button if b.key and b.key.startswith("ack_")]
    with session_scope() as session:
        alert = session.get(Alert, alert_id)
        assert alert is not None and alert.acknowledged_at is not None


@pytest.mark.both_dbs
def test_cost_by_day_uses_the_limits_time_zone(
    admin: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    reset_settings(monkeypatch, LIMITS_TIMEZONE="Pacific/Auckland")
    from catwalk.dashboards import data

    # 11:30 UTC is already tomorrow in Auckland (UTC+12/13).
    today_utc = dt.datetime.now(dt.UTC).replace(
        hour=11, minute=30, second=0, microsecond=0
    ) - dt.timedelta(days=1)
    with session_scope() as session:
        session.add(
            LedgerEntry(
                service="pika",
                provider="x",
                operation="op",
                model="m",
                units=Decimal(1),
                unit="u",
                unit_price=Decimal(1),
                amount=Decimal(1),
                created_at=today_utc,
            )
        )
        session.flush()
        stats.rebuild_hourly_rollup(session=session)
    frame = data.cost_by_day(7)
    local_day = today_utc.astimezone(data.zone()).date()
    assert frame.loc[str(local_day), "pika"] == 1.0
    assert frame["pika"].sum() == 1.0
    assert len(frame) == 7


def test_the_estimate_comes_from_how_long_jobs_took_here_and_only_falls(admin: Settings) -> None:
    from catwalk.dashboards import data

    now = utcnow()
    for took in (40, 60, 80):  # a median of 60 s from click to done
        make_job(
            "demo-dress",
            JobStatus.COMPLETED,
            requested_at=now - dt.timedelta(seconds=took + 600),
            completed_at=now - dt.timedelta(seconds=600),
        )
    queries._typical.clear()  # the per-process minute cache
    job_id = make_job(
        "demo-tee",
        JobStatus.GENERATING_VIDEO,
        progress=60,
        requested_at=now - dt.timedelta(seconds=20),
    )
    row = next(r for r in data.jobs(limit=10) if r.id == job_id)
    assert row.typical_seconds == 60 and 35 <= (row.remaining_seconds or 0) <= 40
    assert not row.longer_than_usual
    # Rendering for a long time at the same 60 %: the guess went down, never up...
    with session_scope() as session:
        job = queries.get_job(session=session, job_id=job_id)
        assert job is not None
        later = queries.estimate_remaining_seconds(job, typical_seconds=60)
        assert later is not None and later <= (row.remaining_seconds or 0)
        job.requested_at = now - dt.timedelta(seconds=90)
    data.clear()
    # ...until the job is past the usual length: then the page says so.
    at = signed_in("app_pages/jobs.py")
    assert "longer than usual (usually 1m 00s)" in texts(at)
