"""``catwalk worker``: one command for a machine that runs video jobs.

Starts a local Prefect server when ``PREFECT_API_URL`` is not set (a managed sidecar, SQLite
under CATWALK_HOME, file-backed leases; Redis-backed when REDIS_URL is set), creates the
process work pool (limit MAX_CONCURRENT_JOBS) and the per-provider global concurrency
limits, deploys prefect.yaml, and runs a process worker until Ctrl-C. On a second machine,
set PREFECT_API_URL (and DATABASE_URL) to the first one's and run the same command.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from typing import Annotated

import typer
from rich.console import Console

from catwalk.config import get_settings

console = Console()
# Set by the first Ctrl-C or `kill`: the stop must take even if code inside a repair
# swallows the KeyboardInterrupt (see ``stack.supervise``).
_stopping = threading.Event()


def _interrupt(*_: object) -> None:
    _stopping.set()
    raise KeyboardInterrupt


def worker(
    port: Annotated[
        int, typer.Option(help="Port of the managed Prefect server (0: any free one).")
    ] = 4200,
    name: Annotated[
        str | None, typer.Option(help="Worker name (default: catwalk-HOSTNAME).")
    ] = None,
    deploy: Annotated[bool, typer.Option(help="Deploy prefect.yaml before starting.")] = True,
    query_seconds: Annotated[
        float, typer.Option(help="How often the worker polls for runs.")
    ] = 1.0,
) -> None:
    """Run video jobs on this machine (starting a local Prefect server if none is configured)."""
    from catwalk.deployments import stack

    settings = get_settings()
    server: stack.ManagedServer | None = None
    if not os.environ.get("PREFECT_API_URL"):
        server = stack.ManagedServer(settings, port=port or stack.free_port())
        console.print(f"starting Prefect server on {server.api_url} (home {settings.prefect_home})")
        os.environ["PREFECT_API_URL"] = server.start_or_adopt()
        os.environ.pop("PREFECT_HOME", None)
    worker_process = None
    try:
        stack.ensure_work_pool(settings)
        limits = stack.ensure_provider_limits(settings)
        stack.ensure_heartbeat_automation()
        # Migrate catwalk's database once, here, before runs and the worker's own checks use
        # it: on a fresh SQLite file, two first users racing to migrate fail.
        from catwalk.db import get_engine

        get_engine(settings)
        console.print(
            f"work pool [bold]{stack.WORK_POOL}[/] limit {settings.max_concurrent_jobs}; "
            + ", ".join(f"{k} limit {v}" for k, v in limits.items())
        )
        if deploy:
            stack.deploy_all()
            console.print("deployed prefect.yaml (generate-product-video/default and friends)")
        worker_process = stack.start_worker(
            name=name or f"catwalk-{socket.gethostname()}", query_seconds=query_seconds
        )
        if server is not None:  # the pid file names it, for the next start after a crash
            stack.write_server_record(settings, server.port, worker_pid=worker_process.pid)
            console.print(f"Prefect UI: {server.ui_url}", markup=False, soft_wrap=True)
        console.print(
            f"worker running; PREFECT_API_URL={os.environ['PREFECT_API_URL']} "
            "(set it, with CATWALK_LAUNCHER=deployment, for `catwalk generate` and the dashboard)",
            markup=False,
            soft_wrap=True,
        )
        signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops the stack like Ctrl-C does
        signal.signal(signal.SIGINT, _interrupt)
        from catwalk.review import expire, resume_decided_runs
        from catwalk.tasks.recovery import resume_lost_runs
        from catwalk.tasks.slots import reconcile_slots

        stack.supervise(
            worker_process,
            repairs=(
                ("re-attach", resume_lost_runs),
                ("slots", reconcile_slots),
                ("review", lambda: (resume_decided_runs(), expire())),
            ),
            stop=_stopping,
        )
    except KeyboardInterrupt:
        console.print("stopping")
    finally:
        stack.stop_process(worker_process)
        if server is not None:
            server.stop()
