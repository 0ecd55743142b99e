"""Front-door configuration checks: a submission that could never run is refused with one
line and records nothing (no job, no used generation, no alert)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from catwalk.db import alerts, queries, session_scope

from catwalk import config
from catwalk.catalog import write_demo_photos
from catwalk.errors import ConfigError
from catwalk.submission import submit_job
from tests.conftest import reset_settings


def _product(tmp_path: Path) -> None:
    photos = write_demo_photos(tmp_path / "photos")
    with session_scope() as session:
        queries.upsert_product(
            session=session, product_id="tee", name="Tee", images=[str(photos["demo-tee"])]
        )


def _nothing_recorded() -> None:
    with session_scope() as session:
        assert not queries.list_jobs(session=session)
        assert not alerts.unacknowledged_alerts(session=session)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"IMAGE_PROVIDER": "nano-banana"}, "IMAGE_PROVIDER=nano-banana needs NANO_BANANA_API_KEY"),
        ({"VIDEO_PROVIDER": "pika"}, "PIKA"),
        ({"STORAGE_BACKEND": "s3"}, "STORAGE_BACKEND=s3 needs S3_BUCKET"),
    ],
)
def test_a_submission_that_cannot_run_is_refused_and_not_recorded(
    settings: config.Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str],
    message: str,
) -> None:
    _product(tmp_path)
    for name in ("NANO_BANANA_API_KEY", "PIKA_LABS_API_KEY", "FAL_KEY", "S3_BUCKET"):
        monkeypatch.delenv(name, raising=False)
    broken = reset_settings(monkeypatch, **env)
    with pytest.raises(ConfigError, match=message):
        submit_job("tee", {}, settings=broken)
    _nothing_recorded()


def test_the_cli_says_it_in_one_line(settings: config.Settings, tmp_path: Path) -> None:
    _product(tmp_path)
    for env, expected in (
        (
            {"IMAGE_PROVIDER": "nano-banana"},
            (
                "error: IMAGE_PROVIDER=nano-banana needs NANO_BANANA_API_KEY (a Gemini API key); "
                "set it, or use IMAGE_PROVIDER=offline"
            ),
        ),
        (
            {"IMAGE_PROVIDER": "dall-e"},
            (
                "error: invalid setting IMAGE_PROVIDER: Input should be 'offline' or 'nano-banana' "
                "(got 'dall-e')"
            ),
        ),
    ):
        clean = {k: v for k, v in os.environ.items() if k != "NANO_BANANA_API_KEY"}
        done = subprocess.run(
            [sys.executable, "-m", "catwalk.cli", "generate", "tee"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env={**clean, **env},
        )
        assert done.returncode == 1 and done.stderr.strip() == expected, done.stderr
    _nothing_recorded()
