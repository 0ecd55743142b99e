"""Lean start-up: a flow run imports what its steps need, and no setting at import time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# Heavy packages a flow run on the embedded defaults (SQLite, local files, offline
# providers) must not import before a step needs them.
NOT_AT_IMPORT = ("alembic", "pandas", "boto3", "botocore", "av", "streamlit", "fastapi")


def _python(code: str, cwd: Path | None = None, **env: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_flow_module_imports_no_heavy_package_and_reads_no_setting() -> None:
    # A malformed setting would make any settings read raise: importing must not read one.
    got = _python(
        f"""
        import json, sys
        import catwalk.flows.generate_product_video
        import catwalk.flows.housekeeping, catwalk.flows.generate_missing_videos
        print(json.dumps(sorted(m for m in {NOT_AT_IMPORT!r} if m in sys.modules)))
        """,
        JOB_TIMEOUT_SECONDS="not-a-number",
        TASK_RETRIES="not-a-number",
    )
    assert got == []


def test_settings_are_applied_when_the_flow_is_built() -> None:
    got = _python(
        """
        import json
        from catwalk.flows.generate_product_video import generate_product_video as built
        from catwalk.tasks import animate_keyframes, generate_keyframes, publish_video
        print(json.dumps({
            "timeout": built.timeout_seconds,
            "retries": [t.retries for t in (generate_keyframes, animate_keyframes, publish_video)],
            "delays": generate_keyframes.retry_delay_seconds,
            "name": built.name,
        }))
        """,
        JOB_TIMEOUT_SECONDS="123",
        TASK_RETRIES="2",
        RETRY_DELAY_SECONDS="4",
    )
    assert got == {
        "timeout": 123 + 30,  # the job's limit plus the backstop's grace
        "retries": [2, 2, 2],
        "delays": [4.0, 12.0],
        "name": "generate-product-video",
    }


def test_the_deployment_entrypoint_loads_the_built_flow() -> None:
    # What `prefect deploy` and `python -m prefect.engine` do with prefect.yaml's entrypoint.
    from catwalk.deployments.stack import find_project_dir

    got = _python(
        """
        import json
        from prefect.flows import load_flow_from_entrypoint
        flow = load_flow_from_entrypoint("flows/generate_product_video.py:generate_product_video")
        print(json.dumps({"name": flow.name, "timeout": flow.timeout_seconds}))
        """,
        cwd=find_project_dir(),
        JOB_TIMEOUT_SECONDS="77",
    )
    assert got == {"name": "generate-product-video", "timeout": 77 + 30}


@pytest.mark.parametrize("argv", [["--help"], ["products", "--help"]])
def test_catwalk_help_imports_neither_prefect_nor_the_database(argv: list[str]) -> None:
    got = _python(
        f"""
        import json, sys
        sys.argv = ["catwalk", *{argv!r}]
        from catwalk.cli import main
        try:
            main()
        except SystemExit:
            pass
        heavy = ("prefect", "sqlalchemy", "pandas", "PIL", "alembic", "boto3")
        print(json.dumps(sorted(m for m in heavy if m in sys.modules)))
        """
    )
    assert got == []


@pytest.mark.parametrize(
    "argv", [["jobs"], ["jobs", "--json"], ["alerts"], ["products"], ["status", "abcdef12"]]
)
def test_everyday_commands_import_no_heavy_package(settings, argv: list[str]) -> None:
    """What `catwalk jobs` and friends need is SQLAlchemy and Rich; Prefect, pandas, Alembic
    (the database is at the newest revision) and boto3 are for other commands' work."""
    got = _python(
        f"""
        import contextlib, io, json, sys
        sys.argv = ["catwalk", *{argv!r}]
        from catwalk.cli import main
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            try:
                main()
            except SystemExit:
                pass
        heavy = ("prefect", "pandas", "alembic", "boto3", "botocore", "fastapi", "av")
        print(json.dumps(sorted(m for m in heavy if m in sys.modules)))
        """,
        CATWALK_HOME=str(settings.catwalk_home),
    )
    assert got == []
