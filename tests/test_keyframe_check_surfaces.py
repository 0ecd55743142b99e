"""The keyframe check's verdicts where admins and other systems read them: the HTTP API's job
resource (a ``quality`` object), ``catwalk status`` and the dashboard's job detail."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import streamlit as st
from fastapi.testclient import TestClient

from catwalk.api import PREFIX, create_app
from catwalk.cli.demo import seed_demo_catalog
from catwalk.config import Settings
from catwalk.domain import JobStatus
from tests.conftest import reset_settings
from tests.helpers import run_job_inline
from tests.test_dashboard import PASSWORD, signed_in

TOKEN = "surfaces-token-0123456789abcdef"


@pytest.mark.usefixtures("prefect_server")
def test_verdicts_show_in_the_api_the_cli_and_the_dashboard(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    current = reset_settings(
        monkeypatch,
        KEYFRAME_CHECK="enforce",
        OFFLINE_FAIL_STEPS="keyframe-mismatch:1",
        CATWALK_ADMIN_PASSWORD=PASSWORD,
    )
    seed_demo_catalog()
    job = run_job_inline("demo-tee")
    assert job.status is JobStatus.COMPLETED, job.error_message

    with TestClient(create_app(current, token=TOKEN)) as client:
        body = client.get(f"{PREFIX}/{job.id}", headers={"Authorization": f"Bearer {TOKEN}"})
    assert body.status_code == 200
    quality = body.json()["quality"]
    assert quality["mode"] == "enforce" and quality["judge"] == "offline"
    assert quality["verdict"] == "pass" and quality["regenerations"] == 1
    assert [c["verdict"] for c in quality["checks"]] == ["fail", "pass"]
    assert quality["checks"][0]["failedFrames"] == ["end"]
    assert any("garment colour differs" in i for i in quality["checks"][0]["issues"])
    assert quality["regenerationCost"] == 0 and quality["checkCost"] == 0  # offline prices

    status = subprocess.run(
        [sys.executable, "-m", "catwalk.cli", "status", job.id, "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
        check=False,
    )
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["quality"] == quality
    table = subprocess.run(
        [sys.executable, "-m", "catwalk.cli", "status", job.id],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "400"},
        check=False,
    )
    assert "quality.verdict" in table.stdout
    assert any(line.split() == ["quality.regenerations", "1"] for line in table.stdout.splitlines())

    st.cache_data.clear()
    at = signed_in("app_pages/job_detail.py", job=job.id)
    markdown = " ".join(m.value for m in at.markdown)
    assert "Keyframe check" in markdown and "passed" in markdown
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Regenerations"] == "1"
    assert float(metrics["Garment match"]) > 0.85
    assert any("fail (end) → pass" in c.value for c in at.caption)
    st.cache_data.clear()
