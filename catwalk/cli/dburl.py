"""One line for every DATABASE_URL problem the CLI meets, instead of a 100-line traceback.

Only what the URL says is shown (driver, host, port, database), never its password.
"""

from __future__ import annotations

SUPPORTED = ("sqlite", "postgresql", "postgres")


def _where(url: object) -> str:
    host = getattr(url, "host", None) or "localhost"
    port = getattr(url, "port", None) or 5432
    return f"{host}:{port}"


def describe_database_problem(exc: BaseException, raw_url: str | None) -> str | None:
    """The one-line message for ``exc`` if it is a database URL / connection problem."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError

    if raw_url is None:
        if isinstance(exc, OperationalError):
            return f"the embedded SQLite database cannot be used: {exc.orig or exc}".splitlines()[0]
        return None
    try:
        url = make_url(raw_url)
    except ArgumentError:
        return "DATABASE_URL is not a database URL: use postgresql://user@host:5432/dbname"
    backend = url.get_backend_name()
    if backend not in SUPPORTED:
        return (
            f"DATABASE_URL uses {backend}, which catwalk does not support: use "
            "postgresql://user@host:5432/dbname, or leave it unset for the embedded SQLite"
        )
    if isinstance(exc, (NoSuchModuleError, ModuleNotFoundError)):
        return f"DATABASE_URL driver {url.drivername!r} is not installed: use postgresql://..."
    if not isinstance(exc, OperationalError):
        return None
    text = str(exc.orig or exc)
    name = url.database or "?"
    if "does not exist" in text and "database" in text:
        return (
            f"database {name!r} does not exist on {_where(url)}: create it with "
            f"`createdb -h {url.host or 'localhost'} -p {url.port or 5432}"
            f"{' -U ' + url.username if url.username else ''} {name}`"
        )
    # A refused connection is the outage message of catwalk.db.unreachable (the CLI's
    # fallback): a server that is down says the same at start-up as mid-run.
    if "password authentication failed" in text or "no password supplied" in text:
        return f"PostgreSQL on {_where(url)} refused the user or password in DATABASE_URL"
    if "could not translate host name" in text or "Name or service not known" in text:
        return f"DATABASE_URL host {url.host!r} cannot be resolved"
    if "timeout" in text.lower():
        return f"PostgreSQL on {_where(url)} did not answer in time"
    if "refused" in text or "Is the server running" in text:
        return None  # the outage line (catwalk.db.unreachable) says it, as it does mid-run
    first = next((line for line in text.splitlines() if line.strip()), text)
    return f"cannot use the database on {_where(url)}: {first.strip()}"
