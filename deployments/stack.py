"""The Prefect side of a catwalk installation: server, work pool, limits, deployments, worker.

``catwalk worker`` (cli/worker_cmd.py) strings these together. Each piece is idempotent, so
running the command again, or on a second machine, converges on the same setup.

Why this shape (measured in ../shared/PREFECT.md):
- a real ``prefect server start`` sidecar, never Prefect's ephemeral mode: workers refuse to
  run without ``PREFECT_API_URL`` and ephemeral leases die with their temporary server;
- the 10-jobs cap is the work pool's concurrency limit, counted in SQL by the server when
  a worker polls, so it holds across any number of workers and needs no Redis;
- per-provider caps are global concurrency limits whose leases the server keeps in a file
  (one machine) or in Redis (``REDIS_URL``, several servers); never the in-memory default,
  which leaks held slots when the server restarts.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from catwalk.clients.limits import IMAGE_LIMIT, VIDEO_LIMIT
from catwalk.config import Settings
from catwalk.errors import ConfigError

logger = logging.getLogger(__name__)

WORK_POOL = "catwalk"
FILESYSTEM_LEASES = "prefect.server.concurrency.lease_storage.filesystem"
REDIS_LEASES = "prefect_redis.lease_storage"
DEFAULT_PORT = 4200
# How often the worker asks the server for runs. Prefect's default (10 s) is pure latency
# added to every job's start; 1 s costs one cheap query per second.
WORKER_QUERY_SECONDS = 1.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _prefect_cli() -> list[str]:
    """The ``prefect`` command of this interpreter's environment."""
    return [sys.executable, "-m", "prefect"]


def server_environment(
    settings: Settings, base: Mapping[str, str] | None = None, *, port: int = DEFAULT_PORT
) -> dict[str, str]:
    """Environment of the managed server: its home under CATWALK_HOME and durable leases.

    The UI is told its own port: without ``PREFECT_UI_API_URL`` the server advertises
    4200 in ``/ui-settings`` whatever ``--port`` it listens on, and the UI cannot connect.
    Analytics stay off: the UI reads the server's setting and would otherwise call an
    outside host, which this closed network cannot reach anyway.
    """
    env = dict(base if base is not None else os.environ)
    env["PREFECT_HOME"] = str(settings.prefect_home)
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    env.setdefault("PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT", "false")
    env["PREFECT_UI_API_URL"] = f"http://127.0.0.1:{port}/api"
    env.pop("PREFECT_API_URL", None)
    if settings.redis_url:
        env["PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE"] = REDIS_LEASES
        env["PREFECT_REDIS_MESSAGING_URL"] = settings.redis_url
    else:
        env["PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE"] = FILESYSTEM_LEASES
    return env


@dataclass
class ManagedServer:
    """A ``prefect server start`` child process, stopped with its owner."""

    settings: Settings
    port: int = DEFAULT_PORT
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)
    # A server started by an earlier `catwalk worker` and taken over (start_or_adopt).
    adopted_pid: int | None = field(default=None, init=False)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self, *, timeout: float = 120.0) -> str:
        """Start the server and wait until it answers; returns its API URL."""
        if _healthy(self.api_url):
            raise ConfigError(
                f"something already answers on port {self.port}; set PREFECT_API_URL={self.api_url} "
                "to use it, or pick another --port"
            )
        self.settings.prefect_home.mkdir(parents=True, exist_ok=True)
        self.settings.logs_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.settings.logs_dir / "prefect-server.log", "ab")  # noqa: SIM115 - child keeps it
        self.process = subprocess.Popen(
            [*_prefect_cli(), "server", "start", "--host", "127.0.0.1", "--port", str(self.port)],
            env=server_environment(self.settings, port=self.port),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ConfigError(
                    f"prefect server exited with code {self.process.returncode}; "
                    f"see {self.settings.logs_dir / 'prefect-server.log'}"
                )
            if _healthy(self.api_url):
                return self.api_url
            time.sleep(0.25)
        self.stop()
        raise ConfigError(f"prefect server did not answer within {timeout:.0f} s")

    def stop(self) -> None:
        record = read_server_record(self.settings, self.port)
        stop_process(self.process)
        self.process = None
        if self.adopted_pid is not None:
            stop_group(self.adopted_pid)
            self.adopted_pid = None
        if record is not None and record.get("owner_pid") == os.getpid():
            server_record_path(self.settings, self.port).unlink(missing_ok=True)

    def start_or_adopt(self, *, timeout: float = 120.0) -> str:
        """Start the server, or take over the one an earlier ``catwalk worker`` left behind.

        The pid file (``server-PORT.json`` in PREFECT_HOME) names the server, the
        ``catwalk worker`` that owns it and that one's ``prefect worker``. If the owner is
        gone (killed with ``kill -9``, crashed), its ``prefect worker`` is stopped (two
        workers would share the runs), and its server is adopted when it answers, stopped
        and started afresh when it does not. A live owner's server is refused, as before.
        """
        record = read_server_record(self.settings, self.port)
        path = server_record_path(self.settings, self.port)
        if record is not None:
            owner, server_pid = int(record.get("owner_pid", 0)), int(record.get("server_pid", 0))
            if owner != os.getpid() and process_alive(owner):
                raise ConfigError(
                    f"a catwalk worker (pid {owner}) already runs the Prefect server on port "
                    f"{self.port}; stop it first, or pick another --port"
                )
            orphan_worker = int(record.get("worker_pid", 0))
            if orphan_worker and process_alive(orphan_worker):
                logger.warning("stopping orphaned prefect worker (pid %d)", orphan_worker)
                stop_group(orphan_worker)
            if _is_prefect_server(server_pid):
                if _healthy(self.api_url, wait=10.0):
                    self.adopted_pid = server_pid
                    write_server_record(self.settings, self.port, server_pid=server_pid)
                    logger.warning("adopted the Prefect server (pid %d) left running", server_pid)
                    return self.api_url
                logger.warning("stopping the unresponsive Prefect server (pid %d)", server_pid)
                stop_group(server_pid)
            path.unlink(missing_ok=True)
        url = self.start(timeout=timeout)
        assert self.process is not None
        write_server_record(self.settings, self.port, server_pid=self.process.pid)
        return url


def server_record_path(settings: Settings, port: int) -> Path:
    return settings.prefect_home / f"server-{port}.json"


def read_server_record(settings: Settings, port: int) -> dict[str, int] | None:
    try:
        data = json.loads(server_record_path(settings, port).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_server_record(settings: Settings, port: int, **fields: int) -> None:
    """Merge ``fields`` into the pid file; this process becomes the owner."""
    record = read_server_record(settings, port) or {}
    record.update(fields, owner_pid=os.getpid(), port=port)
    path = server_record_path(settings, port)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record))
    tmp.replace(path)


def process_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (dead, not yet reaped by its parent) counts as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][:1] != "Z"
    except OSError:
        return True


def _is_prefect_server(pid: int) -> bool:
    """Only a process that is a ``prefect server`` is ever stopped or adopted (pid reuse)."""
    if not process_alive(pid):
        return False
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # no /proc (macOS): trust the pid file
    return b"prefect" in b" ".join(argv) and b"server" in argv


def stop_group(pid: int, *, grace: float = 15.0) -> None:
    """Interrupt a process group we (or an earlier catwalk worker) started, then kill it."""
    try:
        os.killpg(pid, signal.SIGINT)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not process_alive(pid):
            return
        time.sleep(0.2)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        return


def stop_process(process: subprocess.Popen[bytes] | None, *, grace: float = 15.0) -> None:
    """Interrupt a child we started (its whole session), then kill it if it lingers."""
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGINT)
        process.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass


def _healthy(api_url: str, *, wait: float = 0.0) -> bool:
    deadline = time.monotonic() + wait
    while True:
        try:
            if httpx.get(f"{api_url}/health", timeout=2.0).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.5)


def supervise(
    worker_process: subprocess.Popen[bytes],
    *,
    every: float = 30.0,
    repairs: Sequence[tuple[str, Callable[[], object]]] = (),
    stop: threading.Event | None = None,
) -> int:
    """Wait for the worker; every ``every`` seconds, run the ``repairs`` (the CLI passes:
    re-attach jobs whose run was lost, give back leaked provider slots).

    They also run once at start: a worker starting after a crash or a lease store outage
    finds the runs and limits as they were left. Passed in rather than imported, because
    deployments sit below the tasks that do the repairs.

    ``stop`` is set by the CLI's signal handler. A Ctrl-C that lands inside a repair can be
    swallowed there (Prefect's sync client runs its calls on an event loop thread and turns
    the interrupt into its own error), and a swallowed stop used to leave the worker running
    until its caller's SIGKILL, which orphaned the ``prefect worker``; the flag is checked
    after every repair and every second, so the stop always takes.
    """
    stop = stop or threading.Event()

    def stopping() -> None:
        if stop.is_set():
            raise KeyboardInterrupt

    while True:
        for what, repair in repairs:
            stopping()
            try:
                repair()
            except Exception as exc:  # noqa: BLE001 - a bad minute must not stop the worker
                logger.warning("%s check failed (%s); next try in %.0f s", what, exc, every)
        deadline = time.monotonic() + every
        while (left := deadline - time.monotonic()) > 0:
            stopping()
            try:
                return worker_process.wait(timeout=min(1.0, left))
            except subprocess.TimeoutExpired:
                continue


def ensure_work_pool(settings: Settings, *, name: str = WORK_POOL) -> None:
    """A process work pool whose concurrency limit is MAX_CONCURRENT_JOBS (NFR-001)."""
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
    from prefect.exceptions import ObjectNotFound
    from prefect.workers.process import ProcessWorker

    with get_client(sync_client=True) as client:
        try:
            pool = client.read_work_pool(name)
        except ObjectNotFound:
            client.create_work_pool(
                WorkPoolCreate(
                    name=name,
                    type="process",
                    base_job_template=ProcessWorker.get_default_base_job_template(),
                    concurrency_limit=settings.max_concurrent_jobs,
                    description="catwalk video jobs (one process per flow run)",
                )
            )
            return
        if pool.concurrency_limit != settings.max_concurrent_jobs:
            client.update_work_pool(
                name, WorkPoolUpdate(concurrency_limit=settings.max_concurrent_jobs)
            )


def ensure_provider_limits(settings: Settings) -> dict[str, int]:
    """One global concurrency limit per provider, matching the provider account's limits."""
    from prefect import get_client

    wanted = {
        IMAGE_LIMIT: settings.image_provider_concurrency,
        VIDEO_LIMIT: settings.video_provider_concurrency,
    }
    with get_client(sync_client=True) as client:
        for name, limit in wanted.items():
            client.upsert_global_concurrency_limit_by_name(name, limit)
    return wanted


# Flow runs beat every HEARTBEAT_SECONDS (Prefect's minimum is 30); a run silent for
# LOST_AFTER_SECONDS is marked Crashed by the automation below, and `catwalk worker`
# re-attaches its job within a minute (tasks/recovery.py). Issue #13: a killed run used to
# stay Running for JOB_TIMEOUT_SECONDS + 120 s and the next housekeeping run.
HEARTBEAT_SECONDS = 30
LOST_AFTER_SECONDS = 75
HEARTBEAT_AUTOMATION = "catwalk: crash flow runs whose heartbeats stopped"
LOST_MESSAGE = "worker lost (no heartbeat)"


def ensure_heartbeat_automation() -> None:
    """Prefect's own zombie detection: a proactive trigger on the missing heartbeat event."""
    import datetime as dt

    from prefect import get_client
    from prefect.automations import Automation
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture

    with get_client(sync_client=True) as client:
        if client.read_automations_by_name(HEARTBEAT_AUTOMATION):
            return
    Automation(
        name=HEARTBEAT_AUTOMATION,
        description="A flow run that stops sending heartbeats (its process or worker died).",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={
                "prefect.flow-run.heartbeat",
                "prefect.flow-run.Completed",
                "prefect.flow-run.Failed",
                "prefect.flow-run.Cancelled",
                "prefect.flow-run.Crashed",
            },
            match={"prefect.resource.id": ["prefect.flow-run.*"]},
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=dt.timedelta(seconds=LOST_AFTER_SECONDS),
        ),
        actions=[
            ChangeFlowRunState(
                name=None, state=StateType.CRASHED, message=LOST_MESSAGE, force=False
            )
        ],
    ).create()


def find_project_dir() -> Path:
    """The folder holding ``prefect.yaml`` and the flow files the deployments point at.

    ``CATWALK_PROJECT_DIR`` when set; otherwise the checkout catwalk is imported from (an
    editable install), otherwise the current directory. A wheel install has no checkout, so
    the deployments need one named explicitly: the error says where it looked.
    """
    import catwalk

    explicit = os.environ.get("CATWALK_PROJECT_DIR")
    candidates = (
        [Path(explicit)]
        if explicit
        else [Path(catwalk.__file__).resolve().parent.parent, Path.cwd()]
    )
    for folder in candidates:
        if (folder / "prefect.yaml").is_file():
            return folder.resolve()
    looked = ", ".join(str(c / "prefect.yaml") for c in candidates)
    raise ConfigError(
        f"no prefect.yaml found (looked at {looked}): run `catwalk worker` from a checkout of catwalk "
        "or set CATWALK_PROJECT_DIR to one"
    )


def deploy_all(*, project_dir: Path | None = None, env: Mapping[str, str] | None = None) -> None:
    """``prefect --no-prompt deploy --all`` from prefect.yaml, exactly as CI and users run it."""
    project_dir = project_dir or find_project_dir()
    result = subprocess.run(
        [*_prefect_cli(), "--no-prompt", "deploy", "--all"],
        cwd=project_dir,
        env={**(env if env is not None else os.environ), "CATWALK_PROJECT_DIR": str(project_dir)},
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        tail = (result.stdout + result.stderr).strip().splitlines()[-5:]
        raise ConfigError("prefect deploy failed: " + " | ".join(tail))


def worker_environment(
    *, query_seconds: float = WORKER_QUERY_SECONDS, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    env = dict(base if base is not None else os.environ)
    env["PREFECT_WORKER_QUERY_SECONDS"] = str(query_seconds)
    env.setdefault("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", str(HEARTBEAT_SECONDS))
    # prefect.yaml starts runs with `python -m prefect.engine`: make that this interpreter.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "catwalk")
    env.setdefault("CATWALK_PROJECT_DIR", str(find_project_dir()))
    return env


def start_worker(
    *,
    name: str | None = None,
    pool: str = WORK_POOL,
    query_seconds: float = WORKER_QUERY_SECONDS,
    log_path: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """A ``prefect worker start`` process for the pool (each flow run gets its own process)."""
    args = [*_prefect_cli(), "worker", "start", "--pool", pool, "--type", "process"]
    if name:
        args += ["--name", name]
    out = open(log_path, "ab") if log_path else None  # noqa: SIM115 - child keeps it
    return subprocess.Popen(
        args,
        env=worker_environment(query_seconds=query_seconds, base=env),
        stdout=out,
        stderr=subprocess.STDOUT if out else None,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
