"""``catwalk``: the command line. Prints one clear line on errors, never a traceback (an
unexpected one goes to ``CATWALK_HOME/logs/cli-errors.log``).

Prefect's settings for embedded mode are put in place here, before Prefect is imported:
without a configured API, Prefect keeps its home (and temporary server database) inside
``CATWALK_HOME`` so everything catwalk made lives in one folder.
"""

from __future__ import annotations

import os
import sys

from catwalk.config import get_settings

#: Commands whose process (or children) run flows: their logs must reach the Prefect API.
_RUNS_FLOWS = frozenset({"run-job", "worker"})


def _prefect_environment() -> None:
    settings = get_settings()
    if not os.environ.get("PREFECT_API_URL"):
        os.environ.setdefault("PREFECT_HOME", str(settings.prefect_home))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    # Client code logs through logging.getLogger(__name__); route it into flow-run logs.
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "catwalk")
    # The CLI shows its own progress; Prefect's per-task console lines would bury it. Not for
    # the commands that run flows: the level also gates what reaches the Prefect API, and the
    # worker's flow runs inherit its environment (the UI's Logs tab stayed empty).
    if len(sys.argv) > 1 and sys.argv[1] not in _RUNS_FLOWS:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


def main() -> None:
    """Console entry point."""
    from pydantic import ValidationError

    try:
        _prefect_environment()
    except ValidationError as exc:  # a bad setting (IMAGE_PROVIDER=foo): one line per setting
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']} (got {e.get('input')!r})"
            for e in exc.errors()
        )
        print(f"error: invalid setting {problems}", file=sys.stderr)
        sys.exit(1)
    from catwalk.cli.app import app
    from catwalk.errors import CatwalkError, is_db_outage

    try:
        app()
    except CatwalkError as exc:
        print(f"error: {exc.user_message}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 (the entry point: a bug ends as one line, logged)
        # The specific diagnosis first (a missing database names its createdb command),
        # then the generic "unreachable" line for any connection-level failure.
        from catwalk.cli.dburl import describe_database_problem

        message = describe_database_problem(exc, get_settings().database_url)
        if message is None and is_db_outage(exc):
            from catwalk.db import unreachable

            message = unreachable(exc).user_message
        if message is None:
            _unexpected(exc)
        print(f"error: {message}", file=sys.stderr)
        sys.exit(1)


def _unexpected(exc: Exception) -> None:
    """A bug, not a bad input: one line on the terminal, the traceback in the log.

    The operator sees what went wrong and where to look; the traceback (source paths in the
    Python install, locals' reprs) stays in ``CATWALK_HOME/logs/cli-errors.log``.
    """
    import datetime as dt
    import traceback

    from catwalk.scrub import scrub

    where = ""
    try:
        log = get_settings().logs_dir / "cli-errors.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a", encoding="utf-8") as out:
            out.write(f"--- {dt.datetime.now(dt.UTC).isoformat()} catwalk {sys.argv[1:]!r}\n")
            out.write(scrub("".join(traceback.format_exception(exc))))
        where = f" (traceback in {log})"
    except OSError:
        pass
    text = " ".join(scrub(str(exc)).split())[:300]
    print(f"error: unexpected {type(exc).__name__}: {text}{where}", file=sys.stderr)
    sys.exit(1)
