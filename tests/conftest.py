"""Shared fixtures: real databases (SQLite and a throwaway PostgreSQL database per run),
a Prefect test server, and per-test catwalk settings.

A test that takes ``settings`` runs on SQLite, and also on PostgreSQL when it is marked
``both_dbs`` (it touches dialect-specific SQL: locking, upserts, migrations, statistics).
``--db sqlite``, ``--db postgresql`` or ``--db sqlite,postgresql`` runs every database test
on exactly those backends instead. PostgreSQL being unreachable is an error, not a skip.

Migrations run once per test run: SQLite tests start from a copy of a migrated template
file; PostgreSQL tests share one migrated database, emptied (TRUNCATE) after each test.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

# Before catwalk or Prefect is imported: fast retries, small frames, short videos, and a
# Prefect home of the test run's own.
os.environ.setdefault("RETRY_DELAY_SECONDS", "0")
os.environ.setdefault("OFFLINE_FRAME_WIDTH", "160")
os.environ.setdefault("VIDEO_DURATION_SECONDS", "2")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
# The fakes and test servers serve photos from 127.0.0.1 and tests keep photos in their
# tmp_path: open both doors here (tests/test_hostile_input.py closes them again).
os.environ.setdefault("ALLOW_PRIVATE_MEDIA_HOSTS", "true")
os.environ.setdefault("MEDIA_IMPORT_ROOTS", f"{tempfile.gettempdir()},{Path.cwd()}")
for _name in ("DATABASE_URL", "CATWALK_HOME", "PREFECT_API_URL"):
    os.environ.pop(_name, None)

import psycopg
import pytest
from catwalk.db.session import dispose_engines, get_engine, migrate
from sqlalchemy import text

from catwalk import config

# Shared fixtures kept in their own modules: moto S3 server (tests/moto_server.py).
pytest_plugins = ["tests.moto_server"]

PG_ADMIN_URL = os.environ.get(
    "CATWALK_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
BACKENDS = ("sqlite", "postgresql")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--db",
        default="auto",
        help="database backends of database tests: auto (SQLite; both for tests marked "
        "both_dbs), or a comma list of sqlite, postgresql for every database test",
    )


def _backends(metafunc: pytest.Metafunc) -> list[str]:
    option = metafunc.config.getoption("--db")
    if option == "auto":
        both = metafunc.definition.get_closest_marker("both_dbs") is not None
        return list(BACKENDS) if both else ["sqlite"]
    chosen = [b.strip() for b in option.split(",") if b.strip()]
    unknown = set(chosen) - set(BACKENDS)
    if unknown or not chosen:
        raise pytest.UsageError(f"unknown --db backend(s): {option!r}")
    return chosen


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "db_backend" in metafunc.fixturenames:
        metafunc.parametrize("db_backend", _backends(metafunc), scope="session")


@pytest.fixture(scope="session")
def pg_empty_database() -> Iterator[str]:
    """A PostgreSQL database of this test run's own, dropped at the end."""
    name = f"catwalk_test_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL is not reachable at {PG_ADMIN_URL} ({exc}); use --db sqlite to skip it"
        )
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    yield f"{base}/{name}"
    dispose_engines()
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_database(pg_empty_database: str) -> str:
    """The run's PostgreSQL database, migrated once."""
    migrate(pg_empty_database)
    return pg_empty_database


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated once per run; each SQLite test starts from a copy of it.

    Running the migrations costs 1-1.5 s per test; copying the file costs about 1 ms.
    """
    path = tmp_path_factory.mktemp("sqlite-template") / "catwalk.db"
    migrate(f"sqlite:///{path}")
    for leftover in ("-wal", "-shm"):
        # Alembic's connection is closed, so SQLite has folded its log into the file.
        assert not path.with_name(path.name + leftover).exists(), "template still has a WAL"
    return path


def _truncate_all(url: str) -> None:
    engine = get_engine(config.Settings(DATABASE_URL=url))
    from catwalk.db.models import Base

    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture
def settings(
    db_backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[config.Settings]:
    """catwalk settings for one test: its own home folder and a clean database."""
    home = tmp_path / "catwalk-home"
    monkeypatch.setenv("CATWALK_HOME", str(home))
    if db_backend == "postgresql":
        url = request.getfixturevalue("pg_database")
        monkeypatch.setenv("DATABASE_URL", url)
    else:
        monkeypatch.delenv("DATABASE_URL", raising=False)
        home.mkdir(parents=True)
        shutil.copyfile(request.getfixturevalue("sqlite_template"), home / "catwalk.db")
    config.get_settings.cache_clear()
    # Injected-fault counters are per process and per spec: start each test with fresh ones,
    # or a "fail twice" spec used by the SQLite run is spent before the PostgreSQL run.
    from catwalk.clients import factory

    factory._fault_plan.cache_clear()
    current = config.get_settings()
    yield current
    config.get_settings.cache_clear()
    if db_backend == "postgresql":
        _truncate_all(current.effective_database_url)


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """A throwaway Prefect API server for tests that run flows."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield


def reset_settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> config.Settings:
    """Change settings mid-test through the environment (as a deployment would)."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    config.get_settings.cache_clear()
    return config.get_settings()
