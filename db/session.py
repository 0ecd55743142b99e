"""Engines and sessions, created once per database URL from settings.

``session_scope()`` is the only way code gets a Session; it commits on success and rolls
back on error. ``migrate()`` brings a database to the newest schema (Alembic), and is run
once per process the first time an engine is made for a URL, so embedded mode needs no setup.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from catwalk.config import Settings, get_settings
from catwalk.errors import DatabaseUnavailable, is_db_outage

logger = logging.getLogger(__name__)
_T = TypeVar("_T")

if TYPE_CHECKING:
    from alembic.config import Config

_MIGRATIONS = Path(str(resources.files("catwalk.db.migrations")))
_engines: dict[str, Engine] = {}
_factories: dict[str, sessionmaker[Session]] = {}
_lock = threading.Lock()


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    # WAL lets the dashboard read while a worker writes; busy_timeout makes concurrent
    # writers (jobs in several processes) wait for the lock instead of failing at once.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def alembic_config(url: str) -> Config:
    # Alembic is imported here, not at the top: it costs ~0.3 CPU-s, and only migrating needs it.
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def migrate(url: str) -> None:
    """Upgrade the database at ``url`` to the newest schema."""
    from alembic import command

    command.upgrade(alembic_config(url), "head")


_REVISION = re.compile(r"^revision\b[^=]*=\s*[\"']([^\"']+)[\"']", re.MULTILINE)
_DOWN_REVISION = re.compile(r"^down_revision\b[^=]*=(.*)$", re.MULTILINE)


def script_heads() -> frozenset[str] | None:
    """The head revision(s) of the migration scripts, read from their text, or None if unsure.

    Alembic itself would say the same, but importing it and loading its scripts costs about
    0.3-0.5 CPU-s, which every flow run (one process each) would pay to learn there is
    nothing to do. Any file this cannot read plainly makes it answer None: migrate then.
    """
    revisions: set[str] = set()
    parents: set[str] = set()
    for script in sorted((_MIGRATIONS / "versions").glob("*.py")):
        if script.name == "__init__.py":
            continue
        source = script.read_text(encoding="utf-8")
        revision, down = _REVISION.search(source), _DOWN_REVISION.search(source)
        if revision is None or down is None:
            return None
        revisions.add(revision.group(1))
        parents.update(re.findall(r"[\"']([^\"']+)[\"']", down.group(1)))
    heads = revisions - parents
    return frozenset(heads) if heads and parents <= revisions else None


def _at_head(engine: Engine) -> bool:
    heads = script_heads()
    if heads is None:
        return False
    try:
        with engine.connect() as conn:
            stamped = {
                row[0] for row in conn.execute(text("SELECT version_num FROM alembic_version"))
            }
    except SQLAlchemyError:
        return False  # no version table yet: a new database
    return stamped == heads


def get_engine(settings: Settings | None = None) -> Engine:
    """The engine for the configured database, migrated on first use in this process.

    A database already at the newest revision (the usual case: every flow run, every
    command) is only checked, with one query; Alembic runs only when there is work.
    """
    settings = settings or get_settings()
    url = settings.effective_database_url
    with _lock:
        engine = _engines.get(url)
        if engine is not None:
            return engine
        if url.startswith("sqlite"):
            settings.catwalk_home.mkdir(parents=True, exist_ok=True)
            engine = create_engine(url, connect_args={"timeout": 30})
            event.listen(engine, "connect", _sqlite_pragmas)
        else:
            # pre_ping: a connection the server dropped (restart, admin shutdown) is replaced
            # at checkout instead of failing the next query; connect_timeout keeps a
            # blackholed host from hanging a front door.
            engine = create_engine(
                url,
                pool_pre_ping=True,
                pool_size=10,
                max_overflow=20,
                connect_args={"connect_timeout": 10},
            )
        if not _at_head(engine):
            migrate(url)
        _engines[url] = engine
        _factories[url] = sessionmaker(engine, expire_on_commit=False)
        return engine


@contextmanager
def session_scope(settings: Settings | None = None) -> Iterator[Session]:
    """A transaction: commit if the block succeeds, roll back if it raises."""
    settings = settings or get_settings()
    get_engine(settings)
    session = _factories[settings.effective_database_url]()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def db_location(url: str) -> str:
    """Where the database is, for messages: ``host:port`` (never the user or password)."""
    try:
        parsed = make_url(url)
    except Exception:  # noqa: BLE001 - an unparsable URL still gets a safe name
        return "the configured address"
    if parsed.drivername.startswith("sqlite"):
        return parsed.database or "memory"
    return f"{parsed.host or 'localhost'}:{parsed.port or 5432}"


def unreachable(exc: BaseException, settings: Settings | None = None) -> DatabaseUnavailable:
    """The one-line error a front door shows while the database is down."""
    settings = settings or get_settings()
    orig = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(orig).splitlines() if line.strip()]
    # libpq's first line repeats the address; its last clause says what happened.
    why = (lines[0] if lines else type(orig).__name__).rsplit(" failed: ", 1)[-1]
    where = db_location(settings.effective_database_url)
    return DatabaseUnavailable(
        f"the database at {where} is unreachable ({why[:160]}); nothing was recorded"
    )


def retry_db(
    fn: Callable[[], _T],
    *,
    settings: Settings | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> _T:
    """Run ``fn``, waiting out a database outage for up to ``DB_OUTAGE_SECONDS``.

    Only connection-level failures are retried (``errors.is_db_outage``), with backoff from
    0.25 s up to 5 s between tries; ``fn`` must be a whole transaction (``session_scope``
    inside it), so a retry repeats it from the start. Past the budget the last error is
    raised as ``DatabaseUnavailable``.
    """
    settings = settings or get_settings()
    budget = settings.db_outage_seconds
    give_up = time.monotonic() + budget
    pause = 0.25
    while True:
        try:
            return fn()
        except Exception as exc:
            if not is_db_outage(exc):
                raise
            left = give_up - time.monotonic()
            if left <= 0:
                raise unreachable(exc, settings) from exc
            logger.warning(
                "database unreachable (%s); retrying for up to %.0f s more",
                type(exc).__name__,
                left,
            )
            sleep(min(pause, left))
            pause = min(pause * 2, 5.0)


def dispose_engines() -> None:
    """Close every pooled connection (tests dropping databases, forked processes)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
        _factories.clear()
