"""``catwalk``: the command line. Prints one clear line on errors, never a traceback.

Prefect's settings for embedded mode are put in place here, before Prefect is imported:
without a configured API, Prefect keeps its home (and temporary server database) inside
``CATWALK_HOME`` so everything catwalk made lives in one folder.
"""

from __future__ import annotations

import os
import sys

from catwalk.config import get_settings


def _prefect_environment() -> None:
    settings = get_settings()
    if not os.environ.get("PREFECT_API_URL"):
        os.environ.setdefault("PREFECT_HOME", str(settings.prefect_home))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    # Client code logs through logging.getLogger(__name__); route it into flow-run logs.
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "catwalk")
    # The CLI shows its own progress; Prefect's per-task console lines would bury it.
    # (Flow-run logs still reach the Prefect API; `run-job` logs go to CATWALK_HOME/logs.)
    if len(sys.argv) > 1 and sys.argv[1] != "run-job":
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


def main() -> None:
    """Console entry point."""
    _prefect_environment()
    from catwalk.cli.app import app
    from catwalk.errors import CatwalkError, is_db_outage

    try:
        app()
    except CatwalkError as exc:
        print(f"error: {exc.user_message}", file=sys.stderr)
        sys.exit(1)
    except Exception as exc:
        if not is_db_outage(exc):
            raise
        # One line naming host:port (never the URL's password), not a driver traceback.
        from catwalk.db import unreachable

        print(f"error: {unreachable(exc).user_message}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
